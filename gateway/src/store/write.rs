//! One write transaction. Ingest groups many events into one batch and commits once, so the
//! fsync cost is shared (group commit).

use std::collections::HashSet;

use protocol::DeviceId;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::schema::*;
use super::{QUARANTINE_PAYLOAD_LIMIT, StoreError, queries};
use crate::domain::{
    Alert, Assignment, DeviceRecord, EventKey, QuarantineRecord, Resident, ResidentId, StoredEvent, Timestamp,
};

type CommittedEvents = ReadOnlyTable<(&'static str, u32, u32), &'static [u8]>;

/// Whether [`WriteBatch::insert_event`] stored the event or had it already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    Duplicate,
}

/// A write transaction on the store. Dropping it without [`WriteBatch::commit`] discards it.
///
/// Events are checked for duplicates as they come (against a snapshot of the committed store
/// plus this batch) but written to the tables once, at commit: redb tables borrow their
/// transaction, and reopening three tables per event costs far more than the insert itself.
pub struct WriteBatch<'s> {
    txn: WriteTransaction,
    db: &'s Database,
    quarantine_capacity: usize,
    /// The committed events, as of this batch's start (no other writer can commit meanwhile).
    committed_events: Option<CommittedEvents>,
    pending_keys: HashSet<EventKey>,
    pending_events: Vec<PendingEvent>,
}

struct PendingEvent {
    key: EventKey,
    received_ms: i64,
    resident: Option<ResidentId>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for WriteBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("quarantine_capacity", &self.quarantine_capacity)
            .field("pending_events", &self.pending_events.len())
            .finish_non_exhaustive()
    }
}

impl<'s> WriteBatch<'s> {
    pub(crate) fn new(db: &'s Database, quarantine_capacity: usize) -> Result<Self, StoreError> {
        Ok(Self {
            txn: db.begin_write()?,
            db,
            quarantine_capacity,
            committed_events: None,
            pending_keys: HashSet::new(),
            pending_events: Vec::new(),
        })
    }

    /// Stores the event once per (device, boot, seq): a repeat changes nothing and says so.
    pub fn insert_event(&mut self, event: &StoredEvent) -> Result<InsertOutcome, StoreError> {
        if self.pending_keys.contains(&event.key) {
            return Ok(InsertOutcome::Duplicate);
        }
        let committed = match &mut self.committed_events {
            Some(table) => table,
            None => self.committed_events.insert(self.db.begin_read()?.open_table(EVENTS)?),
        };
        if committed
            .get((event.key.device.as_str(), event.key.boot, event.key.seq))?
            .is_some()
        {
            return Ok(InsertOutcome::Duplicate);
        }
        let bytes = to_postcard("events", event)?;
        self.pending_keys.insert(event.key);
        self.pending_events.push(PendingEvent {
            key: event.key,
            received_ms: event.received_at.as_millis(),
            resident: event.resident.clone(),
            bytes,
        });
        Ok(InsertOutcome::Inserted)
    }

    /// Stores a whole batch of events at once, each once per (device, boot, seq), and says
    /// which were new (the first arrival of a key within the batch wins). The events table is
    /// written in key order and learns about duplicates from the insert itself, so a batch
    /// costs one B-tree descent per event instead of a lookup plus an insert.
    pub fn insert_events(&mut self, events: &[StoredEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut outcomes = vec![InsertOutcome::Duplicate; events.len()];
        // Stable: among equal keys the earliest arrival comes first.
        let mut order: Vec<(EventKey, usize)> = events.iter().enumerate().map(|(n, e)| (e.key, n)).collect();
        order.sort_by_key(|(key, _)| *key);
        let mut inserted: Vec<&StoredEvent> = Vec::with_capacity(events.len());
        {
            let mut table = self.txn.open_table(EVENTS)?;
            let mut previous: Option<EventKey> = None;
            let mut bytes = Vec::new();
            for (key, index) in order {
                if previous == Some(key) || self.pending_keys.contains(&key) {
                    continue;
                }
                previous = Some(key);
                let Some(event) = events.get(index) else { continue };
                bytes.clear();
                bytes = postcard::to_extend(event, bytes).map_err(|err| StoreError::Encode {
                    table: "events",
                    detail: err.to_string(),
                })?;
                let db_key = (key.device.as_str(), key.boot, key.seq);
                let earlier = table.insert(db_key, bytes.as_slice())?.map(|old| old.value().to_vec());
                if let Some(earlier) = earlier {
                    // Already stored by an earlier batch: put the first copy back.
                    table.insert(db_key, earlier.as_slice())?;
                    continue;
                }
                if let Some(outcome) = outcomes.get_mut(index) {
                    *outcome = InsertOutcome::Inserted;
                }
                inserted.push(event);
            }
        }
        let mut by_time: Vec<(i64, EventKey)> = inserted.iter().map(|e| (e.received_at.as_millis(), e.key)).collect();
        self.write_time_index(&mut by_time)?;
        let mut by_resident: Vec<(&str, i64, DeviceId, u32, u32)> = inserted
            .iter()
            .filter_map(|e| {
                let resident = e.resident.as_ref()?;
                Some((
                    resident.as_str(),
                    e.received_at.as_millis(),
                    e.key.device,
                    e.key.boot,
                    e.key.seq,
                ))
            })
            .collect();
        if !by_resident.is_empty() {
            by_resident.sort_unstable();
            let mut resident_index = self.txn.open_table(EVENTS_BY_RESIDENT)?;
            for (resident, received, device, boot, seq) in &by_resident {
                resident_index.insert((*resident, *received, device.as_str(), *boot, *seq), ())?;
            }
        }
        Ok(outcomes)
    }

    /// Writes the batch's events, each table in its own key order: consecutive inserts then land
    /// on the same leaf pages, which roughly halves the cost of a batch from many devices.
    fn write_pending_events(&mut self) -> Result<(), StoreError> {
        if self.pending_events.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending_events);
        // EventKey orders as the table does (device bytes, boot, seq), without UTF-8 checks.
        pending.sort_unstable_by_key(|e| e.key);
        let mut events = self.txn.open_table(EVENTS)?;
        for event in &pending {
            events.insert(
                (event.key.device.as_str(), event.key.boot, event.key.seq),
                event.bytes.as_slice(),
            )?;
        }
        drop(events);
        let mut by_time: Vec<(i64, EventKey)> = pending.iter().map(|e| (e.received_ms, e.key)).collect();
        self.write_time_index(&mut by_time)?;
        let mut by_resident: Vec<(&str, i64, &str, u32, u32)> = pending
            .iter()
            .filter_map(|e| {
                let resident = e.resident.as_ref()?;
                Some((
                    resident.as_str(),
                    e.received_ms,
                    e.key.device.as_str(),
                    e.key.boot,
                    e.key.seq,
                ))
            })
            .collect();
        by_resident.sort_unstable();
        let mut resident_index = self.txn.open_table(EVENTS_BY_RESIDENT)?;
        for key in by_resident {
            resident_index.insert(key, ())?;
        }
        Ok(())
    }

    /// Adds one time-index entry per millisecond of `events` (received_ms, key).
    fn write_time_index(&mut self, events: &mut [(i64, EventKey)]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        events.sort_unstable();
        let mut meta = self.txn.open_table(META)?;
        let mut group = meta.get(TIME_GROUP_NEXT_KEY)?.map_or(0, |next| next.value());
        let mut time_index = self.txn.open_table(EVENTS_BY_TIME)?;
        let mut keys: Vec<EventKey> = Vec::new();
        for same_ms in events.chunk_by(|a, b| a.0 == b.0) {
            let Some((received, _)) = same_ms.first() else { continue };
            keys.clear();
            keys.extend(same_ms.iter().map(|(_, key)| *key));
            let bytes = to_postcard("events_by_time", &keys)?;
            time_index.insert((*received, group), bytes.as_slice())?;
            group = group.saturating_add(1);
        }
        meta.insert(TIME_GROUP_NEXT_KEY, group)?;
        Ok(())
    }

    /// Inserts or replaces the alert by id, keeping the open-alert and resident indexes true.
    pub fn put_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        let id = alert.id.0;
        let bytes = to_json("alerts", alert)?;
        let previous_resident = {
            let mut alerts = self.txn.open_table(ALERTS)?;
            let previous = alerts.insert(id, bytes.as_slice())?;
            match previous {
                Some(old) => match from_json::<Alert>("alerts", id, old.value()) {
                    Ok(old) => old.resident,
                    Err(err) => {
                        // Overwriting a corrupt value repairs it; its stale index entry may linger.
                        tracing::warn!(alert = %alert.id, error = %err, "replaced an undecodable alert");
                        None
                    }
                },
                None => None,
            }
        };
        let mut open = self.txn.open_table(OPEN_ALERTS)?;
        if alert.is_open() {
            open.insert(id, ())?;
        } else {
            open.remove(id)?;
        }
        let mut by_resident = self.txn.open_table(ALERTS_BY_RESIDENT)?;
        if let Some(old) = previous_resident.filter(|old| Some(old) != alert.resident.as_ref()) {
            by_resident.remove((old.as_str(), id))?;
        }
        if let Some(resident) = &alert.resident {
            by_resident.insert((resident.as_str(), id), ())?;
        }
        Ok(())
    }

    /// Keeps the payload (cut to 1 KiB) for inspection; evicts the oldest beyond capacity.
    pub fn quarantine(&mut self, record: &QuarantineRecord) -> Result<(), StoreError> {
        let mut stored = record.clone();
        stored.original_len = record.original_len.max(record.payload.len());
        stored.payload.truncate(QUARANTINE_PAYLOAD_LIMIT);
        let bytes = to_postcard("quarantine", &stored)?;
        let mut meta = self.txn.open_table(META)?;
        let seq = meta.get(QUARANTINE_NEXT_SEQ_KEY)?.map_or(0, |next| next.value());
        meta.insert(QUARANTINE_NEXT_SEQ_KEY, seq.saturating_add(1))?;
        let mut quarantine = self.txn.open_table(QUARANTINE)?;
        quarantine.insert(seq, bytes.as_slice())?;
        let capacity = u64::try_from(self.quarantine_capacity).unwrap_or(u64::MAX);
        while quarantine.len()? > capacity {
            if quarantine.pop_first()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Reads the device as this batch would leave it.
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        queries::device_in(&self.txn.open_table(DEVICES)?, id)
    }

    pub fn put_device(&mut self, record: &DeviceRecord) -> Result<(), StoreError> {
        let bytes = to_postcard("devices", record)?;
        self.txn
            .open_table(DEVICES)?
            .insert(record.id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    pub fn put_resident(&mut self, resident: &Resident) -> Result<(), StoreError> {
        let bytes = to_postcard("residents", resident)?;
        self.txn
            .open_table(RESIDENTS)?
            .insert(resident.id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Records a loan of a device. One starting at the same instant as an existing one replaces
    /// it; any other overlap with the device's assignments is refused.
    pub fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        let mut assignments = self.txn.open_table(ASSIGNMENTS)?;
        let overlapping = queries::assignments_in(&assignments, &assignment.device)?
            .into_iter()
            .find(|existing| {
                existing.from != assignment.from
                    && existing.until.is_none_or(|until| assignment.from < until)
                    && assignment.until.is_none_or(|until| existing.from < until)
            });
        if let Some(existing) = overlapping {
            return Err(StoreError::OverlappingAssignment {
                device: assignment.device,
                existing_resident: existing.resident,
                existing_from: existing.from,
                existing_until: existing.until,
            });
        }
        let bytes = to_postcard("assignments", assignment)?;
        assignments.insert(
            (assignment.device.as_str(), assignment.from.as_millis()),
            bytes.as_slice(),
        )?;
        Ok(())
    }

    /// Ends the device's assignment that covers `at`, at `at`.
    pub fn end_assignment(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), StoreError> {
        let mut assignments = self.txn.open_table(ASSIGNMENTS)?;
        let Some(mut current) = queries::assignment_at(&assignments, device, at)? else {
            return Err(StoreError::NoActiveAssignment { device: *device, at });
        };
        current.until = Some(at);
        let bytes = to_postcard("assignments", &current)?;
        assignments.insert((device.as_str(), current.from.as_millis()), bytes.as_slice())?;
        Ok(())
    }

    pub fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        queries::resident_for_in(&self.txn.open_table(ASSIGNMENTS)?, device, at)
    }

    /// Sets (or, with `None`, deletes) one opaque alert-engine state entry.
    pub fn put_engine_state(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut state = self.txn.open_table(ENGINE_STATE)?;
        match value {
            Some(value) => state.insert(key, value)?,
            None => state.remove(key)?,
        };
        Ok(())
    }

    /// Commits durably (fsync): only after `Ok` may anything be acknowledged to a device.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.write_pending_events()?;
        self.committed_events = None;
        self.txn.commit()?;
        Ok(())
    }
}
