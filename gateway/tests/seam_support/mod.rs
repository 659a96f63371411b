//! Shared by the PostgreSQL store tests: the runtime and a store they all start with (leading
//! or not), a configuration file for the offline commands, a check that the writer lease is
//! free, and a writer core whose lease another
//! gateway has taken over. Not every test file uses every helper.
#![allow(dead_code)]

use std::time::Duration;

use gateway::alerts::EngineConfig;
use gateway::domain::Timestamp;
use gateway::store::PgBlocking;
use gateway::store::postgres::{Lease, LeaseAttempt, PgStore, PgStoreOptions};
use gateway::writer::Core;
use protocol::{DeviceStatus, FirmwareVersion, UplinkBody};
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

/// Multi-threaded: its workers drive the PostgreSQL connection while a core on the test's own
/// (non-async) thread waits on each call, as it would on tokio's blocking pool.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A store on `server` as `holder`, with leases of `lease`, not holding one yet.
pub fn connect(runtime: &tokio::runtime::Runtime, server: &Postgres, holder: &str, lease: Duration) -> PgStore {
    let config: tokio_postgres::Config = server.connection_string("postgres").parse().unwrap();
    runtime
        .block_on(PgStore::connect(&config, PgStoreOptions::new(holder, lease)))
        .unwrap()
}

/// A gateway configuration file for `server` in `dir`, for the offline commands' `--config`.
pub fn pg_config(dir: &std::path::Path, server: &Postgres) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let url = server.connection_string("postgres");
    std::fs::write(
        &path,
        format!("[store]\nkind = \"postgres\"\npostgres_url = \"{url}\"\nlease_s = 30\n"),
    )
    .unwrap();
    path
}

/// Nobody holds the writer lease now (the row, if any, has run out).
pub fn assert_lease_free(server: &Postgres) {
    let live = server
        .psql("SELECT count(*) FROM tec_leader_lease WHERE expires_at > now()")
        .unwrap();
    assert_eq!(live, "0", "the writer lease is still held");
}

/// A store on `server` holding the writer lease as `holder` for `lease`.
pub fn leading_store(runtime: &tokio::runtime::Runtime, server: &Postgres, holder: &str, lease: Duration) -> PgStore {
    let mut store = connect(runtime, server, holder, lease);
    assert!(matches!(
        runtime.block_on(store.acquire_lease()).unwrap(),
        LeaseAttempt::Acquired(_)
    ));
    store
}

/// A core that takes the lease for `lease`, does `while_leading`, and is then replaced by
/// another gateway once the lease ran out unrenewed.
pub fn fenced_core(lease: Duration, opened_at: Timestamp, while_leading: impl FnOnce(&mut Core<PgBlocking>)) -> Fenced {
    let runtime = runtime();
    let server = Postgres::start().unwrap();
    let old = leading_store(&runtime, &server, "gw-old", lease);
    let connect = |holder: &str, ttl: Duration| connect(&runtime, &server, holder, ttl);
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

/// A heartbeat as a pendant sends it, `uptime_s` telling heartbeats of one boot apart.
pub fn heartbeat(uptime_s: u32) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2900,
        battery_percent: 80,
        rssi_dbm: -60,
        uptime_s,
        firmware: FirmwareVersion {
            major: 1,
            minor: 2,
            patch: 3,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}
