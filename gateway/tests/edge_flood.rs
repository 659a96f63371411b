//! Hostile load against a real Mosquitto: credentialed-looking clients flood junk (malformed,
//! too long for the protocol, and far above the gateway's maximum packet size) while devices
//! send real alarms. Every alarm is stored and receipted, every junk publish that reaches the
//! gateway is quarantined and counted, nothing panics, nothing stalls, and the in-flight byte
//! budget (tiny here, so back-pressure happens all the time) never deadlocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod edge_support;
mod ingest_support;
mod store_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use edge_support::Publisher;
use gateway::app::{self, GatewayHandle};
use gateway::config::{BrokerUrl, Config};
use gateway::domain::SystemClock;
use gateway::store::EventFilter;
use ingest_support::{Device, Mosquitto, eventually, http};
use protocol::{AlarmKind, DeviceId, DownlinkBody, UplinkBody};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// What production Mosquitto should set (gateway/README.md): payloads up to 3 KiB pass, so with
/// topic and headers every packet fits the gateway's 4 KiB maximum.
const MESSAGE_SIZE_LIMIT: u32 = 3 * 1024;
const JUNK_PUBLISHERS: usize = 4;
const JUNK_EACH: usize = 150;
const ALARM_DEVICES: usize = 3;
const ALARMS_EACH: u32 = 15;
const OVERSIZE_CLIENTS: usize = 8;

async fn start(broker: &Mosquitto, data: &std::path::Path, budget: usize) -> GatewayHandle {
    let mut config = Config::default();
    config.mqtt.broker = BrokerUrl::parse(&broker.url()).unwrap();
    config.mqtt.client_id = "edge.flood".into();
    config.mqtt.inflight_budget_bytes = budget;
    config.data_dir = data.to_owned();
    config.http = "127.0.0.1:0".parse().unwrap();
    store_support::place(&mut config);
    let handle = app::spawn(config, Arc::new(SystemClock)).await.unwrap();
    eventually("gateway connected and subscribed", || handle.mqtt_ready()).await;
    handle
}

/// The n-th junk payload of a publisher: malformed, or too long for the protocol yet within the
/// broker's limit (both quarantined).
fn junk(n: usize) -> Vec<u8> {
    match n % 4 {
        0 => vec![0xff; 9],
        1 => vec![0x55; 3_000],
        2 => vec![0x01; 200],
        _ => Vec::new(),
    }
}

/// Waits until the device holds receipts covering every seq in `want`.
async fn wait_receipted(device: &mut Device, want: &BTreeSet<u32>) {
    let mut receipted = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want.is_subset(&receipted) {
        let downlink = tokio::time::timeout_at(deadline, device.downlinks.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: receipts for {want:?}, got {receipted:?}", device.id))
            .expect("device connection ended");
        if let DownlinkBody::Receipt { boot: 1, seqs } = downlink.body {
            receipted.extend(seqs);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_oversize_floods_lose_no_alarm() {
    let broker = Mosquitto::start_with(testkit::BrokerOptions {
        message_size_limit: MESSAGE_SIZE_LIMIT,
        ..testkit::BrokerOptions::default()
    });
    let data = tempfile::tempdir().unwrap();
    // 32 KiB: a few 3 KiB junk publishes spend it, so the poller keeps stopping for acks.
    let gateway = start(&broker, data.path(), 32 * 1024).await;
    let mut devices = Vec::new();
    for n in 0..ALARM_DEVICES {
        devices.push(Device::connect(broker.port, &format!("pnd-flood-{n}")).await);
    }
    let mut publishers = Vec::new();
    for n in 0..JUNK_PUBLISHERS {
        publishers.push(Publisher::connect(broker.port, &format!("junk.{n}")).await);
    }

    // Junk and alarms interleaved: each publisher's flood in its own task, and clients that
    // send one publish above the broker's limit each (Mosquitto 2.0 closes their connection).
    let publishers = Arc::new(publishers);
    let mut floods = Vec::new();
    for index in 0..JUNK_PUBLISHERS {
        let publishers = publishers.clone();
        floods.push(tokio::spawn(async move {
            let topic = format!("tec/v1/dev/junk-{index:04}/up");
            for n in 0..JUNK_EACH {
                publishers[index].publish(&topic, junk(n), false).await;
            }
        }));
    }
    let port = broker.port;
    floods.push(tokio::spawn(async move {
        for n in 0..OVERSIZE_CLIENTS {
            let hostile = Publisher::connect(port, &format!("huge.{n}")).await;
            hostile
                .publish_at_most_once(&format!("tec/v1/dev/huge-{n:04}/up"), vec![0xaa; 100 * 1024])
                .await;
            hostile.wait_dropped().await;
        }
    }));
    for seq in 0..ALARMS_EACH {
        for device in &devices {
            device.send(1, seq, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
        }
        tokio::task::yield_now().await;
    }
    for flood in floods {
        flood.await.unwrap();
    }

    // Every alarm receipted and stored.
    let want: BTreeSet<u32> = (0..ALARMS_EACH).collect();
    for device in &mut devices {
        wait_receipted(device, &want).await;
    }
    let store = gateway.reads().unwrap();
    for device in &devices {
        let stored: BTreeSet<u32> = store
            .events(&EventFilter {
                device: Some(DeviceId::new(&device.id).unwrap()),
                ..EventFilter::default()
            })
            .unwrap()
            .into_events()
            .iter()
            .map(|event| event.key.seq)
            .collect();
        assert_eq!(stored, want, "{}", device.id);
    }

    // Everything within the broker's limit reached the gateway and was quarantined, counted and
    // acked; nothing above it did.
    for publisher in publishers.iter() {
        let acks = publisher.wait_acks(JUNK_EACH).await;
        assert!(acks.iter().all(|reason| *reason == PubAckReason::Success), "{acks:?}");
    }
    let accepted_junk = JUNK_EACH * JUNK_PUBLISHERS;
    eventually("all accepted junk quarantined", || {
        gateway.stats().rejected_total() == accepted_junk as u64
    })
    .await;
    let stats = gateway.stats();
    let alarms = ALARM_DEVICES as u64 * u64::from(ALARMS_EACH);
    assert_eq!(stats.received, accepted_junk as u64 + alarms, "{stats:?}");
    assert_eq!(stats.stored, alarms);
    assert_eq!(stats.commit_failures, 0);
    assert_eq!(store.quarantine_len().unwrap(), accepted_junk as u64);
    assert!(!gateway.open_alerts().await.is_empty());
    // Nothing stuck: still healthy.
    assert_eq!(http(gateway.http_addr(), "GET", "/healthz").await.0, 200);
    gateway.shutdown().await.unwrap();
}

/// Without `message_size_limit` the broker accepts a publish above the gateway's maximum packet
/// size and then, honouring MQTT 5, never sends it to us: it does not break our connection
/// (gateway/README.md says why production must set the limit). The next alarm gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_above_our_maximum_packet_does_not_break_the_connection() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let gateway = start(&broker, data.path(), 16 * 1024 * 1024).await;
    let mut device = Device::connect(broker.port, "pnd-big-1").await;
    let big = Publisher::connect(broker.port, "big.1").await;
    big.publish("tec/v1/dev/pnd-big-1/up", vec![0x42; 256 * 1024], false)
        .await;
    assert_eq!(
        big.wait_acks(1).await,
        vec![PubAckReason::Success],
        "the broker took it"
    );
    device.send(1, 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    wait_receipted(&mut device, &BTreeSet::from([1])).await;
    let stats = gateway.stats();
    assert_eq!((stats.received, stats.stored), (1, 1), "{stats:?}");
    assert!(gateway.mqtt_ready());
    gateway.shutdown().await.unwrap();
}
