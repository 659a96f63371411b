//! KPI arithmetic on alerts with known answer times, including alerts raised before the
//! period, alerts still open at its end, cancellations and offline alerts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use gateway::domain::{Alert, AlertId, AlertKind, AlertState, Change, Outcome, Priority, Timestamp, Transition};
use gateway::reports::kpi::kpi;

const FROM: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

/// An alert raised at `raised` (ms after FROM), acknowledged `ack` ms later, resolved with
/// `outcome` if given.
fn alert(
    id: u64,
    kind: AlertKind,
    priority: Priority,
    raised: i64,
    ack: Option<i64>,
    outcome: Option<Outcome>,
) -> Alert {
    let raised_at = Timestamp(FROM + raised);
    let mut transitions = vec![Transition {
        at: raised_at,
        change: Change::Raised { event: None },
    }];
    if let Some(ack) = ack {
        transitions.push(Transition {
            at: raised_at.plus_ms(ack),
            change: Change::Acknowledged {
                operator: "olive".into(),
            },
        });
    }
    let state = match (outcome, ack) {
        (Some(outcome), _) => {
            transitions.push(Transition {
                at: raised_at.plus_ms(ack.unwrap_or(0) + 600_000),
                change: Change::Resolved {
                    operator: Some("olive".into()),
                    outcome,
                    note: None,
                },
            });
            AlertState::Resolved
        }
        (None, Some(_)) => AlertState::Acknowledged,
        (None, None) => AlertState::Raised,
    };
    Alert {
        id: AlertId(id),
        kind,
        priority,
        state,
        resident: None,
        device: None,
        unregistered_device: false,
        raised_at,
        late_by_ms: None,
        escalation_level: 0,
        transitions,
        affected_devices: Vec::new(),
    }
}

#[test]
fn answer_times_targets_and_percentiles() {
    use AlertKind::{DeviceOffline, Fall, LowBattery, PendantPress, Smoke};
    use Priority::{LifeSafety, Technical, Wellbeing};
    let period_end = FROM + 30 * DAY;
    let mut alerts = vec![
        // Raised before the period: not in it, whatever happened.
        alert(
            1,
            PendantPress,
            LifeSafety,
            -1000,
            Some(500_000),
            Some(Outcome::FalseAlarm),
        ),
        // Ten calls answered in 10..100 s (10 s steps): 6 within 60 s, all within 180 s.
        // One answered at 200 s. One cancelled by the resident before any answer.
        alert(
            20,
            Fall,
            LifeSafety,
            5 * DAY,
            Some(200_000),
            Some(Outcome::AmbulanceCalled),
        ),
        alert(
            21,
            PendantPress,
            LifeSafety,
            6 * DAY,
            None,
            Some(Outcome::CancelledByResident),
        ),
        // A technical alert: not a call; an offline alert closed after 2 h.
        alert(
            30,
            LowBattery,
            Technical,
            7 * DAY,
            Some(1_000_000),
            Some(Outcome::MaintenanceRequested),
        ),
        alert(31, DeviceOffline, Technical, 8 * DAY, None, None),
        // Merged duplicate: bookkeeping, not a call.
        alert(
            40,
            Smoke,
            LifeSafety,
            9 * DAY,
            Some(5_000),
            Some(Outcome::DuplicateOrMerged),
        ),
        // Still waiting at the end of the period: 120 s (past 60, not yet 180) and 10 s.
        alert(50, PendantPress, LifeSafety, 30 * DAY - 120_000, None, None),
        alert(51, PendantPress, Wellbeing, 30 * DAY - 10_000, None, None),
        // Raised exactly at the period's end: the next period's.
        alert(60, PendantPress, LifeSafety, 30 * DAY, Some(1), None),
    ];
    for i in 0..10 {
        let answer = (i + 1) * 10_000;
        alerts.push(alert(
            100 + i as u64,
            PendantPress,
            LifeSafety,
            DAY + i * 1000,
            Some(answer),
            Some(Outcome::FalseAlarm),
        ));
    }
    // The offline alert came back after 2 hours.
    let offline = alerts.iter_mut().find(|a| a.id == AlertId(31)).unwrap();
    offline.state = AlertState::Resolved;
    offline.transitions.push(Transition {
        at: offline.raised_at.plus_ms(7_200_000),
        change: Change::Resolved {
            operator: None,
            outcome: Outcome::AutoCleared,
            note: None,
        },
    });
    let report = kpi(&alerts, Timestamp(FROM), Timestamp(period_end), Timestamp(period_end));
    // In the period: 20 21 30 31 40 50 51 and the ten = 17.
    assert_eq!(report.alerts, 17);
    // Calls: 20 21 50 51 + ten = 14 (30/31 technical, 40 merged).
    let a = &report.answer;
    assert_eq!(
        (a.calls, a.answered, a.closed_unanswered, a.still_unanswered),
        (14, 11, 1, 2)
    );
    // 60 s: answered 11, of which 6 within (10..60 s); plus #50 waiting 120 s counts as a miss;
    // #51 (10 s) could still make it: left out. 6 / 12.
    assert_eq!((a.within_60s.met, a.within_60s.counted), (6, 12));
    assert_eq!(a.within_60s.achieved(), Some(false));
    // 180 s: 10 of 11 answered within (the 200 s one is not); #50 and #51 still could: 10 / 11.
    assert_eq!((a.within_180s.met, a.within_180s.counted), (10, 11));
    // Answer times sorted: 10..100 s and 200 s; median (6th of 11) 60 s; p95 (11th) 200 s.
    assert_eq!(a.median_ms, Some(60_000));
    assert_eq!(a.p95_ms, Some(200_000));
    assert_eq!(report.resident_cancellations, 1);
    assert_eq!(report.by_outcome["false_alarm"], 10);
    assert_eq!(report.by_outcome["duplicate_or_merged"], 1);
    assert_eq!(report.by_priority["life_safety"], 14);
    assert_eq!(report.by_priority["technical"], 2);
    assert_eq!(report.by_kind["pendant_press"], 13);
    assert_eq!(report.no_comms.device_offline, 1);
    assert_eq!(report.no_comms.median_ms, Some(7_200_000));
    assert_eq!(report.no_comms.still_open, 0);
    // Made a day later, #51 has waited past both targets.
    let later = kpi(
        &alerts,
        Timestamp(FROM),
        Timestamp(period_end),
        Timestamp(period_end + DAY),
    );
    assert_eq!(later.answer.within_180s.counted, 13);
    assert_eq!(later.answer.within_60s.counted, 13);
}

#[test]
fn an_empty_period_has_no_shares() {
    let report = kpi(&[], Timestamp(FROM), Timestamp(FROM + DAY), Timestamp(FROM + DAY));
    assert_eq!(report.alerts, 0);
    assert_eq!(report.answer.within_60s.share(), None);
    assert_eq!(report.answer.within_60s.achieved(), None);
    assert_eq!(report.answer.median_ms, None);
}
