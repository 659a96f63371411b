//! The alert routes of the `/api/v1` API (issue 8, item 1): the operators' queue, one alert,
//! the operator actions and the live stream (Server-Sent Events). Registered in
//! [`crate::http::api_routes`] with their roles; `docs/access.md` is the written version.
//!
//! Reads go to the store in `spawn_blocking`; actions go through the committer
//! ([`crate::app::GatewayClient`]), with the caller's username as the operator, and are
//! audited before the answer is sent.

use std::collections::VecDeque;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::audit::Action;
use super::guard::{ApiError, ApiJson};
use super::{ApiState, Caller};
use crate::alerts::{EngineError, Resolution};
use crate::app::GatewayClient;
use crate::domain::{Alert, AlertChange, AlertId, AlertKind, CallOutcome, Outcome, Priority, ResidentId, Timestamp};
use crate::store::{
    AlertChangesSince, AlertCursor, AlertOrder, AlertPage, AlertQuery, AlertStateFilter, MAX_ALERT_PAGE,
};
use crate::writer::core::OperatorError;

/// Alerts per page when the request does not say.
pub const DEFAULT_ALERT_PAGE: usize = 50;
/// Changes read from the store per page while a stream catches up.
const STREAM_PAGE: usize = 200;
/// Keep-alive comment interval on the stream.
pub const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query string of `GET /api/v1/alerts`; every value as text, parsed with an error that
/// names the parameter. Unknown parameters are refused.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertListParams {
    /// `raised`, `acknowledged`, `resolved` or `open`.
    pub state: Option<String>,
    /// `life_safety`, `wellbeing` or `technical`.
    pub priority: Option<String>,
    /// An alert kind's snake_case name (`pendant_press`, `fall`, ...).
    pub kind: Option<String>,
    pub resident: Option<String>,
    pub device: Option<String>,
    /// RFC 3339; inclusive.
    pub raised_since: Option<String>,
    /// RFC 3339; exclusive.
    pub raised_until: Option<String>,
    /// `queue` (default) or `id`.
    pub order: Option<String>,
    /// The previous page's `next`.
    pub cursor: Option<String>,
    /// 1-500, default 50.
    pub limit: Option<String>,
}

/// One page of alerts as the API answers it (and `tec-gateway alerts --api` reads it).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertListPage {
    /// Alerts as stored (see `Alert` in gateway/src/domain.rs).
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<Alert>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next: Option<String>,
    /// Alert records met that could not be read (ids in the gateway log): the page is
    /// incomplete, not silently short.
    pub unreadable: usize,
}

/// A snake_case name of a serde enum (`life_safety`, `false_alarm`).
fn enum_value<T: serde::de::DeserializeOwned>(param: &str, text: &str, expected: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        ApiError::bad_request(format!(
            "bad {param} {:?}: expected {expected}",
            text.chars().take(64).collect::<String>()
        ))
    })
}

/// `?resident=`, or a 400 saying why it is not a resident id.
pub(crate) fn resident_param(text: Option<&str>) -> Result<Option<ResidentId>, ApiError> {
    text.map(|s| ResidentId::new(s).map_err(|e| ApiError::bad_request(format!("bad resident: {e}"))))
        .transpose()
}

/// `?device=`, or a 400 saying why it is not a device id.
pub(crate) fn device_param(text: Option<&str>) -> Result<Option<protocol::DeviceId>, ApiError> {
    text.map(|s| protocol::DeviceId::new(s).map_err(|e| ApiError::bad_request(format!("bad device: {e}"))))
        .transpose()
}

/// A query parameter's RFC 3339 time, or a 400 naming the parameter.
pub(crate) fn rfc3339(param: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse::<jiff::Timestamp>().map(Timestamp::from_jiff).map_err(|_| {
        ApiError::bad_request(format!(
            "bad {param}: expected an RFC 3339 time such as 2026-11-23T10:00:00Z"
        ))
    })
}

impl AlertListParams {
    /// The store query these parameters ask for, or a 400 naming the bad parameter (the
    /// console's history search builds its parameters and checks them here too).
    pub fn query(&self) -> Result<AlertQuery, ApiError> {
        let state = self
            .state
            .as_deref()
            .map(|s| enum_value::<AlertStateFilter>("state", s, "raised, acknowledged, resolved or open"))
            .transpose()?;
        let priority = self
            .priority
            .as_deref()
            .map(|s| enum_value::<Priority>("priority", s, "life_safety, wellbeing or technical"))
            .transpose()?;
        let kind = self
            .kind
            .as_deref()
            .map(|s| enum_value::<AlertKind>("kind", s, "an alert kind such as pendant_press or fall"))
            .transpose()?;
        let resident = resident_param(self.resident.as_deref())?;
        let device = device_param(self.device.as_deref())?;
        let raised_from = self
            .raised_since
            .as_deref()
            .map(|s| rfc3339("raised_since", s))
            .transpose()?;
        let raised_until = self
            .raised_until
            .as_deref()
            .map(|s| rfc3339("raised_until", s))
            .transpose()?;
        if let (Some(from), Some(until)) = (raised_from, raised_until)
            && until <= from
        {
            return Err(ApiError::bad_request("bad raised_until: it must be after raised_since"));
        }
        let order = self
            .order
            .as_deref()
            .map(|s| enum_value::<AlertOrder>("order", s, "queue or id"))
            .transpose()?
            .unwrap_or_default();
        let after = self
            .cursor
            .as_deref()
            .map(|s| {
                s.parse::<AlertCursor>()
                    .map_err(|e| ApiError::bad_request(format!("bad cursor: {e}")))
            })
            .transpose()?;
        let limit = match self.limit.as_deref() {
            None => DEFAULT_ALERT_PAGE,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_ALERT_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("bad limit: expected a number from 1 to {MAX_ALERT_PAGE}"))
                })?,
        };
        Ok(AlertQuery {
            state,
            priority,
            kind,
            resident,
            device,
            raised_from,
            raised_until,
            order,
            after,
            limit,
        })
    }
}

fn store_failed(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %error, "alert read failed");
    ApiError::unavailable(error)
}

/// A store read off the async threads.
async fn read<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&GatewayClient) -> Result<T, OperatorError> + Send + 'static,
) -> Result<T, ApiError> {
    let client = state.client.clone();
    tokio::task::spawn_blocking(move || f(&client))
        .await
        .map_err(store_failed)?
        .map_err(store_failed)
}

/// One page of the alerts `query` selects, read off the async threads, for the API and the
/// console's queue alike; records that could not be read are logged with their keys.
pub async fn alert_page(state: &ApiState, query: AlertQuery) -> Result<AlertPage, ApiError> {
    let page = read(state, move |client| client.alert_page(&query)).await?;
    for unreadable in &page.unreadable {
        tracing::error!(table = unreadable.table, key = %unreadable.key, "unreadable alert record in a page");
    }
    Ok(page)
}

/// `GET /api/v1/alerts`: one page of alerts (filters, order, cursor).
pub async fn list_alerts(
    State(state): State<ApiState>,
    params: Result<Query<AlertListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let page = alert_page(&state, params.query()?).await?;
    Ok(axum::Json(AlertListPage {
        unreadable: page.unreadable.len(),
        next: page.next.map(|cursor| cursor.to_string()),
        alerts: page.alerts,
    })
    .into_response())
}

pub fn alert_id(path: Result<Path<String>, PathRejection>) -> Result<AlertId, ApiError> {
    let Path(text) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    text.parse::<u64>()
        .map(AlertId)
        .map_err(|_| ApiError::bad_request("bad alert id: expected a number"))
}

/// `GET /api/v1/alerts/{id}`: the alert with its transitions and notes.
pub async fn get_alert(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = alert_id(path)?;
    match read(&state, move |client| client.alert(id)).await? {
        Some(alert) => Ok(axum::Json(alert).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no alert {id}"))),
    }
}

/// An engine refusal or a failure as an HTTP answer.
fn action_failed(error: OperatorError) -> ApiError {
    match error {
        OperatorError::Engine(engine) => {
            let status = match &engine {
                EngineError::UnknownAlert(_) => StatusCode::NOT_FOUND,
                EngineError::AlreadyResolved(_) | EngineError::InvalidTransition { .. } => StatusCode::CONFLICT,
                EngineError::MissingOperator | EngineError::ReservedOperator(_) => StatusCode::FORBIDDEN,
                EngineError::EmptyNote
                | EngineError::NoteRequired(_)
                | EngineError::NoteTooLong { .. }
                | EngineError::LateAnswerReasonRequired { .. } => StatusCode::BAD_REQUEST,
                EngineError::NoOpenFollowUp(_) => StatusCode::CONFLICT,
                EngineError::CorruptState { .. } => {
                    tracing::error!(error = %engine, "alert action failed");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            ApiError::new(status, engine.to_string())
        }
        OperatorError::NoSuchResponder { .. } => ApiError::bad_request(error.to_string()),
        OperatorError::NoChange(id) => ApiError::new(
            StatusCode::CONFLICT,
            format!("the action changed nothing on alert {id}"),
        ),
        other => {
            tracing::error!(error = %other, "alert action not committed");
            ApiError::unavailable(other)
        }
    }
}

/// Records a done action; a failure to record answers 503 (the alert itself keeps the
/// operator and time of the action).
async fn audited(
    state: &ApiState,
    caller: &Caller,
    action: Action,
    alert: Alert,
    target: String,
) -> Result<Response, ApiError> {
    if let Err(error) = state
        .audit
        .record(caller, action, alert.resident.as_ref(), Some(&target))
        .await
    {
        tracing::error!(error = %error, alert = %alert.id, "alert action done but its audit entry was not written");
        return Err(ApiError::unavailable(format!(
            "the action was recorded on alert {} but its audit entry could not be written: {error}",
            alert.id
        )));
    }
    Ok(axum::Json(alert).into_response())
}

/// `POST /api/v1/alerts/{id}/acknowledge`: the caller takes the alert; the device hears
/// "help is on the way". No body needed.
pub async fn acknowledge_alert(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = alert_id(path)?;
    let alert = state
        .client
        .acknowledge(id, caller.username.as_str())
        .await
        .map_err(action_failed)?;
    audited(
        &state,
        &caller,
        Action::AlertAcknowledged,
        alert,
        format!("alert {}", id.0),
    )
    .await
}

/// Body of `POST /api/v1/alerts/{id}/notes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub text: String,
}

impl std::fmt::Debug for NoteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteRequest").finish_non_exhaustive()
    }
}

/// `POST /api/v1/alerts/{id}/notes` `{"text": "..."}`.
pub async fn add_alert_note(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<NoteRequest>,
) -> Result<Response, ApiError> {
    let id = alert_id(path)?;
    let alert = state
        .client
        .add_note(id, caller.username.as_str(), &request.text)
        .await
        .map_err(action_failed)?;
    audited(
        &state,
        &caller,
        Action::AlertNoteAdded,
        alert,
        format!("alert {}", id.0),
    )
    .await
}

/// Body of `POST /api/v1/alerts/{id}/resolve`: the outcome by its serde name
/// (`docs/outcomes.md`), the note some outcomes require, the reason for a late answer
/// (required beyond 180 s for life-safety and wellbeing alerts) and a follow-up to do later.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// An outcome's snake_case name (docs/outcomes.md).
    #[schema(value_type = String)]
    pub outcome: Outcome,
    #[serde(default)]
    pub note: Option<String>,
    /// Why the alert was answered after the 180 s standard.
    #[serde(default)]
    pub exception_reason: Option<String>,
    /// A visit, call back or check promised: it stays on the worklist until done.
    #[serde(default)]
    pub follow_up: Option<String>,
}

impl std::fmt::Debug for ResolveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveRequest")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/alerts/{id}/resolve`
/// `{"outcome": "...", "note": "...", "exception_reason": "...", "follow_up": "..."}`.
pub async fn resolve_alert(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<ResolveRequest>,
) -> Result<Response, ApiError> {
    let id = alert_id(path)?;
    let outcome = request.outcome;
    let resolution = Resolution {
        outcome,
        note: request.note,
        exception_reason: request.exception_reason,
        follow_up: request.follow_up,
    };
    let alert = state
        .client
        .resolve_with(id, caller.username.as_str(), resolution)
        .await
        .map_err(action_failed)?;
    let name = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    audited(
        &state,
        &caller,
        Action::AlertResolved,
        alert,
        format!("alert {}: {name}", id.0),
    )
    .await
}

/// Body of `POST /api/v1/alerts/{id}/responder-calls`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponderCallRequest {
    /// Place in the resident's responder list, from 0 (the order they are called in).
    pub responder: usize,
    /// `will_attend`, `cannot_attend`, `no_answer`, `left_message` or `number_unobtainable`.
    #[schema(value_type = String)]
    pub outcome: CallOutcome,
}

/// `POST /api/v1/alerts/{id}/responder-calls` `{"responder": 0, "outcome": "no_answer"}`: one
/// call to a responder of the alert's resident, recorded on the open alert with the name
/// the resident's record holds now.
pub async fn record_responder_call(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<ResponderCallRequest>,
) -> Result<Response, ApiError> {
    let id = alert_id(path)?;
    let alert = state
        .client
        .record_responder_call(id, caller.username.as_str(), request.responder, request.outcome)
        .await
        .map_err(action_failed)?;
    audited(
        &state,
        &caller,
        Action::ResponderCalled,
        alert,
        format!(
            "alert {}: responder {}: {}",
            id.0,
            request.responder,
            request.outcome.as_str()
        ),
    )
    .await
}

/// Body of `POST /api/v1/alerts/{id}/follow-up-done` (may be empty: `{}`).
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUpDoneRequest {
    #[serde(default)]
    pub note: Option<String>,
}

impl std::fmt::Debug for FollowUpDoneRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowUpDoneRequest").finish_non_exhaustive()
    }
}

/// `POST /api/v1/alerts/{id}/follow-up-done` `{"note": "..."}`: the follow-up promised when
/// the alert was resolved is done (409 if it has none outstanding).
pub async fn follow_up_done(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<FollowUpDoneRequest>,
) -> Result<Response, ApiError> {
    let id = alert_id(path)?;
    let alert = state
        .client
        .follow_up_done(id, caller.username.as_str(), request.note)
        .await
        .map_err(action_failed)?;
    audited(&state, &caller, Action::FollowUpDone, alert, format!("alert {}", id.0)).await
}

/// The query string of `GET /api/v1/alerts/stream`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this event id (seq); the `Last-Event-ID` header wins over it.
    after: Option<String>,
}

fn seq_param(name: &str, text: &str) -> Result<u64, ApiError> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("bad {name}: expected the id (seq) of an alert event")))
}

/// Where a stream is: catching up from the store, or following the live broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    CatchUp,
    Live,
    Done,
}

struct AlertStream {
    client: GatewayClient,
    live: broadcast::Receiver<AlertChange>,
    /// The last seq sent (or the resume point); `None`: a fresh client, nothing sent yet.
    last: Option<u64>,
    phase: Phase,
    pending: VecDeque<Result<Event, axum::Error>>,
}

fn alert_event(change: &AlertChange) -> Result<Event, axum::Error> {
    Event::default()
        .id(change.seq.to_string())
        .event("alert")
        .json_data(&change.alert)
}

fn reset_event(reason: &str, last_seq: u64) -> Result<Event, axum::Error> {
    Event::default()
        .id(last_seq.to_string())
        .event("reset")
        .json_data(serde_json::json!({ "reason": reason, "last_seq": last_seq }))
}

impl AlertStream {
    /// Reads the next page of changes after `last` from the store into `pending`.
    async fn catch_up(&mut self) {
        let after = self.last.unwrap_or(0);
        let client = self.client.clone();
        let found = tokio::task::spawn_blocking(move || client.alert_changes_since(after, STREAM_PAGE)).await;
        match found {
            Ok(Ok(AlertChangesSince::Changes(page))) => {
                for change in &page.changes {
                    self.pending.push_back(alert_event(change));
                }
                if !page.unreadable.is_empty() {
                    for unreadable in &page.unreadable {
                        tracing::error!(table = unreadable.table, key = %unreadable.key, "unreadable alert change on a stream");
                    }
                    self.pending.push_back(reset_event(
                        "some alert changes are unreadable: reload the alert list",
                        page.next_after,
                    ));
                }
                self.last = Some(page.next_after.max(after));
                if page.next_after >= page.last_seq {
                    self.phase = Phase::Live;
                }
            }
            Ok(Ok(AlertChangesSince::TooOld { last_seq, .. })) => {
                self.pending.push_back(reset_event(
                    "changes since that event are no longer kept: reload the alert list",
                    last_seq,
                ));
                self.last = Some(last_seq);
                self.phase = Phase::Live;
            }
            Ok(Ok(AlertChangesSince::Ahead { last_seq })) => {
                self.pending.push_back(reset_event(
                    "that event is unknown to this gateway: reload the alert list",
                    last_seq,
                ));
                self.last = Some(last_seq);
                self.phase = Phase::Live;
            }
            Ok(Err(error)) => self.fail(error.to_string()),
            Err(error) => self.fail(error.to_string()),
        }
    }

    /// Ends the stream with an error event; the client reconnects with its Last-Event-ID.
    fn fail(&mut self, error: String) {
        tracing::error!(error = %error, "alert stream ended: the store could not be read");
        let event = Event::default()
            .event("error")
            .json_data(serde_json::json!({ "error": format!("unavailable: {error}; reconnect") }));
        self.pending.push_back(event);
        self.phase = Phase::Done;
    }

    async fn next_event(mut self) -> Option<(Result<Event, axum::Error>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((event, self));
            }
            match self.phase {
                Phase::Done => return None,
                Phase::CatchUp => self.catch_up().await,
                Phase::Live => {
                    let received = tokio::select! {
                        () = self.client.stopped() => {
                            self.phase = Phase::Done;
                            continue;
                        }
                        received = self.live.recv() => received,
                    };
                    match received {
                        Ok(change) => match self.last {
                            // Already sent from the store.
                            Some(last) if change.seq <= last => {}
                            // A gap: read it from the store (which has every committed change).
                            Some(last) if change.seq > last + 1 => self.phase = Phase::CatchUp,
                            _ => {
                                self.last = Some(change.seq);
                                self.pending.push_back(alert_event(&change));
                            }
                        },
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "alert stream lagged: catching up from the store");
                            if self.last.is_none() {
                                // A fresh client: resume from what the store had then.
                                let client = self.client.clone();
                                let last = tokio::task::spawn_blocking(move || {
                                    client
                                        .store()
                                        .map_err(|e| e.to_string())?
                                        .last_alert_change_seq()
                                        .map_err(|e| e.to_string())
                                })
                                .await;
                                match last {
                                    Ok(Ok(last)) => {
                                        self.pending.push_back(reset_event(
                                            "the stream fell behind: reload the alert list",
                                            last,
                                        ));
                                        self.last = Some(last);
                                    }
                                    Ok(Err(error)) => self.fail(error),
                                    Err(error) => self.fail(error.to_string()),
                                }
                            } else {
                                self.phase = Phase::CatchUp;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => self.phase = Phase::Done,
                    }
                }
            }
        }
    }
}

/// `GET /api/v1/alerts/stream`: every alert change as Server-Sent Events (`id:` the change's
/// seq, `event: alert`, `data:` the alert). With `Last-Event-ID` (or `?after=SEQ`) the changes
/// after it come first from the store, then the live stream; `event: reset` tells the client
/// to reload its view when the changes it missed are no longer kept.
pub async fn alert_stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // The header wins: a browser reconnecting keeps the URL's `after` but sends a newer id.
    let header = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("bad Last-Event-ID: expected the id (seq) of an alert event"))
                .and_then(|text| seq_param("Last-Event-ID", text))
        })
        .transpose()?;
    let after = params
        .after
        .as_deref()
        .map(|text| seq_param("after", text))
        .transpose()?;
    let resume = header.or(after);
    // Subscribe first, so nothing committed from now on can be missed.
    let live = state.client.subscribe_alerts();
    let stream = AlertStream {
        client: state.client.clone(),
        live,
        last: resume,
        phase: if resume.is_some() { Phase::CatchUp } else { Phase::Live },
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(stream, AlertStream::next_event);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE))
        .into_response())
}
