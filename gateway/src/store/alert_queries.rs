//! Alert lists for the operators' API: filters, two orders and stable cursor paging.
//!
//! Which filters use an index and which scan:
//! - `state` Raised / Acknowledged / Open walks the open-alert index (only open alerts);
//! - otherwise `resident` walks that resident's index entries;
//! - everything else (Resolved, priority, kind, device, raised between) is checked against each
//!   candidate's header, so without one of the two above the whole alerts table is scanned
//!   (headers only: one small JSON decode per alert, histories are read for the page alone).
//!
//! [`AlertOrder::Id`] stops as soon as the page is full; [`AlertOrder::Queue`] must see every
//! candidate to sort them, so it costs the number of candidates: combine it with an indexed
//! filter (the open queue is the usual case).

use std::fmt;
use std::str::FromStr;

use protocol::DeviceId;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::schema::{ALERT_TRANSITIONS, ALERTS, ALERTS_BY_RESIDENT, AlertHeader, OPEN_ALERTS, from_json};
use super::{Store, StoreError, Unreadable, queries};
use crate::domain::{Alert, AlertId, AlertKind, AlertState, Priority, ResidentId, Timestamp};

/// At most this many alerts per page (a larger limit is cut to this).
pub const MAX_ALERT_PAGE: usize = 500;

/// Which alert states to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStateFilter {
    /// Raised, not yet acknowledged.
    Raised,
    Acknowledged,
    Resolved,
    /// Raised or acknowledged: not yet resolved.
    Open,
}

impl AlertStateFilter {
    fn matches(self, state: AlertState) -> bool {
        match self {
            Self::Raised => state == AlertState::Raised,
            Self::Acknowledged => state == AlertState::Acknowledged,
            Self::Resolved => state == AlertState::Resolved,
            Self::Open => state != AlertState::Resolved,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOrder {
    /// The operators' queue: priority (life-safety first), then oldest raised first, then id.
    #[default]
    Queue,
    /// Ascending alert id (allocation order).
    Id,
}

/// Where the previous page ended: the sort key of its last alert. Stable: an alert's
/// priority, raise time and id never change, so pages neither repeat nor skip alerts that
/// were there throughout. Written as `{priority}.{raised_ms}.{id}` (see `Display`/`FromStr`)
/// for a query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertCursor {
    pub priority: Priority,
    pub raised_at: Timestamp,
    pub id: AlertId,
}

impl AlertCursor {
    pub(crate) fn of(header: &AlertHeader) -> Self {
        Self {
            priority: header.priority,
            raised_at: header.raised_at,
            id: header.id,
        }
    }
}

impl fmt::Display for AlertCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.priority as u8,
            self.raised_at.as_millis(),
            self.id.0
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert cursor must be the `next` of an earlier page (priority.raised_ms.id)")]
pub struct InvalidAlertCursor;

impl FromStr for AlertCursor {
    type Err = InvalidAlertCursor;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split('.');
        let (Some(priority), Some(raised), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidAlertCursor);
        };
        let priority = match priority {
            "0" => Priority::LifeSafety,
            "1" => Priority::Wellbeing,
            "2" => Priority::Technical,
            _ => return Err(InvalidAlertCursor),
        };
        // Signed raise times are allowed (tests, clocks before 1970); ids are plain numbers.
        let raised_at = raised.parse::<i64>().map_err(|_| InvalidAlertCursor)?;
        let id = id.parse::<u64>().map_err(|_| InvalidAlertCursor)?;
        Ok(Self {
            priority,
            raised_at: Timestamp(raised_at),
            id: AlertId(id),
        })
    }
}

/// Which alerts to list, how ordered, from where and how many. Every filter given must
/// match. `raised_from` is inclusive, `raised_until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub state: Option<AlertStateFilter>,
    pub priority: Option<Priority>,
    pub kind: Option<AlertKind>,
    pub resident: Option<ResidentId>,
    pub device: Option<DeviceId>,
    pub raised_from: Option<Timestamp>,
    pub raised_until: Option<Timestamp>,
    pub order: AlertOrder,
    /// The previous page's `next`; `None` for the first page.
    pub after: Option<AlertCursor>,
    /// Alerts per page, cut to [`MAX_ALERT_PAGE`]. 0 asks for nothing and gets an empty page
    /// (an API should refuse it as a bad request).
    pub limit: usize,
}

impl AlertQuery {
    pub(crate) fn matches(&self, header: &AlertHeader) -> bool {
        self.state.is_none_or(|state| state.matches(header.state))
            && self.priority.is_none_or(|priority| header.priority == priority)
            && self.kind.is_none_or(|kind| header.kind == kind)
            && self
                .resident
                .as_ref()
                .is_none_or(|resident| header.resident.as_ref() == Some(resident))
            && self.device.is_none_or(|device| header.device == Some(device))
            && self.raised_from.is_none_or(|from| header.raised_at >= from)
            && self.raised_until.is_none_or(|until| header.raised_at < until)
    }

    /// Whether `cursor` comes after the page boundary in this query's order.
    pub(crate) fn after_boundary(&self, cursor: &AlertCursor) -> bool {
        match (self.after, self.order) {
            (None, _) => true,
            (Some(after), AlertOrder::Queue) => *cursor > after,
            (Some(after), AlertOrder::Id) => cursor.id > after.id,
        }
    }
}

/// One page of alerts (each with its whole history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    /// Pass as `after` for the next page; `None` when this page is the last.
    pub next: Option<AlertCursor>,
    /// Alert records met and not readable (also in [`Store::unreadable`]).
    pub unreadable: Vec<Unreadable>,
}

impl Store {
    /// One page of the alerts `query` selects, in its order (see the module doc for cost).
    pub fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, StoreError> {
        let limit = query.limit.min(MAX_ALERT_PAGE);
        let mut page = AlertPage::default();
        if limit == 0 {
            return Ok(page);
        }
        let txn = self.db.begin_read()?;
        let alerts = txn.open_table(ALERTS)?;
        let transitions = txn.open_table(ALERT_TRANSITIONS)?;
        let mut found: Vec<AlertHeader> = Vec::new();
        // Id order stops once it has one more than the page (to know whether a next exists).
        let enough = |found: &Vec<AlertHeader>| query.order == AlertOrder::Id && found.len() > limit;
        let start_id = match (query.order, query.after) {
            (AlertOrder::Id, Some(after)) => after.id.0.saturating_add(1),
            _ => 0,
        };
        let consider =
            |index: &'static str, id: u64, page: &mut AlertPage, found: &mut Vec<AlertHeader>| match read_header(
                &alerts, index, id,
            ) {
                Ok(header) => {
                    if query.matches(&header) && query.after_boundary(&AlertCursor::of(&header)) {
                        found.push(header);
                    }
                    Ok(())
                }
                Err(StoreError::Unreadable(unreadable)) => {
                    self.problems.report(&unreadable);
                    page.unreadable.push(unreadable);
                    Ok(())
                }
                Err(other) => Err(other),
            };
        let open_only = query.state.is_some_and(|state| state != AlertStateFilter::Resolved);
        if open_only {
            let open = txn.open_table(OPEN_ALERTS)?;
            for entry in open.range(start_id..)? {
                let id = entry?.0.value();
                consider("open_alerts", id, &mut page, &mut found)?;
                if enough(&found) {
                    break;
                }
            }
        } else if let Some(resident) = &query.resident {
            let index = txn.open_table(ALERTS_BY_RESIDENT)?;
            for entry in index.range((resident.as_str(), start_id)..=(resident.as_str(), u64::MAX))? {
                let id = entry?.0.value().1;
                consider("alerts_by_resident", id, &mut page, &mut found)?;
                if enough(&found) {
                    break;
                }
            }
        } else {
            for entry in alerts.range(start_id..)? {
                let id = entry?.0.value();
                consider("alerts", id, &mut page, &mut found)?;
                if enough(&found) {
                    break;
                }
            }
        }
        if query.order == AlertOrder::Queue {
            found.sort_unstable_by_key(AlertCursor::of);
        }
        if found.len() > limit {
            found.truncate(limit);
            page.next = found.last().map(AlertCursor::of);
        }
        for header in found {
            page.alerts
                .push(queries::alert_from_header(&transitions, &self.problems, header)?);
        }
        Ok(page)
    }
}

/// The header of alert `id`, which `index` says exists.
fn read_header(
    alerts: &impl ReadableTable<u64, &'static [u8]>,
    index: &'static str,
    id: u64,
) -> Result<AlertHeader, StoreError> {
    let Some(value) = alerts.get(id)? else {
        return Err(Unreadable::new(index, id, "points at a missing alert").into());
    };
    Ok(from_json::<AlertHeader>("alerts", id, value.value())?)
}
