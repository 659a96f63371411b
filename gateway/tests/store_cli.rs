#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The store-inspection commands: table and JSON output, argument errors, a store in use.

use clap::Parser;
use gateway::cli::inspect::*;
use gateway::domain::*;
use gateway::store::*;
use protocol::{AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, UplinkBody};

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

/// 2026-11-23T10:00:00Z
const T0: i64 = 1_795_428_000_000;

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn seeded_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let mut batch = store.begin_write().unwrap();
    let heartbeat = EventBody::Uplink(UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2_900,
        battery_percent: 41,
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
    }));
    let events = [
        (
            dev("pnd-1"),
            1,
            1,
            T0,
            Some("R1"),
            EventBody::Uplink(UplinkBody::Alarm(AlarmKind::Fall)),
        ),
        (dev("pnd-1"), 1, 2, T0 + 60_000, Some("R1"), heartbeat),
        (
            dev("hub-2"),
            3,
            9,
            T0 + 3_600_000,
            None,
            // Revision 1, boot 3, seq 9, no device time, alarm tag 0, then a broken kind.
            EventBody::Unrecognised {
                body_tag: 0,
                raw: vec![1, 3, 9, 0, 0, 0xff],
            },
        ),
    ];
    let events: Vec<NewEvent> = events
        .into_iter()
        .map(|(device, boot, seq, received, resident, body)| {
            let device_time = matches!(body, EventBody::Uplink(_)).then_some(Timestamp(received - 2_000));
            NewEvent::from_event(StoredEvent {
                key: EventKey { device, boot, seq },
                resident: resident.map(|r| ResidentId::new(r).unwrap()),
                received_at: Timestamp(received),
                device_time,
                protocol_version: 1,
                body,
            })
            .unwrap()
        })
        .collect();
    batch.insert_events(&events).unwrap();
    let raised = Transition {
        at: Timestamp(T0),
        change: Change::Raised {
            event: Some(EventKey {
                device: dev("pnd-1"),
                boot: 1,
                seq: 1,
            }),
        },
    };
    let open = Alert {
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
            raised.clone(),
            Transition {
                at: Timestamp(T0 + 45_000),
                change: Change::Acknowledged { operator: "op7".into() },
            },
        ],
        affected_devices: Vec::new(),
    };
    let resolved = Alert {
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
            Transition {
                at: Timestamp(T0 + 1_000),
                change: Change::Raised { event: None },
            },
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
    };
    batch.put_alert(&open).unwrap();
    batch.put_alert(&resolved).unwrap();
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
    dir
}

fn events_output(dir: &tempfile::TempDir, extra: &[&str]) -> anyhow::Result<String> {
    let data = dir.path().to_str().unwrap();
    let cli = EventsCli::try_parse_from([&["events", "--data", data], extra].concat())?;
    let mut out = Vec::new();
    run_events_at(&cli.args, Timestamp(T0 + 2 * 3_600_000), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn alerts_output(dir: &tempfile::TempDir, extra: &[&str]) -> String {
    let data = dir.path().to_str().unwrap();
    let cli = AlertsCli::try_parse_from([&["alerts", "--data", data], extra].concat()).unwrap();
    let mut out = Vec::new();
    run_alerts(&cli.args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn quarantine_output(dir: &tempfile::TempDir, extra: &[&str]) -> String {
    let data = dir.path().to_str().unwrap();
    let cli = QuarantineCli::try_parse_from([&["quarantine", "--data", data], extra].concat()).unwrap();
    let mut out = Vec::new();
    run_quarantine(&cli.args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn events_table_lists_events_in_time_order() {
    let dir = seeded_store();
    let text = events_output(&dir, &[]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("RECEIVED") && lines[0].contains("RESIDENT"),
        "{text}"
    );
    assert!(lines[1].contains("2026-11-23T10:00:00Z") && lines[1].contains("pnd-1") && lines[1].contains("Fall"));
    assert!(lines[2].contains("heartbeat") && lines[2].contains("41%"), "{text}");
    assert!(
        lines[3].contains("hub-2") && lines[3].contains("unrecognised"),
        "{text}"
    );
    assert_eq!(lines[4], "3 event(s)");
}

#[test]
fn events_json_parses_back_with_filters() {
    let dir = seeded_store();
    let text = events_output(&dir, &["--format", "json"]).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    let first = &all[0];
    assert_eq!(first["device"], "pnd-1");
    assert_eq!(first["boot"], 1);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["copy"], 0);
    assert_eq!(first["resident"], "R1");
    assert_eq!(first["received_at"], T0);
    assert_eq!(first["received_at_utc"], "2026-11-23T10:00:00Z");
    assert_eq!(first["device_time"], T0 - 2_000);
    assert_eq!(first["delivery_delay_ms"], 2_000);
    assert_eq!(first["alarm"], true);
    assert_eq!(first["type"], "alarm");
    assert_eq!(first["body"], serde_json::json!({ "Alarm": "Fall" }));
    assert_eq!(
        all[2]["body"],
        serde_json::json!({ "body_tag": 0, "raw_hex": "0103090000ff" })
    );
    assert_eq!(all[2]["resident"], serde_json::Value::Null);

    let count = |extra: &[&str]| {
        let text = events_output(&dir, &[extra, &["--format", "json"]].concat()).unwrap();
        serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap().len()
    };
    assert_eq!(count(&["--device", "pnd-1"]), 2);
    assert_eq!(count(&["--resident", "R1"]), 2);
    assert_eq!(count(&["--resident", "R2"]), 0);
    assert_eq!(count(&["--since", "2026-11-23T10:00:30Z"]), 2);
    assert_eq!(count(&["--until", "2026-11-23T10:00:30Z"]), 1);
    // "Now" is T0 + 2 h in these tests.
    assert_eq!(count(&["--since", "-1h"]), 1);
    assert_eq!(count(&["--since", "-90m", "--until", "-30m"]), 1);
    assert_eq!(count(&["--limit", "2"]), 2);
}

#[test]
fn a_conflicting_copy_shows_its_copy_number() {
    let dir = seeded_store();
    {
        let store = Store::open_in_dir(dir.path()).unwrap();
        let mut batch = store.begin_write().unwrap();
        // pnd-1 reuses 1/1 for a press (the stored one is a fall).
        let copy = NewEvent::from_event(StoredEvent {
            key: EventKey {
                device: dev("pnd-1"),
                boot: 1,
                seq: 1,
            },
            resident: None,
            received_at: Timestamp(T0 + 7_000_000),
            device_time: None,
            protocol_version: 1,
            body: EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)),
        })
        .unwrap();
        assert_eq!(
            batch.insert_events(&[copy]).unwrap(),
            [InsertOutcome::Conflict { copy: 1 }]
        );
        batch.commit().unwrap();
    }
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&events_output(&dir, &["--device", "pnd-1", "--format", "json"]).unwrap()).unwrap();
    let copies: Vec<(i64, i64)> = all
        .iter()
        .map(|e| (e["seq"].as_i64().unwrap(), e["copy"].as_i64().unwrap()))
        .collect();
    assert_eq!(copies, [(1, 0), (2, 0), (1, 1)]);
    let text = events_output(&dir, &["--device", "pnd-1"]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("COPY"), "{text}");
    assert!(lines[3].contains("PendantPress"), "{text}");
}

#[test]
fn an_unreadable_event_is_named_and_the_rest_still_printed() {
    let dir = seeded_store();
    let path = dir.path().join(STORE_FILE_NAME);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<(&str, u32, u32, u32), &[u8]>::new("events"))
            .unwrap()
            .insert(("pnd-1", 1, 2, 0), [9_u8, 9].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let data = dir.path().to_str().unwrap();
    let cli = EventsCli::try_parse_from(["events", "--data", data, "--format", "json"]).unwrap();
    let mut out = Vec::new();
    let err = format!("{:#}", run_events_at(&cli.args, Timestamp(T0), &mut out).unwrap_err());
    assert!(
        err.contains("1 stored record(s) could not be read") && err.contains("table events, key pnd-1/1/2 copy 0"),
        "{err}"
    );
    let printed: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed.len(), 2);
}

#[test]
fn bad_event_arguments_give_clear_errors() {
    let dir = seeded_store();
    let err = format!("{:#}", events_output(&dir, &["--since", "yesterday-ish"]).unwrap_err());
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");
    let err = format!("{:#}", events_output(&dir, &["--since", "-2 fortnights"]).unwrap_err());
    assert!(err.contains("--since"), "{err}");
    let err = format!("{:#}", events_output(&dir, &["--device", "PND/1"]).unwrap_err());
    assert!(
        err.contains("--device") && err.contains("PND/1") && err.contains("character"),
        "{err}"
    );
    let err = format!("{:#}", events_output(&dir, &["--resident", "has space"]).unwrap_err());
    assert!(err.contains("--resident"), "{err}");
    let err = format!("{:#}", events_output(&dir, &["--format", "xml"]).unwrap_err());
    assert!(err.contains("xml"), "{err}");
    let err = format!("{:#}", events_output(&dir, &["--limit", "many"]).unwrap_err());
    assert!(err.contains("many"), "{err}");
}

#[test]
fn missing_store_is_an_error_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing-here");
    let cli = EventsCli::try_parse_from(["events", "--data", empty.to_str().unwrap()]).unwrap();
    let err = format!("{:#}", run_events(&cli.args, &mut Vec::new()).unwrap_err());
    assert!(err.contains("no gateway store"), "{err}");
    assert!(!empty.exists());
}

#[test]
fn a_running_gateway_holding_the_store_is_reported() {
    let dir = seeded_store();
    let _gateway = Store::open_in_dir(dir.path()).unwrap();
    let err = format!("{:#}", events_output(&dir, &[]).unwrap_err());
    assert!(
        err.contains("in use") && err.contains("stop the gateway") && err.contains("HTTP API"),
        "{err}"
    );
}

#[test]
fn alerts_table_shows_columns_and_transitions() {
    let dir = seeded_store();
    let text = alerts_output(&dir, &[]);
    let lines: Vec<&str> = text.lines().collect();
    for column in [
        "ID",
        "KIND",
        "PRIORITY",
        "STATE",
        "RESIDENT",
        "DEVICE",
        "RAISED",
        "ACKNOWLEDGED",
        "ANSWER_S",
    ] {
        assert!(lines[0].contains(column), "{column} missing: {text}");
    }
    for column in ["OUTCOME", "UNREGISTERED", "LATE"] {
        assert!(lines[0].contains(column), "{column} missing: {text}");
    }
    assert!(
        lines[1].starts_with("A1") && lines[1].contains("fall") && lines[1].contains("life_safety"),
        "{text}"
    );
    assert!(lines[1].contains("45.0") && lines[1].contains("late 2000 ms"), "{text}");
    assert!(
        lines[2].starts_with("    ") && lines[2].contains("raised by event pnd-1/1/1"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("    ") && lines[3].contains("acknowledged by op7"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("A2") && lines[4].contains("auto_cleared") && lines[4].contains("yes"),
        "{text}"
    );
    assert!(lines[5].contains("raised by a gateway rule"), "{text}");
    assert!(lines[6].contains("escalated to level 1"), "{text}");
    assert!(lines[7].contains("resolved (auto_cleared)"), "{text}");
    assert_eq!(lines[8], "2 alert(s)");

    let open = alerts_output(&dir, &["--open"]);
    assert!(
        open.contains("A1") && !open.contains("A2") && open.ends_with("1 alert(s)\n"),
        "{open}"
    );
}

#[test]
fn alerts_json_includes_every_transition() {
    let dir = seeded_store();
    let all: Vec<serde_json::Value> = serde_json::from_str(&alerts_output(&dir, &["--format", "json"])).unwrap();
    assert_eq!(all.len(), 2);
    let first = &all[0];
    assert_eq!(first["id"], 1);
    assert_eq!(first["kind"], "fall");
    assert_eq!(first["priority"], "life_safety");
    assert_eq!(first["state"], "acknowledged");
    assert_eq!(first["resident"], "R1");
    assert_eq!(first["device"], "pnd-1");
    assert_eq!(first["raised_at"], T0);
    assert_eq!(first["acknowledged_at"], T0 + 45_000);
    assert_eq!(first["answer_time_ms"], 45_000);
    assert_eq!(first["outcome"], serde_json::Value::Null);
    assert_eq!(first["late_by_ms"], 2_000);
    assert_eq!(first["transitions"][1]["change"]["type"], "acknowledged");
    assert_eq!(first["transitions"][1]["change"]["operator"], "op7");
    assert_eq!(first["transitions"][0]["change"]["event"]["device"], "pnd-1");
    let second = &all[1];
    assert_eq!(second["outcome"], "auto_cleared");
    assert_eq!(second["unregistered_device"], true);
    assert_eq!(second["transitions"].as_array().unwrap().len(), 3);
    // The transitions read back as the domain type.
    let transitions: Vec<Transition> = serde_json::from_value(second["transitions"].clone()).unwrap();
    assert_eq!(transitions[2].at, Timestamp(T0 + 3_000));

    let open: Vec<serde_json::Value> =
        serde_json::from_str(&alerts_output(&dir, &["--open", "--format", "json"])).unwrap();
    assert_eq!(open.len(), 1);
}

#[test]
fn quarantine_output_in_both_formats() {
    let dir = seeded_store();
    let text = quarantine_output(&dir, &[]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("PAYLOAD_HEX"), "{text}");
    assert!(
        lines[1].contains("oversize") && lines[1].contains("3000") && lines[1].contains("1111..."),
        "{text}"
    );
    assert!(
        lines[2].contains("malformed") && lines[2].contains("deadbeef"),
        "{text}"
    );
    assert_eq!(lines[3], "2 record(s)");

    let all: Vec<serde_json::Value> = serde_json::from_str(&quarantine_output(&dir, &["--format", "json"])).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["reason"], "oversize");
    assert_eq!(all[0]["original_len"], 3_000);
    assert_eq!(all[0]["stored_len"], QUARANTINE_PAYLOAD_LIMIT);
    assert_eq!(all[0]["truncated"], true);
    assert_eq!(
        all[0]["payload_hex"].as_str().unwrap().len(),
        2 * QUARANTINE_PAYLOAD_LIMIT
    );
    assert_eq!(all[1]["payload_hex"], "deadbeef");
    assert_eq!(all[1]["topic"], "tec/v1/dev/pnd-9/up");
    assert_eq!(all[1]["received_at"], T0);

    let limited: Vec<serde_json::Value> =
        serde_json::from_str(&quarantine_output(&dir, &["--limit", "1", "--format", "json"])).unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["reason"], "oversize");
}

#[test]
fn parse_time_accepts_rfc3339_and_relative() {
    let now = Timestamp(T0);
    assert_eq!(parse_time("2026-11-23T10:00:00Z", now).unwrap(), Timestamp(T0));
    assert_eq!(parse_time("2026-11-23T11:00:00+01:00", now).unwrap(), Timestamp(T0));
    assert_eq!(parse_time("-2h", now).unwrap(), Timestamp(T0 - 7_200_000));
    assert_eq!(parse_time("-30m", now).unwrap(), Timestamp(T0 - 1_800_000));
    assert_eq!(parse_time("-1h 30m", now).unwrap(), Timestamp(T0 - 5_400_000));
    assert!(parse_time("2h", now).is_err());
    assert!(parse_time("", now).is_err());
}
