//! Shared by the Mosquitto tests: a broker process on a free port and a stand-in receipter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::time::Duration;

use protocol::{
    ALL_ALARMS_FILTER, ALL_STATUS_FILTER, ALL_UPLINKS_FILTER, DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN,
    Presence, Topic, TopicKind, Uplink, decode_status, decode_uplink, encode_downlink,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// A private Mosquitto (the shared `testkit` broker) on a free port, killed on drop. Fails,
/// never skips, when Mosquitto is not installed.
pub struct Broker {
    inner: testkit::Broker,
    pub port: u16,
}

impl Broker {
    /// Anonymous access, no ACL.
    pub fn start() -> Self {
        Self::start_with(testkit::BrokerOptions::default())
    }

    /// Per-user passwords and the production ACL: each device may only publish to its own up
    /// and status topics and read its own down topic; `stand-in` may do everything.
    pub fn start_with_users(users: &[(&str, &str)]) -> Self {
        let credentials = |(user, password): &(&str, &str)| testkit::Credentials::new(*user, *password);
        let admin = users.iter().find(|(user, _)| *user == "stand-in").map(credentials);
        let devices = users
            .iter()
            .filter(|(user, _)| *user != "stand-in")
            .map(credentials)
            .collect();
        Self::start_with(testkit::BrokerOptions {
            auth: Some(testkit::BrokerAuth {
                devices,
                admin,
                ..testkit::BrokerAuth::for_devices([])
            }),
            ..testkit::BrokerOptions::default()
        })
    }

    fn start_with(options: testkit::BrokerOptions) -> Self {
        let inner = testkit::Broker::start_with(options).unwrap_or_else(|e| panic!("{e}"));
        let port = inner.port();
        Self { inner, port }
    }

    /// Kills the broker (as a crash would) and starts it again on the same port.
    pub fn restart_after(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.start_again();
    }

    /// How many connections the broker has refused as not authorised so far (its log).
    pub fn refused_connections(&self) -> usize {
        std::fs::read_to_string(self.inner.log_path())
            .unwrap_or_default()
            .matches("disconnected, not authorised")
            .count()
    }

    pub fn kill(&mut self) {
        self.inner.kill().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn start_again(&mut self) {
        self.inner.start_again().unwrap_or_else(|e| panic!("{e}"));
    }
}

#[derive(Debug)]
pub enum Seen {
    Up(DeviceId, Uplink),
    Status(DeviceId, Presence),
}

/// Subscribes to every device's up and status topics; receipts every uplink at once.
pub async fn stand_in_receipter(port: u16) -> mpsc::UnboundedReceiver<Seen> {
    stand_in(port, None).await.0
}

/// Sends downlinks to devices through the stand-in's connection.
#[derive(Debug, Clone)]
pub struct Downlinks(mpsc::UnboundedSender<(String, Vec<u8>)>);

impl Downlinks {
    pub fn send(&self, device: DeviceId, body: DownlinkBody) {
        let mut buf = [0u8; MAX_DOWNLINK_LEN];
        let bytes = encode_downlink(&Downlink::new(body), &mut buf).unwrap().to_vec();
        self.0.send((Topic::down(device).to_string(), bytes)).unwrap();
    }
}

/// The receipter, logging in as `stand-in` with `password` if given, plus a way to send
/// other downlinks.
pub async fn stand_in(port: u16, password: Option<&str>) -> (mpsc::UnboundedReceiver<Seen>, Downlinks) {
    let mut options = MqttOptions::new("stand-in-receipter", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    if let Some(password) = password {
        options.set_credentials("stand-in", password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1_000);
    client.subscribe(ALL_UPLINKS_FILTER, QoS::AtLeastOnce).await.unwrap();
    client.subscribe(ALL_ALARMS_FILTER, QoS::AtLeastOnce).await.unwrap();
    client.subscribe(ALL_STATUS_FILTER, QoS::AtLeastOnce).await.unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    // Publish from a task of its own: awaiting `publish` in the polling task deadlocks
    // once rumqttc's request channel is full.
    let (receipts_tx, mut receipts_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let downlinks = receipts_tx.clone();
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((topic, bytes)) = receipts_rx.recv().await {
            if publisher.publish(topic, QoS::AtLeastOnce, false, bytes).await.is_err() {
                return; // the event loop ended with the broker
            }
        }
    });
    let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(event) => event,
                // The broker stops at the end of each test; waiters time out if it was earlier.
                Err(_) => return,
            };
            let publish = match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = subscribed_tx.send(());
                    continue;
                }
                Event::Incoming(Packet::Publish(publish)) => publish,
                _ => continue,
            };
            let topic = Topic::parse(&publish.topic).unwrap();
            match topic.kind {
                TopicKind::Up | TopicKind::Alarm => {
                    let uplink = decode_uplink(&publish.payload).unwrap();
                    // The firmware's lanes: alarms and their cancels on `alarm`, the rest on `up`.
                    assert_eq!(
                        topic.kind == TopicKind::Alarm,
                        uplink.body.is_alarm(),
                        "{:?} on the {} topic",
                        uplink.body,
                        topic.kind.suffix()
                    );
                    let receipt = Downlink::new(DownlinkBody::Receipt {
                        boot: uplink.header.boot,
                        seqs: heapless::Vec::from_slice(&[uplink.header.seq]).unwrap(),
                    });
                    let mut buf = [0u8; MAX_DOWNLINK_LEN];
                    let bytes = encode_downlink(&receipt, &mut buf).unwrap().to_vec();
                    let down = Topic::down(topic.device_id).to_string();
                    let _ = receipts_tx.send((down, bytes));
                    let _ = seen_tx.send(Seen::Up(topic.device_id, uplink));
                }
                TopicKind::Status => {
                    let status = decode_status(&publish.payload).unwrap();
                    let _ = seen_tx.send(Seen::Status(topic.device_id, status.presence));
                }
                TopicKind::Down => {}
            }
        }
    });
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv())
            .await
            .expect("stand-in subscribed");
    }
    (seen_rx, Downlinks(downlinks))
}

pub async fn next_matching(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    what: &str,
    mut predicate: impl FnMut(&Seen) -> bool,
) -> Seen {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let item = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("stand-in running");
        if predicate(&item) {
            return item;
        }
    }
}
