//! A simulated home: a resident's day as a deterministic model (same seed, same day), and
//! the task that plays it against the home's devices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use firmware::Input;
use firmware::device::ActivitySetup;
use protocol::{AlarmKind, DeviceId, SensorState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::SimError;
use crate::clock::SimClock;
use crate::device::{DeviceHandle, DeviceView};

const MINUTE_MS: u64 = 60_000;
const MINUTES_PER_DAY: f64 = 1_440.0;

/// The devices every simulated home has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// Worn by the resident: button, fall detector.
    Pendant,
    /// Front door contact.
    Door,
    /// Bed occupancy pad.
    Bed,
    /// Motion sensor (sends activity summaries).
    Pir,
    /// Smoke detector with a thermometer.
    Smoke,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 5] = [
        DeviceKind::Pendant,
        DeviceKind::Door,
        DeviceKind::Bed,
        DeviceKind::Pir,
        DeviceKind::Smoke,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DeviceKind::Pendant => "pendant",
            DeviceKind::Door => "door",
            DeviceKind::Bed => "bed",
            DeviceKind::Pir => "pir",
            DeviceKind::Smoke => "smoke",
        }
    }

    /// Motion summaries for the PIR: 5-minute windows, hourly.
    pub fn activity(self) -> Option<ActivitySetup> {
        (self == DeviceKind::Pir).then(ActivitySetup::default)
    }
}

/// `sim-h{home:05}-{kind}`.
pub fn device_id(home: usize, kind: DeviceKind) -> Result<DeviceId, SimError> {
    let text = format!("sim-h{home:05}-{}", kind.name());
    DeviceId::new(&text).map_err(|e| SimError::Setup(format!("{text}: {e}")))
}

/// How often things happen, per home (or per device for outages) per day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HomeRates {
    pub presses_per_day: f64,
    /// Share of presses the resident cancels (press-and-hold a few seconds later).
    pub cancel_fraction: f64,
    pub falls_per_day: f64,
    pub smoke_per_day: f64,
    /// Radio outages per device per day (2 to 30 simulated minutes each).
    pub outages_per_day: f64,
    /// Share of devices whose battery starts near the low threshold and drains fast.
    pub low_battery_fraction: f64,
}

impl Default for HomeRates {
    fn default() -> Self {
        Self {
            presses_per_day: 0.2,
            cancel_fraction: 0.3,
            falls_per_day: 0.02,
            smoke_per_day: 0.002,
            outages_per_day: 0.1,
            low_battery_fraction: 0.05,
        }
    }
}

/// Something to do to one of the home's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Input(Input),
    Motion(u16),
    /// A radio outage of this many simulated ms.
    Offline {
        for_ms: u64,
    },
}

/// One scheduled action, `delay_ms` into the simulated minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub delay_ms: u64,
    pub device: DeviceKind,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, Copy)]
struct Battery {
    percent: f64,
    drain_per_day: f64,
}

/// A resident's day, minute by minute. Pure and deterministic for a seed.
#[derive(Debug, Clone)]
pub struct HomeModel {
    rng: StdRng,
    rates: HomeRates,
    wake_minute: u16,
    bed_minute: u16,
    in_bed: Option<bool>,
    /// Minute index at which a night-time trip ends (back to bed).
    night_trip_until: Option<u64>,
    batteries: [Battery; 5],
    /// A pendant press this many ms into the first minute (see [`HomeModel::with_opening_press`]).
    opening_press_ms: Option<u64>,
}

impl HomeModel {
    pub fn new(home: usize, seed: u64, rates: HomeRates) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ (home as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let wake_minute = rng.random_range(6 * 60 + 15..=8 * 60);
        let bed_minute = rng.random_range(21 * 60 + 15..=23 * 60 + 30);
        let batteries = DeviceKind::ALL.map(|_| {
            if rng.random_bool(rates.low_battery_fraction.clamp(0.0, 1.0)) {
                Battery {
                    percent: rng.random_range(20.5..22.0),
                    drain_per_day: 3.0,
                }
            } else {
                Battery {
                    percent: rng.random_range(35.0..100.0),
                    drain_per_day: 0.3,
                }
            }
        });
        Self {
            rng,
            rates,
            wake_minute,
            bed_minute,
            in_bed: None,
            night_trip_until: None,
            batteries,
            opening_press_ms: None,
        }
    }

    /// The resident presses the pendant `delay_ms` into the first minute, besides whatever the
    /// rates bring: a demo shows an alarm at once instead of whenever chance has it.
    pub fn with_opening_press(mut self, delay_ms: u64) -> Self {
        self.opening_press_ms = Some(delay_ms);
        self
    }

    fn chance_per_day(&mut self, per_day: f64) -> bool {
        self.rng.random_bool((per_day / MINUTES_PER_DAY).clamp(0.0, 1.0))
    }

    fn within_minute(&mut self) -> u64 {
        self.rng.random_range(0..MINUTE_MS)
    }

    /// What happens during minute `index` of the simulation, `minute_of_day` on the clock.
    pub fn minute(&mut self, index: u64, minute_of_day: u16, out: &mut Vec<Action>) {
        if index == 0
            && let Some(delay_ms) = self.opening_press_ms
        {
            out.push(input(delay_ms, DeviceKind::Pendant, Input::ButtonPressed));
        }
        let awake_hours = minute_of_day >= self.wake_minute && minute_of_day < self.bed_minute;
        let tripping = self.night_trip_until.is_some_and(|until| index < until);
        let up = awake_hours || tripping;

        // Hourly battery readings (and one at start so heartbeats carry a level).
        if index.is_multiple_of(60) {
            for (slot, device) in DeviceKind::ALL.into_iter().enumerate() {
                if let Some(battery) = self.batteries.get_mut(slot) {
                    let reading = battery.percent.clamp(0.0, 100.0);
                    battery.percent -= battery.drain_per_day / 24.0;
                    let percent = reading as u8;
                    let millivolts = 2_200 + u16::from(percent) * 10;
                    out.push(Action {
                        delay_ms: slot as u64 * 1_000,
                        device,
                        kind: ActionKind::Input(Input::Battery { millivolts, percent }),
                    });
                }
            }
            let centi_celsius = self.rng.random_range(1_750..2_350);
            let delay_ms = self.within_minute();
            out.push(sensor(
                delay_ms,
                DeviceKind::Smoke,
                1,
                SensorState::Temperature { centi_celsius },
            ));
        }

        // Bed: the day's rhythm, plus the odd night-time trip.
        let want_in_bed = !up;
        if self.in_bed != Some(want_in_bed) {
            self.in_bed = Some(want_in_bed);
            let state = if want_in_bed {
                SensorState::BedOccupied
            } else {
                SensorState::BedEmpty
            };
            let delay_ms = self.within_minute();
            out.push(sensor(delay_ms, DeviceKind::Bed, 0, state));
        }
        if !awake_hours && !tripping && self.chance_per_day(3.0) {
            self.night_trip_until = Some(index + self.rng.random_range(3..15));
        }

        // Movement: summarised by the PIR.
        if self.rng.random_bool(if up { 0.5 } else { 0.02 }) {
            let count = self.rng.random_range(1..6);
            let delay_ms = self.within_minute();
            out.push(Action {
                delay_ms,
                device: DeviceKind::Pir,
                kind: ActionKind::Motion(count),
            });
        }

        // The front door: a few times a day, rarely at night.
        if self.chance_per_day(if awake_hours { 6.0 } else { 0.2 }) {
            let opened = self.rng.random_range(0..30_000);
            let closed = opened + self.rng.random_range(5_000..30_000);
            out.push(sensor(opened, DeviceKind::Door, 0, SensorState::DoorOpen));
            out.push(sensor(closed, DeviceKind::Door, 0, SensorState::DoorClosed));
        }

        // Calls for help.
        if self.chance_per_day(self.rates.presses_per_day) {
            let pressed = self.rng.random_range(0..40_000);
            out.push(input(pressed, DeviceKind::Pendant, Input::ButtonPressed));
            if self.rng.random_bool(self.rates.cancel_fraction.clamp(0.0, 1.0)) {
                // The cancel gesture: a second press, held, as the button reports it.
                let pressed_again = pressed + self.rng.random_range(4_000..20_000);
                out.push(input(pressed_again, DeviceKind::Pendant, Input::ButtonPressed));
                out.push(input(pressed_again + 2_000, DeviceKind::Pendant, Input::ButtonHeld));
            }
        }
        if self.chance_per_day(self.rates.falls_per_day) {
            let delay_ms = self.within_minute();
            out.push(input(delay_ms, DeviceKind::Pendant, Input::FallDetected));
        }
        if self.chance_per_day(self.rates.smoke_per_day) {
            let delay_ms = self.within_minute();
            out.push(input(delay_ms, DeviceKind::Smoke, Input::Alarm(AlarmKind::Smoke)));
        }

        // Radio outages.
        for device in DeviceKind::ALL {
            if self.chance_per_day(self.rates.outages_per_day) {
                let for_ms = self.rng.random_range(2..=30) * MINUTE_MS;
                let delay_ms = self.within_minute();
                out.push(Action {
                    delay_ms,
                    device,
                    kind: ActionKind::Offline { for_ms },
                });
            }
        }
        out.sort_by_key(|action| action.delay_ms);
    }
}

fn input(delay_ms: u64, device: DeviceKind, input: Input) -> Action {
    Action {
        delay_ms,
        device,
        kind: ActionKind::Input(input),
    }
}

fn sensor(delay_ms: u64, device: DeviceKind, input: u8, state: SensorState) -> Action {
    Action {
        delay_ms,
        device,
        kind: ActionKind::Input(Input::Sensor { input, state }),
    }
}

/// Counts of what the simulated residents did.
#[derive(Debug, Default)]
pub struct Stats {
    pub presses: AtomicU64,
    pub cancels: AtomicU64,
    pub falls: AtomicU64,
    pub smoke_alarms: AtomicU64,
    pub sensor_events: AtomicU64,
    pub motion_reports: AtomicU64,
    pub battery_readings: AtomicU64,
    pub outages: AtomicU64,
}

impl Stats {
    fn count(&self, action: &ActionKind) {
        let counter = match action {
            ActionKind::Input(Input::ButtonPressed) => &self.presses,
            ActionKind::Input(Input::ButtonHeld) => &self.cancels,
            ActionKind::Input(Input::FallDetected) => &self.falls,
            ActionKind::Input(Input::Alarm(_)) => &self.smoke_alarms,
            ActionKind::Input(Input::Sensor { .. }) => &self.sensor_events,
            ActionKind::Input(Input::Battery { .. }) => &self.battery_readings,
            ActionKind::Motion(_) => &self.motion_reports,
            ActionKind::Offline { .. } => &self.outages,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Plays `model` against the home's devices until `stop` turns true, then switches the
/// devices off and returns their final states.
pub async fn drive_home(
    mut model: HomeModel,
    devices: Vec<(DeviceKind, DeviceHandle)>,
    clock: SimClock,
    start_minute_of_day: u16,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> Vec<DeviceView> {
    let mut actions = Vec::new();
    let mut index: u64 = 0;
    'run: loop {
        let minute_of_day = ((u64::from(start_minute_of_day) + index) % 1_440) as u16;
        actions.clear();
        model.minute(index, minute_of_day, &mut actions);
        let minute_start = index * MINUTE_MS;
        for action in &actions {
            let at = clock.instant_at(minute_start + action.delay_ms);
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                _ = stop.wait_for(|stopped| *stopped) => break 'run,
            }
            let Some((_, handle)) = devices.iter().find(|(kind, _)| *kind == action.device) else {
                continue;
            };
            stats.count(&action.kind);
            match action.kind {
                ActionKind::Input(input) => handle.input(input),
                ActionKind::Motion(count) => handle.motion(count),
                // The outage is in the home's simulated time; the device's clock may run slower.
                ActionKind::Offline { for_ms } => handle.go_offline_real(clock.real(for_ms)),
            }
        }
        index += 1;
        tokio::select! {
            () = tokio::time::sleep_until(clock.instant_at(index * MINUTE_MS)) => {}
            _ = stop.wait_for(|stopped| *stopped) => break 'run,
        }
    }
    let mut views = Vec::with_capacity(devices.len());
    for (_, handle) in devices {
        if let Ok(view) = handle.stop().await {
            views.push(view);
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(home: usize, seed: u64) -> Vec<Action> {
        let mut model = HomeModel::new(home, seed, HomeRates::default());
        let mut all = Vec::new();
        let mut minute = Vec::new();
        for index in 0..1_440u64 {
            minute.clear();
            model.minute(index, ((7 * 60 + index) % 1_440) as u16, &mut minute);
            all.extend_from_slice(&minute);
        }
        all
    }

    #[test]
    fn an_opening_press_comes_once_in_the_first_minute() {
        let quiet = HomeRates {
            presses_per_day: 0.0,
            falls_per_day: 0.0,
            smoke_per_day: 0.0,
            ..HomeRates::default()
        };
        let mut model = HomeModel::new(1, 7, quiet).with_opening_press(3_000);
        let mut presses = Vec::new();
        let mut minute = Vec::new();
        for index in 0..120u64 {
            minute.clear();
            model.minute(index, (7 * 60 + index) as u16, &mut minute);
            presses.extend(
                minute
                    .iter()
                    .filter(|a| a.kind == ActionKind::Input(Input::ButtonPressed))
                    .map(|a| (index, a.delay_ms, a.device)),
            );
        }
        assert_eq!(presses, vec![(0, 3_000, DeviceKind::Pendant)]);
    }

    #[test]
    fn a_day_is_deterministic_per_seed_and_plausible() {
        assert_eq!(day(3, 42), day(3, 42));
        assert_ne!(day(3, 42), day(4, 42));
        assert_ne!(day(3, 42), day(3, 43));
        let actions = day(3, 42);
        let count = |f: &dyn Fn(&Action) -> bool| actions.iter().filter(|a| f(a)).count();
        // Up in the morning, to bed at night: bed empties and fills at least once.
        assert!(
            count(&|a| matches!(
                a.kind,
                ActionKind::Input(Input::Sensor {
                    state: SensorState::BedEmpty,
                    ..
                })
            )) >= 1
        );
        assert!(
            count(&|a| matches!(
                a.kind,
                ActionKind::Input(Input::Sensor {
                    state: SensorState::BedOccupied,
                    ..
                })
            )) >= 1
        );
        assert!(count(&|a| matches!(a.kind, ActionKind::Motion(_))) > 100);
        assert_eq!(
            count(&|a| matches!(a.kind, ActionKind::Input(Input::Battery { .. }))),
            24 * 5
        );
        assert!(actions.iter().all(|a| a.delay_ms < 2 * MINUTE_MS));
    }

    #[test]
    fn presses_happen_at_the_configured_rate_across_homes() {
        let rates = HomeRates {
            presses_per_day: 2.0,
            ..HomeRates::default()
        };
        let mut presses = 0;
        for home in 0..100 {
            let mut model = HomeModel::new(home, 1, rates);
            let mut out = Vec::new();
            for index in 0..1_440u64 {
                model.minute(index, (index % 1_440) as u16, &mut out);
            }
            // A cancel gesture is a second press with a hold: count calls for help only.
            let pressed = out
                .iter()
                .filter(|a| a.kind == ActionKind::Input(Input::ButtonPressed))
                .count();
            let held = out
                .iter()
                .filter(|a| a.kind == ActionKind::Input(Input::ButtonHeld))
                .count();
            presses += pressed - held;
        }
        assert!(
            (140..=260).contains(&presses),
            "{presses} presses in 100 home-days at 2 a day"
        );
    }

    #[test]
    fn device_ids_follow_the_pattern() {
        assert_eq!(
            device_id(42, DeviceKind::Pendant).unwrap().as_str(),
            "sim-h00042-pendant"
        );
        assert_eq!(device_id(7, DeviceKind::Smoke).unwrap().as_str(), "sim-h00007-smoke");
    }
}
