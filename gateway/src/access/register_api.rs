//! The care-register import over the admin API: `POST /api/v1/register/people` and
//! `POST /api/v1/register/assignments` with the CSV file as the body (`Content-Type:
//! text/csv`, up to [`MAX_IMPORT_BYTES`]). The file is checked off the async threads, audited
//! (`register_imported`) and written through the single writer in one transaction, with the
//! code `tec-gateway import` runs offline. Registered in [`crate::http::api_routes`]; roles
//! in `docs/access.md`, columns in `docs/reports.md`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::audit::Action;
use super::guard::ApiError;
use super::{ApiState, Caller};
use crate::reports::apply::{RegisterChange, known_people, prepare_assignments, prepare_people};
use crate::reports::import::{ImportError, LineError, MAX_IMPORT_BYTES, MAX_LISTED_ERRORS};

/// A CSV request body: `Content-Type: text/csv` (415 otherwise), at most the route's body
/// limit (413 beyond it).
#[derive(Debug)]
pub struct CsvBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_csv = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/csv"));
        if !is_csv {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the file as the body with Content-Type: text/csv",
            ));
        }
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(CsvBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("file too large (at most {MAX_IMPORT_BYTES} bytes)"),
            )),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "cannot read the body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// `POST /api/v1/register/people`: `200 {"changed","unchanged"}`, or 400 with every bad line.
pub async fn import_people(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    CsvBody(body): CsvBody,
) -> Result<Response, ApiError> {
    let prepared = tokio::task::spawn_blocking(move || prepare_people(&body))
        .await
        .map_err(ApiError::unavailable)?;
    import(&state, &caller, prepared).await
}

/// `POST /api/v1/register/assignments`: checked against the people and the assignments in
/// the store; answers as [`import_people`].
pub async fn import_assignments(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    CsvBody(body): CsvBody,
) -> Result<Response, ApiError> {
    let client = state.client.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let store = client.reads().map_err(ApiError::unavailable)?;
        let people = store.people().map_err(ApiError::unavailable)?;
        let stored = store.all_assignments().map_err(ApiError::unavailable)?;
        Ok::<_, ApiError>(prepare_assignments(&body, &known_people(&people), &stored))
    })
    .await
    .map_err(ApiError::unavailable)??;
    import(&state, &caller, prepared).await
}

/// Audits a checked file and writes it; a file with bad lines writes nothing and is not
/// audited (nothing happened).
async fn import(
    state: &ApiState,
    caller: &Caller,
    prepared: Result<RegisterChange, ImportError>,
) -> Result<Response, ApiError> {
    let change = match prepared {
        Ok(change) => change,
        Err(ImportError::Refused(reason)) => return Ok(bad_lines(StatusCode::BAD_REQUEST, reason, &[])),
        Err(ImportError::BadLines(lines)) => {
            let error = format!("{} bad line(s); nothing was imported", lines.len());
            return Ok(bad_lines(StatusCode::BAD_REQUEST, error, &lines));
        }
    };
    let what = change.what();
    state
        .audit
        .record(caller, Action::RegisterImported, None, Some(&change.audit_target()))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit entry not recorded: import refused");
            ApiError::unavailable(e)
        })?;
    match state.client.import_register(change).await {
        Ok(Ok(counts)) => {
            tracing::info!(
                file = what,
                changed = counts.changed,
                unchanged = counts.unchanged,
                "register imported"
            );
            Ok(axum::Json(counts).into_response())
        }
        // An assignment stored since the file was checked: the caller's view was stale.
        Ok(Err(line)) => Ok(bad_lines(
            StatusCode::CONFLICT,
            "the store refused a line; nothing was imported".into(),
            &[line],
        )),
        Err(e) => {
            tracing::error!(error = %e, file = what, "register import not committed");
            Err(ApiError::unavailable(e))
        }
    }
}

/// `{"error", "lines": [{"line","reason"}...] (at most MAX_LISTED_ERRORS), "bad_lines": N}`.
fn bad_lines(status: StatusCode, error: String, lines: &[LineError]) -> Response {
    let listed: Vec<&LineError> = lines.iter().take(MAX_LISTED_ERRORS).collect();
    let body = serde_json::json!({
        "error": error,
        "lines": listed,
        "bad_lines": lines.len(),
    });
    (status, axum::Json(body)).into_response()
}
