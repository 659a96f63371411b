//! Alert engine: per-resident "event not occurring" rules (bed return, movement by a time
//! of day), door opened at night, in local time across daylight-saving changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::{EngineConfig, ResidentRules};
use gateway::domain::{AlertId, AlertKind, Change, DeviceKind, Outcome, Priority};
use jiff::civil::time;
use protocol::{AlarmKind, SensorState};

/// Devices that stay quiet for days do not go offline here: these tests are about rules.
fn quiet(start: &str) -> Sim {
    let config = EngineConfig {
        default_heartbeat_interval_s: 7 * 24 * 3600,
        ..EngineConfig::default()
    };
    Sim::new(config, utc(start))
}

fn bed_rule(minutes: u32) -> ResidentRules {
    ResidentRules {
        bed_return_within_min: Some(minutes),
        movement_expected_by: None,
    }
}

fn movement_by(hour: i8) -> ResidentRules {
    ResidentRules {
        bed_return_within_min: None,
        movement_expected_by: Some(time(hour, 0, 0, 0)),
    }
}

fn bed(state: SensorState) -> Ev {
    Ev::new("bed-1", sensor(state)).of("r1").kind(DeviceKind::BedSensor)
}

fn motion() -> Ev {
    Ev::new("pir-1", sensor(SensorState::Motion))
        .of("r1")
        .kind(DeviceKind::MotionSensor)
}

fn door_open() -> Ev {
    Ev::new("door-1", sensor(SensorState::DoorOpen))
        .of("r1")
        .kind(DeviceKind::DoorSensor)
}

#[test]
fn not_back_in_bed_within_the_limit_at_night_raises_bed_not_returned() {
    let mut sim = quiet("2026-01-15T20:00:00Z");
    sim.rules("r1", bed_rule(20));
    sim.set_time("2026-01-15T23:00:00Z");
    let (key, effects) = sim.send(bed(SensorState::BedEmpty));
    assert!(effects.is_empty());
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-15T23:20:00Z")));
    sim.set_time("2026-01-15T23:19:59Z");
    assert!(sim.tick().is_empty());
    sim.set_time("2026-01-15T23:20:00Z");
    let effects = sim.tick();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::BedNotReturned);
    assert_eq!(alert.priority, Priority::Wellbeing);
    assert_eq!(alert.resident, Some(res("r1")));
    assert_eq!(alert.device, Some(dev("bed-1")));
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(key) });
    assert!(downlinks(&effects).is_empty());
    sim.ack(alert.id); // no escalation noise below
    sim.advance(HOUR);
    assert!(sim.tick().is_empty(), "fires once");
}

#[test]
fn back_in_bed_in_time_cancels_the_timer() {
    let mut sim = quiet("2026-01-15T20:00:00Z");
    sim.rules("r1", bed_rule(20));
    sim.set_time("2026-01-16T02:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.advance(19 * MINUTE);
    sim.send(bed(SensorState::BedOccupied));
    sim.advance(HOUR);
    assert!(sim.tick().is_empty());
    assert!(sim.open().is_empty());
}

#[test]
fn a_bouncing_bed_sensor_does_not_push_the_deadline_back() {
    let mut sim = quiet("2026-01-15T20:00:00Z");
    sim.rules("r1", bed_rule(20));
    sim.set_time("2026-01-15T23:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.advance(10 * MINUTE);
    sim.send(bed(SensorState::BedEmpty));
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-15T23:20:00Z")));
}

#[test]
fn leaving_the_bed_by_day_or_without_the_rule_starts_nothing() {
    let mut sim = quiet("2026-01-15T10:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.set_time("2026-01-15T23:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    assert_eq!(
        sim.engine.next_deadline().map(|d| d > utc("2026-01-20T00:00:00Z")),
        Some(true),
        "no rule"
    );
    sim.rules("r1", bed_rule(20));
    sim.set_time("2026-01-16T07:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.advance(HOUR);
    assert!(sim.tick().is_empty(), "07:00 is no longer night");
}

#[test]
fn the_bed_timer_runs_from_when_the_resident_got_up_by_the_device_clock() {
    let mut sim = quiet("2026-01-15T20:00:00Z");
    sim.rules("r1", bed_rule(20));
    sim.set_time("2026-01-15T23:15:00Z");
    sim.send(bed(SensorState::BedEmpty).delayed(15 * MINUTE));
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-15T23:20:00Z")));
}

#[test]
fn switching_the_bed_rule_off_drops_a_pending_timer() {
    let mut sim = quiet("2026-01-15T20:00:00Z");
    sim.rules("r1", bed_rule(20));
    sim.set_time("2026-01-15T23:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.rules("r1", ResidentRules::default());
    assert_eq!(sim.engine.resident_rules(&res("r1")), None);
    sim.advance(HOUR);
    assert!(sim.tick().is_empty());
}

#[test]
fn the_night_period_follows_summer_time() {
    let mut sim = quiet("2026-07-01T12:00:00Z");
    sim.rules("r1", bed_rule(20));
    // 21:30 UTC is 22:30 BST: night.
    sim.set_time("2026-07-01T21:30:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.set_time("2026-07-01T21:50:00Z");
    assert_eq!(changed_alerts(&sim.tick())[0].kind, AlertKind::BedNotReturned);
}

#[test]
fn no_movement_by_the_expected_time_raises_once_per_day() {
    let mut sim = quiet("2026-01-15T05:00:00Z");
    sim.rules("r1", movement_by(10));
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-15T10:00:00Z")));
    sim.set_time("2026-01-15T08:00:00Z");
    sim.send(motion());
    sim.set_time("2026-01-15T10:00:00Z");
    assert!(sim.tick().is_empty(), "moved at 08:00");
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-16T10:00:00Z")));
    // Next day: nothing by 10:00.
    sim.set_time("2026-01-16T09:59:59Z");
    assert!(sim.tick().is_empty());
    sim.set_time("2026-01-16T10:00:00Z");
    let effects = sim.tick();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::NoMovementByTime);
    assert_eq!(alert.priority, Priority::Wellbeing);
    assert_eq!(alert.resident, Some(res("r1")));
    assert_eq!(alert.device, None);
    assert_eq!(alert.transitions[0].change, Change::Raised { event: None });
    sim.ack(alert.id); // no escalation noise below
    sim.set_time("2026-01-16T15:00:00Z");
    assert!(sim.tick().is_empty(), "once per day");
    // Still open the day after: the open alert hears about it.
    sim.set_time("2026-01-17T10:00:00Z");
    sim.tick();
    let open = sim.only_open();
    assert!(matches!(last_change(&open), Change::Note { operator, .. } if operator == "gateway"));
    sim.resolve(AlertId(1), Outcome::ResponderAttended);
    sim.set_time("2026-01-18T10:00:00Z");
    sim.tick();
    assert_eq!(sim.only_open().id, AlertId(2));
}

#[test]
fn movement_before_the_day_starts_counts_for_the_day_before() {
    let mut sim = quiet("2026-01-15T05:00:00Z");
    sim.rules("r1", movement_by(10));
    sim.set_time("2026-01-15T09:00:00Z");
    sim.send(motion());
    sim.set_time("2026-01-16T03:30:00Z");
    sim.send(motion());
    sim.set_time("2026-01-16T10:00:00Z");
    assert_eq!(changed_alerts(&sim.tick())[0].kind, AlertKind::NoMovementByTime);
}

#[test]
fn activity_summaries_with_any_motion_count_as_movement() {
    let mut sim = quiet("2026-01-15T05:00:00Z");
    sim.rules("r1", movement_by(10));
    sim.set_time("2026-01-15T06:00:00Z");
    sim.send(Ev::new("pir-1", activity(&[0, 0, 0])).of("r1"));
    sim.set_time("2026-01-15T10:00:00Z");
    assert_eq!(changed_alerts(&sim.tick()).len(), 1, "all-zero counts are not movement");
    sim.resolve(AlertId(1), Outcome::AdviceGiven);
    sim.set_time("2026-01-16T06:00:00Z");
    sim.send(Ev::new("pir-1", activity(&[0, 3, 0])).of("r1"));
    sim.set_time("2026-01-16T10:00:00Z");
    assert!(sim.tick().is_empty());
}

#[test]
fn movement_of_another_resident_does_not_count() {
    let mut sim = quiet("2026-01-15T05:00:00Z");
    sim.rules("r1", movement_by(10));
    sim.send(Ev::new("pir-9", sensor(SensorState::Motion)).of("r2"));
    sim.set_time("2026-01-15T10:00:00Z");
    assert_eq!(changed_alerts(&sim.tick())[0].resident, Some(res("r1")));
}

#[test]
fn a_movement_rule_set_after_todays_time_starts_tomorrow() {
    let mut sim = quiet("2026-01-15T11:00:00Z");
    sim.rules("r1", movement_by(10));
    assert!(sim.tick().is_empty());
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-16T10:00:00Z")));
}

#[test]
fn movement_deadline_on_the_spring_forward_day() {
    let mut sim = quiet("2026-03-28T12:00:00Z");
    sim.rules("r1", movement_by(10));
    // 29 March 2026: 10:00 BST is 09:00 UTC.
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-03-29T09:00:00Z")));
    // The day starts at 04:00 BST = 03:00 UTC; 02:30 UTC (03:30 BST) is still the 28th.
    sim.set_time("2026-03-29T02:30:00Z");
    sim.send(motion());
    sim.set_time("2026-03-29T08:59:59Z");
    assert!(sim.tick().is_empty());
    sim.set_time("2026-03-29T09:00:00Z");
    assert_eq!(changed_alerts(&sim.tick())[0].kind, AlertKind::NoMovementByTime);
    // On the next day a move at 03:30 UTC (04:30 BST) counts.
    sim.resolve(AlertId(1), Outcome::AdviceGiven);
    sim.set_time("2026-03-30T03:30:00Z");
    sim.send(motion());
    sim.set_time("2026-03-30T09:00:00Z");
    assert!(sim.tick().is_empty());
}

#[test]
fn movement_deadline_on_the_fall_back_day() {
    let mut sim = quiet("2026-10-24T12:00:00Z");
    sim.rules("r1", movement_by(10));
    // 24 October is still BST; 25 October 10:00 GMT is 10:00 UTC.
    sim.set_time("2026-10-25T09:59:59Z");
    sim.tick();
    assert!(sim.open().is_empty());
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-10-25T10:00:00Z")));
    sim.set_time("2026-10-25T10:00:00Z");
    assert_eq!(changed_alerts(&sim.tick())[0].kind, AlertKind::NoMovementByTime);
}

#[test]
fn a_door_opened_at_night_raises_door_opened_at_night() {
    let mut sim = quiet("2026-01-15T23:30:00Z");
    let (key, effects) = sim.send(door_open());
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::DoorOpenedAtNight);
    assert_eq!(alert.priority, Priority::Wellbeing);
    assert_eq!(alert.device, Some(dev("door-1")));
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(key) });
    // Opening again joins.
    sim.advance(MINUTE);
    let (again, _) = sim.send(door_open());
    assert_eq!(last_change(&sim.only_open()), &Change::Joined { event: again });
}

#[test]
fn a_door_opened_by_day_or_by_another_kind_of_device_or_without_a_resident_is_fine() {
    let mut sim = quiet("2026-01-15T15:00:00Z");
    sim.send(door_open());
    sim.set_time("2026-01-15T23:30:00Z");
    sim.send(
        Ev::new("hub-1", sensor(SensorState::DoorOpen))
            .of("r1")
            .kind(DeviceKind::Hub),
    );
    sim.send(Ev::new("door-2", sensor(SensorState::DoorOpen)).kind(DeviceKind::DoorSensor));
    sim.send(
        Ev::new("door-1", sensor(SensorState::DoorClosed))
            .of("r1")
            .kind(DeviceKind::DoorSensor),
    );
    assert!(sim.open().is_empty());
}

#[test]
fn a_door_opened_at_night_alarm_from_the_device_is_raised_too() {
    let mut sim = quiet("2026-01-15T12:00:00Z");
    sim.send(
        Ev::new("door-1", alarm(AlarmKind::DoorOpenedAtNight))
            .of("r1")
            .kind(DeviceKind::DoorSensor),
    );
    assert_eq!(sim.only_open().kind, AlertKind::DoorOpenedAtNight);
    // The sensor change that night joins the same alert.
    sim.set_time("2026-01-15T23:00:00Z");
    sim.send(door_open());
    assert!(matches!(last_change(&sim.only_open()), Change::Joined { .. }));
}

#[test]
fn door_at_night_follows_summer_time() {
    let mut sim = quiet("2026-07-01T21:30:00Z");
    sim.send(door_open());
    assert_eq!(sim.open().len(), 1, "22:30 BST is night");
    let mut winter = quiet("2026-01-15T21:30:00Z");
    winter.send(door_open());
    assert!(winter.open().is_empty(), "21:30 GMT is not");
}

#[test]
fn after_days_without_ticks_only_today_is_checked_at_its_own_time() {
    let mut sim = quiet("2026-01-15T05:00:00Z");
    sim.rules("r1", movement_by(10));
    // The gateway was stopped for days; the first tick comes on the 18th before 10:00.
    sim.set_time("2026-01-18T08:00:00Z");
    assert!(sim.tick().is_empty(), "missed days are not raised after the fact");
    assert_eq!(sim.engine.next_deadline(), Some(utc("2026-01-18T10:00:00Z")));
    sim.set_time("2026-01-18T10:00:00Z");
    assert_eq!(changed_alerts(&sim.tick()).len(), 1);
    assert_eq!(
        sim.engine.next_deadline(),
        Some(utc("2026-01-18T10:02:00Z")),
        "then only its escalation"
    );
}

#[test]
fn operators_hear_when_the_resident_is_back_or_moving() {
    let mut sim = quiet("2026-01-15T20:00:00Z");
    sim.rules(
        "r1",
        ResidentRules {
            bed_return_within_min: Some(20),
            movement_expected_by: Some(time(10, 0, 0, 0)),
        },
    );
    sim.set_time("2026-01-15T23:00:00Z");
    sim.send(bed(SensorState::BedEmpty));
    sim.set_time("2026-01-15T23:20:00Z");
    let alert = changed_alerts(&sim.tick()).pop().unwrap();
    assert!(matches!(&alert.transitions[1].change, Change::Note { operator, text }
        if operator == "gateway" && text.contains("20 min")));
    // Answered at once, so closing it later needs no late-answer reason.
    sim.ack(alert.id);
    sim.advance(5 * MINUTE);
    sim.send(bed(SensorState::BedOccupied));
    assert!(matches!(last_change(&sim.only_open()), Change::Note { text, .. } if text == "bed occupied again"));
    sim.resolve(alert.id, Outcome::AdviceGiven);
    sim.set_time("2026-01-16T10:00:00Z");
    sim.tick();
    sim.set_time("2026-01-16T10:30:00Z");
    sim.send(motion());
    let open = sim.only_open();
    assert_eq!(open.kind, AlertKind::NoMovementByTime);
    assert!(matches!(last_change(&open), Change::Note { text, .. } if text == "movement seen"));
}

#[test]
fn activity_counts_as_movement_when_its_window_was_not_before_the_day_started() {
    let mut sim = quiet("2026-01-15T05:00:00Z");
    sim.rules("r1", movement_by(10));
    sim.set_time("2026-01-16T04:05:00Z");
    // Windows of 10 minutes ending 03:45, 03:55, 04:05: motion only in the first, before 04:00.
    sim.send(Ev::new("pir-1", activity(&[4, 0, 0])).of("r1"));
    sim.set_time("2026-01-16T10:00:00Z");
    let raised = changed_alerts(&sim.tick());
    assert_eq!(
        raised.iter().filter(|a| a.kind == AlertKind::NoMovementByTime).count(),
        1
    );
}

#[test]
fn bed_timers_run_in_real_minutes_across_the_clock_changes() {
    for (left_bed, due) in [
        // Spring: 00:55 GMT, then clocks jump 01:00 -> 02:00; due at 02:15 BST.
        ("2026-03-29T00:55:00Z", "2026-03-29T01:15:00Z"),
        // Autumn: 01:50 BST, then clocks fall back 02:00 -> 01:00; due at 01:10 GMT.
        ("2026-10-25T00:50:00Z", "2026-10-25T01:10:00Z"),
    ] {
        let mut sim = quiet("2026-03-01T12:00:00Z");
        sim.rules("r1", bed_rule(20));
        sim.set_time(left_bed);
        sim.send(bed(SensorState::BedEmpty));
        assert_eq!(sim.engine.next_deadline(), Some(utc(due)), "{left_bed}");
        sim.set_time(due);
        assert_eq!(
            changed_alerts(&sim.tick())[0].kind,
            AlertKind::BedNotReturned,
            "{left_bed}"
        );
    }
}
