#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `tec-gateway events|alerts|quarantine --api URL` against a running gateway: each command's
//! output through the API equals its output on the same store read offline once the gateway
//! is stopped (tables and JSON, filters, paging over thousands of events), the reads are
//! audited, and every failure (bad token, wrong role, unreachable gateway, bad URL, an answer
//! that is not the API's JSON) is a clear error, never a panic.

mod access_support;
/// TEC_TEST_STORE is ignored here: redb only: an unreadable redb record and the `--data` commands.
#[path = "store_support/fixed.rs"]
mod store_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use access_support::{Gateway, T0};
use clap::Parser;
use gateway::cli::inspect::*;
use gateway::domain::*;
use gateway::store::*;
use protocol::{ActivitySummary, AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, UplinkBody};

const NEW: &str = "a long enough passphrase";
/// "Now" for relative times, the same for both runs.
const NOW: Timestamp = Timestamp(T0 + 2 * 3_600_000);
/// Events of one bulk device: more than one API page (5000), in busy milliseconds.
const BULK_EVENTS: u32 = 5_600;
const BULK_PER_MILLISECOND: u32 = 700;

#[derive(Debug, Parser)]
struct EventsCli {
    #[command(flatten)]
    args: EventsArgs,
}

#[derive(Debug, Parser)]
struct AlertsCli {
    #[command(flatten)]
    args: AlertsArgs,
}

#[derive(Debug, Parser)]
struct QuarantineCli {
    #[command(flatten)]
    args: QuarantineArgs,
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn heartbeat(percent: u8) -> EventBody {
    EventBody::Uplink(UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2_900,
        battery_percent: percent,
        rssi_dbm: -70,
        uptime_s: 60,
        firmware: FirmwareVersion {
            major: 1,
            minor: 2,
            patch: 3,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    }))
}

fn event(device: &str, boot: u32, seq: u32, received: i64, resident: Option<&str>, body: EventBody) -> NewEvent {
    let device_time = matches!(body, EventBody::Uplink(_)).then_some(Timestamp(received - 2_000));
    NewEvent::from_event(StoredEvent {
        key: EventKey {
            device: dev(device),
            boot,
            seq,
        },
        resident: resident.map(|r| ResidentId::new(r).unwrap()),
        received_at: Timestamp(received),
        device_time,
        protocol_version: 1,
        body,
    })
    .unwrap()
}

/// Events of every body type (an unrecognised one, a reused key), alerts with transitions and
/// affected devices, quarantined payloads (one cut at 1 KiB), written with the gateway stopped.
fn seed(data: &Path) {
    let store = Store::open_in_dir(data).unwrap();
    let mut batch = store.begin_write().unwrap();
    let mut events = vec![
        event(
            "pnd-1",
            1,
            1,
            T0,
            Some("R1"),
            EventBody::Uplink(UplinkBody::Alarm(AlarmKind::Fall)),
        ),
        event("pnd-1", 1, 2, T0 + 60_000, Some("R1"), heartbeat(41)),
        event(
            "pir-1",
            2,
            7,
            T0 + 61_000,
            Some("R1"),
            EventBody::Uplink(UplinkBody::Activity(ActivitySummary {
                window_s: 300,
                motion_counts: heapless::Vec::from_slice(&[0, 3, 1]).unwrap(),
            })),
        ),
        event(
            "hub-2",
            3,
            9,
            T0 + 3_600_000,
            None,
            EventBody::Unrecognised {
                body_tag: 0,
                raw: vec![1, 3, 9, 0, 0, 0xff],
            },
        ),
    ];
    for n in 0..BULK_EVENTS {
        let received = T0 + 120_000 + i64::from(n / BULK_PER_MILLISECOND);
        events.push(event("bulk-1", 1, n, received, Some("R2"), heartbeat((n % 100) as u8)));
    }
    batch.insert_events(&events).unwrap();
    // pnd-1 reuses 1/1 for a press: a second copy.
    batch
        .insert_events(&[event(
            "pnd-1",
            1,
            1,
            T0 + 7_000_000,
            None,
            EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)),
        )])
        .unwrap();
    let raised = |at: i64, key: Option<(&str, u32, u32)>| Transition {
        at: Timestamp(at),
        change: Change::Raised {
            event: key.map(|(device, boot, seq)| EventKey {
                device: dev(device),
                boot,
                seq,
            }),
        },
    };
    batch
        .put_alert(&Alert {
            id: AlertId(1),
            kind: AlertKind::Fall,
            priority: Priority::LifeSafety,
            state: AlertState::Acknowledged,
            resident: Some(ResidentId::new("R1").unwrap()),
            device: Some(dev("pnd-1")),
            unregistered_device: false,
            raised_at: Timestamp(T0),
            late_by_ms: Some(2_000),
            escalation_level: 0,
            transitions: vec![
                raised(T0, Some(("pnd-1", 1, 1))),
                Transition {
                    at: Timestamp(T0 + 45_000),
                    change: Change::Acknowledged { operator: "op7".into() },
                },
                Transition {
                    at: Timestamp(T0 + 50_000),
                    change: Change::Note {
                        operator: "op7".into(),
                        text: "daughter on her way, <b>door</b> \"open\"".into(),
                    },
                },
            ],
            affected_devices: Vec::new(),
        })
        .unwrap();
    batch
        .put_alert(&Alert {
            id: AlertId(2),
            kind: AlertKind::DeviceOffline,
            priority: Priority::Technical,
            state: AlertState::Resolved,
            resident: None,
            device: Some(dev("hub-2")),
            unregistered_device: true,
            raised_at: Timestamp(T0 + 1_000),
            late_by_ms: None,
            escalation_level: 1,
            transitions: vec![
                raised(T0 + 1_000, None),
                Transition {
                    at: Timestamp(T0 + 2_000),
                    change: Change::Escalated { level: 1 },
                },
                Transition {
                    at: Timestamp(T0 + 3_000),
                    change: Change::Resolved {
                        operator: None,
                        outcome: Outcome::AutoCleared,
                        note: None,
                    },
                },
            ],
            affected_devices: Vec::new(),
        })
        .unwrap();
    batch
        .quarantine(&QuarantineRecord {
            received_at: Timestamp(T0),
            topic: "tec/v1/dev/pnd-9/up".into(),
            payload: vec![0xde, 0xad, 0xbe, 0xef],
            original_len: 4,
            reason: RejectReason::Malformed,
            detail: "truncated".into(),
        })
        .unwrap();
    batch
        .quarantine(&QuarantineRecord {
            received_at: Timestamp(T0 + 1),
            topic: "tec/v1/dev/pnd-9/up".into(),
            payload: vec![0x11; 3_000],
            original_len: 3_000,
            reason: RejectReason::Oversize,
            detail: "too long".into(),
        })
        .unwrap();
    batch.commit().unwrap();
}

struct Setup {
    gw: Gateway,
    tokens: tempfile::TempDir,
}

impl Setup {
    fn url(&self) -> String {
        format!("http://{}", self.gw.handle().http_addr())
    }

    fn token_file(&self, user: &str) -> String {
        self.tokens.path().join(user).to_str().unwrap().to_owned()
    }

    fn token(&self, user: &str) -> String {
        std::fs::read_to_string(self.token_file(user)).unwrap()
    }
}

/// One user per role (passwords changed, tokens in files), the store seeded, the gateway
/// running on it.
async fn setup() -> Setup {
    let users = [
        ("olive", "operator"),
        ("carl", "care_staff"),
        ("mona", "manager"),
        ("ada", "admin"),
    ];
    let (mut gw, passwords) = Gateway::start(&users).await;
    let tokens = tempfile::tempdir().unwrap();
    for ((name, _), one_time) in users.iter().zip(&passwords) {
        let token = gw.first_login(name, one_time, NEW).await;
        std::fs::write(tokens.path().join(name), format!("{token}\n")).unwrap();
    }
    gw.stop().await;
    seed(gw.dir.path());
    gw.restart().await;
    Setup { gw, tokens }
}

/// What a command printed and, if it failed, its error.
type Printed = (String, Option<String>);

/// Runs `tec-gateway COMMAND ARGS...` through the library (as `main` does), off the async
/// threads (the client blocks on the gateway served by this very runtime).
async fn cli(args: Vec<String>) -> Printed {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let result = match args[0].as_str() {
            "events" => EventsCli::try_parse_from(&args)
                .map_err(anyhow::Error::from)
                .and_then(|cli| run_events_at(&cli.args, NOW, &mut out)),
            "alerts" => AlertsCli::try_parse_from(&args)
                .map_err(anyhow::Error::from)
                .and_then(|cli| run_alerts(&cli.args, &mut out)),
            "quarantine" => QuarantineCli::try_parse_from(&args)
                .map_err(anyhow::Error::from)
                .and_then(|cli| run_quarantine(&cli.args, &mut out)),
            other => panic!("no command {other}"),
        };
        (String::from_utf8(out).unwrap(), result.err().map(|e| format!("{e:#}")))
    })
    .await
    .unwrap()
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// Each command, with its options, and the user whose token it uses.
const CASES: &[(&str, &[&str])] = &[
    ("olive", &["events"]),
    ("olive", &["events", "--format", "json"]),
    ("ada", &["events", "--device", "pnd-1"]),
    ("ada", &["events", "--device", "pnd-1", "--format", "json"]),
    ("olive", &["events", "--resident", "R1", "--format", "json"]),
    ("olive", &["events", "--resident", "R2", "--limit", "5001"]),
    (
        "olive",
        &["events", "--device", "bulk-1", "--limit", "701", "--format", "json"],
    ),
    (
        "olive",
        &[
            "events",
            "--since",
            "2026-11-23T10:01:00Z",
            "--until",
            "-1h",
            "--format",
            "json",
        ],
    ),
    ("olive", &["events", "--since", "-1h 59m", "--limit", "3"]),
    ("olive", &["events", "--device", "nobody", "--format", "json"]),
    ("olive", &["events", "--device", "nobody"]),
    ("olive", &["alerts"]),
    ("mona", &["alerts", "--format", "json"]),
    ("olive", &["alerts", "--open"]),
    ("mona", &["alerts", "--open", "--format", "json"]),
    ("ada", &["quarantine"]),
    ("ada", &["quarantine", "--format", "json"]),
    ("ada", &["quarantine", "--limit", "1", "--format", "json"]),
];

#[tokio::test]
async fn every_command_prints_the_same_through_the_api_as_from_the_stopped_store() {
    let mut setup = setup().await;
    let url = setup.url();
    let mut online = Vec::new();
    for (user, case) in CASES {
        let token_file = setup.token_file(user);
        let mut parts = args(case);
        parts.extend(args(&["--api", &url, "--token-file", &token_file]));
        let outcome = cli(parts).await;
        assert_eq!(outcome.1, None, "{case:?}");
        online.push(outcome);
    }
    // The bulk device's events span two API pages and busy milliseconds: all there, once.
    let bulk: Vec<serde_json::Value> = serde_json::from_str(&online[1].0).unwrap();
    assert_eq!(bulk.len(), BULK_EVENTS as usize + 5);
    assert!(online[5].0.ends_with("5001 event(s)\n"), "{}", &online[5].0[..200]);
    assert!(
        online[11]
            .0
            .contains("note by op7: daughter on her way, <b>door</b> \"open\"")
    );
    assert_eq!(online[9].0, "[]\n");

    setup.gw.stop().await;
    let data = setup.gw.data().to_owned();
    for ((_, case), online) in CASES.iter().zip(&online) {
        let mut parts = args(case);
        parts.extend(args(&["--data", &data]));
        let offline = cli(parts).await;
        assert_eq!(offline.1, None, "{case:?}");
        assert!(online.0 == offline.0, "{case:?}: API and store outputs differ");
    }

    // Reads through the API are audited: events as read_history (with the resident when the
    // read was one resident's), the quarantine as read_quarantine.
    let store = Store::open_in_dir(setup.gw.dir.path()).unwrap();
    let entries: Vec<serde_json::Value> = store
        .audit_raw()
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice(&bytes).unwrap())
        .collect();
    let count = |action: &str, user: &str, resident: Option<&str>| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["username"] == user && e["resident"].as_str() == resident)
            .count()
    };
    assert_eq!(count("read_history", "olive", Some("R1")), 1);
    // --resident R2 --limit 5001: two pages, each read audited.
    assert_eq!(count("read_history", "olive", Some("R2")), 2);
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "read_history" && e["target"] == "inspect events of device pnd-1"),
        "{entries:?}"
    );
    assert_eq!(count("read_quarantine", "ada", None), 3);
}

#[tokio::test]
async fn small_pages_of_the_events_route_cover_every_event_once_in_order() {
    let setup = setup().await;
    let token = setup.token("olive");
    let token = token.trim();
    let mut seen: Vec<(i64, String, u64, u64, u64)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        // 300 is under the events of one millisecond (700): the server reads bigger chunks.
        let mut path = "/api/v1/inspect/events?device=bulk-1&limit=300".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let reply = setup.gw.call("GET", &path, Some(token), None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let page = reply.json();
        for read in page["events"].as_array().unwrap() {
            let event = &read["event"];
            seen.push((
                event["received_at"].as_i64().unwrap(),
                event["key"]["device"].as_str().unwrap().to_owned(),
                event["key"]["boot"].as_u64().unwrap(),
                event["key"]["seq"].as_u64().unwrap(),
                read["copy"].as_u64().unwrap(),
            ));
        }
        pages += 1;
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, BULK_EVENTS.div_ceil(300));
    assert_eq!(seen.len(), BULK_EVENTS as usize);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "in order, each once");

    for bad in [
        "limit=0",
        "limit=5001",
        "limit=ten",
        "cursor=nonsense",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "device=",
        "resident=a/b",
        "colour=red",
    ] {
        let reply = setup
            .gw
            .call("GET", &format!("/api/v1/inspect/events?{bad}"), Some(token), None)
            .await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(!reply.error().is_empty());
    }
    let admin = setup.token("ada");
    for bad in ["limit=0", "limit=-1", "limit=10001", "colour=red"] {
        let reply = setup
            .gw
            .call(
                "GET",
                &format!("/api/v1/inspect/quarantine?{bad}"),
                Some(admin.trim()),
                None,
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
}

#[tokio::test]
async fn an_unreadable_record_fails_the_command_the_same_way_through_the_api() {
    let mut setup = setup().await;
    setup.gw.stop().await;
    {
        let path = setup.gw.dir.path().join(STORE_FILE_NAME);
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<(&str, u32, u32, u32), &[u8]>::new("events"))
            .unwrap()
            .insert(("pnd-1", 1, 2, 0), [9_u8, 9].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    setup.gw.restart().await;
    let url = setup.url();
    let token_file = setup.token_file("olive");
    let case = ["events", "--device", "pnd-1", "--format", "json"];
    let mut parts = args(&case);
    parts.extend(args(&["--api", &url, "--token-file", &token_file]));
    let online = cli(parts).await;
    setup.gw.stop().await;
    let mut parts = args(&case);
    parts.extend(args(&["--data", setup.gw.data()]));
    let offline = cli(parts).await;
    assert_eq!(online, offline);
    let error = online.1.unwrap();
    assert!(
        error.contains("1 stored record(s) could not be read") && error.contains("table events, key pnd-1/1/2 copy 0"),
        "{error}"
    );
    let printed: Vec<serde_json::Value> = serde_json::from_str(&online.0).unwrap();
    assert_eq!(printed.len(), 2);
}

#[tokio::test]
async fn a_quarantine_larger_than_one_answer_is_printed_and_then_reported() {
    let mut setup = setup().await;
    setup.gw.stop().await;
    {
        // A gateway configured to keep more than the API answers at once.
        let store = Store::open_in_dir(setup.gw.dir.path())
            .unwrap()
            .with_quarantine_capacity(20_000);
        let mut batch = store.begin_write().unwrap();
        for n in 0..10_000 {
            batch
                .quarantine(&QuarantineRecord {
                    received_at: Timestamp(T0 + 10 + n),
                    topic: format!("tec/v1/dev/x-{n}/up"),
                    payload: vec![1, 2, 3],
                    original_len: 3,
                    reason: RejectReason::Malformed,
                    detail: "bad".into(),
                })
                .unwrap();
        }
        batch.commit().unwrap();
        assert_eq!(store.quarantine_len().unwrap(), 10_002);
    }
    setup.gw.restart().await;
    let url = setup.url();
    let token_file = setup.token_file("ada");
    let (out, error) = cli(args(&["quarantine", "--api", &url, "--token-file", &token_file])).await;
    assert!(out.ends_with("\n10000 record(s)\n"), "{}", &out[out.len() - 100..]);
    assert!(
        out.lines().nth(1).unwrap().contains("tec/v1/dev/x-9999/up"),
        "newest first"
    );
    let error = error.unwrap();
    assert!(
        error.contains("the quarantine holds 10002 records") && error.contains("read them all offline"),
        "{error}"
    );
    let (out, error) = cli(args(&[
        "quarantine",
        "--limit",
        "10",
        "--api",
        &url,
        "--token-file",
        &token_file,
    ]))
    .await;
    assert_eq!((out.lines().count(), error), (12, None));
    let (_, error) = cli(args(&[
        "quarantine",
        "--limit",
        "10001",
        "--api",
        &url,
        "--token-file",
        &token_file,
    ]))
    .await;
    assert!(error.unwrap().contains("bad limit"));
}

/// Answers one HTTP request with a 200 that is not JSON.
fn not_an_api() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = Vec::new();
            let mut byte = [0_u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let body = "<html>a login page</html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn failures_are_clear_errors() {
    let setup = setup().await;
    let url = setup.url();
    let failure = |parts: Vec<String>| async move {
        let (out, error) = cli(parts).await;
        assert_eq!(out, "", "nothing printed on a failure");
        error.expect("the command must fail")
    };

    // A token the gateway does not know.
    let stale = setup.tokens.path().join("stale");
    std::fs::write(&stale, "0".repeat(64)).unwrap();
    let error = failure(args(&[
        "events",
        "--api",
        &url,
        "--token-file",
        stale.to_str().unwrap(),
    ]))
    .await;
    assert!(
        error.contains("refused the token (401") && error.contains("log in again"),
        "{error}"
    );

    // Roles: care staff may not list events; only admins read the quarantine; alerts are for
    // operators and managers.
    let error = failure(args(&[
        "events",
        "--api",
        &url,
        "--token-file",
        &setup.token_file("carl"),
    ]))
    .await;
    assert!(
        error.contains("403") && error.contains("needs a user with the role operator or admin"),
        "{error}"
    );
    let error = failure(args(&[
        "quarantine",
        "--api",
        &url,
        "--token-file",
        &setup.token_file("olive"),
    ]))
    .await;
    assert!(error.contains("403") && error.contains("the role admin"), "{error}");
    let error = failure(args(&[
        "alerts",
        "--api",
        &url,
        "--token-file",
        &setup.token_file("ada"),
    ]))
    .await;
    assert!(error.contains("the role operator or manager"), "{error}");

    // Nobody listening.
    let closed = closed_port_url();
    let error = failure(args(&[
        "alerts",
        "--api",
        &closed,
        "--token-file",
        &setup.token_file("olive"),
    ]))
    .await;
    assert!(
        error.contains(&format!("the gateway is not reachable at {closed}")),
        "{error}"
    );

    // Not a URL, or not an http one.
    for bad in ["127.0.0.1:8080", "ftp://127.0.0.1", "http://", "http://h/?a=b", "::"] {
        let error = failure(args(&[
            "events",
            "--api",
            bad,
            "--token-file",
            &setup.token_file("olive"),
        ]))
        .await;
        assert!(error.contains("bad --api URL"), "{bad}: {error}");
    }

    // Something else answering on that address.
    let other = not_an_api();
    let error = failure(args(&[
        "quarantine",
        "--api",
        &other,
        "--token-file",
        &setup.token_file("ada"),
    ]))
    .await;
    assert!(error.contains("is not the gateway API's JSON"), "{error}");

    // No token at all (TEC_API_TOKEN is not set for the tests), an empty token file, a missing one.
    if std::env::var_os("TEC_API_TOKEN").is_none() {
        let error = failure(args(&["events", "--api", &url])).await;
        assert!(
            error.contains("--token-file") && error.contains("TEC_API_TOKEN"),
            "{error}"
        );
    }
    let empty = setup.tokens.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let error = failure(args(&[
        "events",
        "--api",
        &url,
        "--token-file",
        empty.to_str().unwrap(),
    ]))
    .await;
    assert!(error.contains("token is empty"), "{error}");
    let missing = setup.tokens.path().join("missing");
    let error = failure(args(&[
        "events",
        "--api",
        &url,
        "--token-file",
        missing.to_str().unwrap(),
    ]))
    .await;
    assert!(error.contains("cannot read the token file"), "{error}");

    // Both sources, or neither: a usage error.
    let data = setup.gw.data().to_owned();
    let error = failure(args(&["events", "--api", &url, "--data", &data])).await;
    assert!(error.contains("cannot be used with"), "{error}");
    let error = failure(args(&["alerts"])).await;
    assert!(error.contains("--data"), "{error}");
    let error = failure(args(&[
        "quarantine",
        "--data",
        &data,
        "--token-file",
        &setup.token_file("ada"),
    ]))
    .await;
    assert!(error.contains("cannot be used with"), "{error}");
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tec-gateway"));
    command.env_remove("TEC_API_TOKEN").env_remove("RUST_LOG");
    command
}

#[tokio::test]
async fn the_binary_takes_the_token_from_the_environment_and_exits_1_on_refusal() {
    let setup = setup().await;
    let url = setup.url();
    let admin = setup.token("ada").trim().to_owned();
    let operator = setup.token("olive").trim().to_owned();
    let run = |command: &'static str, token: String, url: String| {
        tokio::task::spawn_blocking(move || {
            binary()
                .args([command, "--api", &url, "--format", "json"])
                .env("TEC_API_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let output = run("quarantine", admin, url.clone()).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let expected = cli(args(&[
        "quarantine",
        "--format",
        "json",
        "--api",
        &url,
        "--token-file",
        &setup.token_file("ada"),
    ]))
    .await;
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected.0);

    let output = run("quarantine", operator, url.clone()).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("needs a user with the role admin"), "{stderr}");

    let output = tokio::task::spawn_blocking(|| binary().args(["events", "--api", "nonsense"]).output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("bad --api URL"), "{stderr}");
    let output = tokio::task::spawn_blocking(|| binary().args(["events"]).output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
}

/// The token file's path, never its content, is what `ps` shows.
#[test]
fn there_is_no_token_flag() {
    let error = EventsCli::try_parse_from(["events", "--api", "http://h:1", "--token", "secret"]).unwrap_err();
    assert!(error.to_string().contains("--token"), "{error}");
}
