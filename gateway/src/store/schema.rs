//! Table layout and value encodings, and how each may evolve.
//!
//! The store outlives the code that wrote it: a gateway must read every record any earlier
//! version wrote (the golden files in `gateway/tests/fixtures/` hold it to that). So no value
//! is the serde encoding of a type that a later revision might extend positionally:
//!
//! - **Events** keep what was received: the uplink payload bytes exactly as they arrived,
//!   behind a small envelope of receive metadata (below). They are decoded on every read with
//!   the protocol's forward-compatibility rules ([`crate::domain::EventBody::decode_uplink`]):
//!   a body this gateway does not know reads as `Unrecognised`, and a later gateway that knows
//!   it reads it fully. Nothing about the event is frozen in today's Rust types.
//! - **Every other record** (devices, residents, assignments, alert headers and transitions,
//!   quarantine metadata) is a JSON object. Rules for later versions: add fields only with
//!   `#[serde(default)]` (or as `Option`), never rename, retype or remove a field or an enum
//!   variant; readers ignore fields they do not know (no `deny_unknown_fields`), so an older
//!   gateway also reads a newer record. A record that still does not decode is reported as
//!   [`super::Unreadable`] (table and key), never fatal to a query or to startup.
//! - **Engine state** is opaque bytes owned by the alert engine, which versions it.
//! - **Keys and indexes** are redb tuples. Changing a key layout (or dropping a rule above)
//!   needs [`SCHEMA_VERSION`] bumped and a migration in `Store::open`; an older gateway then
//!   refuses the file instead of misreading it.
//!
//! Envelopes (events, quarantine): `[format byte = 1][LEB128 length n][n bytes of metadata][raw
//! bytes]`. Quarantine metadata is JSON (rules above). Event metadata, written per event on the
//! ingest path, is compact: postcard values one after another, `received_at` (i64 ms) then
//! `resident` (`Option<str>`); a later version may only **append** values, and readers take the
//! ones they know, default any missing at the end, and ignore any they do not know. A new
//! format byte is for a layout older readers could not parse; readers keep decoding every
//! earlier format.

use std::fmt::Display;

use redb::TableDefinition;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{StoreError, Unreadable};
use crate::domain::{
    Alert, AlertId, AlertKind, AlertState, DecodedUplink, EventBody, Priority, QuarantineRecord, RejectReason,
    ResidentId, Timestamp, Transition,
};

/// Bump when a table's key layout changes or a value stops following the rules above; older
/// gateways then refuse the file.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";
pub(crate) const QUARANTINE_NEXT_SEQ_KEY: &str = "quarantine_next_seq";
pub(crate) const TIME_GROUP_NEXT_KEY: &str = "time_group_next";

/// The one envelope format this version writes (and the oldest it reads).
pub(crate) const ENVELOPE_FORMAT_V1: u8 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (device, boot, seq, copy) -> event envelope. Copy 0 is the first event stored under the
/// key; copies 1, 2, ... are later arrivals under the same key with different content (the
/// device reused the key), kept so nothing a device sent is swallowed.
pub(crate) const EVENTS: TableDefinition<(&str, u32, u32, u32), &[u8]> = TableDefinition::new("events");
/// (received_ms, group) -> JSON `[[device, boot, seq, copy], ...]`: the time order of all
/// events. One entry holds every event a commit received in that millisecond (a drain receives
/// dozens per ms), so the index costs an insert per millisecond rather than per event. `group`
/// is unique per entry; readers sort the keys of one millisecond across its groups.
pub(crate) const EVENTS_BY_TIME: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("events_by_time");
/// (resident, received_ms, device, boot, seq, copy): one resident's history in time order.
pub(crate) const EVENTS_BY_RESIDENT: TableDefinition<(&str, i64, &str, u32, u32, u32), ()> =
    TableDefinition::new("events_by_resident");
/// alert id -> JSON [`AlertHeader`]: the alert without its history.
pub(crate) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// (alert id, index) -> JSON `Transition`: an alert's history, appended, never rewritten, so
/// an alert joined thousands of times costs one small insert per join.
pub(crate) const ALERT_TRANSITIONS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("alert_transitions");
pub(crate) const OPEN_ALERTS: TableDefinition<u64, ()> = TableDefinition::new("open_alerts");
pub(crate) const ALERTS_BY_RESIDENT: TableDefinition<(&str, u64), ()> = TableDefinition::new("alerts_by_resident");
/// seq -> JSON `AlertChangeRecord` (store/alert_changes.rs): every committed alert change in
/// commit order, appended in the change's own transaction, oldest pruned by the retention.
pub(crate) const ALERT_CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("alert_changes");
/// The next alert-change seq (META); absent means 1.
pub(crate) const ALERT_CHANGE_NEXT_SEQ_KEY: &str = "alert_change_next_seq";
/// insertion sequence -> quarantine envelope (JSON metadata, then the kept payload bytes);
/// the lowest key is the oldest.
pub(crate) const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");
/// device id -> JSON `DeviceRecord`.
pub(crate) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// resident id -> JSON `Resident`.
pub(crate) const RESIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("residents");
/// (device, from_ms) -> JSON `Assignment`.
pub(crate) const ASSIGNMENTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("assignments");
/// Opaque alert-engine state, owned by the engine.
pub(crate) const ENGINE_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("engine_state");
/// username -> JSON `UserRecord` (access control, `store/access.rs`).
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// hex SHA-256 of a bearer token -> JSON `SessionRecord` (the token itself is never stored).
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// sequence (from 1) -> JSON `AuditEntry`, each carrying its predecessor's hash; append-only.
pub(crate) const AUDIT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// "head" -> JSON `AuditHead`: the last entry's sequence and hash, so a removed tail shows.
pub(crate) const AUDIT_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_head");
/// (resident, seq): the audit entries naming each resident, written with the entry. Entries
/// up to [`AUDIT_INDEXED_THROUGH_KEY`] are indexed; a store written before the index (or by
/// an older gateway, which does not know it) is caught up when opened. Adding it needs no
/// schema bump: an older gateway ignores the table and the newer one indexes what it missed.
pub(crate) const AUDIT_BY_RESIDENT: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_resident");
/// The highest audit seq in `audit_by_resident` (META); absent means none.
pub(crate) const AUDIT_INDEXED_THROUGH_KEY: &str = "audit_by_resident_through";

pub(crate) fn to_json<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|err| StoreError::Encode {
        table,
        detail: err.to_string(),
    })
}

pub(crate) fn from_json<T: DeserializeOwned>(
    table: &'static str,
    key: impl Display,
    bytes: &[u8],
) -> Result<T, Unreadable> {
    serde_json::from_slice(bytes).map_err(|err| Unreadable::new(table, key, err))
}

/// `[format][LEB128 len][metadata][raw]`.
fn envelope(meta: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 5 + meta.len() + raw.len());
    envelope_into(&mut out, meta, raw);
    out
}

fn envelope_into(out: &mut Vec<u8>, meta: &[u8], raw: &[u8]) {
    out.clear();
    out.push(ENVELOPE_FORMAT_V1);
    let mut len = meta.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(meta);
    out.extend_from_slice(raw);
}

/// Splits an envelope into its metadata and raw bytes.
pub(crate) fn open_envelope(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (&format, mut rest) = bytes.split_first().ok_or("empty value")?;
    if format != ENVELOPE_FORMAT_V1 {
        return Err(format!("envelope format {format} is not one this gateway reads"));
    }
    let mut len: usize = 0;
    for shift in (0..35).step_by(7) {
        let (&byte, after) = rest.split_first().ok_or("envelope length cut short")?;
        rest = after;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return if len <= rest.len() {
                Ok(rest.split_at(len))
            } else {
                Err(format!("envelope metadata of {len} bytes, only {} present", rest.len()))
            };
        }
    }
    Err("envelope length too long".into())
}

/// Encodes event envelopes into buffers reused across a batch (ingest writes thousands).
#[derive(Debug, Default)]
pub(crate) struct EventEncoder {
    meta: Vec<u8>,
    value: Vec<u8>,
}

impl EventEncoder {
    pub(crate) fn encode(
        &mut self,
        received_at: Timestamp,
        resident: Option<&ResidentId>,
        payload: &[u8],
    ) -> Result<&[u8], StoreError> {
        // What the gateway knew when it received the event (the event itself is the payload).
        let meta = (received_at.as_millis(), resident.map(ResidentId::as_str));
        self.meta = postcard::to_extend(&meta, std::mem::take(&mut self.meta)).map_err(|err| StoreError::Encode {
            table: "events",
            detail: err.to_string(),
        })?;
        envelope_into(&mut self.value, &self.meta, payload);
        self.meta.clear();
        Ok(&self.value)
    }
}

/// An event as stored: receive metadata and the payload decoded now.
#[derive(Debug)]
pub(crate) struct EventRecord {
    pub received_at: Timestamp,
    pub resident: Option<ResidentId>,
    pub decoded: DecodedUplink,
}

/// Decodes an event envelope stored under (device, boot, seq, copy).
pub(crate) fn decode_event(
    device: &str,
    boot: u32,
    seq: u32,
    copy: u32,
    bytes: &[u8],
) -> Result<EventRecord, Unreadable> {
    let key = format_args!("{device}/{boot}/{seq} copy {copy}");
    let (meta, payload) = open_envelope(bytes).map_err(|detail| Unreadable::new("events", key, detail))?;
    let (received_at, meta) =
        postcard::take_from_bytes::<i64>(meta).map_err(|err| Unreadable::new("events", key, err))?;
    // Appended by later versions: absent means the default; anything after is not ours to read.
    let resident = match meta {
        [] => None,
        meta => {
            postcard::take_from_bytes::<Option<&str>>(meta)
                .map_err(|err| Unreadable::new("events", key, err))?
                .0
        }
    };
    let resident = resident
        .map(ResidentId::new)
        .transpose()
        .map_err(|err| Unreadable::new("events", key, err))?;
    let decoded = EventBody::decode_uplink(payload).map_err(|err| Unreadable::new("events", key, err))?;
    if (decoded.header.boot, decoded.header.seq) != (boot, seq) {
        return Err(Unreadable::new(
            "events",
            key,
            format_args!(
                "payload header says boot {} seq {}",
                decoded.header.boot, decoded.header.seq
            ),
        ));
    }
    Ok(EventRecord {
        received_at: Timestamp(received_at),
        resident,
        decoded,
    })
}

/// The quarantine record without its payload (which follows the metadata raw).
#[derive(Debug, Serialize, Deserialize)]
struct QuarantineMeta {
    received_at: Timestamp,
    topic: String,
    original_len: usize,
    reason: RejectReason,
    detail: String,
}

pub(crate) fn encode_quarantine(record: &QuarantineRecord) -> Result<Vec<u8>, StoreError> {
    let meta = to_json(
        "quarantine",
        &QuarantineMeta {
            received_at: record.received_at,
            topic: record.topic.clone(),
            original_len: record.original_len,
            reason: record.reason,
            detail: record.detail.clone(),
        },
    )?;
    Ok(envelope(&meta, &record.payload))
}

pub(crate) fn decode_quarantine(seq: u64, bytes: &[u8]) -> Result<QuarantineRecord, Unreadable> {
    let (meta, payload) = open_envelope(bytes).map_err(|detail| Unreadable::new("quarantine", seq, detail))?;
    let meta: QuarantineMeta = from_json("quarantine", seq, meta)?;
    Ok(QuarantineRecord {
        received_at: meta.received_at,
        topic: meta.topic,
        payload: payload.to_vec(),
        original_len: meta.original_len,
        reason: meta.reason,
        detail: meta.detail,
    })
}

/// An alert without its transitions (kept in `alert_transitions`), plus how many there are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AlertHeader {
    pub id: AlertId,
    pub kind: AlertKind,
    pub priority: Priority,
    pub state: AlertState,
    pub resident: Option<ResidentId>,
    #[serde(with = "crate::domain::option_device_id_serde")]
    pub device: Option<protocol::DeviceId>,
    pub unregistered_device: bool,
    pub raised_at: Timestamp,
    pub late_by_ms: Option<i64>,
    pub escalation_level: u8,
    /// An infrastructure incident's devices (rewritten with the header: the engine changes
    /// the list once per call, not per device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_devices: Vec<crate::domain::AffectedDevice>,
    /// Transitions 0..transition_count are stored.
    pub transition_count: u32,
}

impl AlertHeader {
    pub(crate) fn of(alert: &Alert) -> Self {
        Self {
            id: alert.id,
            kind: alert.kind,
            priority: alert.priority,
            state: alert.state,
            resident: alert.resident.clone(),
            device: alert.device,
            unregistered_device: alert.unregistered_device,
            raised_at: alert.raised_at,
            late_by_ms: alert.late_by_ms,
            escalation_level: alert.escalation_level,
            affected_devices: alert.affected_devices.clone(),
            transition_count: u32::try_from(alert.transitions.len()).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn into_alert(self, transitions: Vec<Transition>) -> Alert {
        Alert {
            id: self.id,
            kind: self.kind,
            priority: self.priority,
            state: self.state,
            resident: self.resident,
            device: self.device,
            unregistered_device: self.unregistered_device,
            raised_at: self.raised_at,
            late_by_ms: self.late_by_ms,
            escalation_level: self.escalation_level,
            transitions,
            affected_devices: self.affected_devices,
        }
    }
}

/// One entry of the time index: (device, boot, seq, copy).
pub(crate) type TimeIndexKey = (String, u32, u32, u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_metadata_takes_what_it_knows_and_defaults_the_rest() {
        // Revision 1, boot 2, seq 3, no device time, a pendant press.
        let payload = [1, 2, 3, 0, 0, 0];
        let resident = ResidentId::new("R1").unwrap();
        let mut encoder = EventEncoder::default();
        let written = encoder
            .encode(Timestamp(-5), Some(&resident), &payload)
            .unwrap()
            .to_vec();
        let read = decode_event("pnd-1", 2, 3, 0, &written).unwrap();
        assert_eq!((read.received_at, read.resident), (Timestamp(-5), Some(resident)));
        // Written before `resident` existed: only received_at.
        let older = envelope(&postcard::to_stdvec(&7_i64).unwrap(), &payload);
        let read = decode_event("pnd-1", 2, 3, 0, &older).unwrap();
        assert_eq!((read.received_at, read.resident), (Timestamp(7), None));
        // Written by a later version that appended a field: the extra is ignored.
        let newer = envelope(&postcard::to_stdvec(&(7_i64, Some("R2"), 99_u32)).unwrap(), &payload);
        let read = decode_event("pnd-1", 2, 3, 0, &newer).unwrap();
        assert_eq!(read.resident, Some(ResidentId::new("R2").unwrap()));
        assert_eq!(
            read.decoded.body,
            EventBody::Uplink(protocol::UplinkBody::Alarm(protocol::AlarmKind::PendantPress))
        );
        // A payload whose header disagrees with the key is unreadable, not misfiled.
        let err = decode_event("pnd-1", 2, 4, 0, &written).unwrap_err();
        assert!(err.detail.contains("boot 2 seq 3"), "{err}");
    }

    #[test]
    fn envelope_roundtrips_and_rejects_damage() {
        let long_meta = vec![b'x'; 300];
        for (meta, raw) in [(&b"{}"[..], &b"raw"[..]), (&long_meta[..], &b""[..])] {
            let bytes = envelope(meta, raw);
            assert_eq!(open_envelope(&bytes).unwrap(), (meta, raw));
        }
        assert!(open_envelope(&[]).is_err());
        assert!(open_envelope(&[2, 0]).unwrap_err().contains("format 2"));
        assert!(open_envelope(&[1, 9, b'{']).is_err());
        assert!(open_envelope(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
