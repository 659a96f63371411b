//! Helpers for the edge tests: a client that publishes anything (retained or not) and counts
//! PUBACKs by reason, and a watcher that records every downlink the gateway publishes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{DeviceId, DownlinkBody, Topic, TopicKind, decode_downlink};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// An MQTT 5 client that publishes QoS 1 and tallies the broker's PUBACKs.
pub struct Publisher {
    client: AsyncClient,
    acks: Arc<Mutex<Vec<PubAckReason>>>,
    /// Times the connection ended (rumqttc then reconnects).
    dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(port: u16, client_id: &str) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let mut connected_tx = Some(connected_tx);
        let tally = acks.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        let (dropped_out, dropped) = (dropped.clone(), dropped);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => tally.lock().unwrap().push(ack.reason),
                    Ok(_) => {}
                    Err(_) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected_rx)
            .await
            .expect("publisher connect timed out")
            .unwrap();
        Self {
            client,
            acks,
            dropped: dropped_out,
            task,
        }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }

    /// Waits until the broker has closed our connection at least once.
    pub async fn wait_dropped(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.dropped.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the broker did not close the connection");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// QoS 0, fire and forget.
    pub async fn publish_at_most_once(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .unwrap();
    }

    /// Waits until `count` PUBACKs arrived; returns their reasons.
    pub async fn wait_acks(&self, count: usize) -> Vec<PubAckReason> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let acks = self.acks.lock().unwrap().clone();
            if acks.len() >= count {
                return acks;
            }
            assert!(Instant::now() < deadline, "{} of {count} PUBACKs", acks.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribed to every down topic: what the gateway sent to whom, in order.
pub struct DownlinkWatcher {
    seen: Arc<Mutex<Vec<(DeviceId, DownlinkBody)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DownlinkWatcher {
    pub async fn start(port: u16) -> Self {
        let mut options = MqttOptions::new("edge.watcher", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client.subscribe("tec/v1/dev/+/down", QoS::AtLeastOnce).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let topic = Topic::parse(std::str::from_utf8(&publish.topic).unwrap()).unwrap();
                        assert_eq!(topic.kind, TopicKind::Down);
                        let body = decode_downlink(&publish.payload).unwrap().body;
                        record.lock().unwrap().push((topic.device_id, body));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("watcher subscription timed out")
            .unwrap();
        Self { seen, task }
    }

    pub fn seen(&self) -> Vec<(DeviceId, DownlinkBody)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until a downlink matching `pred` was seen; returns everything seen so far.
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&DeviceId, &DownlinkBody) -> bool,
    ) -> Vec<(DeviceId, DownlinkBody)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen();
            if seen.iter().any(|(device, body)| pred(device, body)) {
                return seen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; seen {seen:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for DownlinkWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
