#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The PostgreSQL store against a real server (each test starts its own cluster): batches are
//! idempotent with the redb store's duplicate and conflict rules, alerts and the change log
//! commit together, a replaced leader is fenced, and a commit whose end the gateway cannot see
//! is never reported as committed.

use std::time::{Duration, Instant};

use gateway::domain::*;
use gateway::store::postgres::{CommitOutcome, LeaseAttempt, PgError, PgStore, PgStoreOptions};
use gateway::store::{
    AlertChangeRetention, EventFilter, InsertOutcome, NewEvent, PgBlocking, ReadStore, Store, StoreError,
};
use protocol::{AlarmKind, DeviceId, UplinkBody};
use testkit::{Postgres, PostgresOptions};
use tokio_postgres::NoTls;

const LONG_LEASE: Duration = Duration::from_secs(60);

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

/// An event as a device sends it; `body` and `device_time_ms` make the content.
fn event(device: &str, boot: u32, seq: u32, body: UplinkBody, device_time_ms: i64, received_ms: i64) -> NewEvent {
    NewEvent::from_event(StoredEvent {
        key: EventKey {
            device: dev(device),
            boot,
            seq,
        },
        resident: None,
        received_at: Timestamp(received_ms),
        device_time: Some(Timestamp(1_800_000_000_000 + device_time_ms)),
        protocol_version: 1,
        body: EventBody::Uplink(body),
    })
    .unwrap()
}

fn press(device: &str, seq: u32, received_ms: i64) -> NewEvent {
    event(
        device,
        1,
        seq,
        UplinkBody::Alarm(AlarmKind::PendantPress),
        i64::from(seq),
        received_ms,
    )
}

fn config(server: &Postgres) -> tokio_postgres::Config {
    server.connection_string("postgres").parse().unwrap()
}

async fn connect(server: &Postgres, holder: &str, lease_ttl: Duration) -> PgStore {
    PgStore::connect(&config(server), PgStoreOptions::new(holder, lease_ttl))
        .await
        .unwrap()
}

/// A store holding the writer lease.
async fn leader(server: &Postgres, holder: &str, lease_ttl: Duration) -> PgStore {
    let mut store = connect(server, holder, lease_ttl).await;
    match store.acquire_lease().await.unwrap() {
        LeaseAttempt::Acquired(_) => store,
        held => panic!("{holder} could not take the lease: {held:?}"),
    }
}

/// Tries to take the lease until it is taken (the holder's must run out first).
async fn take_over(store: &mut PgStore) -> i64 {
    let started = Instant::now();
    loop {
        match store.acquire_lease().await.unwrap() {
            LeaseAttempt::Acquired(lease) => return lease.epoch,
            LeaseAttempt::HeldBy { .. } if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            held => panic!("the lease never ran out: {held:?}"),
        }
    }
}

async fn insert_and_commit(store: &mut PgStore, events: &[NewEvent]) -> (Vec<InsertOutcome>, CommitOutcome) {
    let mut batch = store.begin_write().await.unwrap();
    let outcomes = batch.insert_events(events).await.unwrap();
    (outcomes, batch.commit().await)
}

#[tokio::test]
async fn a_batch_stored_twice_is_stored_once_and_then_reported_duplicate() {
    let server = Postgres::start().unwrap();
    let mut store = leader(&server, "gw-a", LONG_LEASE).await;
    // The second press arrives twice in one batch (a redelivery).
    let batch = [press("pnd-1", 1, 10), press("pnd-1", 2, 11), press("pnd-1", 2, 12)];
    let (outcomes, committed) = insert_and_commit(&mut store, &batch).await;
    assert_eq!(committed, CommitOutcome::Committed);
    assert_eq!(
        outcomes,
        [
            InsertOutcome::Inserted,
            InsertOutcome::Inserted,
            InsertOutcome::Duplicate
        ]
    );
    let (outcomes, committed) = insert_and_commit(&mut store, &batch).await;
    assert_eq!(committed, CommitOutcome::Committed);
    assert_eq!(outcomes, [InsertOutcome::Duplicate; 3]);
    assert_eq!(store.event_count().await.unwrap(), 2);
    let copies = store.event_copies(&batch[1].event.key).await.unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].event, batch[1].event, "the first arrival is the one kept");
    // Reconnecting finds the schema in place and the events there.
    drop(store);
    let again = connect(&server, "gw-b", LONG_LEASE).await;
    assert_eq!(again.event_count().await.unwrap(), 2);
    assert_eq!(
        server
            .psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM tec_schema_migrations")
            .unwrap(),
        "1,2,3,4,5"
    );
    // A database migrated by a newer gateway is refused, not misread.
    server
        .psql("INSERT INTO tec_schema_migrations (version, description) VALUES (99, 'from the future')")
        .unwrap();
    match PgStore::connect(&config(&server), PgStoreOptions::new("gw-c", LONG_LEASE)).await {
        Err(PgError::SchemaTooNew { found: 99, supported }) => assert!(supported < 99),
        other => panic!("a newer schema was not refused: {other:?}"),
    }
}

/// The same batches through redb and PostgreSQL: the same outcome for every event and the
/// same copies stored, for repeats, reused keys and a device whose boot counter went back.
#[tokio::test]
async fn duplicates_and_conflicts_are_classified_as_the_redb_store_does() {
    let fall = UplinkBody::Alarm(AlarmKind::Fall);
    let batches: Vec<Vec<NewEvent>> = vec![
        vec![press("pnd-1", 1, 10), press("pnd-2", 1, 10)],
        vec![
            // Same key, other content: a conflict, kept as copy 1.
            event("pnd-1", 1, 1, fall.clone(), 1, 20),
            // The original again, after the device was seen reusing keys in this batch: it
            // may be the wiped device's new press, so it is kept too (copy 2).
            press("pnd-1", 1, 21),
            // The conflicting content again: a duplicate of copy 1.
            event("pnd-1", 1, 1, fall.clone(), 1, 22),
            // A third content under the key: copy 3.
            event("pnd-1", 1, 1, fall.clone(), 99, 23),
            press("pnd-3", 7, 24),
        ],
        vec![
            // The device was wiped: an exact copy of an event stored before then is a new event.
            NewEvent {
                boot_reused_since: Some(Timestamp(15)),
                ..press("pnd-2", 1, 30)
            },
            // Once seen in this batch, a conflict flags the device for the rest of it.
            event("pnd-3", 1, 7, fall, 5, 31),
            press("pnd-3", 7, 32),
        ],
    ];
    let dir = tempfile::tempdir().unwrap();
    let redb = Store::open(&dir.path().join("store.redb")).unwrap();
    let server = Postgres::start().unwrap();
    let mut pg = leader(&server, "gw-a", LONG_LEASE).await;
    let mut all_outcomes = Vec::new();
    for batch in &batches {
        let mut txn = redb.begin_write().unwrap();
        let expected = txn.insert_events(batch).unwrap();
        txn.commit().unwrap();
        let (outcomes, committed) = insert_and_commit(&mut pg, batch).await;
        assert_eq!(committed, CommitOutcome::Committed);
        assert_eq!(outcomes, expected);
        all_outcomes.push(outcomes);
    }
    use InsertOutcome::{Conflict, Duplicate, Inserted};
    assert_eq!(
        all_outcomes,
        [
            vec![Inserted, Inserted],
            vec![
                Conflict { copy: 1 },
                Conflict { copy: 2 },
                Duplicate,
                Conflict { copy: 3 },
                Inserted
            ],
            vec![Conflict { copy: 1 }, Conflict { copy: 1 }, Conflict { copy: 2 }],
        ],
        "the cases this test means to cover"
    );
    let mut keys: Vec<EventKey> = batches.iter().flatten().map(|new| new.event.key).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        assert_eq!(
            pg.event_copies(&key).await.unwrap(),
            redb.event_copies(&key).unwrap(),
            "copies of {key}"
        );
    }
    assert_eq!(pg.event_count().await.unwrap(), redb.event_count().unwrap());
    let pnd1_copies = pg.event_copies(&press("pnd-1", 1, 0).event.key).await.unwrap();
    assert_eq!(
        pnd1_copies.iter().map(|read| read.copy).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

fn sample_alert(transitions: usize) -> Alert {
    Alert {
        id: AlertId(4),
        kind: AlertKind::PendantPress,
        priority: Priority::LifeSafety,
        state: AlertState::Raised,
        resident: Some(ResidentId::new("R1").unwrap()),
        device: Some(dev("pnd-1")),
        unregistered_device: false,
        raised_at: Timestamp(1),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: (0..transitions)
            .map(|n| Transition {
                at: Timestamp(n as i64),
                change: Change::Joined {
                    event: press("pnd-1", n as u32, 0).event.key,
                },
            })
            .collect(),
    }
}

#[tokio::test]
async fn an_alert_and_its_change_commit_with_the_events_or_not_at_all() {
    let server = Postgres::start().unwrap();
    let mut store = leader(&server, "gw-a", LONG_LEASE).await;
    let mut batch = store.begin_write().await.unwrap();
    batch.insert_events(&[press("pnd-1", 1, 10)]).await.unwrap();
    batch.put_alert(&sample_alert(2)).await.unwrap();
    let seq = batch.record_alert_change(&sample_alert(2), Timestamp(10)).await;
    assert_eq!(seq.unwrap(), 1);
    batch.put_engine_state("timers", Some(b"v1")).await.unwrap();
    assert_eq!(batch.commit().await, CommitOutcome::Committed);
    assert_eq!(store.alert(AlertId(4)).await.unwrap(), Some(sample_alert(2)));
    assert_eq!(store.last_alert_change_seq().await.unwrap(), 1);
    let timers = [("timers".to_string(), b"v1".to_vec())];
    assert_eq!(store.engine_state().await.unwrap(), timers);

    // A transaction dropped before its commit leaves nothing: no event, no join, no seq, and
    // the engine state as it was.
    let mut batch = store.begin_write().await.unwrap();
    batch.insert_events(&[press("pnd-1", 2, 20)]).await.unwrap();
    batch.put_alert(&sample_alert(3)).await.unwrap();
    let seq = batch.record_alert_change(&sample_alert(3), Timestamp(20)).await;
    assert_eq!(seq.unwrap(), 2);
    batch.put_engine_state("timers", None).await.unwrap();
    drop(batch);
    assert_eq!(store.event_count().await.unwrap(), 1);
    assert_eq!(store.alert(AlertId(4)).await.unwrap(), Some(sample_alert(2)));
    assert_eq!(store.last_alert_change_seq().await.unwrap(), 1);
    assert_eq!(store.engine_state().await.unwrap(), timers);

    // The join committed: one more transition, the next seq.
    let mut batch = store.begin_write().await.unwrap();
    batch.put_alert(&sample_alert(3)).await.unwrap();
    let seq = batch.record_alert_change(&sample_alert(3), Timestamp(30)).await;
    assert_eq!(seq.unwrap(), 2);
    batch.put_engine_state("timers", None).await.unwrap();
    assert_eq!(batch.commit().await, CommitOutcome::Committed);
    assert_eq!(store.alert(AlertId(4)).await.unwrap(), Some(sample_alert(3)));
    assert!(store.engine_state().await.unwrap().is_empty());

    // A failed statement aborts the transaction: its commit is reported rolled back.
    let mut batch = store.begin_write().await.unwrap();
    let mut bad = sample_alert(1);
    bad.id = AlertId(u64::MAX);
    assert!(batch.put_alert(&bad).await.is_err());
    assert!(matches!(batch.commit().await, CommitOutcome::RolledBack { .. }));
    assert_eq!(store.last_alert_change_seq().await.unwrap(), 2);
}

#[tokio::test]
async fn the_change_log_keeps_what_its_retention_says() {
    let server = Postgres::start().unwrap();
    let options = PgStoreOptions {
        alert_change_retention: AlertChangeRetention {
            max_age_ms: 1_000,
            max_count: 3,
        },
        ..PgStoreOptions::new("gw-a", LONG_LEASE)
    };
    let mut store = PgStore::connect(&config(&server), options).await.unwrap();
    assert!(matches!(
        store.acquire_lease().await.unwrap(),
        LeaseAttempt::Acquired(_)
    ));
    let kept = |server: &Postgres| server.psql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM alert_changes");
    for at in 1..=6 {
        let mut batch = store.begin_write().await.unwrap();
        batch
            .record_alert_change(&sample_alert(1), Timestamp(at))
            .await
            .unwrap();
        assert_eq!(batch.commit().await, CommitOutcome::Committed);
    }
    assert_eq!(kept(&server).unwrap(), "4,5,6", "at most max_count");
    // Much later: everything older than max_age goes, except the newest change.
    let mut batch = store.begin_write().await.unwrap();
    batch
        .record_alert_change(&sample_alert(1), Timestamp(60_000))
        .await
        .unwrap();
    assert_eq!(batch.commit().await, CommitOutcome::Committed);
    assert_eq!(kept(&server).unwrap(), "7");
    assert_eq!(store.last_alert_change_seq().await.unwrap(), 7);
}

#[tokio::test]
async fn a_replaced_leader_can_no_longer_write() {
    let server = Postgres::start().unwrap();
    let lease_ttl = Duration::from_secs(1);
    let mut old = leader(&server, "gw-old", lease_ttl).await;
    let old_epoch = old.lease().unwrap().epoch;
    let mut new = connect(&server, "gw-new", lease_ttl).await;
    match new.acquire_lease().await.unwrap() {
        LeaseAttempt::HeldBy { holder, epoch, .. } => assert_eq!((holder.as_str(), epoch), ("gw-old", old_epoch)),
        taken => panic!("took a lease that was held: {taken:?}"),
    }
    assert!(
        matches!(new.begin_write().await, Err(PgError::NotLeader)),
        "a standby does not write"
    );

    // The old leader stops renewing (paused, partitioned); the standby takes over.
    let new_epoch = take_over(&mut new).await;
    assert!(new_epoch > old_epoch);
    let (_, committed) = insert_and_commit(&mut new, &[press("pnd-1", 1, 10)]).await;
    assert_eq!(committed, CommitOutcome::Committed);

    // The old leader wakes up: its write is refused.
    match old.begin_write().await {
        Err(PgError::Fenced { epoch, current }) => {
            assert_eq!(epoch, old_epoch);
            assert_eq!(current, Some(("gw-new".to_string(), new_epoch)));
        }
        other => panic!("the old leader was not fenced: {other:?}"),
    }
    assert!(old.lease().is_none(), "a fenced store forgets its lease");
    assert!(matches!(old.begin_write().await, Err(PgError::NotLeader)));
    assert_eq!(new.event_count().await.unwrap(), 1);

    // A clean handover: the new leader releases, the old one leads again at a newer epoch,
    // stops renewing and is replaced once more; its late renewal is refused.
    new.renew_lease().await.unwrap();
    new.release_lease().await.unwrap();
    assert!(matches!(old.acquire_lease().await.unwrap(), LeaseAttempt::Acquired(lease) if lease.epoch > new_epoch));
    take_over(&mut new).await;
    assert!(matches!(old.renew_lease().await, Err(PgError::Fenced { .. })));
    assert!(old.lease().is_none());
}

#[tokio::test]
async fn a_leader_paused_inside_a_transaction_is_cut_off_and_never_commits() {
    let server = Postgres::start().unwrap();
    let lease_ttl = Duration::from_secs(1);
    let mut old = leader(&server, "gw-old", lease_ttl).await;
    let mut new = connect(&server, "gw-new", lease_ttl).await;
    let mut batch = old.begin_write().await.unwrap();
    batch.insert_events(&[press("pnd-1", 1, 10)]).await.unwrap();
    // Paused here, holding the lease row: the server ends the idle session after a lease's
    // length, which frees the row for the takeover.
    take_over(&mut new).await;
    // Its session is gone: it cannot know what became of the transaction, so it says so.
    let outcome = batch.commit().await;
    assert!(matches!(outcome, CommitOutcome::Unknown { .. }), "{outcome:?}");
    assert_eq!(
        new.event_count().await.unwrap(),
        0,
        "nothing of the old leader's is stored"
    );
}

/// A primary whose commits wait for the synchronous standby `tec_replica`, and that standby.
fn replicated_pair() -> (Postgres, Postgres) {
    let primary = Postgres::start_with(PostgresOptions {
        synchronous_standby_names: Some("tec_replica".into()),
        ..PostgresOptions::default()
    })
    .unwrap();
    let replica = primary
        .start_replica("tec_replica", PostgresOptions::default())
        .unwrap();
    primary.wait_for_standby("tec_replica").unwrap();
    (primary, replica)
}

/// Waits until backend `pid` waits for the synchronous standby, then runs `action` on it
/// (`pg_cancel_backend` or `pg_terminate_backend`) from a connection of its own.
async fn interrupt_when_waiting_for_standby(server: &Postgres, pid: i32, action: &str) {
    let (client, connection) = tokio_postgres::connect(&server.connection_string("postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let started = Instant::now();
    loop {
        let waiting: Option<String> = client
            .query_one("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0);
        if waiting.as_deref() == Some("SyncRep") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the commit never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done: bool = client
        .query_one(&format!("SELECT {action}($1)"), &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(done, "{action} found no backend {pid}");
}

/// Stores `events` while the standby is down and interrupts the waiting commit with
/// `action`; returns what the commit reported. Then brings the standby back.
async fn commit_interrupted(
    primary: &Postgres,
    replica: &mut Postgres,
    store: &mut PgStore,
    events: &[NewEvent],
    action: &str,
) -> CommitOutcome {
    replica.stop().unwrap();
    let pid = store.backend_pid().await.unwrap();
    let mut batch = store.begin_write().await.unwrap();
    batch.insert_events(events).await.unwrap();
    let (outcome, ()) = tokio::join!(batch.commit(), interrupt_when_waiting_for_standby(primary, pid, action));
    replica.start_again().unwrap();
    primary.wait_for_standby("tec_replica").unwrap();
    outcome
}

#[tokio::test]
async fn a_cancelled_wait_for_the_standby_is_an_unknown_outcome_and_the_resend_is_receipted_later() {
    let (primary, mut replica) = replicated_pair();
    let mut store = leader(&primary, "gw-a", LONG_LEASE).await;
    let events = [press("pnd-1", 1, 10), press("pnd-1", 2, 11)];
    let outcome = commit_interrupted(&primary, &mut replica, &mut store, &events, "pg_cancel_backend").await;
    // PostgreSQL answers the cancelled wait with COMMIT and a warning that the transaction
    // committed locally but may not be replicated: not a success.
    match &outcome {
        CommitOutcome::Unknown { reason } => assert!(reason.contains("synchronous replication"), "{reason}"),
        other => panic!("a cancelled standby wait was reported as {other:?}"),
    }
    // The device resends (nothing was receipted): duplicates now, receipted after this commit.
    let (outcomes, committed) = insert_and_commit(&mut store, &events).await;
    assert_eq!(outcomes, [InsertOutcome::Duplicate; 2]);
    assert_eq!(committed, CommitOutcome::Committed);
    assert_eq!(store.event_count().await.unwrap(), 2);
}

#[tokio::test]
async fn a_backend_terminated_during_commit_is_an_unknown_outcome() {
    let (primary, mut replica) = replicated_pair();
    let lease_ttl = Duration::from_secs(2);
    let mut store = leader(&primary, "gw-a", lease_ttl).await;
    let events = [press("pnd-1", 1, 10)];
    let outcome = commit_interrupted(&primary, &mut replica, &mut store, &events, "pg_terminate_backend").await;
    assert!(matches!(outcome, CommitOutcome::Unknown { .. }), "{outcome:?}");
    // The connection is gone; a new one (this gateway restarted) leads after the lease and
    // finds the event a duplicate: it was committed locally before the wait.
    let mut restarted = connect(&primary, "gw-a-restarted", lease_ttl).await;
    take_over(&mut restarted).await;
    let (outcomes, committed) = insert_and_commit(&mut restarted, &events).await;
    assert_eq!(outcomes, [InsertOutcome::Duplicate]);
    assert_eq!(committed, CommitOutcome::Committed);
}

/// What a failover relies on: everything reported committed on the primary is on the
/// synchronous standby, the lease included, so after promotion a new leader finds every
/// event and fences the old epoch.
#[tokio::test]
async fn after_promotion_the_standby_has_every_committed_event_and_the_lease() {
    let (mut primary, mut replica) = replicated_pair();
    let lease_ttl = Duration::from_secs(1);
    let mut old = leader(&primary, "gw-old", lease_ttl).await;
    let old_epoch = old.lease().unwrap().epoch;
    let events: Vec<NewEvent> = (1..=100).map(|seq| press("pnd-1", seq, 10)).collect();
    let (_, committed) = insert_and_commit(&mut old, &events).await;
    assert_eq!(committed, CommitOutcome::Committed);

    primary.stop_immediately().unwrap();
    replica.promote().unwrap();
    let mut new = connect(&replica, "gw-new", lease_ttl).await;
    assert_eq!(
        new.event_count().await.unwrap(),
        100,
        "a committed event is on the standby"
    );
    let new_epoch = take_over(&mut new).await;
    assert!(new_epoch > old_epoch, "the lease's epoch was replicated too");
    let (outcomes, committed) = insert_and_commit(&mut new, &events).await;
    assert_eq!(committed, CommitOutcome::Committed);
    assert!(outcomes.iter().all(|outcome| *outcome == InsertOutcome::Duplicate));
}

/// Not a test of speed (no assertion on it): prints what batched inserts take on this
/// machine, for BENCHMARKS.md. Each batch is one fsync'd commit.
#[tokio::test]
async fn batch_insert_rate_is_printed() {
    let server = Postgres::start().unwrap();
    let mut store = leader(&server, "gw-a", LONG_LEASE).await;
    const BATCHES: u32 = 40;
    const BATCH: u32 = 1024;
    let batches: Vec<Vec<NewEvent>> = (0..BATCHES)
        .map(|b| {
            (0..BATCH)
                .map(|n| press(&format!("pnd-{}", n % 100), b * BATCH + n, i64::from(n)))
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in &batches {
        let (outcomes, committed) = insert_and_commit(&mut store, batch).await;
        assert_eq!(committed, CommitOutcome::Committed);
        assert!(outcomes.iter().all(|outcome| *outcome == InsertOutcome::Inserted));
    }
    let new = started.elapsed();
    let started = Instant::now();
    for batch in &batches {
        let (outcomes, committed) = insert_and_commit(&mut store, batch).await;
        assert_eq!(committed, CommitOutcome::Committed);
        assert!(outcomes.iter().all(|outcome| *outcome == InsertOutcome::Duplicate));
    }
    let redelivered = started.elapsed();
    let events = f64::from(BATCHES * BATCH);
    println!(
        "PostgreSQL batch insert, {BATCHES} batches of {BATCH}: new {:.0} events/s ({:.1} ms/batch), \
         all duplicates {:.0} events/s ({:.1} ms/batch)",
        events / new.as_secs_f64(),
        new.as_secs_f64() * 1000.0 / f64::from(BATCHES),
        events / redelivered.as_secs_f64(),
        redelivered.as_secs_f64() * 1000.0 / f64::from(BATCHES),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_listed_once_and_counted_across_the_process_connections() {
    let server = tokio::task::block_in_place(Postgres::start).unwrap();
    let options = PgStoreOptions::new("gw-a", LONG_LEASE);
    let writer = PgStore::connect(&config(&server), options.clone()).await.unwrap();
    // A second connection of the same process (the readers'), sharing the list.
    let reader = PgBlocking::new(
        PgStore::connect(&config(&server), options.clone()).await.unwrap(),
        tokio::runtime::Handle::current(),
    );
    let damage = "INSERT INTO devices (id, record) VALUES ('pnd-1', '{\"no\": \"device\"}');
         INSERT INTO quarantine (record) VALUES ('\\x00ff'::bytea);
         INSERT INTO events (device, boot, seq, copy, received_at_ms, resident, payload)
             VALUES ('pnd-2', 1, 1, 0, 1000, NULL, '\\x00ff'::bytea);";
    tokio::task::block_in_place(|| server.psql(damage)).unwrap();

    // Lists skip them, single reads name them; each is listed once however often it is met.
    assert_eq!(reader.devices().unwrap(), []);
    assert!(matches!(reader.device(&dev("pnd-1")), Err(StoreError::Unreadable(_))));
    assert!(matches!(reader.device(&dev("pnd-1")), Err(StoreError::Unreadable(_))));
    assert_eq!(reader.quarantined(None).unwrap(), []);
    let page = reader.events(&EventFilter::default()).unwrap();
    assert_eq!((page.events.len(), page.unreadable.len()), (0, 1));
    let mut listed: Vec<(&str, String)> = reader
        .unreadable()
        .into_iter()
        .map(|unreadable| (unreadable.table, unreadable.key))
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        listed.iter().map(|(table, _)| *table).collect::<Vec<_>>(),
        ["devices", "events", "quarantine"]
    );
    // The writer's connection counts what the readers met: one metric for the process.
    assert_eq!(writer.problems().count(), 3);
    // Another process starts with its own list.
    let elsewhere = connect(&server, "gw-b", LONG_LEASE).await;
    assert_eq!(elsewhere.problems().count(), 0);
}
