#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Feedback patterns and the LED/buzzer driver against mocked pins.

use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as T};
use firmware::hw::feedback::{Feedback, FeedbackError, Pattern, PatternPlayer};

const ALL: [Pattern; 7] = [
    Pattern::Sending,
    Pattern::ReceivedByCentre,
    Pattern::HelpOnTheWay,
    Pattern::Resolved,
    Pattern::LowBattery,
    Pattern::NoConnection,
    Pattern::Idle,
];

/// Levels every 10 ms over `ms`.
fn trace(p: Pattern, ms: u64) -> Vec<(bool, bool)> {
    (0..ms / 10).map(|i| p.level_at(i * 10)).collect()
}

/// Number of off→on transitions of the LED and of the buzzer (starting from off).
fn edges(levels: &[(bool, bool)]) -> (usize, usize) {
    let mut prev = (false, false);
    let (mut led, mut buz) = (0, 0);
    for &l in levels {
        led += usize::from(l.0 && !prev.0);
        buz += usize::from(l.1 && !prev.1);
        prev = l;
    }
    (led, buz)
}

#[test]
fn every_pattern_is_distinct() {
    let traces: Vec<_> = ALL.iter().map(|&p| trace(p, 130_000)).collect();
    for i in 0..ALL.len() {
        for j in i + 1..ALL.len() {
            assert_ne!(traces[i], traces[j], "{:?} vs {:?}", ALL[i], ALL[j]);
        }
    }
}

#[test]
fn sending_beeps_once_then_blinks_fast_forever() {
    let t = trace(Pattern::Sending, 10_000);
    assert_eq!(edges(&t), (1 + 10_000 / 200 - 1, 1));
    assert_eq!(Pattern::Sending.level_at(3_600_000), (true, false));
    assert!(!Pattern::Sending.is_finite());
}

#[test]
fn received_is_three_beeps_then_dark() {
    let t = trace(Pattern::ReceivedByCentre, 5_000);
    assert_eq!(edges(&t), (3, 3));
    assert_eq!(Pattern::ReceivedByCentre.level_at(5_000), (false, false));
}

#[test]
fn help_on_the_way_is_two_long_beeps_and_a_steady_light() {
    let t = trace(Pattern::HelpOnTheWay, 40_000);
    assert_eq!(edges(&t), (1, 2));
    assert_eq!(Pattern::HelpOnTheWay.level_at(700), (true, true));
    assert_eq!(Pattern::HelpOnTheWay.level_at(20_000), (true, false));
    assert_eq!(Pattern::HelpOnTheWay.level_at(31_000), (false, false));
}

#[test]
fn resolved_is_one_short_beep_light_off() {
    let t = trace(Pattern::Resolved, 5_000);
    assert_eq!(edges(&t), (0, 1));
    assert_eq!(t.iter().filter(|l| l.1).count(), 10);
}

#[test]
fn low_battery_chirps_once_a_minute() {
    let t = trace(Pattern::LowBattery, 180_000);
    assert_eq!(edges(&t), (0, 3));
    assert_eq!(Pattern::LowBattery.level_at(60_010), (false, true));
    assert_eq!(Pattern::LowBattery.level_at(60_040), (false, false));
}

#[test]
fn no_connection_blinks_slowly_and_silently() {
    let t = trace(Pattern::NoConnection, 10_000);
    assert_eq!(edges(&t), (5, 0));
    assert!(trace(Pattern::Idle, 10_000).iter().all(|&l| l == (false, false)));
}

#[test]
fn player_counts_from_its_start() {
    let p = PatternPlayer::new(Pattern::ReceivedByCentre, 1_000);
    assert_eq!(p.level_at(1_000), (true, true));
    assert_eq!(p.level_at(1_200), (false, false));
    assert_eq!(p.level_at(500), (true, true), "before the start counts as the start");
}

#[test]
fn driver_writes_pins_only_on_change() {
    let mut led = PinMock::new(&[
        T::set(State::High),
        T::set(State::Low),
        T::set(State::High),
        T::set(State::Low),
        T::set(State::High),
        T::set(State::Low),
    ]);
    let mut buzzer = PinMock::new(&[
        T::set(State::High),
        T::set(State::Low),
        T::set(State::High),
        T::set(State::Low),
    ]);
    let mut fb = Feedback::new(led.clone(), buzzer.clone());
    fb.show(Pattern::Sending, 0).unwrap(); // beep + light
    fb.update(50).unwrap(); // unchanged: no writes
    fb.update(100).unwrap(); // both off
    fb.update(200).unwrap(); // light
    fb.update(300).unwrap(); // off
    fb.update(400).unwrap(); // loops: light
    fb.show(Pattern::Resolved, 450).unwrap(); // light off, beep
    fb.update(560).unwrap(); // beep over
    fb.update(10_000).unwrap(); // dark, no writes
    assert_eq!(fb.pattern(), Pattern::Resolved);
    led.done();
    buzzer.done();
}

#[test]
fn pin_errors_are_typed_and_retried() {
    let err = MockError::Io(std::io::ErrorKind::Other);
    let mut led = PinMock::new(&[T::set(State::High).with_error(err.clone()), T::set(State::High)]);
    let mut buzzer = PinMock::new(&[T::set(State::Low).with_error(err.clone()), T::set(State::Low)]);
    let mut fb = Feedback::new(led.clone(), buzzer.clone());
    // Both pins are attempted; the LED's error is reported.
    assert_eq!(fb.show(Pattern::NoConnection, 0), Err(FeedbackError::Led(err)));
    // Next update writes both again.
    fb.update(10).unwrap();
    fb.update(20).unwrap();
    led.done();
    buzzer.done();
}

#[test]
fn follow_does_not_restart_a_showing_pattern() {
    use firmware::indication::Indication;
    // Sending: beep+light at 0, off at 100, light at 200. Following it every 50 ms must not
    // restart it (a restart at 150 would beep again).
    let mut led = PinMock::new(&[
        T::set(State::High),
        T::set(State::Low),
        T::set(State::High),
        T::set(State::Low),
    ]);
    let mut buzzer = PinMock::new(&[T::set(State::High), T::set(State::Low), T::set(State::High)]);
    let mut fb = Feedback::new(led.clone(), buzzer.clone());
    for t in [0u64, 50, 100, 150, 200] {
        fb.follow(Indication::Sending.into(), t).unwrap();
    }
    // A different indication starts its own pattern: Resolved beeps, light off.
    fb.follow(Indication::Resolved.into(), 250).unwrap();
    assert_eq!(fb.pattern(), Pattern::Resolved);
    led.done();
    buzzer.done();
}

#[test]
fn every_indication_has_its_pattern() {
    use firmware::indication::Indication;
    let pairs = [
        (Indication::Idle, Pattern::Idle),
        (Indication::Sending, Pattern::Sending),
        (Indication::ReceivedByCentre, Pattern::ReceivedByCentre),
        (Indication::HelpOnTheWay, Pattern::HelpOnTheWay),
        (Indication::Resolved, Pattern::Resolved),
        (Indication::LowBattery, Pattern::LowBattery),
        (Indication::NoConnection, Pattern::NoConnection),
    ];
    for (i, p) in pairs {
        assert_eq!(Pattern::from(i), p);
    }
}
