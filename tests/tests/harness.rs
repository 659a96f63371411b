//! The harness tested on its own, with a plain subscriber standing in for the gateway: devices
//! get every uplink receipted, across a broker restart; the broker's ACL refuses spoofing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use e2e::devices::{DeviceOptions, DeviceSim, body_for};
use e2e::plain::{PlainOptions, PlainSubscriber, device_id};
use e2e::{Broker, BrokerAuth, BrokerOptions, Fleet, FleetOptions};

fn stand_in_gateway(broker: &Broker) -> PlainOptions {
    PlainOptions {
        host: broker.host().into(),
        port: broker.port(),
        client_id: "stand-in-gateway".into(),
        credentials: broker.auth().map(|auth| auth.gateway.clone()),
        session_expiry_s: 3600,
        track_keys: true,
        send_receipts: true,
        receive_maximum: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_is_receipted_across_a_broker_restart() {
    let mut options = FleetOptions::new("127.0.0.1", 0, "hrn", 30).unwrap();
    let auth = BrokerAuth::for_devices(options.device_ids.iter().map(|id| id.as_str()));
    let mut broker = Broker::start_with(BrokerOptions {
        auth: Some(auth),
        ..BrokerOptions::default()
    })
    .unwrap();
    options.port = broker.port();
    options.authenticate = true;
    options.events_per_device = 40;
    options.interval = Duration::from_millis(50);
    options.resend_after = Duration::from_secs(2);

    let receipter = PlainSubscriber::connect(stand_in_gateway(&broker)).await.unwrap();
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();
    // Mid-stream: a third of the uplinks are out.
    fleet
        .wait_progress("a third of the stream", Duration::from_secs(30), |p| p.published >= 400)
        .await
        .unwrap();
    tokio::task::block_in_place(|| broker.restart()).unwrap();
    let progress = fleet.wait_all_receipted(Duration::from_secs(60)).await.unwrap();
    assert_eq!(progress.published, 30 * 40);
    assert_eq!(progress.unknown_receipts, 0);
    assert!(
        progress.connections >= 60,
        "devices reconnected after the restart: {progress:?}"
    );
    assert_eq!(receipter.distinct(), fleet.sent());
    fleet.stop().await;
    receipter.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_acl_refuses_a_device_publishing_as_another() {
    let (a, b) = (device_id("dev-aaa").unwrap(), device_id("dev-bbb").unwrap());
    let auth = BrokerAuth::for_devices(["dev-aaa", "dev-bbb"]);
    let broker = Broker::start_with(BrokerOptions {
        auth: Some(auth),
        ..BrokerOptions::default()
    })
    .unwrap();
    let receipter = PlainSubscriber::connect(stand_in_gateway(&broker)).await.unwrap();

    let mut a_options = DeviceOptions::new(broker.host(), broker.port());
    a_options.credentials = broker.device_credentials("dev-aaa");
    let device_a = DeviceSim::start(a, a_options).unwrap();
    let spoofer = e2e::devices::RawClient::connect(
        "dev-aaa-spoof",
        broker.host(),
        broker.port(),
        broker.device_credentials("dev-aaa").as_ref(),
        10,
    )
    .await
    .unwrap();
    // Each spoofed uplink is acknowledged (refused) by the broker before the next; A's own
    // uplinks go after all of them, to the same subscriber, so once A's are in, any spoofed
    // one the broker had let through would be in too.
    for seq in 0..5 {
        let payload = e2e::devices::encode(999, seq, body_for(seq, None)).unwrap();
        spoofer
            .publish_answered(&protocol::Topic::up(b).to_string(), payload, Duration::from_secs(10))
            .await
            .unwrap();
    }
    for seq in 0..5 {
        device_a.send(body_for(seq, None)).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while device_a.progress().outstanding > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "A's own uplinks were not receipted; broker log:\n{}",
            broker.log_tail(30)
        )
    });
    let seen = receipter.distinct();
    assert!(seen.iter().all(|key| key.device == a), "{seen:?}");
    assert_eq!(seen.len(), 5, "{seen:?}");
}

#[test]
fn mosquitto_is_installed() {
    assert!(
        std::path::Path::new(e2e::broker::MOSQUITTO).exists(),
        "end-to-end tests need /usr/sbin/mosquitto (apt-get install mosquitto)"
    );
}
