#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `simulator::run` with many homes against a real Mosquitto and a stand-in receipter.

mod common;

use std::time::Duration;

use common::{Broker, Seen, stand_in_receipter};
use firmware::Indication;
use protocol::UplinkBody;
use simulator::{HomeRates, SimConfig};

async fn fleet(homes: usize, speed: f64, device_speed: f64, seconds: u64) -> (simulator::SimReport, Vec<Seen>) {
    let broker = Broker::start();
    let mut seen = stand_in_receipter(broker.port).await;
    let mut config = SimConfig::new("127.0.0.1", broker.port, homes, 7);
    config.speed = speed;
    config.device_speed = device_speed;
    config.duration = Some(Duration::from_secs(seconds));
    config.ramp_up = Duration::from_secs(1);
    config.rates = HomeRates {
        presses_per_day: 20.0,
        ..HomeRates::default()
    };
    let report = simulator::run(config, std::future::pending()).await.unwrap();
    let mut all = Vec::new();
    while let Ok(item) = seen.try_recv() {
        all.push(item);
    }
    (report, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_homes_run_a_compressed_hour_through_mosquitto() {
    let (report, seen) = fleet(20, 600.0, 10.0, 6).await;
    println!("{report}");
    assert_eq!(report.devices, 100, "every device ran and stopped cleanly");
    assert!(report.connects >= 100);
    assert_eq!(report.alarms_lost, 0);
    let uplinks = seen.iter().filter(|s| matches!(s, Seen::Up(..))).count();
    let heartbeats = seen
        .iter()
        .filter(|s| matches!(s, Seen::Up(_, u) if matches!(u.body, UplinkBody::Heartbeat(_))))
        .count();
    assert!(heartbeats >= 100, "at least the boot heartbeats: {heartbeats}");
    assert!(uplinks as u64 >= report.events - report.outbox_depth_at_end);
    assert!(report.motion_reports > 0 && report.battery_readings >= 100);
    let stuck = report
        .indications_at_end
        .iter()
        .find(|(i, _)| *i == Indication::NoConnection)
        .map_or(0, |(_, n)| *n);
    assert!(
        stuck <= report.outages as usize,
        "only devices in an outage lack a connection"
    );
}

/// The scale target: 1,000 homes, 5,000 devices, on this machine's cores. Slow, so run on
/// demand: `cargo test -p tec-simulator --test mosquitto_fleet -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes about a minute; run on demand"]
async fn five_thousand_devices() {
    let (report, seen) = fleet(1_000, 60.0, 1.0, 30).await;
    println!("{report}");
    println!("stand-in saw {} messages", seen.len());
    assert_eq!(report.devices, 5_000);
    assert!(report.connects >= 5_000);
    assert_eq!(report.alarms_lost, 0);
}
