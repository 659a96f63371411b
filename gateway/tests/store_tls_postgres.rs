#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! TLS to PostgreSQL (`store.postgres_ca_file`): against a private cluster serving TLS with a
//! throwaway certificate authority, every connection of a gateway (its writer's and its
//! readers') is encrypted, a server with a certificate from another authority is refused, a
//! server without TLS is refused rather than spoken to in the clear, and bad settings are
//! configuration errors naming the field.

use std::path::Path;
use std::sync::Arc;

use gateway::config::{BrokerUrl, Config, StoreConfig, StoreKind};
use gateway::domain::{Clock, SystemClock};
use gateway::store::postgres::PgStore;
use testkit::Postgres;
use testkit::postgres::{PostgresOptions, ServerTls};

mod tls_support;

fn tls_server() -> (Postgres, String) {
    let pki = tls_support::pki();
    let server = Postgres::start_with(PostgresOptions {
        tls: Some(ServerTls {
            cert_pem: pki.server_pem,
            key_pem: pki.server_key_pem,
        }),
        ..PostgresOptions::default()
    })
    .unwrap();
    (server, pki.ca_pem)
}

fn store_config(server: &Postgres, ca_file: Option<&Path>) -> StoreConfig {
    StoreConfig {
        kind: StoreKind::Postgres,
        postgres_url: Some(server.connection_string("postgres")),
        lease_s: 3,
        holder: Some("gw-tls".into()),
        postgres_ca_file: ca_file.map(Path::to_path_buf),
    }
}

async fn connect(config: &StoreConfig) -> Result<PgStore, String> {
    let options = config.postgres_options("gw-tls").map_err(|e| e.to_string())?;
    PgStore::connect(&config.postgres_config().map_err(|e| e.to_string())?, options)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Whether the server sees the connection of backend `pid` encrypted.
fn encrypted(server: &Postgres, pid: i32) -> String {
    server
        .psql(&format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {pid}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_authority_every_connection_is_tls_and_the_server_is_checked() {
    let (server, ca_pem) = tokio::task::block_in_place(tls_server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();

    // One store connection: encrypted.
    let config = store_config(&server, Some(&ca));
    let store = connect(&config).await.unwrap();
    let pid = store.backend_pid().await.unwrap();
    assert_eq!(tokio::task::block_in_place(|| encrypted(&server, pid)), "t");
    drop(store);
    // Without the setting the same server is spoken to in the clear (loopback, tunnels).
    let plain = connect(&store_config(&server, None)).await.unwrap();
    let pid = plain.backend_pid().await.unwrap();
    assert_eq!(tokio::task::block_in_place(|| encrypted(&server, pid)), "f");
    drop(plain);

    // A whole gateway: its writer and its readers, all encrypted.
    let mut gateway_config = Config {
        data_dir: dir.path().join("data"),
        http: "127.0.0.1:0".parse().unwrap(),
        store: config,
        ..Config::default()
    };
    gateway_config.mqtt.broker = BrokerUrl::parse("mqtt://127.0.0.1:9").unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let handle = gateway::app::spawn(gateway_config, clock).await.unwrap();
    let reads = handle.client().reads().unwrap();
    tokio::task::block_in_place(|| reads.event_count()).unwrap();
    let counts = tokio::task::block_in_place(|| {
        server.psql(
            "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_ssl s
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'tec-gateway'",
        )
    })
    .unwrap();
    let (tls, all) = counts.split_once('/').unwrap();
    assert_eq!(tls, all, "{counts} of the gateway's connections are TLS");
    assert!(all.parse::<u32>().unwrap() >= 2, "writer and readers: {counts}");
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_from_another_authority_or_without_tls_is_refused() {
    let (server, _ca_pem) = tokio::task::block_in_place(tls_server);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, tls_support::pki().ca_pem).unwrap();
    let error = connect(&store_config(&server, Some(&other))).await.err().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    let plain = tokio::task::block_in_place(Postgres::start).unwrap();
    let error = connect(&store_config(&plain, Some(&other))).await.err().unwrap();
    assert!(error.contains("TLS") || error.contains("SSL"), "{error}");
}

#[test]
fn bad_tls_settings_are_configuration_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = || StoreConfig {
        kind: StoreKind::Postgres,
        postgres_url: Some("host=127.0.0.1 port=5432 user=gw dbname=tec".into()),
        ..StoreConfig::default()
    };
    let missing = StoreConfig {
        postgres_ca_file: Some(dir.path().join("missing.pem")),
        ..base()
    };
    let error = missing.postgres_options("gw").unwrap_err().to_string();
    assert!(error.contains("missing.pem"), "{error}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = StoreConfig {
        postgres_ca_file: Some(junk),
        ..base()
    };
    let error = junk.postgres_options("gw").unwrap_err().to_string();
    assert!(
        error.contains("store.postgres_ca_file") && error.contains("no PEM certificate"),
        "{error}"
    );

    let require = StoreConfig {
        postgres_url: Some("host=db.example user=gw dbname=tec sslmode=require".into()),
        ..base()
    };
    let error = require.postgres_config().unwrap_err().to_string();
    assert!(error.contains("store.postgres_ca_file"), "{error}");
}
