#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Ingest-shaped write throughput through the real batch path (`insert_events`): 100k events
//! in durable batches of 1,000.
//! Slow in debug builds, so ignored by default; measure with
//! `cargo test -p tec-gateway --release --test store_perf -- --ignored --nocapture --test-threads 1`.

use std::time::Instant;

use gateway::domain::*;
use gateway::store::*;
use protocol::{DeviceId, DeviceStatus, FirmwareVersion, UplinkBody};

/// Every batch has events from all 500 devices: the realistic, index-unfriendly case.
#[test]
#[ignore = "throughput measurement; run in release with --ignored"]
fn hundred_thousand_events_from_500_interleaved_devices() {
    measure("500 interleaved devices", |n| ((n % 500) as usize, n / 500));
}

/// Each device sends a run of 200 events: the best case for the device-keyed tables.
#[test]
#[ignore = "throughput measurement; run in release with --ignored"]
fn hundred_thousand_events_in_device_runs() {
    measure("device runs of 200", |n| ((n / 200 % 500) as usize, n % 200));
}

fn measure(label: &str, device_and_seq: impl Fn(u32) -> (usize, u32)) {
    const EVENTS: u32 = 100_000;
    const BATCH: u32 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let devices: Vec<DeviceId> = (0..500)
        .map(|n| DeviceId::new(&format!("pnd-{n:06}")).unwrap())
        .collect();
    let residents: Vec<ResidentId> = (0..500).map(|n| ResidentId::new(format!("R{n:06}")).unwrap()).collect();
    let body = EventBody::Uplink(UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 3_000,
        battery_percent: 90,
        rssi_dbm: -60,
        uptime_s: 1_000,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    }));

    // Built up front: ingest has the payloads already, so only the store is timed.
    let batches: Vec<Vec<NewEvent>> = (0..EVENTS)
        .step_by(BATCH as usize)
        .map(|batch_start| {
            (batch_start..batch_start + BATCH)
                .map(|n| {
                    let (which, seq) = device_and_seq(n);
                    NewEvent::from_event(StoredEvent {
                        key: EventKey {
                            device: devices[which],
                            boot: 1,
                            seq,
                        },
                        resident: Some(residents[which].clone()),
                        received_at: Timestamp(1_800_000_000_000 + i64::from(n)),
                        device_time: Some(Timestamp(1_800_000_000_000 + i64::from(n) - 20)),
                        protocol_version: 1,
                        body: body.clone(),
                    })
                    .unwrap()
                })
                .collect()
        })
        .collect();

    let mut commit_time = std::time::Duration::ZERO;
    let started = Instant::now();
    for events in &batches {
        let mut batch = store.begin_write().unwrap();
        let outcomes = batch.insert_events(events).unwrap();
        assert!(outcomes.iter().all(|outcome| *outcome == InsertOutcome::Inserted));
        let commit_started = Instant::now();
        batch.commit().unwrap();
        commit_time += commit_started.elapsed();
    }
    println!("store_perf [{label}]: of which commit: {commit_time:.2?}");
    let elapsed = started.elapsed();
    let rate = f64::from(EVENTS) / elapsed.as_secs_f64();
    println!("store_perf [{label}]: {EVENTS} events in batches of {BATCH}: {elapsed:.2?}, {rate:.0} events/s");
    assert_eq!(store.event_count().unwrap(), u64::from(EVENTS));

    let started = Instant::now();
    let one_resident = EventFilter {
        resident: Some(residents[7].clone()),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&one_resident).unwrap().events.len(), 200);
    let window = EventFilter {
        since: Some(Timestamp(1_800_000_050_000)),
        until: Some(Timestamp(1_800_000_051_000)),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&window).unwrap().events.len(), 1_000);
    println!(
        "store_perf: resident history + 1,000-event window: {:.2?}",
        started.elapsed()
    );
}
