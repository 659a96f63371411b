//! Delivery cases that must hold on every broker the gateway is run against: the production
//! Mosquitto (`delivery.rs`) and the embedded demo broker (`embedded_broker.rs`). Nothing
//! acknowledged is ever lost: every uplink sent is stored exactly once and receipted, through
//! gateway crashes (its persistent session gets back what it had not acknowledged), graceful
//! stops under load, and uplinks the broker queued while the gateway was away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use e2e::check::reconcile_store;
use e2e::{BrokerKind, Fleet, Scenario, ScenarioSetup, device_ids};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// One `#[tokio::test]` per case, on the broker `$kind`; invoked once per test file.
macro_rules! delivery_tests {
    ($kind:expr) => {
        $crate::delivery_cases::delivery_tests!(@each $kind;
            many_devices_every_event_stored_once_and_receipted,
            gateway_killed_repeatedly_loses_nothing,
            gateway_stopped_gracefully_under_load_loses_nothing,
            uplinks_queued_while_the_gateway_is_away_arrive_after_it_restarts,
        );
    };
    (@each $kind:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::delivery_cases::$case($kind).await
            }
        )+
    };
}
pub(crate) use delivery_tests;

fn seed() -> u64 {
    std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7EC0_0001)
}

pub async fn many_devices_every_event_stored_once_and_receipted(broker: BrokerKind) {
    let ids = device_ids("pnd", 100).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            broker,
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&ids);
    options.events_per_device = 50;
    options.interval = Duration::from_millis(40);
    options.alarm_every = Some(25);
    let mut fleet = Fleet::connect(options).await.unwrap();
    let started = Instant::now();
    fleet.start_load();
    let progress = fleet.wait_all_receipted(Duration::from_secs(120)).await.unwrap();
    eprintln!(
        "5,000 uplinks from 100 devices receipted in {:?}: {progress:?}",
        started.elapsed()
    );
    assert_eq!(progress.published, 5_000);
    assert_eq!(progress.unknown_receipts, 0);

    let metrics = scenario.gateway.metrics().unwrap();
    assert_eq!(metrics.get("tec_events_stored_total"), 5_000.0);
    assert!(metrics.get("tec_ingest_received_total") >= 5_000.0);
    assert_eq!(metrics.sum("tec_ingest_rejected_total"), 0.0);
    assert!(metrics.get("tec_receipts_sent_total") > 0.0);
    assert_eq!(metrics.get("tec_mqtt_connected"), 1.0);
    assert_eq!(metrics.get("tec_unregistered_device_events_total"), 0.0);
    let mean_batch = metrics
        .histogram_mean("tec_commit_batch_size")
        .expect("commit batch histogram");
    let p99 = metrics
        .histogram_quantile("tec_receive_to_commit_seconds", 0.99)
        .expect("latency histogram");
    eprintln!("mean commit batch {mean_batch:.1}, receive-to-commit p99 <= {p99} s");
    assert!(mean_batch >= 1.0);

    let sent = fleet.sent();
    fleet.stop().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();
}

pub async fn gateway_killed_repeatedly_loses_nothing(broker: BrokerKind) {
    let seed = seed();
    eprintln!("E2E_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = device_ids("kil", 50).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            broker,
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&ids);
    options.events_per_device = 100;
    options.interval = Duration::from_millis(100);
    options.resend_after = Duration::from_secs(2);
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();

    let kills = 6;
    for round in 0..kills {
        // Short runs kill it while it is still draining what queued during the last outage.
        let run_for = Duration::from_millis(rng.random_range(100..1_400));
        let down_for = Duration::from_millis(rng.random_range(0..1_200));
        tokio::time::sleep(run_for).await;
        let before = fleet.progress();
        tokio::task::block_in_place(|| scenario.gateway.kill_hard()).unwrap();
        tokio::time::sleep(down_for).await;
        tokio::task::block_in_place(|| scenario.gateway.restart()).unwrap_or_else(|e| panic!("restart {round}: {e}"));
        eprintln!(
            "kill {round}: after {run_for:?} up, {down_for:?} down; published {} receipted {}",
            before.published, before.receipted
        );
    }
    let progress = fleet.wait_all_receipted(Duration::from_secs(120)).await.unwrap();
    eprintln!("after {kills} kills: {progress:?}");
    assert_eq!(progress.published, 5_000);
    assert_eq!(scenario.gateway.starts(), kills + 1);

    let sent = fleet.sent();
    fleet.stop().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();
}

pub async fn gateway_stopped_gracefully_under_load_loses_nothing(broker: BrokerKind) {
    let ids = device_ids("trm", 40).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            broker,
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&ids);
    options.events_per_device = 60;
    options.interval = Duration::from_millis(50);
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();
    for round in 0..3u64 {
        // While uplinks are arriving: after each further quarter of the 2,400.
        fleet
            .wait_progress("the stream to go on", Duration::from_secs(60), |p| {
                p.published >= (round + 1) * 600
            })
            .await
            .unwrap();
        // SIGTERM while uplinks are arriving: a clean exit, then a clean start on the same data.
        tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap_or_else(|e| panic!("SIGTERM {round}: {e}"));
        tokio::task::block_in_place(|| scenario.gateway.restart()).unwrap();
    }
    let progress = fleet.wait_all_receipted(Duration::from_secs(120)).await.unwrap();
    assert_eq!(progress.published, 2_400);

    let sent = fleet.sent();
    fleet.stop().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();
}

pub async fn uplinks_queued_while_the_gateway_is_away_arrive_after_it_restarts(broker: BrokerKind) {
    // Only the broker's queue for the gateway's persistent session can deliver these: the
    // publisher is a plain client that never retransmits.
    let ids = device_ids("awy", 20).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            broker,
            ..Default::default()
        },
    )
    .unwrap();
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    let admin = scenario.broker.admin();
    let publisher = e2e::devices::RawClient::connect(
        "queue-filler",
        scenario.broker.host(),
        scenario.broker.port(),
        admin.as_ref(),
        100,
    )
    .await
    .unwrap();
    let mut sent = std::collections::BTreeSet::new();
    for seq in 0..50u32 {
        for id in &ids {
            let payload = e2e::devices::encode(4, seq, e2e::devices::body_for(seq, None)).unwrap();
            publisher
                .publish(&protocol::Topic::up(*id).to_string(), payload)
                .await
                .unwrap();
            sent.insert(e2e::SentKey {
                device: *id,
                boot: 4,
                seq,
            });
        }
    }
    publisher.wait_pubacks(1_000, Duration::from_secs(30)).await.unwrap();
    publisher.disconnect().await;

    tokio::task::block_in_place(|| scenario.gateway.restart()).unwrap();
    let started = Instant::now();
    loop {
        let stored = scenario.gateway.metrics().unwrap().get("tec_events_stored_total");
        if stored >= 1_000.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {stored} of 1,000 queued uplinks arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();
}
