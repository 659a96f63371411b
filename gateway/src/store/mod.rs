//! The gateway's durable store on redb: events (idempotent on device, boot and seq), alerts,
//! the device and resident register, assignments, the quarantine and alert-engine state.
//!
//! One [`WriteBatch`] is one redb write transaction; [`WriteBatch::commit`] returns only once
//! the data is on disk (fsync), which is what lets ingest send PUBACKs and receipts.

mod access;
mod activity;
mod alert_changes;
mod alert_queries;
mod backup;
mod error;
/// The PostgreSQL store (issue 12), beside redb; see `docs/postgres.md`.
pub mod pg_reader;
pub mod postgres;
mod problems;
mod queries;
mod register;
mod retention;
mod schema;
/// The store seam: one interface over redb and PostgreSQL for the writer's core and the console.
pub mod seam;
mod write;

use std::path::{Path, PathBuf};

use protocol::DeviceId;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::domain::{
    Alert, AlertId, Assignment, DeviceRecord, EventKey, QuarantineRecord, Resident, ResidentId, StoredEvent, Timestamp,
};

pub use access::audit_hash as access_audit_hash;
pub use access::{
    AUDIT_GENESIS_HASH, AccessChange, AccessOp, AccessRefusal, AccessStore, AuditDraft, AuditEntry, AuditHead,
    SessionRecord, UserRecord,
};
pub use activity::{DayCalendar, REPORT_TIMEZONE, date_of_day, day_number};
pub use alert_changes::{AlertChangePage, AlertChangeRetention, AlertChangesSince, MAX_ALERT_CHANGES_PAGE};
pub use alert_queries::{
    AlertCursor, AlertOrder, AlertPage, AlertQuery, AlertStateFilter, InvalidAlertCursor, MAX_ALERT_PAGE,
};
pub use backup::{
    BackupError, BackupReport, BackupSummary, Progress as BackupProgress, TableRows, restore_backup, table_names,
    verify_backup,
};
pub use error::{StoreError, Unreadable};
pub use retention::{AuditCheckpoint, CompactedEvents, ErasureState, ErasureStep, Progress};
pub use schema::SCHEMA_VERSION;
pub use seam::{CommitOutcome, ConsoleReads, PgBlocking, PgTxn, ReadStore, WriteStore, WriteTxn};
pub use write::{InsertOutcome, NewEvent, WriteBatch};

pub use problems::Problems;
use schema::*;

/// File name of the store inside the gateway's data directory.
pub const STORE_FILE_NAME: &str = "tec-gateway.redb";
pub const DEFAULT_QUARANTINE_CAPACITY: usize = 10_000;
/// Quarantined payloads are cut to this many bytes (the original length is kept).
pub const QUARANTINE_PAYLOAD_LIMIT: usize = 1024;

/// Which events to return. `Default` is every event. `since` is inclusive, `until` exclusive;
/// both compare with the gateway's receive time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub device: Option<DeviceId>,
    pub resident: Option<ResidentId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// At most this many, the earliest first.
    pub limit: Option<usize>,
}

/// One stored event and which copy of its key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRead {
    /// 0 for the first event stored under its (device, boot, seq); 1, 2, ... for later events
    /// under the same key with different content (the device reused the key).
    pub copy: u32,
    pub event: StoredEvent,
}

/// What an events query found: the readable events, and the records it could not read
/// (which are also in [`Store::unreadable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<EventRead>,
    pub unreadable: Vec<Unreadable>,
}

impl EventPage {
    /// Just the events (tests and callers that check `unreadable` themselves).
    pub fn into_events(self) -> Vec<StoredEvent> {
        self.events.into_iter().map(|read| read.event).collect()
    }
}

/// Which alerts to return, in id order. `since` compares with `raised_at` (inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub open_only: bool,
    pub resident: Option<ResidentId>,
    pub since: Option<Timestamp>,
    /// At most this many, the lowest ids first.
    pub limit: Option<usize>,
}

/// Queries over many records skip one they cannot read, after reporting it.
macro_rules! readable_or_skip {
    ($problems:expr, $found:expr) => {
        match $found {
            Ok(value) => value,
            Err(StoreError::Unreadable(unreadable)) => {
                $problems.report(&unreadable);
                continue;
            }
            Err(other) => return Err(other),
        }
    };
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    quarantine_capacity: usize,
    alert_change_retention: AlertChangeRetention,
    problems: Problems,
}

/// Ceiling of redb's page cache. redb's own default is 1 GiB, which at a national fleet's
/// working set would let the cache alone take the gateway's whole memory budget (1 GB at
/// 1,000,000 devices, BENCHMARKS.md); this holds the tables' interior pages many times over.
pub const STORE_CACHE_BYTES: usize = 256 * 1024 * 1024;

impl Store {
    /// Opens (or creates) the store file at `path`. Refuses a file written by a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder().set_cache_size(STORE_CACHE_BYTES).create(path)?;
        Self::init(db, path)
    }

    /// Opens (or creates) the store on a custom redb storage backend; `path` only names it
    /// in logs and errors. For fault-injection tests (a backend that fails on cue).
    pub fn open_with_backend(backend: impl redb::StorageBackend, path: &Path) -> Result<Store, StoreError> {
        Self::init(Database::builder().create_with_backend(backend)?, path)
    }

    fn init(db: Database, path: &Path) -> Result<Store, StoreError> {
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_VERSION_KEY)?.map(|version| version.value());
            match found {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, u64::from(SCHEMA_VERSION))?;
                }
                Some(found) if found > u64::from(SCHEMA_VERSION) => {
                    drop(meta);
                    txn.abort()?;
                    return Err(StoreError::SchemaTooNew {
                        found: u32::try_from(found).unwrap_or(u32::MAX),
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
            }
        }
        // Create every table up front so read transactions never meet a missing one.
        backup::create_every_table(&txn)?;
        activity::build_if_missing(&txn)?;
        let indexed = access::catch_up_audit_index(&txn)?;
        if indexed > 0 {
            tracing::info!(entries = indexed, "audit entries added to the resident index");
        }
        txn.commit()?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store {
            db,
            path: path.to_path_buf(),
            quarantine_capacity: DEFAULT_QUARANTINE_CAPACITY,
            alert_change_retention: AlertChangeRetention::default(),
            problems: Problems::default(),
        })
    }

    /// Opens (or creates) `data_dir/tec-gateway.redb`, creating the directory if needed.
    pub fn open_in_dir(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        Self::open(&data_dir.join(STORE_FILE_NAME))
    }

    pub fn with_quarantine_capacity(mut self, cap: usize) -> Self {
        self.quarantine_capacity = cap;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn begin_write(&self) -> Result<WriteBatch<'_>, StoreError> {
        Ok(WriteBatch::new(
            self.db.begin_write()?,
            &self.problems,
            self.quarantine_capacity,
            self.alert_change_retention,
        ))
    }

    /// Every record this store has met and could not read since it was opened (each once, in
    /// the order found), for a human to look at.
    pub fn unreadable(&self) -> Vec<Unreadable> {
        self.problems.list()
    }

    /// How many distinct unreadable records this store has met since it was opened.
    pub fn unreadable_count(&self) -> u64 {
        self.problems.count()
    }

    /// The first event stored under `key` (copy 0).
    pub fn event(&self, key: &EventKey) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.event_copies(key)?.into_iter().next().map(|read| read.event))
    }

    /// Every event stored under `key`: the first, then any conflicting copies.
    pub fn event_copies(&self, key: &EventKey) -> Result<Vec<EventRead>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let device = key.device.as_str();
        let mut found = Vec::new();
        for entry in events.range((device, key.boot, key.seq, 0)..=(device, key.boot, key.seq, u32::MAX))? {
            let (db_key, value) = entry?;
            found.push(queries::event_read(
                device,
                key.boot,
                key.seq,
                db_key.value().3,
                value.value(),
            )?);
        }
        Ok(found)
    }

    /// Events matching `filter`, ordered by receive time then (device, boot, seq, copy). Walks
    /// the resident index or the time index when the filter allows, the device's own key
    /// range otherwise. Records that cannot be read are listed in the page (and in
    /// [`Store::unreadable`]), not fatal: the rest still reach whoever asked.
    pub fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut page = EventPage::default();
        if limit == 0 {
            return Ok(page);
        }
        let since = filter.since.map_or(i64::MIN, Timestamp::as_millis);
        let before_until = |received: i64| filter.until.is_none_or(|until| received < until.as_millis());
        let device_matches = |device: &str| filter.device.is_none_or(|wanted| wanted.as_str() == device);
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let keep = |page: &mut EventPage, found: Result<EventRead, StoreError>| -> Result<bool, StoreError> {
            match found {
                Ok(read) => page.events.push(read),
                Err(StoreError::Unreadable(unreadable)) => {
                    self.problems.report(&unreadable);
                    page.unreadable.push(unreadable);
                }
                Err(other) => return Err(other),
            }
            Ok(page.events.len() < limit)
        };
        if let Some(resident) = &filter.resident {
            let index = txn.open_table(EVENTS_BY_RESIDENT)?;
            for entry in index.range((resident.as_str(), since, "", 0u32, 0u32, 0u32)..)? {
                let (key, _) = entry?;
                let (indexed_resident, received, device, boot, seq, copy) = key.value();
                if indexed_resident != resident.as_str() || !before_until(received) {
                    break;
                }
                if !device_matches(device) {
                    continue;
                }
                let found = queries::indexed_event(&events, "events_by_resident", (device, boot, seq, copy));
                if !keep(&mut page, found)? {
                    break;
                }
            }
        } else if let Some(device) = filter.device {
            let device = device.as_str();
            for entry in events.range((device, 0u32, 0u32, 0u32)..=(device, u32::MAX, u32::MAX, u32::MAX))? {
                let (key, value) = entry?;
                let (_, boot, seq, copy) = key.value();
                let found = queries::event_read(device, boot, seq, copy, value.value()).map_err(StoreError::from);
                if let Ok(read) = &found {
                    let received = read.event.received_at.as_millis();
                    if received < since || !before_until(received) {
                        continue;
                    }
                }
                keep(&mut page, found)?;
            }
            page.events.sort_by(|a, b| {
                let order = |r: &EventRead| (r.event.received_at, r.event.key, r.copy);
                order(a).cmp(&order(b))
            });
            page.events.truncate(limit);
        } else {
            let index = txn.open_table(EVENTS_BY_TIME)?;
            // One millisecond may span several groups: gather it whole, then sort it.
            let mut millisecond: Option<i64> = None;
            let mut keys: Vec<TimeIndexKey> = Vec::new();
            let emit = |keys: &mut Vec<TimeIndexKey>, page: &mut EventPage| -> Result<bool, StoreError> {
                keys.sort_unstable();
                for (device, boot, seq, copy) in keys.drain(..) {
                    if page.events.len() >= limit {
                        return Ok(false);
                    }
                    let found = queries::indexed_event(&events, "events_by_time", (&device, boot, seq, copy));
                    keep(page, found)?;
                }
                Ok(page.events.len() < limit)
            };
            for entry in index.range((since, 0u64)..)? {
                let (key, value) = entry?;
                let (received, group) = key.value();
                if !before_until(received) {
                    break;
                }
                if millisecond != Some(received) {
                    if !emit(&mut keys, &mut page)? {
                        return Ok(page);
                    }
                    millisecond = Some(received);
                }
                match from_json::<Vec<TimeIndexKey>>(
                    "events_by_time",
                    format_args!("{received}/{group}"),
                    value.value(),
                ) {
                    Ok(group_keys) => keys.extend(group_keys),
                    Err(unreadable) => {
                        self.problems.report(&unreadable);
                        page.unreadable.push(unreadable);
                    }
                }
            }
            emit(&mut keys, &mut page)?;
        }
        Ok(page)
    }

    /// Events stored, conflicting copies included.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }

    pub fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        let txn = self.db.begin_read()?;
        let found = queries::alert_in(
            &txn.open_table(ALERTS)?,
            &txn.open_table(ALERT_TRANSITIONS)?,
            &self.problems,
            id.0,
        );
        if let Err(StoreError::Unreadable(unreadable)) = &found {
            self.problems.report(unreadable);
        }
        found
    }

    /// Alerts matching `filter`, in id order. Uses the open-alert or resident index when asked.
    /// An unreadable alert is left out and reported ([`Store::unreadable`]).
    pub fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let txn = self.db.begin_read()?;
        let alerts = txn.open_table(ALERTS)?;
        let transitions = txn.open_table(ALERT_TRANSITIONS)?;
        let problems = &self.problems;
        let mut consider = |alert: Alert| {
            let wanted = (!filter.open_only || alert.is_open())
                && filter
                    .resident
                    .as_ref()
                    .is_none_or(|resident| alert.resident.as_ref() == Some(resident))
                && filter.since.is_none_or(|since| alert.raised_at >= since);
            if wanted {
                found.push(alert);
            }
            found.len() < limit
        };
        if filter.open_only {
            let open = txn.open_table(OPEN_ALERTS)?;
            for entry in open.iter()? {
                let id = entry?.0.value();
                let alert = readable_or_skip!(
                    problems,
                    queries::indexed_alert(&alerts, &transitions, problems, "open_alerts", id)
                );
                if !consider(alert) {
                    break;
                }
            }
        } else if let Some(resident) = &filter.resident {
            let index = txn.open_table(ALERTS_BY_RESIDENT)?;
            for entry in index.range((resident.as_str(), 0u64)..=(resident.as_str(), u64::MAX))? {
                let id = entry?.0.value().1;
                let alert = readable_or_skip!(
                    problems,
                    queries::indexed_alert(&alerts, &transitions, problems, "alerts_by_resident", id)
                );
                if !consider(alert) {
                    break;
                }
            }
        } else {
            for entry in alerts.iter()? {
                let (key, value) = entry?;
                let id = key.value();
                let header: AlertHeader = readable_or_skip!(
                    problems,
                    from_json("alerts", id, value.value()).map_err(StoreError::from)
                );
                // The header has the raised time: alerts before the period (most of the
                // table, for a report on one year of several) are skipped without reading
                // their history.
                if filter.since.is_some_and(|since| header.raised_at < since) {
                    continue;
                }
                let alert = readable_or_skip!(problems, queries::alert_from_header(&transitions, problems, header));
                if !consider(alert) {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Every alert not yet resolved, in id order (from the open-alert index, not a scan).
    pub fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.alerts(&AlertFilter {
            open_only: true,
            ..AlertFilter::default()
        })
    }

    pub fn max_alert_id(&self) -> Result<Option<AlertId>, StoreError> {
        let txn = self.db.begin_read()?;
        let alerts = txn.open_table(ALERTS)?;
        Ok(alerts.last()?.map(|(key, _)| AlertId(key.value())))
    }

    /// Quarantined payloads, newest first (unreadable ones reported and left out).
    pub fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let quarantine = txn.open_table(QUARANTINE)?;
        let mut found = Vec::new();
        for entry in quarantine.iter()?.rev().take(limit.unwrap_or(usize::MAX)) {
            let (key, value) = entry?;
            let record = readable_or_skip!(
                self.problems,
                decode_quarantine(key.value(), value.value()).map_err(StoreError::from)
            );
            found.push(record);
        }
        Ok(found)
    }

    pub fn quarantine_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(QUARANTINE)?.len()?)
    }

    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let found = queries::device_in(&txn.open_table(DEVICES)?, id);
        if let Err(StoreError::Unreadable(unreadable)) = &found {
            self.problems.report(unreadable);
        }
        found
    }

    /// Every readable device record (unreadable ones reported and left out).
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let devices = txn.open_table(DEVICES)?;
        let mut found = Vec::new();
        for entry in devices.iter()? {
            let (key, value) = entry?;
            let record = readable_or_skip!(
                self.problems,
                from_json("devices", key.value(), value.value()).map_err(StoreError::from)
            );
            found.push(record);
        }
        Ok(found)
    }

    pub fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        let txn = self.db.begin_read()?;
        let residents = txn.open_table(RESIDENTS)?;
        let found = residents
            .get(id.as_str())?
            .map(|value| from_json("residents", id, value.value()))
            .transpose();
        if let Err(unreadable) = &found {
            self.problems.report(unreadable);
        }
        Ok(found?)
    }

    /// Every readable resident (unreadable ones reported and left out).
    pub fn residents(&self) -> Result<Vec<Resident>, StoreError> {
        let txn = self.db.begin_read()?;
        let residents = txn.open_table(RESIDENTS)?;
        let mut found = Vec::new();
        for entry in residents.iter()? {
            let (key, value) = entry?;
            let resident = readable_or_skip!(
                self.problems,
                from_json("residents", key.value(), value.value()).map_err(StoreError::from)
            );
            found.push(resident);
        }
        Ok(found)
    }

    /// The device's assignments, earliest first.
    pub fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError> {
        let txn = self.db.begin_read()?;
        queries::assignments_in(&txn.open_table(ASSIGNMENTS)?, &self.problems, device)
    }

    pub fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        let txn = self.db.begin_read()?;
        queries::resident_for_in(&txn.open_table(ASSIGNMENTS)?, &self.problems, device, at)
    }

    /// Every engine-state entry, in key order.
    pub fn engine_state(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(ENGINE_STATE)?;
        let mut found = Vec::new();
        for entry in state.iter()? {
            let (key, value) = entry?;
            found.push((key.value().to_string(), value.value().to_vec()));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
