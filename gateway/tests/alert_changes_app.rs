#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The alert-change log through the real gateway (`app::spawn`, no broker needed): changes
//! made through the client reach the live stream with their seq, the seq continues after a
//! restart on the same data directory, and a client that remembered a seq reads every change
//! since from the store, none missing, none repeated.

mod ingest_support;
mod store_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use gateway::alerts::EngineError;
use gateway::app::{self, GatewayHandle};
use gateway::config::{BrokerUrl, Config};
use gateway::domain::*;
use gateway::store::*;
use gateway::writer::OperatorError;
use protocol::DeviceId;
use tokio::sync::broadcast;

/// A clock the test moves by hand, so no engine timer (escalation) fires behind its back.
#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn config(data: &std::path::Path) -> Config {
    let mut config = Config::default();
    // Nothing listens there: the gateway retries in the background and works without it.
    config.mqtt.broker = BrokerUrl::parse(&format!("mqtt://127.0.0.1:{}", ingest_support::free_port())).unwrap();
    config.data_dir = data.to_owned();
    config.http = "127.0.0.1:0".parse().unwrap();
    store_support::place(&mut config);
    config
}

async fn start(data: &std::path::Path, clock: &Arc<TestClock>) -> GatewayHandle {
    let clock: Arc<dyn Clock> = clock.clone();
    app::spawn(config(data), clock).await.unwrap()
}

fn raised(id: u64, kind: AlertKind, device: &str) -> Alert {
    Alert {
        id: AlertId(id),
        kind,
        priority: kind.priority(),
        state: AlertState::Raised,
        resident: Some(ResidentId::new(format!("R{id}")).unwrap()),
        device: Some(DeviceId::new(device).unwrap()),
        unregistered_device: false,
        raised_at: Timestamp(START),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: vec![Transition {
            at: Timestamp(START),
            change: Change::Raised { event: None },
        }],
    }
}

/// Raised alerts as ingest would have left them (alert and its change in one transaction).
fn seed(data: &std::path::Path) {
    store_support::seed_offline(data, |seed| {
        for alert in [
            raised(1, AlertKind::PendantPress, "pnd-1"),
            raised(2, AlertKind::Fall, "fall-2"),
            raised(3, AlertKind::Inactivity, "bed-3"),
        ] {
            seed.alert(&alert);
        }
    });
}

/// Everything the live stream has delivered so far (the client's reply comes after the
/// broadcast, so a change made by an awaited action is already there).
fn drain(stream: &mut broadcast::Receiver<AlertChange>, into: &mut Vec<AlertChange>) {
    while let Ok(change) = stream.try_recv() {
        into.push(change);
    }
}

fn changes(found: AlertChangesSince) -> AlertChangePage {
    match found {
        AlertChangesSince::Changes(page) => page,
        other => panic!("expected changes, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_remembered_a_seq_misses_nothing_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    seed(data.path());
    let clock = Arc::new(TestClock(AtomicI64::new(START + 1_000)));
    let mut streamed = Vec::new();

    // First run.
    let gateway = start(data.path(), &clock).await;
    assert_eq!(gateway.reads().unwrap().last_alert_change_seq().unwrap(), 3);
    let mut stream = gateway.subscribe_alerts();
    gateway.acknowledge(AlertId(1), "op-1").await.unwrap();
    drain(&mut stream, &mut streamed);
    let remembered = streamed.last().unwrap().seq;
    assert_eq!(remembered, 4, "the seq goes on from the seeded changes");

    clock.0.fetch_add(1_000, Ordering::SeqCst);
    gateway.add_note(AlertId(2), "op-1", "rang twice").await.unwrap();
    // Refused for want of a note: nothing is committed, no seq is used.
    let refused = gateway
        .resolve(AlertId(2), "op-1", Outcome::NoVoiceContactNoVisit, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            OperatorError::Engine(EngineError::NoteRequired(Outcome::NoVoiceContactNoVisit))
        ),
        "{refused}"
    );
    gateway
        .resolve(AlertId(1), "op-1", Outcome::AmbulanceCalled, Some("ref 4471".into()))
        .await
        .unwrap();
    drain(&mut stream, &mut streamed);
    let last_of_first_run = streamed.last().unwrap().seq;
    assert_eq!(last_of_first_run, 6);
    gateway.shutdown().await.unwrap();

    // Second run on the same data: the sequence continues. The clock stays under the first
    // life-safety escalation target (60 s after the seeded raise): past it, the engine's tick
    // could escalate the unacknowledged fall before the test resolves it, a change of its own.
    clock.0.fetch_add(30_000, Ordering::SeqCst);
    let gateway = start(data.path(), &clock).await;
    let mut stream = gateway.subscribe_alerts();
    gateway.acknowledge(AlertId(3), "op-2").await.unwrap();
    gateway
        .resolve(
            AlertId(2),
            "op-2",
            Outcome::NoVoiceContactNoVisit,
            Some("key safe code wrong; police asked to attend".into()),
        )
        .await
        .unwrap();
    gateway
        .resolve(AlertId(3), "op-2", Outcome::FalseAlarm, None)
        .await
        .unwrap();
    drain(&mut stream, &mut streamed);
    assert_eq!(
        streamed.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8, 9],
        "{streamed:#?}"
    );

    // The client that saw `remembered` reads the rest from the store: exactly what the live
    // streams carried after it, the same alerts, in order, across the restart.
    let page = changes(gateway.alert_changes_since(remembered, 100).unwrap());
    let after: Vec<AlertChange> = streamed.iter().filter(|c| c.seq > remembered).cloned().collect();
    assert_eq!(page.changes, after);
    assert_eq!((page.next_after, page.last_seq), (9, 9));
    assert!(page.unreadable.is_empty());
    let resolved = &page.changes.last().unwrap().alert;
    assert_eq!(
        (resolved.id, resolved.outcome()),
        (AlertId(3), Some(Outcome::FalseAlarm))
    );

    // Paging one change at a time gives the same, with no gap or repeat.
    let mut after_seq = remembered;
    let mut one_by_one = Vec::new();
    loop {
        let page = changes(gateway.alert_changes_since(after_seq, 1).unwrap());
        if page.changes.is_empty() {
            break;
        }
        after_seq = page.next_after;
        one_by_one.extend(page.changes);
    }
    assert_eq!(one_by_one, after);

    // A seq from nowhere is told to reload.
    assert_eq!(
        gateway.alert_changes_since(1_000, 10).unwrap(),
        AlertChangesSince::Ahead { last_seq: 9 }
    );

    // The alert list through the client: the open queue is now empty, the resolved are there.
    let open = gateway
        .alert_page(&AlertQuery {
            state: Some(AlertStateFilter::Open),
            limit: 10,
            ..AlertQuery::default()
        })
        .unwrap();
    assert!(open.alerts.is_empty());
    let resolved = gateway
        .alert_page(&AlertQuery {
            state: Some(AlertStateFilter::Resolved),
            order: AlertOrder::Id,
            limit: 10,
            ..AlertQuery::default()
        })
        .unwrap();
    assert_eq!(
        resolved.alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
        [AlertId(1), AlertId(2), AlertId(3)]
    );
    assert_eq!(gateway.alert(AlertId(2)).unwrap().unwrap().transitions.len(), 3);
    assert_eq!(gateway.alert(AlertId(42)).unwrap(), None);
    gateway.shutdown().await.unwrap();
}
