//! Engine settings: thresholds, answer-time targets, and the local calendar the
//! time-of-day rules run on.

use jiff::civil::{self, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::domain::Priority;

/// Acknowledgement targets per priority, in seconds after the alert was raised, ascending.
/// Passing the k-th target unacknowledged escalates the alert to level k.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    pub life_safety_s: Vec<u32>,
    pub wellbeing_s: Vec<u32>,
    pub technical_s: Vec<u32>,
}

impl EscalationPolicy {
    pub fn targets(&self, priority: Priority) -> &[u32] {
        match priority {
            Priority::LifeSafety => &self.life_safety_s,
            Priority::Wellbeing => &self.wellbeing_s,
            Priority::Technical => &self.technical_s,
        }
    }
}

impl Default for EscalationPolicy {
    /// Life-safety follows the TEC Quality monitoring standard (97.5% of calls answered in
    /// 60 s, 99% in 180 s), with a last step at 5 minutes.
    fn default() -> Self {
        Self {
            life_safety_s: vec![60, 180, 300],
            wellbeing_s: vec![120, 600],
            technical_s: vec![3_600, 86_400],
        }
    }
}

/// Everything the engine's rules depend on besides their inputs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A device is offline after this many heartbeat intervals without hearing from it.
    /// 0 is treated as 1.
    pub offline_missed_heartbeats: u32,
    /// Used until a device's heartbeat says which interval it runs (or when it says 0).
    pub default_heartbeat_interval_s: u32,
    /// The offline alert follows a last will after this long unless the device comes back
    /// first. 0 raises it at once: the broker only publishes the will when the connection
    /// is already gone (keep-alive expired or the socket dropped).
    pub last_will_grace_s: u32,
    /// A resident's cancel this soon after the alarm (by the event times) resolves it.
    pub cancel_grace_s: u32,
    /// Heartbeat battery below this raises the low-battery alert.
    pub low_battery_percent: u8,
    /// The low-battery latch only clears above this, so a battery hovering around the
    /// threshold raises one alert, not one per heartbeat.
    pub battery_recovered_percent: u8,
    /// An event that raises its alert longer than this after its device time (delivery, or a
    /// wait for the store to take it) marks the alert as late.
    pub late_threshold_ms: i64,
    pub escalation: EscalationPolicy,
    /// The residents' local time zone, for the night period and the daily rules.
    pub time_zone: TimeZone,
    /// Night period `[start, end)` in local time; wraps past midnight when start > end.
    /// start == end means no night at all.
    pub night: (Time, Time),
    /// Local time at which a resident's day starts, for "no movement by" rules: movement
    /// between this time and the rule's time counts for that day.
    pub day_start: Time,
    /// This many devices counted offline within `flood_window_s` open one infrastructure
    /// incident instead of one offline alert each. Below 2 switches grouping off. Set it
    /// above the number of devices the fleet normally loses in one window.
    pub flood_threshold: u32,
    /// The window the flood threshold counts in. The default, one default heartbeat
    /// interval, catches devices that went quiet together, whose offline timers fire
    /// spread over their heartbeat phase.
    pub flood_window_s: u32,
    /// Once fewer than the threshold are still silent, the incident ends when no device has
    /// come back (or joined) for this long; each device still silent then gets its own alert.
    pub flood_settle_s: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let time_zone = TimeZone::get("Europe/London").unwrap_or_else(|error| {
            // Cannot happen with jiff's bundled tzdb; UTC is the least surprising fallback.
            tracing::error!(%error, "Europe/London time zone unavailable, falling back to UTC");
            TimeZone::UTC
        });
        Self {
            offline_missed_heartbeats: 3,
            default_heartbeat_interval_s: 300,
            last_will_grace_s: 0,
            cancel_grace_s: 60,
            low_battery_percent: 20,
            battery_recovered_percent: 30,
            late_threshold_ms: 30_000,
            escalation: EscalationPolicy::default(),
            time_zone,
            night: (civil::time(22, 0, 0, 0), civil::time(7, 0, 0, 0)),
            day_start: civil::time(4, 0, 0, 0),
            flood_threshold: 10,
            flood_window_s: 300,
            flood_settle_s: 300,
        }
    }
}

impl EngineConfig {
    /// How long a device may stay silent before it counts as offline. A reported interval is
    /// clamped to the range a device may be configured to (SPEC.md): a wrong value of days
    /// must not switch off no-comms detection for that device.
    pub(crate) fn silence_limit_ms(&self, heartbeat_interval_s: Option<u32>) -> i64 {
        let allowed = protocol::config_limits::HEARTBEAT_INTERVAL_S;
        let interval = heartbeat_interval_s
            .filter(|s| *s > 0)
            .map_or(self.default_heartbeat_interval_s, |s| {
                s.clamp(*allowed.start(), *allowed.end())
            });
        i64::from(interval)
            .saturating_mul(i64::from(self.offline_missed_heartbeats.max(1)))
            .saturating_mul(1_000)
    }

    pub(crate) fn last_will_grace_ms(&self) -> i64 {
        i64::from(self.last_will_grace_s).saturating_mul(1_000)
    }

    pub(crate) fn flood_window_ms(&self) -> i64 {
        i64::from(self.flood_window_s).saturating_mul(1_000)
    }

    pub(crate) fn flood_settle_ms(&self) -> i64 {
        i64::from(self.flood_settle_s).saturating_mul(1_000)
    }

    pub(crate) fn cancel_grace_ms(&self) -> i64 {
        i64::from(self.cancel_grace_s).saturating_mul(1_000)
    }
}
