//! The page frame every console page shares: the navigation for the caller's role, the CSRF
//! token for scripts, the skip link, and error pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::{CSRF_FIELD, role_label};
use crate::access::{Caller, Role};

/// One entry of the navigation: path, label, and who sees it.
struct NavItem {
    path: &'static str,
    label: &'static str,
    roles: &'static [Role],
}

/// The navigation, in order. A page's own rule still decides who may open it; this only
/// hides links a role cannot follow.
const NAV: &[NavItem] = &[
    NavItem {
        path: "/queue",
        label: "Alert queue",
        roles: &[Role::Operator, Role::Manager],
    },
    NavItem {
        path: "/worklist",
        label: "Worklist",
        roles: &[Role::Operator, Role::CareStaff],
    },
    NavItem {
        path: "/residents",
        label: "Residents",
        roles: &[Role::Operator, Role::CareStaff, Role::Admin],
    },
    NavItem {
        path: "/history",
        label: "History search",
        roles: &[Role::Operator, Role::Manager],
    },
    NavItem {
        path: "/fleet",
        label: "Devices",
        roles: Role::ALL,
    },
    NavItem {
        path: "/reports/uptake",
        label: "Reports",
        roles: &[Role::Manager],
    },
    NavItem {
        path: "/audit",
        label: "Audit trail",
        roles: &[Role::Manager],
    },
    NavItem {
        path: "/users",
        label: "Users",
        roles: &[Role::Admin],
    },
];

/// The hidden CSRF field every changing form carries.
pub fn csrf_field(caller: &Caller) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(caller.csrf.as_deref().unwrap_or_default()); }
}

/// A whole page: `active` is the navigation path to highlight; `scripts` are files under
/// `/assets/` this page needs besides `console.js`.
pub fn page(caller: &Caller, title: &str, active: &str, scripts: &[&str], content: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(caller.csrf.as_deref().unwrap_or_default());
                meta name="user-role" content=(caller.role.as_str());
                title { (title) " · TEC console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
                @for script in scripts {
                    script src={ "/assets/" (script) } defer {}
                }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "TEC console" }
                    nav aria-label="Main" {
                        ul {
                            @for item in NAV.iter().filter(|item| item.roles.contains(&caller.role)) {
                                li {
                                    @if item.path == active {
                                        a href=(item.path) aria-current="page" { (item.label) }
                                    } @else {
                                        a href=(item.path) { (item.label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span #whoami { (caller.username.as_str()) " (" (role_label(caller.role)) ")" }
                        form method="post" action="/logout" {
                            (csrf_field(caller))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page without the navigation (login, errors).
pub fn bare_page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · TEC console" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body.bare {
                main #main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// An error shown as a page, with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::UNAUTHORIZED => "Logged out",
            status if status.is_server_error() => "Unavailable",
            _ => "Cannot do that",
        };
        let body = bare_page(
            title,
            html! {
                p.error role="alert" { (self.message) }
                p { a href="/" { "Back to the console" } }
            },
        );
        (self.status, Html(body.into_string())).into_response()
    }
}
