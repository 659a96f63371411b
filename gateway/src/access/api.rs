//! The access-control routes: login, logout, password change, who am I, users, and the audit
//! trail. Registered in [`crate::http::api_routes`] with their roles.

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::audit::{Action, ChainReport, draft, verify_chain};
use super::guard::{ApiError, ApiJson, ClientAddr, read_store};
use super::password::{check_new_password, dummy_hash, hash_password, one_time_password, verify_password};
use super::token::{new_token, token_hash};
use super::{ApiState, Caller, Role, Username};
use crate::domain::{ResidentId, Timestamp};
use crate::store::{AccessChange, AccessOp, AccessRefusal, AuditEntry, SessionRecord, UserRecord};
use crate::writer::core::OperatorError;

const BAD_LOGIN: &str = "invalid username or password";

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub token: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
    pub must_change_password: bool,
}

fn write_failed(error: OperatorError) -> ApiError {
    tracing::error!(error = %error, "access change not committed");
    ApiError::unavailable(error)
}

async fn apply(state: &ApiState, change: AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, ApiError> {
    state.client.apply_access(change).await.map_err(write_failed)
}

async fn audit_only(state: &ApiState, entry: crate::store::AuditDraft) -> Result<(), ApiError> {
    let change = AccessChange {
        ops: Vec::new(),
        audit: vec![entry],
    };
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    Ok(())
}

/// `POST /api/v1/login`.
pub async fn login(
    State(state): State<ApiState>,
    ClientAddr(client): ClientAddr,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let session = start_session(&state, request, client).await?;
    Ok(axum::Json(LoginResponse {
        token: session.token,
        expires_at: session.expires_at.to_string(),
        must_change_password: session.must_change_password,
    })
    .into_response())
}

/// A new session: its token (for the bearer header or the console's cookie), once.
pub struct NewSession {
    pub token: String,
    pub expires_at: Timestamp,
    pub must_change_password: bool,
    pub role: Role,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Checks a login (rate limit, password, disabled) and opens a session; every outcome is
/// audited. The API's login and the console's login form both come here.
pub async fn start_session(
    state: &ApiState,
    request: LoginRequest,
    client: Option<std::net::IpAddr>,
) -> Result<NewSession, ApiError> {
    let now = state.clock.now();
    let username = Username::new(request.username.clone()).ok();
    // Rate-limit keys: the name as typed (bounded), and the address.
    let name_key = format!("user:{}", request.username.chars().take(64).collect::<String>());
    let mut keys = vec![name_key.clone()];
    if let Some(ip) = client {
        keys.push(format!("addr:{ip}"));
    }
    // Only a valid name is written to the audit log (anything else may be a mistyped password).
    let audit_name = username
        .as_ref()
        .map_or("(invalid username)", Username::as_str)
        .to_owned();
    if let Some(refusal) = state.limiter.blocked(&keys, now) {
        tracing::warn!(client = ?client, "login refused: too many failures");
        if refusal.first {
            let entry = draft(now, &audit_name, None, Action::LoginRateLimited, None, None, client);
            audit_only(state, entry).await?;
        }
        let wait = refusal.retry_after_s;
        return Err(ApiError {
            retry_after_s: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins: try again in {wait} seconds"),
            )
        });
    }
    // The same work whether or not the user exists: unknown users are checked against a dummy hash.
    let store = state.client.reads().map_err(ApiError::unavailable)?;
    let user = match &username {
        Some(name) => store.user(name).map_err(ApiError::unavailable)?,
        None => None,
    };
    drop(store);
    let password = request.password;
    let permit = state.hashing.acquire().await.map_err(ApiError::unavailable)?;
    let checked = tokio::task::spawn_blocking(move || {
        let stored = user.as_ref().map_or(dummy_hash(), |user| user.password_hash.as_str());
        let matches = verify_password(&password, stored);
        user.filter(|user| matches && !user.disabled)
    })
    .await
    .map_err(ApiError::unavailable)?;
    drop(permit);
    let Some(user) = checked else {
        state.limiter.failed(&keys, now);
        let entry = draft(now, &audit_name, None, Action::LoginFailed, None, None, client);
        audit_only(state, entry).await?;
        return Err(ApiError::unauthorized(BAD_LOGIN));
    };
    let token = new_token();
    let session = SessionRecord {
        username: user.username.clone(),
        role: user.role,
        created_at: now,
        expires_at: now.plus_ms(state.settings.token_lifetime_ms),
        revoked_at: None,
    };
    let expires_at = session.expires_at;
    let change = AccessChange {
        ops: vec![AccessOp::CreateSession {
            token_hash: token_hash(&token),
            session,
        }],
        audit: vec![draft(
            now,
            user.username.as_str(),
            Some(user.role),
            Action::LoginSucceeded,
            None,
            None,
            client,
        )],
    };
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    state.limiter.succeeded(&name_key);
    tracing::info!(user = %user.username, role = %user.role, "login");
    Ok(NewSession {
        token,
        expires_at,
        must_change_password: user.must_change_password,
        role: user.role,
    })
}

/// `POST /api/v1/logout`: revokes the presented token.
pub async fn logout(State(state): State<ApiState>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    end_session(&state, &caller).await?;
    Ok(axum::Json(serde_json::json!({ "logged_out": true })).into_response())
}

/// Revokes the caller's session (token or console cookie), audited.
pub async fn end_session(state: &ApiState, caller: &Caller) -> Result<(), ApiError> {
    let now = state.clock.now();
    let change = AccessChange {
        ops: vec![AccessOp::RevokeSession {
            token_hash: caller.token_hash.clone(),
            at: now,
        }],
        audit: vec![draft(
            now,
            caller.username.as_str(),
            Some(caller.role),
            Action::Logout,
            None,
            None,
            caller.client,
        )],
    };
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    pub old_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChange").finish_non_exhaustive()
    }
}

/// `POST /api/v1/password`: old and new password; clears must-change-password.
pub async fn change_password(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    set_password(&state, &caller, request).await?;
    Ok(axum::Json(serde_json::json!({ "password_changed": true })).into_response())
}

/// Checks the old password and stores the new one, clearing must-change-password; audited.
pub async fn set_password(state: &ApiState, caller: &Caller, request: PasswordChange) -> Result<(), ApiError> {
    check_new_password(&request.new_password).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if request.new_password == request.old_password {
        return Err(ApiError::bad_request("the new password must differ from the old one"));
    }
    let store = state.client.reads().map_err(ApiError::unavailable)?;
    let user = store
        .user(&caller.username)
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::unauthorized("no such user"))?;
    drop(store);
    let PasswordChange {
        old_password,
        new_password,
    } = request;
    let stored = user.password_hash.clone();
    let permit = state.hashing.acquire().await.map_err(ApiError::unavailable)?;
    let new_hash = tokio::task::spawn_blocking(move || {
        verify_password(&old_password, &stored).then(|| hash_password(&new_password))
    })
    .await
    .map_err(ApiError::unavailable)?;
    drop(permit);
    let new_hash = match new_hash {
        None => return Err(ApiError::forbidden("the old password is wrong")),
        Some(hash) => hash.map_err(ApiError::unavailable)?,
    };
    let now = state.clock.now();
    let updated = UserRecord {
        password_hash: new_hash,
        must_change_password: false,
        changed_at: now,
        ..user
    };
    let change = AccessChange {
        ops: vec![AccessOp::UpdateUser(Box::new(updated))],
        audit: vec![draft(
            now,
            caller.username.as_str(),
            Some(caller.role),
            Action::PasswordChanged,
            None,
            Some(caller.username.as_str()),
            caller.client,
        )],
    };
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    Ok(())
}

/// `GET /api/v1/me`.
pub async fn me(Extension(caller): Extension<Caller>) -> Response {
    axum::Json(serde_json::json!({
        "username": caller.username,
        "role": caller.role,
        "must_change_password": caller.must_change_password,
    }))
    .into_response()
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    #[schema(value_type = String)]
    pub username: Username,
    /// `operator`, `care_staff`, `manager` or `admin`.
    #[schema(value_type = String)]
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: String,
    /// The last change to the account (password, role, disabled).
    pub changed_at: String,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        Self {
            username: user.username.clone(),
            role: user.role,
            disabled: user.disabled,
            must_change_password: user.must_change_password,
            created_at: user.created_at.to_string(),
            changed_at: user.changed_at.to_string(),
        }
    }
}

/// `GET /api/v1/users`.
pub async fn list_users(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(axum::Json(user_views(&state)?).into_response())
}

/// Every user, by name, as the API and the users page show them.
pub fn user_views(state: &ApiState) -> Result<Vec<UserView>, ApiError> {
    let store = state.client.reads().map_err(ApiError::unavailable)?;
    let users = store.users().map_err(ApiError::unavailable)?;
    Ok(users.iter().map(UserView::from).collect())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub username: String,
    pub role: String,
}

/// A role as the API takes it, or a 400 naming the roles.
fn parse_role(text: &str) -> Result<Role, ApiError> {
    text.parse()
        .map_err(|e: super::UnknownRole| ApiError::bad_request(e.to_string()))
}

/// Who makes an administrative change to a user, for its audit entry: a signed-in
/// administrator, or the offline CLI.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub username: &'a str,
    pub role: Option<Role>,
    pub client: Option<std::net::IpAddr>,
}

impl Caller {
    pub fn as_actor(&self) -> Actor<'_> {
        Actor {
            username: self.username.as_str(),
            role: Some(self.role),
            client: self.client,
        }
    }
}

/// Disables `user` (the store revokes their sessions in the same transaction), audited.
/// Shared by the API and the CLI.
pub fn disable_change(user: UserRecord, by: &Actor<'_>, now: Timestamp) -> AccessChange {
    let name = user.username.clone();
    AccessChange {
        ops: vec![AccessOp::UpdateUser(Box::new(UserRecord {
            disabled: true,
            changed_at: now,
            ..user
        }))],
        audit: vec![draft(
            now,
            by.username,
            by.role,
            Action::UserDisabled,
            None,
            Some(name.as_str()),
            by.client,
        )],
    }
}

/// Gives `user` the role `role` and revokes their sessions (a session carries the role it
/// was opened with), audited with the old and new role. Shared by the API and the console.
pub fn role_change(user: UserRecord, role: Role, by: &Actor<'_>, now: Timestamp) -> AccessChange {
    let name = user.username.clone();
    let target = format!("{name} ({} -> {role})", user.role);
    AccessChange {
        ops: vec![
            AccessOp::UpdateUser(Box::new(UserRecord {
                role,
                changed_at: now,
                ..user
            })),
            AccessOp::RevokeUserSessions {
                username: name,
                at: now,
            },
        ],
        audit: vec![draft(
            now,
            by.username,
            by.role,
            Action::UserRoleChanged,
            None,
            Some(&target),
            by.client,
        )],
    }
}

/// Gives `user` a new one-time password hash and revokes their sessions, audited. Shared by
/// the API and the CLI.
pub fn reset_change(user: UserRecord, password_hash: String, by: &Actor<'_>, now: Timestamp) -> AccessChange {
    let name = user.username.clone();
    AccessChange {
        ops: vec![
            AccessOp::UpdateUser(Box::new(UserRecord {
                password_hash,
                must_change_password: true,
                changed_at: now,
                ..user
            })),
            AccessOp::RevokeUserSessions {
                username: name.clone(),
                at: now,
            },
        ],
        audit: vec![draft(
            now,
            by.username,
            by.role,
            Action::UserPasswordReset,
            None,
            Some(name.as_str()),
            by.client,
        )],
    }
}

/// A new user with a one-time password (which must be changed at first login), and the
/// password to hand over. Shared by the API and the CLI.
pub fn new_user(username: &Username, role: Role, now: Timestamp) -> Result<(UserRecord, String), ApiError> {
    let password = one_time_password();
    let password_hash = hash_password(&password).map_err(ApiError::unavailable)?;
    Ok((
        UserRecord {
            username: username.clone(),
            role,
            password_hash,
            must_change_password: true,
            disabled: false,
            created_at: now,
            changed_at: now,
        },
        password,
    ))
}

/// `POST /api/v1/users`: `{"username", "role"}`; answers 201 with the one-time password, once.
pub async fn create_user(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    let created = add_user(&state, &caller, request).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "username": created.username,
            "role": created.role,
            "one_time_password": created.one_time_password,
            "must_change_password": true,
        })),
    )
        .into_response())
}

/// An account with a one-time password to hand over (shown once, never stored in clear).
pub struct OneTimePassword {
    pub username: Username,
    pub role: Role,
    pub one_time_password: String,
}

impl std::fmt::Debug for OneTimePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimePassword")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Creates a user with a one-time password, audited: 400 for a bad name or role, 409 if the
/// name is taken. The API and the users page both come here.
pub async fn add_user(state: &ApiState, caller: &Caller, request: NewUser) -> Result<OneTimePassword, ApiError> {
    let username = Username::new(request.username).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let role = parse_role(&request.role)?;
    let now = state.clock.now();
    let name = username.clone();
    let permit = state.hashing.acquire().await.map_err(ApiError::unavailable)?;
    let (user, password) = tokio::task::spawn_blocking(move || new_user(&name, role, now))
        .await
        .map_err(ApiError::unavailable)??;
    drop(permit);
    let change = AccessChange {
        ops: vec![AccessOp::CreateUser(Box::new(user))],
        audit: vec![draft(
            now,
            caller.username.as_str(),
            Some(caller.role),
            Action::UserCreated,
            None,
            Some(&format!("{username} ({role})")),
            caller.client,
        )],
    };
    match apply(state, change).await? {
        Ok(_) => Ok(OneTimePassword {
            username,
            role,
            one_time_password: password,
        }),
        Err(refusal @ AccessRefusal::UserExists(_)) => Err(ApiError::new(StatusCode::CONFLICT, refusal.to_string())),
        Err(refusal) => Err(ApiError::bad_request(refusal.to_string())),
    }
}

/// The user named in the path, as stored.
async fn existing_user(state: &ApiState, path: Result<Path<String>, PathRejection>) -> Result<UserRecord, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    user_named(state, name)
}

/// The user `name`, as stored: 400 for a name that cannot exist, 404 for one that does not.
fn user_named(state: &ApiState, name: String) -> Result<UserRecord, ApiError> {
    let name = Username::new(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = state.client.reads().map_err(ApiError::unavailable)?;
    let user = store.user(&name).map_err(ApiError::unavailable)?;
    drop(store);
    user.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no user {name}")))
}

/// `POST /api/v1/users/{name}/disable`: the user can no longer log in and their tokens are
/// revoked in the same transaction. An administrator cannot disable their own account (the
/// last administrator would lock everyone out).
pub async fn disable_user(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user = existing_user(&state, path).await?;
    let name = disable_account(&state, &caller, user).await?;
    Ok(axum::Json(serde_json::json!({ "username": name, "disabled": true })).into_response())
}

/// Disables `user` (not the caller's own account: 409), audited; the API and the users page.
pub async fn disable_account(state: &ApiState, caller: &Caller, user: UserRecord) -> Result<Username, ApiError> {
    if user.username == caller.username {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an administrator cannot disable their own account",
        ));
    }
    let name = user.username.clone();
    let change = disable_change(user, &caller.as_actor(), state.clock.now());
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    Ok(name)
}

/// [`disable_account`] for a user given by name (400 bad name, 404 unknown).
pub async fn disable_named(state: &ApiState, caller: &Caller, name: String) -> Result<Username, ApiError> {
    let user = user_named(state, name)?;
    disable_account(state, caller, user).await
}

/// `POST /api/v1/users/{name}/reset`: a new one-time password (answered once, to be changed
/// at the next login); the user's tokens are revoked.
pub async fn reset_user(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let user = existing_user(&state, path).await?;
    let reset = reset_account(&state, &caller, user).await?;
    Ok(axum::Json(serde_json::json!({
        "username": reset.username,
        "one_time_password": reset.one_time_password,
        "must_change_password": true,
    }))
    .into_response())
}

/// Gives `user` a new one-time password and revokes their sessions, audited; the API and the
/// users page.
pub async fn reset_account(state: &ApiState, caller: &Caller, user: UserRecord) -> Result<OneTimePassword, ApiError> {
    let now = state.clock.now();
    let name = user.username.clone();
    let for_hash = name.clone();
    let role = user.role;
    let permit = state.hashing.acquire().await.map_err(ApiError::unavailable)?;
    let (fresh, password) = tokio::task::spawn_blocking(move || new_user(&for_hash, role, now))
        .await
        .map_err(ApiError::unavailable)??;
    drop(permit);
    let change = reset_change(user, fresh.password_hash, &caller.as_actor(), now);
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    Ok(OneTimePassword {
        username: name,
        role,
        one_time_password: password,
    })
}

/// [`reset_account`] for a user given by name (400 bad name, 404 unknown).
pub async fn reset_named(state: &ApiState, caller: &Caller, name: String) -> Result<OneTimePassword, ApiError> {
    let user = user_named(state, name)?;
    reset_account(state, caller, user).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RoleRequest {
    /// `operator`, `care_staff`, `manager` or `admin`.
    pub role: String,
}

/// A role change as made.
#[derive(Debug, Clone, Serialize)]
pub struct RoleChanged {
    pub username: Username,
    pub previous_role: Role,
    pub role: Role,
}

/// `POST /api/v1/users/{name}/role` `{"role"}`: the user's sessions are revoked (they log in
/// again with the new role). 400 bad role, 404 unknown user, 409 for the caller's own account
/// or the role the user already has.
pub async fn change_user_role(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<RoleRequest>,
) -> Result<Response, ApiError> {
    let user = existing_user(&state, path).await?;
    let changed = change_role(&state, &caller, user, &request.role).await?;
    Ok(axum::Json(changed).into_response())
}

/// Changes `user`'s role, audited; the API and the users page.
pub async fn change_role(
    state: &ApiState,
    caller: &Caller,
    user: UserRecord,
    role: &str,
) -> Result<RoleChanged, ApiError> {
    let role = parse_role(role)?;
    if user.username == caller.username {
        // An administrator demoting themself could leave nobody to administer.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "an administrator cannot change their own role",
        ));
    }
    if user.role == role {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{} already has the role {role}", user.username),
        ));
    }
    let changed = RoleChanged {
        username: user.username.clone(),
        previous_role: user.role,
        role,
    };
    let change = role_change(user, role, &caller.as_actor(), state.clock.now());
    apply(state, change).await?.map_err(ApiError::unavailable)?;
    tracing::info!(user = %changed.username, role = %role, "role changed");
    Ok(changed)
}

/// [`change_role`] for a user given by name (400 bad name, 404 unknown).
pub async fn change_role_named(
    state: &ApiState,
    caller: &Caller,
    name: String,
    role: &str,
) -> Result<RoleChanged, ApiError> {
    let user = user_named(state, name)?;
    change_role(state, caller, user, role).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    resident: Option<String>,
    /// Only this user's entries.
    user: Option<String>,
}

/// Whose audit trail to read: a resident, and optionally only one user's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailQuery {
    pub resident: ResidentId,
    pub user: Option<Username>,
}

impl TrailQuery {
    /// From `?resident=&user=` as typed: 400 with the reason for a missing or bad value.
    pub fn parse(resident: Option<String>, user: Option<String>) -> Result<Self, ApiError> {
        let resident = resident
            .filter(|text| !text.is_empty())
            .ok_or_else(|| ApiError::bad_request("give the resident: /api/v1/audit?resident=ID"))?;
        let resident = ResidentId::new(resident).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let user = user
            .filter(|text| !text.is_empty())
            .map(Username::new)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Self { resident, user })
    }
}

/// `GET /api/v1/audit?resident=ID[&user=NAME]`: who did what with one resident's records.
/// The read is itself audited.
pub async fn audit_trail(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = TrailQuery::parse(query.resident, query.user)?;
    Ok(axum::Json(read_audit_trail(&state, &caller, &query).await?).into_response())
}

/// The entries naming `query.resident` (only `query.user`'s, if given), oldest first. The
/// read is audited first: it is not served if that fails. The API and the audit page.
pub async fn read_audit_trail(
    state: &ApiState,
    caller: &Caller,
    query: &TrailQuery,
) -> Result<Vec<AuditEntry>, ApiError> {
    let target = query.user.as_ref().map(|user| format!("user {user}"));
    state
        .audit
        .record(caller, Action::ReadAuditTrail, Some(&query.resident), target.as_deref())
        .await
        .map_err(write_failed)?;
    let store = state.client.reads().map_err(ApiError::unavailable)?;
    let mut entries = store
        .audit_for_resident(&query.resident)
        .map_err(ApiError::unavailable)?;
    if let Some(user) = &query.user {
        entries.retain(|entry| entry.username == user.as_str());
    }
    Ok(entries)
}

/// `GET /api/v1/audit/verify`: the whole chain checked; 200 either way, `intact` says.
pub async fn audit_verify(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(check_audit_chain(&state, &caller).await?).into_response())
}

/// Checks the whole chain (a break is logged as an error), then records that it was checked.
/// The API and the audit page.
pub async fn check_audit_chain(state: &ApiState, caller: &Caller) -> Result<ChainReport, ApiError> {
    let report = read_store(state, "audit chain", |store| {
        let raw = store.audit_raw()?;
        let checkpoint = store.audit_checkpoint()?;
        let head = store.audit_head()?;
        Ok(verify_chain(&raw, checkpoint.as_ref(), head.as_ref()))
    })
    .await?;
    if let Some(broken) = &report.first_break {
        tracing::error!(seq = broken.seq, "AUDIT CHAIN BROKEN: {broken}");
    }
    state
        .audit
        .record(caller, Action::VerifyAuditChain, None, None)
        .await
        .map_err(write_failed)?;
    Ok(report)
}
