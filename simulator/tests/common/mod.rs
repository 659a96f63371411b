//! Shared by the Mosquitto tests: a broker process on a free port and a stand-in receipter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{
    ALL_STATUS_FILTER, ALL_UPLINKS_FILTER, DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, Presence, Topic,
    TopicKind, Uplink, decode_status, decode_uplink, encode_downlink,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto process on a free port, killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    _dir: PathBuf,
}

impl Broker {
    /// Anonymous access, no ACL.
    pub fn start() -> Self {
        Self::start_with("allow_anonymous true\n", |_| {})
    }

    /// Per-user passwords and the production-style ACL: each device may only publish to
    /// its own up and status topics and read its own down topic; `stand-in` may do all.
    pub fn start_with_users(users: &[(&str, &str)]) -> Self {
        let users: Vec<(String, String)> = users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect();
        Self::start_with("", move |dir| {
            let passwords = dir.join("passwd");
            std::fs::write(&passwords, "").unwrap();
            for (user, password) in &users {
                let status = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg(&passwords)
                    .arg(user)
                    .arg(password)
                    .status()
                    .expect("mosquitto_passwd runs");
                assert!(status.success(), "mosquitto_passwd failed for {user}");
            }
            let acl = dir.join("acl");
            std::fs::write(
                &acl,
                "user stand-in\ntopic readwrite tec/#\n\n\
                 pattern write tec/v1/dev/%u/up\npattern write tec/v1/dev/%u/status\npattern read tec/v1/dev/%u/down\n",
            )
            .unwrap();
            let conf = dir.join("mosquitto.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(&format!(
                "allow_anonymous false\npassword_file {}\nacl_file {}\n",
                passwords.display(),
                acl.display()
            ));
            std::fs::write(&conf, text).unwrap();
        })
    }

    fn start_with(extra: &str, prepare: impl FnOnce(&std::path::Path)) -> Self {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: install the Debian package `mosquitto`"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("tec-sim-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{extra}")).unwrap();
        prepare(&dir);
        let child = spawn_listening(&conf, port);
        Self { child, port, _dir: dir }
    }

    /// Kills the broker (as a crash would) and starts it again on the same port.
    pub fn restart_after(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn_listening(&self._dir.join("mosquitto.conf"), self.port);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn start_again(&mut self) {
        self.child = spawn_listening(&self._dir.join("mosquitto.conf"), self.port);
    }
}

fn spawn_listening(conf: &std::path::Path, port: u16) -> Child {
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
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
                TopicKind::Up => {
                    let uplink = decode_uplink(&publish.payload).unwrap();
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
    for _ in 0..2 {
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
