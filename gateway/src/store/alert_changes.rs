//! The alert-change log: every committed alert change gets the next number of one store-wide
//! sequence, written in the same write transaction as the change itself, so a client that saw
//! change N can ask for everything after N and miss nothing, across restarts and reopens.
//!
//! Cost per change is O(1) in the alert's history: the record is the alert's header (state,
//! priority, escalation, affected devices, how many transitions it has) and the commit time;
//! the transitions themselves stay where [`super::WriteBatch::put_alert`] appends them and are
//! read back (the first `transition_count` of them: the history is append-only) when a change
//! is read. The log is bounded by [`AlertChangeRetention`], pruned oldest-first by the writer
//! as it appends; a reader asking for pruned changes is told to reload
//! ([`AlertChangesSince::TooOld`]), never given a silent gap.
//!
//! The table is new in this version without a schema bump (rules in `store/schema.rs`): an
//! older gateway ignores it, and changes such a gateway commits get no seq; the log resumes
//! from the stored next seq when a newer gateway runs again.
//!
//! The interface a second store (PostgreSQL, issue 12) provides: `WriteBatch::record_alert_change`
//! (in the change's transaction) and `Store::alert_changes_since` / `Store::last_alert_change_seq`.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::schema::{
    ALERT_CHANGE_NEXT_SEQ_KEY, ALERT_CHANGES, ALERT_TRANSITIONS, AlertHeader, META, from_json, to_json,
};
use super::{Store, StoreError, Unreadable, WriteBatch, queries};
use crate::domain::{Alert, AlertChange, Timestamp};

/// At most this many changes per [`Store::alert_changes_since`] call (a larger limit is cut).
pub const MAX_ALERT_CHANGES_PAGE: usize = 1000;

/// How much of the change log is kept. A change is pruned once it is older than `max_age_ms`
/// (by commit time, measured at the latest commit) or more than `max_count` changes behind
/// the newest. A client away longer than that reloads its view from the alert list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertChangeRetention {
    pub max_age_ms: i64,
    pub max_count: u64,
}

impl Default for AlertChangeRetention {
    /// 30 days or one million changes, whichever is less: far beyond any reconnect, small on
    /// disk (a change record is a few hundred bytes).
    fn default() -> Self {
        Self {
            max_age_ms: 30 * 24 * 60 * 60 * 1000,
            max_count: 1_000_000,
        }
    }
}

/// The stored form of one change (JSON: the rules in `store/schema.rs` apply).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AlertChangeRecord {
    pub(super) committed_at: Timestamp,
    pub(super) alert: AlertHeader,
}

/// What [`Store::alert_changes_since`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChangesSince {
    /// The changes after the given seq (possibly none: the client is up to date).
    Changes(AlertChangePage),
    /// Some changes after the given seq were pruned by the retention: reload the whole view
    /// (the alert list), then follow from `last_seq`.
    TooOld { oldest_kept: u64, last_seq: u64 },
    /// The given seq is beyond anything this store committed (a client of another store, or a
    /// store restored from an older backup): reload, then follow from `last_seq`.
    Ahead { last_seq: u64 },
}

/// Changes in seq order, with the records that could not be read listed, not skipped quietly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertChangePage {
    pub changes: Vec<AlertChange>,
    /// Change records that did not decode (also in [`Store::unreadable`]).
    pub unreadable: Vec<Unreadable>,
    /// The seq to ask after next time: the last one this page covered (read or not).
    pub next_after: u64,
    /// The newest seq committed when this was read: `next_after == last_seq` means caught up.
    pub last_seq: u64,
}

impl WriteBatch<'_> {
    /// Appends `alert` (as it is after this change) to the change log and returns its seq;
    /// prunes what the retention no longer keeps. Call it in the transaction that stores the
    /// change, so both commit or neither does.
    pub fn record_alert_change(&mut self, alert: &Alert, committed_at: Timestamp) -> Result<u64, StoreError> {
        let record = AlertChangeRecord {
            committed_at,
            alert: AlertHeader::of(alert),
        };
        let bytes = to_json("alert_changes", &record)?;
        let seq = {
            let mut meta = self.txn.open_table(META)?;
            let seq = meta.get(ALERT_CHANGE_NEXT_SEQ_KEY)?.map_or(1, |next| next.value());
            meta.insert(ALERT_CHANGE_NEXT_SEQ_KEY, seq.saturating_add(1))?;
            seq
        };
        let mut changes = self.txn.open_table(ALERT_CHANGES)?;
        changes.insert(seq, bytes.as_slice())?;
        let retention = self.alert_change_retention;
        let keep_from_seq = seq.saturating_sub(retention.max_count.saturating_sub(1)).max(1);
        let keep_from_time = committed_at.as_millis().saturating_sub(retention.max_age_ms);
        loop {
            let prune = match changes.first()? {
                // The newest change is always kept, whatever its age.
                Some((key, _)) if key.value() >= seq => false,
                Some((key, _)) if key.value() < keep_from_seq => true,
                Some((key, value)) => match from_json::<AlertChangeRecord>("alert_changes", key.value(), value.value())
                {
                    Ok(old) => old.committed_at.as_millis() < keep_from_time,
                    // Cannot tell its age: the count bound will remove it in time.
                    Err(_) => false,
                },
                None => false,
            };
            if !prune || changes.pop_first()?.is_none() {
                break;
            }
        }
        Ok(seq)
    }
}

impl Store {
    /// The newest committed alert-change seq; 0 if there was none yet.
    pub fn last_alert_change_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get(ALERT_CHANGE_NEXT_SEQ_KEY)?
            .map_or(1, |next| next.value())
            .saturating_sub(1))
    }

    /// Alert changes with a seq above `after`, oldest first, at most `limit` (capped at
    /// [`MAX_ALERT_CHANGES_PAGE`]; 0 gives an empty page that still says where the log is).
    /// `after = 0` starts at the beginning. Each change carries the alert as it was right
    /// after it; reading one costs the alert's history length (see the module doc).
    pub fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError> {
        let limit = limit.min(MAX_ALERT_CHANGES_PAGE);
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let last_seq = meta
            .get(ALERT_CHANGE_NEXT_SEQ_KEY)?
            .map_or(1, |next| next.value())
            .saturating_sub(1);
        if after > last_seq {
            return Ok(AlertChangesSince::Ahead { last_seq });
        }
        let changes = txn.open_table(ALERT_CHANGES)?;
        let oldest_kept = changes
            .first()?
            .map_or(last_seq.saturating_add(1), |(key, _)| key.value());
        if after.saturating_add(1) < oldest_kept {
            return Ok(AlertChangesSince::TooOld { oldest_kept, last_seq });
        }
        let transitions = txn.open_table(ALERT_TRANSITIONS)?;
        let mut page = AlertChangePage {
            next_after: after,
            last_seq,
            ..AlertChangePage::default()
        };
        if limit == 0 {
            return Ok(AlertChangesSince::Changes(page));
        }
        for entry in changes.range(after.saturating_add(1)..)?.take(limit) {
            let (key, value) = entry?;
            let seq = key.value();
            page.next_after = seq;
            let read = from_json::<AlertChangeRecord>("alert_changes", seq, value.value())
                .map_err(StoreError::from)
                .and_then(|record| {
                    let alert = queries::alert_from_header(&transitions, &self.problems, record.alert)?;
                    Ok(AlertChange {
                        seq,
                        committed_at: record.committed_at,
                        alert,
                    })
                });
            match read {
                Ok(change) => page.changes.push(change),
                Err(StoreError::Unreadable(unreadable)) => {
                    self.problems.report(&unreadable);
                    page.unreadable.push(unreadable);
                }
                Err(other) => return Err(other),
            }
        }
        Ok(AlertChangesSince::Changes(page))
    }

    /// Keeps the change log as `retention` says (applied as changes are appended).
    pub fn with_alert_change_retention(mut self, retention: AlertChangeRetention) -> Self {
        self.alert_change_retention = retention;
        self
    }
}
