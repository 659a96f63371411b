//! The gateway in-process against a real Mosquitto: stored once, receipted, duplicates
//! receipted again, garbage quarantined without stopping good traffic, alarms on the live
//! stream, acknowledge sends "help is on the way", clean shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;
mod store_support;

use std::sync::Arc;
use std::time::Duration;

use gateway::app::{self, GatewayHandle};
use gateway::config::{BrokerUrl, Config};
use gateway::domain::{
    AlertKind, AlertState, Assignment, DeviceKind, DeviceRecord, Outcome, RejectReason, Resident, ResidentId,
    SystemClock, Timestamp,
};
use gateway::store::EventFilter;
use ingest_support::{Device, Mosquitto, eventually, http};
use protocol::{AlarmKind, DeviceId, DeviceStatus, DownlinkBody, FirmwareVersion, SensorState, UplinkBody};

fn config(broker: &Mosquitto, data: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.mqtt.broker = BrokerUrl::parse(&broker.url()).unwrap();
    config.mqtt.client_id = "gw.test".into();
    config.data_dir = data.to_owned();
    config.http = "127.0.0.1:0".parse().unwrap();
    store_support::place(&mut config);
    config
}

async fn start(broker: &Mosquitto, data: &std::path::Path) -> GatewayHandle {
    let handle = app::spawn(config(broker, data), Arc::new(SystemClock)).await.unwrap();
    eventually("gateway connected and subscribed", || handle.mqtt_ready()).await;
    handle
}

fn heartbeat() -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2950,
        battery_percent: 87,
        rssi_dbm: -70,
        uptime_s: 100,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 2,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}

fn receipt_has(downlink: &protocol::Downlink, want_boot: u32, want: &[u32]) -> bool {
    match &downlink.body {
        DownlinkBody::Receipt { boot, seqs } => *boot == want_boot && want.iter().all(|s| seqs.contains(s)),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_receipts_quarantines_and_raises_alerts() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let gateway = start(&broker, data.path()).await;
    let resident = ResidentId::new("R-100").unwrap();
    let pendant = DeviceId::new("pnd-1").unwrap();
    gateway
        .put_resident(Resident {
            id: resident.clone(),
            display_name: "Test Resident".into(),
            address: "1 Test Street".into(),
            access_notes: String::new(),
            responders: Vec::new(),
            care: Default::default(),
        })
        .await
        .unwrap();
    gateway
        .register_device(
            DeviceRecord::new(pendant, DeviceKind::Pendant, true),
            Some(Assignment {
                device: pendant,
                resident: resident.clone(),
                from: Timestamp(0),
                until: None,
            }),
        )
        .await
        .unwrap();

    let mut device = Device::connect(broker.port, "pnd-1").await;
    let mut alerts = gateway.subscribe_alerts();

    // Two good uplinks: stored once each, receipted.
    device.send(1, 1, heartbeat()).await;
    device
        .send(
            1,
            2,
            UplinkBody::SensorChange {
                input: 0,
                state: SensorState::Motion,
            },
        )
        .await;
    device.expect("receipt for seq 1", |d| receipt_has(d, 1, &[1])).await;
    eventually("two events stored", || {
        gateway.reads().unwrap().event_count().unwrap() == 2
    })
    .await;
    let events = gateway
        .reads()
        .unwrap()
        .events(&EventFilter {
            device: Some(pendant),
            ..EventFilter::default()
        })
        .unwrap()
        .into_events();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.resident.as_ref() == Some(&resident)));
    let record = gateway.reads().unwrap().device(&pendant).unwrap().unwrap();
    assert!(record.registered);
    assert_eq!(record.battery_percent, Some(87));

    // A duplicate: receipted again, stored once.
    device.send(1, 1, heartbeat()).await;
    device
        .expect("receipt for the duplicate", |d| receipt_has(d, 1, &[1]))
        .await;
    eventually("duplicate counted", || gateway.stats().duplicates >= 1).await;
    assert_eq!(gateway.reads().unwrap().event_count().unwrap(), 2);

    // Garbage and a foreign-looking payload: quarantined and counted; good traffic flows.
    device.publish_raw("tec/v1/dev/pnd-1/up", b"\x00garbage".to_vec()).await;
    device.publish_raw("tec/v1/dev/pnd-1/up", vec![0x55; 1_000]).await;
    device.publish_raw("tec/v1/dev/pnd-1/up", Vec::new()).await;
    device.send(1, 3, heartbeat()).await;
    device.expect("receipt for seq 3", |d| receipt_has(d, 1, &[3])).await;
    eventually("three rejects", || gateway.stats().rejected_total() == 3).await;
    let stats = gateway.stats();
    assert_eq!(stats.rejected_for(RejectReason::BadVersion), 1);
    assert_eq!(stats.rejected_for(RejectReason::Oversize), 1);
    assert_eq!(stats.rejected_for(RejectReason::Malformed), 1);
    assert_eq!(gateway.reads().unwrap().quarantine_len().unwrap(), 3);
    assert_eq!(gateway.reads().unwrap().event_count().unwrap(), 3);

    // A pendant press: alert on the live stream; acknowledge sends HelpOnTheWay.
    device.send(1, 4, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
    let alert = tokio::time::timeout(Duration::from_secs(10), alerts.recv())
        .await
        .expect("alert on the live stream")
        .unwrap();
    assert_eq!(alert.kind, AlertKind::PendantPress);
    assert_eq!(alert.state, AlertState::Raised);
    assert_eq!(alert.resident.as_ref(), Some(&resident));
    assert!(!alert.unregistered_device);
    assert_eq!(
        gateway.reads().unwrap().alert(alert.id).unwrap().as_ref(),
        Some(&alert.alert)
    );
    device
        .expect("receipt for the alarm", |d| receipt_has(d, 1, &[4]))
        .await;
    assert_eq!(gateway.open_alerts().await.len(), 1);

    let acked = gateway.acknowledge(alert.id, "op-7").await.unwrap();
    assert_eq!(acked.state, AlertState::Acknowledged);
    let alert_ref = alert.id.0;
    device
        .expect("help is on the way", |d| {
            d.body == DownlinkBody::HelpOnTheWay { alert_ref }
        })
        .await;
    let streamed = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(streamed.state, AlertState::Acknowledged);
    assert!(
        gateway.acknowledge(alert.id, "op-7").await.is_err(),
        "second acknowledge refused"
    );

    let resolved = gateway
        .resolve(
            alert.id,
            "op-7",
            Outcome::ResponderAttended,
            Some("warden attended".into()),
        )
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    device
        .expect("alert resolved", |d| {
            d.body == DownlinkBody::AlertResolved { alert_ref }
        })
        .await;
    assert!(gateway.open_alerts().await.is_empty());

    // HTTP: healthy, metrics, 404/405.
    let addr = gateway.http_addr();
    assert_eq!(http(addr, "GET", "/healthz").await, (200, "ok\n".into()));
    let (status, metrics) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "tec_events_stored_total 4",
        "tec_events_duplicate_total 1",
        "tec_ingest_rejected_total{reason=\"oversize\"} 1",
        "tec_mqtt_connected 1",
        "tec_open_alerts 0",
        "tec_alerts_changed_total{kind=\"pendant_press\"} 3",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    assert_eq!(http(addr, "GET", "/nothing").await.0, 404);
    assert_eq!(http(addr, "POST", "/healthz").await.0, 405);

    let stats = gateway.stats();
    assert_eq!(stats.stored, 4);
    assert!(stats.receipts_sent >= 4, "{stats:?}");
    assert!(stats.commits >= 4);
    assert!(stats.mean_batch_size >= 1.0);
    assert!(stats.receive_to_commit_p99.is_some());
    assert_eq!(stats.commit_failures, 0);

    // A client clone (what a web UI keeps) works until shutdown and says Stopped after.
    let client = gateway.client();
    assert_eq!(client.open_alerts().await, Vec::new());
    gateway.shutdown().await.unwrap();
    assert!(matches!(
        client.acknowledge(alert.id, "op-7").await,
        Err(gateway::writer::OperatorError::Stopped)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_device_alarm_is_flagged_and_survives_restart() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let gateway = start(&broker, data.path()).await;
    let mut alerts = gateway.subscribe_alerts();
    let mut device = Device::connect(broker.port, "stray-9").await;
    device.send(7, 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    device.expect("receipt", |d| receipt_has(d, 7, &[1])).await;
    let alert = tokio::time::timeout(Duration::from_secs(10), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(alert.unregistered_device);
    assert_eq!(alert.kind, AlertKind::Fall);
    assert_eq!(gateway.stats().unregistered, 1);
    let record = gateway
        .reads()
        .unwrap()
        .device(&DeviceId::new("stray-9").unwrap())
        .unwrap()
        .unwrap();
    assert!(!record.registered);
    assert_eq!(record.kind, DeviceKind::Other);
    gateway.shutdown().await.unwrap();

    // While the gateway is away the broker queues for its session.
    device
        .send(
            7,
            3,
            UplinkBody::Heartbeat(match heartbeat() {
                UplinkBody::Heartbeat(status) => status,
                _ => unreachable!(),
            }),
        )
        .await;

    // Restart on the same data: the queued uplink arrives, the open alert is still there
    // and can be acknowledged.
    let gateway = start(&broker, data.path()).await;
    device
        .expect("receipt for the queued uplink", |d| receipt_has(d, 7, &[3]))
        .await;
    let open = gateway.open_alerts().await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, alert.id);
    gateway.acknowledge(alert.id, "op-1").await.unwrap();
    device
        .expect("help is on the way after restart", |d| {
            matches!(d.body, DownlinkBody::HelpOnTheWay { .. })
        })
        .await;
    // A new alarm after restart gets a new id.
    let mut alerts = gateway.subscribe_alerts();
    device.send(7, 2, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
    let next = tokio::time::timeout(Duration::from_secs(10), alerts.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(next.id > alert.id);
    // Everything of the first run was acked before it stopped: nothing is redelivered.
    let stats = gateway.stats();
    assert_eq!((stats.received, stats.stored, stats.duplicates), (2, 2, 0), "{stats:?}");
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_health_is_503_and_shutdown_is_clean() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.mqtt.broker = BrokerUrl::parse(&format!("mqtt://127.0.0.1:{}", ingest_support::free_port())).unwrap();
    config.data_dir = data.path().to_owned();
    config.http = "127.0.0.1:0".parse().unwrap();
    store_support::place(&mut config);
    let gateway = app::spawn(config, Arc::new(SystemClock)).await.unwrap();
    let (status, body) = http(gateway.http_addr(), "GET", "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("not connected"), "{body}");
    assert!(!gateway.stats().mqtt_connected);

    // A second gateway on the same data directory is refused with a clear reason (on
    // PostgreSQL a second gateway stands by instead: `console_postgres.rs`).
    if !store_support::redb_only("the redb file's lock refuses a second gateway") {
        let same_data = Config {
            data_dir: data.path().to_owned(),
            http: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let error = app::spawn(same_data, Arc::new(SystemClock)).await.unwrap_err();
        assert!(matches!(error, app::StartError::Store { .. }), "{error}");
        assert!(error.to_string().contains("in use"), "{error}");
    }
    // So is an HTTP address already taken.
    let other_data = tempfile::tempdir().unwrap();
    let same_http = Config {
        data_dir: other_data.path().to_owned(),
        http: gateway.http_addr(),
        ..Config::default()
    };
    let error = app::spawn(same_http, Arc::new(SystemClock)).await.unwrap_err();
    assert!(matches!(error, app::StartError::Http { .. }), "{error}");
    tokio::time::timeout(Duration::from_secs(15), gateway.shutdown())
        .await
        .expect("shutdown finishes")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_group_committed_and_fully_receipted() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let gateway = start(&broker, data.path()).await;
    const PER_DEVICE: u32 = if cfg!(debug_assertions) { 1000 } else { 10_000 };
    let ids = ["hub-1", "hub-2", "hub-3"];
    let mut devices = Vec::new();
    for id in ids {
        devices.push(Device::connect(broker.port, id).await);
    }
    let started = std::time::Instant::now();
    for seq in 0..PER_DEVICE {
        for device in &devices {
            device.send(1, seq, heartbeat()).await;
        }
    }
    let total = u64::from(PER_DEVICE) * ids.len() as u64;
    for device in &mut devices {
        let mut receipted = std::collections::BTreeSet::new();
        while receipted.len() < PER_DEVICE as usize {
            let downlink = device.expect("receipts", |_| true).await;
            if let DownlinkBody::Receipt { boot: 1, seqs } = downlink.body {
                receipted.extend(seqs);
            }
        }
    }
    let elapsed = started.elapsed();
    eventually("all stored", || gateway.stats().stored == total).await;
    let stats = gateway.stats();
    assert_eq!(gateway.reads().unwrap().event_count().unwrap(), total);
    assert_eq!(stats.duplicates, 0);
    eprintln!(
        "burst of {total}: {elapsed:?}, {:.1} publishes per commit, p50 {:?}, p99 {:?}",
        stats.mean_batch_size, stats.receive_to_commit_p50, stats.receive_to_commit_p99
    );
    assert!(stats.mean_batch_size > 1.5, "no group commit: {stats:?}");
    gateway.shutdown().await.unwrap();
}
