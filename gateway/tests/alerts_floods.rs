//! Alert engine: many devices losing contact at once become one infrastructure incident;
//! a single device still alerts at once, alarms are never grouped, and every device still
//! silent when the incident ends gets its own alert.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::EngineConfig;
use gateway::domain::{Alert, AlertId, AlertKind, AlertState, Change, Outcome, Priority};
use protocol::AlarmKind;

const NOON: &str = "2026-01-15T12:00:00Z";
const THRESHOLD: usize = 4;

fn config() -> EngineConfig {
    EngineConfig {
        flood_threshold: THRESHOLD as u32,
        flood_window_s: 120,
        flood_settle_s: 300,
        ..EngineConfig::default()
    }
}

fn device(n: usize) -> String {
    format!("pnd-{n}")
}

/// `count` devices heard from (one resident each, hourly heartbeats), none offline yet.
fn fleet(count: usize) -> Sim {
    let mut sim = Sim::new(config(), utc(NOON));
    for n in 0..count {
        sim.send(Ev::new(&device(n), heartbeat(90, 3_600)).of(&format!("r{n}")));
    }
    sim
}

/// The broker reports these devices' connections lost, a few seconds apart.
fn lose(sim: &mut Sim, devices: std::ops::Range<usize>) {
    for n in devices {
        sim.advance(2 * SECOND);
        sim.presence(&device(n), false);
    }
}

fn incident(sim: &Sim) -> Alert {
    let open = sim.open_of(AlertKind::InfrastructureIncident);
    assert_eq!(open.len(), 1, "expected one open incident: {:#?}", sim.open());
    open.into_iter().next().unwrap()
}

fn silent(alert: &Alert) -> Vec<String> {
    alert
        .affected_devices
        .iter()
        .filter(|member| member.back_at.is_none())
        .map(|member| member.device.to_string())
        .collect()
}

fn offline_alert_of(sim: &Sim, n: usize) -> Option<Alert> {
    sim.open_of(AlertKind::DeviceOffline)
        .into_iter()
        .find(|alert| alert.device == Some(dev(&device(n))))
}

#[test]
fn a_single_device_going_quiet_still_alerts_at_once() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..1);
    let alert = sim.only_open();
    assert_eq!(alert.kind, AlertKind::DeviceOffline);
    assert_eq!(alert.device, Some(dev("pnd-0")));
}

#[test]
fn a_flood_becomes_one_incident_naming_every_device_and_resident() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..THRESHOLD - 1);
    assert_eq!(
        sim.open_of(AlertKind::DeviceOffline).len(),
        THRESHOLD - 1,
        "the first few alone"
    );
    lose(&mut sim, THRESHOLD - 1..8);
    assert!(sim.open_of(AlertKind::DeviceOffline).is_empty(), "{:#?}", sim.open());
    let alert = incident(&sim);
    assert_eq!(alert.priority, Priority::Technical);
    assert_eq!((alert.device, alert.resident.clone()), (None, None));
    assert_eq!(silent(&alert), (0..8).map(device).collect::<Vec<_>>());
    let residents: Vec<String> = alert
        .affected_devices
        .iter()
        .map(|m| m.resident.clone().unwrap().to_string())
        .collect();
    assert_eq!(residents, (0..8).map(|n| format!("r{n}")).collect::<Vec<_>>());
    assert!(matches!(&alert.transitions[1].change, Change::Note { operator, text }
        if operator == "gateway" && text.contains("4 devices lost contact")));
    // The individual alerts of the window were folded in, saying where they went.
    for id in 1..=3 {
        let folded = &sim.alerts[&AlertId(id)];
        assert_eq!(folded.kind, AlertKind::DeviceOffline);
        assert_eq!(folded.outcome(), Some(Outcome::GroupedIntoIncident));
        assert!(matches!(last_change(folded), Change::Resolved { note: Some(note), .. }
            if note.contains(&alert.id.to_string())));
    }
}

#[test]
fn an_acknowledged_offline_alert_is_not_folded_away() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..1);
    let first = sim.only_open();
    sim.ack(first.id);
    lose(&mut sim, 1..THRESHOLD);
    let kept = sim.engine.alert(first.id).unwrap().clone();
    assert_eq!(kept.state, AlertState::Acknowledged);
    assert!(matches!(last_change(&kept), Change::Note { text, .. } if text.contains("infrastructure incident")));
    assert!(
        silent(&incident(&sim)).contains(&device(0)),
        "the incident still lists it"
    );
}

#[test]
fn devices_coming_back_are_marked_and_all_back_clears_the_incident() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..6);
    let id = incident(&sim).id;
    sim.advance(MINUTE);
    let effects = sim.send(Ev::new(&device(2), heartbeat(90, 3_600)).of("r2")).1;
    assert_eq!(changed_alerts(&effects).len(), 1, "one write for the incident");
    let alert = incident(&sim);
    let back = alert
        .affected_devices
        .iter()
        .find(|m| m.device == dev("pnd-2"))
        .unwrap();
    assert_eq!(back.back_at, Some(sim.now));
    assert_eq!(silent(&alert).len(), 5);
    for n in [0, 1, 3, 4, 5] {
        sim.presence(&device(n), true);
    }
    assert!(sim.open().is_empty(), "{:#?}", sim.open());
    let closed = &sim.alerts[&id];
    assert_eq!(closed.outcome(), Some(Outcome::AutoCleared));
    assert!(closed.affected_devices.iter().all(|m| m.back_at.is_some()));
}

#[test]
fn devices_still_silent_when_the_incident_ends_get_their_own_alerts() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..6);
    let id = incident(&sim).id;
    sim.advance(MINUTE);
    for n in 0..3 {
        sim.presence(&device(n), true);
    }
    // Three silent, under the threshold: the incident waits for the recovery to settle.
    let settle_at = sim.now.plus_ms(300 * SECOND);
    assert_eq!(sim.engine.next_deadline(), Some(settle_at));
    sim.advance(100 * SECOND);
    sim.presence(&device(3), true);
    assert_eq!(
        sim.engine.next_deadline(),
        Some(sim.now.plus_ms(300 * SECOND)),
        "a recovery restarts it"
    );
    sim.advance(300 * SECOND);
    let effects = sim.tick();
    let raised: Vec<Alert> = changed_alerts(&effects)
        .into_iter()
        .filter(|a| a.kind == AlertKind::DeviceOffline)
        .collect();
    assert_eq!(raised.len(), 2);
    for n in [4, 5] {
        let own = offline_alert_of(&sim, n).unwrap();
        assert!(matches!(&own.transitions[1].change, Change::Note { text, .. }
            if text.contains(&format!("still silent after infrastructure incident {id}"))));
    }
    assert_eq!(sim.alerts[&id].outcome(), Some(Outcome::AutoCleared));
    assert!(sim.open_of(AlertKind::InfrastructureIncident).is_empty());
}

#[test]
fn an_alarm_during_the_incident_still_raises() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..6);
    // From a device the incident does not cover, and from one it does (which is then back).
    let (_, effects) = sim.send(Ev::new("pnd-8", alarm(AlarmKind::PendantPress)).of("r8"));
    assert!(
        changed_alerts(&effects)
            .iter()
            .any(|a| a.kind == AlertKind::PendantPress)
    );
    let (_, effects) = sim.send(Ev::new("pnd-1", alarm(AlarmKind::Fall)).of("r1"));
    assert!(changed_alerts(&effects).iter().any(|a| a.kind == AlertKind::Fall));
    assert_eq!(sim.open_of(AlertKind::PendantPress).len(), 1);
    assert_eq!(sim.open_of(AlertKind::Fall).len(), 1);
    assert!(!silent(&incident(&sim)).contains(&device(1)));
}

#[test]
fn a_device_failing_after_the_flood_stopped_alerts_on_its_own() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..6);
    sim.advance(10 * MINUTE);
    lose(&mut sim, 9..10);
    assert!(offline_alert_of(&sim, 9).is_some(), "not hidden in the old incident");
    assert!(!silent(&incident(&sim)).contains(&device(9)));
}

#[test]
fn devices_joining_while_the_flood_goes_on_raise_nothing_of_their_own() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..THRESHOLD);
    let effects = {
        sim.advance(2 * SECOND);
        sim.presence(&device(THRESHOLD), false)
    };
    let changed = changed_alerts(&effects);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].kind, AlertKind::InfrastructureIncident);
    assert_eq!(silent(&changed[0]).len(), THRESHOLD + 1);
}

#[test]
fn an_operator_resolving_the_incident_leaves_no_silent_device_without_an_alert() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..5);
    let id = incident(&sim).id;
    sim.presence(&device(0), true);
    sim.resolve(id, Outcome::MaintenanceRequested);
    assert_eq!(sim.alerts[&id].outcome(), Some(Outcome::MaintenanceRequested));
    for n in 1..5 {
        assert!(offline_alert_of(&sim, n).is_some(), "pnd-{n}");
    }
    assert!(offline_alert_of(&sim, 0).is_none());
    // A later flood is a new incident.
    lose(&mut sim, 5..10);
    assert_ne!(incident(&sim).id, id);
}

#[test]
fn an_acknowledged_incident_that_ends_is_left_to_its_operator() {
    let mut sim = fleet(10);
    lose(&mut sim, 0..5);
    let id = incident(&sim).id;
    sim.ack(id);
    for n in 0..5 {
        sim.presence(&device(n), true);
    }
    let alert = sim.engine.alert(id).unwrap().clone();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert!(matches!(last_change(&alert), Change::Note { text, .. } if text.contains("incident over")));
    // It no longer takes devices: a new flood opens its own incident.
    lose(&mut sim, 5..10);
    assert_eq!(sim.open_of(AlertKind::InfrastructureIncident).len(), 2);
}

#[test]
fn grouping_can_be_switched_off() {
    let mut sim = Sim::new(
        EngineConfig {
            flood_threshold: 0,
            ..config()
        },
        utc(NOON),
    );
    for n in 0..8 {
        sim.send(Ev::new(&device(n), heartbeat(90, 60)));
    }
    lose(&mut sim, 0..8);
    assert_eq!(sim.open_of(AlertKind::DeviceOffline).len(), 8);
    assert!(sim.open_of(AlertKind::InfrastructureIncident).is_empty());
}

#[test]
fn silence_timers_firing_together_group_as_well_as_last_wills() {
    let mut sim = fleet(10);
    // Nothing heard from anyone (power cut): every timer fires in one tick.
    sim.advance(3 * HOUR);
    let effects = sim.tick();
    let alert = incident(&sim);
    assert_eq!(silent(&alert).len(), 10);
    assert!(sim.open_of(AlertKind::DeviceOffline).is_empty());
    let incident_writes = changed_alerts(&effects)
        .iter()
        .filter(|a| a.kind == AlertKind::InfrastructureIncident)
        .count();
    assert_eq!(incident_writes, 2, "raised, then its list once");
}
