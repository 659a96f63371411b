#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Fall detector on synthetic 100 Hz traces, read through the LIS3DH driver from a mocked I2C
//! bus (each sample is one auto-increment burst read of OUT_X_L..OUT_Z_H at ±8 g, 12-bit).
//!
//! Axes of the pendant as worn: +y points up when it hangs on the chest, so standing reads
//! (0, 1000, 0); lying on the side reads ~(1000, 0, 0); flat on a table (0, 0, 1000).

use std::f64::consts::TAU;

use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as T};
use firmware::Input;
use firmware::hw::fall::{FallConfig, FallDetector, Outcome};
use firmware::hw::lis3dh::{Config, Lis3dh, SlaveAddr};
use protocol::DeviceConfig;

const ADDR: u8 = 0x18;
const STEP_MS: u64 = 10;

/// Deterministic noise: a 32-bit LCG (Numerical Recipes constants).
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0 >> 8
    }
    /// Uniform in [-amp, amp].
    fn noise(&mut self, amp: f64) -> f64 {
        (f64::from(self.next() % 20_001) / 10_000.0 - 1.0) * amp
    }
}

/// A trace under construction: samples every 10 ms, in mg.
struct Trace {
    t: u64,
    samples: Vec<(u64, [f64; 3])>,
    rng: Lcg,
}

impl Trace {
    fn new(seed: u32) -> Self {
        Self {
            t: 0,
            samples: Vec::new(),
            rng: Lcg(seed),
        }
    }

    /// `ms` of samples from `f(seconds since segment start)` plus uniform noise of `noise` mg.
    fn segment(&mut self, ms: u64, noise: f64, f: impl Fn(f64) -> [f64; 3]) -> &mut Self {
        let n = ms / STEP_MS;
        for i in 0..n {
            let s = i as f64 * STEP_MS as f64 / 1000.0;
            let v = f(s);
            let v = [
                v[0] + self.rng.noise(noise),
                v[1] + self.rng.noise(noise),
                v[2] + self.rng.noise(noise),
            ];
            self.samples.push((self.t, v));
            self.t += STEP_MS;
        }
        self
    }

    fn hold(&mut self, ms: u64, v: [f64; 3], noise: f64) -> &mut Self {
        self.segment(ms, noise, move |_| v)
    }

    /// Linear from `a` to `b`.
    fn ramp(&mut self, ms: u64, a: [f64; 3], b: [f64; 3], noise: f64) -> &mut Self {
        let secs = ms as f64 / 1000.0;
        self.segment(ms, noise, move |s| {
            let k = s / secs;
            [
                a[0] + (b[0] - a[0]) * k,
                a[1] + (b[1] - a[1]) * k,
                a[2] + (b[2] - a[2]) * k,
            ]
        })
    }

    /// Individual samples (e.g. an impact's peak).
    fn points(&mut self, vs: &[[f64; 3]]) -> &mut Self {
        for &v in vs {
            self.samples.push((self.t, v));
            self.t += STEP_MS;
        }
        self
    }

    /// Standing or walking slowly with the pendant hanging: small sway.
    fn standing(&mut self, ms: u64) -> &mut Self {
        self.segment(ms, 15.0, |s| {
            [
                40.0 * (TAU * 0.3 * s).sin(),
                1000.0 + 10.0 * (TAU * 0.5 * s).sin(),
                30.0 * (TAU * 0.2 * s).cos(),
            ]
        })
    }

    /// Walking at ~2 steps/s: vertical bounce ±300 mg, lateral sway.
    fn walking(&mut self, ms: u64) -> &mut Self {
        self.segment(ms, 40.0, |s| {
            [
                150.0 * (TAU * 1.0 * s).sin(),
                1000.0 + 300.0 * (TAU * 2.0 * s).sin(),
                120.0 * (TAU * 2.0 * s + 1.0).sin(),
            ]
        })
    }

    /// Lying on the side, breathing (~15 breaths/min tilt the pendant by a degree or so).
    fn lying_on_side_breathing(&mut self, ms: u64) -> &mut Self {
        self.segment(ms, 3.0, |s| {
            let breath = (TAU * 0.25 * s).sin();
            [990.0 + 5.0 * breath, 60.0 + 25.0 * breath, 120.0 + 18.0 * breath]
        })
    }

    /// A real fall from standing: the body tips over (|a| falls off), ~300 ms of near free
    /// fall, a 3-4 g impact, a short roll, then lying on the side.
    fn real_fall(&mut self) -> &mut Self {
        self.standing(2_000)
            .ramp(200, [0.0, 1000.0, 0.0], [150.0, 250.0, 100.0], 20.0)
            .hold(300, [120.0, 150.0, 80.0], 40.0)
            .points(&[
                [2500.0, 2200.0, 500.0],
                [3400.0, 1500.0, 800.0],
                [2200.0, 900.0, 300.0],
                [1400.0, 400.0, 200.0],
            ])
            .segment(400, 250.0, |_| [1100.0, 300.0, 350.0])
    }
}

/// Mock-bus expectations for init plus one burst read per sample.
fn bus_for(samples: &[(u64, [f64; 3])]) -> Vec<T> {
    let mut t = vec![
        T::write_read(ADDR, vec![0x0F], vec![0x33]),
        T::write(ADDR, vec![0x20, 0x57]),
        T::write(ADDR, vec![0x23, 0xA8]),
    ];
    for (_, v) in samples {
        t.push(T::write_read(ADDR, vec![0x28 | 0x80], burst(v)));
    }
    t
}

/// The 6 bytes a burst read of OUT_X_L..OUT_Z_H returns for `v` (mg).
fn burst(v: &[f64; 3]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(6);
    for axis in v {
        // ±8 g, 12-bit: 4 mg per digit, left-justified; the sensor clips at full scale.
        let digits = (axis / 4.0).round().clamp(-2048.0, 2047.0) as i16;
        bytes.extend_from_slice(&(digits << 4).to_le_bytes());
    }
    bytes
}

struct Run {
    alarms: Vec<u64>,
    outcome: Option<Outcome>,
    rest_variance: Option<u32>,
}

/// Reads every sample through the driver into the detector.
fn run_with(config: FallConfig, trace: &Trace) -> Run {
    let mut i2c = I2cMock::new(&bus_for(&trace.samples));
    let mut acc = Lis3dh::new(i2c.clone(), SlaveAddr::Sa0Low);
    acc.init(Config::default()).unwrap();
    let mut det = FallDetector::new(config);
    let mut alarms = Vec::new();
    for &(t, _) in &trace.samples {
        let a = acc.read_mg().unwrap();
        match det.update(t, a.x, a.y, a.z) {
            Some(Input::FallDetected) => alarms.push(t),
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    i2c.done();
    Run {
        alarms,
        outcome: det.last_outcome(),
        rest_variance: det.last_rest_variance_mg2(),
    }
}

fn run(trace: &Trace) -> Run {
    run_with(FallConfig::from_device_config(&DeviceConfig::default()), trace)
}

#[test]
fn real_fall_then_lying_on_the_side_alarms_once() {
    let mut tr = Trace::new(1);
    tr.real_fall();
    let impact_ms = tr.t - 400 - 40;
    tr.lying_on_side_breathing(8_000);
    let r = run(&tr);
    assert_eq!(r.alarms.len(), 1, "alarms at {:?}", r.alarms);
    assert_eq!(r.outcome, Some(Outcome::Fall));
    // Settle 0.5 s + still 2 s after the impact, give or take the roll.
    let after = r.alarms[0] - impact_ms;
    assert!((2_400..3_500).contains(&after), "alarm {after} ms after impact");
}

#[test]
fn real_fall_onto_the_back_alarms() {
    let mut tr = Trace::new(2);
    tr.real_fall().segment(6_000, 3.0, |s| {
        // On the back: the pendant lies on the chest, face up; breathing tilts it.
        let breath = (TAU * 0.3 * s).sin();
        [30.0 + 20.0 * breath, 150.0 + 30.0 * breath, 985.0]
    });
    let r = run(&tr);
    assert_eq!(r.alarms.len(), 1);
}

#[test]
fn sitting_down_hard_does_not_alarm() {
    let mut tr = Trace::new(3);
    tr.standing(2_000)
        // Lowering into the chair: a dip to ~600 mg with a 40 ms low point near 300 mg.
        .ramp(200, [0.0, 1000.0, 0.0], [60.0, 600.0, 100.0], 15.0)
        .hold(40, [50.0, 280.0, 60.0], 10.0)
        .ramp(100, [60.0, 600.0, 100.0], [0.0, 900.0, 50.0], 15.0)
        // Hitting the seat: ~2 g.
        .points(&[[300.0, 1900.0, 250.0], [250.0, 2050.0, 200.0], [100.0, 1400.0, 100.0]])
        // Sitting, leaning back ~20°.
        .segment(5_000, 12.0, |s| [20.0 * (TAU * 0.3 * s).sin(), 940.0, 340.0]);
    let r = run(&tr);
    assert!(r.alarms.is_empty(), "{:?}", r.alarms);
    assert_eq!(r.outcome, Some(Outcome::ShortFreeFall));
}

#[test]
fn flopping_into_a_chair_with_a_real_dip_and_hard_landing_still_ends_upright() {
    // Worse than the above: 120 ms below the free-fall threshold and a 2.8 g landing. Only the
    // orientation (still upright, leaning back) keeps it from alarming.
    let mut tr = Trace::new(4);
    tr.standing(2_000)
        .ramp(150, [0.0, 1000.0, 0.0], [50.0, 300.0, 80.0], 10.0)
        .hold(120, [40.0, 200.0, 60.0], 20.0)
        .points(&[[400.0, 2700.0, 500.0], [300.0, 2200.0, 300.0]])
        .segment(5_000, 12.0, |s| [20.0 * (TAU * 0.3 * s).sin(), 920.0, 390.0]);
    let r = run(&tr);
    assert!(r.alarms.is_empty(), "{:?}", r.alarms);
    assert_eq!(r.outcome, Some(Outcome::Upright));
}

/// Dropped from a table edge (75 cm, ~390 ms of true free fall) onto a hard floor: a sharp
/// clipped spike, a bounce, then flat and dead still.
fn dropped_pendant(seed: u32) -> Trace {
    let mut tr = Trace::new(seed);
    tr.walking(2_000)
        .hold(390, [5.0, 10.0, -8.0], 20.0)
        .points(&[[1500.0, 2600.0, 9000.0], [300.0, 500.0, 3000.0]])
        .hold(60, [10.0, 30.0, 40.0], 20.0)
        .points(&[[200.0, 300.0, 2600.0], [50.0, 60.0, 1300.0]])
        // At rest: only the sensor's own noise (~1.5 mg rms) under 4 mg quantisation.
        .hold(6_000, [12.0, -21.0, 1003.0], 2.5);
    tr
}

#[test]
fn dropped_pendant_lying_dead_still_does_not_alarm() {
    for seed in 10..15 {
        let r = run(&dropped_pendant(seed));
        assert!(r.alarms.is_empty(), "seed {seed}: {:?}", r.alarms);
        assert_eq!(r.outcome, Some(Outcome::DeadStill), "seed {seed}");
    }
}

#[test]
fn the_dead_still_rule_is_what_rejects_the_drop() {
    let config = FallConfig {
        min_alive_variance_mg2: 0,
        ..FallConfig::default()
    };
    let r = run_with(config, &dropped_pendant(10));
    assert_eq!(r.alarms.len(), 1);
}

#[test]
fn dropped_then_picked_up_does_not_alarm() {
    let mut tr = dropped_pendant(20);
    // Picked up and looked at in the hand (hand tremor), then hung back on.
    tr.segment(3_000, 25.0, |s| [300.0, 500.0 + 30.0 * (TAU * 8.0 * s).sin(), 800.0])
        .walking(3_000);
    let r = run(&tr);
    assert!(r.alarms.is_empty(), "{:?}", r.alarms);
}

#[test]
fn walking_does_not_alarm() {
    let mut tr = Trace::new(5);
    tr.walking(30_000);
    let r = run(&tr);
    assert!(r.alarms.is_empty());
    assert_eq!(r.outcome, None, "walking never even looks like free fall");
}

#[test]
fn a_jump_does_not_alarm() {
    let mut tr = Trace::new(6);
    tr.standing(2_000)
        // Crouch and push off.
        .ramp(200, [0.0, 1000.0, 0.0], [0.0, 700.0, 50.0], 20.0)
        .hold(150, [50.0, 1900.0, 100.0], 60.0)
        // Airborne: the pendant floats with the body.
        .hold(350, [10.0, 40.0, 20.0], 30.0)
        // Landing, knees absorbing.
        .points(&[[300.0, 3200.0, 400.0], [200.0, 3600.0, 300.0], [150.0, 2000.0, 200.0]])
        .ramp(300, [100.0, 1400.0, 100.0], [0.0, 1000.0, 0.0], 50.0)
        .standing(6_000);
    let r = run(&tr);
    assert!(r.alarms.is_empty(), "{:?}", r.alarms);
    assert_eq!(r.outcome, Some(Outcome::Upright));
}

#[test]
fn a_fall_after_which_the_resident_keeps_moving_does_not_alarm() {
    // Gets up and walks away: no still window in the deadline means no alarm from the detector.
    let mut tr = Trace::new(7);
    tr.real_fall().walking(20_000);
    let r = run(&tr);
    assert!(r.alarms.is_empty());
    assert_eq!(r.outcome, Some(Outcome::NoRest));
}

#[test]
fn thresholds_come_from_device_config() {
    let mut tr = Trace::new(8);
    tr.real_fall().lying_on_side_breathing(6_000);
    let strict = DeviceConfig {
        fall_impact_mg: 6_000,
        ..DeviceConfig::default()
    };
    let r = run_with(FallConfig::from_device_config(&strict), &tr);
    assert!(r.alarms.is_empty());
    assert_eq!(r.outcome, Some(Outcome::NoImpact));

    let mut det = FallDetector::default();
    det.apply_device_config(&strict);
    assert_eq!(det.config().impact_mg, 6_000);
    assert_eq!(det.config().free_fall_mg, 350);
}

proptest::proptest! {
    /// Arbitrary samples and time steps (including time going backwards) never panic, and at
    /// most one alarm comes per impact-to-rest sequence (which needs > 2 s).
    #[test]
    fn arbitrary_input_never_panics(
        samples in proptest::collection::vec((0u64..3_000, proptest::num::i16::ANY, proptest::num::i16::ANY, proptest::num::i16::ANY), 0..500),
        back in proptest::num::u64::ANY,
    ) {
        let mut det = FallDetector::default();
        let mut t = back / 2;
        for (dt, x, y, z) in samples {
            t = if dt == 0 { t.saturating_sub(back % 1_000) } else { t.saturating_add(dt) };
            let _ = det.update(t, x, y, z);
        }
    }
}

#[test]
fn a_noisy_sample_inside_the_free_fall_does_not_break_it() {
    let mut tr = Trace::new(30);
    tr.standing(2_000)
        .ramp(200, [0.0, 1000.0, 0.0], [150.0, 250.0, 100.0], 20.0)
        .hold(60, [120.0, 150.0, 80.0], 30.0)
        .points(&[[300.0, 250.0, 150.0]]) // |a| ~ 420 mg for one sample
        .hold(60, [120.0, 150.0, 80.0], 30.0)
        .points(&[[3000.0, 1500.0, 600.0], [1500.0, 500.0, 200.0]])
        .lying_on_side_breathing(6_000);
    let r = run(&tr);
    assert_eq!(r.alarms.len(), 1, "{:?}", r.outcome);
}

#[test]
fn the_alive_rule_has_margin_on_both_sides() {
    // Threshold 25 mg²: breathing on a body is well above it, a pendant on a table well below.
    for seed in 40..45 {
        let mut tr = Trace::new(seed);
        tr.real_fall().lying_on_side_breathing(6_000);
        let fall = run(&tr).rest_variance.unwrap();
        let drop = run(&dropped_pendant(seed)).rest_variance.unwrap();
        println!("seed {seed}: lying {fall} mg², dropped {drop} mg²");
        assert!(fall >= 100, "lying {fall}");
        assert!(drop <= 12, "dropped {drop}");
    }
}

/// The fall the QEMU board replays over its scripted I2C bus (boards/qemu-lm3s6965): standing
/// 1 s, a real fall, 3.5 s lying on the side breathing. Shorter than the traces above so that
/// it costs the board's flash little (6 bytes a sample).
fn board_fall_trace() -> Trace {
    let mut tr = Trace::new(1);
    tr.standing(1_000)
        .ramp(200, [0.0, 1000.0, 0.0], [150.0, 250.0, 100.0], 20.0)
        .hold(300, [120.0, 150.0, 80.0], 40.0)
        .points(&[
            [2500.0, 2200.0, 500.0],
            [3400.0, 1500.0, 800.0],
            [2200.0, 900.0, 300.0],
            [1400.0, 400.0, 200.0],
        ])
        .segment(400, 250.0, |_| [1100.0, 300.0, 350.0])
        .lying_on_side_breathing(3_500);
    tr
}

/// The recorded trace file: every sample's OUT_X_L..OUT_Z_H burst as the bus returns it.
const BOARD_FALL_TRACE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fall_on_side.lis3dh");

/// The board's trace file is this synthetic fall, byte for byte, and the detector alarms on it
/// exactly once. `TEC_BLESS_FIXTURES=1 cargo test -p tec-firmware --test hw_fall` rewrites the
/// file after a deliberate change of the trace.
#[test]
fn the_board_fall_trace_file_is_a_fall_the_detector_alarms_on_once() {
    let trace = board_fall_trace();
    let bytes: Vec<u8> = trace.samples.iter().flat_map(|(_, v)| burst(v)).collect();
    if std::env::var_os("TEC_BLESS_FIXTURES").is_some() {
        std::fs::write(BOARD_FALL_TRACE_FILE, &bytes).unwrap();
    }
    let recorded = std::fs::read(BOARD_FALL_TRACE_FILE).unwrap();
    assert_eq!(recorded.len(), trace.samples.len() * 6);
    assert!(recorded == bytes, "the trace file differs from the synthetic fall");
    let r = run(&trace);
    assert_eq!(r.alarms.len(), 1, "{:?}", r.outcome);
}
