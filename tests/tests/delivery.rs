//! Nothing acknowledged is ever lost: many devices, the real gateway process, a real Mosquitto
//! with per-device passwords and the production ACL. The cases in `delivery_cases` run here and
//! against the embedded demo broker (`embedded_broker.rs`); the tests below restart or stop the
//! broker, which only Mosquitto does (the embedded broker lives and dies with the demo, and
//! keeps nothing on disk), so they are Mosquitto-only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod delivery_cases;

use std::time::{Duration, Instant};

use e2e::check::reconcile_store;
use e2e::{BrokerKind, Fleet, Scenario, ScenarioSetup, device_ids};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

delivery_cases::delivery_tests!(BrokerKind::Mosquitto);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarted_mid_stream_loses_nothing() {
    let ids = device_ids("brk", 50).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&ids);
    options.events_per_device = 60;
    options.interval = Duration::from_millis(60);
    options.resend_after = Duration::from_secs(2);
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();
    for restart in 0..2u64 {
        // Mid-stream: after the first and the second third of the 3,000 uplinks.
        fleet
            .wait_progress("the stream to go on", Duration::from_secs(60), |p| {
                p.published >= (restart + 1) * 1_000
            })
            .await
            .unwrap();
        tokio::task::block_in_place(|| scenario.broker.restart()).unwrap();
        eprintln!("broker restart {restart}: {:?}", fleet.progress());
    }
    let progress = fleet.wait_all_receipted(Duration::from_secs(120)).await.unwrap();
    assert_eq!(progress.published, 3_000);
    assert!(
        progress.connections >= 150,
        "devices reconnected after each restart: {progress:?}"
    );
    // The gateway must have come back on its own.
    tokio::task::block_in_place(|| scenario.gateway.wait_healthy(Duration::from_secs(10))).unwrap();

    let sent = fleet.sent();
    fleet.stop().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_keeps_the_gateways_queue() {
    // Only the broker's persisted queue can deliver these: nobody retransmits them.
    let ids = device_ids("que", 20).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    // SIGTERM right at "healthy": the gateway listens for it before it starts, so this is a
    // graceful stop (it once was not).
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    let admin = scenario.broker.auth().unwrap().admin.clone().unwrap();
    let publisher = e2e::devices::RawClient::connect(
        "queue-filler",
        scenario.broker.host(),
        scenario.broker.port(),
        Some(&admin),
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

    tokio::task::block_in_place(|| scenario.broker.restart()).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_hard_devices_outboxes_cover_the_loss() {
    // SIGKILL: Mosquitto's unsaved state (queued messages, maybe the gateway's session) is gone.
    // Only the devices' outboxes and retransmissions stand between that and data loss.
    let ids = device_ids("bkh", 40).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&ids);
    options.events_per_device = 60;
    options.interval = Duration::from_millis(50);
    options.resend_after = Duration::from_secs(2);
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();
    for round in 0..2u64 {
        // Mid-stream: after the first and the second third of the 2,400 uplinks.
        fleet
            .wait_progress("the stream to go on", Duration::from_secs(60), |p| {
                p.published >= (round + 1) * 800
            })
            .await
            .unwrap();
        tokio::task::block_in_place(|| scenario.broker.kill()).unwrap();
        // The outage itself.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| scenario.broker.start_again()).unwrap();
        eprintln!("broker SIGKILL {round}: {:?}", fleet.progress());
    }
    let progress = fleet.wait_all_receipted(Duration::from_secs(120)).await.unwrap();
    assert_eq!(progress.published, 2_400);
    tokio::task::block_in_place(|| scenario.gateway.wait_healthy(Duration::from_secs(10))).unwrap();

    let sent = fleet.sent();
    fleet.stop().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_the_broker_connection() {
    let mut scenario = Scenario::start(GATEWAY, ScenarioSetup::default()).unwrap();
    assert_eq!(scenario.gateway.health().unwrap(), 200);
    tokio::task::block_in_place(|| scenario.broker.stop()).unwrap();
    let started = Instant::now();
    while scenario.gateway.health().unwrap() != 503 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "/healthz still 200 with the broker gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scenario.gateway.metrics().unwrap().get("tec_mqtt_connected"), 0.0);
    tokio::task::block_in_place(|| scenario.broker.start_again()).unwrap();
    tokio::task::block_in_place(|| scenario.gateway.wait_healthy(Duration::from_secs(20))).unwrap();
    assert_eq!(scenario.gateway.metrics().unwrap().get("tec_mqtt_connected"), 1.0);
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
}
