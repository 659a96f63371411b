//! Shared by the store-seam tests: a writer core on a private PostgreSQL cluster whose lease
//! another gateway has taken over, to check that a replaced leader writes nothing.

use std::time::Duration;

use gateway::alerts::EngineConfig;
use gateway::domain::Timestamp;
use gateway::store::PgBlocking;
use gateway::store::postgres::{Lease, LeaseAttempt, PgStore, PgStoreOptions};
use gateway::writer::Core;
use testkit::Postgres;

pub struct Fenced {
    /// The core of the old leader ("gw-old"), its lease taken.
    pub core: Core<PgBlocking>,
    /// The gateway that leads now ("gw-new"), to read what was stored.
    pub new: PgStore,
    /// The lease "gw-new" holds.
    pub taken: Lease,
    pub runtime: tokio::runtime::Runtime,
    /// Bind it (`server: _server`) for as long as the test runs: the cluster stops when it
    /// is dropped.
    pub server: Postgres,
}

/// A core that takes the lease for `lease`, does `while_leading`, and is then replaced by
/// another gateway once the lease ran out unrenewed.
pub fn fenced_core(lease: Duration, opened_at: Timestamp, while_leading: impl FnOnce(&mut Core<PgBlocking>)) -> Fenced {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = Postgres::start().unwrap();
    let config: tokio_postgres::Config = server.connection_string("postgres").parse().unwrap();
    let connect = |holder: &str, ttl: Duration| {
        runtime
            .block_on(PgStore::connect(&config, PgStoreOptions::new(holder, ttl)))
            .unwrap()
    };
    let mut old = connect("gw-old", lease);
    assert!(matches!(
        runtime.block_on(old.acquire_lease()).unwrap(),
        LeaseAttempt::Acquired(_)
    ));
    let mut core = Core::open(
        PgBlocking::new(old, runtime.handle().clone()),
        EngineConfig::default(),
        opened_at,
    )
    .unwrap();
    while_leading(&mut core);
    let mut new = connect("gw-new", Duration::from_secs(60));
    let taken = loop {
        match runtime.block_on(new.acquire_lease()).unwrap() {
            LeaseAttempt::Acquired(lease) => break lease,
            LeaseAttempt::HeldBy { .. } => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    Fenced {
        core,
        new,
        taken,
        runtime,
        server,
    }
}
