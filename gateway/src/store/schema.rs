//! Table layout and value encodings. Typed redb keys make the indexes ordered ranges; values
//! are postcard (compact, fast) except where serde needs a self-describing format.

use std::fmt::Display;

use redb::TableDefinition;
use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

/// Bump when a table's key or value layout changes; older gateways then refuse the file.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";
pub(crate) const QUARANTINE_NEXT_SEQ_KEY: &str = "quarantine_next_seq";
pub(crate) const TIME_GROUP_NEXT_KEY: &str = "time_group_next";

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (device, boot, seq) -> postcard StoredEvent.
pub(crate) const EVENTS: TableDefinition<(&str, u32, u32), &[u8]> = TableDefinition::new("events");
/// (received_ms, group) -> postcard `Vec<EventKey>`: the time order of all events. One entry
/// holds every event a commit received in that millisecond (a drain receives dozens per ms),
/// so the index costs an insert per millisecond rather than per event. `group` is unique per
/// entry; readers sort the keys of one millisecond across its groups.
pub(crate) const EVENTS_BY_TIME: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("events_by_time");
/// (resident, received_ms, device, boot, seq): one resident's history in time order.
pub(crate) const EVENTS_BY_RESIDENT: TableDefinition<(&str, i64, &str, u32, u32), ()> =
    TableDefinition::new("events_by_resident");
/// alert id -> JSON Alert (its `Change` is internally tagged, which postcard cannot decode).
pub(crate) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
pub(crate) const OPEN_ALERTS: TableDefinition<u64, ()> = TableDefinition::new("open_alerts");
pub(crate) const ALERTS_BY_RESIDENT: TableDefinition<(&str, u64), ()> = TableDefinition::new("alerts_by_resident");
/// insertion sequence -> postcard QuarantineRecord; the lowest key is the oldest.
pub(crate) const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");
pub(crate) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
pub(crate) const RESIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("residents");
/// (device, from_ms) -> postcard Assignment.
pub(crate) const ASSIGNMENTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("assignments");
/// Opaque alert-engine state, owned by the engine.
pub(crate) const ENGINE_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("engine_state");

pub(crate) fn to_postcard<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|err| StoreError::Encode {
        table,
        detail: err.to_string(),
    })
}

pub(crate) fn from_postcard<T: DeserializeOwned>(
    table: &'static str,
    key: impl Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|err| StoreError::corrupt(table, key, err))
}

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
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::corrupt(table, key, err))
}
