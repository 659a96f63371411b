#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The writer's core on both stores: the same publishes ingested through `Core` on redb and
//! on PostgreSQL (a private cluster) give the same receipts, downlinks, alerts and counts,
//! and leave the same events, devices, quarantine, alerts and engine state behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::alerts::{AlertEngine, Effect, EngineConfig, EngineError, Resolution};
use gateway::domain::*;
use gateway::store::postgres::PgStore;
use gateway::store::{
    AlertOrder, AlertPage, AlertQuery, AlertStateFilter, EventFilter, EventPage, EventRead, PgBlocking, ReadStore,
    Store, StoreError, WriteStore,
};
use gateway::writer::{Committed, Core, Received};
use protocol::{
    AlarmKind, DeviceId, DownlinkBody, MAX_STATUS_LEN, MAX_UPLINK_LEN, Presence, StatusMessage, Uplink, UplinkBody,
    UplinkHeader, encode_status, encode_uplink,
};
use testkit::Postgres;

mod seam_support;

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn publish(topic: String, payload: Vec<u8>, at: i64) -> Received {
    Received {
        topic: Bytes::from(topic),
        payload: payload.into(),
        retained: false,
        received_at: Timestamp(at),
    }
}

fn uplink(device: &str, boot: u32, seq: u32, body: UplinkBody, at: i64) -> Received {
    let mut buf = [0u8; MAX_UPLINK_LEN];
    let header = UplinkHeader {
        boot,
        seq,
        device_time_ms: None,
    };
    let bytes = encode_uplink(&Uplink::new(header, body), &mut buf).unwrap().to_vec();
    publish(format!("tec/v1/dev/{device}/up"), bytes, at)
}

fn online(device: &str, boot: u32, at: i64) -> Received {
    let mut buf = [0u8; MAX_STATUS_LEN];
    let bytes = encode_status(&StatusMessage::new(Presence::Online { boot }), &mut buf)
        .unwrap()
        .to_vec();
    publish(format!("tec/v1/dev/{device}/status"), bytes, at)
}

fn press() -> UplinkBody {
    UplinkBody::Alarm(AlarmKind::PendantPress)
}

/// What one commit asks the shell to do, and its counts.
#[derive(Debug, PartialEq)]
struct Asked {
    receipts: Vec<(DeviceId, DownlinkBody)>,
    downlinks: Vec<(DeviceId, DownlinkBody)>,
    alerts: Vec<AlertChange>,
    counts: (u64, u64, u64, u64),
    rejected: Vec<RejectReason>,
}

impl From<Committed> for Asked {
    fn from(out: Committed) -> Self {
        Self {
            receipts: out.receipts,
            downlinks: out.downlinks,
            alerts: out.alerts,
            counts: (out.stored, out.duplicates, out.key_conflicts, out.unregistered),
            rejected: out.rejected,
        }
    }
}

/// pnd-3 is lent to a resident; the others are not in the register.
fn assignment() -> Assignment {
    Assignment {
        device: dev("pnd-3"),
        resident: ResidentId::new("res-1").unwrap(),
        from: Timestamp(0),
        until: None,
    }
}

const KEYS: [(&str, u32, u32); 4] = [("pnd-1", 1, 1), ("pnd-1", 1, 2), ("pnd-2", 1, 1), ("pnd-3", 1, 1)];
const DEVICES: [&str; 3] = ["pnd-1", "pnd-2", "pnd-3"];

/// New events, an in-batch and a redelivered duplicate, a reused key, alarms raising and
/// joining alerts (one with a resident), a presence, and junk quarantined; then a timer tick.
fn scenario<S: WriteStore>(core: &mut Core<S>) -> Vec<Asked> {
    let first = vec![
        online("pnd-2", 1, 1_000),
        uplink("pnd-1", 1, 1, seam_support::heartbeat(10), 1_001),
        uplink("pnd-1", 1, 2, press(), 1_002),
        uplink("pnd-1", 1, 2, press(), 1_003),
        publish("tec/v1/dev/pnd-1/up".into(), b"junk".to_vec(), 1_004),
        uplink("pnd-3", 1, 1, UplinkBody::Alarm(AlarmKind::Fall), 1_005),
    ];
    let second = vec![
        uplink("pnd-1", 1, 2, press(), 3_000),
        // The key of the heartbeat with other content: a reused key.
        uplink("pnd-1", 1, 1, press(), 3_001),
        uplink("pnd-2", 1, 1, seam_support::heartbeat(10), 3_002),
    ];
    let mut outcomes = vec![
        core.ingest(&first, Timestamp(1_010)).unwrap().into(),
        // The whole first batch redelivered: duplicates receipted again, junk kept again.
        core.ingest(&first, Timestamp(2_010)).unwrap().into(),
        core.ingest(&second, Timestamp(3_010)).unwrap().into(),
    ];
    outcomes.push(core.tick(Timestamp(3_600_000)).unwrap().into());
    outcomes
}

/// What a store holds after the scenario.
#[derive(Debug, PartialEq)]
struct Held {
    copies: Vec<Vec<EventRead>>,
    event_count: u64,
    devices: Vec<Option<DeviceRecord>>,
    quarantined: Vec<QuarantineRecord>,
    open_alerts: Vec<Alert>,
    max_alert_id: Option<AlertId>,
    engine_state: Vec<(String, Vec<u8>)>,
    last_alert_change_seq: u64,
}

fn key((device, boot, seq): (&str, u32, u32)) -> EventKey {
    EventKey {
        device: dev(device),
        boot,
        seq,
    }
}

fn held_in_redb(store: &Store) -> Held {
    let mut engine_state = store.engine_state().unwrap();
    engine_state.sort();
    Held {
        copies: KEYS.map(|k| store.event_copies(&key(k)).unwrap()).to_vec(),
        event_count: store.event_count().unwrap(),
        devices: DEVICES.map(|d| store.device(&dev(d)).unwrap()).to_vec(),
        quarantined: store.quarantined(None).unwrap(),
        open_alerts: store.open_alerts().unwrap(),
        max_alert_id: store.max_alert_id().unwrap(),
        engine_state,
        last_alert_change_seq: store.last_alert_change_seq().unwrap(),
    }
}

async fn held_in_postgres(store: &PgStore) -> Held {
    let mut copies = Vec::new();
    for k in KEYS {
        copies.push(store.event_copies(&key(k)).await.unwrap());
    }
    let mut devices = Vec::new();
    for d in DEVICES {
        devices.push(store.device(&dev(d)).await.unwrap());
    }
    let mut engine_state = store.engine_state().await.unwrap();
    engine_state.sort();
    Held {
        copies,
        event_count: store.event_count().await.unwrap(),
        devices,
        quarantined: store.quarantined(None).await.unwrap(),
        open_alerts: store.open_alerts().await.unwrap(),
        max_alert_id: store.max_alert_id().await.unwrap(),
        engine_state,
        last_alert_change_seq: store.last_alert_change_seq().await.unwrap(),
    }
}

fn receipted(outcome: &Asked) -> Vec<(DeviceId, u32, Vec<u32>)> {
    outcome
        .receipts
        .iter()
        .filter_map(|(device, body)| match body {
            DownlinkBody::Receipt { boot, seqs } => Some((*device, *boot, seqs.to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_core_ingests_alike_on_redb_and_postgres() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(Store::open_in_dir(dir.path()).unwrap());
    let mut txn = redb.begin_write().unwrap();
    txn.assign(&assignment()).unwrap();
    txn.commit().unwrap();
    let mut on_redb = Core::open(redb.clone(), EngineConfig::default(), Timestamp(1_000)).unwrap();
    let redb_outcomes = scenario(&mut on_redb);

    let mut pg = seam_support::leading_store(&runtime, &server, "gw-seam", Duration::from_secs(60));
    runtime.block_on(async {
        let mut batch = pg.begin_write().await.unwrap();
        batch.assign(&assignment()).await.unwrap();
        assert!(batch.commit().await.is_committed());
    });
    let writer = PgBlocking::new(pg, runtime.handle().clone());
    let mut on_postgres = Core::open(writer, EngineConfig::default(), Timestamp(1_000)).unwrap();
    let postgres_outcomes = scenario(&mut on_postgres);

    // The scenario did what it says (on redb, today's store), so the comparison means something.
    let [first, again, second, tick] = &redb_outcomes[..] else {
        panic!("{redb_outcomes:?}")
    };
    assert_eq!(
        first.counts,
        (3, 1, 0, 3),
        "stored, duplicates, conflicts, unregistered"
    );
    assert_eq!(first.rejected, [RejectReason::Malformed]);
    assert_eq!(
        receipted(first),
        [(dev("pnd-1"), 1, vec![1, 2]), (dev("pnd-3"), 1, vec![1])]
    );
    let raised: Vec<(AlertKind, Option<&str>)> = first
        .alerts
        .iter()
        .map(|change| (change.kind, change.resident.as_ref().map(ResidentId::as_str)))
        .collect();
    assert_eq!(
        raised,
        [(AlertKind::PendantPress, None), (AlertKind::Fall, Some("res-1"))]
    );
    assert!(
        first
            .downlinks
            .contains(&(dev("pnd-2"), DownlinkBody::TimeSync { unix_ms: 1_010 }))
    );
    assert_eq!(second.counts, (2, 1, 1, 2));
    assert!(second.alerts.iter().any(|change| change.kind == AlertKind::KeyConflict));
    assert!(
        second
            .downlinks
            .contains(&(dev("pnd-1"), DownlinkBody::BootFloor { min_boot: 2 }))
    );
    assert_eq!((again.counts, again.alerts.len()), ((0, 4, 0, 0), 0));
    assert_eq!(receipted(again), receipted(first));
    assert!(!tick.alerts.is_empty(), "an hour's silence raises no-comms alerts");

    assert_eq!(postgres_outcomes, redb_outcomes);
    let in_redb = held_in_redb(&redb);
    let in_postgres = runtime.block_on(held_in_postgres(on_postgres.store().store()));
    assert_eq!(in_redb.copies[0].len(), 2, "the reused key is kept as a second copy");
    assert_eq!(in_redb.quarantined.len(), 2);
    assert_eq!(in_postgres, in_redb);

    // Rebuilt from each store, the engines hold the same open alerts.
    on_redb.restore(Timestamp(3_700_000)).unwrap();
    on_postgres.restore(Timestamp(3_700_000)).unwrap();
    assert_eq!(on_postgres.open_alert_count(), on_redb.open_alert_count());
    assert_eq!(
        on_postgres.engine().open_alerts().cloned().collect::<Vec<_>>(),
        on_redb.engine().open_alerts().cloned().collect::<Vec<_>>()
    );
}

/// Every page of `query`, following the cursor.
fn all_pages(store: &impl ReadStore, mut query: AlertQuery) -> Vec<AlertPage> {
    let mut pages = Vec::new();
    loop {
        let page = store.alert_page(&query).unwrap();
        let next = page.next;
        pages.push(page);
        match next {
            Some(next) => query.after = Some(next),
            None => return pages,
        }
    }
}

/// What the console reads after the scenario: the queue, alert lists paged both ways, and
/// histories by resident, device and time.
#[derive(Debug, PartialEq)]
struct ConsoleView {
    queue: Vec<AlertPage>,
    by_id: Vec<AlertPage>,
    residents_alerts: Vec<AlertPage>,
    resolved: Vec<AlertPage>,
    histories: Vec<EventPage>,
}

fn console_view(store: &impl ReadStore) -> ConsoleView {
    let open = AlertQuery {
        state: Some(AlertStateFilter::Open),
        limit: 2,
        ..AlertQuery::default()
    };
    let res = ResidentId::new("res-1").unwrap();
    let filters = [
        EventFilter::default(),
        EventFilter {
            resident: Some(res.clone()),
            ..EventFilter::default()
        },
        EventFilter {
            device: Some(dev("pnd-1")),
            ..EventFilter::default()
        },
        EventFilter {
            since: Some(Timestamp(1_002)),
            until: Some(Timestamp(3_002)),
            limit: Some(2),
            ..EventFilter::default()
        },
    ];
    ConsoleView {
        queue: all_pages(store, open.clone()),
        by_id: all_pages(
            store,
            AlertQuery {
                order: AlertOrder::Id,
                limit: 1,
                ..AlertQuery::default()
            },
        ),
        residents_alerts: all_pages(
            store,
            AlertQuery {
                resident: Some(res),
                limit: 10,
                ..AlertQuery::default()
            },
        ),
        resolved: all_pages(
            store,
            AlertQuery {
                state: Some(AlertStateFilter::Resolved),
                limit: 10,
                ..AlertQuery::default()
            },
        ),
        histories: filters.iter().map(|filter| store.events(filter).unwrap()).collect(),
    }
}

#[test]
fn the_console_reads_alike_from_redb_and_postgres() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(Store::open_in_dir(dir.path()).unwrap());
    let mut txn = redb.begin_write().unwrap();
    txn.assign(&assignment()).unwrap();
    txn.commit().unwrap();
    let mut on_redb = Core::open(redb.clone(), EngineConfig::default(), Timestamp(1_000)).unwrap();
    scenario(&mut on_redb);

    let mut pg = seam_support::leading_store(&runtime, &server, "gw-seam", Duration::from_secs(60));
    runtime.block_on(async {
        let mut batch = pg.begin_write().await.unwrap();
        batch.assign(&assignment()).await.unwrap();
        assert!(batch.commit().await.is_committed());
    });
    let mut on_postgres = Core::open(
        PgBlocking::new(pg, runtime.handle().clone()),
        EngineConfig::default(),
        Timestamp(1_000),
    )
    .unwrap();
    scenario(&mut on_postgres);
    // One alert resolved (an operator action through the seam), so the lists hold open and
    // closed alerts.
    let resolved_in_redb = Asked::from(on_redb.operator(Timestamp(3_700_000), resolve_oldest).unwrap());
    let resolved_in_postgres = Asked::from(on_postgres.operator(Timestamp(3_700_000), resolve_oldest).unwrap());
    assert_eq!(resolved_in_redb.alerts.len(), 1);
    assert_eq!(resolved_in_postgres, resolved_in_redb);

    let in_redb = console_view(redb.as_ref());
    let in_postgres = console_view(on_postgres.store());
    // The views hold what they should, so the comparison means something.
    assert!(
        in_redb.queue.len() > 1,
        "the open queue spans pages: {:?}",
        in_redb.queue
    );
    assert_eq!(
        in_redb.queue[0].alerts[0].kind,
        AlertKind::Fall,
        "life-safety first, oldest first"
    );
    assert!(in_redb.by_id.len() > 2);
    let residents_kinds: Vec<(AlertKind, Option<&str>)> = in_redb.residents_alerts[0]
        .alerts
        .iter()
        .map(|alert| (alert.kind, alert.resident.as_ref().map(ResidentId::as_str)))
        .collect();
    assert!(
        residents_kinds.contains(&(AlertKind::Fall, Some("res-1")))
            && residents_kinds.iter().all(|(_, resident)| *resident == Some("res-1")),
        "{residents_kinds:?}"
    );
    assert_eq!(in_redb.resolved[0].alerts.len(), 1);
    let counts: Vec<usize> = in_redb.histories.iter().map(|page| page.events.len()).collect();
    assert_eq!(counts, [5, 1, 3, 2]);
    assert_eq!(in_postgres, in_redb);
}

fn resolve_oldest(engine: &mut AlertEngine) -> Result<Vec<Effect>, EngineError> {
    let id = engine.open_alerts().map(|alert| alert.id).min().expect("an open alert");
    let resolution = Resolution {
        exception_reason: Some("test: answered after the hour's tick".into()),
        ..Resolution::new(Outcome::FalseAlarm)
    };
    engine.resolve_with(id, "op-1", &resolution, Timestamp(3_700_000))
}

#[test]
fn a_fenced_postgres_core_commits_nothing_and_says_so() {
    // Another gateway takes the lease once it runs out unrenewed.
    let seam_support::Fenced {
        mut core,
        new,
        taken,
        runtime,
        server: _server,
    } = seam_support::fenced_core(Duration::from_secs(1), Timestamp(1_000), |_| {});
    assert!(taken.epoch > 1, "a takeover raises the epoch");
    let alarm = [uplink("pnd-1", 1, 1, press(), 1_000)];
    match core.ingest(&alarm, Timestamp(1_000)) {
        Err(StoreError::Fenced { current, .. }) => {
            assert_eq!(current.map(|(holder, _)| holder).as_deref(), Some("gw-new"));
        }
        other => panic!("a replaced leader's batch was not fenced: {other:?}"),
    }
    assert_eq!(runtime.block_on(new.event_count()).unwrap(), 0);
    // Without the lease it stays refused: nothing is written or receipted.
    assert!(matches!(
        core.ingest(&alarm, Timestamp(1_000)),
        Err(StoreError::NotLeader)
    ));
}
