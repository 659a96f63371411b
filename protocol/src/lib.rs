//! The language TEC devices and the gateway share: topics, message types, and their
//! versioned postcard encoding. `no_std`, no allocator; see `SPEC.md` for the wire format.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

pub mod device_id;
pub mod downlink;
pub mod topic;
pub mod uplink;
pub mod wire;

pub use device_id::{DeviceId, DeviceIdError, MAX_DEVICE_ID_LEN, MIN_DEVICE_ID_LEN};
pub use downlink::{
    DOWNLINK_BODY_VARIANTS, DeviceConfig, Downlink, DownlinkBody, MAX_RECEIPT_SEQS, PRESENCE_VARIANTS, Presence,
    StatusMessage, config_limits,
};
pub use topic::{
    ALL_ALARMS_FILTER, ALL_STATUS_FILTER, ALL_UPLINKS_FILTER, MAX_TOPIC_LEN, TOPIC_PREFIX, Topic, TopicError, TopicKind,
};
pub use uplink::{
    ALARM_KIND_VARIANTS, ActivitySummary, AlarmKind, COMMAND_RESULT_VARIANTS, CommandResult, DEVICE_TIME_MAX_MS,
    DEVICE_TIME_MIN_MS, DeviceStatus, FirmwareVersion, MAX_ACTIVITY_WINDOWS, SENSOR_STATE_VARIANTS, SensorState,
    UPLINK_ALARM_CANCELLED_TAG, UPLINK_ALARM_TAG, UPLINK_BODY_VARIANTS, Uplink, UplinkBody, UplinkHeader,
    device_time_accepted,
};
pub use wire::{
    DecodeError, EncodeError, MAX_DOWNLINK_LEN, MAX_STATUS_LEN, MAX_UPLINK_LEN, decode_downlink, decode_status,
    decode_uplink, encode_downlink, encode_status, encode_uplink, peek_uplink_header,
};

/// The protocol revision this crate speaks, written as the first byte of every payload.
/// Revisions within `tec/v1` only add (new variants at the end, new trailing fields), so a
/// receiver decodes any revision and ignores what it does not know (SPEC.md, "Versioning").
pub const PROTOCOL_VERSION: u8 = 1;
