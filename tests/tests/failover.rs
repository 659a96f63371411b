//! High availability on PostgreSQL (issue 12): two real gateway processes share one
//! PostgreSQL store (a primary whose commits wait for a synchronous standby) and one broker
//! account; one leads (it holds the writer lease), the other stands by. Simulated pendants
//! (the real firmware core) send telemetry with presses among it while, in turn:
//!
//! 1. the leader is SIGKILLed: the standby must take the lease and the broker's queue (the
//!    same fixed MQTT client ids, persistent sessions) by itself;
//! 2. the new leader is SIGSTOPped past its lease, as a hung or partitioned machine: the other
//!    gateway (started again after fault 1) takes over; when the paused one is let go it must
//!    find itself fenced and exit (status 3) without acking anything;
//! 3. the synchronous standby stops, so the leader's commit waits for it, and that backend is
//!    terminated mid-wait (committed locally, outcome unknown to the gateway: no receipt);
//! 4. the primary dies and the replica is promoted: the gateways find it through the URL's
//!    host list (`target_session_attrs=read-write`).
//!
//! A gateway that exits (only ever as fenced, status 3) is started again, as systemd would.
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

use e2e::fleet_drive::{drive_telemetry, wait_drained};
use e2e::{Broker, BrokerAuth, BrokerOptions, GatewayOptions, GatewayProcess};
use firmware::session::Backoff;
use gateway::config::StoreConfig;
use gateway::domain::{Change, EventBody, EventKey, StoredEvent};
use gateway::store::postgres::{PgStore, PgStoreOptions};
use gateway::store::{EventFilter, PgBlocking, ReadStore, WriteStore};
use protocol::{AlarmKind, DeviceId, UplinkBody};
use simulator::{DeviceHandle, DeviceKind as SimKind, DeviceSpec, device_id, spawn_device};
use testkit::postgres::{Postgres, PostgresOptions};

const DEVICES: usize = 10;
/// The writer lease: the shortest the configuration allows, to keep the test short.
const LEASE_S: u64 = 3;
const TELEMETRY_PER_DEVICE_S: f64 = 2.0;
const PRESSES_PER_PHASE: usize = 3;
/// The synchronous standby's name.
const REPLICA: &str = "tec_replica";

/// The two gateways, either of which may lead; restarted (as a supervisor would) when one
/// exits.
struct Pair {
    gateways: [GatewayProcess; 2],
}

impl Pair {
    /// The one serving HTTP: the leader (a standby serves nothing).
    fn leader(&self) -> Option<usize> {
        self.leader_among(&[0, 1])
    }

    fn leader_among(&self, candidates: &[usize]) -> Option<usize> {
        candidates
            .iter()
            .copied()
            .find(|&i| matches!(self.gateways[i].health(), Ok(200)))
    }

    /// Waits until one of them leads; which, and how long that took from `since`.
    async fn wait_for_leader(&mut self, since: Instant, what: &str) -> (usize, Duration) {
        self.wait_for_leader_among(&[0, 1], since, what).await
    }

    /// [`Pair::wait_for_leader`] asking only `candidates` (a paused process would hold up
    /// every poll until the request's timeout).
    async fn wait_for_leader_among(&mut self, candidates: &[usize], since: Instant, what: &str) -> (usize, Duration) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = tokio::task::block_in_place(|| self.leader_among(candidates)) {
                return (leader, since.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no gateway leads after 60 s; logs:\n{}\n---\n{}",
                self.gateways[0].log_tail(40),
                self.gateways[1].log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts again any gateway that has exited, as systemd's `Restart=always` would. A
    /// gateway may exit only as fenced (status 3).
    fn restart_exited(&mut self) {
        for gateway in &mut self.gateways {
            if !gateway.is_running() {
                if let Ok(status) = gateway.wait_exit(Duration::from_secs(1)) {
                    assert_eq!(
                        status.code(),
                        Some(3),
                        "a gateway exited ({status}):\n{}",
                        gateway.log_tail(60)
                    );
                }
                gateway.respawn().unwrap();
            }
        }
    }
}

/// One fault's row in the printed table.
struct Row {
    fault: &'static str,
    leader_after: Duration,
    drained_after: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_failed_leader_or_database_and_nothing_is_lost_or_doubled() {
    let started = Instant::now();
    // A primary whose commits wait for its synchronous standby, and that standby.
    let (mut primary, mut replica) = tokio::task::block_in_place(|| {
        let primary = Postgres::start_with(PostgresOptions {
            synchronous_standby_names: Some(REPLICA.into()),
            ..PostgresOptions::default()
        })
        .unwrap();
        let replica = primary.start_replica(REPLICA, PostgresOptions::default()).unwrap();
        primary.wait_for_standby(REPLICA).unwrap();
        (primary, replica)
    });
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
    // Both servers, the writable one wherever it is: what a deployment's URL says.
    let postgres_url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2",
        primary.port(),
        replica.port()
    );
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
    let first = tokio::task::block_in_place(|| GatewayProcess::start(options("gateway-a"))).unwrap();
    let second = tokio::task::block_in_place(|| GatewayProcess::start_in_background(options("gateway-b"))).unwrap();
    let mut pair = Pair {
        gateways: [first, second],
    };
    // The standby serves nothing while it stands by.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        pair.gateways[1].is_running(),
        "the standby exited:\n{}",
        pair.gateways[1].log_tail(40)
    );
    assert_eq!(tokio::task::block_in_place(|| pair.leader()), Some(0));

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
    let load = tokio::spawn(drive_telemetry(
        devices.clone(),
        TELEMETRY_PER_DEVICE_S,
        running.clone(),
    ));
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
    let mut rows: Vec<Row> = Vec::with_capacity(4);
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---- 1. the leader is SIGKILLed ----
    let leader = tokio::task::block_in_place(|| pair.leader()).unwrap();
    let injected = Instant::now();
    tokio::task::block_in_place(|| pair.gateways[leader].kill_hard()).unwrap();
    press(PRESSES_PER_PHASE);
    let (new_leader, leader_after) = pair.wait_for_leader(injected, "after the leader was killed").await;
    assert_ne!(new_leader, leader);
    wait_drained(&devices, Duration::from_secs(60), "after the leader was killed").await;
    rows.push(Row {
        fault: "leader SIGKILLed",
        leader_after,
        drained_after: injected.elapsed(),
    });
    // The killed gateway comes back (as a supervisor would start it): it stands by.
    tokio::task::block_in_place(|| pair.gateways[leader].respawn()).unwrap();
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---- 2. the leader is paused past its lease ----
    let leader = new_leader;
    let injected = Instant::now();
    tokio::task::block_in_place(|| pair.gateways[leader].pause()).unwrap();
    press(PRESSES_PER_PHASE);
    let (_, leader_after) = pair
        .wait_for_leader_among(&[1 - leader], injected, "after the leader was paused")
        .await;
    wait_drained(&devices, Duration::from_secs(60), "after the leader was paused").await;
    rows.push(Row {
        fault: "leader SIGSTOPped past its lease",
        leader_after,
        drained_after: injected.elapsed(),
    });
    // Let go, the paused gateway finds the lease taken and stops by itself, acking nothing.
    tokio::task::block_in_place(|| pair.gateways[leader].resume()).unwrap();
    let status = tokio::task::block_in_place(|| pair.gateways[leader].wait_exit(Duration::from_secs(30))).unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the fenced gateway did not stop as fenced ({status}):\n{}",
        pair.gateways[leader].log_tail(60)
    );
    tokio::task::block_in_place(|| pair.restart_exited());
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---- 3. a commit waiting for the synchronous standby is cut off ----
    // The standby goes away, so the leader's next commit waits for it; that backend is
    // terminated mid-wait. PostgreSQL has then committed locally what no device may be told:
    // the gateway must send no receipt for it, and the devices' resends are receipted only
    // after a later commit succeeds.
    let injected = Instant::now();
    tokio::task::block_in_place(|| replica.stop()).unwrap();
    let terminated = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = primary
                .psql("SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND application_name = 'tec-gateway'")
                .unwrap();
            if let Some(pid) = waiting.lines().next() {
                return primary.psql(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
            }
            assert!(Instant::now() < deadline, "no gateway commit waited for the standby");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    assert_eq!(terminated, "t");
    press(PRESSES_PER_PHASE);
    tokio::task::block_in_place(|| replica.start_again()).unwrap();
    tokio::task::block_in_place(|| primary.wait_for_standby(REPLICA)).unwrap();
    let (_, leader_after) = pair.wait_for_leader(injected, "after the commit was cut off").await;
    wait_drained(&devices, Duration::from_secs(60), "after the commit was cut off").await;
    rows.push(Row {
        fault: "backend terminated in its synchronous-standby wait",
        leader_after,
        drained_after: injected.elapsed(),
    });
    tokio::task::block_in_place(|| pair.restart_exited());
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---- 4. the primary dies and the replica is promoted ----
    let injected = Instant::now();
    tokio::task::block_in_place(|| primary.stop_immediately()).unwrap();
    press(PRESSES_PER_PHASE);
    tokio::task::block_in_place(|| replica.promote()).unwrap();
    // Either gateway may lead after it: the lease may have run out during the outage.
    tokio::task::block_in_place(|| pair.restart_exited());
    let (_, leader_after) = pair.wait_for_leader(injected, "after the promotion").await;
    wait_drained(&devices, Duration::from_secs(60), "after the promotion").await;
    rows.push(Row {
        fault: "primary stopped, replica promoted",
        leader_after,
        drained_after: injected.elapsed(),
    });
    tokio::task::block_in_place(|| pair.restart_exited());
    press(PRESSES_PER_PHASE);
    tokio::time::sleep(Duration::from_secs(2)).await;

    running.store(false, Ordering::SeqCst);
    load.await.unwrap();
    // The last readings may still be on their way into the devices' cores: settle until no
    // device numbers anything new and every outbox is empty.
    let finals: Vec<simulator::DeviceView> = loop {
        wait_drained(&devices, Duration::from_secs(60), "at the end").await;
        let before: Vec<u32> = devices.iter().map(|d| d.view().next_seq).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        wait_drained(&devices, Duration::from_secs(60), "at the end").await;
        let views: Vec<simulator::DeviceView> = devices.iter().map(DeviceHandle::view).collect();
        if views.iter().map(|v| v.next_seq).eq(before) {
            break views;
        }
    };
    for gateway in &mut pair.gateways {
        if gateway.is_running() {
            let status = tokio::task::block_in_place(|| gateway.terminate()).unwrap();
            assert!(status.success(), "unclean stop ({status}):\n{}", gateway.log_tail(40));
        }
    }

    // ---- the devices' state against the store (the promoted replica) ----
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
    let numbered: HashMap<DeviceId, (u32, u32)> = ids
        .iter()
        .zip(&finals)
        .map(|(id, view)| (*id, (view.boot, view.next_seq)))
        .collect();
    let extra: Vec<&StoredEvent> = events
        .iter()
        .map(|read| &read.event)
        .filter(|event| {
            numbered
                .get(&event.key.device)
                .is_none_or(|&(boot, next_seq)| event.key.boot != boot || event.key.seq >= next_seq)
        })
        .collect();

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
        "\nfailover on PostgreSQL: {DEVICES} pendants, lease {LEASE_S} s, a synchronous standby, {} s in all",
        started.elapsed().as_secs()
    );
    // A leader's /healthz stays 200 while its commits wait on the database (faults 3 and 4):
    // the drain, every device's outbox empty, is when everything was receipted again.
    println!("| fault | a gateway leading (HTTP 200) after | every outbox empty (all receipted) after |");
    println!("|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.2} s | {:.2} s |",
            row.fault,
            row.leader_after.as_secs_f64(),
            row.drained_after.as_secs_f64()
        );
    }
    println!(
        "receipted {receipted}, stored {}, lost {}, duplicated {}, not sent by a device {}; presses {} made, {} stored, {} without an alert",
        copies.len(),
        lost.len(),
        doubled.len(),
        extra.len(),
        presses.len(),
        stored_presses.len(),
        without_alert.len()
    );
    assert!(lost.is_empty(), "receipted but not stored: {lost:?}");
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert!(extra.is_empty(), "stored events no device numbered: {extra:#?}");
    assert_eq!(stored_presses.len(), presses.len(), "presses made and stored differ");
    assert!(without_alert.is_empty(), "presses without an alert: {without_alert:?}");
    for device in Arc::try_unwrap(devices).ok().unwrap() {
        device.stop().await.unwrap();
    }
}
