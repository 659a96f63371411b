//! A plain MQTT subscriber on every uplink topic: the baseline the gateway is measured against,
//! and a stand-in gateway (it can answer with receipts) for testing the harness itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{
    ALL_UPLINKS_FILTER, DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, Topic, encode_downlink, peek_uplink_header,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::broker::Credentials;
use crate::devices::SentKey;
use crate::error::{HarnessError, Result};

#[derive(Debug, Clone)]
pub struct PlainOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<Credentials>,
    /// Keep the session (and its queue) for this long after a disconnect.
    pub session_expiry_s: u32,
    /// Publish a receipt for each uplink after acknowledging it.
    pub send_receipts: bool,
    /// MQTT 5 receive maximum (unacked publishes the broker may have in flight to us); `None`
    /// leaves rumqttc's default (no limit announced).
    pub receive_maximum: Option<u16>,
    /// Remember each distinct (device, boot, seq) for [`PlainSubscriber::distinct`]. Off in the
    /// benchmark, so the baseline does nothing but receive and acknowledge.
    pub track_keys: bool,
}

/// A persistent-session subscriber to `tec/v1/dev/+/up` with manual acks.
#[derive(Debug)]
pub struct PlainSubscriber {
    client: AsyncClient,
    received: Arc<AtomicU64>,
    subscribed: Arc<AtomicU64>,
    keys: Arc<Mutex<BTreeSet<SentKey>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl PlainSubscriber {
    /// Connects (resuming the session if one exists) and subscribes.
    pub async fn connect(options: PlainOptions) -> Result<Self> {
        let mut mqtt = MqttOptions::new(options.client_id.clone(), options.host.clone(), options.port);
        mqtt.set_keep_alive(Duration::from_secs(30));
        mqtt.set_clean_start(false);
        mqtt.set_session_expiry_interval(Some(options.session_expiry_s));
        mqtt.set_manual_acks(true);
        mqtt.set_receive_maximum(options.receive_maximum);
        if let Some(credentials) = &options.credentials {
            mqtt.set_credentials(credentials.username.clone(), credentials.password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, 100_000);
        let received = Arc::new(AtomicU64::new(0));
        let subscribed = Arc::new(AtomicU64::new(0));
        let keys = Arc::new(Mutex::new(BTreeSet::new()));
        let (to_acker, mut from_poller) = mpsc::unbounded_channel::<Publish>();

        let poll_received = received.clone();
        let poll_subscribed = subscribed.clone();
        let poll_client = client.clone();
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                        // A resumed session still holds its subscription, and the broker sends
                        // the queued backlog before the SUBACK of the (harmless) re-subscribe:
                        // with millions queued, waiting for that SUBACK would time out.
                        if connack.session_present {
                            poll_subscribed.fetch_add(1, Ordering::Relaxed);
                        }
                        let client = poll_client.clone();
                        tokio::spawn(async move {
                            let _ = client.subscribe(ALL_UPLINKS_FILTER, QoS::AtLeastOnce).await;
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        poll_subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        poll_received.fetch_add(1, Ordering::Relaxed);
                        if to_acker.send(publish).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });

        let ack_client = client.clone();
        let ack_keys = keys.clone();
        let send_receipts = options.send_receipts;
        let track_keys = options.track_keys;
        let acker = tokio::spawn(async move {
            while let Some(publish) = from_poller.recv().await {
                let key = if track_keys || send_receipts {
                    uplink_key(&publish)
                } else {
                    None
                };
                if let Some(key) = key
                    && let Ok(mut keys) = ack_keys.lock()
                {
                    keys.insert(key);
                }
                if ack_client.ack(&publish).await.is_err() {
                    return;
                }
                if send_receipts && let Some(key) = key {
                    let mut seqs = heapless::Vec::new();
                    let _ = seqs.push(key.seq);
                    let receipt = Downlink::new(DownlinkBody::Receipt { boot: key.boot, seqs });
                    let mut buf = [0u8; MAX_DOWNLINK_LEN];
                    if let Ok(bytes) = encode_downlink(&receipt, &mut buf) {
                        let topic = Topic::down(key.device).to_string();
                        let _ = ack_client.publish(topic, QoS::AtLeastOnce, false, bytes.to_vec()).await;
                    }
                }
            }
        });
        let plain = Self {
            client,
            received,
            subscribed,
            keys,
            tasks: vec![poller, acker],
        };
        let started = Instant::now();
        while plain.subscribed.load(Ordering::Relaxed) == 0 {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(HarnessError::Timeout {
                    what: "plain subscriber to subscribe".into(),
                    waited: Duration::from_secs(10),
                    detail: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(plain)
    }

    /// Uplinks delivered so far (duplicates included).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Distinct (device, boot, seq) seen.
    pub fn distinct(&self) -> BTreeSet<SentKey> {
        self.keys.lock().map(|keys| keys.clone()).unwrap_or_default()
    }

    pub async fn wait_received(&self, count: u64, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        while self.received() < count {
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: format!("{count} uplinks at the plain subscriber"),
                    waited: timeout,
                    detail: Some(format!("{} so far", self.received())),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(started.elapsed())
    }

    /// Disconnects cleanly, keeping the session on the broker.
    pub async fn disconnect(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for PlainSubscriber {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn uplink_key(publish: &Publish) -> Option<SentKey> {
    let topic = std::str::from_utf8(&publish.topic).ok()?;
    let topic = Topic::parse(topic).ok()?;
    let (_, header, _) = peek_uplink_header(&publish.payload).ok()?;
    Some(SentKey {
        device: topic.device_id,
        boot: header.boot,
        seq: header.seq,
    })
}

/// Device id parsed from text, as a harness error.
pub fn device_id(text: &str) -> Result<DeviceId> {
    DeviceId::new(text).map_err(|e| HarnessError::Other(format!("{text}: {e}")))
}
