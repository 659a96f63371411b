//! Alarms behind a backlog: after a gateway outage the broker holds the telemetry of the whole
//! fleet for the gateway's persistent session, and delivers that one session's queue in order.
//! How long do (1) an alarm raised during the outage and (2) one raised just after the restart
//! take to reach the gateway's live alert stream?
//!
//! Both ways of sending an alarm are measured in the same run, so the comparison is fair: on
//! `up` (firmware from before SPEC 2.1: the alarm queues behind the telemetry) and on the
//! device's `alarm` topic (the gateway reads it on a session of its own).
//!
//! `cargo bench -p tec-tests --bench backlog`
//!
//! The backlog is the number of messages a 5-minute outage at 100,000 devices queues: a heartbeat
//! every 5 minutes each (100,000) plus sensor traffic, counted as two sensor messages per device
//! per 5 minutes (200,000: motion summaries, doors, bed, temperature and battery readings), so
//! 300,000 in all (BACKLOG_N). It is published fast by BACKLOG_PUBLISHERS connections (default
//! 100), each speaking for BACKLOG_DEVICES / BACKLOG_PUBLISHERS device ids (default 100,000 ids in
//! all), instead of by 100,000 real devices over 5 minutes: the gateway's cost is per event and
//! per device, and the broker's queue for the gateway is the same. BACKLOG_RUNS repeats (default 3).
//! BACKLOG_MAX_BATCH sets the gateway's `ingest.max_batch` (default: its own default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::devices::{RawClient, body_for, encode};
use e2e::{Broker, BrokerOptions};
use gateway::domain::{AlertState, SystemClock};
use protocol::{AlarmKind, DeviceId, Topic, TopicKind, UplinkBody};
use tokio::sync::broadcast;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Queues `messages` telemetry uplinks for `devices` device ids over `publishers` connections and
/// waits for every PUBACK. Message `i` of a publisher goes to its device `i % per_publisher` with
/// sequence number `i / per_publisher`, so each device's uplinks are in order with distinct keys.
async fn publish_telemetry(broker: &Broker, messages: usize, devices: usize, publishers: usize, part: u32) {
    let per_publisher_devices = devices.div_ceil(publishers).max(1);
    let mut tasks = Vec::new();
    for publisher in 0..publishers {
        let count = messages / publishers + usize::from(publisher < messages % publishers);
        let (host, port) = (broker.host().to_string(), broker.port());
        tasks.push(tokio::spawn(async move {
            let client = RawClient::connect(&format!("telemetry-{publisher}"), &host, port, None, 1_000)
                .await
                .unwrap();
            let topics: Vec<String> = (0..per_publisher_devices)
                .map(|d| Topic::up(DeviceId::new(&format!("fleet-{publisher:03}-{d:05}")).unwrap()).to_string())
                .collect();
            for i in 0..count {
                let device = i % per_publisher_devices;
                // The two parts (before and after the alarm) use different sequence ranges.
                let seq = (part << 20) | (i / per_publisher_devices) as u32;
                // A third heartbeats, the rest sensor changes (body_for's 1..=4).
                let kind = if i % 3 == 0 { 0 } else { 1 + (i % 4) as u32 };
                client
                    .publish(&topics[device], encode(1, seq, body_for(kind, None)).unwrap())
                    .await
                    .unwrap();
            }
            client
                .wait_pubacks(count as u64, Duration::from_secs(300))
                .await
                .unwrap();
            client.disconnect().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// The two ways an alarm reaches the broker.
const LANES: [(TopicKind, &str); 2] = [(TopicKind::Up, "on up"), (TopicKind::Alarm, "on alarm")];

/// One pendant press from `device` on its `kind` topic, PUBACKed by the broker (so it is queued
/// for the gateway).
async fn press(client: &RawClient, device: &str, kind: TopicKind) {
    let topic = Topic::new(DeviceId::new(device).unwrap(), kind).to_string();
    client
        .publish_answered(
            &topic,
            encode(1, 0, UplinkBody::Alarm(AlarmKind::PendantPress)).unwrap(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
}

/// An alert raised by a device, when it reached the stream, and its `late_by_ms`.
type RaisedSeen = (String, Instant, Option<i64>);

/// What one lane's two alarms did.
struct LaneOutcome {
    during_after_restart: Duration,
    after_after_press: Duration,
    after_after_restart: Duration,
    during_late_by_ms: Option<i64>,
}

struct Outcome {
    drain: Duration,
    /// In the order of [`LANES`].
    lanes: Vec<LaneOutcome>,
}

fn device_name(kind: TopicKind, when: &str) -> String {
    format!("alarm-{}-{when}", kind.suffix())
}

async fn run_once(messages: usize, devices: usize, publishers: usize, max_batch: Option<usize>) -> Outcome {
    let broker = Broker::start_with(BrokerOptions {
        autosave_interval_s: 0,
        ..BrokerOptions::default()
    })
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = e2e::scenario::in_process_config(&broker, data.path(), "backlog.gateway").unwrap();
        if let Some(max_batch) = max_batch {
            config.ingest.max_batch = max_batch;
        }
        config
    };
    let clock = Arc::new(SystemClock);

    // The gateway's first start creates its persistent session; then it goes away (the outage).
    let handle = gateway::app::spawn(config(), clock.clone()).await.unwrap();
    let started = Instant::now();
    while !handle.mqtt_ready() {
        assert!(started.elapsed() < Duration::from_secs(30), "gateway did not connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.shutdown().await.unwrap();

    // The outage: half the telemetry, the alarms raised during it, the other half.
    let pendants = RawClient::connect("pendants", broker.host(), broker.port(), None, 10)
        .await
        .unwrap();
    let queueing = Instant::now();
    publish_telemetry(&broker, messages / 2, devices, publishers, 0).await;
    for (kind, _) in LANES {
        press(&pendants, &device_name(kind, "during"), kind).await;
    }
    publish_telemetry(&broker, messages - messages / 2, devices, publishers, 1).await;
    eprintln!(
        "queued {messages} telemetry uplinks and {} alarms in {:.2?}",
        LANES.len(),
        queueing.elapsed()
    );

    // The restart; the second alarm is pressed as soon as the gateway is back.
    let restarted = Instant::now();
    let handle = gateway::app::spawn(config(), clock).await.unwrap();
    let mut alerts = handle.subscribe_alerts();
    let seen: Arc<Mutex<Vec<RaisedSeen>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let change = match alerts.recv().await {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        eprintln!("alert stream lagged by {missed}");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if change.alert.state == AlertState::Raised
                    && let Some(device) = change.alert.device
                {
                    seen.lock()
                        .unwrap()
                        .push((device.as_str().to_string(), Instant::now(), change.alert.late_by_ms));
                }
            }
        })
    };
    let mut pressed = Vec::new();
    for (kind, _) in LANES {
        pressed.push(Instant::now());
        press(&pendants, &device_name(kind, "after"), kind).await;
    }

    let total = messages as u64 + 2 * LANES.len() as u64;
    let find = |device: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .find(|(d, _, _)| d == device)
            .map(|(_, at, late)| (*at, *late))
    };
    let all_seen = || {
        LANES.iter().all(|(kind, _)| {
            find(&device_name(*kind, "during")).is_some() && find(&device_name(*kind, "after")).is_some()
        })
    };
    loop {
        if handle.stats().stored >= total && all_seen() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(600),
            "gateway did not drain: {:?}",
            handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drain = restarted.elapsed();
    let lanes = LANES
        .iter()
        .zip(&pressed)
        .map(|((kind, _), pressed)| {
            let (during_at, during_late_by_ms) = find(&device_name(*kind, "during")).unwrap();
            let (after_at, _) = find(&device_name(*kind, "after")).unwrap();
            LaneOutcome {
                during_after_restart: during_at - restarted,
                after_after_press: after_at - *pressed,
                after_after_restart: after_at - restarted,
                during_late_by_ms,
            }
        })
        .collect();
    recorder.abort();
    pendants.disconnect().await;
    handle.shutdown().await.unwrap();
    Outcome { drain, lanes }
}

fn main() {
    let messages = env_or("BACKLOG_N", 300_000);
    let devices = env_or("BACKLOG_DEVICES", 100_000).max(1);
    let publishers = env_or("BACKLOG_PUBLISHERS", 100).max(1);
    let runs = env_or("BACKLOG_RUNS", 3).max(1);
    // The gateway's `ingest.max_batch` (default: the gateway's default).
    let max_batch = std::env::var("BACKLOG_MAX_BATCH").ok().and_then(|v| v.parse().ok());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("machine: {}", e2e::bench::machine_info());
    println!(
        "backlog: {messages} telemetry uplinks from {devices} device ids over {publishers} connections \
         (a 5-minute outage at 100,000 devices); per lane (alarm on up, alarm on alarm) one alarm queued \
         halfway through and one pressed at the restart"
    );
    for run in 1..=runs {
        let load_before = load_average();
        let outcome = runtime.block_on(run_once(messages, devices, publishers, max_batch));
        println!(
            "run {run}: drained in {:.2} s (load {load_before} -> {})",
            outcome.drain.as_secs_f64(),
            load_average(),
        );
        for ((_, lane), found) in LANES.iter().zip(&outcome.lanes) {
            println!(
                "  {lane:>8}: raised during the outage -> stream {:>7.0} ms after the restart (late_by {:?} ms); \
                 pressed at the restart -> stream {:>7.0} ms after its press ({:.0} ms after the restart)",
                found.during_after_restart.as_secs_f64() * 1e3,
                found.during_late_by_ms,
                found.after_after_press.as_secs_f64() * 1e3,
                found.after_after_restart.as_secs_f64() * 1e3,
            );
        }
    }
}
