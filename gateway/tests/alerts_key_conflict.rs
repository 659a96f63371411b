//! Alert engine: a device that reused an event key gets a technical alert a human closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::domain::{AlertKind, AlertState, Change, Outcome, Priority};
use protocol::AlarmKind;

const NOON: &str = "2026-01-15T12:00:00Z";
const DETAIL: &str = "event pnd-1/3/17 arrived again with different content";

#[test]
fn a_key_conflict_raises_a_technical_alert_for_the_device_explaining_itself() {
    let mut sim = Sim::default_at(NOON);
    let effects = sim.key_conflict("pnd-1", Some("r1"), DETAIL);
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::KeyConflict);
    assert_eq!(alert.priority, Priority::Technical);
    assert_eq!(alert.state, AlertState::Raised);
    assert_eq!(alert.device, Some(dev("pnd-1")));
    assert_eq!(alert.resident, Some(res("r1")));
    assert_eq!(alert.transitions[0].change, Change::Raised { event: None });
    assert_eq!(
        alert.transitions[1].change,
        Change::Note {
            operator: "gateway".to_owned(),
            text: DETAIL.to_owned()
        }
    );
    assert!(downlinks(&effects).is_empty(), "nothing to tell the device");
    assert_eq!(sim.open(), vec![alert]);
}

#[test]
fn a_repeat_joins_the_open_alert_with_its_detail() {
    let mut sim = Sim::default_at(NOON);
    sim.key_conflict("pnd-1", Some("r1"), DETAIL);
    sim.advance(MINUTE);
    let effects = sim.key_conflict("pnd-1", Some("r1"), "came online with boot 2 after boot 5");
    let alert = sim.only_open();
    assert_eq!(changed_alerts(&effects), vec![alert.clone()]);
    assert!(matches!(last_change(&alert), Change::Note { operator, text }
        if operator == "gateway" && text.contains("boot 2 after boot 5")));
}

#[test]
fn conflicts_stay_per_device_even_for_one_resident() {
    let mut sim = Sim::default_at(NOON);
    sim.key_conflict("pnd-1", Some("r1"), DETAIL);
    sim.key_conflict(
        "hub-1",
        Some("r1"),
        "event hub-1/1/2 arrived again with different content",
    );
    assert_eq!(sim.open_of(AlertKind::KeyConflict).len(), 2);
}

#[test]
fn nothing_the_device_does_closes_it_only_a_human() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)).of("r1"));
    sim.key_conflict("pnd-1", Some("r1"), DETAIL);
    sim.presence("pnd-1", false);
    sim.presence("pnd-1", true);
    sim.send(Ev::new("pnd-1", heartbeat(95, 60)).of("r1"));
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::MainsPowerRestored)).of("r1"));
    sim.advance(2 * 86_400 * SECOND);
    sim.tick();
    let alert = sim
        .open_of(AlertKind::KeyConflict)
        .pop()
        .expect("still open after the device came back and days passed");
    assert!(alert.escalation_level > 0, "it escalates like any technical alert");
    sim.resolve(alert.id, Outcome::MaintenanceRequested);
    assert!(sim.open_of(AlertKind::KeyConflict).is_empty());
    // A later conflict is a new alert.
    sim.key_conflict("pnd-1", Some("r1"), DETAIL);
    assert_ne!(sim.open_of(AlertKind::KeyConflict)[0].id, alert.id);
}

#[test]
fn an_unregistered_device_conflict_is_flagged_and_an_empty_detail_still_explains() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-7", heartbeat(90, 60)).unregistered());
    let alert = changed_alerts(&sim.key_conflict("pnd-7", None, "  ")).pop().unwrap();
    assert!(alert.unregistered_device);
    assert_eq!(alert.resident, None);
    assert!(matches!(&alert.transitions[1].change, Change::Note { text, .. } if text.contains("reused")));
}
