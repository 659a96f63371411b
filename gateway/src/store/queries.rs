//! Lookups shared by read transactions and a write batch (which must see its own writes).

use protocol::DeviceId;
use redb::ReadableTable;

use super::StoreError;
use super::schema::{from_json, from_postcard};
use crate::domain::{Alert, Assignment, DeviceRecord, ResidentId, StoredEvent, Timestamp};

type EventsTable = (&'static str, u32, u32);
type Bytes = &'static [u8];

pub(crate) fn event_in(
    events: &impl ReadableTable<EventsTable, Bytes>,
    device: &str,
    boot: u32,
    seq: u32,
) -> Result<Option<StoredEvent>, StoreError> {
    events
        .get((device, boot, seq))?
        .map(|value| from_postcard("events", format_args!("{device}/{boot}/{seq}"), value.value()))
        .transpose()
}

/// An event an index points at; a dangling index entry is corruption, not "no event".
pub(crate) fn indexed_event(
    events: &impl ReadableTable<EventsTable, Bytes>,
    index: &'static str,
    device: &str,
    boot: u32,
    seq: u32,
) -> Result<StoredEvent, StoreError> {
    event_in(events, device, boot, seq)?.ok_or_else(|| {
        StoreError::corrupt(
            index,
            format_args!("{device}/{boot}/{seq}"),
            "points at a missing event",
        )
    })
}

pub(crate) fn alert_in(alerts: &impl ReadableTable<u64, Bytes>, id: u64) -> Result<Option<Alert>, StoreError> {
    alerts
        .get(id)?
        .map(|value| from_json("alerts", id, value.value()))
        .transpose()
}

pub(crate) fn indexed_alert(
    alerts: &impl ReadableTable<u64, Bytes>,
    index: &'static str,
    id: u64,
) -> Result<Alert, StoreError> {
    alert_in(alerts, id)?.ok_or_else(|| StoreError::corrupt(index, id, "points at a missing alert"))
}

pub(crate) fn device_in(
    devices: &impl ReadableTable<&'static str, Bytes>,
    id: &DeviceId,
) -> Result<Option<DeviceRecord>, StoreError> {
    devices
        .get(id.as_str())?
        .map(|value| from_postcard("devices", id, value.value()))
        .transpose()
}

pub(crate) fn assignments_in(
    assignments: &impl ReadableTable<(&'static str, i64), Bytes>,
    device: &DeviceId,
) -> Result<Vec<Assignment>, StoreError> {
    let device = device.as_str();
    let mut found = Vec::new();
    for entry in assignments.range((device, i64::MIN)..=(device, i64::MAX))? {
        let (key, value) = entry?;
        let (_, from) = key.value();
        found.push(from_postcard(
            "assignments",
            format_args!("{device}@{from}"),
            value.value(),
        )?);
    }
    Ok(found)
}

/// The assignment starting last at or before `at`: the only candidate, as they never overlap.
pub(crate) fn assignment_at(
    assignments: &impl ReadableTable<(&'static str, i64), Bytes>,
    device: &DeviceId,
    at: Timestamp,
) -> Result<Option<Assignment>, StoreError> {
    let device = device.as_str();
    let Some(entry) = assignments
        .range((device, i64::MIN)..=(device, at.as_millis()))?
        .next_back()
    else {
        return Ok(None);
    };
    let (key, value) = entry?;
    let (_, from) = key.value();
    let assignment: Assignment = from_postcard("assignments", format_args!("{device}@{from}"), value.value())?;
    Ok(assignment.covers(at).then_some(assignment))
}

pub(crate) fn resident_for_in(
    assignments: &impl ReadableTable<(&'static str, i64), Bytes>,
    device: &DeviceId,
    at: Timestamp,
) -> Result<Option<ResidentId>, StoreError> {
    Ok(assignment_at(assignments, device, at)?.map(|assignment| assignment.resident))
}
