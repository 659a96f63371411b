//! mqtts: the gateway connects to a TLS-only Mosquitto using the CA file from its config,
//! and refuses (stays unhealthy) with the wrong CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;
mod store_support;
mod tls_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::app;
use gateway::config::{BrokerUrl, Config};
use gateway::domain::SystemClock;
use ingest_support::{Mosquitto, eventually};
use tls_support::{Pki, pki};

fn tls_broker(pki: &Pki) -> Mosquitto {
    Mosquitto::start_with(testkit::BrokerOptions {
        extra_files: vec![
            ("ca.pem".into(), pki.ca_pem.clone()),
            ("server.pem".into(), pki.server_pem.clone()),
            ("server.key".into(), pki.server_key_pem.clone()),
        ],
        extra_config: "cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\n".into(),
        ..testkit::BrokerOptions::default()
    })
}

fn tls_config(broker: &Mosquitto, ca_file: PathBuf, data: &Path) -> Config {
    let mut config = Config {
        data_dir: data.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.mqtt.broker = BrokerUrl::parse(&format!("mqtts://127.0.0.1:{}", broker.port)).unwrap();
    config.mqtt.ca_file = Some(ca_file);
    store_support::place(&mut config);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_tls_with_the_configured_ca() {
    let pki = pki();
    let broker = tls_broker(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let gateway = app::spawn(
        tls_config(&broker, ca_file, &dir.path().join("data")),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    eventually("connected over TLS", || gateway.mqtt_ready()).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_signed_by_another_ca_is_refused() {
    let broker = tls_broker(&pki());
    let other = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, &other.ca_pem).unwrap();
    let gateway = app::spawn(
        tls_config(&broker, ca_file, &dir.path().join("data")),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    // The gateway reached the broker (its TCP connection is in the broker's log), so it has
    // had its chance to connect; a refusal is an absence, so it is then watched for a while:
    // it never becomes ready.
    eventually("the gateway's connection attempt", || {
        broker.log_count("New connection from") >= 1
    })
    .await;
    let watch_until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < watch_until {
        assert!(
            !gateway.mqtt_ready(),
            "connected to a broker whose certificate we cannot verify"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gateway.shutdown().await.unwrap();
}
