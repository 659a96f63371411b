//! The hardware layer: drivers and pure detectors that turn pin levels and register reads into
//! [`Input`](crate::Input)s for the device core, and feedback patterns into pin levels.
//!
//! Every detector is a pure state machine fed `(now_ms, sample)`: time is injected, so the same
//! code runs on the device and in host tests. The thin `poll`/driver helpers over `embedded-hal`
//! traits only read or write pins and buses; they never panic and report bus/pin errors typed.
//!
//! | module | reads | produces |
//! |---|---|---|
//! | [`button`] | button pin samples | `ButtonPressed` at once when debounced, `ButtonHeld` after the hold time |
//! | [`lis3dh`] + [`fall`] | accelerometer over I2C, ~100 Hz | `FallDetected` |
//! | [`tmp102`] | thermometer over I2C | `Alarm(TemperatureExtreme)` once per excursion, `Sensor{Temperature}` per 0.5 °C |
//! | [`sensors`] | home sensor pins | `Alarm(Smoke/CO/Flood/Heat/Tamper/MainsPowerLost/Restored)`, `Sensor{Door/Bed/Chair/Motion}`, motion counts |
//! | [`battery`] | a [`battery::BatteryGauge`] | `Battery` per reading, `Alarm(LowBattery)` once per crossing |
//! | [`feedback`] | a [`feedback::Pattern`] and the time | LED and buzzer pin levels |
//!
//! The device core runs its own [`battery::BatteryMonitor`] and [`tmp102::TemperatureMonitor`]
//! on the readings it is given, so a device feeds it only `Battery` and `Sensor{Temperature}`
//! readings, never these monitors' `Alarm` outputs (that would raise each alarm twice).

pub mod battery;
pub mod button;
pub mod fall;
pub mod feedback;
pub mod lis3dh;
pub mod sensors;
pub mod tmp102;

/// A digital level debouncer: a new level is accepted only after the raw input has shown it
/// continuously for `debounce_ms`. Shorter glitches and contact bounce are ignored.
///
/// Shared by the pendant button and the home sensor inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debouncer {
    debounce_ms: u32,
    stable: bool,
    /// Since when the raw input has shown the opposite of `stable`, if it does now.
    candidate_since: Option<u64>,
    /// When the raw input first showed the current stable level (the start of the last
    /// accepted change, not its confirmation).
    stable_since: u64,
}

impl Debouncer {
    /// A debouncer whose accepted level starts as `initial`.
    pub const fn new(debounce_ms: u32, initial: bool) -> Self {
        Self {
            debounce_ms,
            stable: initial,
            candidate_since: None,
            stable_since: 0,
        }
    }

    /// Feeds one raw sample; returns the new accepted level when it changes.
    pub fn update(&mut self, now_ms: u64, raw: bool) -> Option<bool> {
        if raw == self.stable {
            self.candidate_since = None;
            return None;
        }
        let since = *self.candidate_since.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) >= u64::from(self.debounce_ms) {
            self.stable = raw;
            self.stable_since = since;
            self.candidate_since = None;
            Some(raw)
        } else {
            None
        }
    }

    /// The accepted (debounced) level.
    pub const fn level(&self) -> bool {
        self.stable
    }

    /// When the raw input first showed the accepted level (0 if it never changed).
    pub const fn since_ms(&self) -> u64 {
        self.stable_since
    }

    /// The debounce time in milliseconds.
    pub const fn debounce_ms(&self) -> u32 {
        self.debounce_ms
    }
}

#[cfg(test)]
mod tests {
    use super::Debouncer;

    #[test]
    fn glitch_shorter_than_debounce_is_ignored() {
        let mut d = Debouncer::new(30, false);
        assert_eq!(d.update(0, true), None);
        assert_eq!(d.update(20, true), None);
        assert_eq!(d.update(25, false), None);
        assert_eq!(d.update(50, true), None);
        assert_eq!(d.update(79, true), None);
        assert_eq!(d.update(80, true), Some(true));
        assert_eq!(d.since_ms(), 50);
        assert_eq!(d.update(90, true), None);
    }

    #[test]
    fn zero_debounce_accepts_at_once() {
        let mut d = Debouncer::new(0, false);
        assert_eq!(d.update(5, true), Some(true));
        assert_eq!(d.update(6, false), Some(false));
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let mut d = Debouncer::new(30, false);
        assert_eq!(d.update(100, true), None);
        assert_eq!(d.update(10, true), None);
        assert_eq!(d.update(200, true), Some(true));
    }
}
