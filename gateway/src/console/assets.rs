//! The console's stylesheet and scripts, compiled into the binary: no build step, no
//! external assets, nothing fetched at run time.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `(file name, content type, content)`; a page names its scripts by file name.
const FILES: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "worklist.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/worklist.js"),
    ),
    (
        "queue.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/queue.js"),
    ),
    (
        "call.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/call.js"),
    ),
];

/// `GET /assets/{file}` (public: no data in them).
pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, content)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *content,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
