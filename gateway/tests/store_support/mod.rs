//! Which store the tests' gateways run on: redb (the default) or, with
//! `TEC_TEST_STORE=postgres`, PostgreSQL, so the same tests check the gateway on both.
//!
//! On PostgreSQL every gateway gets a database of its own (`CREATE DATABASE`) on one private
//! cluster per test binary (`testkit::Postgres::for_this_process`, started on first use and
//! stopped when the process ends), keyed by the gateway's data directory: a gateway started
//! again on the same directory (a restart) finds the same database. Tests stay independent and
//! run in parallel. Without PostgreSQL installed they fail, never skip.
//!
//! `TEC_TEST_LOG=1` prints the gateways' logs (info and up) with the test's output, to see what
//! a gateway did when a test hangs or fails.
//!
//! Tests about the redb store itself (its file, backups, faults, the `--data` commands) do not
//! use this module: they run on redb whatever the variable says (listed in `docs/postgres.md`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use gateway::config::{Config, StoreConfig, StoreKind};
use testkit::Postgres;

/// The variable that picks the store.
pub const VARIABLE: &str = "TEC_TEST_STORE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Redb,
    Postgres,
}

/// The store `TEC_TEST_STORE` names (`redb` or unset: redb; `postgres`). Any other value is a
/// mistake worth failing on, not a silent redb run.
pub fn test_store() -> TestStore {
    match std::env::var(VARIABLE).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "redb") => TestStore::Redb,
        Ok("postgres") => TestStore::Postgres,
        Ok(other) => panic!("{VARIABLE}={other:?}: use `redb` or `postgres`"),
        Err(err) => panic!("{VARIABLE}: {err}"),
    }
}

pub fn on_postgres() -> bool {
    test_store() == TestStore::Postgres
}

/// The database of each data directory, made on first use.
fn databases() -> &'static Mutex<HashMap<PathBuf, String>> {
    static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    DATABASES.get_or_init(Mutex::default)
}

/// The connection string of `data`'s database (PostgreSQL only).
fn database_url(data: &Path) -> String {
    let server = Postgres::for_this_process().unwrap_or_else(|err| panic!("{VARIABLE}=postgres: {err}"));
    let mut databases = databases().lock().unwrap();
    let name = match databases.get(data) {
        Some(name) => name.clone(),
        None => {
            let name = server
                .create_database()
                .unwrap_or_else(|err| panic!("{VARIABLE}=postgres: {err}"));
            databases.insert(data.to_path_buf(), name.clone());
            name
        }
    };
    server.connection_string(&name)
}

/// Puts `config`'s gateway on the test store: nothing to do on redb (the store is in
/// `config.data_dir`); on PostgreSQL, the database of `config.data_dir`.
pub fn place(config: &mut Config) {
    if std::env::var("TEC_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_test_writer()
            .try_init();
    }
    if on_postgres() {
        config.store = StoreConfig {
            kind: StoreKind::Postgres,
            postgres_url: Some(database_url(&config.data_dir)),
            ..StoreConfig::default()
        };
    }
}

/// How an offline command (`tec-gateway user ...`, `audit verify`) names the store of the
/// gateway on `data`: `--data DIR` on redb, `--config FILE` (a file written next to the
/// gateway's files, naming its database) on PostgreSQL.
pub fn store_args(data: &Path) -> [String; 2] {
    if !on_postgres() {
        return ["--data".into(), data.to_str().unwrap().into()];
    }
    let file = data.join("tec-test-postgres.toml");
    if !file.exists() {
        let text = format!(
            "data_dir = {:?}\n[store]\nkind = \"postgres\"\npostgres_url = {:?}\n",
            data.to_str().unwrap(),
            database_url(data)
        );
        std::fs::write(&file, text).unwrap();
    }
    ["--config".into(), file.to_str().unwrap().into()]
}

/// Runs `read` on the gateway's reads (`GatewayClient::reads`: redb or PostgreSQL, whichever
/// it runs on) on tokio's blocking pool: a PostgreSQL read blocks on the runtime.
pub async fn read<T: Send + 'static>(
    client: &gateway::app::GatewayClient,
    read: impl FnOnce(&dyn gateway::store::ConsoleReads) -> T + Send + 'static,
) -> T {
    let reads = client.reads().unwrap();
    tokio::task::spawn_blocking(move || read(&*reads)).await.unwrap()
}

/// For a test (or the part of one) that needs what PostgreSQL does not serve yet: true on
/// PostgreSQL, after saying on stderr what is left out and why.
pub fn redb_only(reason: &str) -> bool {
    let skipped = on_postgres();
    if skipped {
        eprintln!("redb only ({reason}): not run on PostgreSQL");
    }
    skipped
}

/// What a test writes into a stopped gateway's store before starting it again.
pub trait Seed {
    fn resident(&mut self, resident: &gateway::domain::Resident);
    fn device(&mut self, device: &gateway::domain::DeviceRecord);
    fn assign(&mut self, assignment: &gateway::domain::Assignment);
    fn events(&mut self, events: &[gateway::store::NewEvent]);
    /// The alert, and its change in the change log, committed at its raise time.
    fn alert(&mut self, alert: &gateway::domain::Alert);
}

impl<T: gateway::store::WriteTxn> Seed for T {
    fn resident(&mut self, resident: &gateway::domain::Resident) {
        self.put_resident(resident).unwrap();
    }
    fn device(&mut self, device: &gateway::domain::DeviceRecord) {
        self.put_devices(&[device]).unwrap();
    }
    fn assign(&mut self, assignment: &gateway::domain::Assignment) {
        gateway::store::WriteTxn::assign(self, assignment).unwrap();
    }
    fn events(&mut self, events: &[gateway::store::NewEvent]) {
        self.insert_events(events).unwrap();
    }
    fn alert(&mut self, alert: &gateway::domain::Alert) {
        self.put_alert(alert).unwrap();
        self.record_alert_change(alert, alert.raised_at).unwrap();
    }
}

/// Writes `seed` in one transaction into the store of the (stopped) gateway on `data`, as the
/// gateway's writer would: redb in `data`, or `data`'s PostgreSQL database under the writer
/// lease (given back afterwards). Runs on a thread of its own (it blocks).
pub fn seed_offline(data: &Path, seed: impl FnOnce(&mut dyn Seed) + Send) {
    use gateway::store::{WriteStore, WriteTxn};
    let data = data.to_path_buf();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if !on_postgres() {
                    let mut store = std::sync::Arc::new(gateway::store::Store::open_in_dir(&data).unwrap());
                    let mut txn = store.begin_txn().unwrap();
                    seed(&mut txn);
                    WriteTxn::commit(txn).into_result().unwrap();
                    return;
                }
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let config: tokio_postgres::Config = database_url(&data).parse().unwrap();
                let options =
                    gateway::store::postgres::PgStoreOptions::new("test-seed", std::time::Duration::from_secs(30));
                let store = runtime
                    .block_on(gateway::store::postgres::PgStore::connect(&config, options))
                    .unwrap();
                let mut store = gateway::store::PgBlocking::new(store, runtime.handle().clone());
                assert!(matches!(
                    store.acquire_lease().unwrap(),
                    gateway::store::postgres::LeaseAttempt::Acquired(_)
                ));
                let mut txn = store.begin_txn().unwrap();
                seed(&mut txn);
                txn.commit().into_result().unwrap();
                store.release_lease().unwrap();
            })
            .join()
            .unwrap();
    });
}
