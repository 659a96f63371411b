//! Logging in and out of the console, and changing the one-time password: the same sessions
//! and audit entries as the API's `/login`, `/logout` and `/password`, through forms.
//!
//! The login form has no session yet, so its CSRF token is a double-submit cookie: a random
//! value set with the form, which the POST must echo (a cross-site form cannot read it, and
//! `SameSite=Strict` keeps the browser from sending it along from elsewhere).

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{bare_page, csrf_field, page};
use super::{CSRF_FIELD, ConsoleError, form_urlencoded, home_for};
use crate::access::api::{LoginRequest, PasswordChange, end_session, set_password, start_session};
use crate::access::guard::{ClientAddr, SESSION_COOKIE, constant_time_eq, cookie, session_cookie, session_user};
use crate::access::token::new_token;
use crate::access::{ApiState, Caller};

/// The login form's double-submit CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "tec_login_csrf";

#[derive(Debug, Default, Deserialize)]
pub struct NextPage {
    next: Option<String>,
}

/// Only our own pages: a path on this host, never `//elsewhere` (no open redirect).
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|next| next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && next.len() <= 512)
}

/// A cookie with the console's attributes; `max_age_s == 0` deletes it.
fn cookie_header(name: &str, value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("tec_invalid=; Max-Age=0"))
}

/// `Secure` when configured, or when a TLS proxy says the browser came over HTTPS.
fn secure(state: &ApiState, headers: &HeaderMap) -> bool {
    state.settings.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn login_form(csrf: &str, next: Option<&str>, username: &str, message: Option<&str>) -> Markup {
    bare_page(
        "Log in",
        html! {
            @if let Some(message) = message {
                p.error role="alert" #login-error { (message) }
            }
            form.login method="post" action="/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" required autofocus value=(username);
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" #login { "Log in" }
            }
            p.hint { "Accounts are created by an administrator; a new account's one-time password must be changed at first login." }
        },
    )
}

/// A login form with a fresh CSRF cookie.
fn login_response(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    next: Option<&str>,
    username: &str,
    message: Option<&str>,
) -> Response {
    let csrf = new_token();
    let mut response = (status, Html(login_form(&csrf, next, username, message).into_string())).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(LOGIN_CSRF_COOKIE, &csrf, 3600, secure(state, headers)),
    );
    response
}

/// `GET /`: the login form, or the caller's home page when already logged in.
pub async fn front_door(State(state): State<ApiState>, headers: HeaderMap, Query(query): Query<NextPage>) -> Response {
    if let Some(token) = session_cookie(&headers)
        && let Ok(user) = session_user(&state, token)
    {
        let target = if user.must_change_password {
            "/password"
        } else {
            safe_next(query.next.as_deref()).unwrap_or(home_for(user.role))
        };
        return Redirect::to(target).into_response();
    }
    login_response(
        &state,
        &headers,
        StatusCode::OK,
        safe_next(query.next.as_deref()),
        "",
        None,
    )
}

/// `POST /login` (form: username, password, csrf, next).
pub async fn submit_login(
    State(state): State<ApiState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = form_urlencoded(&body);
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let username = field("username").unwrap_or_default();
    let next = field("next");
    let next = safe_next(next.as_deref());
    let csrf_ok = match (cookie(&headers, LOGIN_CSRF_COOKIE), field(CSRF_FIELD)) {
        (Some(expected), Some(presented)) => !expected.is_empty() && constant_time_eq(&presented, expected),
        _ => false,
    };
    if !csrf_ok {
        tracing::warn!(client = ?client, "console login refused: missing or wrong CSRF token");
        let message = "The login form expired or did not come from this console. Please try again.";
        return login_response(&state, &headers, StatusCode::FORBIDDEN, next, &username, Some(message));
    }
    let request = LoginRequest {
        username: username.clone(),
        password: field("password").unwrap_or_default(),
    };
    let session = match start_session(&state, request, client).await {
        Ok(session) => session,
        Err(error) => {
            let message = match error.status {
                StatusCode::UNAUTHORIZED => "Invalid username or password.".to_owned(),
                _ => error.message.clone(),
            };
            return login_response(&state, &headers, error.status, next, &username, Some(&message));
        }
    };
    let target = if session.must_change_password {
        "/password"
    } else {
        next.unwrap_or(home_for(session.role))
    };
    let secure = secure(&state, &headers);
    let lifetime_s = state.settings.token_lifetime_ms / 1000;
    let mut response = Redirect::to(target).into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        cookie_header(SESSION_COOKIE, &session.token, lifetime_s, secure),
    );
    cookies.append(header::SET_COOKIE, cookie_header(LOGIN_CSRF_COOKIE, "", 0, secure));
    response
}

/// `POST /logout`: revokes the session and clears the cookie.
pub async fn submit_logout(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = end_session(&state, &caller).await {
        return ConsoleError::from(error).into_response();
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(SESSION_COOKIE, "", 0, secure(&state, &headers)),
    );
    response
}

fn password_form(caller: &Caller, message: Option<&str>) -> Markup {
    html! {
        @if caller.must_change_password {
            p { "Your account has a one-time password. Choose your own before you go on." }
        }
        @if let Some(message) = message {
            p.error role="alert" #password-error { (message) }
        }
        form.login method="post" action="/password" {
            (csrf_field(caller))
            label for="old_password" { "Current password" }
            input #old_password name="old_password" type="password" autocomplete="current-password" required autofocus;
            label for="new_password" { "New password (at least 12 characters)" }
            input #new_password name="new_password" type="password" autocomplete="new-password" required minlength="12";
            label for="confirm_password" { "New password again" }
            input #confirm_password name="confirm_password" type="password" autocomplete="new-password" required minlength="12";
            button type="submit" #change-password { "Change password" }
        }
    }
}

/// `GET /password`.
pub async fn password_page(Extension(caller): Extension<Caller>) -> Response {
    page(&caller, "Change password", "", &[], password_form(&caller, None))
}

/// `POST /password` (form: old_password, new_password, confirm_password).
pub async fn submit_password(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let form = form_urlencoded(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let (new_password, confirm) = (field("new_password"), field("confirm_password"));
    let refused = |status: StatusCode, message: &str| {
        let mut response = page(
            &caller,
            "Change password",
            "",
            &[],
            password_form(&caller, Some(message)),
        );
        *response.status_mut() = status;
        response
    };
    if new_password != confirm {
        return refused(StatusCode::BAD_REQUEST, "The two new passwords differ.");
    }
    let change = PasswordChange {
        old_password: field("old_password"),
        new_password,
    };
    match set_password(&state, &caller, change).await {
        Ok(()) => Redirect::to(home_for(caller.role)).into_response(),
        Err(error) if error.status.is_client_error() => refused(error.status, &error.message),
        Err(error) => ConsoleError::from(error).into_response(),
    }
}
