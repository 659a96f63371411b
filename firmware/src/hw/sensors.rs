//! Home sensor digital inputs (smoke, CO, flood, heat, door, bed, chair, motion, tamper, mains
//! power): a fixed table of configured channels, each debounced, turned into [`Input`]s; plus the
//! motion counter behind the activity summary.
//!
//! The core is pure: feed `(now_ms, channel, pin_is_high)`. [`SensorInputs::poll`] is the thin
//! helper that reads an `InputPin`. Pins of different types cannot share one array, so the caller
//! polls each of its pins by channel.

use embedded_hal::digital::InputPin;
use protocol::{ActivitySummary, AlarmKind, MAX_ACTIVITY_WINDOWS, SensorState};

use super::Debouncer;
use crate::Input;

/// What a channel is wired to. "Active" means the condition the name says is present: smoke
/// detected, door open, bed occupied, motion seen, mains power *present*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    Smoke,
    CarbonMonoxide,
    Flood,
    Heat,
    Door,
    Bed,
    Chair,
    Motion,
    Tamper,
    MainsPower,
}

impl Meaning {
    /// The level assumed at boot: the normal, quiet state (mains present, everything else
    /// inactive). A channel that is not in it at boot reports once its debounce time has passed.
    pub const fn initial_active(self) -> bool {
        matches!(self, Meaning::MainsPower)
    }

    /// What a debounced change to `active` means.
    pub fn event(self, channel: u8, active: bool) -> Option<Input> {
        let alarm = |kind| Some(Input::Alarm(kind));
        let sensor = |state| Some(Input::Sensor { input: channel, state });
        match (self, active) {
            (Meaning::Smoke, true) => alarm(AlarmKind::Smoke),
            (Meaning::CarbonMonoxide, true) => alarm(AlarmKind::CarbonMonoxide),
            (Meaning::Flood, true) => alarm(AlarmKind::Flood),
            (Meaning::Heat, true) => alarm(AlarmKind::Heat),
            (Meaning::Tamper, true) => alarm(AlarmKind::Tamper),
            // Detectors clearing are not events: the alert is resolved by a person.
            (Meaning::Smoke | Meaning::CarbonMonoxide | Meaning::Flood | Meaning::Heat | Meaning::Tamper, false) => {
                None
            }
            (Meaning::MainsPower, false) => alarm(AlarmKind::MainsPowerLost),
            (Meaning::MainsPower, true) => alarm(AlarmKind::MainsPowerRestored),
            (Meaning::Door, true) => sensor(SensorState::DoorOpen),
            (Meaning::Door, false) => sensor(SensorState::DoorClosed),
            (Meaning::Bed, true) => sensor(SensorState::BedOccupied),
            (Meaning::Bed, false) => sensor(SensorState::BedEmpty),
            (Meaning::Chair, true) => sensor(SensorState::ChairOccupied),
            (Meaning::Chair, false) => sensor(SensorState::ChairEmpty),
            (Meaning::Motion, true) => sensor(SensorState::Motion),
            (Meaning::Motion, false) => None,
        }
    }
}

/// One configured input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    /// The number reported in `Input::Sensor { input, .. }`; unique within a table.
    pub channel: u8,
    pub meaning: Meaning,
    /// True when a high pin level means active (most detectors' relay outputs with a pull-up
    /// are active low: false).
    pub active_high: bool,
    /// Pressure mats and reed switches bounce for tens of ms; PIR and detector outputs are clean
    /// but a long debounce also rides out interference on long cables.
    pub debounce_ms: u32,
}

impl InputSpec {
    /// A spec with a 50 ms debounce.
    pub const fn new(channel: u8, meaning: Meaning, active_high: bool) -> Self {
        Self {
            channel,
            meaning,
            active_high,
            debounce_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Channel {
    spec: InputSpec,
    debouncer: Debouncer,
}

/// Why a channel could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("sensor table full")]
    Full,
    #[error("channel {0} already configured")]
    Duplicate(u8),
}

/// The table of configured inputs, up to `N`, and the motion counter fed by its motion inputs.
#[derive(Debug, Clone)]
pub struct SensorInputs<const N: usize> {
    channels: heapless::Vec<Channel, N>,
    activity: ActivityCounter,
}

impl<const N: usize> SensorInputs<N> {
    /// An empty table; motion is counted in windows of `activity_window_s` seconds.
    pub const fn new(activity_window_s: u16) -> Self {
        Self {
            channels: heapless::Vec::new(),
            activity: ActivityCounter::new(activity_window_s),
        }
    }

    /// Adds a channel.
    pub fn add(&mut self, spec: InputSpec) -> Result<(), TableError> {
        if self.channels.iter().any(|c| c.spec.channel == spec.channel) {
            return Err(TableError::Duplicate(spec.channel));
        }
        let debouncer = Debouncer::new(spec.debounce_ms, spec.meaning.initial_active());
        self.channels
            .push(Channel { spec, debouncer })
            .map_err(|_| TableError::Full)
    }

    /// The configured inputs, in the order added.
    pub fn specs(&self) -> impl Iterator<Item = &InputSpec> {
        self.channels.iter().map(|c| &c.spec)
    }

    /// Feeds the raw pin level of `channel`. Unknown channels are ignored.
    pub fn update(&mut self, now_ms: u64, channel: u8, pin_high: bool) -> Option<Input> {
        let _ = self.activity.tick(now_ms);
        let ch = self.channels.iter_mut().find(|c| c.spec.channel == channel)?;
        let active = pin_high == ch.spec.active_high;
        let changed = ch.debouncer.update(now_ms, active)?;
        if ch.spec.meaning == Meaning::Motion && changed {
            self.activity.record_motion(now_ms);
        }
        ch.spec.meaning.event(channel, changed)
    }

    /// Reads `pin` as `channel` and feeds the level.
    pub fn poll<P: InputPin>(&mut self, now_ms: u64, channel: u8, pin: &mut P) -> Result<Option<Input>, P::Error> {
        let high = pin.is_high()?;
        Ok(self.update(now_ms, channel, high))
    }

    /// The debounced state of `channel` (true = active), if configured.
    pub fn is_active(&self, channel: u8) -> Option<bool> {
        self.channels
            .iter()
            .find(|c| c.spec.channel == channel)
            .map(|c| c.debouncer.level())
    }

    /// The motion counter, for the core to tick and drain.
    pub fn activity(&mut self) -> &mut ActivityCounter {
        &mut self.activity
    }
}

/// Motion counts per window of `window_s` seconds, oldest first, kept until the core drains them
/// into an activity summary. When `MAX_ACTIVITY_WINDOWS` finished windows wait undrained, the
/// oldest is dropped (telemetry goes oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCounter {
    window_s: u16,
    /// Start of the open window; `None` until the first tick.
    window_start_ms: Option<u64>,
    current: u16,
    finished: heapless::Vec<u16, MAX_ACTIVITY_WINDOWS>,
}

impl ActivityCounter {
    /// Windows shorter than a second are taken as one second.
    pub const fn new(window_s: u16) -> Self {
        Self {
            window_s: if window_s == 0 { 1 } else { window_s },
            window_start_ms: None,
            current: 0,
            finished: heapless::Vec::new(),
        }
    }

    pub const fn window_s(&self) -> u16 {
        self.window_s
    }

    /// Closes every window that has ended by `now_ms` (empty ones count 0); returns how many
    /// (at most `MAX_ACTIVITY_WINDOWS`), so the core knows when a summary is due.
    pub fn tick(&mut self, now_ms: u64) -> usize {
        let len = u64::from(self.window_s) * 1_000;
        let start = *self.window_start_ms.get_or_insert(now_ms);
        let elapsed = now_ms.saturating_sub(start) / len;
        if elapsed == 0 {
            return 0;
        }
        // After a long gap only the last MAX windows matter; skip the rest without looping.
        let cap = MAX_ACTIVITY_WINDOWS as u64;
        let skipped = elapsed.saturating_sub(cap);
        for i in 0..elapsed.min(cap) {
            let count = if i == 0 && skipped == 0 { self.current } else { 0 };
            if self.finished.is_full() {
                self.finished.remove(0);
            }
            let _ = self.finished.push(count);
        }
        self.current = 0;
        self.window_start_ms = Some(start.saturating_add(elapsed.saturating_mul(len)));
        usize::try_from(elapsed.min(cap)).unwrap_or(MAX_ACTIVITY_WINDOWS)
    }

    /// Counts one motion activation.
    pub fn record_motion(&mut self, now_ms: u64) {
        let _ = self.tick(now_ms);
        self.current = self.current.saturating_add(1);
    }

    /// Finished windows waiting.
    pub fn pending(&self) -> usize {
        self.finished.len()
    }

    /// Takes the finished windows, oldest first (the open window keeps counting).
    pub fn drain(&mut self) -> heapless::Vec<u16, MAX_ACTIVITY_WINDOWS> {
        core::mem::take(&mut self.finished)
    }

    /// Takes the finished windows as the uplink body's summary (its last window ends at the
    /// last window boundary `tick` passed).
    pub fn drain_summary(&mut self) -> ActivitySummary {
        ActivitySummary {
            window_s: self.window_s,
            motion_counts: self.drain(),
        }
    }
}
