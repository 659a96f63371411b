//! Messages a device sends on `tec/v1/dev/{id}/up`.
//!
//! Variant order is part of the wire format (postcard writes the variant index):
//! new variants are only ever appended, never inserted or reordered.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// Most motion-count windows one activity summary carries.
pub const MAX_ACTIVITY_WINDOWS: usize = 12;

/// One event from a device. `(device, boot, seq)` identifies it exactly once
/// (the device id comes from the topic, never from the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// Protocol revision the sender was built against (first byte on the wire).
    pub version: u8,
    pub header: UplinkHeader,
    pub body: UplinkBody,
}

impl Uplink {
    /// A message of the current protocol revision.
    pub fn new(header: UplinkHeader, body: UplinkBody) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            header,
            body,
        }
    }
}

/// The part of an uplink every revision of protocol v1 can decode, even when the body
/// is of a newer kind: enough to store the raw event and send its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkHeader {
    /// Incremented and persisted by the device on every start.
    pub boot: u32,
    /// Per-boot sequence number, starting at 0, incremented for every new event
    /// (retransmissions reuse it).
    pub seq: u32,
    /// The device's own clock at the event, Unix time in milliseconds, if it has one.
    /// Values outside [`DEVICE_TIME_MIN_MS`]..=[`DEVICE_TIME_MAX_MS`] are a clock that was
    /// never set or is broken: the gateway stores the event, flags the time as unusable and
    /// counts it (SPEC.md, "Device time").
    pub device_time_ms: Option<u64>,
}

/// Earliest device time the gateway accepts: 2020-01-01T00:00:00Z.
pub const DEVICE_TIME_MIN_MS: u64 = 1_577_836_800_000;
/// Latest device time the gateway accepts: 2099-12-31T23:59:59.999Z.
pub const DEVICE_TIME_MAX_MS: u64 = 4_102_444_799_999;

/// Whether `unix_ms` is a device time within the accepted range. Outside it, the time is a
/// clock that was never set or is broken: a device sends none, a receiver treats it as unknown.
pub const fn device_time_accepted(unix_ms: u64) -> bool {
    unix_ms >= DEVICE_TIME_MIN_MS && unix_ms <= DEVICE_TIME_MAX_MS
}

impl UplinkHeader {
    /// The device time if it is within the accepted range; `None` if absent or outside it
    /// (the raw value stays in [`UplinkHeader::device_time_ms`]).
    pub const fn accepted_device_time_ms(&self) -> Option<u64> {
        match self.device_time_ms {
            Some(unix_ms) if device_time_accepted(unix_ms) => Some(unix_ms),
            _ => None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UplinkBody {
    /// Tag 0. Something that needs a human response.
    Alarm(AlarmKind),
    /// Tag 1. The resident cancelled (press-and-hold within the grace window) the alarm
    /// with this sequence number of the same boot.
    AlarmCancelled { alarm_seq: u32 },
    /// Tag 2. Periodic status; its absence is how the gateway detects a silent device.
    Heartbeat(DeviceStatus),
    /// Tag 3. A home sensor input changed state.
    SensorChange { input: u8, state: SensorState },
    /// Tag 4. Motion counts over consecutive windows.
    Activity(ActivitySummary),
    /// Tag 5. The outcome of a command received on the down topic.
    CommandAck { command_id: u32, result: CommandResult },
}

/// Number of [`UplinkBody`] variants this revision knows; a larger tag is from a newer peer.
pub const UPLINK_BODY_VARIANTS: u32 = 6;
/// Wire tag of [`UplinkBody::Alarm`]: a receiver that cannot decode an alarm's kind must
/// still treat it as an alarm.
pub const UPLINK_ALARM_TAG: u32 = 0;
/// Wire tag of [`UplinkBody::AlarmCancelled`]: with [`UPLINK_ALARM_TAG`], what belongs on the
/// alarm topic (SPEC 2.1), even from a revision whose bodies a receiver cannot read.
pub const UPLINK_ALARM_CANCELLED_TAG: u32 = 1;

/// Kinds of alarm. Life-safety kinds first; the gateway maps each to a priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// 0: the resident pressed the pendant or pull cord.
    PendantPress,
    /// 1: the fall detector saw free fall, impact, then lying still.
    Fall,
    /// 2
    Smoke,
    /// 3
    Heat,
    /// 4
    CarbonMonoxide,
    /// 5
    Flood,
    /// 6: room temperature outside the configured band; reading in hundredths of a °C.
    TemperatureExtreme { centi_celsius: i16 },
    /// 7: left the bed at night and not back within the configured time.
    BedNotReturned,
    /// 8: left the chair and not back within the configured time.
    ChairNotReturned,
    /// 9: an external door opened during the night period.
    DoorOpenedAtNight,
    /// 10: the resident left home (door opened and no motion inside afterwards).
    LeavingHome,
    /// 11: no movement for longer than the configured period.
    Inactivity,
    /// 12
    Seizure,
    /// 13: a dispenser reports a dose not taken.
    MedicationMissed,
    /// 14: the device case was opened or the device removed from its mount.
    Tamper,
    /// 15
    MainsPowerLost,
    /// 16
    MainsPowerRestored,
    /// 17: battery crossed the low threshold (sent once per crossing).
    LowBattery { millivolts: u16, percent: u8 },
}

/// Number of [`AlarmKind`] variants this revision knows.
pub const ALARM_KIND_VARIANTS: u32 = 18;

impl AlarmKind {
    /// Whether the resident may cancel this alarm from the device within the grace window.
    /// Only calls a resident raises about themself: a pendant press and a detected fall. An
    /// environmental hazard (smoke, heat, carbon monoxide, flood) endangers others and is
    /// never cancelled from the device; nor is anything the resident did not raise.
    pub const fn resident_cancellable(&self) -> bool {
        matches!(self, AlarmKind::PendantPress | AlarmKind::Fall)
    }
}

/// A home sensor's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SensorState {
    /// 0
    DoorOpen,
    /// 1
    DoorClosed,
    /// 2
    BedOccupied,
    /// 3
    BedEmpty,
    /// 4
    ChairOccupied,
    /// 5
    ChairEmpty,
    /// 6: a PIR sensor saw movement.
    Motion,
    /// 7: hundredths of a °C.
    Temperature { centi_celsius: i16 },
}

/// Number of [`SensorState`] variants this revision knows.
pub const SENSOR_STATE_VARIANTS: u32 = 8;

/// Periodic device status, carried by heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub battery_mv: u16,
    /// 0..=100.
    pub battery_percent: u8,
    /// Received signal strength in dBm (negative), 0 if unknown.
    pub rssi_dbm: i8,
    pub uptime_s: u32,
    pub firmware: FirmwareVersion,
    /// The heartbeat interval now in force, so the gateway's no-comms timer matches it.
    pub heartbeat_interval_s: u32,
    /// Events waiting in the device's outbox for a receipt.
    pub outbox_depth: u16,
    /// Telemetry events dropped since boot because the outbox was full (alarms never are).
    pub events_dropped: u32,
}

/// Semantic firmware version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

/// Motion counts over consecutive windows of `window_s` seconds, oldest first; the last
/// window ends at the message's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivitySummary {
    pub window_s: u16,
    pub motion_counts: heapless::Vec<u16, MAX_ACTIVITY_WINDOWS>,
}

/// What a device did with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandResult {
    /// 0
    Applied,
    /// 1: understood but refused (e.g. a value out of range).
    Rejected,
    /// 2: not supported by this device.
    Unsupported,
    /// 3
    SelfTestPassed,
    /// 4: a device-specific fault code.
    SelfTestFailed { fault_code: u16 },
}

/// Number of [`CommandResult`] variants this revision knows.
pub const COMMAND_RESULT_VARIANTS: u32 = 5;

impl UplinkBody {
    /// True for bodies the device must never drop and sends before telemetry.
    pub fn is_alarm(&self) -> bool {
        matches!(self, UplinkBody::Alarm(_) | UplinkBody::AlarmCancelled { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_device_time_is_inclusive_and_absent_stays_absent() {
        let at = |device_time_ms| UplinkHeader {
            boot: 1,
            seq: 0,
            device_time_ms,
        };
        for (raw, accepted) in [
            (None, None),
            (Some(0), None),
            (Some(DEVICE_TIME_MIN_MS - 1), None),
            (Some(DEVICE_TIME_MIN_MS), Some(DEVICE_TIME_MIN_MS)),
            (Some(DEVICE_TIME_MAX_MS), Some(DEVICE_TIME_MAX_MS)),
            (Some(DEVICE_TIME_MAX_MS + 1), None),
            (Some(u64::MAX), None),
        ] {
            assert_eq!(at(raw).accepted_device_time_ms(), accepted, "{raw:?}");
        }
    }
}
