//! Access control and audit for the `/api/v1` HTTP API (issue 8, items 3 and 4): users and
//! their roles, argon2id passwords, bearer sessions, login rate limiting, the role matrix
//! (in [`crate::http::api_routes`], the single place a route is declared) and the hash-chained
//! audit log. `docs/access.md` is the written version.
//!
//! Stored records (users, sessions, audit entries) live behind [`crate::store::AccessStore`];
//! every write goes through the committer ([`crate::app::GatewayClient::apply_access`]) or, with
//! the gateway stopped, straight to the store (the `user` CLI), through the same
//! [`crate::store::AccessChange`].

pub mod alerts_api;
pub mod api;
pub mod audit;
pub mod backup_api;
pub mod guard;
pub mod inspect_api;
pub mod openapi;
pub mod password;
pub mod rate_limit;
pub mod register_api;
pub mod reports_api;
pub mod residents_api;
pub mod token;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use audit::{Action, AuditRecorder, ChainBreak, ChainReport, verify_chain};
pub use guard::{Allowed, ApiRouter, ApiState, Caller, RouteRule};

/// What a user may do; the route table says which routes each role reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Monitoring-centre operator: the alert queue.
    Operator,
    /// Care staff: residents' records and history, not the alert queue.
    CareStaff,
    /// Reports and the audit log.
    Manager,
    /// Users, residents and devices.
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Operator, Role::CareStaff, Role::Manager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::CareStaff => "care_staff",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected operator, care_staff, manager or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(32).collect()))
    }
}

/// Shortest and longest username.
pub const USERNAME_MIN: usize = 2;
pub const USERNAME_MAX: usize = 32;

/// A login name: 2-32 characters of lowercase ASCII letters, digits, `.`, `_` and `-`,
/// starting with a letter. Lowercase only, so `Alice` and `alice` cannot be two users; no
/// spaces or punctuation that could be mistaken in a log, a URL or a shell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid username: use {USERNAME_MIN}-{USERNAME_MAX} characters of lowercase letters a-z, digits, '.', '_' \
     and '-', starting with a letter"
)]
pub struct InvalidUsername;

impl Username {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidUsername> {
        let name = name.into();
        let mut bytes = name.bytes();
        let starts_with_letter = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if starts_with_letter && rest_ok && (USERNAME_MIN..=USERNAME_MAX).contains(&name.len()) {
            Ok(Self(name))
        } else {
            Err(InvalidUsername)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidUsername;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Access settings (`[access]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessSettings {
    /// How long a login token is valid (default: an operator's 12-hour shift).
    pub token_lifetime_ms: i64,
    /// Failed logins per username, and per client address, within the window before further
    /// attempts are refused with 429.
    pub max_login_failures: u32,
    pub login_failure_window_ms: i64,
    /// The console's cookies carry `Secure` (behind a TLS proxy).
    pub secure_cookies: bool,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            token_lifetime_ms: 12 * 3600 * 1000,
            max_login_failures: 5,
            login_failure_window_ms: 15 * 60 * 1000,
            secure_cookies: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_roles() {
        for good in ["al", "alice", "a.b-c_d9", &"a".repeat(USERNAME_MAX)] {
            assert!(Username::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Alice",
            "9lives",
            "al ice",
            "al/ice",
            "ali\u{e9}",
            ".alice",
            &"a".repeat(USERNAME_MAX + 1),
        ] {
            assert!(Username::new(bad).is_err(), "{bad:?}");
        }
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }
}
