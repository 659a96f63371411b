//! Ingest benchmark: how fast the gateway drains a backlog queued by Mosquitto while it was away,
//! compared with a plain MQTT subscriber draining the same backlog (the reference: the broker and
//! the network path with no storage at all).
//!
//! `cargo bench -p tec-tests --bench ingest` (BENCH_N uplinks, default 2,000,000 so each drain
//! lasts about 10 s or more, from BENCH_DEVICES publishers, default 100; BENCH_RUNS pairs, default
//! 5, plain and gateway alternating so a neighbour's load falls on both alike). It prints each
//! run and the spread of the ratio. Figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::devices::{RawClient, body_for, encode};
use e2e::plain::{PlainOptions, PlainSubscriber};
use e2e::{Broker, BrokerOptions, device_ids};
use gateway::config::Config;
use gateway::domain::SystemClock;
use gateway::metrics::IngestStats;
use protocol::Topic;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Publishes `n` distinct uplinks spread over `devices` publishers and waits for every PUBACK,
/// so the whole backlog sits in the broker's queue for the absent subscriber.
async fn publish_backlog(broker: &Broker, n: usize, devices: usize, boot: u32) -> Duration {
    let started = Instant::now();
    let ids = device_ids("bench", devices).unwrap();
    let mut tasks = Vec::new();
    for (index, id) in ids.into_iter().enumerate() {
        let count = n / devices + usize::from(index < n % devices);
        let (host, port) = (broker.host().to_string(), broker.port());
        tasks.push(tokio::spawn(async move {
            let client = RawClient::connect(&format!("pub-{id}"), &host, port, None, 1_000)
                .await
                .unwrap();
            let topic = Topic::up(id).to_string();
            for seq in 0..count as u32 {
                client
                    .publish(&topic, encode(boot, seq, body_for(seq, None)).unwrap())
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
    started.elapsed()
}

fn plain_options(broker: &Broker) -> PlainOptions {
    PlainOptions {
        host: broker.host().into(),
        port: broker.port(),
        client_id: "bench-plain".into(),
        credentials: None,
        session_expiry_s: 3_600,
        track_keys: false,
        send_receipts: false,
        // BENCH_PLAIN_RECEIVE_MAX=4096 gives it the gateway's in-flight window (experiment).
        receive_maximum: std::env::var("BENCH_PLAIN_RECEIVE_MAX")
            .ok()
            .and_then(|v| v.parse().ok()),
    }
}

struct Run {
    seconds: f64,
    rate: f64,
}

async fn plain_drain(broker: &Broker, n: usize, devices: usize) -> Run {
    // Create the persistent session and its subscription, then go away.
    PlainSubscriber::connect(plain_options(broker))
        .await
        .unwrap()
        .disconnect()
        .await;
    let published = publish_backlog(broker, n, devices, 1).await;
    eprintln!("plain: {n} uplinks queued in {published:.2?}");
    let started = Instant::now();
    let subscriber = PlainSubscriber::connect(plain_options(broker)).await.unwrap();
    subscriber
        .wait_received(n as u64, Duration::from_secs(600))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    subscriber.disconnect().await;
    Run {
        seconds: elapsed.as_secs_f64(),
        rate: n as f64 / elapsed.as_secs_f64(),
    }
}

fn gateway_config(broker: &Broker, data_dir: &std::path::Path) -> Config {
    let mut config = e2e::scenario::in_process_config(broker, data_dir, "bench.gateway").unwrap();
    // Experiment knob; the reported figures use the gateway's defaults.
    if let Some(max_batch) = std::env::var("BENCH_MAX_BATCH").ok().and_then(|v| v.parse().ok()) {
        config.ingest.max_batch = max_batch;
    }
    config
}

async fn wait_ready(handle: &gateway::app::GatewayHandle) {
    let started = Instant::now();
    while !handle.mqtt_ready() {
        assert!(started.elapsed() < Duration::from_secs(30), "gateway did not connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The same backlog drained by the gateway, in process: group commit to redb with a durable
/// (fsync) commit per batch, then PUBACKs and receipts.
async fn gateway_drain(broker: &Broker, n: usize, devices: usize) -> (Run, IngestStats) {
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock);
    // First run: creates the store and the persistent session with its subscriptions.
    let handle = gateway::app::spawn(gateway_config(broker, data.path()), clock.clone())
        .await
        .unwrap();
    wait_ready(&handle).await;
    handle.shutdown().await.unwrap();
    let published = publish_backlog(broker, n, devices, 1).await;
    eprintln!("gateway: {n} uplinks queued in {published:.2?}");

    let started = Instant::now();
    let handle = gateway::app::spawn(gateway_config(broker, data.path()), clock)
        .await
        .unwrap();
    loop {
        if handle.stats().stored >= n as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "gateway did not drain: {:?}",
            handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let stats = handle.stats();
    handle.shutdown().await.unwrap();
    (
        Run {
            seconds: elapsed.as_secs_f64(),
            rate: n as f64 / elapsed.as_secs_f64(),
        },
        stats,
    )
}

/// A fresh broker per part, so one part's persistent session does not queue the other's backlog.
/// It saves its database only at exit, so no autosave lands inside a timed drain.
fn quiet_broker() -> BrokerOptions {
    BrokerOptions {
        autosave_interval_s: 0,
        ..BrokerOptions::default()
    }
}

/// The 1-minute load average, to print next to each run's figures (the machine is shared).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Minimum, median and maximum (nearest rank) of a non-empty sample.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((*sorted.first()?, *sorted.get(sorted.len() / 2)?, *sorted.last()?))
}

fn main() {
    let n = env_or("BENCH_N", 2_000_000);
    let devices = env_or("BENCH_DEVICES", 100).max(1);
    let runs = env_or("BENCH_RUNS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("machine: {}", e2e::bench::machine_info());
        println!("backlog: {n} QoS 1 uplinks from {devices} publishers, queued by Mosquitto for a persistent session");

        // BENCH_ONLY=gateway skips the baseline (for profiling the gateway alone).
        let only_gateway = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "gateway");
        let mut ratios = Vec::new();
        let (mut plain_rates, mut gateway_rates) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            let plain = if only_gateway {
                None
            } else {
                let load_before = load_average();
                let broker = Broker::start_with(quiet_broker()).unwrap();
                let plain = plain_drain(&broker, n, devices).await;
                println!(
                    "run {run} (a) plain rumqttc subscriber: drained {n} in {:.2} s = {:.0} msg/s (load {load_before} -> {})",
                    plain.seconds,
                    plain.rate,
                    load_average()
                );
                plain_rates.push(plain.rate);
                Some(plain)
            };

            let load_before = load_average();
            let broker = Broker::start_with(quiet_broker()).unwrap();
            let (gateway, stats) = gateway_drain(&broker, n, devices).await;
            println!(
                "run {run} (b) gateway (durable commits, receipts): drained {n} in {:.2} s = {:.0} msg/s (load {load_before} -> {})",
                gateway.seconds,
                gateway.rate,
                load_average()
            );
            println!(
                "    stored {}, duplicates {}, commits {}, mean batch {:.1}, receipts sent {}, receive-to-commit p50 {:?} p99 {:?}",
                stats.stored,
                stats.duplicates,
                stats.commits,
                stats.mean_batch_size,
                stats.receipts_sent,
                stats.receive_to_commit_p50,
                stats.receive_to_commit_p99
            );
            gateway_rates.push(gateway.rate);
            if let Some(plain) = plain {
                let ratio = gateway.rate / plain.rate;
                println!("run {run} ratio gateway/plain = {ratio:.2} (target >= 1.0 on every run)");
                ratios.push(ratio);
            }
        }
        for (what, values) in [("plain msg/s", &plain_rates), ("gateway msg/s", &gateway_rates), ("ratio", &ratios)] {
            if let Some((min, median, max)) = spread(values) {
                println!("{what} over {} runs: min {min:.2}, median {median:.2}, max {max:.2}", values.len());
            }
        }
        let below = ratios.iter().filter(|&&r| r < 1.0).count();
        if !ratios.is_empty() {
            println!("runs where the gateway drained slower than the plain subscriber: {below} of {}", ratios.len());
        }
    });
}
