//! Hostile load: many publishers flood the real gateway process through a private Mosquitto with
//! junk just under the gateway's maximum packet size (the most a publish can cost it), publishes
//! far above it (the broker never sends those to us) and small junk, while devices send real
//! alarms that must all be stored. Prints the gateway's idle memory against its peak (VmHWM).
//!
//! The worst case for the gateway: the flood is queued by the broker while the gateway is away
//! (its persistent session), so on reconnect the broker sends it as fast as the socket takes it,
//! far faster than commits go; and the broker has no `message_size_limit`, so only the gateway's
//! own maximum packet size and in-flight byte budget stand between the flood and its memory.
//! (FLOOD_LIVE=1 floods a running gateway instead.)
//!
//! `cargo bench -p tec-tests --bench flood`. Knobs: FLOOD_PUBLISHERS (16), FLOOD_EACH (1000 junk
//! publishes each), FLOOD_ALARMS (50 per alarm device, 4 devices), FLOOD_JUNK_BYTES (3840),
//! FLOOD_OVERSIZE_BYTES (65536), FLOOD_CONFIG (a gateway config file, e.g. to try other limits).
//! Figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::bench::{ProcessMemory, machine_info, process_memory};
use e2e::devices::{RawClient, encode};
use e2e::{Broker, BrokerOptions, GatewayOptions, GatewayProcess, SentKey, device_ids};
use protocol::{AlarmKind, Topic, UplinkBody};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

const ALARM_DEVICES: usize = 4;

/// The n-th junk publish: 70 % just under the maximum packet, 10 % far above it, 20 % small.
fn junk(n: usize, junk_bytes: usize, oversize_bytes: usize) -> Vec<u8> {
    match n % 10 {
        0..=6 => vec![0x55; junk_bytes],
        7 => vec![0xaa; oversize_bytes],
        _ => vec![0xff; 9],
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let publishers = env_or("FLOOD_PUBLISHERS", 16).max(1);
    let each = env_or("FLOOD_EACH", 1_000);
    let alarms_each = env_or("FLOOD_ALARMS", 50) as u32;
    let junk_bytes = env_or("FLOOD_JUNK_BYTES", 3_840);
    let oversize_bytes = env_or("FLOOD_OVERSIZE_BYTES", 64 * 1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("machine: {}", machine_info());
        let broker = Broker::start_with(BrokerOptions {
            autosave_interval_s: 0,
            ..BrokerOptions::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut options = GatewayOptions::new(env!("CARGO_BIN_EXE_gateway-under-test"), broker.url(), &data_dir);
        if let Ok(config) = std::env::var("FLOOD_CONFIG") {
            options.extra_args = vec!["--config".into(), config];
        }
        let live = std::env::var("FLOOD_LIVE").is_ok_and(|v| v == "1");
        let mut gateway = GatewayProcess::start(options).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = process_memory(gateway.pid().unwrap()).unwrap();
        if !live {
            // Away: the broker queues the flood for the gateway's session.
            gateway.terminate().unwrap();
        }

        let oversize_each = (0..each).filter(|n| n % 10 == 7).count();
        let junk_reaching = (each - oversize_each) * publishers;
        let alarms_total = ALARM_DEVICES * alarms_each as usize;
        let flood_bytes: usize = (0..each).map(|n| junk(n, junk_bytes, oversize_bytes).len()).sum::<usize>() * publishers;
        println!(
            "flood: {publishers} publishers x {each} junk ({junk_bytes} B x70%, {oversize_bytes} B x10%, 9 B x20%) = {:.1} MiB, \
             plus {ALARM_DEVICES} devices x {alarms_each} alarms; broker without message_size_limit",
            flood_bytes as f64 / (1024.0 * 1024.0)
        );

        let started = Instant::now();
        let mut tasks = Vec::new();
        for index in 0..publishers {
            let (host, port) = (broker.host().to_string(), broker.port());
            tasks.push(tokio::spawn(async move {
                let client = RawClient::connect(&format!("flood.{index}"), &host, port, None, 1_000)
                    .await
                    .unwrap();
                let topic = format!("tec/v1/dev/junk-{index:04}/up");
                for n in 0..each {
                    client.publish(&topic, junk(n, junk_bytes, oversize_bytes)).await.unwrap();
                }
                client.wait_pubacks(each as u64, Duration::from_secs(600)).await.unwrap();
                client.disconnect().await;
            }));
        }
        let ids = device_ids("flood-alarm", ALARM_DEVICES).unwrap();
        let mut sent = BTreeSet::new();
        for id in &ids {
            for seq in 0..alarms_each {
                sent.insert(SentKey {
                    device: *id,
                    boot: 1,
                    seq,
                });
            }
            let (host, port, id) = (broker.host().to_string(), broker.port(), *id);
            tasks.push(tokio::spawn(async move {
                let client = RawClient::connect(&format!("alarm.{id}"), &host, port, None, 100)
                    .await
                    .unwrap();
                let topic = Topic::up(id).to_string();
                for seq in 0..alarms_each {
                    let alarm = encode(1, seq, UplinkBody::Alarm(AlarmKind::PendantPress)).unwrap();
                    client.publish(&topic, alarm).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                client
                    .wait_pubacks(u64::from(alarms_each), Duration::from_secs(600))
                    .await
                    .unwrap();
                client.disconnect().await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let published = started.elapsed();
        if !live {
            println!("flood queued by the broker in {:.1} s; gateway starting", published.as_secs_f64());
            gateway.restart().unwrap();
        }
        let pid = gateway.pid().unwrap();
        // Sample RSS while it drains (VmHWM is the kernel's own peak; this is a cross-check).
        let sampled_peak = Arc::new(AtomicU64::new(idle.rss_kib));
        let sampler = {
            let sampled_peak = sampled_peak.clone();
            tokio::spawn(async move {
                while let Some(ProcessMemory { rss_kib, .. }) = process_memory(pid) {
                    sampled_peak.fetch_max(rss_kib, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let expected = (junk_reaching + alarms_total) as f64;
        loop {
            let metrics = gateway.metrics().unwrap();
            if metrics.get("tec_ingest_received_total") >= expected
                && metrics.get("tec_events_stored_total") >= alarms_total as f64
                && metrics.sum("tec_ingest_rejected_total") >= junk_reaching as f64
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "gateway did not take the flood: {metrics:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained = started.elapsed() - if live { Duration::ZERO } else { published };
        let peak = process_memory(pid).unwrap();
        let metrics = gateway.metrics().unwrap();
        sampler.abort();
        println!(
            "{} in {:.1} s, gateway took everything in {:.1} s: received {}, quarantined {}, stored {}",
            if live { "published live" } else { "queued" },
            published.as_secs_f64(),
            drained.as_secs_f64(),
            metrics.get("tec_ingest_received_total"),
            metrics.sum("tec_ingest_rejected_total"),
            metrics.get("tec_events_stored_total"),
        );
        println!(
            "gateway memory: idle RSS {:.1} MiB; peak (VmHWM) {:.1} MiB; growth {:.1} MiB (sampled RSS peak {:.1} MiB)",
            mib(idle.rss_kib),
            mib(peak.peak_kib),
            mib(peak.peak_kib.saturating_sub(idle.rss_kib)),
            mib(sampled_peak.load(Ordering::Relaxed)),
        );
        assert_eq!(
            metrics.get("tec_ingest_received_total"),
            expected,
            "oversize publishes must never reach the gateway"
        );

        gateway.terminate().unwrap();
        let stored: BTreeSet<SentKey> = e2e::check::stored_events(&data_dir)
            .unwrap()
            .into_iter()
            .map(|event| SentKey {
                device: event.key.device,
                boot: event.key.boot,
                seq: event.key.seq,
            })
            .collect();
        let missing: Vec<_> = sent.difference(&stored).collect();
        assert!(missing.is_empty(), "alarms lost: {missing:?}");
        println!("all {} alarms stored", sent.len());
    });
}
