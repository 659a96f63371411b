//! Alert engine: what the call-handling view records. The late-answer reason beyond the
//! 180-second standard, responder calls, follow-ups at resolution and their completion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::{
    EngineError, LATE_ANSWER_MS, Resolution, complete_follow_up, has_open_follow_up, needs_late_answer_reason,
};
use gateway::domain::{AlertId, AlertState, CallOutcome, Change, DeviceKind, Outcome};
use protocol::AlarmKind;

const NOON: &str = "2026-01-15T12:00:00Z";
const ALERT: AlertId = AlertId(1);

fn pressed() -> Sim {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1"));
    sim
}

fn resolution(outcome: Outcome) -> Resolution {
    Resolution::new(outcome)
}

fn changes_after_raise(sim: &Sim) -> Vec<Change> {
    sim.alerts[&ALERT]
        .transitions
        .iter()
        .skip(1)
        .map(|t| t.change.clone())
        .collect()
}

#[test]
fn a_life_safety_alert_never_acknowledged_past_180_s_needs_a_reason_to_close() {
    let mut sim = pressed();
    sim.advance(LATE_ANSWER_MS + 1);
    let refused = sim
        .engine
        .resolve_with(ALERT, "op-7", &resolution(Outcome::FalseAlarm), sim.now)
        .unwrap_err();
    assert_eq!(
        refused,
        EngineError::LateAnswerReasonRequired {
            alert: ALERT,
            answer_s: 180
        }
    );
    assert!(refused.to_string().contains("reason"), "{refused}");
    // A blank reason is no reason.
    let blank = Resolution {
        exception_reason: Some("   ".into()),
        ..resolution(Outcome::FalseAlarm)
    };
    assert!(matches!(
        sim.engine.resolve_with(ALERT, "op-7", &blank, sim.now),
        Err(EngineError::LateAnswerReasonRequired { .. })
    ));
    assert_eq!(sim.only_open().state, AlertState::Raised, "a refusal changes nothing");
    let given = Resolution {
        exception_reason: Some("two fire alarms came in at once".into()),
        ..resolution(Outcome::FalseAlarm)
    };
    let effects = sim.engine.resolve_with(ALERT, "op-7", &given, sim.now).unwrap();
    sim.absorb(effects);
    assert_eq!(
        changes_after_raise(&sim),
        vec![
            Change::LateAnswerReason {
                operator: "op-7".into(),
                reason: "two fire alarms came in at once".into()
            },
            Change::Resolved {
                operator: Some("op-7".into()),
                outcome: Outcome::FalseAlarm,
                note: None
            },
        ]
    );
}

#[test]
fn the_answer_time_counts_not_the_time_of_closing() {
    let mut sim = pressed();
    sim.advance(LATE_ANSWER_MS);
    sim.ack(ALERT);
    sim.advance(3_600_000);
    // Acknowledged at exactly 180 s: within the standard, however long the call took.
    assert!(!needs_late_answer_reason(&sim.only_open(), sim.now));
    sim.resolve(ALERT, Outcome::AdviceGiven);
    assert!(
        !changes_after_raise(&sim)
            .iter()
            .any(|c| matches!(c, Change::LateAnswerReason { .. }))
    );

    let mut late = pressed();
    late.advance(LATE_ANSWER_MS + 1_000);
    late.ack(ALERT);
    assert!(needs_late_answer_reason(&late.only_open(), late.now));
    assert!(matches!(
        late.engine
            .resolve_with(ALERT, "op-7", &resolution(Outcome::AdviceGiven), late.now),
        Err(EngineError::LateAnswerReasonRequired { answer_s: 181, .. })
    ));
}

#[test]
fn technical_alerts_and_the_gateways_own_closings_need_no_reason() {
    let mut sim = Sim::default_at(NOON);
    sim.send(
        Ev::new("hub-1", alarm(AlarmKind::Tamper))
            .of("r1")
            .kind(DeviceKind::Hub),
    );
    sim.advance(24 * 3_600_000);
    assert!(!needs_late_answer_reason(&sim.only_open(), sim.now));
    sim.resolve(ALERT, Outcome::MaintenanceRequested);
    assert!(sim.open().is_empty());
}

#[test]
fn reason_and_follow_up_texts_follow_the_note_rules() {
    let mut sim = pressed();
    let too_long = "x".repeat(gateway::alerts::MAX_NOTE_CHARS + 1);
    for bad in [
        Resolution {
            exception_reason: Some(too_long.clone()),
            ..resolution(Outcome::FalseAlarm)
        },
        Resolution {
            follow_up: Some(too_long.clone()),
            ..resolution(Outcome::FalseAlarm)
        },
    ] {
        assert!(matches!(
            sim.engine.resolve_with(ALERT, "op-7", &bad, sim.now),
            Err(EngineError::NoteTooLong { .. })
        ));
    }
    assert_eq!(sim.only_open().transitions.len(), 1, "nothing recorded on a refusal");
}

#[test]
fn responder_calls_are_recorded_on_open_alerts_only() {
    let mut sim = pressed();
    sim.advance(30_000);
    let effects = sim
        .engine
        .record_responder_call(ALERT, "op-7", "Dawn (daughter)", CallOutcome::NoAnswer, sim.now)
        .unwrap();
    let changed = changed_alerts(&sim.absorb(effects));
    assert_eq!(
        last_change(&changed[0]),
        &Change::ResponderCalled {
            operator: "op-7".into(),
            responder: "Dawn (daughter)".into(),
            outcome: CallOutcome::NoAnswer
        }
    );
    assert!(matches!(
        sim.engine
            .record_responder_call(ALERT, "resident", "Dawn", CallOutcome::NoAnswer, sim.now),
        Err(EngineError::ReservedOperator(_))
    ));
    assert!(matches!(
        sim.engine
            .record_responder_call(AlertId(9), "op-7", "Dawn", CallOutcome::NoAnswer, sim.now),
        Err(EngineError::UnknownAlert(_))
    ));
    // A restart keeps the call with the alert.
    let restored = sim.restored(sim.now);
    assert!(
        restored
            .alert(ALERT)
            .unwrap()
            .transitions
            .iter()
            .any(|t| matches!(t.change, Change::ResponderCalled { .. }))
    );
    sim.ack(ALERT);
    sim.resolve(ALERT, Outcome::KeyHolderAttended);
    assert_eq!(
        sim.engine
            .record_responder_call(ALERT, "op-7", "Dawn", CallOutcome::WillAttend, sim.now),
        Err(EngineError::AlreadyResolved(ALERT))
    );
}

#[test]
fn a_follow_up_outlives_the_alert_until_done_once() {
    let mut sim = pressed();
    sim.ack(ALERT);
    let with_follow_up = Resolution {
        follow_up: Some("call back at 6pm".into()),
        ..resolution(Outcome::AdviceGiven)
    };
    let effects = sim
        .engine
        .resolve_with(ALERT, "op-7", &with_follow_up, sim.now)
        .unwrap();
    sim.absorb(effects);
    let mut alert = sim.alerts[&ALERT].clone();
    assert!(matches!(
        &alert.transitions[alert.transitions.len() - 2].change,
        Change::FollowUp { text, .. } if text == "call back at 6pm"
    ));
    assert!(has_open_follow_up(&alert));
    // The engine forgets the resolved alert; the stored one is completed directly.
    assert_eq!(
        sim.engine.follow_up_done(ALERT, "op-7", None, sim.now),
        Err(EngineError::AlreadyResolved(ALERT))
    );
    sim.advance(6 * 3_600_000);
    complete_follow_up(&mut alert, "carol", Some("spoke to her, all well"), sim.now).unwrap();
    assert_eq!(
        last_change(&alert),
        &Change::FollowUpDone {
            operator: "carol".into(),
            note: Some("spoke to her, all well".into())
        }
    );
    assert!(!has_open_follow_up(&alert));
    assert_eq!(
        complete_follow_up(&mut alert, "carol", None, sim.now),
        Err(EngineError::NoOpenFollowUp(ALERT))
    );
}

#[test]
fn an_alert_without_a_follow_up_has_none_to_complete() {
    let mut sim = pressed();
    sim.resolve(ALERT, Outcome::FalseAlarm);
    let mut alert = sim.alerts[&ALERT].clone();
    assert_eq!(
        complete_follow_up(&mut alert, "carol", None, sim.now),
        Err(EngineError::NoOpenFollowUp(ALERT))
    );
}
