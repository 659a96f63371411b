//! The writer lease from a gateway's side (`writer::leadership`), against a real PostgreSQL:
//! one gateway leads and renews at a third of the lease, another stands by until the lease
//! is released or runs out, and a leader that lost it stands by and learns who leads. Time
//! is passed in, so the schedule is checked without waiting; the database's clock decides
//! expiry, so the one takeover by expiry waits for it (polling, no timed assertion).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use gateway::store::StoreError;
use gateway::store::postgres::{PgStore, PgStoreOptions};
use gateway::store::seam::{PgBlocking, WriteStore};
use gateway::writer::leadership::{Leadership, Role};
use testkit::Postgres;

fn runtime() -> tokio::runtime::Runtime {
    // Multi-threaded: its workers drive the connections while this thread waits on each call,
    // as the committer does on tokio's blocking pool.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn gateway(runtime: &tokio::runtime::Runtime, server: &Postgres, holder: &str, lease: Duration) -> PgBlocking {
    let config: tokio_postgres::Config = server.connection_string("postgres").parse().unwrap();
    let store = runtime
        .block_on(PgStore::connect(&config, PgStoreOptions::new(holder, lease)))
        .unwrap();
    PgBlocking::new(store, runtime.handle().clone())
}

fn expires_at_ms(store: &PgBlocking) -> i64 {
    store.store().lease().unwrap().expires_at_ms
}

#[test]
fn one_leads_and_renews_at_a_third_and_a_standby_takes_over_a_released_lease() {
    let runtime = runtime();
    let server = Postgres::start().unwrap();
    // Long enough that no lease runs out by itself during the test.
    let lease = Duration::from_secs(30);
    let mut a = gateway(&runtime, &server, "gw-a", lease);
    let mut b = gateway(&runtime, &server, "gw-b", lease);
    let t0 = Instant::now();
    let mut lead_a = Leadership::new(lease, t0);
    let mut lead_b = Leadership::new(lease, t0);

    assert_eq!(lead_a.keep(&mut a, t0).unwrap(), Role::Leader);
    let epoch = a.store().lease().unwrap().epoch;
    assert_eq!(lead_a.next_due(), t0 + lease / 3);
    assert_eq!(lead_b.keep(&mut b, t0).unwrap(), Role::Standby);
    assert!(b.store().lease().is_none());
    // The standby asks again every third of the lease (a released lease is taken then),
    // not only once the leader's lease has run out.
    assert_eq!(lead_b.next_due(), t0 + lease / 3);
    assert_eq!(lead_b.keep(&mut b, t0 + lease / 3).unwrap(), Role::Standby);

    // Before a third of the lease nothing is renewed; at a third it is, at the same epoch.
    let first_expiry = expires_at_ms(&a);
    std::thread::sleep(Duration::from_millis(5));
    let almost = t0 + lease / 3 - Duration::from_millis(1);
    assert_eq!(lead_a.keep(&mut a, almost).unwrap(), Role::Leader);
    assert_eq!(expires_at_ms(&a), first_expiry);
    assert_eq!(lead_a.keep(&mut a, t0 + lease / 3).unwrap(), Role::Leader);
    assert!(expires_at_ms(&a) > first_expiry);
    assert_eq!(a.store().lease().unwrap().epoch, epoch);
    assert_eq!(lead_a.next_due(), t0 + 2 * (lease / 3));

    // A clean shutdown releases the lease: the standby takes it at its next attempt, at a
    // new epoch, without waiting for it to run out.
    a.release_lease().unwrap();
    let due = lead_b.next_due();
    assert_eq!(lead_b.keep(&mut b, due).unwrap(), Role::Leader);
    assert_eq!(b.store().lease().unwrap().epoch, epoch + 1);

    // The old leader, still believing it leads, learns at its next renewal that it does not.
    let due = lead_a.next_due();
    assert_eq!(lead_a.keep(&mut a, due).unwrap(), Role::Standby);
    assert_eq!(lead_a.next_due(), due + lease / 3);
}

#[test]
fn a_leader_that_missed_its_renewals_is_fenced_and_stands_by() {
    let runtime = runtime();
    let server = Postgres::start().unwrap();
    let lease = Duration::from_secs(1);
    let mut a = gateway(&runtime, &server, "gw-a", lease);
    let mut b = gateway(&runtime, &server, "gw-b", lease);
    let mut lead_a = Leadership::new(lease, Instant::now());
    let mut lead_b = Leadership::new(lease, Instant::now());
    assert_eq!(lead_a.keep(&mut a, Instant::now()).unwrap(), Role::Leader);

    // A is paused (it never renews); B, on the real clock, takes over once the lease runs out.
    let mut attempts = 0;
    while lead_b.keep(&mut b, Instant::now()).unwrap() == Role::Standby {
        attempts += 1;
        assert!(attempts < 200, "the standby never took the expired lease");
        std::thread::sleep(lead_b.next_due().saturating_duration_since(Instant::now()) + Duration::from_millis(10));
    }
    assert_eq!(b.store().lease().unwrap().holder, "gw-b");

    // A's next write is fenced (nothing of it is stored); told so, it stands by at once and
    // finds B leading, and waits for B's lease before asking again.
    match a.begin_txn() {
        Err(StoreError::Fenced { .. }) => {}
        other => panic!(
            "the replaced leader was not fenced: {:?}",
            other.map(|_| "a transaction")
        ),
    }
    let now = Instant::now();
    lead_a.lost(now);
    assert_eq!(lead_a.role(), Role::Standby);
    assert_eq!(lead_a.next_due(), now);
    assert_eq!(lead_a.keep(&mut a, now).unwrap(), Role::Standby);
    assert!(a.store().lease().is_none());
    assert!(lead_a.next_due() > now);
}
