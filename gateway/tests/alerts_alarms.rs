//! Alert engine: device alarms, merging, unregistered and unrecognised alarms, lateness,
//! mains power, and the resident's cancel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::{AlertEngine, EngineConfig, EngineInput};
use gateway::domain::{
    AlertId, AlertKind, AlertState, Change, DeviceKind, EventBody, EventKey, Outcome, Priority, StoredEvent,
};
use protocol::{AlarmKind, DownlinkBody};

const NOON: &str = "2026-01-15T12:00:00Z";

#[test]
fn pendant_press_raises_a_life_safety_alert() {
    let mut sim = Sim::default_at(NOON);
    let (key, effects) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    let raised = changed_alerts(&effects);
    assert_eq!(raised.len(), 1);
    let alert = &raised[0];
    assert_eq!(alert.id, AlertId(1));
    assert_eq!(alert.kind, AlertKind::PendantPress);
    assert_eq!(alert.priority, Priority::LifeSafety);
    assert_eq!(alert.state, AlertState::Raised);
    assert_eq!(alert.resident, Some(res("r1")));
    assert_eq!(alert.device, Some(dev("pnd-1")));
    assert!(!alert.unregistered_device);
    assert_eq!(alert.late_by_ms, None);
    assert_eq!(alert.raised_at, utc(NOON));
    assert_eq!(alert.escalation_level, 0);
    assert_eq!(alert.transitions.len(), 1);
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(key) });
    assert!(downlinks(&effects).is_empty(), "feedback waits for an operator");
    assert_eq!(sim.open(), raised);
}

#[test]
fn every_alarm_kind_raises_its_alert_kind_and_priority() {
    let kinds = [
        AlarmKind::PendantPress,
        AlarmKind::Fall,
        AlarmKind::Smoke,
        AlarmKind::Heat,
        AlarmKind::CarbonMonoxide,
        AlarmKind::Flood,
        AlarmKind::TemperatureExtreme { centi_celsius: 4_100 },
        AlarmKind::BedNotReturned,
        AlarmKind::ChairNotReturned,
        AlarmKind::DoorOpenedAtNight,
        AlarmKind::LeavingHome,
        AlarmKind::Inactivity,
        AlarmKind::Seizure,
        AlarmKind::MedicationMissed,
        AlarmKind::Tamper,
        AlarmKind::MainsPowerLost,
        AlarmKind::LowBattery {
            millivolts: 2_100,
            percent: 9,
        },
    ];
    for (n, kind) in kinds.iter().enumerate() {
        let mut sim = Sim::default_at(NOON);
        let device = format!("dev-{n}");
        let (_, effects) = sim.send(Ev::new(&device, alarm(*kind)).of("r1"));
        let expected = AlertKind::for_alarm(kind).unwrap();
        let alert = sim.only_open();
        assert_eq!(alert.kind, expected, "{kind:?}");
        assert_eq!(alert.priority, expected.priority(), "{kind:?}");
        assert_eq!(changed_alerts(&effects).len(), 1);
    }
}

#[test]
fn alert_ids_are_allocated_in_sequence_from_the_given_start() {
    let mut sim = Sim::default_at(NOON);
    sim.engine = AlertEngine::new(EngineConfig::default(), AlertId(500));
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(Ev::new("smk-1", alarm(AlarmKind::Smoke)).of("r1"));
    sim.send(Ev::new("pnd-2", alarm(AlarmKind::PendantPress)).of("r2"));
    let ids: Vec<u64> = sim.open().iter().map(|a| a.id.0).collect();
    assert_eq!(ids, vec![500, 501, 502]);
    assert_eq!(sim.engine.next_alert_id(), AlertId(503));
}

#[test]
fn repeats_of_the_same_kind_from_the_same_resident_join_the_open_alert() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.advance(10 * SECOND);
    // Same resident, another device (pull cord): joins.
    let (cord_key, effects) = sim.send(Ev::new("cord-1", alarm(AlarmKind::PendantPress)).of("r1"));
    let joined = changed_alerts(&effects);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].id, AlertId(1));
    assert_eq!(last_change(&joined[0]), &Change::Joined { event: cord_key });
    assert_eq!(joined[0].transitions[1].at, sim.now);
    // Another kind from the same resident: a new alert.
    sim.send(Ev::new("fall-1", alarm(AlarmKind::Fall)).of("r1"));
    // The same kind from another resident: a new alert.
    sim.send(Ev::new("pnd-9", alarm(AlarmKind::PendantPress)).of("r2"));
    let kinds: Vec<(u64, AlertKind)> = sim.open().iter().map(|a| (a.id.0, a.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, AlertKind::PendantPress),
            (2, AlertKind::Fall),
            (3, AlertKind::PendantPress)
        ]
    );
}

#[test]
fn without_a_resident_repeats_join_per_device() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)));
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)));
    sim.send(Ev::new("pnd-2", alarm(AlarmKind::PendantPress)));
    let open = sim.open();
    assert_eq!(open.len(), 2);
    assert_eq!(last_change(&open[0]), &Change::Joined { event: key });
    assert_eq!(open[1].device, Some(dev("pnd-2")));
}

#[test]
fn a_repeat_joins_an_acknowledged_alert_too() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.ack(AlertId(1));
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert_eq!(last_change(&alert), &Change::Joined { event: key });
    // Once resolved, the next press is a new alert.
    sim.resolve(AlertId(1), Outcome::AdviceGiven);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    assert_eq!(sim.only_open().id, AlertId(2));
}

#[test]
fn device_conditions_stay_per_device_for_one_resident() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerLost)).of("r1"));
    sim.send(Ev::new("smk-1", alarm(AlarmKind::MainsPowerLost)).of("r1"));
    assert_eq!(sim.open_of(AlertKind::MainsPowerLost).len(), 2);
    sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerRestored)).of("r1"));
    let left = sim.open_of(AlertKind::MainsPowerLost);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].device, Some(dev("smk-1")));
}

#[test]
fn an_alarm_from_an_unregistered_device_is_raised_and_flagged() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("stray-1", alarm(AlarmKind::Fall)).unregistered());
    let alert = sim.only_open();
    assert_eq!(alert.kind, AlertKind::Fall);
    assert!(alert.unregistered_device);
    assert_eq!(alert.resident, None);
    assert_eq!(alert.priority, Priority::LifeSafety);
}

#[test]
fn an_unregistered_device_joining_flags_the_alert() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    assert!(!sim.only_open().unregistered_device);
    sim.send(
        Ev::new("stray-1", alarm(AlarmKind::PendantPress))
            .of("r1")
            .unregistered(),
    );
    assert!(sim.only_open().unregistered_device);
}

#[test]
fn an_alarm_this_gateway_cannot_decode_is_a_life_safety_alert() {
    let mut sim = Sim::default_at(NOON);
    let body = EventBody::Unrecognised {
        body_tag: protocol::UPLINK_ALARM_TAG,
        raw: vec![2, 0, 0, 0, 99],
    };
    let (key, _) = sim.send(Ev::new("pnd-1", body).of("r1"));
    let alert = sim.only_open();
    assert_eq!(alert.kind, AlertKind::UnrecognisedAlarm);
    assert_eq!(alert.priority, Priority::LifeSafety);
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(key) });
    // It gets feedback like any alarm.
    let effects = sim.ack(AlertId(1));
    assert_eq!(
        downlinks(&effects),
        vec![(dev("pnd-1"), DownlinkBody::HelpOnTheWay { alert_ref: 1 })]
    );
}

#[test]
fn an_unrecognised_non_alarm_body_raises_nothing() {
    let mut sim = Sim::default_at(NOON);
    let (_, effects) = sim.send(
        Ev::new(
            "pnd-1",
            EventBody::Unrecognised {
                body_tag: 9,
                raw: vec![2, 9],
            },
        )
        .of("r1"),
    );
    assert!(effects.is_empty());
    assert!(sim.open().is_empty());
}

#[test]
fn a_late_alarm_says_how_late() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::Fall)).of("r1").delayed(30_000));
    assert_eq!(sim.only_open().late_by_ms, None, "exactly at the threshold is not late");
    sim.send(Ev::new("pnd-2", alarm(AlarmKind::Smoke)).of("r1").delayed(5 * MINUTE));
    let smoke = sim.open_of(AlertKind::Smoke).pop().unwrap();
    assert_eq!(smoke.late_by_ms, Some(5 * MINUTE));
    // The operators' clock runs from when the gateway had it.
    assert_eq!(smoke.raised_at, sim.now);
}

#[test]
fn device_clock_ahead_of_the_gateway_is_not_late() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::Fall)).of("r1").delayed(-HOUR));
    assert_eq!(sim.only_open().late_by_ms, None);
}

#[test]
fn mains_power_restored_clears_an_unacknowledged_mains_alert() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerLost)).of("r1"));
    sim.advance(10 * MINUTE);
    let (_, effects) = sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerRestored)).of("r1"));
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.state, AlertState::Resolved);
    assert_eq!(alert.outcome(), Some(Outcome::AutoCleared));
    assert!(matches!(last_change(&alert), Change::Resolved { operator: None, .. }));
    assert_eq!(
        downlinks(&effects),
        vec![(dev("hub-1"), DownlinkBody::AlertResolved { alert_ref: 1 })]
    );
    assert!(sim.open().is_empty());
}

#[test]
fn mains_power_restored_only_notes_an_acknowledged_mains_alert() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerLost)).of("r1"));
    sim.ack(AlertId(1));
    sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerRestored)).of("r1"));
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert!(matches!(last_change(&alert), Change::Note { operator, .. } if operator == "gateway"));
}

#[test]
fn mains_power_restored_without_an_alert_does_nothing() {
    let mut sim = Sim::default_at(NOON);
    let (_, effects) = sim.send(Ev::new("hub-1", alarm(AlarmKind::MainsPowerRestored)).of("r1"));
    assert!(effects.is_empty());
}

#[test]
fn a_cancel_within_the_grace_window_resolves_as_cancelled_by_resident() {
    let mut sim = Sim::default_at(NOON);
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.advance(60 * SECOND);
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(key.seq)).of("r1"));
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.state, AlertState::Resolved);
    assert_eq!(
        last_change(&alert),
        &Change::Resolved {
            operator: None,
            outcome: Outcome::CancelledByResident,
            note: None
        }
    );
    assert_eq!(
        downlinks(&effects),
        vec![(dev("pnd-1"), DownlinkBody::AlertResolved { alert_ref: 1 })]
    );
    assert!(sim.open().is_empty());
    // Still recorded: the store has the resolved alert with its whole history.
    assert_eq!(sim.alerts[&AlertId(1)].transitions.len(), 2);
}

#[test]
fn a_cancel_after_the_grace_window_is_noted_and_the_alert_stays_open() {
    let mut sim = Sim::default_at(NOON);
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.advance(61 * SECOND);
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(key.seq)).of("r1"));
    assert!(downlinks(&effects).is_empty());
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Raised);
    match last_change(&alert) {
        Change::Note { operator, text } => {
            assert_eq!(operator, "resident");
            assert!(text.contains("outside the cancel window"), "{text}");
        }
        other => panic!("expected a note, got {other:?}"),
    }
}

#[test]
fn a_cancel_after_acknowledgement_is_noted_and_the_alert_stays_open() {
    let mut sim = Sim::default_at(NOON);
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.advance(20 * SECOND);
    sim.ack(AlertId(1));
    sim.advance(5 * SECOND);
    sim.send(Ev::new("pnd-1", cancel(key.seq)).of("r1"));
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert!(matches!(last_change(&alert), Change::Note { operator, text }
        if operator == "resident" && text.contains("acknowledged")));
}

#[test]
fn a_cancel_judges_the_window_by_the_devices_own_clock() {
    let mut sim = Sim::default_at(NOON);
    // Both arrive after a 10-minute outage; the resident cancelled 20 s after pressing.
    let (key, _) = sim.send(
        Ev::new("pnd-1", alarm(AlarmKind::PendantPress))
            .of("r1")
            .delayed(10 * MINUTE),
    );
    sim.advance(SECOND);
    sim.send(
        Ev::new("pnd-1", cancel(key.seq))
            .of("r1")
            .delayed(10 * MINUTE - 19 * SECOND),
    );
    assert!(sim.open().is_empty());
    assert_eq!(sim.alerts[&AlertId(1)].outcome(), Some(Outcome::CancelledByResident));
}

#[test]
fn a_cancel_from_another_boot_or_for_an_unknown_alarm_is_ignored() {
    let mut sim = Sim::default_at(NOON);
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(key.seq)).of("r1").boot(2));
    assert!(effects.is_empty());
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(999)).of("r1"));
    assert!(effects.is_empty());
    assert_eq!(sim.only_open().state, AlertState::Raised);
}

#[test]
fn a_cancel_does_not_close_an_alert_another_device_also_raised() {
    let mut sim = Sim::default_at(NOON);
    let (key, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(Ev::new("cord-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(Ev::new("pnd-1", cancel(key.seq)).of("r1"));
    let alert = sim.only_open();
    assert!(matches!(last_change(&alert), Change::Note { text, .. } if text.contains("other devices")));
}

#[test]
fn a_cancel_of_a_repeated_press_from_the_same_device_resolves() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.advance(5 * SECOND);
    let (second, _) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.advance(5 * SECOND);
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(second.seq)).of("r1"));
    assert!(sim.open().is_empty());
    // The device hears once, not once per alarm.
    assert_eq!(downlinks(&effects).len(), 1);
}

#[test]
fn raw_engine_api_matches_the_ingest_contract() {
    // The ingest builds inputs itself; check the engine accepts a hand-made one.
    let mut engine = AlertEngine::new(EngineConfig::default(), AlertId(7));
    let now = utc(NOON);
    let event = StoredEvent {
        key: EventKey {
            device: dev("smk-1"),
            boot: 3,
            seq: 12,
        },
        resident: Some(res("r5")),
        received_at: now,
        device_time: None,
        protocol_version: 1,
        body: alarm(AlarmKind::Smoke),
    };
    let effects = engine.handle(
        EngineInput::Event {
            event,
            device_registered: true,
            device_kind: DeviceKind::SmokeDetector,
        },
        now,
    );
    assert_eq!(changed_alerts(&effects)[0].id, AlertId(7));
    let changes = engine.take_state_changes();
    let keys: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["meta/next_alert_id", "dev/smk-1", "alarms/7"]);
    assert!(changes.iter().all(|(_, v)| v.is_some()));
    assert!(engine.take_state_changes().is_empty(), "changes are handed out once");
}

// ----- a cancel that arrives before its alarm -----

fn resolved_cancelled_early(alert: &gateway::domain::Alert) -> bool {
    matches!(last_change(alert), Change::Resolved { operator: None, outcome: Outcome::CancelledByResident, note: Some(note) }
        if note.contains("before its alarm"))
}

fn held_cancels(sim: &Sim) -> Vec<String> {
    sim.state.keys().filter(|k| k.starts_with("cancel/")).cloned().collect()
}

#[test]
fn a_cancel_before_its_alarm_in_one_batch_still_ends_cancelled_by_resident() {
    let mut sim = Sim::default_at(NOON);
    let (cancel_input, _) = sim.input(Ev::new("pnd-1", cancel(4)).of("r1").seq(5));
    let (alarm_input, alarm_key) = sim.input(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1").seq(4));
    let effects = sim.engine.handle_batch([cancel_input, alarm_input], sim.now);
    let effects = sim.absorb(effects);
    assert!(sim.open().is_empty(), "{:#?}", sim.open());
    let alert = &sim.alerts[&AlertId(1)];
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(alarm_key) });
    assert!(resolved_cancelled_early(alert), "{alert:#?}");
    assert_eq!(
        downlinks(&effects),
        vec![(dev("pnd-1"), DownlinkBody::AlertResolved { alert_ref: 1 })]
    );
    assert!(held_cancels(&sim).is_empty(), "the used hold is gone");
}

#[test]
fn a_cancel_in_an_earlier_batch_than_its_alarm_still_cancels_it() {
    let mut sim = Sim::default_at(NOON);
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(0)).of("r1").seq(1));
    assert!(changed_alerts(&effects).is_empty(), "nothing to show yet");
    assert_eq!(held_cancels(&sim), vec!["cancel/pnd-1/1/0".to_owned()]);
    sim.advance(20 * SECOND);
    sim.tick();
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::Fall)).of("r1").seq(0));
    assert!(sim.open().is_empty());
    assert!(resolved_cancelled_early(&sim.alerts[&AlertId(1)]));
    assert!(held_cancels(&sim).is_empty());
}

#[test]
fn an_alarm_after_its_held_cancel_expired_stays_open() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", cancel(0)).of("r1").seq(1));
    assert_eq!(sim.engine.next_deadline(), Some(utc(NOON).plus_ms(60 * SECOND)));
    sim.advance(60 * SECOND);
    sim.tick();
    assert!(held_cancels(&sim).is_empty(), "expired by the timer");
    assert!(
        sim.engine.next_deadline() > Some(sim.now),
        "only the offline timer is left"
    );
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1").seq(0));
    let alert = sim.only_open();
    assert_eq!(alert.transitions.len(), 1, "{alert:#?}");
}

#[test]
fn an_alarm_arriving_after_the_hold_without_a_tick_between_stays_open() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", cancel(0)).of("r1").seq(1));
    sim.advance(61 * SECOND);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1").seq(0));
    assert_eq!(sim.only_open().transitions.len(), 1);
    assert!(held_cancels(&sim).is_empty());
}

#[test]
fn a_held_cancel_made_outside_the_window_by_the_devices_clock_is_noted() {
    let mut sim = Sim::default_at(NOON);
    // The device says it cancelled 90 s after the alarm; both arrive late, cancel first.
    sim.send(
        Ev::new("pnd-1", cancel(0))
            .of("r1")
            .seq(1)
            .delayed(5 * MINUTE - 90 * SECOND),
    );
    sim.advance(SECOND);
    sim.send(
        Ev::new("pnd-1", alarm(AlarmKind::PendantPress))
            .of("r1")
            .seq(0)
            .delayed(5 * MINUTE + SECOND),
    );
    let alert = sim.only_open();
    assert!(
        matches!(last_change(&alert), Change::Note { operator, text }
        if operator == "resident" && text.contains("outside the cancel window") && text.contains("before the alarm")),
        "{alert:#?}"
    );
}

#[test]
fn a_hazard_alarm_is_never_cancelled_from_the_device_in_either_order() {
    for (kind, device_kind) in [
        (AlarmKind::Smoke, DeviceKind::SmokeDetector),
        (AlarmKind::Heat, DeviceKind::HeatDetector),
        (AlarmKind::CarbonMonoxide, DeviceKind::CoDetector),
        (AlarmKind::Flood, DeviceKind::FloodDetector),
    ] {
        // In order.
        let mut sim = Sim::default_at(NOON);
        let (key, _) = sim.send(Ev::new("det-1", alarm(kind)).of("r1").kind(device_kind));
        sim.advance(5 * SECOND);
        sim.send(Ev::new("det-1", cancel(key.seq)).of("r1").kind(device_kind));
        let alert = sim.only_open();
        assert!(
            matches!(last_change(&alert), Change::Note { operator, text }
            if operator == "resident" && text.contains("not cancelled from the device")),
            "{kind:?}: {alert:#?}"
        );
        // Cancel first.
        let mut sim = Sim::default_at(NOON);
        sim.send(Ev::new("det-1", cancel(0)).of("r1").seq(1).kind(device_kind));
        sim.send(Ev::new("det-1", alarm(kind)).of("r1").seq(0).kind(device_kind));
        let alert = sim.only_open();
        assert_eq!(alert.state, AlertState::Raised);
        assert!(
            matches!(last_change(&alert), Change::Note { operator, text }
            if operator == "resident" && text.contains("not cancelled from the device") && text.contains("before the alarm")),
            "{kind:?}: {alert:#?}"
        );
    }
}

#[test]
fn an_alarm_this_gateway_cannot_decode_is_not_cancelled_from_the_device() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-9", cancel(0)).of("r1").seq(1));
    let body = EventBody::Unrecognised {
        body_tag: protocol::UPLINK_ALARM_TAG,
        raw: vec![1, 2, 3],
    };
    sim.send(Ev::new("pnd-9", body).of("r1").seq(0));
    let alert = sim.only_open();
    assert_eq!(alert.kind, AlertKind::UnrecognisedAlarm);
    assert!(matches!(last_change(&alert), Change::Note { operator, .. } if operator == "resident"));
}

#[test]
fn a_held_cancel_does_not_close_an_alert_another_device_also_raised() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("cord-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(Ev::new("pnd-1", cancel(0)).of("r1").seq(1));
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1").seq(0));
    let alert = sim.only_open();
    assert!(matches!(last_change(&alert), Change::Note { text, .. } if text.contains("other devices")));
}

#[test]
fn a_cancel_survives_a_restart_between_it_and_its_alarm() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", cancel(0)).of("r1").seq(1));
    sim.engine = sim.restored(sim.now);
    assert_eq!(sim.engine.next_deadline(), Some(utc(NOON).plus_ms(60 * SECOND)));
    sim.advance(10 * SECOND);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1").seq(0));
    assert!(sim.open().is_empty());
    assert!(resolved_cancelled_early(&sim.alerts[&AlertId(1)]));
}

#[test]
fn a_cancel_naming_a_later_event_is_not_held() {
    let mut sim = Sim::default_at(NOON);
    let (_, effects) = sim.send(Ev::new("pnd-1", cancel(7)).of("r1").seq(7));
    assert!(effects.is_empty());
    sim.send(Ev::new("pnd-1", cancel(u32::MAX)).of("r1").seq(8));
    assert!(held_cancels(&sim).is_empty());
    assert_eq!(
        sim.engine.next_deadline().map(|d| d > utc(NOON).plus_ms(60 * SECOND)),
        Some(true),
        "only the offline timer"
    );
}

#[test]
fn held_cancels_are_capped_per_device_dropping_the_oldest() {
    let mut sim = Sim::default_at(NOON);
    for n in 0..12u32 {
        sim.send(Ev::new("pnd-1", cancel(2 * n)).of("r1").seq(2 * n + 1));
        sim.advance(SECOND);
    }
    sim.send(Ev::new("pnd-2", cancel(0)).of("r2").seq(1));
    let held = held_cancels(&sim);
    assert_eq!(
        held.iter().filter(|k| k.starts_with("cancel/pnd-1/")).count(),
        8,
        "{held:?}"
    );
    assert!(
        held.contains(&"cancel/pnd-2/1/0".to_owned()),
        "another device is not affected"
    );
    assert!(
        !held.contains(&"cancel/pnd-1/1/0".to_owned()),
        "the oldest went first: {held:?}"
    );
    assert!(
        held.contains(&"cancel/pnd-1/1/22".to_owned()),
        "the newest stays: {held:?}"
    );
}
