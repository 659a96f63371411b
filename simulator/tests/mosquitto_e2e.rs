#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! A simulated pendant against a real Mosquitto: the press goes up, a stand-in receipter
//! (not the gateway) answers with a receipt, and the pendant shows "received by centre".
//! Fails, never skips, when Mosquitto is not installed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firmware::Indication;
use protocol::{
    ALL_STATUS_FILTER, ALL_UPLINKS_FILTER, AlarmKind, DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, Presence,
    Topic, TopicKind, Uplink, UplinkBody, decode_status, decode_uplink, encode_downlink,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use simulator::{DeviceSpec, spawn_device};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto process on a free port, killed on drop.
struct Broker {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Broker {
    fn start() -> Self {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: install the Debian package `mosquitto`"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("tec-sim-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, _dir: dir }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

#[derive(Debug)]
enum Seen {
    Up(DeviceId, Uplink),
    Status(DeviceId, Presence),
}

/// Subscribes to every device's up and status topics; receipts every uplink at once.
async fn stand_in_receipter(port: u16) -> mpsc::UnboundedReceiver<Seen> {
    let mut options = MqttOptions::new("stand-in-receipter", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client.subscribe(ALL_UPLINKS_FILTER, QoS::AtLeastOnce).await.unwrap();
    client.subscribe(ALL_STATUS_FILTER, QoS::AtLeastOnce).await.unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(event) => event,
                Err(error) => panic!("stand-in lost the broker: {error}"),
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
                    client.try_publish(down, QoS::AtLeastOnce, false, bytes).unwrap();
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
    seen_rx
}

async fn next_matching(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendant_press_is_receipted_through_mosquitto_and_survives_an_outage() {
    let broker = Broker::start();
    let mut seen = stand_in_receipter(broker.port).await;
    let id = DeviceId::new("sim-h00001-pendant").unwrap();
    let mut device = spawn_device(DeviceSpec::new(id, "unused", "127.0.0.1", broker.port)).unwrap();

    // Connects, announces itself, and its boot heartbeat is receipted.
    next_matching(
        &mut seen,
        "Online presence",
        |s| matches!(s, Seen::Status(d, Presence::Online { boot: 1 }) if *d == id),
    )
    .await;
    device
        .wait_for(Duration::from_secs(10), |v| v.connected && v.outbox_depth == 0)
        .await
        .unwrap();

    // The press reaches the stand-in, whose receipt empties the outbox.
    device.press();
    let Seen::Up(from, uplink) = next_matching(
        &mut seen,
        "the press",
        |s| matches!(s, Seen::Up(_, u) if u.body == UplinkBody::Alarm(AlarmKind::PendantPress)),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(from, id);
    assert_eq!(uplink.header.boot, 1);
    let view = device
        .wait_for(Duration::from_secs(10), |v| {
            v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    assert_eq!(view.next_seq, uplink.header.seq + 1);

    // An outage: the broker publishes the last will; a press meanwhile waits in the outbox
    // and goes out after the reconnect.
    device.go_offline(2_000);
    next_matching(
        &mut seen,
        "the last will",
        |s| matches!(s, Seen::Status(d, Presence::Offline) if *d == id),
    )
    .await;
    device.press();
    device
        .wait_for(Duration::from_secs(5), |v| {
            !v.connected && v.indication == Indication::Sending
        })
        .await
        .unwrap();
    let Seen::Up(_, again) = next_matching(&mut seen, "the press after the outage", |s| {
        matches!(s, Seen::Up(_, u) if u.body == UplinkBody::Alarm(AlarmKind::PendantPress) && u.header.seq > uplink.header.seq)
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(again.header.boot, 1);
    let view = device
        .wait_for(Duration::from_secs(10), |v| {
            v.connected && v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    assert!(view.connects >= 2);

    let last = device.stop().await.unwrap();
    assert!(last.stopped);
    next_matching(
        &mut seen,
        "Offline on stop",
        |s| matches!(s, Seen::Status(d, Presence::Offline) if *d == id),
    )
    .await;
}
