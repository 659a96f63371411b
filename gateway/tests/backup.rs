//! Online backup and restore (issue 10, operations): a backup taken while events are being
//! committed restores into a gateway that serves the same history; the offline backup; the
//! restore's refusals; the command line's bad input; `/readyz` following the broker; and how
//! long an alarm commit waits while a large store is being backed up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod access_support;
mod ingest_support;
/// TEC_TEST_STORE is ignored here: redb only: backups are redb's (PostgreSQL has its own: pg_basebackup, WAL archiving).
#[path = "store_support/fixed.rs"]
mod store_support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use access_support::{Gateway, T0};
use gateway::app::spawn;
use gateway::demo::{DemoConfig, write_demo};
use gateway::domain::*;
use gateway::store::*;
use ingest_support::{Device, Mosquitto, eventually, http};
use protocol::{AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, UplinkBody};
use serde_json::Value;

const NEW: &str = "a long enough passphrase";

fn status(uptime_s: u32) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2950,
        battery_percent: 87,
        rssi_dbm: -70,
        uptime_s,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 2,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}

fn tec_gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tec-gateway"))
        .args(args)
        .env_remove("TEC_API_TOKEN")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A demo borough's history (a few thousand events, alerts, register) in `data`.
fn demo_history(data: &Path, people_scale: f64, until: jiff::civil::Date) {
    let store = Store::open_in_dir(data).unwrap();
    let mut config = DemoConfig::new(7, until, Timestamp(T0));
    config.people_scale = people_scale;
    write_demo(&store, &config, &mut |_| {}).unwrap();
}

/// Everything a gateway answers from its store, in a comparable form.
#[derive(Debug, PartialEq)]
struct History {
    events: Vec<EventRead>,
    alerts: Vec<Alert>,
    residents: Vec<Resident>,
    devices: Vec<DeviceRecord>,
    people: usize,
    assignments: Vec<Assignment>,
}

fn history(store: &Store) -> History {
    History {
        events: store.events(&EventFilter::default()).unwrap().events,
        alerts: store.alerts(&AlertFilter::default()).unwrap(),
        residents: store.residents().unwrap(),
        devices: store.devices().unwrap(),
        people: store.people().unwrap().len(),
        assignments: store.all_assignments().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_gateway_serving_the_same_history() {
    let broker = Mosquitto::start();
    let users = [("ada", "admin"), ("mona", "manager"), ("olive", "operator")];
    let (mut gw, passwords) = Gateway::start_with_broker(&users, Some(broker.url())).await;
    let mut tokens = Vec::new();
    for ((name, _), one_time) in users.iter().zip(&passwords) {
        tokens.push(gw.first_login(name, one_time, NEW).await);
    }
    let (ada, mona, olive) = (tokens[0].clone(), tokens[1].clone(), tokens[2].clone());
    gw.stop().await;
    demo_history(gw.dir.path(), 0.02, jiff::civil::date(2020, 9, 30));
    gw.restart().await;
    let handle = gw.handle().client();
    eventually("the gateway subscribed", || handle.mqtt_ready()).await;
    let load = DeviceId::new("load-1").unwrap();
    handle
        .register_device(DeviceRecord::new(load, DeviceKind::Pendant, true), None)
        .await
        .unwrap();
    let before_load = handle.store().unwrap().event_count().unwrap();

    // Load: one device sending status reports as fast as the broker takes them, until told.
    let device = Device::connect(broker.port, "load-1").await;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::Acquire) {
                seq += 1;
                device.send(1, seq, status(seq)).await;
                if seq % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            seq
        })
    };
    let store = handle.store().unwrap();
    eventually("load events committed", || {
        store.event_count().unwrap() > before_load + 200
    })
    .await;

    // The backup through the API, while the load goes on.
    let taken = gw.call("POST", "/api/v1/backup", Some(&ada), None).await;
    assert_eq!(taken.status, 200, "{taken:?}");
    let taken = taken.json();
    let file = taken["file"].as_str().unwrap().to_owned();
    assert_eq!(file, "20261123T100000Z.redb");
    let snapshot_events = taken["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "events")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert!(snapshot_events > before_load, "the snapshot has load events: {taken}");
    // Not for other roles, and an audited act.
    assert_eq!(gw.call("POST", "/api/v1/backup", Some(&olive), None).await.status, 403);
    let at_same_second = gw.call("POST", "/api/v1/backup", Some(&ada), None).await;
    assert_eq!(at_same_second.status, 409, "{at_same_second:?}");

    // The command line downloads it from the running gateway and verifies it.
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("token");
    std::fs::write(&token_file, &ada).unwrap();
    let downloaded = work.path().join("download.redb");
    let api = format!("http://{}", handle.http_addr());
    let cli = tokio::task::spawn_blocking({
        let (api, token_file, downloaded) = (api.clone(), token_file.clone(), downloaded.clone());
        move || {
            tec_gateway(&[
                "backup",
                "--api",
                &api,
                "--token-file",
                token_file.to_str().unwrap(),
                "--out",
                downloaded.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    // A second backup in the same second of the test clock is refused, so the command line
    // reports the gateway's 409; a second later it goes through.
    assert_eq!(cli.status.code(), Some(1), "{}", text(&cli.stderr));
    assert!(text(&cli.stderr).contains("409"), "{}", text(&cli.stderr));
    gw.clock.advance_ms(1_000);
    let cli = tokio::task::spawn_blocking({
        let (api, token_file, downloaded) = (api.clone(), token_file.clone(), downloaded.clone());
        move || {
            tec_gateway(&[
                "backup",
                "--api",
                &api,
                "--token-file",
                token_file.to_str().unwrap(),
                "--out",
                downloaded.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    assert!(cli.status.success(), "{}", text(&cli.stderr));
    let printed = text(&cli.stdout);
    assert!(printed.contains("verified") && printed.contains("events"), "{printed}");
    assert!(
        text(&cli.stderr).is_empty(),
        "no progress bar off a terminal: {}",
        text(&cli.stderr)
    );
    assert!(verify_backup(&downloaded).unwrap().rows("events") >= snapshot_events);

    // More load after the snapshots, then stop it and let everything be committed.
    eventually("more load events", || {
        store.event_count().unwrap() > snapshot_events + 200
    })
    .await;
    stop.store(true, Ordering::Release);
    let sent = sender.await.unwrap();
    eventually("every load event committed", || {
        store.event_count().unwrap() == before_load + u64::from(sent)
    })
    .await;
    drop(store);

    // Restore the API's snapshot (as the gateway wrote it) into a fresh directory.
    let restored = work.path().join("restored");
    let backup_path = gw.dir.path().join("backups").join(&file);
    let restore = tokio::task::spawn_blocking({
        let (backup_path, restored) = (backup_path.clone(), restored.clone());
        move || {
            tec_gateway(&[
                "restore",
                "--from",
                backup_path.to_str().unwrap(),
                "--data-dir",
                restored.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    assert!(
        text(&restore.stdout).contains(&format!("{snapshot_events}")),
        "{}",
        text(&restore.stdout)
    );

    // A gateway on the restored directory answers the same: the users' sessions came along.
    let second = spawn(access_support::config(&restored), gw.clock.clone())
        .await
        .unwrap();
    let original_api = |path: &'static str, token: String| {
        let gw = &gw;
        async move { gw.call("GET", path, Some(&token), None).await }
    };
    let restored_addr = second.http_addr();
    let restored_get = |path: &'static str, token: String| async move {
        access_support::call_at(restored_addr, "GET", path, Some(&token), None).await
    };
    for (path, token) in [
        ("/api/v1/alerts?limit=500", olive.clone()),
        ("/api/v1/residents", ada.clone()),
        ("/api/v1/devices", ada.clone()),
    ] {
        let (original, copy) = (original_api(path, token.clone()).await, restored_get(path, token).await);
        assert_eq!(original.status, 200, "{path}: {original:?}");
        let (mut original, mut copy) = (original.json(), copy.json());
        if path == "/api/v1/devices" {
            // The load device's last contact moved on after the snapshot; the list is the same.
            for list in [&mut original, &mut copy] {
                for device in list.as_array_mut().unwrap() {
                    device
                        .as_object_mut()
                        .unwrap()
                        .retain(|k, _| k == "id" || k == "kind" || k == "resident");
                }
            }
        }
        assert_eq!(original, copy, "{path}");
    }
    let verify = restored_get("/api/v1/audit/verify", mona.clone()).await.json();
    assert_eq!(verify["intact"], true, "{verify}");
    let restored_store = second.store().unwrap();
    assert_eq!(restored_store.event_count().unwrap(), snapshot_events);
    let copy = history(&restored_store);
    drop(restored_store);
    second.shutdown().await.unwrap();
    gw.stop().await;
    let original = history(&Store::open_in_dir(gw.dir.path()).unwrap());

    // The copy is the original as of one instant: all of it but the load events committed
    // after the snapshot, which are the load device's latest.
    let mut rest = original.events.clone();
    rest.retain(|read| !copy.events.contains(read));
    assert_eq!(
        copy.events.len() + rest.len(),
        original.events.len(),
        "the copy holds nothing new"
    );
    let copied_load = copy
        .events
        .iter()
        .filter(|r| r.event.key.device == load)
        .map(|r| r.event.key.seq);
    let last_copied = copied_load.max().unwrap();
    assert!(
        rest.iter()
            .all(|r| r.event.key.device == load && r.event.key.seq > last_copied),
        "only later load events are missing from the copy"
    );
    assert_eq!(
        (copy.alerts, copy.residents, copy.people, copy.assignments),
        (
            original.alerts,
            original.residents,
            original.people,
            original.assignments
        )
    );
    assert_eq!(copy.devices.len(), original.devices.len());
}

#[test]
fn offline_backup_restore_and_its_refusals() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    demo_history(&data, 0.01, jiff::civil::date(2020, 6, 30));
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_owned();
    let data_arg = data.to_str().unwrap();

    let out = tec_gateway(&["backup", "--data-dir", data_arg, "--out", &path("b.redb")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = verify_backup(Path::new(&path("b.redb"))).unwrap();
    // Every table of the store is in the copy, with the rows printed.
    assert_eq!(
        summary.tables.iter().map(|t| t.table.as_str()).collect::<Vec<_>>(),
        table_names()
    );
    let printed = text(&out.stdout);
    for table in &summary.tables {
        assert!(
            printed
                .lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>()
                    == [table.table.as_str(), &table.rows.to_string()]),
            "{} {} not printed: {printed}",
            table.table,
            table.rows
        );
    }
    assert!(
        summary.rows("events") > 1000 && summary.rows("alerts") > 0,
        "{summary:?}"
    );

    // Never over an existing file.
    let again = tec_gateway(&["backup", "--data-dir", data_arg, "--out", &path("b.redb")]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    // Restore into a fresh directory: the same history.
    let fresh = path("fresh");
    let restored = tec_gateway(&["restore", "--from", &path("b.redb"), "--data-dir", &fresh]);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert_eq!(
        history(&Store::open_in_dir(Path::new(&fresh)).unwrap()),
        history(&Store::open_in_dir(&data).unwrap())
    );

    // A non-empty directory is refused, and left as it was.
    let refused = tec_gateway(&["restore", "--from", &path("b.redb"), "--data-dir", data_arg]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("is not empty"),
        "{}",
        text(&refused.stderr)
    );

    // Damaged files are refused with a clear error, and leave no store behind.
    let good = std::fs::read(path("b.redb")).unwrap();
    std::fs::write(path("truncated.redb"), &good[..good.len() / 2]).unwrap();
    let mut flipped = good.clone();
    for byte in flipped.iter_mut().skip(good.len() / 3).take(4096) {
        *byte ^= 0x5a;
    }
    std::fs::write(path("flipped.redb"), &flipped).unwrap();
    std::fs::write(path("noise.redb"), b"not a database at all").unwrap();
    for (name, target) in [("truncated.redb", "t1"), ("flipped.redb", "t2"), ("noise.redb", "t3")] {
        let out = tec_gateway(&["restore", "--from", &path(name), "--data-dir", &path(target)]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("is not a usable tec-gateway backup"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(name), "names the file: {stderr}");
        assert!(!Path::new(&path(target)).join(STORE_FILE_NAME).exists(), "{name}");
        assert_eq!(
            std::fs::read_dir(path(target)).unwrap().count(),
            0,
            "{name}: nothing left behind"
        );
    }
    // A store file is not a backup (no manifest, nothing verified).
    let store_file = data.join(STORE_FILE_NAME);
    let out = tec_gateway(&[
        "restore",
        "--from",
        store_file.to_str().unwrap(),
        "--data-dir",
        &path("t4"),
    ]);
    assert!(
        text(&out.stderr).contains("no backup manifest"),
        "{}",
        text(&out.stderr)
    );
    let out = tec_gateway(&["restore", "--from", &path("missing.redb"), "--data-dir", &path("t5")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.redb"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_refuses_bad_input() {
    let (gw, passwords) = Gateway::start(&[("olive", "operator")]).await;
    let olive = gw.first_login("olive", &passwords[0], NEW).await;
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("b.redb");
    let out = out.to_str().unwrap().to_owned();
    let token_file = work.path().join("token");
    std::fs::write(&token_file, &olive).unwrap();
    let api = format!("http://{}", gw.handle().http_addr());
    let data = gw.data().to_owned();
    let token = token_file.to_str().unwrap().to_owned();
    let results = tokio::task::spawn_blocking(move || {
        let cases: Vec<(Vec<&str>, i32, &str)> = vec![
            (vec!["backup", "--data-dir", &data], 2, "--out"),
            (vec!["backup", "--out", &out], 2, "--api"),
            (
                vec!["backup", "--out", &out, "--data-dir", &data, "--api", &api],
                2,
                "cannot be used with",
            ),
            (vec!["backup", "--out", &out, "--api", "ftp://x"], 1, "bad --api URL"),
            (vec!["backup", "--out", &out, "--api", &api], 1, "TEC_API_TOKEN"),
            (
                vec!["backup", "--out", &out, "--api", &api, "--token-file", &token],
                1,
                "needs a user with the role admin",
            ),
            // The running gateway holds the store: the offline backup says to go online.
            (vec!["backup", "--out", &out, "--data-dir", &data], 1, "--api"),
            (
                vec!["backup", "--out", &out, "--data-dir", "/nonexistent/dir"],
                1,
                "no store in",
            ),
            (vec!["restore", "--data-dir", &data], 2, "--from"),
            (vec!["restore", "--from", &out], 2, "--data-dir"),
        ];
        cases
            .into_iter()
            .map(|(args, code, says)| (args.join(" "), tec_gateway(&args), code, says.to_owned()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (args, output, code, says) in results {
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args}: {stderr}");
        assert!(stderr.contains(&says), "{args}: expected {says:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
    assert!(!work.path().join("b.redb").exists());
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        1,
        "only the token file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_and_healthz_stays_up_for_liveness() {
    let mut broker = testkit::Broker::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = access_support::config_with(data.path(), Some(&broker.url()));
    let handle = spawn(config, Arc::new(SystemClock)).await.unwrap();
    let addr = handle.http_addr();
    let ready = || async move { http(addr, "GET", "/readyz").await };
    let wait_for = |want: u16| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = ready().await;
            if code == want {
                return serde_json::from_str::<Value>(&body).unwrap();
            }
            assert!(Instant::now() < deadline, "/readyz stayed {code}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let body = wait_for(200).await;
    assert_eq!(body, serde_json::json!({ "ready": true, "not_ready": {} }));

    broker.stop().unwrap();
    let body = wait_for(503).await;
    assert_eq!(body["ready"], false);
    let reasons = body["not_ready"].as_object().unwrap();
    assert_eq!(reasons.keys().collect::<Vec<_>>(), ["broker"], "{body}");

    broker.start_again().unwrap();
    wait_for(200).await;
    handle.shutdown().await.unwrap();
}

/// How long an alarm's commit waits while a large store is copied: the snapshot is a read
/// transaction, so the writer goes on; what it shares with the copy is the disk.
#[test]
fn an_alarm_commit_is_not_held_up_by_a_backup() {
    const EVENTS: u32 = 60_000;
    let work = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_in_dir(&work.path().join("data")).unwrap());
    let device = DeviceId::new("pnd-big").unwrap();
    let event = |seq: u32, body: UplinkBody| {
        NewEvent::from_event(StoredEvent {
            key: EventKey { device, boot: 1, seq },
            resident: Some(ResidentId::new("R1").unwrap()),
            received_at: Timestamp(T0 + i64::from(seq)),
            device_time: None,
            protocol_version: protocol::PROTOCOL_VERSION,
            body: EventBody::Uplink(body),
        })
        .unwrap()
    };
    for start in (1..=EVENTS).step_by(20_000) {
        let batch: Vec<NewEvent> = (start..start + 20_000).map(|seq| event(seq, status(seq))).collect();
        let mut txn = store.begin_write().unwrap();
        txn.insert_events(&batch).unwrap();
        txn.commit().unwrap();
    }
    let mut seq = EVENTS;
    let mut alarm_commit = |store: &Store| {
        seq += 1;
        let started = Instant::now();
        let mut txn = store.begin_write().unwrap();
        txn.insert_events(&[event(seq, UplinkBody::Alarm(AlarmKind::PendantPress))])
            .unwrap();
        txn.commit().unwrap();
        started.elapsed()
    };
    let idle: Vec<Duration> = (0..50).map(|_| alarm_commit(&store)).collect();

    let copying = Arc::new(AtomicBool::new(true));
    let backup = std::thread::spawn({
        let (store, copying) = (store.clone(), copying.clone());
        let out = work.path().join("big.redb");
        move || {
            let report = store.backup_to(&out, T0, &mut |_, _| {}).unwrap();
            copying.store(false, Ordering::Release);
            report
        }
    });
    let mut during = Vec::new();
    while copying.load(Ordering::Acquire) {
        during.push(alarm_commit(&store));
    }
    let report = backup.join().unwrap();
    let stats = |mut times: Vec<Duration>| {
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        (times.len(), at(0.5), at(0.99), times[times.len() - 1])
    };
    let (idle_n, idle_p50, idle_p99, idle_max) = stats(idle);
    let (n, p50, p99, max) = stats(during.clone());
    println!(
        "backup of {} rows ({} bytes) took {:?}; alarm commits idle: n={idle_n} p50={idle_p50:?} p99={idle_p99:?} \
         max={idle_max:?}; during the backup: n={n} p50={p50:?} p99={p99:?} max={max:?}",
        report.summary.total_rows(),
        report.summary.bytes,
        report.took
    );
    // The snapshot holds what was committed before it began, and the commits went on during it.
    assert!(report.summary.rows("events") >= u64::from(EVENTS));
    assert!(
        n >= 3,
        "alarm commits went on during the backup ({n} in {:?})",
        report.took
    );
    assert!(
        max < Duration::from_secs(2),
        "an alarm commit waited {max:?} during the backup"
    );
}
