//! The `/api/v1` gate: every route is registered through [`ApiRouter::route`] with the roles
//! allowed on it, so a route cannot exist without a rule, and the same list of
//! [`RouteRule`]s feeds the route-walking test and `docs/access.md`.
//!
//! For each request the guard checks the bearer token (stored only as its SHA-256), its expiry
//! and revocation, the user (disabled users are out), the must-change-password flag and the
//! role, then hands the handler a [`Caller`]. Errors are JSON `{"error": "..."}`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::de::DeserializeOwned;

use super::audit::AuditRecorder;
use super::rate_limit::LoginLimiter;
use super::token::token_hash;
use super::{AccessSettings, Role, Username};
use crate::app::GatewayClient;
use crate::domain::Clock;

/// Every API path starts with this.
pub const API_PREFIX: &str = "/api/v1";
/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Password hashes computed at once; more wait their turn.
const MAX_CONCURRENT_HASHES: usize = 2;
/// Routes a user who must change the password may still call.
const ALLOWED_DURING_PASSWORD_CHANGE: &[&str] = &["/api/v1/password", "/api/v1/logout"];
/// The web console's session cookie: the same kind of token as a bearer token, so the
/// console's scripts call this API with it (and a CSRF header on every change).
pub const SESSION_COOKIE: &str = "tec_session";
/// The header a cookie-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// No token needed (only the login itself).
    Public,
    /// A logged-in user with one of these roles.
    Roles(&'static [Role]),
}

impl Allowed {
    /// Any logged-in user.
    pub const ANY_ROLE: Allowed = Allowed::Roles(Role::ALL);
}

/// One registered route and who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub method: Method,
    /// The full path, as axum matches it (`/api/v1/audit/verify`).
    pub path: String,
    pub allowed: Allowed,
}

/// What the API handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub client: GatewayClient,
    pub clock: Arc<dyn Clock>,
    pub settings: AccessSettings,
    pub limiter: Arc<LoginLimiter>,
    pub audit: AuditRecorder,
    /// Bounds concurrent argon2 work (19 MiB and tens of milliseconds each), so a burst of
    /// logins queues instead of taking the machine's memory and cores from ingest.
    pub hashing: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    pub fn new(client: GatewayClient, clock: Arc<dyn Clock>, settings: AccessSettings) -> Self {
        Self {
            audit: AuditRecorder::new(client.clone(), clock.clone()),
            limiter: Arc::new(LoginLimiter::new(
                settings.max_login_failures,
                settings.login_failure_window_ms,
            )),
            hashing: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES)),
            client,
            clock,
            settings,
        }
    }
}

/// The authenticated user of a request (a request extension; handlers take
/// `Extension<Caller>`).
#[derive(Clone)]
pub struct Caller {
    pub username: Username,
    pub role: Role,
    pub must_change_password: bool,
    /// The SHA-256 of the presented token (logout revokes it).
    pub token_hash: String,
    pub client: Option<IpAddr>,
    /// The session's CSRF token when the request came with the console's cookie (pages put
    /// it in their forms and scripts); `None` for a bearer token, which needs none.
    pub csrf: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A JSON error answer: `{"error": "..."}` with a status (and `Retry-After` for 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// The store or the committer cannot take the request now.
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `axum::Json` with JSON errors: 400 for bad JSON, 413 for a body over [`MAX_BODY_BYTES`],
/// 415 without `Content-Type: application/json`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("request body too large (at most {MAX_BODY_BYTES} bytes)"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as JSON with Content-Type: application/json".into(),
        _ => format!("bad JSON: {}", rejection.body_text()),
    };
    // Syntax and data errors are both the client's JSON: 400.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, message)
}

/// The client's IP address (from the TCP connection; a proxy in front makes every client
/// the proxy, see docs/access.md).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_ip(&parts.extensions)))
    }
}

fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Builds the `/api/v1` router; [`ApiRouter::route`] is the only way to add a route.
#[derive(Debug)]
pub struct ApiRouter {
    state: ApiState,
    routes: BTreeMap<String, MethodRouter<ApiState>>,
    rules: Vec<RouteRule>,
}

#[derive(Debug, Clone)]
struct Gate {
    state: ApiState,
    allowed: Allowed,
    path: String,
}

impl ApiRouter {
    pub fn new(state: ApiState) -> Self {
        Self {
            state,
            routes: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    /// Registers `method path` (path relative to `/api/v1`, e.g. `/audit/verify`) for the
    /// `allowed` roles. The guard runs before the handler; the handler finds the
    /// [`Caller`] in the request extensions (`Extension<Caller>`).
    pub fn route<H, T>(self, method: Method, path: &str, allowed: Allowed, handler: H) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        self.add(method, path, allowed, |filter| on(filter, handler))
    }

    /// [`ApiRouter::route`] for a route whose body may be up to `max_body` bytes instead of
    /// [`MAX_BODY_BYTES`] (file uploads); larger bodies still get 413. The limit is the
    /// innermost `DefaultBodyLimit`, so it holds for this route only.
    pub fn route_with_body_limit<H, T>(
        self,
        method: Method,
        path: &str,
        allowed: Allowed,
        max_body: usize,
        handler: H,
    ) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        self.add(method, path, allowed, |filter| {
            on(filter, handler).layer(DefaultBodyLimit::max(max_body))
        })
    }

    fn add(
        mut self,
        method: Method,
        path: &str,
        allowed: Allowed,
        handler: impl FnOnce(MethodFilter) -> MethodRouter<ApiState>,
    ) -> Self {
        let full = format!("{API_PREFIX}{path}");
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            // Only methods axum can route; anything else is left out, loudly.
            tracing::error!(%method, path = %full, "API route with an unroutable method not registered");
            return self;
        };
        let gate = Gate {
            state: self.state.clone(),
            allowed,
            path: full.clone(),
        };
        let method_router = handler(filter).route_layer(from_fn_with_state(gate, guard));
        let merged = match self.routes.remove(&full) {
            Some(existing) => existing.merge(method_router),
            None => method_router,
        };
        self.routes.insert(full.clone(), merged);
        self.rules.push(RouteRule {
            method,
            path: full,
            allowed,
        });
        self
    }

    /// Every registered route and its rule, in registration order.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    pub fn into_router(self) -> Router {
        let mut router = Router::new();
        for (path, method_router) in self.routes {
            router = router.route(&path, method_router);
        }
        router
            .fallback(|uri: axum::http::Uri| async move {
                // The console shares the listener: an unknown page gets a page, not JSON.
                if uri.path().starts_with(API_PREFIX) {
                    ApiError::new(StatusCode::NOT_FOUND, "no such API route").into_response()
                } else {
                    crate::console::ConsoleError::new(StatusCode::NOT_FOUND, "There is no such page.").into_response()
                }
            })
            .method_not_allowed_fallback(|| async {
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
            })
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.state)
    }
}

async fn guard(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    match authorise(&gate, &request) {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Ok(None) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn authorise(gate: &Gate, request: &Request) -> Result<Option<Caller>, ApiError> {
    let allowed_roles = match gate.allowed {
        Allowed::Public => return Ok(None),
        Allowed::Roles(roles) => roles,
    };
    let (token, via_cookie) = match bearer_token(request.headers()) {
        Some(token) => (token, false),
        None => match session_cookie(request.headers()) {
            Some(token) => (token, true),
            None => {
                return Err(ApiError::unauthorized(
                    "authentication required: log in with POST /api/v1/login and send Authorization: Bearer TOKEN",
                ));
            }
        },
    };
    let csrf = via_cookie.then(|| csrf_token(token));
    if let Some(expected) = &csrf
        && !is_safe_method(request.method())
    {
        let presented = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|presented| constant_time_eq(presented, expected)) {
            return Err(ApiError::forbidden(
                "missing or wrong CSRF token: send the console's token in the X-CSRF-Token header",
            ));
        }
    }
    let user = session_user(&gate.state, token)?;
    if user.must_change_password && !ALLOWED_DURING_PASSWORD_CHANGE.contains(&gate.path.as_str()) {
        return Err(ApiError::forbidden(
            "you must change your one-time password first: POST /api/v1/password with {\"old_password\", \"new_password\"}",
        ));
    }
    if !allowed_roles.contains(&user.role) {
        return Err(ApiError::forbidden(format!(
            "forbidden: the {} role may not use {} {}",
            user.role,
            request.method(),
            gate.path
        )));
    }
    Ok(Some(Caller {
        username: user.username,
        role: user.role,
        must_change_password: user.must_change_password,
        token_hash: token_hash(token),
        client: client_ip(request.extensions()),
        csrf,
    }))
}

/// The user behind a session token: valid (not expired, not revoked) and not disabled, or
/// 401. Shared by the API guard and the console's page gate.
pub fn session_user(state: &ApiState, token: &str) -> Result<crate::store::UserRecord, ApiError> {
    let hash = token_hash(token);
    let store = state.client.reads().map_err(ApiError::unavailable)?;
    let session = store.session(&hash).map_err(ApiError::unavailable)?;
    let now = state.clock.now();
    let session = session
        .filter(|session| session.valid_at(now))
        .ok_or_else(|| ApiError::unauthorized("the token is invalid, expired or revoked: log in again"))?;
    store
        .user(&session.username)
        .map_err(ApiError::unavailable)?
        .filter(|user| !user.disabled)
        .ok_or_else(|| ApiError::unauthorized("the token is invalid, expired or revoked: log in again"))
}

/// GET and HEAD change nothing, so they need no CSRF token.
pub fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF token of a console session: derived from the secret session token, so it needs
/// no storage, survives a gateway restart and is useless without the cookie beside it.
pub fn csrf_token(session_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(b"tec-console-csrf\0");
    digest.update(session_token.as_bytes());
    super::token::hex(&digest.finalize())
}

/// Compares secrets without stopping at the first difference.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// The console session token from the cookie, if it has the shape of one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE).filter(|token| !token.is_empty() && token.len() <= 256)
}

fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 256).then_some(token)
}

/// A store read off the async threads: 503 when the store is unavailable or the read fails
/// (logged with `what`).
pub async fn read_store<T: Send + 'static>(
    state: &ApiState,
    what: &'static str,
    query: impl FnOnce(&dyn crate::store::ConsoleReads) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let client = state.client.clone();
    tokio::task::spawn_blocking(move || {
        let store = client.reads().map_err(ApiError::unavailable)?;
        query(&*store).map_err(|e| {
            tracing::error!(error = %e, what, "store read failed");
            ApiError::unavailable(e)
        })
    })
    .await
    .map_err(ApiError::unavailable)?
}
