//! Retained presence against a real Mosquitto: the broker replays every device's retained
//! `Online` when the gateway (re)subscribes. That is the broker's memory, not a sign of life:
//! no time syncs go out (a resubscribe would otherwise sync the whole fleet at once) and no
//! device's `last_seen` moves. A live presence still counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod edge_support;
mod ingest_support;
mod store_support;

use std::sync::Arc;

use edge_support::{DownlinkWatcher, Publisher};
use gateway::app::{self, GatewayHandle};
use gateway::config::{BrokerUrl, Config};
use gateway::domain::{OnlineState, SystemClock};
use ingest_support::{Mosquitto, encode, eventually};
use protocol::{
    DeviceId, DeviceStatus, DownlinkBody, FirmwareVersion, MAX_STATUS_LEN, Presence, StatusMessage, Topic, UplinkBody,
    encode_status,
};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

const FLEET: usize = 40;

fn online() -> Vec<u8> {
    let mut buf = [0u8; MAX_STATUS_LEN];
    encode_status(&StatusMessage::new(Presence::Online { boot: 1 }), &mut buf)
        .unwrap()
        .to_vec()
}

fn heartbeat() -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2900,
        battery_percent: 80,
        rssi_dbm: -60,
        uptime_s: 10,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}

async fn start(broker: &Mosquitto, data: &std::path::Path, client_id: &str) -> GatewayHandle {
    let mut config = Config::default();
    config.mqtt.broker = BrokerUrl::parse(&broker.url()).unwrap();
    // A new client id is a new session: the gateway subscribes and the broker replays.
    config.mqtt.client_id = client_id.into();
    config.data_dir = data.to_owned();
    config.http = "127.0.0.1:0".parse().unwrap();
    store_support::place(&mut config);
    let handle = app::spawn(config, Arc::new(SystemClock)).await.unwrap();
    eventually("gateway connected and subscribed", || handle.mqtt_ready()).await;
    handle
}

fn is_time_sync_for(want: DeviceId) -> impl Fn(&DeviceId, &DownlinkBody) -> bool {
    move |device, body| *device == want && matches!(body, DownlinkBody::TimeSync { .. })
}

fn time_syncs(seen: &[(DeviceId, DownlinkBody)]) -> Vec<DeviceId> {
    seen.iter()
        .filter(|(_, body)| matches!(body, DownlinkBody::TimeSync { .. }))
        .map(|(device, _)| *device)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_retained_presence_sends_no_time_sync_and_keeps_last_seen() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let fleet: Vec<DeviceId> = (0..FLEET)
        .map(|n| DeviceId::new(&format!("ret-{n:04}")).unwrap())
        .collect();
    // Every device said Online (retained, as the firmware does) before the gateway subscribed.
    let devices = Publisher::connect(broker.port, "edge.devices").await;
    for device in &fleet {
        devices
            .publish(&Topic::status(*device).to_string(), online(), true)
            .await;
    }
    assert!(
        devices
            .wait_acks(FLEET)
            .await
            .iter()
            .all(|reason| *reason == PubAckReason::NoMatchingSubscribers || *reason == PubAckReason::Success)
    );
    let watcher = DownlinkWatcher::start(broker.port).await;

    // First subscription: the broker replays all of them.
    let gateway = start(&broker, data.path(), "edge.gateway.a").await;
    eventually("every replayed presence received", || {
        gateway.stats().received >= FLEET as u64
    })
    .await;
    // A live presence after the replay: its time sync marks that the replay is done with
    // (one committer, arrival order, downlinks after their commit).
    let live = DeviceId::new("live-0001").unwrap();
    devices.publish(&Topic::status(live).to_string(), online(), true).await;
    let seen = watcher
        .wait_for("time sync for the live device", is_time_sync_for(live))
        .await;
    assert_eq!(time_syncs(&seen), vec![live], "only the live presence gets the time");
    let store = gateway.reads().unwrap();
    for device in &fleet {
        let record = store.device(device).unwrap().expect("replayed device recorded");
        assert_eq!(record.last_seen, None, "{device}: a replay is not a sign of life");
        assert_eq!(
            record.online,
            OnlineState::Online,
            "{device}: shown as the broker last knew it"
        );
    }
    let live_record = store.device(&live).unwrap().unwrap();
    assert!(live_record.last_seen.is_some());

    // One device is heard live; then the gateway comes back on a fresh session and resubscribes.
    let heard = fleet[0];
    devices
        .publish(&Topic::up(heard).to_string(), encode(1, 1, heartbeat()), false)
        .await;
    eventually("the heartbeat stored", || store.event_count().unwrap() == 1).await;
    let before: Vec<_> = fleet
        .iter()
        .chain([&live])
        .map(|device| (*device, store.device(device).unwrap().unwrap().last_seen))
        .collect();
    assert!(before[0].1.is_some());
    drop(store);
    gateway.shutdown().await.unwrap();

    let gateway = start(&broker, data.path(), "edge.gateway.b").await;
    // The replay now holds the fleet and the live device (its presence was retained too).
    eventually("every replayed presence received again", || {
        gateway.stats().received > FLEET as u64
    })
    .await;
    let marker = DeviceId::new("live-0002").unwrap();
    devices
        .publish(&Topic::status(marker).to_string(), online(), true)
        .await;
    let seen = watcher
        .wait_for("time sync for the marker", is_time_sync_for(marker))
        .await;
    assert_eq!(time_syncs(&seen), vec![live, marker], "the resubscribe synced nobody");
    let store = gateway.reads().unwrap();
    for (device, last_seen) in before {
        let record = store.device(&device).unwrap().unwrap();
        assert_eq!(record.last_seen, last_seen, "{device}: last_seen moved on a replay");
    }
    gateway.shutdown().await.unwrap();
}
