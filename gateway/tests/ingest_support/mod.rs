//! Test helpers for the ingest tests: a private Mosquitto on a free port, a device-side MQTT
//! client that collects its downlinks, and a raw HTTP GET.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use protocol::{Downlink, MAX_UPLINK_LEN, Uplink, UplinkBody, UplinkHeader, decode_downlink, encode_uplink};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private Mosquitto (the shared `testkit` broker), killed on drop. Fails, never skips,
/// when Mosquitto is not installed.
pub struct Mosquitto {
    broker: testkit::Broker,
    pub port: u16,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with(testkit::BrokerOptions::default())
    }

    pub fn start_with(options: testkit::BrokerOptions) -> Self {
        let broker = testkit::Broker::start_with(options).unwrap_or_else(|e| panic!("{e}"));
        let port = broker.port();
        Self { broker, port }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// How often `needle` appears in the broker's log so far (its connection messages are on).
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.broker.log_path())
            .unwrap_or_default()
            .matches(needle)
            .count()
    }
}

/// A device on the broker: publishes uplinks, collects decoded downlinks.
pub struct Device {
    pub id: String,
    pub client: AsyncClient,
    pub downlinks: mpsc::UnboundedReceiver<Downlink>,
}

impl Device {
    pub async fn connect(port: u16, id: &str) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        client
            .subscribe(format!("tec/v1/dev/{id}/down"), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => match decode_downlink(&publish.payload) {
                        Ok(downlink) => {
                            let _ = tx.send(downlink);
                        }
                        Err(e) => panic!("undecodable downlink: {e}"),
                    },
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv())
            .await
            .expect("device subscription timed out");
        Self {
            id: id.to_owned(),
            client,
            downlinks: rx,
        }
    }

    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub async fn send(&self, boot: u32, seq: u32, body: UplinkBody) {
        self.publish_raw(&format!("tec/v1/dev/{}/up", self.id), encode(boot, seq, body))
            .await;
    }

    /// Waits for the next downlink matching `pred`, skipping others.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Downlink) -> bool) -> Downlink {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.downlinks.recv()).await {
                Ok(Some(downlink)) if pred(&downlink) => return downlink,
                Ok(Some(_)) => {}
                Ok(None) => panic!("device {} connection ended waiting for {what}", self.id),
                Err(_) => panic!("device {} timed out waiting for {what}", self.id),
            }
        }
    }
}

pub fn encode(boot: u32, seq: u32, body: UplinkBody) -> Vec<u8> {
    let message = Uplink::new(
        UplinkHeader {
            boot,
            seq,
            device_time_ms: None,
        },
        body,
    );
    let mut buf = [0u8; MAX_UPLINK_LEN];
    encode_uplink(&message, &mut buf).unwrap().to_vec()
}

/// Minimal HTTP/1.1 request; returns (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` until it is true or 10 s pass.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
