//! Outcome codes: their stored names never change, docs/outcomes.md lists every one, and the
//! codes that need a note are refused without one (nothing changed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::EngineError;
use gateway::domain::{AlertId, AlertState, Change, KpiClass, Outcome};
use protocol::AlarmKind;

const NOON: &str = "2026-01-15T12:00:00Z";

/// The stored names, in order. Stored alerts and KPI reports depend on them: a change here
/// is a data migration, not a refactor.
const PINNED: [&str; 21] = [
    "cancelled_by_resident",
    "false_alarm",
    "advice_given",
    "responder_attended",
    "emergency_services",
    "maintenance_requested",
    "auto_cleared",
    "test_call",
    "grouped_into_incident",
    "key_holder_attended",
    "mobile_responder_attended",
    "ambulance_called",
    "fire_service_called",
    "police_called",
    "referral_gp",
    "referral_district_nurse",
    "referral_social_care",
    "no_voice_contact_visit_made",
    "no_voice_contact_no_visit",
    "duplicate_or_merged",
    "no_response_escalated",
];

#[test]
fn serde_names_are_pinned_and_read_back() {
    let names: Vec<String> = Outcome::ALL
        .iter()
        .map(|outcome| serde_json::to_value(outcome).unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, PINNED);
    for (outcome, name) in Outcome::ALL.iter().zip(PINNED) {
        let read: Outcome = serde_json::from_value(serde_json::Value::String(name.into())).unwrap();
        assert_eq!(read, *outcome);
    }
    assert!(serde_json::from_str::<Outcome>("\"resident_ok\"").is_err());
}

#[test]
fn docs_list_every_outcome_with_its_note_rule() {
    let docs = include_str!("../../docs/outcomes.md");
    for (outcome, name) in Outcome::ALL.iter().zip(PINNED) {
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/outcomes.md has no row for {name}"));
        let note = if outcome.requires_note() {
            "| required |"
        } else {
            "| optional |"
        };
        assert!(
            row.contains(note),
            "{name}: the docs say otherwise than the code: {row}"
        );
        let kpi = match outcome.kpi_class() {
            KpiClass::Genuine => "| genuine |",
            KpiClass::NonGenuine => "| non-genuine |",
            KpiClass::Technical => "| technical |",
            KpiClass::Excluded => "| excluded |",
        };
        assert!(
            row.contains(kpi),
            "{name}: the docs count it otherwise than the code: {row}"
        );
    }
}

fn pressed() -> Sim {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim
}

#[test]
fn outcomes_that_need_a_note_are_refused_without_one() {
    let required: Vec<Outcome> = Outcome::ALL.into_iter().filter(|o| o.requires_note()).collect();
    assert!(required.contains(&Outcome::NoVoiceContactNoVisit));
    assert!(required.contains(&Outcome::AmbulanceCalled));
    for outcome in required {
        for note in [None, Some(""), Some("   ")] {
            let mut sim = pressed();
            let before = sim.only_open();
            let refused = sim.engine.resolve(AlertId(1), "op-7", outcome, note, sim.now);
            assert_eq!(refused, Err(EngineError::NoteRequired(outcome)), "{outcome:?} {note:?}");
            assert_eq!(sim.only_open(), before, "nothing changed");
        }
        let mut sim = pressed();
        let effects = sim
            .engine
            .resolve(AlertId(1), "op-7", outcome, Some("crew 4471, arrived 12:09"), sim.now)
            .unwrap();
        let alert = changed_alerts(&effects).pop().unwrap();
        assert_eq!(alert.state, AlertState::Resolved);
        assert_eq!(
            last_change(&alert),
            &Change::Resolved {
                operator: Some("op-7".into()),
                outcome,
                note: Some("crew 4471, arrived 12:09".into()),
            }
        );
    }
}

#[test]
fn outcomes_without_the_rule_resolve_without_a_note() {
    for outcome in Outcome::ALL.into_iter().filter(|o| !o.requires_note()) {
        let mut sim = pressed();
        let effects = sim.engine.resolve(AlertId(1), "op-7", outcome, None, sim.now).unwrap();
        let alert = changed_alerts(&effects).pop().unwrap();
        assert_eq!(alert.outcome(), Some(outcome));
    }
}
