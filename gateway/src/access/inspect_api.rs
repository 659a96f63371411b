//! The inspection routes of the `/api/v1` API (issue 8, item 1): the records that
//! `tec-gateway events` and `tec-gateway quarantine` print, read from a running gateway (which
//! holds the store locked). They answer the store's own records (`StoredEvent`,
//! `QuarantineRecord`, as `GET /alerts` answers `Alert`), so the command line formats them
//! through the very code that formats the store read offline: same table, same JSON.
//! Registered in [`crate::http::api_routes`]; roles and audit in `docs/access.md`
//! ("Inspection").

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::alerts_api::{device_param, resident_param, rfc3339};
use super::audit::Action;
use super::guard::{ApiError, read_store};
use super::residents_api::{EventPosition as Position, decode_cursor, encode_cursor, events_after};
use super::{ApiState, Caller};
use crate::domain::{QuarantineRecord, ResidentId, StoredEvent};
use crate::store::{EventFilter, EventRead, Unreadable};

/// The store's name for the quarantine table, as its unreadable records are named.
const QUARANTINE_TABLE: &str = "quarantine";

/// Events per page when the request does not say, and the most a page holds.
pub const INSPECT_EVENTS_DEFAULT_LIMIT: usize = 1000;
pub const INSPECT_EVENTS_MAX_LIMIT: usize = 5000;

/// One stored event and which copy of its key it is (see `EventRead`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectedEvent {
    pub copy: u32,
    pub event: StoredEvent,
}

impl From<InspectedEvent> for EventRead {
    fn from(InspectedEvent { copy, event }: InspectedEvent) -> Self {
        EventRead { copy, event }
    }
}

/// `GET /api/v1/inspect/events`: one page, in store order.
#[derive(Debug, Serialize, Deserialize)]
pub struct InspectEventsPage {
    pub events: Vec<InspectedEvent>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next: Option<String>,
    /// Stored records met on the way that could not be read, each named.
    pub unreadable: Vec<String>,
}

/// Most quarantined records one answer holds (the default quarantine capacity): a gateway
/// configured to keep more must not build an answer of gigabytes while it takes alarms.
pub const INSPECT_QUARANTINE_MAX_LIMIT: usize = 10_000;

/// `GET /api/v1/inspect/quarantine`: newest first.
#[derive(Debug, Serialize, Deserialize)]
pub struct InspectQuarantine {
    pub records: Vec<QuarantineRecord>,
    /// How many records the quarantine holds: more than `records` when the limit cut it.
    pub kept: u64,
    pub unreadable: Vec<String>,
}

/// The query of `GET /api/v1/inspect/events`, as text; unknown parameters are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectEventsParams {
    device: Option<String>,
    resident: Option<String>,
    /// RFC 3339, inclusive.
    since: Option<String>,
    /// RFC 3339, exclusive.
    until: Option<String>,
    /// 1 to [`INSPECT_EVENTS_MAX_LIMIT`].
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug)]
struct EventsQuery {
    filter: EventFilter,
    limit: usize,
    after: Option<Position>,
}

impl InspectEventsParams {
    fn query(&self) -> Result<EventsQuery, ApiError> {
        let device = device_param(self.device.as_deref())?;
        let resident = resident_param(self.resident.as_deref())?;
        let since = self.since.as_deref().map(|s| rfc3339("since", s)).transpose()?;
        let until = self.until.as_deref().map(|s| rfc3339("until", s)).transpose()?;
        let limit = match self.limit.as_deref() {
            None => INSPECT_EVENTS_DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=INSPECT_EVENTS_MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "bad limit: expected a number from 1 to {INSPECT_EVENTS_MAX_LIMIT}"
                    ))
                })?,
        };
        let after = self
            .cursor
            .as_deref()
            .map(|s| decode_cursor(s).ok_or_else(|| ApiError::bad_request("bad cursor")))
            .transpose()?;
        Ok(EventsQuery {
            filter: EventFilter {
                device,
                resident,
                since,
                until,
                limit: None,
            },
            limit,
            after,
        })
    }
}

async fn audit(
    state: &ApiState,
    caller: &Caller,
    action: Action,
    resident: Option<&ResidentId>,
    target: &str,
) -> Result<(), ApiError> {
    state
        .audit
        .record(caller, action, resident, Some(target))
        .await
        .map(drop)
        .map_err(|e| {
            tracing::error!(error = %e, "audit entry not recorded: request refused");
            ApiError::unavailable(e)
        })
}

fn named(unreadable: impl IntoIterator<Item = Unreadable>) -> Vec<String> {
    let named: Vec<String> = unreadable.into_iter().map(|u| u.to_string()).collect();
    if !named.is_empty() {
        tracing::error!(unreadable = named.len(), "inspection read met unreadable records");
    }
    named
}

/// `GET /api/v1/inspect/events?device=&resident=&since=&until=&limit=&cursor=`: the events
/// `tec-gateway events` lists. Audited as `read_history` (with the resident when the read
/// is one resident's) before the answer.
pub async fn inspect_events(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<InspectEventsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = params.query()?;
    let resident = query.filter.resident.clone();
    let target = match &query.filter.device {
        Some(device) => format!("inspect events of device {device}"),
        None => "inspect events".to_owned(),
    };
    let found = read_store(&state, "inspection", move |store| {
        events_after(store, &query.filter, query.after, query.limit, |_| true)
    })
    .await?;
    audit(&state, &caller, Action::ReadHistory, resident.as_ref(), &target).await?;
    Ok(axum::Json(InspectEventsPage {
        events: found
            .events
            .into_iter()
            .map(|EventRead { copy, event }| InspectedEvent { copy, event })
            .collect(),
        next: found.next.map(encode_cursor),
        unreadable: named(found.unreadable),
    })
    .into_response())
}

/// The query of `GET /api/v1/inspect/quarantine`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectQuarantineParams {
    /// The newest this many, 1 to [`INSPECT_QUARANTINE_MAX_LIMIT`] (the default).
    limit: Option<String>,
}

/// `GET /api/v1/inspect/quarantine?limit=`: the rejected payloads `tec-gateway quarantine`
/// lists, newest first. Audited as `read_quarantine` before the answer.
pub async fn inspect_quarantine(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<InspectQuarantineParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match params.limit.as_deref() {
        None => INSPECT_QUARANTINE_MAX_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=INSPECT_QUARANTINE_MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "bad limit: expected a number from 1 to {INSPECT_QUARANTINE_MAX_LIMIT}"
                ))
            })?,
    };
    let (records, kept, unreadable) = read_store(&state, "inspection", move |store| {
        let records = store.quarantined(Some(limit))?;
        let kept = store.quarantine_len()?;
        // The shared store lists every unreadable record it met since the gateway started:
        // answer those of the quarantine table (a damaged record stays listed until restart).
        let unreadable: Vec<Unreadable> = store
            .unreadable()
            .into_iter()
            .filter(|u| u.table == QUARANTINE_TABLE)
            .collect();
        Ok((records, kept, unreadable))
    })
    .await?;
    audit(&state, &caller, Action::ReadQuarantine, None, "quarantine").await?;
    Ok(axum::Json(InspectQuarantine {
        records,
        kept,
        unreadable: named(unreadable),
    })
    .into_response())
}
