//! Alert engine: operator actions, their errors, and escalation against answer-time targets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::{EngineConfig, EngineError, EscalationPolicy};
use gateway::domain::{AlertId, AlertKind, AlertState, Change, DeviceKind, Outcome, Priority, Transition};
use protocol::{AlarmKind, DownlinkBody, SensorState};

const NOON: &str = "2026-01-15T12:00:00Z";

fn pressed() -> Sim {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim
}

#[test]
fn acknowledge_records_operator_and_answer_time_and_tells_the_device() {
    let mut sim = pressed();
    sim.advance(42 * SECOND);
    let effects = sim.engine.acknowledge(AlertId(1), "op-7", sim.now).unwrap();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert_eq!(
        last_change(&alert),
        &Change::Acknowledged {
            operator: "op-7".into()
        }
    );
    assert_eq!(alert.acknowledged_at(), Some(sim.now));
    assert_eq!(alert.answer_time_ms(), Some(42 * SECOND));
    assert_eq!(
        downlinks(&effects),
        vec![(dev("pnd-1"), DownlinkBody::HelpOnTheWay { alert_ref: 1 })]
    );
}

#[test]
fn help_on_the_way_is_repeated_when_the_device_comes_back_online() {
    let mut sim = pressed();
    sim.advance(10 * SECOND);
    // Before acknowledgement there is nothing to repeat.
    assert!(downlinks(&sim.presence("pnd-1", true)).is_empty());
    sim.ack(AlertId(1));
    sim.presence("pnd-1", false);
    sim.advance(30 * SECOND);
    assert_eq!(
        downlinks(&sim.presence("pnd-1", true)),
        vec![(dev("pnd-1"), DownlinkBody::HelpOnTheWay { alert_ref: 1 })]
    );
    // Another device of the same resident raised nothing: it hears nothing.
    assert!(downlinks(&sim.presence("pnd-2", true)).is_empty());
    sim.resolve(AlertId(1), Outcome::ResponderAttended);
    assert!(downlinks(&sim.presence("pnd-1", true)).is_empty());
}

#[test]
fn every_device_whose_alarm_joined_hears_once() {
    let mut sim = pressed();
    sim.send(Ev::new("cord-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    let effects = sim.ack(AlertId(1));
    assert_eq!(
        downlinks(&effects),
        vec![
            (dev("pnd-1"), DownlinkBody::HelpOnTheWay { alert_ref: 1 }),
            (dev("cord-1"), DownlinkBody::HelpOnTheWay { alert_ref: 1 })
        ]
    );
    let effects = sim.resolve(AlertId(1), Outcome::ResponderAttended);
    assert_eq!(downlinks(&effects).len(), 2);
    assert!(
        downlinks(&effects)
            .iter()
            .all(|(_, body)| *body == DownlinkBody::AlertResolved { alert_ref: 1 })
    );
}

#[test]
fn acknowledge_only_from_raised() {
    let mut sim = pressed();
    sim.ack(AlertId(1));
    assert_eq!(
        sim.engine.acknowledge(AlertId(1), "op-8", sim.now),
        Err(EngineError::InvalidTransition {
            alert: AlertId(1),
            from: AlertState::Acknowledged,
            action: "acknowledge"
        })
    );
    sim.resolve(AlertId(1), Outcome::FalseAlarm);
    assert_eq!(
        sim.engine.acknowledge(AlertId(1), "op-8", sim.now),
        Err(EngineError::AlreadyResolved(AlertId(1)))
    );
    assert_eq!(
        sim.engine.acknowledge(AlertId(2), "op-8", sim.now),
        Err(EngineError::UnknownAlert(AlertId(2)))
    );
}

#[test]
fn operator_names_are_required_and_automatic_names_reserved() {
    let mut sim = pressed();
    let now = sim.now;
    assert_eq!(
        sim.engine.acknowledge(AlertId(1), " ", now),
        Err(EngineError::MissingOperator)
    );
    assert_eq!(
        sim.engine.acknowledge(AlertId(1), "gateway", now),
        Err(EngineError::ReservedOperator("gateway".into()))
    );
    assert_eq!(
        sim.engine.add_note(AlertId(1), "Resident", "x", now),
        Err(EngineError::ReservedOperator("Resident".into()))
    );
    assert_eq!(
        sim.engine.resolve(AlertId(1), "", Outcome::FalseAlarm, None, now),
        Err(EngineError::MissingOperator)
    );
    assert_eq!(sim.only_open().transitions.len(), 1, "refused actions change nothing");
}

#[test]
fn notes_while_open_in_any_state() {
    let mut sim = pressed();
    let effects = sim
        .engine
        .add_note(AlertId(1), "op-7", "calling the resident", sim.now)
        .unwrap();
    assert_eq!(
        last_change(&changed_alerts(&effects)[0]),
        &Change::Note {
            operator: "op-7".into(),
            text: "calling the resident".into()
        }
    );
    assert!(downlinks(&effects).is_empty());
    sim.ack(AlertId(1));
    sim.engine
        .add_note(AlertId(1), "op-7", "warden on the way", sim.now)
        .unwrap();
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert_eq!(alert.transitions.len(), 4);
}

#[test]
fn note_errors() {
    let mut sim = pressed();
    let now = sim.now;
    assert_eq!(
        sim.engine.add_note(AlertId(1), "op-7", "  ", now),
        Err(EngineError::EmptyNote)
    );
    let long = "x".repeat(gateway::alerts::MAX_NOTE_CHARS + 1);
    assert!(matches!(
        sim.engine.add_note(AlertId(1), "op-7", &long, now),
        Err(EngineError::NoteTooLong { .. })
    ));
    assert_eq!(
        sim.engine.add_note(AlertId(9), "op-7", "x", now),
        Err(EngineError::UnknownAlert(AlertId(9)))
    );
    sim.resolve(AlertId(1), Outcome::TestCall);
    assert_eq!(
        sim.engine.add_note(AlertId(1), "op-7", "x", now),
        Err(EngineError::AlreadyResolved(AlertId(1)))
    );
}

#[test]
fn resolve_from_acknowledged_records_outcome_and_note() {
    let mut sim = pressed();
    sim.advance(30 * SECOND);
    sim.ack(AlertId(1));
    sim.advance(10 * MINUTE);
    let effects = sim
        .engine
        .resolve(
            AlertId(1),
            "op-9",
            Outcome::EmergencyServices,
            Some("ambulance"),
            sim.now,
        )
        .unwrap();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.state, AlertState::Resolved);
    assert_eq!(
        alert.transitions.last().unwrap(),
        &Transition {
            at: sim.now,
            change: Change::Resolved {
                operator: Some("op-9".into()),
                outcome: Outcome::EmergencyServices,
                note: Some("ambulance".into())
            }
        }
    );
    assert_eq!(alert.answer_time_ms(), Some(30 * SECOND));
    assert_eq!(
        downlinks(&effects),
        vec![(dev("pnd-1"), DownlinkBody::AlertResolved { alert_ref: 1 })]
    );
    assert!(sim.open().is_empty());
    assert_eq!(
        sim.engine
            .resolve(AlertId(1), "op-9", Outcome::FalseAlarm, None, sim.now),
        Err(EngineError::AlreadyResolved(AlertId(1)))
    );
}

#[test]
fn resolve_straight_from_raised_has_no_answer_time() {
    let mut sim = pressed();
    let effects = sim
        .engine
        .resolve(AlertId(1), "op-7", Outcome::TestCall, Some(""), sim.now)
        .unwrap();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.outcome(), Some(Outcome::TestCall));
    assert_eq!(alert.answer_time_ms(), None);
    assert!(
        matches!(last_change(&alert), Change::Resolved { note: None, .. }),
        "blank notes are dropped"
    );
}

#[test]
fn life_safety_escalates_at_each_target_once() {
    let mut sim = pressed();
    let raised = sim.now;
    assert_eq!(sim.engine.next_deadline(), Some(raised.plus_ms(60 * SECOND)));
    sim.advance(59_999);
    assert!(sim.tick().is_empty());
    for (level, target_s) in [(1u8, 60i64), (2, 180), (3, 300)] {
        sim.now = raised.plus_ms(target_s * SECOND);
        let effects = sim.tick();
        let alerts = changed_alerts(&effects);
        assert_eq!(alerts.len(), 1, "level {level}");
        assert_eq!(alerts[0].escalation_level, level);
        assert_eq!(
            alerts[0].transitions.last().unwrap(),
            &Transition {
                at: sim.now,
                change: Change::Escalated { level }
            }
        );
        assert!(sim.tick().is_empty(), "once per step");
    }
    // Past the last target, only the pendant's no-comms watch (3 x 300 s) is left.
    assert_eq!(sim.engine.next_deadline(), Some(raised.plus_ms(900 * SECOND)));
}

#[test]
fn a_late_tick_takes_every_passed_step_stamped_when_each_passed() {
    let mut sim = pressed();
    let raised = sim.now;
    sim.advance(200 * SECOND);
    let effects = sim.tick();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(changed_alerts(&effects).len(), 1, "one update per alert");
    assert_eq!(alert.escalation_level, 2);
    let steps: Vec<&Transition> = alert.transitions.iter().skip(1).collect();
    assert_eq!(
        steps,
        vec![
            &Transition {
                at: raised.plus_ms(60 * SECOND),
                change: Change::Escalated { level: 1 }
            },
            &Transition {
                at: raised.plus_ms(180 * SECOND),
                change: Change::Escalated { level: 2 }
            },
        ]
    );
}

#[test]
fn acknowledgement_stops_escalation() {
    let mut sim = pressed();
    sim.advance(70 * SECOND);
    sim.tick();
    sim.ack(AlertId(1));
    sim.advance(10 * MINUTE);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.only_open().escalation_level, 1);
}

#[test]
fn wellbeing_and_technical_alerts_follow_their_own_targets() {
    let mut sim = Sim::default_at(NOON);
    sim.send(
        Ev::new("flood-1", alarm(AlarmKind::Flood))
            .of("r1")
            .kind(DeviceKind::FloodDetector),
    );
    sim.send(
        Ev::new("hub-1", alarm(AlarmKind::Tamper))
            .of("r1")
            .kind(DeviceKind::Hub),
    );
    let start = sim.now;
    let level = |sim: &Sim, kind: AlertKind| sim.open_of(kind)[0].escalation_level;
    sim.now = start.plus_ms(119 * SECOND);
    sim.tick();
    assert_eq!(level(&sim, AlertKind::Flood), 0);
    sim.now = start.plus_ms(120 * SECOND);
    sim.tick();
    assert_eq!(level(&sim, AlertKind::Flood), 1);
    sim.now = start.plus_ms(600 * SECOND);
    sim.tick();
    assert_eq!(level(&sim, AlertKind::Flood), 2);
    assert_eq!(level(&sim, AlertKind::Tamper), 0);
    // Keep the hub talking so only escalation happens.
    sim.now = start.plus_ms(HOUR);
    sim.send(Ev::new("hub-1", heartbeat(90, 3_600)).of("r1").kind(DeviceKind::Hub));
    sim.send(
        Ev::new("flood-1", heartbeat(90, 3_600))
            .of("r1")
            .kind(DeviceKind::FloodDetector),
    );
    sim.tick();
    assert_eq!(level(&sim, AlertKind::Tamper), 1);
    assert_eq!(sim.open_of(AlertKind::Tamper)[0].priority, Priority::Technical);
}

#[test]
fn escalation_policy_is_configurable() {
    let config = EngineConfig {
        escalation: EscalationPolicy {
            life_safety_s: vec![10],
            wellbeing_s: vec![],
            technical_s: vec![],
        },
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, utc(NOON));
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(
        Ev::new("door-1", sensor(SensorState::DoorOpen))
            .of("r1")
            .kind(DeviceKind::DoorSensor),
    );
    sim.advance(10 * SECOND);
    sim.tick();
    assert_eq!(sim.open_of(AlertKind::PendantPress)[0].escalation_level, 1);
}
