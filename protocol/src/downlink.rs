//! Messages the gateway sends on `tec/v1/dev/{id}/down`, and the presence messages
//! on `tec/v1/dev/{id}/status`.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// Most sequence numbers one receipt names. A gateway with more to confirm for one boot
/// sends several receipts.
pub const MAX_RECEIPT_SEQS: usize = 32;

/// One message to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// Protocol revision of the sender (first byte on the wire).
    pub version: u8,
    pub body: DownlinkBody,
}

impl Downlink {
    pub fn new(body: DownlinkBody) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            body,
        }
    }
}

/// What the gateway tells a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownlinkBody {
    /// Tag 0. These uplinks of this boot are committed to the gateway's disk; the device
    /// may delete them from its outbox. Per sequence number, not cumulative (SPEC.md says why).
    Receipt {
        boot: u32,
        seqs: heapless::Vec<u32, MAX_RECEIPT_SEQS>,
    },
    /// Tag 1. An operator accepted the alarm: "help is on the way".
    HelpOnTheWay { alert_ref: u64 },
    /// Tag 2. The alert was resolved by an operator.
    AlertResolved { alert_ref: u64 },
    /// Tag 3. New settings; the device answers with a `CommandAck`.
    Configure { command_id: u32, config: DeviceConfig },
    /// Tag 4. Run a self-check and report with a `CommandAck`.
    SelfTest { command_id: u32 },
    /// Tag 5. The gateway's clock, Unix time in milliseconds.
    TimeSync { unix_ms: u64 },
    /// Tag 6. The gateway has seen this device's keys reused (its boot counter went back):
    /// from now on the device must use boot numbers of at least `min_boot` (SPEC.md, "When a
    /// boot counter goes back").
    BootFloor { min_boot: u32 },
}

/// Number of [`DownlinkBody`] variants this revision knows.
pub const DOWNLINK_BODY_VARIANTS: u32 = 7;

/// Accepted ranges for [`DeviceConfig`] fields (SPEC.md, "Configure"). A device answers
/// `Rejected` to anything outside them; the gateway clamps what devices report to them
/// (a reported heartbeat interval of days must not switch off no-comms detection).
pub mod config_limits {
    use core::ops::RangeInclusive;
    pub const HEARTBEAT_INTERVAL_S: RangeInclusive<u32> = 30..=86_400;
    pub const CANCEL_GRACE_S: RangeInclusive<u16> = 0..=300;
    pub const TEMPERATURE_CENTI: RangeInclusive<i16> = -4_000..=8_000;
    pub const LOW_BATTERY_PERCENT: RangeInclusive<u8> = 1..=90;
    pub const FALL_FREE_FALL_MG: RangeInclusive<u16> = 100..=1_000;
    pub const FALL_IMPACT_MG: RangeInclusive<u16> = 1_000..=16_000;
}

/// Device settings the gateway controls. Always sent whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Seconds between heartbeats.
    pub heartbeat_interval_s: u32,
    /// Seconds after an alarm during which press-and-hold cancels it.
    pub cancel_grace_s: u16,
    /// Temperature alarm band, hundredths of a °C.
    pub temperature_high_centi: i16,
    pub temperature_low_centi: i16,
    /// Battery percentage below which the device reports low battery.
    pub low_battery_percent: u8,
    /// Fall detector: acceleration below this (milli-g) counts as free fall.
    pub fall_free_fall_mg: u16,
    /// Fall detector: acceleration above this (milli-g) counts as an impact.
    pub fall_impact_mg: u16,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_s: 300,
            cancel_grace_s: 30,
            temperature_high_centi: 3_500,
            temperature_low_centi: 1_000,
            low_battery_percent: 20,
            fall_free_fall_mg: 350,
            fall_impact_mg: 2_500,
        }
    }
}

/// Device presence on the status topic. The device publishes `Online` (retained) after
/// connecting and registers `Offline` as its MQTT last will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Presence {
    /// Tag 0.
    Online { boot: u32 },
    /// Tag 1. Also the last will, published by the broker when the device vanishes.
    Offline,
}

/// Number of [`Presence`] variants this revision knows.
pub const PRESENCE_VARIANTS: u32 = 2;

/// A presence message with its version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusMessage {
    pub version: u8,
    pub presence: Presence,
}

impl StatusMessage {
    pub fn new(presence: Presence) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            presence,
        }
    }
}
