//! Load run and scale curve: a private Mosquitto, the real gateway process (release), a
//! background fleet of N devices at realistic rates, and pendant presses from devices running
//! the real firmware core (`simulator::spawn_local_device`). For each press it measures the time
//! from the firmware's publish to (a) the alert on the gateway's SSE stream
//! (`/api/v1/alerts/stream`, as an operator's console sees it) and (b) the receipt arriving back
//! at the device; and it prints the ingest rate, the CPU of gateway, Mosquitto and this process
//! (/proc/PID/stat utime+stime over the run), the gateway's peak memory (VmHWM) and the store's
//! bytes per event.
//!
//! The background fleet is a lighter load generator: the gateway's cost is per event and per
//! device, not per connection, so `LOAD_CONNECTIONS` MQTT connections publish for all N device
//! ids (anonymous test broker). Each device sends a heartbeat every `LOAD_PERIOD_S` (the
//! protocol's default heartbeat interval, 300 s) and a sensor change every three periods (one
//! per 15 minutes at 300 s: a home of five devices under `simulator::HomeRates` sends about that
//! much besides heartbeats: hourly battery and temperature, bed changes, PIR summaries). First
//! reports are staggered evenly over the first period, so a run of at least one period hears from
//! every device. All receipts go to one sink connection subscribed to `tec/v1/dev/+/down`
//! (the broker does the fan-out work real devices would cause). Background devices are not
//! registered: the gateway stores and receipts unknown devices' events (their alarms alert with
//! `unregistered_device`).
//!
//! The baseline, measured first in the same run: the same real-firmware device and a plain
//! client that answers each uplink with a receipt through the same broker (no gateway, no
//! load): the floor for (b), and its arrival at the plain client the floor for (a).
//!
//! ```text
//! cargo bench -p tec-tests --bench load
//! knobs: LOAD_DEVICES=10000 (comma list for a scale curve: 1000,10000,100000,1000000)
//!        LOAD_PERIOD_S=300 (heartbeat period; smaller compresses time: rates x 300/P)
//!        LOAD_SECS=LOAD_PERIOD_S (measured phase per point)
//!        LOAD_PRESS_PER_S=2 (pendant presses per second, each from its own firmware device)
//!        LOAD_CONNECTIONS=8 (generator connections), LOAD_BASELINE=0 to skip the baseline
//! ```
//! Figures go into BENCHMARKS.md ("Load run and scale curve").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::bench::{machine_info, process_memory, quantile};
use e2e::devices::{RawClient, encode};
use e2e::gateway_process::run_cli;
use e2e::{Broker, BrokerOptions, GatewayOptions, GatewayProcess};
use protocol::{
    DeviceId, DeviceStatus, Downlink, DownlinkBody, FirmwareVersion, MAX_DOWNLINK_LEN, SensorState, Topic, Uplink,
    UplinkBody, decode_uplink, encode_downlink, peek_uplink_header,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use simulator::{DeviceHandle, DeviceSpec, spawn_local_device};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const OPERATOR: &str = "olive";
const NEW_PASSWORD: &str = "load-bench-operator-password-1";
/// A press not receipted within this is counted as unreceipted (and reported), not timed.
const RECEIPT_WAIT: Duration = Duration::from_secs(120);
/// Sensor changes per device come every this many heartbeat periods.
const SENSOR_PERIODS: u64 = 3;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The Mosquitto process started for `broker` (its command line names its private directory).
fn mosquitto_pid(broker: &Broker) -> Option<u32> {
    let dir = broker.log_path().parent()?.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("mosquitto") && cmdline.contains(&dir)).then_some(pid)
    })
}

/// Bytes of all files under `dir` (apparent size, allocated size).
fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                let (a, b) = dir_bytes(&entry.path());
                total = (total.0 + a, total.1 + b);
            } else {
                total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
            }
        }
    }
    total
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "p50 X ms, p99 Y ms, max Z ms (n)".
fn describe(samples: &[Duration]) -> String {
    match (quantile(samples, 0.5), quantile(samples, 0.99), samples.iter().max()) {
        (Some(p50), Some(p99), Some(max)) => format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})",
            ms(p50),
            ms(p99),
            ms(*max),
            samples.len()
        ),
        _ => "no samples".into(),
    }
}

// ----- minimal HTTP over TCP: login, password change, the SSE stream ----------------------

async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

fn json_field(body: &str, field: &str) -> String {
    // The JSON may be chunked-framed: take the object between the first '{' and last '}'.
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |i| i + 1);
    let value: serde_json::Value = serde_json::from_str(&body[start..end]).unwrap();
    value[field].as_str().unwrap_or_default().to_string()
}

/// Logs the operator in (changing the one-time password) and returns a bearer token.
async fn operator_token(addr: SocketAddr, one_time: &str) -> String {
    let login = |password: String| async move {
        let body = serde_json::json!({"username": OPERATOR, "password": password}).to_string();
        let (status, body) = http(addr, "POST", "/api/v1/login", None, &body).await;
        assert_eq!(status, 200, "login: {body}");
        json_field(&body, "token")
    };
    let token = login(one_time.to_string()).await;
    let change = serde_json::json!({"old_password": one_time, "new_password": NEW_PASSWORD}).to_string();
    let (status, body) = http(addr, "POST", "/api/v1/password", Some(&token), &change).await;
    assert!(status < 300, "password change: {status} {body}");
    login(NEW_PASSWORD.to_string()).await
}

/// Follows the alert stream; sends (device, arrival) for each `data:` line naming a device.
async fn follow_alerts(addr: SocketAddr, token: String, out: mpsc::UnboundedSender<(String, Instant)>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream);
    let request = format!(
        "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    reader.get_mut().write_all(request.as_bytes()).await.unwrap();
    let mut line = String::new();
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap() == 0 {
            return;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("http/1.1") {
            assert!(lower.contains(" 200"), "alert stream: {line}");
        }
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
        if line == "\r\n" {
            break;
        }
    }
    let mut pending = String::new();
    let on_text = |text: &str, pending: &mut String| {
        let arrived = Instant::now();
        pending.push_str(text);
        while let Some(newline) = pending.find('\n') {
            let event_line: String = pending.drain(..=newline).collect();
            if let Some(data) = event_line.strip_prefix("data:")
                && let Ok(alert) = serde_json::from_str::<serde_json::Value>(data.trim())
                && let Some(device) = alert["device"].as_str()
            {
                let _ = out.send((device.to_string(), arrived));
            }
        }
    };
    loop {
        if chunked {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                return;
            }
            let mut chunk = vec![0u8; size + 2];
            if reader.read_exact(&mut chunk).await.is_err() {
                return;
            }
            chunk.truncate(size);
            on_text(&String::from_utf8_lossy(&chunk), &mut pending);
        } else {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let text = line.clone();
            on_text(&text, &mut pending);
        }
    }
}

// ----- pressing devices: the real firmware core ---------------------------------------------

/// Starts `ids` as real-firmware devices on one thread (a `LocalSet`), returns their handles.
fn spawn_firmware_devices(broker: &Broker, ids: Vec<DeviceId>) -> Vec<DeviceHandle> {
    let (host, port) = (broker.host().to_string(), broker.port());
    let (handles_tx, handles_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("firmware-devices".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let handles: Vec<DeviceHandle> = ids
                    .into_iter()
                    .map(|id| spawn_local_device(DeviceSpec::new(id, "unused", host.clone(), port)).unwrap())
                    .collect();
                let _ = handles_tx.send(handles);
            });
            runtime.block_on(local);
        })
        .unwrap();
    handles_rx.recv().unwrap()
}

async fn wait_ready(handles: &mut [DeviceHandle]) {
    for handle in handles {
        handle
            .wait_for(Duration::from_secs(60), |v| {
                v.connected && v.outbox_depth == 0 && v.next_seq > 0
            })
            .await
            .unwrap();
    }
}

/// Presses `handle` at `at`: the instant the press was handed to the firmware (it publishes
/// at once) and the instant its receipt emptied the outbox. Returns the handle: dropping it
/// would switch the device off.
async fn press_at(mut handle: DeviceHandle, at: tokio::time::Instant) -> (DeviceHandle, Instant, Option<Instant>) {
    tokio::time::sleep_until(at).await;
    let before = handle.view().next_seq;
    let pressed = Instant::now();
    handle.press();
    let receipted = handle
        .wait_for(RECEIPT_WAIT, |v| v.next_seq > before && v.outbox_depth == 0)
        .await
        .ok()
        .map(|_| Instant::now());
    (handle, pressed, receipted)
}

// ----- baseline: firmware device, plain echo client, no gateway -------------------------------

async fn start_echo(broker: &Broker, arrivals: mpsc::UnboundedSender<Instant>) -> tokio::task::JoinHandle<()> {
    let mut options = MqttOptions::new("bench.echo", broker.host(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(options, 1_000);
    // The firmware sends alarms on their own topic (SPEC 2.1), the rest on up.
    let filters = [protocol::ALL_UPLINKS_FILTER, protocol::ALL_ALARMS_FILTER]
        .map(|filter| rumqttc::v5::mqttbytes::v5::Filter::new(filter, QoS::AtLeastOnce));
    client.subscribe_many(filters).await.unwrap();
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let arrived = Instant::now();
                    let Ok(topic) = Topic::parse(std::str::from_utf8(&publish.topic).unwrap_or_default()) else {
                        continue;
                    };
                    let Ok((_, header, _)) = peek_uplink_header(&publish.payload) else {
                        continue;
                    };
                    if matches!(
                        decode_uplink(&publish.payload),
                        Ok(Uplink {
                            body: UplinkBody::Alarm(_),
                            ..
                        })
                    ) {
                        let _ = arrivals.send(arrived);
                    }
                    let mut seqs = heapless::Vec::new();
                    let _ = seqs.push(header.seq);
                    let mut buf = [0u8; MAX_DOWNLINK_LEN];
                    let receipt = Downlink::new(DownlinkBody::Receipt {
                        boot: header.boot,
                        seqs,
                    });
                    let bytes = encode_downlink(&receipt, &mut buf).unwrap().to_vec();
                    let _ =
                        client.try_publish(Topic::down(topic.device_id).to_string(), QoS::AtLeastOnce, false, bytes);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("echo connection error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    subscribed.recv().await.unwrap();
    task
}

/// Presses with real firmware, answered by the plain echo client: (arrival at the plain
/// client, receipt at the device) latencies.
async fn baseline(presses: usize) -> (Vec<Duration>, Vec<Duration>) {
    let broker = Broker::start().unwrap();
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let echo = start_echo(&broker, arrivals_tx).await;
    let ids = (0..presses)
        .map(|i| DeviceId::new(&format!("base-{i:05}")).unwrap())
        .collect();
    let mut handles = spawn_firmware_devices(&broker, ids);
    wait_ready(&mut handles).await;
    let (mut to_client, mut to_receipt, mut done) = (Vec::new(), Vec::new(), Vec::new());
    for handle in handles {
        while arrivals.try_recv().is_ok() {}
        let (handle, pressed, receipted) = press_at(handle, tokio::time::Instant::now()).await;
        done.push(handle);
        let arrived = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .unwrap()
            .unwrap();
        to_client.push(arrived.saturating_duration_since(pressed));
        to_receipt.push(receipted.unwrap() - pressed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    echo.abort();
    (to_client, to_receipt)
}

// ----- the background fleet -------------------------------------------------------------------

fn heartbeat(uptime_s: u32) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 3_900,
        battery_percent: 87,
        rssi_dbm: -61,
        uptime_s,
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

fn sensor(n: u32) -> UplinkBody {
    let state = match n % 4 {
        0 => SensorState::DoorOpen,
        1 => SensorState::DoorClosed,
        2 => SensorState::Motion,
        _ => SensorState::Temperature { centi_celsius: 2_050 },
    };
    UplinkBody::SensorChange { input: 0, state }
}

fn fleet_id(index: u64) -> String {
    format!("load-{index:07}")
}

/// One generator connection publishing for devices `first, first + stride, ...` below `devices`.
/// Stops at `until`; returns how many it published.
async fn generate(
    client: RawClient,
    first: u64,
    stride: u64,
    devices: u64,
    period: Duration,
    until: tokio::time::Instant,
    published: Arc<AtomicU64>,
) -> RawClient {
    let own = (devices.saturating_sub(first)).div_ceil(stride);
    if own == 0 {
        return client;
    }
    let mut next_seq = vec![0u32; own as usize];
    let started = tokio::time::Instant::now();
    let (mut heartbeats, mut sensors) = (0u64, 0u64);
    let sensor_period = period * SENSOR_PERIODS as u32;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let now = tick.tick().await;
        let elapsed = now.saturating_duration_since(started).as_secs_f64();
        let due_heartbeats = (elapsed / period.as_secs_f64() * own as f64) as u64;
        // Sensor changes: the same stagger over their longer period.
        let due_sensors = (elapsed / sensor_period.as_secs_f64() * own as f64) as u64;
        while heartbeats < due_heartbeats || sensors < due_sensors {
            let (local, body) = if heartbeats < due_heartbeats {
                let local = heartbeats % own;
                heartbeats += 1;
                (local, heartbeat((heartbeats / own) as u32 * period.as_secs() as u32))
            } else {
                let local = sensors % own;
                sensors += 1;
                (local, sensor((sensors / own) as u32))
            };
            let seq = &mut next_seq[local as usize];
            let payload = encode(1, *seq, body).unwrap();
            *seq += 1;
            let topic = format!("tec/v1/dev/{}/up", fleet_id(first + local * stride));
            client.publish(&topic, payload).await.unwrap();
            published.fetch_add(1, Ordering::Relaxed);
        }
        if now >= until {
            return client;
        }
    }
}

/// Subscribes to every device's downlinks (receipts) and counts them.
async fn receipt_sink(broker: &Broker, count: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let mut options = MqttOptions::new("load.receipts", broker.host(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    client.subscribe("tec/v1/dev/+/down", QoS::AtLeastOnce).await.unwrap();
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    subscribed.recv().await.unwrap();
    task
}

// ----- one point ------------------------------------------------------------------------------

struct Point {
    devices: u64,
    to_stream: Vec<Duration>,
    to_receipt: Vec<Duration>,
    missing_alerts: usize,
    unreceipted: usize,
    ingest_per_s: f64,
    gateway_cpu: f64,
    mosquitto_cpu: f64,
    own_cpu: f64,
    secs: f64,
    peak_kib: u64,
    end_rss_kib: u64,
    idle_rss_kib: u64,
    stored: f64,
    bytes: (u64, u64),
    load_before: String,
    load_after: String,
}

async fn run_point(devices: u64, period: Duration, secs: Duration, press_per_s: f64, connections: u64) -> Point {
    let load_before = loadavg();
    let broker = Broker::start_with(BrokerOptions {
        autosave_interval_s: 0,
        ..BrokerOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Users first, offline, as an administrator would before the gateway ever ran.
    std::fs::create_dir_all(&data).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let user_add = run_cli(
        binary,
        &[
            "user",
            "add",
            OPERATOR,
            "--role",
            "operator",
            "--data",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    let one_time = user_add
        .lines()
        .find_map(|line| line.strip_prefix("one-time password: "))
        .unwrap()
        .trim()
        .to_string();
    let gateway = GatewayProcess::start(GatewayOptions::new(binary, broker.url(), &data)).unwrap();
    let gateway_pid = gateway.pid().unwrap();
    let mosquitto = mosquitto_pid(&broker).expect("mosquitto's pid");
    let token = operator_token(gateway.http_addr(), &one_time).await;
    let (alerts_tx, mut alerts_rx) = mpsc::unbounded_channel();
    let stream = tokio::spawn(follow_alerts(gateway.http_addr(), token, alerts_tx));

    let presses = ((press_per_s * secs.as_secs_f64()).round() as usize).max(1);
    let ids: Vec<DeviceId> = (0..presses)
        .map(|i| DeviceId::new(&format!("press-{i:05}")).unwrap())
        .collect();
    let mut handles = spawn_firmware_devices(&broker, ids);
    wait_ready(&mut handles).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = process_memory(gateway_pid).unwrap().rss_kib;
    let bytes_before = dir_bytes(&data);
    let stored_before = gateway.metrics().unwrap().get("tec_events_stored_total");

    let receipts = Arc::new(AtomicU64::new(0));
    let sink = receipt_sink(&broker, receipts.clone()).await;
    let mut clients = Vec::new();
    for c in 0..connections {
        clients.push(
            RawClient::connect(&format!("load.gen.{c}"), broker.host(), broker.port(), None, 1_000)
                .await
                .unwrap(),
        );
    }

    let metrics_before = gateway.metrics().unwrap();
    let cpu_before = (
        cpu_seconds(gateway_pid).unwrap(),
        cpu_seconds(mosquitto).unwrap(),
        cpu_seconds(std::process::id()).unwrap(),
    );
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let until = start + secs;
    let published = Arc::new(AtomicU64::new(0));
    let generators: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, client)| {
            tokio::spawn(generate(
                client,
                c as u64,
                connections,
                devices,
                period,
                until,
                published.clone(),
            ))
        })
        .collect();
    let gap = secs.as_secs_f64() / presses as f64;
    let press_tasks: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(i, handle)| {
            let id = handle.device_id().to_string();
            let at = start + Duration::from_secs_f64(gap * (i as f64 + 0.5));
            tokio::spawn(async move {
                let (handle, pressed, receipted) = press_at(handle, at).await;
                (id, handle, pressed, receipted)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for generator in generators {
        clients.push(generator.await.unwrap());
    }
    let mut pressed = Vec::new();
    for task in press_tasks {
        pressed.push(task.await.unwrap());
    }
    // Everything published must have been taken in before the figures are read.
    let total = published.load(Ordering::Relaxed) as f64 + metrics_before.get("tec_ingest_received_total");
    let drain_started = Instant::now();
    while gateway.metrics().unwrap().get("tec_ingest_received_total") < total + presses as f64 {
        assert!(
            drain_started.elapsed() < Duration::from_secs(120),
            "gateway did not take everything in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = (
        cpu_seconds(gateway_pid).unwrap(),
        cpu_seconds(mosquitto).unwrap(),
        cpu_seconds(std::process::id()).unwrap(),
    );
    let metrics = gateway.metrics().unwrap();
    let memory = process_memory(gateway_pid).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    while let Ok((device, at)) = alerts_rx.try_recv() {
        first_seen.entry(device).or_insert(at);
    }
    let (mut to_stream, mut to_receipt, mut missing_alerts, mut unreceipted) = (Vec::new(), Vec::new(), 0, 0);
    for (id, _, at, receipted) in &pressed {
        match first_seen.get(id) {
            Some(seen) => to_stream.push(seen.saturating_duration_since(*at)),
            None => missing_alerts += 1,
        }
        match receipted {
            Some(receipted) => to_receipt.push(*receipted - *at),
            None => unreceipted += 1,
        }
    }
    stream.abort();
    sink.abort();
    drop(pressed);
    for client in clients {
        client.disconnect().await;
    }
    let stored = metrics.get("tec_events_stored_total") - stored_before;
    let bytes_after = dir_bytes(&data);
    let received = metrics.get("tec_ingest_received_total") - metrics_before.get("tec_ingest_received_total");
    drop(gateway);
    Point {
        devices,
        to_stream,
        to_receipt,
        missing_alerts,
        unreceipted,
        ingest_per_s: received / wall,
        gateway_cpu: cpu_after.0 - cpu_before.0,
        mosquitto_cpu: cpu_after.1 - cpu_before.1,
        own_cpu: cpu_after.2 - cpu_before.2,
        secs: wall,
        peak_kib: memory.peak_kib,
        end_rss_kib: memory.rss_kib,
        idle_rss_kib,
        stored,
        bytes: (
            bytes_after.0.saturating_sub(bytes_before.0),
            bytes_after.1.saturating_sub(bytes_before.1),
        ),
        load_before,
        load_after: loadavg(),
    }
}

fn main() {
    let sizes: Vec<u64> = std::env::var("LOAD_DEVICES")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .expect("LOAD_DEVICES: numbers, comma-separated")
        })
        .collect();
    let period = Duration::from_secs(env_u64("LOAD_PERIOD_S", 300).max(1));
    let secs = Duration::from_secs(env_u64("LOAD_SECS", period.as_secs()).max(1));
    let press_per_s = env_f64("LOAD_PRESS_PER_S", 2.0);
    let connections = env_u64("LOAD_CONNECTIONS", 8).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("machine: {}", machine_info());
        println!(
            "heartbeat every {} s per device (protocol default 300 s: time compressed x{:.1}), a sensor change every {} s, \
             {press_per_s} presses/s from real-firmware devices, {connections} generator connections, {} s per point",
            period.as_secs(),
            300.0 / period.as_secs_f64(),
            period.as_secs() * SENSOR_PERIODS,
            secs.as_secs()
        );
        if secs < period {
            println!("note: LOAD_SECS < LOAD_PERIOD_S: not every device reports in the run");
        }
        if env_u64("LOAD_BASELINE", 1) == 1 {
            let load = loadavg();
            let (to_client, to_receipt) = baseline(30).await;
            println!("baseline (no gateway, no load; load avg {load} -> {}):", loadavg());
            println!("  firmware publish -> plain client:  {}", describe(&to_client));
            println!("  firmware publish -> echo receipt at device: {}", describe(&to_receipt));
        }
        let mut points = Vec::new();
        for &devices in &sizes {
            let point = run_point(devices, period, secs, press_per_s, connections).await;
            print_point(&point);
            points.push(point);
        }
        if points.len() > 1 {
            println!();
            println!(
                "| devices | ingest ev/s | stream p50 / p99 / max ms | receipt p50 / p99 / max ms | gateway CPU % | mosquitto CPU % | generator CPU % | gateway VmHWM MiB | bytes/event | load avg |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
            for p in &points {
                let q = |s: &[Duration], x: f64| quantile(s, x).map_or(f64::NAN, ms);
                let max = |s: &[Duration]| s.iter().max().copied().map_or(f64::NAN, ms);
                println!(
                    "| {} | {:.0} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} → {} |",
                    p.devices,
                    p.ingest_per_s,
                    q(&p.to_stream, 0.5),
                    q(&p.to_stream, 0.99),
                    max(&p.to_stream),
                    q(&p.to_receipt, 0.5),
                    q(&p.to_receipt, 0.99),
                    max(&p.to_receipt),
                    100.0 * p.gateway_cpu / p.secs,
                    100.0 * p.mosquitto_cpu / p.secs,
                    100.0 * p.own_cpu / p.secs,
                    mib(p.peak_kib),
                    p.bytes.0 as f64 / p.stored.max(1.0),
                    p.load_before,
                    p.load_after
                );
            }
        }
    });
}

fn print_point(p: &Point) {
    println!();
    println!(
        "== {} devices, {:.1} s (load avg {} -> {}) ==",
        p.devices, p.secs, p.load_before, p.load_after
    );
    println!("  press -> alert on the SSE stream: {}", describe(&p.to_stream));
    println!("  press -> receipt at the device:   {}", describe(&p.to_receipt));
    if p.missing_alerts > 0 {
        println!("  ALERTS MISSING from the stream: {}", p.missing_alerts);
    }
    if p.unreceipted > 0 {
        println!("  PRESSES NOT RECEIPTED within {RECEIPT_WAIT:?}: {}", p.unreceipted);
    }
    println!("  ingest: {:.0} events/s ({:.0} stored)", p.ingest_per_s, p.stored);
    println!(
        "  CPU over the run: gateway {:.1} s ({:.0}% of a core), mosquitto {:.1} s ({:.0}%), bench process (generator, firmware devices, SSE client) {:.1} s ({:.0}%)",
        p.gateway_cpu,
        100.0 * p.gateway_cpu / p.secs,
        p.mosquitto_cpu,
        100.0 * p.mosquitto_cpu / p.secs,
        p.own_cpu,
        100.0 * p.own_cpu / p.secs
    );
    println!(
        "  gateway memory: idle RSS {:.1} MiB, end RSS {:.1} MiB, peak (VmHWM) {:.1} MiB; {:.2} KiB per device above idle",
        mib(p.idle_rss_kib),
        mib(p.end_rss_kib),
        mib(p.peak_kib),
        p.peak_kib.saturating_sub(p.idle_rss_kib) as f64 / p.devices as f64
    );
    println!(
        "  store: +{:.1} MiB apparent, +{:.1} MiB allocated; {:.0} bytes per stored event (apparent)",
        p.bytes.0 as f64 / 1048576.0,
        p.bytes.1 as f64 / 1048576.0,
        p.bytes.0 as f64 / p.stored.max(1.0)
    );
}
