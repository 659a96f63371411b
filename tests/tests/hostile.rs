//! Hostile and odd traffic: spoofed identities, unregistered devices, garbage, truncated and
//! oversize payloads, wrong topics. The right counters move, the quarantine keeps the evidence,
//! and good traffic keeps flowing and being receipted. Also: the inspection CLI on a stopped
//! gateway's data dir agrees with the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::check::{open_store, reconcile, reconcile_store, stored_events};
use e2e::devices::{DeviceOptions, DeviceSim, RawClient, body_for, encode};
use e2e::gateway_process::run_cli;
use e2e::{Fleet, Scenario, ScenarioSetup, SentKey, device_ids};
use gateway::domain::{AlertKind, EventBody, RejectReason};
use gateway::store::AlertFilter;
use protocol::{AlarmKind, DeviceId, Topic, UplinkBody};
use serde_json::Value;

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn id(text: &str) -> DeviceId {
    DeviceId::new(text).unwrap()
}

async fn admin(scenario: &Scenario) -> RawClient {
    let auth = scenario.broker.auth().unwrap();
    let admin = auth.admin.clone().unwrap();
    RawClient::connect(
        "junk-injector",
        scenario.broker.host(),
        scenario.broker.port(),
        Some(&admin),
        20,
    )
    .await
    .unwrap()
}

/// Runs an inspection subcommand with `--format json`: one JSON array (docs/cli-json.md).
fn cli_json(binary: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let text = run_cli(binary, &args).unwrap();
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("{args:?} did not print a JSON array: {other:?}\n{text}"),
    }
}

fn event_key_of(json: &Value) -> (String, u64, u64) {
    (
        json["device"].as_str().unwrap().to_string(),
        json["boot"].as_u64().unwrap(),
        json["seq"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_is_refused_and_real_traffic_flows() {
    let (a, b) = (id("spf-aaa"), id("spf-bbb"));
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: vec![a, b],
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&[a, b]);
    options.events_per_device = 30;
    options.interval = Duration::from_millis(20);
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();

    // Authenticated as A, publishing on B's topic with a boot number B never uses.
    let spoofer = RawClient::connect(
        "spf-aaa-evil",
        scenario.broker.host(),
        scenario.broker.port(),
        scenario.broker.device_credentials(a.as_str()).as_ref(),
        10,
    )
    .await
    .unwrap();
    // One at a time, each acknowledged (refused) by the broker before the next.
    for seq in 0..10 {
        spoofer
            .publish_answered(
                &Topic::up(b).to_string(),
                encode(666, seq, body_for(seq, None)).unwrap(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // A barrier: one more uplink, on the spoofer's own topic, after the broker has answered
    // every spoofed one. The broker forwards to the gateway in the order it took publishes and
    // the gateway commits in arrival order, so once this one is stored, a spoofed uplink let
    // through would be stored too.
    let marker = SentKey {
        device: a,
        boot: 667,
        seq: 0,
    };
    // (Sent after A's own stream, so A's boot number never seems to go back.)
    let progress = fleet.wait_all_receipted(Duration::from_secs(60)).await.unwrap();
    assert_eq!(progress.published, 60);
    // On a fresh connection: Mosquitto drops the spoofer's connection after each refused
    // publish, and its reconnect backoff grows with every loss.
    let honest = RawClient::connect(
        "spf-aaa-marker",
        scenario.broker.host(),
        scenario.broker.port(),
        scenario.broker.device_credentials(a.as_str()).as_ref(),
        10,
    )
    .await
    .unwrap();
    honest
        .publish_answered(
            &Topic::up(a).to_string(),
            encode(marker.boot, marker.seq, body_for(0, None)).unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let stored = loop {
        let stored = scenario.gateway.metrics().unwrap().get("tec_events_stored_total");
        if stored >= 61.0 || started.elapsed() > Duration::from_secs(30) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored, 61.0, "only the real traffic and the marker were stored");

    let mut sent = fleet.sent();
    sent.insert(marker);
    fleet.stop().await;
    spoofer.disconnect().await;
    honest.disconnect().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    let events = stored_events(scenario.data_dir()).unwrap();
    assert!(events.iter().all(|e| e.key.boot != 666), "a spoofed uplink was stored");
    reconcile(&sent, &events, None).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_device_is_stored_and_its_alarm_flagged() {
    let known = id("reg-0001");
    let stranger = id("unk-0001");
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: vec![known],
            unregistered: vec![stranger],
            ..Default::default()
        },
    )
    .unwrap();
    let mut device_options = DeviceOptions::new(scenario.broker.host(), scenario.broker.port());
    device_options.credentials = scenario.broker.device_credentials(stranger.as_str());
    device_options.boot = 3;
    let device = DeviceSim::start(stranger, device_options).unwrap();
    let heartbeat = device.send(body_for(0, None)).await.unwrap();
    let alarm = device.send(UplinkBody::Alarm(AlarmKind::PendantPress)).await.unwrap();
    let mut known_fleet = Fleet::connect(scenario.fleet_options(&[known])).await.unwrap();
    known_fleet.start_load();
    known_fleet.wait_all_receipted(Duration::from_secs(30)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while device.progress().outstanding > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the unregistered device's uplinks were receipted");
    let metrics = scenario.gateway.metrics().unwrap();
    assert!(metrics.get("tec_unregistered_device_events_total") >= 2.0);

    let mut sent: BTreeSet<_> = known_fleet.sent();
    sent.extend([heartbeat, alarm]);
    known_fleet.stop().await;
    device.stop().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();
    reconcile_store(scenario.data_dir(), &sent).unwrap().assert_exact();

    let store = open_store(scenario.data_dir()).unwrap();
    let alerts = store.alerts(&AlertFilter::default()).unwrap();
    let flagged: Vec<_> = alerts
        .iter()
        .filter(|a| a.device == Some(stranger) && a.kind == AlertKind::PendantPress)
        .collect();
    assert_eq!(
        flagged.len(),
        1,
        "one alert for the stranger's pendant press: {alerts:?}"
    );
    assert!(flagged[0].unregistered_device);
    assert!(flagged[0].is_open());
    let devices = store.devices().unwrap();
    assert!(
        devices.iter().any(|d| d.id == stranger && !d.registered),
        "first seen, not registered: {devices:?}"
    );
    drop(store);

    // The inspection CLI on the stopped gateway's data dir agrees with the store.
    let data = scenario.data_dir().to_str().unwrap().to_string();
    let binary = scenario.binary.clone();
    let events = cli_json(&binary, &["events", "--data", &data]);
    let listed: BTreeSet<_> = events.iter().map(event_key_of).collect();
    let expected: BTreeSet<_> = sent
        .iter()
        .map(|k| (k.device.to_string(), u64::from(k.boot), u64::from(k.seq)))
        .collect();
    assert_eq!(events.len(), sent.len(), "events lists each event once");
    assert_eq!(listed, expected);
    let strangers = cli_json(&binary, &["events", "--data", &data, "--device", stranger.as_str()]);
    let mut stranger_keys: Vec<_> = strangers.iter().map(event_key_of).collect();
    stranger_keys.sort();
    assert_eq!(
        stranger_keys,
        vec![(stranger.to_string(), 3, 0), (stranger.to_string(), 3, 1)]
    );
    let alarm_json = strangers.iter().find(|e| e["seq"] == 1).unwrap();
    assert_eq!(alarm_json["alarm"], Value::Bool(true), "{alarm_json}");

    let cli_alerts = cli_json(&binary, &["alerts", "--data", &data]);
    assert_eq!(cli_alerts.len(), alerts.len());
    for (json, alert) in cli_alerts.iter().zip(&alerts) {
        assert_eq!(json["id"].as_u64(), Some(alert.id.0), "{json}");
        assert_eq!(
            json["device"].as_str(),
            alert.device.as_ref().map(DeviceId::as_str),
            "{json}"
        );
        assert_eq!(
            json["unregistered_device"].as_bool(),
            Some(alert.unregistered_device),
            "{json}"
        );
    }
    let flagged_json = cli_alerts
        .iter()
        .find(|a| a["device"] == stranger.as_str() && a["kind"] == "pendant_press")
        .unwrap();
    assert_eq!(flagged_json["kind"], "pendant_press", "{flagged_json}");
    assert_eq!(flagged_json["unregistered_device"], Value::Bool(true), "{flagged_json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_is_counted_and_quarantined_while_good_traffic_flows() {
    let ids = device_ids("gud", 10).unwrap();
    let mut scenario = Scenario::start(
        GATEWAY,
        ScenarioSetup {
            registered: ids.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut options = scenario.fleet_options(&ids);
    options.events_per_device = 40;
    options.interval = Duration::from_millis(25);
    let mut fleet = Fleet::connect(options).await.unwrap();
    fleet.start_load();

    let admin = admin(&scenario).await;
    let junk_up = "tec/v1/dev/junk-0001/up";
    let valid = encode(1, 1, body_for(1, None)).unwrap();
    let mut newer_body = encode(2, 7, body_for(0, None)).unwrap();
    // Replace the body with tag 40, from some future revision: stored raw, not quarantined.
    newer_body.truncate(4);
    newer_body.extend([40, 1, 2, 3]);
    let junk: Vec<(&str, Vec<u8>, Option<RejectReason>)> = vec![
        (junk_up, Vec::new(), Some(RejectReason::Malformed)),
        (junk_up, vec![0xff; 9], Some(RejectReason::Malformed)),
        (junk_up, valid[..2].to_vec(), Some(RejectReason::Malformed)),
        (junk_up, vec![0, 1, 1, 0, 2], Some(RejectReason::BadVersion)),
        (junk_up, vec![1; 4_000], Some(RejectReason::Oversize)),
        ("tec/v1/dev/Bad_Id/up", valid.clone(), Some(RejectReason::ForeignTopic)),
        (
            "tec/v1/dev/junk-0001/status",
            vec![1, 9, 9, 9],
            Some(RejectReason::Malformed),
        ),
        // Not for the gateway at all: it must neither store nor choke on these, if it sees them.
        ("tec/v1/dev/junk-0001/down", valid.clone(), None),
        ("tec/v2/dev/junk-0001/up", valid.clone(), None),
        (junk_up, newer_body, None),
    ];
    for (topic, payload, _) in &junk {
        admin.publish(topic, payload.clone()).await.unwrap();
    }
    admin
        .wait_pubacks(junk.len() as u64, Duration::from_secs(10))
        .await
        .unwrap();

    let progress = fleet.wait_all_receipted(Duration::from_secs(60)).await.unwrap();
    assert_eq!(progress.published, 400);
    // Junk arrived before the last good uplinks were receipted, so it has been processed too.
    let metrics = scenario.gateway.metrics().unwrap();
    let expected = |reason: RejectReason| junk.iter().filter(|(_, _, r)| *r == Some(reason)).count() as f64;
    for reason in RejectReason::ALL {
        if reason == RejectReason::IdentityMismatch {
            continue;
        }
        assert!(
            metrics.rejected(reason.as_str()) >= expected(reason),
            "{}: {} < {}",
            reason.as_str(),
            metrics.rejected(reason.as_str()),
            expected(reason)
        );
    }
    assert_eq!(metrics.get("tec_mqtt_connected"), 1.0);

    let sent = fleet.sent();
    fleet.stop().await;
    admin.disconnect().await;
    tokio::task::block_in_place(|| scenario.stop_gateway()).unwrap();

    let events = stored_events(scenario.data_dir()).unwrap();
    let good: BTreeSet<DeviceId> = ids.iter().copied().collect();
    reconcile(&sent, &events, Some(&good)).assert_exact();
    let others: Vec<_> = events.iter().filter(|e| !good.contains(&e.key.device)).collect();
    assert_eq!(
        others.len(),
        1,
        "only the newer-revision uplink is stored besides good traffic: {others:?}"
    );
    assert_eq!(
        (others[0].key.device, others[0].key.boot, others[0].key.seq),
        (id("junk-0001"), 2, 7)
    );
    assert!(
        matches!(others[0].body, EventBody::Unrecognised { body_tag: 40, .. }),
        "{:?}",
        others[0].body
    );

    let store = open_store(scenario.data_dir()).unwrap();
    let quarantined = store.quarantined(None).unwrap();
    for reason in [
        RejectReason::Malformed,
        RejectReason::BadVersion,
        RejectReason::Oversize,
        RejectReason::ForeignTopic,
    ] {
        let held = quarantined.iter().filter(|q| q.reason == reason).count() as f64;
        assert!(
            held >= expected(reason),
            "quarantine holds {held} {reason:?}: {quarantined:?}"
        );
    }
    let oversize = quarantined.iter().find(|q| q.reason == RejectReason::Oversize).unwrap();
    assert_eq!(oversize.original_len, 4_000);
    assert!(
        oversize.payload.len() < 4_000,
        "oversize payloads are cut in the quarantine"
    );
    assert!(quarantined.iter().any(|q| q.topic == "tec/v1/dev/Bad_Id/up"));
    drop(store);

    let data = scenario.data_dir().to_str().unwrap().to_string();
    let listed = cli_json(&scenario.binary, &["quarantine", "--data", &data]);
    let summarise = |topic: &str, reason: &str, len: u64| format!("{reason} {len} {topic}");
    let mut from_cli: Vec<String> = listed
        .iter()
        .map(|q| {
            summarise(
                q["topic"].as_str().unwrap(),
                q["reason"].as_str().unwrap(),
                q["original_len"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut from_store: Vec<String> = quarantined
        .iter()
        .map(|q| summarise(&q.topic, q.reason.as_str(), q.original_len as u64))
        .collect();
    from_cli.sort();
    from_store.sort();
    assert_eq!(from_cli, from_store);
    let oversize_json = listed.iter().find(|q| q["reason"] == "oversize").unwrap();
    assert_eq!(oversize_json["truncated"], Value::Bool(true), "{oversize_json}");
}
