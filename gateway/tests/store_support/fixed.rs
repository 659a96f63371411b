//! `store_support` for a test binary that picks its store itself and ignores
//! `TEC_TEST_STORE`: redb-only tests (the redb file, its backups, its faults, the `--data`
//! commands, features not yet served from PostgreSQL) and the tests that start their own
//! PostgreSQL. Each such binary says why where it declares this module; `docs/postgres.md`
//! lists them. Same functions as `store_support/mod.rs`, always on redb.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use gateway::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Redb,
    Postgres,
}

pub fn test_store() -> TestStore {
    TestStore::Redb
}

pub fn on_postgres() -> bool {
    false
}

/// The gateway's store is redb, in `config.data_dir`.
pub fn place(_config: &mut Config) {}

pub fn store_args(data: &Path) -> [String; 2] {
    ["--data".into(), data.to_str().unwrap().into()]
}

pub async fn read<T: Send + 'static>(
    client: &gateway::app::GatewayClient,
    read: impl FnOnce(&dyn gateway::store::ConsoleReads) -> T + Send + 'static,
) -> T {
    let reads = client.reads().unwrap();
    tokio::task::spawn_blocking(move || read(&*reads)).await.unwrap()
}

pub fn redb_only(_reason: &str) -> bool {
    false
}
