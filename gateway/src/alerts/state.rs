//! What the engine asks the store to keep between restarts, and its keys.
//!
//! Values are serde_json: small, readable with `tec-gateway` inspection tools, and
//! tolerant of added fields (`#[serde(default)]`).

use jiff::civil::{Date, Time};
use protocol::DeviceId;
use serde::{Deserialize, Serialize};

use crate::domain::{AlertId, EventKey, ResidentId, Timestamp};

/// "Event not occurring" rules for one resident. `None` switches a rule off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentRules {
    /// Alert if the resident leaves the bed during the night period and is not back
    /// within this many minutes.
    #[serde(default)]
    pub bed_return_within_min: Option<u32>,
    /// Alert if no movement was seen between the start of the resident's day
    /// (`EngineConfig::day_start`, 04:00 by default) and this local time.
    #[serde(default)]
    pub movement_expected_by: Option<Time>,
}

impl ResidentRules {
    pub fn is_empty(&self) -> bool {
        self.bed_return_within_min.is_none() && self.movement_expected_by.is_none()
    }
}

/// No-comms and battery watch of one device that has been heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceWatch {
    /// Latest gateway time anything arrived from the device (event or Online presence).
    pub last_heard: Timestamp,
    /// The interval its latest heartbeat announced.
    #[serde(default)]
    pub heartbeat_interval_s: Option<u32>,
    /// A last will arrived and the device has not been heard from since.
    #[serde(default)]
    pub last_will_at: Option<Timestamp>,
    /// A DeviceOffline alert was raised and the device has not come back yet.
    #[serde(default)]
    pub offline: bool,
    /// Battery latch: set when a low-battery alert was raised, cleared above the
    /// recovery threshold.
    #[serde(default)]
    pub battery_low: bool,
    #[serde(default)]
    pub resident: Option<ResidentId>,
    #[serde(default)]
    pub unregistered: bool,
    /// When it was last counted offline (kept after it comes back): flood detection counts
    /// these within its window.
    #[serde(default)]
    pub last_offline_at: Option<Timestamp>,
}

impl DeviceWatch {
    pub fn new(last_heard: Timestamp) -> Self {
        Self {
            last_heard,
            heartbeat_interval_s: None,
            last_will_at: None,
            offline: false,
            battery_low: false,
            resident: None,
            unregistered: false,
            last_offline_at: None,
        }
    }
}

/// A pending "not back in bed" timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BedTimer {
    /// The BedEmpty event that started it; it names the alert's cause.
    pub event: EventKey,
    pub due: Timestamp,
}

/// Per-resident rule state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResidentState {
    #[serde(default)]
    pub bed_timer: Option<BedTimer>,
    /// Latest movement; only moved forward when it starts a new resident day, so it is
    /// written at most about once a day.
    #[serde(default)]
    pub last_movement: Option<Timestamp>,
    /// The resident day whose "no movement by" check has run.
    #[serde(default)]
    pub movement_checked_day: Option<Date>,
}

impl ResidentState {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An alarm event that raised or joined an alert: its device gets the operator's
/// feedback, and a cancel from the device is matched against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AlarmRef {
    pub event: EventKey,
    /// When the alarm happened (device time when known, else receive time).
    pub occurred_at: Timestamp,
    /// The resident may cancel it from the device ([`protocol::AlarmKind::resident_cancellable`]).
    /// Entries written before this field existed read as false: their cancel becomes a
    /// note and a human closes the alert (when in doubt, alert).
    #[serde(default)]
    pub cancellable: bool,
}

/// A resident's cancel that arrived before the alarm it names (retransmission reorders
/// them), held until that alarm arrives or the hold expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldCancel {
    /// The cancel event itself.
    pub cancel: EventKey,
    /// When the resident cancelled (device time when known, else receive time).
    pub cancelled_at: Timestamp,
    /// Gateway time after which the alarm no longer finds it.
    pub expires_at: Timestamp,
}

/// The infrastructure incident in progress (its device list lives in its alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IncidentState {
    pub alert: AlertId,
    /// Latest time a device joined it or came back: the settle time counts from here.
    pub last_change: Timestamp,
}

/// A state entry's key. Sorted, so state changes come out in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StateKey {
    NextAlertId,
    SilenceCountedFrom,
    Incident,
    Device(DeviceId),
    Resident(ResidentId),
    Rules(ResidentId),
    Alarms(AlertId),
    /// A held cancel, by the alarm it names.
    HeldCancel(EventKey),
}

const NEXT_ALERT_ID: &str = "meta/next_alert_id";
const SILENCE_COUNTED_FROM: &str = "meta/silence_counted_from";
const INCIDENT: &str = "meta/incident";

impl StateKey {
    pub fn encode(&self) -> String {
        match self {
            Self::NextAlertId => NEXT_ALERT_ID.to_owned(),
            Self::SilenceCountedFrom => SILENCE_COUNTED_FROM.to_owned(),
            Self::Incident => INCIDENT.to_owned(),
            Self::Device(id) => format!("dev/{id}"),
            Self::Resident(id) => format!("res/{id}"),
            Self::Rules(id) => format!("rules/{id}"),
            Self::Alarms(id) => format!("alarms/{}", id.0),
            Self::HeldCancel(alarm) => format!("cancel/{}/{}/{}", alarm.device, alarm.boot, alarm.seq),
        }
    }

    /// `None` for keys this version does not know.
    pub fn parse(key: &str) -> Option<Self> {
        if key == NEXT_ALERT_ID {
            return Some(Self::NextAlertId);
        }
        if key == SILENCE_COUNTED_FROM {
            return Some(Self::SilenceCountedFrom);
        }
        if key == INCIDENT {
            return Some(Self::Incident);
        }
        let (prefix, rest) = key.split_once('/')?;
        match prefix {
            "dev" => DeviceId::new(rest).ok().map(Self::Device),
            "res" => ResidentId::new(rest).ok().map(Self::Resident),
            "rules" => ResidentId::new(rest).ok().map(Self::Rules),
            "alarms" => rest.parse().ok().map(|n| Self::Alarms(AlertId(n))),
            "cancel" => {
                let mut parts = rest.split('/');
                let (Some(device), Some(boot), Some(seq), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return None;
                };
                Some(Self::HeldCancel(EventKey {
                    device: DeviceId::new(device).ok()?,
                    boot: boot.parse().ok()?,
                    seq: seq.parse().ok()?,
                }))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = [
            StateKey::NextAlertId,
            StateKey::SilenceCountedFrom,
            StateKey::Incident,
            StateKey::Device(DeviceId::new("pnd-1").unwrap()),
            StateKey::Resident(ResidentId::new("R-17").unwrap()),
            StateKey::Rules(ResidentId::new("R-17").unwrap()),
            StateKey::Alarms(AlertId(42)),
            StateKey::HeldCancel(EventKey {
                device: DeviceId::new("pnd-1").unwrap(),
                boot: 3,
                seq: 7,
            }),
        ];
        for key in keys {
            assert_eq!(StateKey::parse(&key.encode()), Some(key));
        }
        assert_eq!(StateKey::parse("dev/NOT VALID"), None);
        assert_eq!(StateKey::parse("future/thing"), None);
        assert_eq!(StateKey::parse("cancel/pnd-1/3"), None);
        assert_eq!(StateKey::parse("cancel/pnd-1/3/7/8"), None);
        assert_eq!(StateKey::parse("cancel/pnd-1/x/7"), None);
    }
}
