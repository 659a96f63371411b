//! Idle latency: one alarm at a time, a few hundred, from a device's publish to the receipt
//! arriving back at the device, through the real gateway process and a private Mosquitto; the
//! baseline is a plain client that echoes a receipt for each uplink through the same broker (no
//! storage at all). Both the device and the echo client set TCP_NODELAY, as the gateway does.
//!
//! `cargo bench -p tec-tests --bench idle_latency` (IDLE_N alarms, default 300; IDLE_GAP_MS
//! between them, default 10). Figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use e2e::bench::{machine_info, quantile};
use e2e::{Broker, GatewayOptions, GatewayProcess};
use protocol::{
    AlarmKind, DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, Topic, UplinkBody, decode_downlink, encode_downlink,
    peek_uplink_header,
};
use rumqttc::NetworkOptions;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn options(client_id: &str, broker: &Broker) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    options
}

/// Polls until the subscription is granted, then hands every publish to `on_publish`.
async fn run_loop(
    mut eventloop: EventLoop,
    subscribed: mpsc::UnboundedSender<()>,
    mut on_publish: impl FnMut(&[u8], &[u8]),
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = subscribed.send(());
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => on_publish(&publish.topic, &publish.payload),
            Ok(_) => {}
            Err(e) => {
                eprintln!("connection error: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers every uplink with a receipt for it: the broker round trip with nothing else.
async fn start_echo(broker: &Broker) -> tokio::task::JoinHandle<()> {
    let (client, eventloop) = AsyncClient::new(options("bench.echo", broker), 1_000);
    client
        .subscribe(protocol::ALL_UPLINKS_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_loop(eventloop, subscribed_tx, move |topic, payload| {
        let Ok(topic) = Topic::parse(std::str::from_utf8(topic).unwrap_or_default()) else {
            return;
        };
        let Ok((_, header, _)) = peek_uplink_header(payload) else {
            return;
        };
        let mut seqs = heapless::Vec::new();
        let _ = seqs.push(header.seq);
        let mut buf = [0u8; MAX_DOWNLINK_LEN];
        let receipt = Downlink::new(DownlinkBody::Receipt {
            boot: header.boot,
            seqs,
        });
        let bytes = encode_downlink(&receipt, &mut buf).unwrap().to_vec();
        // Never await in the event loop: try_publish only queues.
        client
            .try_publish(Topic::down(topic.device_id).to_string(), QoS::AtLeastOnce, false, bytes)
            .unwrap();
    }));
    subscribed.recv().await.unwrap();
    task
}

/// A device that sends alarms one at a time and times each until its receipt.
struct Device {
    id: DeviceId,
    client: AsyncClient,
    receipts: mpsc::UnboundedReceiver<(u32, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn connect(broker: &Broker, id: &str) -> Self {
        let id = DeviceId::new(id).unwrap();
        let (client, eventloop) = AsyncClient::new(options(id.as_str(), broker), 1_000);
        client
            .subscribe(Topic::down(id).to_string(), QoS::AtLeastOnce)
            .await
            .unwrap();
        let (receipts_tx, receipts) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_loop(eventloop, subscribed_tx, move |_, payload| {
            let arrived = Instant::now();
            if let Ok(Downlink {
                body: DownlinkBody::Receipt { seqs, .. },
                ..
            }) = decode_downlink(payload)
            {
                for seq in seqs {
                    let _ = receipts_tx.send((seq, arrived));
                }
            }
        }));
        subscribed.recv().await.unwrap();
        Self {
            id,
            client,
            receipts,
            task,
        }
    }

    /// Round trips of `n` alarms, one at a time, `gap` apart; seqs from `first_seq`.
    async fn round_trips(&mut self, first_seq: u32, n: u32, gap: Duration) -> Vec<Duration> {
        let topic = Topic::up(self.id).to_string();
        let mut samples = Vec::with_capacity(n as usize);
        for seq in first_seq..first_seq + n {
            let payload = e2e::devices::encode(1, seq, UplinkBody::Alarm(AlarmKind::PendantPress)).unwrap();
            let sent = Instant::now();
            self.client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
            loop {
                let (receipted, arrived) = tokio::time::timeout(Duration::from_secs(30), self.receipts.recv())
                    .await
                    .expect("no receipt within 30 s")
                    .unwrap();
                if receipted == seq {
                    samples.push(arrived - sent);
                    break;
                }
            }
            tokio::time::sleep(gap).await;
        }
        samples
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn summary(samples: &[Duration]) -> (Duration, Duration) {
    (quantile(samples, 0.5).unwrap(), quantile(samples, 0.99).unwrap())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n = env_or("IDLE_N", 300) as u32;
    let gap = Duration::from_millis(env_or("IDLE_GAP_MS", 10));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("machine: {}", machine_info());
        println!("{n} alarms, one at a time, {gap:?} apart: device publish -> receipt at the device");
        let broker = Broker::start().unwrap();

        // (a) Baseline: an echo client answers through the same broker.
        let echo = start_echo(&broker).await;
        let mut device = Device::connect(&broker, "lat-0001").await;
        device.round_trips(0, 10, gap).await; // warm-up
        let plain = device.round_trips(10, n, gap).await;
        echo.abort();
        drop(device);
        let (plain_p50, plain_p99) = summary(&plain);
        println!(
            "(a) plain echo client: p50 {:.2} ms, p99 {:.2} ms",
            ms(plain_p50),
            ms(plain_p99)
        );

        // (b) The gateway process: durable commit, then PUBACK and receipt.
        let dir = tempfile::tempdir().unwrap();
        let gateway = GatewayProcess::start(GatewayOptions::new(
            env!("CARGO_BIN_EXE_gateway-under-test"),
            broker.url(),
            dir.path().join("data"),
        ))
        .unwrap();
        let mut device = Device::connect(&broker, "lat-0002").await;
        device.round_trips(0, 10, gap).await; // warm-up
        let through_gateway = device.round_trips(10, n, gap).await;
        let (gateway_p50, gateway_p99) = summary(&through_gateway);
        println!(
            "(b) gateway (fsync'd commit, then receipt): p50 {:.2} ms, p99 {:.2} ms",
            ms(gateway_p50),
            ms(gateway_p99)
        );
        println!(
            "ratio gateway/plain: p50 {:.1}x, p99 {:.1}x",
            gateway_p50.as_secs_f64() / plain_p50.as_secs_f64(),
            gateway_p99.as_secs_f64() / plain_p99.as_secs_f64()
        );
        drop(device);
        drop(gateway);
    });
}
