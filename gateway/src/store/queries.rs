//! Lookups shared by read transactions and a write batch (which must see its own writes).
//! A record that does not decode is `StoreError::Unreadable`; queries over many records
//! report it to [`Problems`] and go on with the rest.

use protocol::DeviceId;
use redb::ReadableTable;

use super::problems::Problems;
use super::schema::{AlertHeader, decode_event, from_json};
use super::{EventRead, StoreError, Unreadable};
use crate::domain::{Alert, Assignment, DeviceRecord, ResidentId, StoredEvent, Timestamp, Transition};

pub(crate) type EventsKey = (&'static str, u32, u32, u32);
type Bytes = &'static [u8];

/// The event stored under (device, boot, seq, copy), decoded.
pub(crate) fn event_in(
    events: &impl ReadableTable<EventsKey, Bytes>,
    device: &str,
    boot: u32,
    seq: u32,
    copy: u32,
) -> Result<Option<EventRead>, StoreError> {
    let Some(value) = events.get((device, boot, seq, copy))? else {
        return Ok(None);
    };
    Ok(Some(event_read(device, boot, seq, copy, value.value())?))
}

pub(crate) fn event_read(device: &str, boot: u32, seq: u32, copy: u32, bytes: &[u8]) -> Result<EventRead, Unreadable> {
    let record = decode_event(device, boot, seq, copy, bytes)?;
    let device =
        DeviceId::new(device).map_err(|err| Unreadable::new("events", format_args!("{device}/{boot}/{seq}"), err))?;
    Ok(EventRead {
        copy,
        event: StoredEvent::from_decoded(device, record.decoded, record.resident, record.received_at),
    })
}

/// An event an index points at; a dangling index entry is an unreadable index record.
pub(crate) fn indexed_event(
    events: &impl ReadableTable<EventsKey, Bytes>,
    index: &'static str,
    (device, boot, seq, copy): (&str, u32, u32, u32),
) -> Result<EventRead, StoreError> {
    event_in(events, device, boot, seq, copy)?.ok_or_else(|| {
        Unreadable::new(
            index,
            format_args!("{device}/{boot}/{seq} copy {copy}"),
            "points at a missing event",
        )
        .into()
    })
}

/// The alert `id`, assembled from its header and its appended transitions.
pub(crate) fn alert_in(
    alerts: &impl ReadableTable<u64, Bytes>,
    transitions: &impl ReadableTable<(u64, u32), Bytes>,
    problems: &Problems,
    id: u64,
) -> Result<Option<Alert>, StoreError> {
    let Some(value) = alerts.get(id)? else {
        return Ok(None);
    };
    let header: AlertHeader = from_json("alerts", id, value.value())?;
    alert_from_header(transitions, problems, header).map(Some)
}

/// The alert a header describes, with its first `transition_count` transitions (an alert's
/// history is append-only, so an older header gets the history as it was then).
pub(crate) fn alert_from_header(
    transitions: &impl ReadableTable<(u64, u32), Bytes>,
    problems: &Problems,
    header: AlertHeader,
) -> Result<Alert, StoreError> {
    let id = header.id.0;
    let mut history: Vec<Transition> = Vec::with_capacity(header.transition_count as usize);
    let mut expected = 0u32;
    for entry in transitions.range((id, 0)..(id, header.transition_count))? {
        let (key, value) = entry?;
        let index = key.value().1;
        let read = if index == expected {
            from_json::<Transition>("alert_transitions", format_args!("{id}/{index}"), value.value())
        } else {
            Err(Unreadable::new(
                "alert_transitions",
                format_args!("{id}/{expected}"),
                "missing",
            ))
        };
        expected = index.saturating_add(1);
        match read {
            Ok(transition) => history.push(transition),
            // The alert still reaches a human, with the gap reported.
            Err(unreadable) => problems.report(&unreadable),
        }
    }
    if expected < header.transition_count {
        problems.report(&Unreadable::new(
            "alert_transitions",
            format_args!("{id}/{expected}"),
            format_args!("missing (the header counts {})", header.transition_count),
        ));
    }
    Ok(header.into_alert(history))
}

pub(crate) fn indexed_alert(
    alerts: &impl ReadableTable<u64, Bytes>,
    transitions: &impl ReadableTable<(u64, u32), Bytes>,
    problems: &Problems,
    index: &'static str,
    id: u64,
) -> Result<Alert, StoreError> {
    alert_in(alerts, transitions, problems, id)?
        .ok_or_else(|| Unreadable::new(index, id, "points at a missing alert").into())
}

pub(crate) fn device_in(
    devices: &impl ReadableTable<&'static str, Bytes>,
    id: &DeviceId,
) -> Result<Option<DeviceRecord>, StoreError> {
    Ok(devices
        .get(id.as_str())?
        .map(|value| from_json("devices", id, value.value()))
        .transpose()?)
}

/// The device's assignments, earliest first; unreadable ones are reported and left out.
pub(crate) fn assignments_in(
    assignments: &impl ReadableTable<(&'static str, i64), Bytes>,
    problems: &Problems,
    device: &DeviceId,
) -> Result<Vec<Assignment>, StoreError> {
    let device = device.as_str();
    let mut found = Vec::new();
    for entry in assignments.range((device, i64::MIN)..=(device, i64::MAX))? {
        let (key, value) = entry?;
        let (_, from) = key.value();
        match from_json("assignments", format_args!("{device}@{from}"), value.value()) {
            Ok(assignment) => found.push(assignment),
            Err(unreadable) => problems.report(&unreadable),
        }
    }
    Ok(found)
}

/// The assignment starting last at or before `at`: the only candidate, as they never overlap.
/// An unreadable one is reported and read as "no assignment" (the event is still stored and
/// alerts, without a resident).
pub(crate) fn assignment_at(
    assignments: &impl ReadableTable<(&'static str, i64), Bytes>,
    problems: &Problems,
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
    match from_json::<Assignment>("assignments", format_args!("{device}@{from}"), value.value()) {
        Ok(assignment) => Ok(assignment.covers(at).then_some(assignment)),
        Err(unreadable) => {
            problems.report(&unreadable);
            Ok(None)
        }
    }
}

pub(crate) fn resident_for_in(
    assignments: &impl ReadableTable<(&'static str, i64), Bytes>,
    problems: &Problems,
    device: &DeviceId,
    at: Timestamp,
) -> Result<Option<ResidentId>, StoreError> {
    Ok(assignment_at(assignments, problems, device, at)?.map(|assignment| assignment.resident))
}
