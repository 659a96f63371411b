//! Alert engine: a restart. An engine rebuilt from what the store kept (open alerts and the
//! engine's state entries) behaves exactly like one that never stopped, whatever the
//! moment of the restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::{AlertEngine, Effect, EngineConfig, EngineError, ResidentRules};
use gateway::domain::{AlertId, AlertKind, DeviceKind, Outcome, Timestamp};
use jiff::civil::time;
use protocol::{AlarmKind, SensorState};

#[derive(Debug, Clone)]
enum Step {
    At(&'static str),
    Advance(i64),
    Send(Ev),
    Presence(&'static str, bool),
    KeyConflict(&'static str),
    Tick,
    Rules(&'static str, ResidentRules),
    Ack(u64),
    Note(u64, &'static str),
    Resolve(u64, Outcome),
}

fn scenario() -> Vec<Step> {
    use Step::*;
    let rules = ResidentRules {
        bed_return_within_min: Some(20),
        movement_expected_by: Some(time(10, 0, 0, 0)),
    };
    let pendant = |body| Ev::new("pnd-1", body).of("r1");
    vec![
        At("2026-01-15T21:00:00Z"),
        Rules("r1", rules),
        Send(pendant(heartbeat(90, 60))),
        Send(Ev::new("hub-1", heartbeat(15, 3_600)).of("r1").kind(DeviceKind::Hub)),
        Advance(30 * SECOND),
        Send(
            Ev::new("fall-1", alarm(AlarmKind::Fall))
                .of("r1")
                .kind(DeviceKind::FallDetector),
        ),
        Send(pendant(alarm(AlarmKind::PendantPress)).seq(100)),
        Advance(20 * SECOND),
        Tick,
        Send(pendant(cancel(100))),
        KeyConflict("hub-1"),
        Advance(45 * SECOND),
        KeyConflict("hub-1"),
        Tick,
        Presence("pnd-1", false),
        Advance(60 * SECOND),
        Send(pendant(heartbeat(90, 60))),
        Ack(2),
        Note(2, "warden called"),
        At("2026-01-15T23:00:00Z"),
        Send(
            Ev::new("bed-1", sensor(SensorState::BedEmpty))
                .of("r1")
                .kind(DeviceKind::BedSensor),
        ),
        Tick,
        Advance(10 * MINUTE),
        Tick,
        Advance(10 * MINUTE),
        Tick,
        Send(Ev::new("hub-1", heartbeat(50, 3_600)).of("r1").kind(DeviceKind::Hub)),
        Resolve(2, Outcome::ResponderAttended),
        At("2026-01-16T08:00:00Z"),
        Send(
            Ev::new("pir-1", sensor(SensorState::Motion))
                .of("r1")
                .kind(DeviceKind::MotionSensor),
        ),
        // A cancel that arrives before its alarm, and one whose alarm never comes.
        Send(pendant(cancel(200)).seq(201)),
        Advance(5 * SECOND),
        Tick,
        Send(pendant(alarm(AlarmKind::PendantPress)).seq(200)),
        Send(pendant(cancel(300)).seq(301)),
        Advance(30 * SECOND),
        Tick,
        Advance(30 * SECOND),
        Tick,
        At("2026-01-16T10:00:00Z"),
        Tick,
        At("2026-01-17T10:00:00Z"),
        Tick,
        Send(
            Ev::new("fall-1", heartbeat(70, 300))
                .of("r1")
                .kind(DeviceKind::FallDetector),
        ),
        Advance(HOUR),
        Tick,
    ]
}

type Outcomes = Result<Vec<Effect>, EngineError>;

fn run(sim: &mut Sim, step: &Step) -> Outcomes {
    let now = sim.now;
    let result = match step {
        Step::At(text) => {
            sim.set_time(text);
            Ok(Vec::new())
        }
        Step::Advance(ms) => {
            sim.advance(*ms);
            Ok(Vec::new())
        }
        Step::Send(ev) => {
            let (input, _) = sim.input(ev.clone());
            Ok(sim.engine.handle(input, now))
        }
        Step::Presence(device, online) => {
            let input = gateway::alerts::EngineInput::Presence {
                device: dev(device),
                resident: None,
                online: *online,
                boot: None,
                at: now,
            };
            Ok(sim.engine.handle(input, now))
        }
        Step::KeyConflict(device) => {
            let input = gateway::alerts::EngineInput::KeyConflict {
                device: dev(device),
                resident: None,
                detail: "came online with a lower boot".to_owned(),
            };
            Ok(sim.engine.handle(input, now))
        }
        Step::Tick => Ok(sim.engine.tick(now)),
        Step::Rules(resident, rules) => Ok(sim.engine.set_resident_rules(res(resident), rules.clone(), now)),
        Step::Ack(id) => sim.engine.acknowledge(AlertId(*id), "op-1", now),
        Step::Note(id, text) => sim.engine.add_note(AlertId(*id), "op-1", text, now),
        Step::Resolve(id, outcome) => sim.engine.resolve(AlertId(*id), "op-1", *outcome, None, now),
    };
    result.map(|effects| sim.absorb(effects))
}

/// What an observer sees after each step: the effects, and when the engine wants to wake.
fn observe(sim: &mut Sim, steps: &[Step]) -> Vec<(Outcomes, Option<Timestamp>)> {
    steps
        .iter()
        .map(|step| {
            let outcome = run(sim, step);
            (outcome, sim.engine.next_deadline())
        })
        .collect()
}

fn start() -> Sim {
    Sim::new(EngineConfig::default(), utc("2026-01-15T20:00:00Z"))
}

#[test]
fn the_scenario_exercises_every_rule() {
    let mut sim = start();
    observe(&mut sim, &scenario());
    let kinds: Vec<AlertKind> = sim.alerts.values().map(|a| a.kind).collect();
    for kind in [
        AlertKind::LowBattery,
        AlertKind::Fall,
        AlertKind::PendantPress,
        AlertKind::DeviceOffline,
        AlertKind::BedNotReturned,
        AlertKind::NoMovementByTime,
        AlertKind::KeyConflict,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} missing from {kinds:?}");
    }
    let outcomes: Vec<Option<Outcome>> = sim.alerts.values().map(|a| a.outcome()).collect();
    for outcome in [
        Outcome::CancelledByResident,
        Outcome::AutoCleared,
        Outcome::ResponderAttended,
    ] {
        assert!(
            outcomes.contains(&Some(outcome)),
            "{outcome:?} missing from {outcomes:?}"
        );
    }
    assert!(sim.alerts.values().any(|a| a.escalation_level > 0));
    let cancelled_early = sim.alerts.values().any(|a| {
        a.transitions.iter().any(|t| {
            matches!(&t.change, gateway::domain::Change::Resolved { outcome: Outcome::CancelledByResident, note: Some(note), .. }
                if note.contains("before its alarm"))
        })
    });
    assert!(cancelled_early, "a cancel held for its alarm");
    assert!(
        !sim.state.keys().any(|k| k.starts_with("cancel/")),
        "the unused hold expired"
    );
}

#[test]
fn a_restored_engine_behaves_exactly_like_one_that_never_stopped() {
    let steps = scenario();
    let mut uninterrupted = start();
    let expected = observe(&mut uninterrupted, &steps);
    for split in 0..=steps.len() {
        let mut sim = start();
        observe(&mut sim, &steps[..split]);
        // The restart: only what the store holds survives.
        sim.engine = sim.restored(sim.now);
        sim.absorb(Vec::new());
        let rest = observe(&mut sim, &steps[split..]);
        for (offset, (got, want)) in rest.iter().zip(&expected[split..]).enumerate() {
            assert_eq!(
                got,
                want,
                "restart before step {split}, step {} ({:?})",
                split + offset,
                steps[split + offset]
            );
        }
        assert_eq!(sim.open(), uninterrupted.open(), "restart before step {split}");
        assert_eq!(sim.alerts, uninterrupted.alerts, "restart before step {split}");
        assert_eq!(
            sim.state, uninterrupted.state,
            "restart before step {split}: persisted state differs"
        );
        assert_eq!(sim.engine.next_alert_id(), uninterrupted.engine.next_alert_id());
    }
}

/// A flood: an incident, a folded and an acknowledged offline alert, an alarm during it,
/// recoveries, the settle time, and the devices still silent alerted one by one.
fn flood_scenario() -> Vec<Step> {
    use Step::*;
    const DEVICES: [&str; 6] = ["fl-0", "fl-1", "fl-2", "fl-3", "fl-4", "fl-5"];
    let mut steps = vec![At("2026-01-15T12:00:00Z")];
    for (n, device) in DEVICES.iter().enumerate() {
        let resident = ["r0", "r1", "r2", "r3", "r4", "r5"][n];
        steps.push(Send(Ev::new(device, heartbeat(90, 3_600)).of(resident)));
    }
    steps.extend([
        Presence("fl-0", false),
        Ack(1),
        Advance(2 * SECOND),
        Presence("fl-1", false),
        Advance(2 * SECOND),
        Presence("fl-2", false),
        Advance(2 * SECOND),
        Presence("fl-3", false),
        Presence("fl-4", false),
        Send(Ev::new("fl-5", alarm(AlarmKind::PendantPress)).of("r5")),
        Advance(MINUTE),
        Presence("fl-0", true),
        Presence("fl-1", true),
        Presence("fl-2", true),
        Tick,
        Advance(2 * MINUTE),
        Tick,
        Advance(3 * MINUTE),
        Tick,
        Advance(HOUR),
        Presence("fl-3", true),
        Tick,
    ]);
    steps
}

fn flood_config() -> EngineConfig {
    EngineConfig {
        flood_threshold: 3,
        flood_window_s: 60,
        flood_settle_s: 300,
        ..EngineConfig::default()
    }
}

#[test]
fn the_flood_scenario_raises_an_incident_and_ends_it() {
    let mut sim = Sim::new(flood_config(), utc("2026-01-15T12:00:00Z"));
    observe(&mut sim, &flood_scenario());
    let incidents: Vec<_> = sim
        .alerts
        .values()
        .filter(|a| a.kind == AlertKind::InfrastructureIncident)
        .collect();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].affected_devices.len(), 5);
    assert_eq!(incidents[0].outcome(), Some(Outcome::AutoCleared));
    let outcomes: Vec<Option<Outcome>> = sim.alerts.values().map(|a| a.outcome()).collect();
    assert!(outcomes.contains(&Some(Outcome::GroupedIntoIncident)));
    let alone_after = sim
        .alerts
        .values()
        .filter(|a| a.kind == AlertKind::DeviceOffline && a.raised_at > incidents[0].raised_at)
        .count();
    assert_eq!(alone_after, 2, "fl-3 and fl-4 still silent when it ended");
    assert!(sim.alerts.values().any(|a| a.kind == AlertKind::PendantPress));
}

#[test]
fn a_restart_anywhere_in_a_flood_is_invisible() {
    let steps = flood_scenario();
    let start = || Sim::new(flood_config(), utc("2026-01-15T12:00:00Z"));
    let mut uninterrupted = start();
    let expected = observe(&mut uninterrupted, &steps);
    for split in 0..=steps.len() {
        let mut sim = start();
        observe(&mut sim, &steps[..split]);
        sim.engine = sim.restored(sim.now);
        sim.absorb(Vec::new());
        let rest = observe(&mut sim, &steps[split..]);
        for (offset, (got, want)) in rest.iter().zip(&expected[split..]).enumerate() {
            assert_eq!(got, want, "restart before step {split}, step {}", split + offset);
        }
        assert_eq!(sim.alerts, uninterrupted.alerts, "restart before step {split}");
        assert_eq!(sim.state, uninterrupted.state, "restart before step {split}");
    }
}

#[test]
fn restore_takes_the_highest_next_alert_id_it_can_see() {
    let mut sim = start();
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim.send(Ev::new("smk-1", alarm(AlarmKind::Smoke)).of("r1"));
    sim.resolve(AlertId(2), Outcome::FalseAlarm);
    let open: Vec<_> = sim.open();
    let state: Vec<(String, Vec<u8>)> = sim.state.clone().into_iter().collect();
    // The store's own counter lags: the engine's persisted counter wins.
    let engine = AlertEngine::restore(EngineConfig::default(), AlertId(1), open.clone(), state, sim.now).unwrap();
    assert_eq!(engine.next_alert_id(), AlertId(3));
    // Without engine state, the open alerts still keep ids unique.
    let engine = AlertEngine::restore(EngineConfig::default(), AlertId(1), open, Vec::new(), sim.now).unwrap();
    assert_eq!(engine.next_alert_id(), AlertId(2));
}

#[test]
fn restore_refuses_unreadable_state_and_skips_unknown_keys() {
    let now = utc("2026-01-15T20:00:00Z");
    let bad = vec![("dev/pnd-1".to_owned(), b"{not json".to_vec())];
    match AlertEngine::restore(EngineConfig::default(), AlertId(1), Vec::new(), bad, now) {
        Err(EngineError::CorruptState { key, .. }) => assert_eq!(key, "dev/pnd-1"),
        other => panic!("expected CorruptState, got {other:?}"),
    }
    let unknown = vec![("from-the-future/x".to_owned(), b"1".to_vec())];
    let engine = AlertEngine::restore(EngineConfig::default(), AlertId(1), Vec::new(), unknown, now).unwrap();
    assert_eq!(engine.next_deadline(), None);
}

#[test]
fn restore_drops_alarm_records_of_alerts_that_are_no_longer_open() {
    let mut sim = start();
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    assert!(sim.state.contains_key("alarms/1"));
    // The alert was resolved elsewhere (e.g. by a crash between commits): not open any more.
    let state: Vec<(String, Vec<u8>)> = sim.state.clone().into_iter().collect();
    let mut engine = AlertEngine::restore(EngineConfig::default(), AlertId(2), Vec::new(), state, sim.now).unwrap();
    assert!(engine.take_state_changes().contains(&("alarms/1".to_owned(), None)));
}

mod random {
    use super::*;
    use proptest::prelude::*;

    fn device() -> impl Strategy<Value = (&'static str, Option<&'static str>, DeviceKind)> {
        prop_oneof![
            Just(("pnd-1", Some("r1"), DeviceKind::Pendant)),
            Just(("pnd-2", Some("r1"), DeviceKind::Pendant)),
            Just(("door-1", Some("r2"), DeviceKind::DoorSensor)),
            Just(("bed-1", Some("r2"), DeviceKind::BedSensor)),
            Just(("hub-1", None, DeviceKind::Hub)),
        ]
    }

    fn body() -> impl Strategy<Value = gateway::domain::EventBody> {
        prop_oneof![
            Just(alarm(AlarmKind::PendantPress)),
            Just(alarm(AlarmKind::Fall)),
            Just(alarm(AlarmKind::MainsPowerLost)),
            Just(alarm(AlarmKind::MainsPowerRestored)),
            Just(alarm(AlarmKind::LowBattery {
                millivolts: 2_000,
                percent: 5
            })),
            (0u32..6).prop_map(cancel),
            (
                prop_oneof![Just(10u8), Just(25), Just(60)],
                prop_oneof![Just(0u32), Just(60)]
            )
                .prop_map(|(percent, interval)| heartbeat(percent, interval)),
            Just(sensor(SensorState::BedEmpty)),
            Just(sensor(SensorState::BedOccupied)),
            Just(sensor(SensorState::DoorOpen)),
            Just(sensor(SensorState::Motion)),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (device(), body(), 0i64..120_000).prop_map(|((id, resident, kind), body, delay)| {
                let mut ev = Ev::new(id, body).kind(kind).delayed(delay);
                ev.resident = resident.map(res);
                Step::Send(ev)
            }),
            1 => (device(), any::<bool>()).prop_map(|((id, _, _), online)| Step::Presence(id, online)),
            1 => device().prop_map(|(id, _, _)| Step::KeyConflict(id)),
            // Alarms and cancels with their own seqs, so a cancel may come first.
            1 => (0u32..3, any::<bool>(), 0i64..90_000).prop_map(|(n, is_cancel, delay)| {
                let alarm_seq = 1_000 + 2 * n;
                let ev = if is_cancel {
                    Ev::new("pnd-3", cancel(alarm_seq)).seq(alarm_seq + 1)
                } else {
                    Ev::new("pnd-3", alarm(AlarmKind::PendantPress)).seq(alarm_seq)
                };
                Step::Send(ev.of("r3").delayed(delay))
            }),
            3 => (0i64..3 * HOUR).prop_map(Step::Advance),
            3 => Just(Step::Tick),
            1 => (1u64..8).prop_map(Step::Ack),
            1 => (1u64..8).prop_map(|id| Step::Note(id, "called")),
            1 => (1u64..8).prop_map(|id| Step::Resolve(id, Outcome::FalseAlarm)),
            1 => (prop::option::of(1u32..40), prop::option::of(6i8..12)).prop_map(|(bed, by)| Step::Rules(
                "r2",
                ResidentRules { bed_return_within_min: bed, movement_expected_by: by.map(|h| time(h, 0, 0, 0)) }
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Any history, restarted anywhere, continues exactly as if it had not stopped.
        #[test]
        fn restart_anywhere_is_invisible(steps in prop::collection::vec(step(), 1..60), split in any::<prop::sample::Index>()) {
            let split = split.index(steps.len() + 1);
            // Around the spring DST change, so night and day arithmetic crosses it.
            // A low flood threshold, so some histories raise an infrastructure incident.
            let config = EngineConfig { flood_threshold: 3, ..EngineConfig::default() };
            let start = || Sim::new(config.clone(), utc("2026-03-28T20:00:00Z"));
            let mut uninterrupted = start();
            let expected = observe(&mut uninterrupted, &steps);
            let mut sim = start();
            observe(&mut sim, &steps[..split]);
            sim.engine = sim.restored(sim.now);
            sim.absorb(Vec::new());
            let rest = observe(&mut sim, &steps[split..]);
            prop_assert_eq!(&rest[..], &expected[split..]);
            prop_assert_eq!(&sim.alerts, &uninterrupted.alerts);
            prop_assert_eq!(&sim.state, &uninterrupted.state);
            // And the invariant merging promises: one open alert per kind and subject.
            let mut seen = std::collections::HashSet::new();
            for alert in uninterrupted.open().into_iter().filter(|a| a.kind != AlertKind::InfrastructureIncident) {
                let subject = (alert.kind, alert.resident.clone(), if alert.resident.is_some() { None } else { alert.device });
                let per_device = matches!(alert.kind, AlertKind::MainsPowerLost | AlertKind::LowBattery | AlertKind::DeviceOffline | AlertKind::Tamper | AlertKind::KeyConflict);
                let subject = if per_device { (alert.kind, None, alert.device) } else { subject };
                prop_assert!(seen.insert(subject), "two open alerts for one subject: {:?}", uninterrupted.open());
            }
        }
    }
}
