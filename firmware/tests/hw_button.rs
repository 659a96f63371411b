#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Pendant button: debounce, immediate press, hold.

use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction};
use firmware::Input;
use firmware::hw::button::{ActiveLevel, Button, ButtonConfig};

/// Feeds `(from..to)` every `step` ms at a constant level, collecting events with their time.
fn run(b: &mut Button, from: u64, to: u64, step: u64, pressed: bool, out: &mut Vec<(u64, Input)>) {
    let mut t = from;
    while t < to {
        if let Some(e) = b.update(t, pressed) {
            out.push((t, e));
        }
        t += step;
    }
}

#[test]
fn press_is_reported_when_confirmed_not_on_release() {
    let mut b = Button::default();
    let mut ev = Vec::new();
    run(&mut b, 0, 100, 5, false, &mut ev);
    run(&mut b, 100, 300, 5, true, &mut ev);
    assert_eq!(ev, vec![(130, Input::ButtonPressed)]);
    assert!(b.is_pressed());
    run(&mut b, 300, 500, 5, false, &mut ev);
    assert_eq!(ev.len(), 1, "release is silent: {ev:?}");
    assert!(!b.is_pressed());
}

#[test]
fn contact_bounce_gives_one_press() {
    let mut b = Button::default();
    let mut ev = Vec::new();
    // 12 ms of bounce at 1 ms sampling, then solid contact.
    for t in 0..12u64 {
        if let Some(e) = b.update(t, t % 3 != 0) {
            ev.push((t, e));
        }
    }
    run(&mut b, 12, 200, 1, true, &mut ev);
    // Release also bounces.
    for t in 200..215u64 {
        if let Some(e) = b.update(t, t % 2 == 0) {
            ev.push((t, e));
        }
    }
    run(&mut b, 215, 400, 1, false, &mut ev);
    // Last bounce low at 9 ms: solid from 10 ms, confirmed 30 ms later.
    assert_eq!(ev, vec![(40, Input::ButtonPressed)]);
}

#[test]
fn glitches_shorter_than_debounce_are_ignored() {
    let mut b = Button::default();
    let mut ev = Vec::new();
    for start in [0u64, 100, 200, 300] {
        run(&mut b, start, start + 25, 5, true, &mut ev);
        run(&mut b, start + 25, start + 100, 5, false, &mut ev);
    }
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn hold_reports_press_then_held_once() {
    let mut b = Button::default();
    let mut ev = Vec::new();
    run(&mut b, 1_000, 5_000, 10, true, &mut ev);
    assert_eq!(ev, vec![(1_030, Input::ButtonPressed), (3_000, Input::ButtonHeld)]);
    assert_eq!(b.pressed_since_ms(), Some(1_000));
    run(&mut b, 5_000, 5_100, 10, false, &mut ev);
    run(&mut b, 5_100, 5_200, 10, true, &mut ev);
    assert_eq!(ev.len(), 3);
    assert_eq!(b.pressed_since_ms(), Some(5_100));
    assert_eq!(ev[2], (5_130, Input::ButtonPressed));
}

#[test]
fn short_press_does_not_count_as_hold() {
    let mut b = Button::default();
    let mut ev = Vec::new();
    run(&mut b, 0, 1_990, 10, true, &mut ev);
    run(&mut b, 1_990, 4_000, 10, false, &mut ev);
    assert_eq!(ev, vec![(30, Input::ButtonPressed)]);
    assert_eq!(b.pressed_since_ms(), None);
}

#[test]
fn configurable_timing() {
    let mut b = Button::new(ButtonConfig {
        debounce_ms: 10,
        hold_ms: 500,
    });
    let mut ev = Vec::new();
    run(&mut b, 0, 1_000, 5, true, &mut ev);
    assert_eq!(ev, vec![(10, Input::ButtonPressed), (500, Input::ButtonHeld)]);
}

#[test]
fn poll_reads_an_active_low_pin() {
    let mut expectations = vec![Transaction::get(State::High); 3];
    expectations.extend(vec![Transaction::get(State::Low); 5]);
    let mut pin = PinMock::new(&expectations);
    let mut b = Button::default();
    let mut ev = Vec::new();
    for i in 0..8u64 {
        if let Some(e) = b.poll(i * 10, &mut pin, ActiveLevel::Low).unwrap() {
            ev.push((i * 10, e));
        }
    }
    assert_eq!(ev, vec![(60, Input::ButtonPressed)]);
    pin.done();
}

#[test]
fn pin_error_is_returned_and_changes_nothing() {
    let err = MockError::Io(std::io::ErrorKind::Other);
    let mut pin = PinMock::new(&[
        Transaction::get(State::High),
        Transaction::get(State::High).with_error(err.clone()),
    ]);
    let mut b = Button::default();
    assert_eq!(b.poll(0, &mut pin, ActiveLevel::High).unwrap(), None);
    assert_eq!(b.poll(100, &mut pin, ActiveLevel::High), Err(err));
    assert!(!b.is_pressed());
    pin.done();
}

proptest::proptest! {
    /// Whatever the input: every hold follows a press of the same press, and nothing panics.
    #[test]
    fn held_always_follows_its_press(samples in proptest::collection::vec((0u64..50, proptest::bool::ANY), 0..400)) {
        let mut b = Button::default();
        let mut t = 0u64;
        let mut awaiting_held = false;
        for (dt, level) in samples {
            t += dt;
            match b.update(t, level) {
                Some(Input::ButtonPressed) => awaiting_held = true,
                Some(Input::ButtonHeld) => {
                    proptest::prop_assert!(awaiting_held);
                    proptest::prop_assert!(b.is_pressed());
                    awaiting_held = false;
                }
                Some(other) => proptest::prop_assert!(false, "unexpected {:?}", other),
                None => {}
            }
            if !b.is_pressed() {
                awaiting_held = false;
            }
        }
    }
}
