//! The `tec-gateway run` binary: becomes healthy against a broker, stores an uplink, and
//! exits 0 on SIGTERM after a clean shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;
mod store_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ingest_support::{Device, Mosquitto, free_port, http};
use protocol::{AlarmKind, DownlinkBody, UplinkBody};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_health_and_stops_cleanly_on_sigterm() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tec-gateway"));
    command
        .args(["run", "--broker", &broker.url(), "--http", &http_addr.to_string()])
        .env("TEC_GATEWAY_DATA", data.path())
        .env("TEC_GATEWAY_LOG_FORMAT", "json");
    if store_support::on_postgres() {
        // The configuration file naming the test's database (and nothing else).
        let [_, file] = store_support::store_args(data.path());
        command.env("TEC_GATEWAY_CONFIG", file);
    } else {
        command.env_remove("TEC_GATEWAY_CONFIG");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(http_addr).await.is_ok() && http(http_addr, "GET", "/healthz").await.0 == 200
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "gateway exited early");
        assert!(Instant::now() < deadline, "gateway never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut device = Device::connect(broker.port, "pnd-5").await;
    device.send(2, 1, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
    device
        .expect(
            "receipt",
            |d| matches!(&d.body, DownlinkBody::Receipt { boot: 2, seqs } if seqs.contains(&1)),
        )
        .await;
    let (_, metrics) = http(http_addr, "GET", "/metrics").await;
    assert!(metrics.contains("tec_events_stored_total 1"), "{metrics}");
    assert!(metrics.contains("tec_open_alerts 1"), "{metrics}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "gateway did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    if store_support::on_postgres() {
        assert!(log.contains("took the writer lease"), "on PostgreSQL: {log}");
    }
    // JSON logs were asked for.
    assert!(
        log.lines().filter(|l| !l.is_empty()).all(|l| l.starts_with('{')),
        "{log}"
    );
}
