//! High availability on PostgreSQL (issue 12): two real gateway processes share one
//! PostgreSQL store and one broker account; one leads (it holds the writer lease), the other
//! stands by. Simulated pendants (the real firmware core) send telemetry with presses among
//! it while, in turn:
//!
//! 1. the leader is SIGKILLed: the standby must take the lease and the broker's queue (the
//!    same fixed MQTT client ids, persistent sessions) by itself;
//! 2. the new leader is SIGSTOPped past its lease, as a hung or partitioned machine: the other
//!    gateway (started again after fault 1) takes over; when the paused one is let go it must
//!    find itself fenced and exit (status 3) without acking anything.
//!
//! Then the last leader stops cleanly and the store is read back against the devices' own
//! state: every event a device numbered is stored exactly once (none lost, none doubled, no
//! conflicting copy), every device's outbox drained (everything receipted), and every press is
//! in an alert. The time from each fault to a leader serving again is printed.
//!
//! ```text
//! cargo test -p tec-tests --test failover -- --nocapture
//! ```
//!
//! Fails, never skips, without Mosquitto or PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::{Broker, BrokerAuth, BrokerOptions, GatewayOptions, GatewayProcess};
use firmware::session::Backoff;
use gateway::config::StoreConfig;
use gateway::domain::{Change, EventBody, EventKey};
use gateway::store::postgres::{PgStore, PgStoreOptions};
use gateway::store::{EventFilter, PgBlocking, ReadStore, WriteStore};
use protocol::{AlarmKind, DeviceId, SensorState, UplinkBody};
use simulator::{DeviceHandle, DeviceKind as SimKind, DeviceSpec, device_id, spawn_device};
use testkit::postgres::Postgres;

const DEVICES: usize = 10;
/// The writer lease: the shortest the configuration allows, to keep the test short.
const LEASE_S: u64 = 3;
const TELEMETRY_PER_DEVICE_S: f64 = 2.0;
const PRESSES_PER_PHASE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_or_paused_leader_and_nothing_is_lost_or_doubled() {
    let started = Instant::now();
    let postgres = tokio::task::block_in_place(Postgres::start).unwrap();
    let ids: Vec<DeviceId> = (1..=DEVICES)
        .map(|home| device_id(home, SimKind::Pendant).unwrap())
        .collect();
    let auth = BrokerAuth::for_devices(ids.iter().map(DeviceId::as_str));
    let broker = tokio::task::block_in_place(|| {
        Broker::start_with(BrokerOptions {
            auth: Some(auth.clone()),
            ..BrokerOptions::default()
        })
    })
    .unwrap();

    let work = tempfile::Builder::new().prefix("tec-failover-").tempdir().unwrap();
    let config_path = work.path().join("gateway.toml");
    let postgres_url = postgres.connection_string("postgres");
    // One configuration for both gateways, as a deployment would have: the lease decides who
    // leads, and the holder name defaults to host and process id.
    std::fs::write(
        &config_path,
        format!("[store]\nkind = \"postgres\"\npostgres_url = \"{postgres_url}\"\nlease_s = {LEASE_S}\n"),
    )
    .unwrap();
    let options = |name: &str| {
        let data_dir = work.path().join(name);
        let mut options = GatewayOptions::new(env!("CARGO_BIN_EXE_gateway-under-test"), broker.url(), &data_dir);
        options.log_path = work.path().join(format!("{name}.log"));
        options.extra_args = vec!["--config".into(), config_path.display().to_string()];
        options.env = vec![
            ("TEC_GATEWAY_MQTT_USERNAME".into(), auth.gateway.username.clone()),
            ("TEC_GATEWAY_MQTT_PASSWORD".into(), auth.gateway.password.clone()),
        ];
        options
    };
    let mut first = tokio::task::block_in_place(|| GatewayProcess::start(options("gateway-a"))).unwrap();
    let mut second = tokio::task::block_in_place(|| GatewayProcess::start_in_background(options("gateway-b"))).unwrap();
    // The standby serves nothing while it stands by.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(second.is_running(), "the standby exited:\n{}", second.log_tail(40));
    assert!(
        tokio::task::block_in_place(|| second.health()).is_err(),
        "the standby answers HTTP as if it led:\n{}",
        second.log_tail(40)
    );

    let devices: Arc<Vec<DeviceHandle>> = Arc::new(
        ids.iter()
            .map(|id| {
                let mut spec = DeviceSpec::new(*id, format!("pw-{id}"), "127.0.0.1", broker.port());
                spec.keep_alive_s = 10;
                spec.backoff = Backoff {
                    initial_ms: 250,
                    max_ms: 2_000,
                };
                tokio::task::block_in_place(|| spawn_device(spec)).unwrap()
            })
            .collect(),
    );
    wait_drained(&devices, Duration::from_secs(60), "the devices' first connect").await;
    let running = Arc::new(AtomicBool::new(true));
    let load = tokio::spawn(drive_telemetry(devices.clone(), running.clone()));
    let mut presses: Vec<usize> = Vec::new();
    let mut next_presser = 0usize;
    let mut press = |count: usize| {
        for _ in 0..count {
            let device = next_presser % devices.len();
            next_presser += 1;
            devices[device].press();
            presses.push(device);
        }
    };
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---- 1. the leader is SIGKILLed ----
    let killed = Instant::now();
    tokio::task::block_in_place(|| first.kill_hard()).unwrap();
    press(PRESSES_PER_PHASE);
    tokio::task::block_in_place(|| second.wait_healthy(Duration::from_secs(30))).unwrap();
    let kill_takeover = killed.elapsed();
    wait_drained(&devices, Duration::from_secs(60), "after the leader was killed").await;
    let kill_drained = killed.elapsed();
    // The killed gateway comes back (as a supervisor would start it): it stands by.
    tokio::task::block_in_place(|| first.respawn()).unwrap();
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        first.is_running(),
        "the restarted gateway exited:\n{}",
        first.log_tail(40)
    );

    // ---- 2. the leader is paused past its lease ----
    let paused = Instant::now();
    tokio::task::block_in_place(|| second.pause()).unwrap();
    press(PRESSES_PER_PHASE);
    tokio::task::block_in_place(|| first.wait_healthy(Duration::from_secs(30))).unwrap();
    let pause_takeover = paused.elapsed();
    wait_drained(&devices, Duration::from_secs(60), "after the leader was paused").await;
    let pause_drained = paused.elapsed();
    // Let go, the paused gateway finds the lease taken and stops by itself, acking nothing.
    tokio::task::block_in_place(|| second.resume()).unwrap();
    let status = tokio::task::block_in_place(|| second.wait_exit(Duration::from_secs(30))).unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the fenced gateway did not stop as fenced ({status}):\n{}",
        second.log_tail(60)
    );
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    running.store(false, Ordering::SeqCst);
    load.await.unwrap();
    wait_drained(&devices, Duration::from_secs(60), "at the end").await;
    let finals: Vec<simulator::DeviceView> = devices.iter().map(DeviceHandle::view).collect();
    let status = tokio::task::block_in_place(|| first.terminate()).unwrap();
    assert!(status.success(), "unclean stop ({status}):\n{}", first.log_tail(40));

    // ---- the devices' state against the store ----
    let runtime = tokio::runtime::Handle::current();
    let url = postgres_url.clone();
    let (events, alerts) = tokio::task::spawn_blocking(move || {
        let config = StoreConfig {
            postgres_url: Some(url),
            ..StoreConfig::default()
        }
        .postgres_config()
        .unwrap();
        let store = runtime
            .block_on(PgStore::connect(
                &config,
                PgStoreOptions::new("failover-check", Duration::from_secs(LEASE_S)),
            ))
            .unwrap();
        let store = PgBlocking::new(store, runtime);
        let page = store.events(&EventFilter::default()).unwrap();
        assert!(page.unreadable.is_empty(), "unreadable: {:?}", page.unreadable);
        (page.events, store.open_alerts().unwrap())
    })
    .await
    .unwrap();
    let mut copies: BTreeMap<EventKey, usize> = BTreeMap::new();
    for read in &events {
        assert_eq!(read.copy, 0, "a conflicting copy was stored: {:?}", read.event.key);
        *copies.entry(read.event.key).or_default() += 1;
    }
    let mut lost = Vec::new();
    let mut receipted = 0usize;
    for (id, view) in ids.iter().zip(&finals) {
        assert_eq!(view.outbox_depth, 0, "{id}: {view:?}");
        assert_eq!(view.alarms_lost, 0, "{id}: {view:?}");
        assert_eq!(view.events_dropped, 0, "{id}: the outbox overflowed: {view:?}");
        for seq in 0..view.next_seq {
            receipted += 1;
            let key = EventKey {
                device: *id,
                boot: view.boot,
                seq,
            };
            if !copies.contains_key(&key) {
                lost.push(key);
            }
        }
    }
    let doubled: Vec<&EventKey> = copies.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
    let extra = copies.len() - (receipted - lost.len());

    // Every press stored and in an alert (nobody resolves one here, so all are open).
    let mut in_alert: HashMap<EventKey, u64> = HashMap::new();
    for alert in &alerts {
        for transition in &alert.transitions {
            match &transition.change {
                Change::Raised { event: Some(key) } | Change::Joined { event: key } => {
                    in_alert.insert(*key, alert.id.0);
                }
                _ => {}
            }
        }
    }
    let stored_presses: Vec<&EventKey> = events
        .iter()
        .filter(|read| {
            matches!(
                read.event.body,
                EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress))
            )
        })
        .map(|read| &read.event.key)
        .collect();
    let without_alert: Vec<&&EventKey> = stored_presses
        .iter()
        .filter(|key| !in_alert.contains_key(key))
        .collect();

    println!(
        "\nfailover on PostgreSQL: {DEVICES} pendants, lease {LEASE_S} s, {} s in all",
        started.elapsed().as_secs()
    );
    println!("| fault | a leader serving again after | devices drained after |");
    println!("|---|---|---|");
    println!(
        "| leader SIGKILLed | {:.2} s | {:.2} s |",
        kill_takeover.as_secs_f64(),
        kill_drained.as_secs_f64()
    );
    println!(
        "| leader SIGSTOPped past its lease | {:.2} s | {:.2} s |",
        pause_takeover.as_secs_f64(),
        pause_drained.as_secs_f64()
    );
    println!(
        "receipted {receipted}, stored {}, lost {}, duplicated {}, not sent by a device {extra}; presses {} made, {} stored, {} without an alert",
        copies.len(),
        lost.len(),
        doubled.len(),
        presses.len(),
        stored_presses.len(),
        without_alert.len()
    );
    assert!(lost.is_empty(), "receipted but not stored: {lost:?}");
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert_eq!(extra, 0, "stored events no device numbered");
    assert_eq!(stored_presses.len(), presses.len(), "presses made and stored differ");
    assert!(without_alert.is_empty(), "presses without an alert: {without_alert:?}");
    for device in Arc::try_unwrap(devices).ok().unwrap() {
        device.stop().await.unwrap();
    }
}

/// Telemetry to every device in turn, each a new value (so each is an event), until stopped.
async fn drive_telemetry(devices: Arc<Vec<DeviceHandle>>, running: Arc<AtomicBool>) {
    let tick = Duration::from_millis(50);
    let per_tick = TELEMETRY_PER_DEVICE_S * devices.len() as f64 * tick.as_secs_f64();
    let mut budget = 0.0;
    let mut cursor = 0usize;
    let mut readings = vec![0i16; devices.len()];
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running.load(Ordering::SeqCst) {
        interval.tick().await;
        budget += per_tick;
        while budget >= 1.0 {
            budget -= 1.0;
            let index = cursor % devices.len();
            cursor += 1;
            readings[index] = (readings[index] + 1) % 500;
            devices[index].sensor(
                1,
                SensorState::Temperature {
                    centi_celsius: 1_800 + readings[index],
                },
            );
        }
    }
}

/// Waits until every device is connected with an empty outbox (everything receipted).
async fn wait_drained(devices: &[DeviceHandle], timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let waiting: Vec<(DeviceId, simulator::DeviceView)> = devices
            .iter()
            .map(|d| (d.device_id(), d.view()))
            .filter(|(_, v)| !(v.connected && v.outbox_depth == 0))
            .collect();
        if waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} devices still not drained after {timeout:?}, the first: {:?}",
            waiting.len(),
            waiting.first()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
