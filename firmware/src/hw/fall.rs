//! Fall detection from a chest-worn pendant's accelerometer: a pure state machine fed
//! `(now_ms, x, y, z)` in milli-g at ~100 Hz. Integer math only; magnitudes are compared squared
//! (no square root, which `core` lacks).
//!
//! # The rule
//!
//! A fall is, in order:
//! 1. **free fall**: |a| below `free_fall_mg` for at least `min_free_fall_ms` (a rise above it
//!    for less than 20 ms, e.g. one noisy sample of a tumbling body, does not break it);
//! 2. **impact**: |a| above `impact_mg` within `impact_window_ms` of the free fall ending;
//! 3. **lying still**: after `settle_ms` (bounces, rolling), the first window of `still_ms` in
//!    which every sample's |a| is within `still_band_mg` of 1 g and the summed per-axis variance
//!    is at most `max_still_variance_mg2` decides, and it must have started within
//!    `lying_deadline_ms` of the impact. That window must show
//!    - the **gravity vector rotated** by more than 45° from where it pointed before the fall
//!      (someone who jumps, or sits down hard, ends up upright again), and
//!    - **some life**: summed variance of at least `min_alive_variance_mg2`.
//!
//! # Why "some life" tells a dropped pendant from a fallen person
//!
//! A pendant dropped onto a table or the floor shows everything a fall shows: real free fall
//! (75 cm takes ~390 ms), a hard impact, and a new orientation (it hung on its lanyard, now it
//! lies flat). Free-fall length and impact height overlap with real falls, so they cannot
//! separate the two. What differs is what happens next: a pendant on a table is *dead* still, its
//! readings move only by the sensor's noise (one or two digits, a total variance of ~10 mg² at
//! ±8 g), while a pendant on a person lying on the floor moves with breathing, heartbeat and the
//! small corrections nobody can suppress: tens to hundreds of mg². So a still window whose
//! variance is at the sensor's noise floor is taken as "the pendant is not on a body" and does
//! not alarm.
//!
//! The price: a fall after which the pendant comes off and lies apart from the resident is missed
//! by this detector. The button, and the core's inactivity rules, still cover it, and setting
//! `min_alive_variance_mg2` to 0 turns the rule off (alarm on any still, tilted rest).
//!
//! Deciding on the *first* still window (rather than waiting for any qualifying one) also keeps
//! "dropped it, picked it up, looked at it" from alarming: by the time the hand holds it, the
//! dead-still window has already closed the case.

use protocol::DeviceConfig;

use crate::Input;

/// Detector settings. Thresholds come from [`DeviceConfig`]; timings are constants of the
/// method with defaults from the fall-detection literature (Bourke et al., Kangas et al.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallConfig {
    /// |a| below this counts as free fall.
    pub free_fall_mg: u16,
    /// |a| above this counts as an impact.
    pub impact_mg: u16,
    /// Shortest free fall (a trip or a chair's dip is shorter).
    pub min_free_fall_ms: u32,
    /// Longest wait for the impact after the free fall ends.
    pub impact_window_ms: u32,
    /// Time after the impact ignored while the body comes to rest.
    pub settle_ms: u32,
    /// Length of the lying-still window.
    pub still_ms: u32,
    /// The lying-still window must start within this time of the impact.
    pub lying_deadline_ms: u32,
    /// Each sample in the still window has |a| within 1 g ± this.
    pub still_band_mg: u16,
    /// The still window's summed per-axis variance is at most this (mg²).
    pub max_still_variance_mg2: u32,
    /// ... and at least this (mg²); below, the device is not on a body. 0 disables the rule.
    pub min_alive_variance_mg2: u32,
}

impl FallConfig {
    /// Defaults with the thresholds of `config`.
    pub fn from_device_config(config: &DeviceConfig) -> Self {
        Self {
            free_fall_mg: config.fall_free_fall_mg,
            impact_mg: config.fall_impact_mg,
            ..Self::default()
        }
    }
}

impl Default for FallConfig {
    fn default() -> Self {
        let device = DeviceConfig::default();
        Self {
            free_fall_mg: device.fall_free_fall_mg,
            impact_mg: device.fall_impact_mg,
            min_free_fall_ms: 80,
            impact_window_ms: 1_000,
            settle_ms: 500,
            still_ms: 2_000,
            lying_deadline_ms: 15_000,
            still_band_mg: 300,
            max_still_variance_mg2: 2_500,
            min_alive_variance_mg2: 25,
        }
    }
}

/// How the last fall candidate ended: for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Free fall shorter than `min_free_fall_ms`.
    ShortFreeFall,
    /// No impact after the free fall.
    NoImpact,
    /// No still window started within the deadline (the person got up, or kept moving).
    NoRest,
    /// At rest, but the orientation is what it was before: upright again.
    Upright,
    /// At rest at the sensor's noise floor: the device is not on a body (dropped).
    DeadStill,
    /// A fall: reported as [`Input::FallDetected`].
    Fall,
}

/// Running sums over the lying-still window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start_ms: u64,
    n: u32,
    sum: [i64; 3],
    sum_sq: [i64; 3],
}

impl Window {
    fn new(start_ms: u64) -> Self {
        Self {
            start_ms,
            n: 0,
            sum: [0; 3],
            sum_sq: [0; 3],
        }
    }

    fn add(&mut self, a: [i32; 3]) {
        self.n = self.n.saturating_add(1);
        for ((s, q), v) in self.sum.iter_mut().zip(self.sum_sq.iter_mut()).zip(a) {
            let v = i64::from(v);
            *s = s.saturating_add(v);
            *q = q.saturating_add(v * v);
        }
    }

    /// Summed per-axis variance times n² (exact integer: n·Σx² − (Σx)²).
    fn variance_n2(&self) -> i128 {
        let n = i128::from(self.n);
        self.sum
            .iter()
            .zip(self.sum_sq.iter())
            .map(|(&s, &q)| n * i128::from(q) - i128::from(s) * i128::from(s))
            .sum()
    }

    fn mean(&self) -> [i64; 3] {
        let n = i64::from(self.n.max(1));
        self.sum.map(|s| s / n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// `ended_ms`: the first sample above the threshold after the latest one below, if any.
    FreeFall {
        start_ms: u64,
        ended_ms: Option<u64>,
    },
    AwaitImpact {
        free_fall_end_ms: u64,
    },
    AfterImpact {
        impact_ms: u64,
        window: Option<Window>,
    },
}

/// The fall detector. About 150 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallDetector {
    config: FallConfig,
    state: State,
    /// Smoothed gravity direction from quasi-static samples while idle: "before the fall".
    reference: Option<[i32; 3]>,
    last_outcome: Option<Outcome>,
    /// Summed per-axis variance of the window that decided the last candidate, for tuning.
    last_rest_variance_mg2: Option<u32>,
}

/// A rise above the free-fall threshold shorter than this (two samples at 100 Hz) does not end
/// the free fall.
const FREE_FALL_GAP_MS: u64 = 20;

/// Samples with |a| within 1 g ± this while idle update the orientation reference.
const QUASI_STATIC_BAND_MG: i64 = 150;

impl FallDetector {
    pub const fn new(config: FallConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            reference: None,
            last_outcome: None,
            last_rest_variance_mg2: None,
        }
    }

    /// Takes new thresholds from the gateway; a candidate in progress is finished with them.
    pub fn apply_device_config(&mut self, config: &DeviceConfig) {
        self.config.free_fall_mg = config.fall_free_fall_mg;
        self.config.impact_mg = config.fall_impact_mg;
    }

    pub const fn config(&self) -> &FallConfig {
        &self.config
    }

    /// How the last candidate ended (`None` until one has).
    pub const fn last_outcome(&self) -> Option<Outcome> {
        self.last_outcome
    }

    /// The summed per-axis variance (mg²) of the rest window that decided the last candidate
    /// (`None` if it ended before one), to log when tuning `min_alive_variance_mg2` in the field.
    pub const fn last_rest_variance_mg2(&self) -> Option<u32> {
        self.last_rest_variance_mg2
    }

    /// True while a candidate (free fall, impact, or rest after it) is being followed.
    pub const fn is_busy(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Feeds one sample in milli-g.
    pub fn update(&mut self, now_ms: u64, x: i16, y: i16, z: i16) -> Option<Input> {
        let a = [i32::from(x), i32::from(y), i32::from(z)];
        let mag2 = magnitude2(a);
        let c = self.config;
        let free_fall2 = square(i64::from(c.free_fall_mg));
        let impact2 = square(i64::from(c.impact_mg));
        match self.state {
            State::Idle => {
                if mag2 < free_fall2 {
                    self.state = State::FreeFall {
                        start_ms: now_ms,
                        ended_ms: None,
                    };
                    self.last_rest_variance_mg2 = None;
                } else {
                    self.track_reference(a, mag2);
                }
                None
            }
            State::FreeFall { start_ms, ended_ms } => {
                if mag2 < free_fall2 {
                    self.state = State::FreeFall {
                        start_ms,
                        ended_ms: None,
                    };
                    return None;
                }
                let end = ended_ms.unwrap_or(now_ms);
                let is_impact = mag2 > impact2;
                // A body tumbling at 0.2-0.4 g can poke above the threshold for a sample: only
                // a rise lasting FREE_FALL_GAP_MS (or an impact) ends the free fall.
                if !is_impact && now_ms.saturating_sub(end) < FREE_FALL_GAP_MS {
                    self.state = State::FreeFall {
                        start_ms,
                        ended_ms: Some(end),
                    };
                    return None;
                }
                if end.saturating_sub(start_ms) < u64::from(c.min_free_fall_ms) {
                    return self.finish(Outcome::ShortFreeFall);
                }
                self.state = if is_impact {
                    State::AfterImpact {
                        impact_ms: now_ms,
                        window: None,
                    }
                } else {
                    State::AwaitImpact { free_fall_end_ms: end }
                };
                None
            }
            State::AwaitImpact { free_fall_end_ms } => {
                if mag2 > impact2 {
                    self.state = State::AfterImpact {
                        impact_ms: now_ms,
                        window: None,
                    };
                    None
                } else if now_ms.saturating_sub(free_fall_end_ms) > u64::from(c.impact_window_ms) {
                    self.finish(Outcome::NoImpact)
                } else {
                    None
                }
            }
            State::AfterImpact { impact_ms, window } => self.after_impact(now_ms, impact_ms, window, a, mag2),
        }
    }

    fn after_impact(
        &mut self,
        now_ms: u64,
        impact_ms: u64,
        window: Option<Window>,
        a: [i32; 3],
        mag2: i64,
    ) -> Option<Input> {
        let c = self.config;
        let since_impact = now_ms.saturating_sub(impact_ms);
        if since_impact < u64::from(c.settle_ms) {
            return None;
        }
        let lo = square(1_000 - i64::from(c.still_band_mg).min(1_000));
        let hi = square(1_000 + i64::from(c.still_band_mg));
        let in_band = (lo..=hi).contains(&mag2);
        let window = match window {
            Some(w) if in_band => Some(w),
            None if in_band && since_impact <= u64::from(c.lying_deadline_ms) => Some(Window::new(now_ms)),
            _ => None,
        };
        let Some(mut w) = window else {
            if since_impact > u64::from(c.lying_deadline_ms) {
                return self.finish(Outcome::NoRest);
            }
            self.state = State::AfterImpact {
                impact_ms,
                window: None,
            };
            return None;
        };
        w.add(a);
        if now_ms.saturating_sub(w.start_ms) < u64::from(c.still_ms) {
            self.state = State::AfterImpact {
                impact_ms,
                window: Some(w),
            };
            return None;
        }
        // A full window: decide, or start over if it was not still after all.
        let n2 = i128::from(w.n) * i128::from(w.n);
        let var_n2 = w.variance_n2();
        if var_n2 > i128::from(c.max_still_variance_mg2) * n2 {
            self.state = State::AfterImpact {
                impact_ms,
                window: None,
            };
            return None;
        }
        self.last_rest_variance_mg2 = Some(u32::try_from(var_n2 / n2.max(1)).unwrap_or(u32::MAX));
        let mean = w.mean();
        if !self.rotated(mean) {
            return self.finish(Outcome::Upright);
        }
        if var_n2 < i128::from(c.min_alive_variance_mg2) * n2 {
            return self.finish(Outcome::DeadStill);
        }
        self.finish(Outcome::Fall)
    }

    fn finish(&mut self, outcome: Outcome) -> Option<Input> {
        self.state = State::Idle;
        self.last_outcome = Some(outcome);
        (outcome == Outcome::Fall).then_some(Input::FallDetected)
    }

    fn track_reference(&mut self, a: [i32; 3], mag2: i64) {
        let lo = square(1_000 - QUASI_STATIC_BAND_MG);
        let hi = square(1_000 + QUASI_STATIC_BAND_MG);
        if !(lo..=hi).contains(&mag2) {
            return;
        }
        // Exponential average, weight 1/8: about 80 ms at 100 Hz, so the reference is the
        // gravity direction just before the body left quasi-static motion.
        let next = match self.reference {
            None => a,
            Some(mut r) => {
                for (r, a) in r.iter_mut().zip(a) {
                    *r += (a - *r) / 8;
                }
                r
            }
        };
        self.reference = Some(next);
    }

    /// True when `mean` points more than 45° away from the reference: cos θ < 1/√2, i.e.
    /// dot ≤ 0 or 2·dot² < |r|²·|m|². Without a reference (a fall right after boot) the
    /// orientation counts as changed: when in doubt, alarm.
    fn rotated(&self, mean: [i64; 3]) -> bool {
        let Some(r) = self.reference else {
            return true;
        };
        let r = r.map(i128::from);
        let m = mean.map(i128::from);
        let dot: i128 = r.iter().zip(m.iter()).map(|(a, b)| a * b).sum();
        let r2: i128 = r.iter().map(|v| v * v).sum();
        let m2: i128 = m.iter().map(|v| v * v).sum();
        dot <= 0 || 2 * dot * dot < r2 * m2
    }
}

impl Default for FallDetector {
    fn default() -> Self {
        Self::new(FallConfig::default())
    }
}

fn square(v: i64) -> i64 {
    v.saturating_mul(v)
}

fn magnitude2(a: [i32; 3]) -> i64 {
    a.iter().map(|&v| square(i64::from(v))).sum()
}
