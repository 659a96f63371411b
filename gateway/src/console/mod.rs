//! The web console (issue 8, item 2): server-rendered pages (maud) for operators, care staff,
//! managers and administrators, with a little plain JavaScript and no external assets.
//!
//! The console is a second face of the same API: a page handler reads through the same
//! functions the `/api/v1` handlers use (and audits the same way), and the pages' scripts
//! call `/api/v1` with the session cookie and the CSRF header. A login at `/` opens the same
//! kind of session as `POST /api/v1/login`; its token lives in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` under TLS).
//!
//! Every page is registered through [`ConsoleRouter::route`] with the roles allowed on it, as
//! API routes are: no page exists without a rule, and the route walk tests them all. Without
//! a session a page redirects to the login form; with the wrong role it answers 403; a user
//! who must change a one-time password is sent to `/password` first. Every form that changes
//! something carries the session's CSRF token, checked here before the handler runs.

pub mod assets;
pub mod audit_page;
pub mod call;
pub mod chart;
pub mod fleet;
pub mod format;
pub mod history;
pub mod layout;
pub mod login;
pub mod procedures;
pub mod queue;
pub mod reports;
pub mod residents;
pub mod users;
pub mod worklist;

use std::collections::BTreeMap;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use maud::{Markup, html};

use crate::access::guard::{
    ApiError, MAX_BODY_BYTES, constant_time_eq, csrf_token, is_safe_method, session_cookie, session_user,
};
use crate::access::token::token_hash;
use crate::access::{Allowed, ApiState, Caller, Role, RouteRule};

pub use layout::{ConsoleError, csrf_field, page};

/// Pages a user who must change the password may still open.
const ALLOWED_DURING_PASSWORD_CHANGE: &[&str] = &["/password", "/logout"];
/// The form field a page's CSRF token travels in.
pub const CSRF_FIELD: &str = "csrf";

/// Builds the console's router; [`ConsoleRouter::route`] is the only way to add a page.
#[derive(Debug)]
pub struct ConsoleRouter {
    state: ApiState,
    routes: BTreeMap<String, MethodRouter<ApiState>>,
    rules: Vec<RouteRule>,
}

#[derive(Debug, Clone)]
struct PageGate {
    state: ApiState,
    allowed: Allowed,
    path: String,
}

impl ConsoleRouter {
    pub fn new(state: ApiState) -> Self {
        Self {
            state,
            routes: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    /// Registers `method path` for the `allowed` roles. The gate runs first; the handler finds
    /// the [`Caller`] (with its CSRF token) in `Extension<Caller>`.
    pub fn route<H, T>(mut self, method: Method, path: &str, allowed: Allowed, handler: H) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            tracing::error!(%method, path, "console page with an unroutable method not registered");
            return self;
        };
        let gate = PageGate {
            state: self.state.clone(),
            allowed,
            path: path.to_owned(),
        };
        let method_router = on(filter, handler).route_layer(from_fn_with_state(gate, page_gate));
        let merged = match self.routes.remove(path) {
            Some(existing) => existing.merge(method_router),
            None => method_router,
        };
        self.routes.insert(path.to_owned(), merged);
        self.rules.push(RouteRule {
            method,
            path: path.to_owned(),
            allowed,
        });
        self
    }

    /// Every registered page and its rule, in registration order.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    pub fn into_router(self) -> Router {
        let mut router = Router::new();
        for (path, method_router) in self.routes {
            router = router.route(&path, method_router);
        }
        router
            .route("/assets/{file}", axum::routing::get(assets::serve))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self.state)
    }
}

/// No framing (clickjacking), no inline or foreign scripts, no caching of pages with
/// personal data, no referrer leaking resident ids.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; media-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn page_gate(State(gate): State<PageGate>, request: Request, next: Next) -> Response {
    let roles = match gate.allowed {
        Allowed::Public => return next.run(request).await,
        Allowed::Roles(roles) => roles,
    };
    let Some(token) = session_cookie(request.headers()).map(str::to_owned) else {
        return to_login(&request);
    };
    let user = match session_user(&gate.state, &token) {
        Ok(user) => user,
        Err(error) if error.status == StatusCode::UNAUTHORIZED => return to_login(&request),
        Err(error) => return ConsoleError::from(error).into_response(),
    };
    let csrf = csrf_token(&token);
    let (parts, body) = request.into_parts();
    // A change must carry the session's CSRF token (form field or header); checked here so
    // that no form handler can forget it.
    let body = if is_safe_method(&parts.method) {
        body
    } else {
        let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
            return ConsoleError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form was too large.").into_response();
        };
        if !carries_csrf(&parts.headers, &bytes, &csrf) {
            tracing::warn!(user = %user.username, path = %gate.path, "console form refused: missing or wrong CSRF token");
            return ConsoleError::new(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from the console. Go back, reload the page and try again.",
            )
            .into_response();
        }
        Body::from(bytes)
    };
    let mut request = Request::from_parts(parts, body);
    if user.must_change_password && !ALLOWED_DURING_PASSWORD_CHANGE.contains(&gate.path.as_str()) {
        return Redirect::to("/password").into_response();
    }
    if !roles.contains(&user.role) {
        return ConsoleError::new(
            StatusCode::FORBIDDEN,
            format!("Your role ({}) cannot open this page.", role_label(user.role)),
        )
        .into_response();
    }
    let caller = Caller {
        username: user.username,
        role: user.role,
        must_change_password: user.must_change_password,
        token_hash: token_hash(&token),
        client: request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip()),
        csrf: Some(csrf),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn carries_csrf(headers: &HeaderMap, body: &[u8], expected: &str) -> bool {
    if let Some(header) = headers
        .get(crate::access::guard::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return constant_time_eq(header, expected);
    }
    form_urlencoded(body)
        .into_iter()
        .find(|(key, _)| key == CSRF_FIELD)
        .is_some_and(|(_, value)| constant_time_eq(&value, expected))
}

/// Pairs of an `application/x-www-form-urlencoded` body.
pub fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}

/// To the login form, coming back here afterwards (GET only; other methods just 401).
fn to_login(request: &Request) -> Response {
    if request.method() != Method::GET {
        return ConsoleError::new(StatusCode::UNAUTHORIZED, "Your session has ended. Log in again.").into_response();
    }
    let next = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let target = format!("/?next={}", url_encode(next));
    Redirect::to(&target).into_response()
}

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|encoded| encoded.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// A role as people say it.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::CareStaff => "care staff",
        Role::Manager => "manager",
        Role::Admin => "administrator",
    }
}

/// Where a role lands after logging in.
pub fn home_for(role: Role) -> &'static str {
    match role {
        Role::Operator | Role::Manager => "/queue",
        Role::CareStaff => "/residents",
        Role::Admin => "/users",
    }
}

/// A page for an API error (status and message kept).
impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        ConsoleError::new(error.status, error.message)
    }
}

/// A plain 404 page for ids that do not exist.
pub fn not_found(what: &str) -> Markup {
    html! { p { "No " (what) " with that id." } }
}
