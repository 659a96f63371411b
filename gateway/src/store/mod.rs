//! The gateway's durable store on redb: events (idempotent on device, boot and seq), alerts,
//! the device and resident register, assignments, the quarantine and alert-engine state.
//!
//! One [`WriteBatch`] is one redb write transaction; [`WriteBatch::commit`] returns only once
//! the data is on disk (fsync), which is what lets ingest send PUBACKs and receipts.

mod error;
mod queries;
mod schema;
mod write;

use std::path::{Path, PathBuf};

use protocol::DeviceId;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::domain::{
    Alert, AlertId, Assignment, DeviceRecord, EventKey, QuarantineRecord, Resident, ResidentId, StoredEvent, Timestamp,
};

pub use error::StoreError;
pub use schema::SCHEMA_VERSION;
pub use write::{InsertOutcome, WriteBatch};

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

/// Which alerts to return, in id order. `since` compares with `raised_at` (inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub open_only: bool,
    pub resident: Option<ResidentId>,
    pub since: Option<Timestamp>,
    /// At most this many, the lowest ids first.
    pub limit: Option<usize>,
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    quarantine_capacity: usize,
}

impl Store {
    /// Opens (or creates) the store file at `path`. Refuses a file written by a newer schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::init(Database::create(path)?, path)
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
        txn.open_table(EVENTS)?;
        txn.open_table(EVENTS_BY_TIME)?;
        txn.open_table(EVENTS_BY_RESIDENT)?;
        txn.open_table(ALERTS)?;
        txn.open_table(OPEN_ALERTS)?;
        txn.open_table(ALERTS_BY_RESIDENT)?;
        txn.open_table(QUARANTINE)?;
        txn.open_table(DEVICES)?;
        txn.open_table(RESIDENTS)?;
        txn.open_table(ASSIGNMENTS)?;
        txn.open_table(ENGINE_STATE)?;
        txn.commit()?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Store {
            db,
            path: path.to_path_buf(),
            quarantine_capacity: DEFAULT_QUARANTINE_CAPACITY,
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
        WriteBatch::new(&self.db, self.quarantine_capacity)
    }

    pub fn event(&self, key: &EventKey) -> Result<Option<StoredEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        queries::event_in(&events, key.device.as_str(), key.boot, key.seq)
    }

    /// Events matching `filter`, ordered by receive time then (device, boot, seq). Walks the
    /// resident index or the time index when the filter allows, the device's own key range
    /// otherwise.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let since = filter.since.map_or(i64::MIN, Timestamp::as_millis);
        let before_until = |received: i64| filter.until.is_none_or(|until| received < until.as_millis());
        let device_matches = |device: &str| filter.device.is_none_or(|wanted| wanted.as_str() == device);
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        if let Some(resident) = &filter.resident {
            let index = txn.open_table(EVENTS_BY_RESIDENT)?;
            for entry in index.range((resident.as_str(), since, "", 0u32, 0u32)..)? {
                let (key, _) = entry?;
                let (indexed_resident, received, device, boot, seq) = key.value();
                if indexed_resident != resident.as_str() || !before_until(received) {
                    break;
                }
                if !device_matches(device) {
                    continue;
                }
                found.push(queries::indexed_event(
                    &events,
                    "events_by_resident",
                    device,
                    boot,
                    seq,
                )?);
                if found.len() >= limit {
                    break;
                }
            }
        } else if let Some(device) = filter.device {
            let device = device.as_str();
            for entry in events.range((device, 0u32, 0u32)..=(device, u32::MAX, u32::MAX))? {
                let (key, value) = entry?;
                let (_, boot, seq) = key.value();
                let event: StoredEvent = from_postcard("events", format_args!("{device}/{boot}/{seq}"), value.value())?;
                let received = event.received_at.as_millis();
                if received >= since && before_until(received) {
                    found.push(event);
                }
            }
            found.sort_by(|a, b| {
                (a.received_at, a.key.device.as_str(), a.key.boot, a.key.seq).cmp(&(
                    b.received_at,
                    b.key.device.as_str(),
                    b.key.boot,
                    b.key.seq,
                ))
            });
            found.truncate(limit);
        } else {
            let index = txn.open_table(EVENTS_BY_TIME)?;
            // One millisecond may span several groups: gather it whole, then sort it.
            let mut millisecond: Option<i64> = None;
            let mut keys: Vec<EventKey> = Vec::new();
            let emit = |keys: &mut Vec<EventKey>, found: &mut Vec<StoredEvent>| -> Result<bool, StoreError> {
                keys.sort_unstable();
                for key in keys.drain(..) {
                    if found.len() >= limit {
                        return Ok(false);
                    }
                    let (device, boot, seq) = (key.device.as_str(), key.boot, key.seq);
                    found.push(queries::indexed_event(&events, "events_by_time", device, boot, seq)?);
                }
                Ok(found.len() < limit)
            };
            for entry in index.range((since, 0u64)..)? {
                let (key, value) = entry?;
                let (received, group) = key.value();
                if !before_until(received) {
                    break;
                }
                if millisecond != Some(received) {
                    if !emit(&mut keys, &mut found)? {
                        return Ok(found);
                    }
                    millisecond = Some(received);
                }
                let group_keys: Vec<EventKey> =
                    from_postcard("events_by_time", format_args!("{received}/{group}"), value.value())?;
                keys.extend(group_keys);
            }
            emit(&mut keys, &mut found)?;
        }
        Ok(found)
    }

    pub fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(EVENTS)?.len()?)
    }

    pub fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        let txn = self.db.begin_read()?;
        let alerts = txn.open_table(ALERTS)?;
        queries::alert_in(&alerts, id.0)
    }

    /// Alerts matching `filter`, in id order. Uses the open-alert or resident index when asked.
    pub fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let txn = self.db.begin_read()?;
        let alerts = txn.open_table(ALERTS)?;
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
                if !consider(queries::indexed_alert(&alerts, "open_alerts", id)?) {
                    break;
                }
            }
        } else if let Some(resident) = &filter.resident {
            let index = txn.open_table(ALERTS_BY_RESIDENT)?;
            for entry in index.range((resident.as_str(), 0u64)..=(resident.as_str(), u64::MAX))? {
                let id = entry?.0.value().1;
                if !consider(queries::indexed_alert(&alerts, "alerts_by_resident", id)?) {
                    break;
                }
            }
        } else {
            for entry in alerts.iter()? {
                let (key, value) = entry?;
                let id = key.value();
                if !consider(from_json("alerts", id, value.value())?) {
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

    /// Quarantined payloads, newest first.
    pub fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let quarantine = txn.open_table(QUARANTINE)?;
        let mut found = Vec::new();
        for entry in quarantine.iter()?.rev().take(limit.unwrap_or(usize::MAX)) {
            let (key, value) = entry?;
            found.push(from_postcard("quarantine", key.value(), value.value())?);
        }
        Ok(found)
    }

    pub fn quarantine_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(QUARANTINE)?.len()?)
    }

    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        queries::device_in(&txn.open_table(DEVICES)?, id)
    }

    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let devices = txn.open_table(DEVICES)?;
        let mut found = Vec::new();
        for entry in devices.iter()? {
            let (key, value) = entry?;
            found.push(from_postcard("devices", key.value(), value.value())?);
        }
        Ok(found)
    }

    pub fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        let txn = self.db.begin_read()?;
        let residents = txn.open_table(RESIDENTS)?;
        residents
            .get(id.as_str())?
            .map(|value| from_postcard("residents", id, value.value()))
            .transpose()
    }

    pub fn residents(&self) -> Result<Vec<Resident>, StoreError> {
        let txn = self.db.begin_read()?;
        let residents = txn.open_table(RESIDENTS)?;
        let mut found = Vec::new();
        for entry in residents.iter()? {
            let (key, value) = entry?;
            found.push(from_postcard("residents", key.value(), value.value())?);
        }
        Ok(found)
    }

    /// The device's assignments, earliest first.
    pub fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError> {
        let txn = self.db.begin_read()?;
        queries::assignments_in(&txn.open_table(ASSIGNMENTS)?, device)
    }

    pub fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        let txn = self.db.begin_read()?;
        queries::resident_for_in(&txn.open_table(ASSIGNMENTS)?, device, at)
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
