//! One write transaction. Ingest groups many events into one batch and commits once, so the
//! fsync cost is shared (group commit).

use std::collections::HashMap;

use protocol::{DeviceId, Uplink, UplinkHeader};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::problems::Problems;
use super::schema::*;
use super::{QUARANTINE_PAYLOAD_LIMIT, StoreError, queries};
use crate::domain::{
    Alert, AlertId, Assignment, DeviceRecord, EventBody, QuarantineRecord, Resident, ResidentId, StoredEvent, Timestamp,
};

/// What [`WriteBatch::insert_events`] did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The first event under its (device, boot, seq).
    Inserted,
    /// Says the same as an event already stored under its key (a retransmission or a
    /// redelivery): nothing stored, receipt it again.
    Duplicate,
    /// Its key is taken by an event with different content: the device reused the key. Stored
    /// as this copy (1, 2, ...) of the key, so nothing the device sent is swallowed.
    Conflict { copy: u32 },
}

/// An event to store: the payload exactly as received (that is what the store keeps, see
/// `store/schema.rs`) and what it decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event: StoredEvent,
    pub payload: Vec<u8>,
    /// Set while the device's boot counter is known to have gone back (since this time, see
    /// [`crate::domain::BootReuse`]): an exact copy of an event stored before then may be a
    /// wiped device's new event reusing an old key (a press with no device time is the same
    /// value as one years ago), so it is stored as a copy, not dropped.
    pub boot_reused_since: Option<Timestamp>,
}

impl NewEvent {
    /// Decodes a received uplink payload (device from the topic).
    pub fn from_payload(
        device: DeviceId,
        payload: &[u8],
        resident: Option<ResidentId>,
        received_at: Timestamp,
    ) -> Result<Self, protocol::DecodeError> {
        let decoded = EventBody::decode_uplink(payload)?;
        Ok(Self {
            event: StoredEvent::from_decoded(device, decoded, resident, received_at),
            payload: payload.to_vec(),
            boot_reused_since: None,
        })
    }

    /// The wire form of an already decoded event (tests, tools): an `Unrecognised` body is its
    /// raw payload. Refused unless the payload decodes back to the same event.
    pub fn from_event(event: StoredEvent) -> Result<Self, StoreError> {
        let refuse = |detail: String| StoreError::Encode {
            table: "events",
            detail: format!("event {}: {detail}", event.key),
        };
        let payload = match &event.body {
            EventBody::Unrecognised { raw, .. } => raw.clone(),
            EventBody::Uplink(body) => {
                let device_time_ms = event
                    .device_time
                    .map(|at| u64::try_from(at.as_millis()))
                    .transpose()
                    .map_err(|_| refuse("device time before 1970".into()))?;
                let mut uplink = Uplink::new(
                    UplinkHeader {
                        boot: event.key.boot,
                        seq: event.key.seq,
                        device_time_ms,
                    },
                    body.clone(),
                );
                uplink.version = event.protocol_version;
                let mut buf = [0u8; protocol::MAX_UPLINK_LEN];
                protocol::encode_uplink(&uplink, &mut buf)
                    .map_err(|err| refuse(err.to_string()))?
                    .to_vec()
            }
        };
        let decoded = EventBody::decode_uplink(&payload).map_err(|err| refuse(err.to_string()))?;
        let again = StoredEvent::from_decoded(event.key.device, decoded, event.resident.clone(), event.received_at);
        if !again.same_content(&event) {
            return Err(refuse(format!("its wire form reads back as {again:?}")));
        }
        Ok(Self {
            event,
            payload,
            boot_reused_since: None,
        })
    }
}

/// A write transaction on the store. Dropping it without [`WriteBatch::commit`] discards it.
pub struct WriteBatch<'s> {
    pub(super) txn: WriteTransaction,
    pub(super) problems: &'s Problems,
    quarantine_capacity: usize,
    pub(super) alert_change_retention: super::AlertChangeRetention,
}

impl std::fmt::Debug for WriteBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("quarantine_capacity", &self.quarantine_capacity)
            .finish_non_exhaustive()
    }
}

impl<'s> WriteBatch<'s> {
    pub(crate) fn new(
        txn: WriteTransaction,
        problems: &'s Problems,
        quarantine_capacity: usize,
        alert_change_retention: super::AlertChangeRetention,
    ) -> Self {
        Self {
            txn,
            problems,
            quarantine_capacity,
            alert_change_retention,
        }
    }

    /// Stores a batch of events and says, for each, whether it was new, a duplicate, or a
    /// reused key (see [`InsertOutcome`]). The first arrival of a key within the batch is
    /// the original. The events table is written in key order and learns about collisions
    /// from the insert itself, so a new event costs one B-tree descent; only collisions
    /// (rare) read and decode what is stored under their key, in arrival order.
    pub fn insert_events(&mut self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut outcomes = vec![InsertOutcome::Duplicate; events.len()];
        // Stable: among equal keys the earliest arrival comes first.
        let mut order: Vec<(crate::domain::EventKey, usize)> =
            events.iter().enumerate().map(|(n, e)| (e.event.key, n)).collect();
        order.sort_by_key(|(key, _)| *key);
        // (arrival index, copy) of everything stored.
        let mut stored: Vec<(usize, u32)> = Vec::with_capacity(events.len());
        let mut collisions: Vec<usize> = Vec::new();
        let mut encoder = EventEncoder::default();
        {
            let mut table = self.txn.open_table(EVENTS)?;
            for (key, index) in order {
                let Some(new) = events.get(index) else { continue };
                let bytes = encoder.encode(new.event.received_at, new.event.resident.as_ref(), &new.payload)?;
                let db_key = (key.device.as_str(), key.boot, key.seq, 0);
                let earlier = table.insert(db_key, bytes)?.map(|old| old.value().to_vec());
                if let Some(earlier) = earlier {
                    // Taken (by an earlier batch or an earlier arrival): put the first back.
                    table.insert(db_key, earlier.as_slice())?;
                    collisions.push(index);
                    continue;
                }
                if let Some(outcome) = outcomes.get_mut(index) {
                    *outcome = InsertOutcome::Inserted;
                }
                stored.push((index, 0));
            }
            collisions.sort_unstable();
            // A conflict seen in this batch flags its device for the rest of the batch too.
            let mut reused_in_batch: HashMap<DeviceId, Timestamp> = HashMap::new();
            for index in collisions {
                let Some(new) = events.get(index) else { continue };
                let key = new.event.key;
                let since = match (new.boot_reused_since, reused_in_batch.get(&key.device)) {
                    (Some(given), Some(found)) => Some(given.min(*found)),
                    (given, found) => given.or(found.copied()),
                };
                let Some(copy) = self.resolve_collision(&table, new, since)? else {
                    continue;
                };
                let bytes = encoder.encode(new.event.received_at, new.event.resident.as_ref(), &new.payload)?;
                table.insert((key.device.as_str(), key.boot, key.seq, copy), bytes)?;
                if let Some(outcome) = outcomes.get_mut(index) {
                    *outcome = InsertOutcome::Conflict { copy };
                }
                stored.push((index, copy));
                reused_in_batch.entry(key.device).or_insert(new.event.received_at);
            }
        }
        let stored: Vec<(&StoredEvent, u32)> = stored
            .into_iter()
            .filter_map(|(index, copy)| Some((&events.get(index)?.event, copy)))
            .collect();
        self.write_indexes(&stored)?;
        // Redelivered copies: counted per device and day for the delivery-health figures.
        let redelivered = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == InsertOutcome::Duplicate)
            .map(|(new, _)| &new.event);
        super::activity::record_duplicates(&self.txn, redelivered)?;
        Ok(outcomes)
    }

    /// `None` if `new` says the same as a version already stored under its key (a
    /// duplicate), else the copy number to store it as. A version that cannot be read cannot
    /// vouch for a duplicate: when in doubt, keep the new one. With `boot_reused_since`, an
    /// alarm matching only versions stored before then is a new alarm too.
    fn resolve_collision(
        &self,
        table: &redb::Table<'_, (&'static str, u32, u32, u32), &'static [u8]>,
        new: &NewEvent,
        boot_reused_since: Option<Timestamp>,
    ) -> Result<Option<u32>, StoreError> {
        let key = new.event.key;
        let device = key.device.as_str();
        let mut last_copy = 0;
        let mut duplicate = false;
        for entry in table.range((device, key.boot, key.seq, 0)..=(device, key.boot, key.seq, u32::MAX))? {
            let (db_key, value) = entry?;
            let copy = db_key.value().3;
            last_copy = copy;
            match queries::event_read(device, key.boot, key.seq, copy, value.value()) {
                Ok(read) => {
                    // A copy stored before the device's boot went back belongs to its earlier
                    // life: equal content is a coincidence of reused keys, not a retransmission.
                    let earlier_life = boot_reused_since.is_some_and(|since| read.event.received_at < since);
                    duplicate |= read.event.same_content(&new.event) && !earlier_life;
                }
                Err(unreadable) => self.problems.report(&unreadable),
            }
        }
        Ok((!duplicate).then(|| last_copy.saturating_add(1)))
    }

    /// Adds the stored events to the time and resident indexes.
    fn write_indexes(&mut self, stored: &[(&StoredEvent, u32)]) -> Result<(), StoreError> {
        self.write_lookup_indexes(stored)?;
        super::activity::record_events(&self.txn, stored.iter().map(|(e, _)| *e))
    }

    /// Adds the stored events to the time and resident indexes (not to the activity, which an
    /// import copies as it was counted).
    pub(super) fn write_lookup_indexes(&mut self, stored: &[(&StoredEvent, u32)]) -> Result<(), StoreError> {
        let mut by_time: Vec<(i64, &StoredEvent, u32)> = stored
            .iter()
            .map(|(e, copy)| (e.received_at.as_millis(), *e, *copy))
            .collect();
        self.write_time_index(&mut by_time)?;
        let mut by_resident: Vec<(&str, i64, &str, u32, u32, u32)> = stored
            .iter()
            .filter_map(|(e, copy)| {
                let resident = e.resident.as_ref()?;
                Some((
                    resident.as_str(),
                    e.received_at.as_millis(),
                    e.key.device.as_str(),
                    e.key.boot,
                    e.key.seq,
                    *copy,
                ))
            })
            .collect();
        if !by_resident.is_empty() {
            by_resident.sort_unstable();
            let mut resident_index = self.txn.open_table(EVENTS_BY_RESIDENT)?;
            for key in by_resident {
                resident_index.insert(key, ())?;
            }
        }
        Ok(())
    }

    /// Adds one time-index entry per millisecond of `events`.
    fn write_time_index(&mut self, events: &mut [(i64, &StoredEvent, u32)]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        events.sort_unstable_by_key(|(received, event, copy)| (*received, event.key, *copy));
        let mut meta = self.txn.open_table(META)?;
        let mut group = meta.get(TIME_GROUP_NEXT_KEY)?.map_or(0, |next| next.value());
        let mut time_index = self.txn.open_table(EVENTS_BY_TIME)?;
        let mut keys: Vec<(&str, u32, u32, u32)> = Vec::new();
        for same_ms in events.chunk_by(|a, b| a.0 == b.0) {
            let Some((received, _, _)) = same_ms.first() else {
                continue;
            };
            keys.clear();
            keys.extend(
                same_ms
                    .iter()
                    .map(|(_, e, copy)| (e.key.device.as_str(), e.key.boot, e.key.seq, *copy)),
            );
            let bytes = to_json("events_by_time", &keys)?;
            time_index.insert((*received, group), bytes.as_slice())?;
            group = group.saturating_add(1);
        }
        meta.insert(TIME_GROUP_NEXT_KEY, group)?;
        Ok(())
    }

    /// Inserts or updates the alert by id, keeping the open-alert and resident indexes true.
    /// An alert's history only grows, so only transitions not yet stored are written: a join
    /// costs the same however long the history already is.
    pub fn put_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        let id = alert.id.0;
        let header = AlertHeader::of(alert);
        let bytes = to_json("alerts", &header)?;
        let (previous_resident, stored_transitions) = {
            let mut alerts = self.txn.open_table(ALERTS)?;
            let previous = alerts.insert(id, bytes.as_slice())?;
            match previous.map(|old| from_json::<AlertHeader>("alerts", id, old.value())) {
                Some(Ok(old)) => (old.resident, old.transition_count),
                Some(Err(unreadable)) => {
                    // Overwriting an unreadable header repairs it (history rewritten whole);
                    // a stale resident-index entry may linger.
                    tracing::warn!(alert = %alert.id, error = %unreadable, "replaced an unreadable alert");
                    (None, 0)
                }
                None => (None, 0),
            }
        };
        {
            let mut transitions = self.txn.open_table(ALERT_TRANSITIONS)?;
            let count = header.transition_count;
            for index in count..stored_transitions {
                transitions.remove((id, index))?;
            }
            let first_new = stored_transitions.min(count) as usize;
            for (index, transition) in alert.transitions.iter().enumerate().skip(first_new) {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let bytes = to_json("alert_transitions", transition)?;
                transitions.insert((id, index), bytes.as_slice())?;
            }
        }
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
        let bytes = encode_quarantine(&stored)?;
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

    /// Reads the device as this batch would leave it. An unreadable record is
    /// `StoreError::Unreadable` (and reported), so the caller can decide not to overwrite it.
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let found = queries::device_in(&self.txn.open_table(DEVICES)?, id);
        if let Err(StoreError::Unreadable(unreadable)) = &found {
            self.problems.report(unreadable);
        }
        found
    }

    pub fn put_device(&mut self, record: &DeviceRecord) -> Result<(), StoreError> {
        let bytes = to_json("devices", record)?;
        self.txn
            .open_table(DEVICES)?
            .insert(record.id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Stores the resident unless one with its id exists; whether it was stored. In the
    /// write transaction, so two creations of one id cannot both succeed.
    pub fn create_resident(&mut self, resident: &Resident) -> Result<bool, StoreError> {
        let mut residents = self.txn.open_table(RESIDENTS)?;
        if residents.get(resident.id.as_str())?.is_some() {
            return Ok(false);
        }
        let bytes = to_json("residents", resident)?;
        residents.insert(resident.id.as_str(), bytes.as_slice())?;
        Ok(true)
    }

    pub fn put_resident(&mut self, resident: &Resident) -> Result<(), StoreError> {
        let bytes = to_json("residents", resident)?;
        self.txn
            .open_table(RESIDENTS)?
            .insert(resident.id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Records a loan of a device. One starting at the same instant as an existing one replaces
    /// it; any other overlap with the device's assignments is refused.
    pub fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        let mut assignments = self.txn.open_table(ASSIGNMENTS)?;
        let overlapping = queries::assignments_in(&assignments, self.problems, &assignment.device)?
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
        let bytes = to_json("assignments", assignment)?;
        assignments.insert(
            (assignment.device.as_str(), assignment.from.as_millis()),
            bytes.as_slice(),
        )?;
        Ok(())
    }

    /// Ends the device's assignment that covers `at`, at `at`.
    pub fn end_assignment(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), StoreError> {
        let mut assignments = self.txn.open_table(ASSIGNMENTS)?;
        let Some(mut current) = queries::assignment_at(&assignments, self.problems, device, at)? else {
            return Err(StoreError::NoActiveAssignment { device: *device, at });
        };
        current.until = Some(at);
        let bytes = to_json("assignments", &current)?;
        assignments.insert((device.as_str(), current.from.as_millis()), bytes.as_slice())?;
        Ok(())
    }

    pub fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        queries::resident_for_in(&self.txn.open_table(ASSIGNMENTS)?, self.problems, device, at)
    }

    /// The device's assignments as this batch would leave them, earliest first.
    pub fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError> {
        queries::assignments_in(&self.txn.open_table(ASSIGNMENTS)?, self.problems, device)
    }

    /// Reads the resident as this batch would leave it; an unreadable record is
    /// `StoreError::Unreadable` (and reported).
    pub fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        let found = self
            .txn
            .open_table(RESIDENTS)?
            .get(id.as_str())?
            .map(|value| from_json("residents", id, value.value()))
            .transpose();
        if let Err(unreadable) = &found {
            self.problems.report(unreadable);
        }
        Ok(found?)
    }

    /// Reads the alert, with its whole history, as this batch would leave it; an unreadable
    /// one is `StoreError::Unreadable` (and reported).
    pub fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        let found = queries::alert_in(
            &self.txn.open_table(ALERTS)?,
            &self.txn.open_table(ALERT_TRANSITIONS)?,
            self.problems,
            id.0,
        );
        if let Err(StoreError::Unreadable(unreadable)) = &found {
            self.problems.report(unreadable);
        }
        found
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
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit()?;
        Ok(())
    }
}
