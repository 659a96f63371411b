#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Home sensor inputs and the motion activity counter.

use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction};
use firmware::Input;
use firmware::hw::sensors::{ActivityCounter, InputSpec, Meaning, SensorInputs, TableError};
use protocol::{AlarmKind, MAX_ACTIVITY_WINDOWS, SensorState};

const SMOKE: u8 = 1;
const DOOR: u8 = 2;
const BED: u8 = 3;
const MOTION: u8 = 4;
const MAINS: u8 = 5;
const FLOOD: u8 = 6;

fn table() -> SensorInputs<8> {
    let mut s = SensorInputs::new(60);
    // Smoke relay: active low. Door reed switch: high when open. Bed mat: high when occupied.
    s.add(InputSpec::new(SMOKE, Meaning::Smoke, false)).unwrap();
    s.add(InputSpec::new(DOOR, Meaning::Door, true)).unwrap();
    s.add(InputSpec::new(BED, Meaning::Bed, true)).unwrap();
    s.add(InputSpec::new(MOTION, Meaning::Motion, true)).unwrap();
    s.add(InputSpec::new(MAINS, Meaning::MainsPower, true)).unwrap();
    s.add(InputSpec::new(FLOOD, Meaning::Flood, true)).unwrap();
    s
}

/// Holds `channel` at `level` from `from` for `ms`, sampling every 10 ms.
fn hold(s: &mut SensorInputs<8>, channel: u8, level: bool, from: u64, ms: u64) -> Vec<(u64, Input)> {
    (0..ms / 10)
        .filter_map(|i| {
            let t = from + i * 10;
            s.update(t, channel, level).map(|e| (t, e))
        })
        .collect()
}

#[test]
fn alarm_inputs_fire_on_activation_only() {
    let mut s = table();
    assert!(hold(&mut s, SMOKE, true, 0, 500).is_empty(), "idle high = no smoke");
    assert_eq!(
        hold(&mut s, SMOKE, false, 500, 500),
        vec![(550, Input::Alarm(AlarmKind::Smoke))]
    );
    assert!(hold(&mut s, SMOKE, true, 1_000, 500).is_empty(), "clearing is silent");
    assert_eq!(
        hold(&mut s, FLOOD, true, 0, 100),
        vec![(50, Input::Alarm(AlarmKind::Flood))]
    );
}

#[test]
fn every_alarm_meaning_maps_to_its_kind() {
    for (m, kind) in [
        (Meaning::Smoke, AlarmKind::Smoke),
        (Meaning::CarbonMonoxide, AlarmKind::CarbonMonoxide),
        (Meaning::Flood, AlarmKind::Flood),
        (Meaning::Heat, AlarmKind::Heat),
        (Meaning::Tamper, AlarmKind::Tamper),
    ] {
        assert_eq!(m.event(9, true), Some(Input::Alarm(kind)));
        assert_eq!(m.event(9, false), None);
    }
}

#[test]
fn contact_bounce_and_glitches_are_ignored() {
    let mut s = table();
    let mut ev = Vec::new();
    for t in 0..40u64 {
        if let Some(e) = s.update(t, DOOR, t % 2 == 0) {
            ev.push(e);
        }
    }
    ev.extend(hold(&mut s, DOOR, false, 40, 200).into_iter().map(|(_, e)| e));
    // A 30 ms spike on the flood input.
    ev.extend(hold(&mut s, FLOOD, true, 300, 30).into_iter().map(|(_, e)| e));
    ev.extend(hold(&mut s, FLOOD, false, 330, 200).into_iter().map(|(_, e)| e));
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn door_and_bed_report_both_edges() {
    let mut s = table();
    let mut ev: Vec<Input> = Vec::new();
    for (ch, level, from) in [
        (DOOR, true, 0),
        (DOOR, false, 1_000),
        (BED, true, 2_000),
        (BED, false, 3_000),
    ] {
        ev.extend(hold(&mut s, ch, level, from, 500).into_iter().map(|(_, e)| e));
    }
    let st = |input, state| Input::Sensor { input, state };
    assert_eq!(
        ev,
        vec![
            st(DOOR, SensorState::DoorOpen),
            st(DOOR, SensorState::DoorClosed),
            st(BED, SensorState::BedOccupied),
            st(BED, SensorState::BedEmpty),
        ]
    );
    assert_eq!(Meaning::Chair.event(3, true), Some(st(3, SensorState::ChairOccupied)));
    assert_eq!(Meaning::Chair.event(3, false), Some(st(3, SensorState::ChairEmpty)));
}

#[test]
fn mains_power_lost_and_restored() {
    let mut s = table();
    assert!(hold(&mut s, MAINS, true, 0, 500).is_empty(), "present at boot is quiet");
    assert_eq!(
        hold(&mut s, MAINS, false, 500, 500),
        vec![(550, Input::Alarm(AlarmKind::MainsPowerLost))]
    );
    assert_eq!(
        hold(&mut s, MAINS, true, 1_000, 500),
        vec![(1_050, Input::Alarm(AlarmKind::MainsPowerRestored))]
    );
    assert_eq!(s.is_active(MAINS), Some(true));
}

#[test]
fn unknown_channel_is_ignored_and_table_is_bounded() {
    let mut s = table();
    assert!(hold(&mut s, 99, true, 0, 500).is_empty());
    assert_eq!(s.is_active(99), None);
    assert_eq!(
        s.add(InputSpec::new(DOOR, Meaning::Door, true)),
        Err(TableError::Duplicate(DOOR))
    );
    s.add(InputSpec::new(7, Meaning::Heat, true)).unwrap();
    s.add(InputSpec::new(8, Meaning::Tamper, true)).unwrap();
    assert_eq!(s.add(InputSpec::new(9, Meaning::Chair, true)), Err(TableError::Full));
    assert_eq!(s.specs().count(), 8);
}

#[test]
fn motion_is_reported_and_counted_per_window() {
    let mut s = table();
    let mut ev = Vec::new();
    // Three PIR pulses in the first minute, one in the third.
    for start in [1_000u64, 10_000, 20_000, 130_000] {
        ev.extend(hold(&mut s, MOTION, true, start, 2_000));
        ev.extend(hold(&mut s, MOTION, false, start + 2_000, 1_000));
    }
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().all(|(_, e)| *e
        == Input::Sensor {
            input: MOTION,
            state: SensorState::Motion
        }));
    // The counter's clock started at the first update (t = 1 s); tick past the third window.
    assert_eq!(s.activity().tick(181_000), 1);
    let summary = s.activity().drain_summary();
    assert_eq!(summary.window_s, 60);
    assert_eq!(summary.motion_counts.as_slice(), &[3, 0, 1]);
    assert_eq!(s.activity().pending(), 0);
}

#[test]
fn poll_reads_the_pin() {
    let mut pin = PinMock::new(&vec![Transaction::get(State::High); 6]);
    let mut s = table();
    let mut ev = Vec::new();
    for i in 0..6u64 {
        if let Some(e) = s.poll(i * 10, DOOR, &mut pin).unwrap() {
            ev.push(e);
        }
    }
    assert_eq!(
        ev,
        vec![Input::Sensor {
            input: DOOR,
            state: SensorState::DoorOpen
        }]
    );
    pin.done();
}

#[test]
fn activity_counter_keeps_the_newest_windows_and_survives_gaps() {
    let mut a = ActivityCounter::new(10);
    assert_eq!(a.tick(0), 0);
    for w in 0..20u64 {
        for k in 0..w {
            a.record_motion(w * 10_000 + k * 100);
        }
    }
    a.tick(200_000);
    let got = a.drain();
    assert_eq!(got.len(), MAX_ACTIVITY_WINDOWS);
    assert_eq!(got.as_slice(), &[8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    // A day without ticks: only empty windows, no loop over 8 640 windows.
    a.record_motion(200_500);
    assert_eq!(a.tick(200_000 + 86_400_000), MAX_ACTIVITY_WINDOWS);
    assert_eq!(a.drain().as_slice(), &[0; MAX_ACTIVITY_WINDOWS]);
    // Zero-length windows are taken as one second.
    assert_eq!(ActivityCounter::new(0).window_s(), 1);
}
