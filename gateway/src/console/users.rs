//! `/users` (administrators): every account with its role and state, and forms to create a
//! user, disable one, reset a password and change a role. The forms post to `POST /users`
//! (create) and `POST /users/{name}` with the button's `action` (`role`, `reset`, `disable`);
//! the page gate checks their CSRF token, and each calls the same function as the API route,
//! so the audit entries and refusals are the API's. A form without an `action` changes
//! nothing (400). A one-time password is shown once, on the answer to the form that made it,
//! and never again.

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::format::local_time_text;
use super::{ConsoleError, csrf_field, form_urlencoded, page, role_label};
use crate::access::api::{
    NewUser, OneTimePassword, UserView, add_user, change_role_named, disable_named, reset_named, user_views,
};
use crate::access::guard::ApiError;
use crate::access::{ApiState, Caller, Role};

const TITLE: &str = "Users";

/// What the last form did, shown above the table.
enum Notice<'a> {
    None,
    Done(&'a str),
    Refused(&'a str),
}

/// `GET /users`.
pub async fn users_page(State(state): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    users_answer(&state, &caller, StatusCode::OK, Notice::None)
}

/// The users page with a notice, with `status` (a refused form keeps its 4xx).
fn users_answer(state: &ApiState, caller: &Caller, status: StatusCode, notice: Notice<'_>) -> Response {
    let users = match user_views(state) {
        Ok(users) => users,
        Err(error) => return ConsoleError::from(error).into_response(),
    };
    let mut response = page(caller, TITLE, "/users", &[], users_markup(caller, &users, &notice));
    *response.status_mut() = status;
    response
}

fn users_markup(caller: &Caller, users: &[UserView], notice: &Notice<'_>) -> Markup {
    html! {
        p #status role="status" {
            @match notice {
                Notice::None => {},
                Notice::Done(message) => { (message) },
                Notice::Refused(message) => span.error { (message) },
            }
        }
        table #users {
            caption { "Accounts. A role change or a password reset logs the user out everywhere." }
            thead {
                tr {
                    th scope="col" { "User" }
                    th scope="col" { "Role" }
                    th scope="col" { "State" }
                    th scope="col" { "Created" }
                    th scope="col" { "Last changed" }
                    th scope="col" { "Change" }
                }
            }
            tbody {
                @for user in users {
                    (user_row(caller, user))
                }
            }
        }
        h2 { "New user" }
        form.inline #create-user method="post" action="/users" {
            (csrf_field(caller))
            label for="new-username" { "Username" }
            input #new-username name="username" type="text" required minlength="2" maxlength="32"
                pattern="[a-z][a-z0-9._-]{1,31}" autocomplete="off";
            label for="new-role" { "Role" }
            (role_select("new-role", None))
            button type="submit" { "Create user" }
        }
        p.hint { "The new user gets a one-time password, shown once on the next page: hand it over in person or by phone. They must change it when they first log in." }
    }
}

fn user_row(caller: &Caller, user: &UserView) -> Markup {
    let name = user.username.as_str();
    let own = name == caller.username.as_str();
    html! {
        tr.user-row data-username=(name) data-role=(user.role.as_str()) {
            td { (name) @if own { " (you)" } }
            td.role { (role_label(user.role)) }
            td.state {
                @if user.disabled { "disabled" }
                @else if user.must_change_password { "must change password" }
                @else { "active" }
            }
            td { (local_time_text(&user.created_at)) }
            td { (local_time_text(&user.changed_at)) }
            td.actions {
                @if own {
                    span.muted { "Your own role and account are changed by another administrator." }
                } @else {
                    form.inline.user-actions method="post" action={ "/users/" (name) } {
                        (csrf_field(caller))
                        label.visually-hidden for={ "role-" (name) } { "New role for " (name) }
                        (role_select(&format!("role-{name}"), Some(user.role)))
                        button.secondary type="submit" name="action" value="role" { "Change role" }
                        button.secondary type="submit" name="action" value="reset" { "Reset password" }
                        @if !user.disabled {
                            button.secondary type="submit" name="action" value="disable" { "Disable" }
                        }
                    }
                }
            }
        }
    }
}

fn role_select(id: &str, current: Option<Role>) -> Markup {
    html! {
        select id=(id) name="role" required {
            @for role in Role::ALL {
                option value=(role.as_str()) selected[current == Some(*role)] { (role_label(*role)) }
            }
        }
    }
}

/// The page that shows a one-time password: once, as the answer to the form that made it.
fn one_time_page(caller: &Caller, heading: &str, made: &OneTimePassword) -> Response {
    let content = html! {
        p #status role="status" { (heading) }
        dl.facts {
            dt { "User" } dd #otp-user { (made.username.as_str()) }
            dt { "Role" } dd { (role_label(made.role)) }
            dt { "One-time password" } dd { code #one-time-password { (made.one_time_password) } }
        }
        p { "This password is shown only now. Give it to " (made.username.as_str()) " in person or by phone; they must choose their own when they log in." }
        p { a href="/users" { "Back to the users" } }
    };
    page(caller, "One-time password", "/users", &[], content)
}

fn field(body: &[u8], name: &str) -> String {
    form_urlencoded(body)
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// A refusal (4xx) back on the users page; anything else as an error page.
fn refused(state: &ApiState, caller: &Caller, error: ApiError) -> Response {
    if error.status.is_client_error() {
        users_answer(state, caller, error.status, Notice::Refused(&error.message))
    } else {
        ConsoleError::from(error).into_response()
    }
}

fn path_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(name)| name)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `POST /users` (form: username, role): the one-time password page.
pub async fn create_user_form(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let request = NewUser {
        username: field(&body, "username"),
        role: field(&body, "role"),
    };
    match add_user(&state, &caller, request).await {
        Ok(made) => one_time_page(&caller, "User created.", &made),
        Err(error) => refused(&state, &caller, error),
    }
}

/// `POST /users/{name}` (form: `action` = `role` with `role`, `reset` or `disable`).
pub async fn user_action_form(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Response {
    let name = match path_name(path) {
        Ok(name) => name,
        Err(error) => return refused(&state, &caller, error),
    };
    match field(&body, "action").as_str() {
        "role" => match change_role_named(&state, &caller, name, &field(&body, "role")).await {
            Ok(changed) => {
                let message = format!(
                    "{} is now {} (was {}) and is logged out everywhere.",
                    changed.username,
                    role_label(changed.role),
                    role_label(changed.previous_role)
                );
                users_answer(&state, &caller, StatusCode::OK, Notice::Done(&message))
            }
            Err(error) => refused(&state, &caller, error),
        },
        "reset" => match reset_named(&state, &caller, name).await {
            Ok(made) => one_time_page(&caller, "Password reset; the user is logged out everywhere.", &made),
            Err(error) => refused(&state, &caller, error),
        },
        "disable" => match disable_named(&state, &caller, name).await {
            Ok(name) => {
                let message = format!("{name} is disabled and logged out everywhere.");
                users_answer(&state, &caller, StatusCode::OK, Notice::Done(&message))
            }
            Err(error) => refused(&state, &caller, error),
        },
        _ => refused(
            &state,
            &caller,
            ApiError::bad_request("choose what to do: change role, reset password or disable"),
        ),
    }
}
