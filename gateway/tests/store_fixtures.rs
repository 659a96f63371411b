#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Golden stores: files written by earlier versions of the gateway, committed under
//! `tests/fixtures/`, that every later version must keep opening and reading field by field
//! (the rules are in `src/store/schema.rs`). Never regenerate an existing fixture: add a new
//! one for a new version, and keep the old checks passing.
//!
//! `store-v1.redb` was written by the first stored format (schema 1). To write it again (only
//! while that format is still unreleased):
//! `TEC_WRITE_STORE_FIXTURES=1 cargo test -p tec-gateway --test store_fixtures -- --ignored write_golden_store_v1`

use std::path::{Path, PathBuf};

use gateway::domain::*;
use gateway::store::*;
use protocol::{AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, UplinkBody};

const FIXTURE_V1: &str = "store-v1.redb";
/// 2026-11-23T10:00:00Z
const T0: i64 = 1_795_428_000_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn key(device: &str, boot: u32, seq: u32) -> EventKey {
    EventKey {
        device: dev(device),
        boot,
        seq,
    }
}

/// Everything the v1 fixture holds, as this version reads it.
struct Golden {
    /// (copy, event), in time order.
    events: Vec<(u32, StoredEvent)>,
    devices: Vec<DeviceRecord>,
    residents: Vec<Resident>,
    assignments: Vec<Assignment>,
    alerts: Vec<Alert>,
    quarantine: Vec<QuarantineRecord>,
    engine_state: Vec<(String, Vec<u8>)>,
}

fn golden_v1() -> Golden {
    let event = |device: &str, boot, seq, at: i64, resident: Option<&str>, body| StoredEvent {
        key: key(device, boot, seq),
        resident: resident.map(res),
        received_at: Timestamp(at),
        device_time: Some(Timestamp(at - 1_500)),
        protocol_version: 1,
        body: EventBody::Uplink(body),
    };
    let heartbeat = UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2_950,
        battery_percent: 64,
        rssi_dbm: -71,
        uptime_s: 3_600,
        firmware: FirmwareVersion {
            major: 1,
            minor: 4,
            patch: 2,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 1,
        events_dropped: 0,
    });
    let events = vec![
        (0, event("pnd-1", 1, 0, T0, Some("R1"), heartbeat)),
        (
            0,
            event(
                "pnd-1",
                1,
                1,
                T0 + 1_000,
                Some("R1"),
                UplinkBody::Alarm(AlarmKind::PendantPress),
            ),
        ),
        // The same key again with other content: a reused key, kept as copy 1.
        (
            1,
            event(
                "pnd-1",
                1,
                1,
                T0 + 2_000,
                Some("R1"),
                UplinkBody::Alarm(AlarmKind::Fall),
            ),
        ),
        // A body from a newer revision (tag 40), kept raw: boot 2, seq 5, no device time.
        (
            0,
            StoredEvent {
                key: key("hub-1", 2, 5),
                resident: None,
                received_at: Timestamp(T0 + 3_000),
                device_time: None,
                protocol_version: 1,
                body: EventBody::Unrecognised {
                    body_tag: 40,
                    raw: vec![1, 2, 5, 0, 40, 7, 7],
                },
            },
        ),
    ];
    let mut pendant = DeviceRecord::new(dev("pnd-1"), DeviceKind::Pendant, true);
    pendant.firmware = Some(FirmwareVersion {
        major: 1,
        minor: 4,
        patch: 2,
    });
    pendant.protocol_version = Some(1);
    pendant.last_seen = Some(Timestamp(T0 + 2_000));
    pendant.battery_mv = Some(2_950);
    pendant.battery_percent = Some(64);
    pendant.heartbeat_interval_s = Some(300);
    pendant.online = OnlineState::Online;
    pendant.highest_boot = Some(1);
    pendant.boot_reuse = Some(BootReuse {
        since: Timestamp(T0 + 2_000),
        min_boot: 2,
    });
    let mut hub = DeviceRecord::new(dev("hub-1"), DeviceKind::Other, false);
    hub.online = OnlineState::Offline;
    let raised = |event| Transition {
        at: Timestamp(T0 + 1_000),
        change: Change::Raised { event },
    };
    let alerts = vec![
        Alert {
            id: AlertId(1),
            kind: AlertKind::PendantPress,
            priority: Priority::LifeSafety,
            state: AlertState::Resolved,
            resident: Some(res("R1")),
            device: Some(dev("pnd-1")),
            unregistered_device: false,
            raised_at: Timestamp(T0 + 1_000),
            late_by_ms: Some(1_500),
            escalation_level: 1,
            affected_devices: Vec::new(),
            transitions: vec![
                raised(Some(key("pnd-1", 1, 1))),
                Transition {
                    at: Timestamp(T0 + 2_000),
                    change: Change::Joined {
                        event: key("pnd-1", 1, 1),
                    },
                },
                Transition {
                    at: Timestamp(T0 + 61_000),
                    change: Change::Escalated { level: 1 },
                },
                Transition {
                    at: Timestamp(T0 + 70_000),
                    change: Change::Acknowledged {
                        operator: "op-7".into(),
                    },
                },
                Transition {
                    at: Timestamp(T0 + 80_000),
                    change: Change::Note {
                        operator: "op-7".into(),
                        text: "spoke to resident".into(),
                    },
                },
                Transition {
                    at: Timestamp(T0 + 90_000),
                    change: Change::Resolved {
                        operator: Some("op-7".into()),
                        outcome: Outcome::FalseAlarm,
                        note: Some("pressed by mistake".into()),
                    },
                },
            ],
        },
        Alert {
            id: AlertId(2),
            kind: AlertKind::KeyConflict,
            priority: Priority::Technical,
            state: AlertState::Raised,
            resident: Some(res("R1")),
            device: Some(dev("pnd-1")),
            unregistered_device: false,
            raised_at: Timestamp(T0 + 2_000),
            late_by_ms: None,
            escalation_level: 0,
            affected_devices: Vec::new(),
            transitions: vec![Transition {
                at: Timestamp(T0 + 2_000),
                change: Change::Raised { event: None },
            }],
        },
        Alert {
            id: AlertId(3),
            kind: AlertKind::InfrastructureIncident,
            priority: Priority::Technical,
            state: AlertState::Resolved,
            resident: None,
            device: None,
            unregistered_device: false,
            raised_at: Timestamp(T0 + 3_000),
            late_by_ms: None,
            escalation_level: 0,
            affected_devices: vec![
                AffectedDevice {
                    device: dev("pnd-1"),
                    resident: Some(res("R1")),
                    since: Timestamp(T0 + 2_500),
                    back_at: Some(Timestamp(T0 + 9_000)),
                },
                AffectedDevice {
                    device: dev("hub-1"),
                    resident: None,
                    since: Timestamp(T0 + 3_000),
                    back_at: None,
                },
            ],
            transitions: vec![
                Transition {
                    at: Timestamp(T0 + 3_000),
                    change: Change::Raised { event: None },
                },
                Transition {
                    at: Timestamp(T0 + 9_500),
                    change: Change::Resolved {
                        operator: None,
                        outcome: Outcome::AutoCleared,
                        note: None,
                    },
                },
            ],
        },
    ];
    Golden {
        events,
        devices: vec![hub, pendant],
        residents: vec![Resident {
            id: res("R1"),
            display_name: "Resident One".into(),
            address: "1 Example Street".into(),
            access_notes: "key safe 1234".into(),
            responders: vec![Responder {
                name: "Daughter".into(),
                phone: "07700 900000".into(),
                relationship: String::new(),
            }],
            care: Default::default(),
        }],
        assignments: vec![Assignment {
            device: dev("pnd-1"),
            resident: res("R1"),
            from: Timestamp(T0 - 86_400_000),
            until: None,
        }],
        alerts,
        quarantine: vec![QuarantineRecord {
            received_at: Timestamp(T0 + 4_000),
            topic: "tec/v1/dev/pnd-1/up".into(),
            payload: vec![0, 1, 2, 0xff],
            original_len: 4,
            reason: RejectReason::BadVersion,
            detail: "revision byte 0 is reserved".into(),
        }],
        engine_state: vec![("device/pnd-1".into(), vec![1, 2, 3, 4])],
    }
}

/// Writes `tests/fixtures/store-v1.redb` through the real write paths.
#[test]
#[ignore = "writes the golden fixture; only with TEC_WRITE_STORE_FIXTURES=1"]
fn write_golden_store_v1() {
    if std::env::var_os("TEC_WRITE_STORE_FIXTURES").is_none() {
        eprintln!("set TEC_WRITE_STORE_FIXTURES=1 to write {FIXTURE_V1}");
        return;
    }
    let golden = golden_v1();
    let path = fixture(FIXTURE_V1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    {
        let store = Store::open(&path).unwrap();
        let mut batch = store.begin_write().unwrap();
        let events: Vec<NewEvent> = golden
            .events
            .iter()
            .map(|(_, event)| NewEvent::from_event(event.clone()).unwrap())
            .collect();
        let outcomes = batch.insert_events(&events).unwrap();
        let copies: Vec<u32> = golden.events.iter().map(|(copy, _)| *copy).collect();
        let written: Vec<u32> = outcomes
            .iter()
            .map(|outcome| match outcome {
                InsertOutcome::Inserted => 0,
                InsertOutcome::Conflict { copy } => *copy,
                InsertOutcome::Duplicate => panic!("no duplicates in the fixture"),
            })
            .collect();
        assert_eq!(written, copies);
        for record in &golden.devices {
            batch.put_device(record).unwrap();
        }
        for resident in &golden.residents {
            batch.put_resident(resident).unwrap();
        }
        for assignment in &golden.assignments {
            batch.assign(assignment).unwrap();
        }
        // The first alert is written as the engine would: raised, then one change at a time.
        for alert in &golden.alerts {
            for n in 1..=alert.transitions.len() {
                let mut step = alert.clone();
                step.transitions.truncate(n);
                batch.put_alert(&step).unwrap();
            }
        }
        for record in &golden.quarantine {
            batch.quarantine(record).unwrap();
        }
        for (key, value) in &golden.engine_state {
            batch.put_engine_state(key, Some(value)).unwrap();
        }
        batch.commit().unwrap();
    }
    let mut db = redb::Database::open(&path).unwrap();
    while db.compact().unwrap() {}
    drop(db);
    println!(
        "wrote {} ({} bytes)",
        path.display(),
        std::fs::metadata(&path).unwrap().len()
    );
}

#[test]
fn golden_store_v1_still_reads_field_by_field() {
    // Opening writes (the schema check), so work on a copy: the fixture stays as written.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    std::fs::copy(fixture(FIXTURE_V1), &path).expect("the committed fixture tests/fixtures/store-v1.redb");
    let store = Store::open(&path).unwrap();
    let golden = golden_v1();

    let page = store.events(&EventFilter::default()).unwrap();
    assert_eq!(page.unreadable, []);
    assert_eq!(page.events.len(), golden.events.len());
    for (read, (copy, event)) in page.events.iter().zip(&golden.events) {
        assert_eq!(read.copy, *copy, "{}", event.key);
        assert_eq!(read.event.key, event.key);
        assert_eq!(read.event.resident, event.resident, "{}", event.key);
        assert_eq!(read.event.received_at, event.received_at, "{}", event.key);
        assert_eq!(read.event.device_time, event.device_time, "{}", event.key);
        assert_eq!(read.event.protocol_version, event.protocol_version, "{}", event.key);
        assert_eq!(read.event.body, event.body, "{}", event.key);
    }
    let r1 = EventFilter {
        resident: Some(res("R1")),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&r1).unwrap().events.len(), 3);
    assert_eq!(store.event_copies(&key("pnd-1", 1, 1)).unwrap().len(), 2);
    assert_eq!(store.event_count().unwrap(), 4);

    for expected in &golden.devices {
        let found = store.device(&expected.id).unwrap().unwrap();
        assert_eq!(found.kind, expected.kind);
        assert_eq!(found.registered, expected.registered);
        assert_eq!(found.firmware, expected.firmware);
        assert_eq!(found.protocol_version, expected.protocol_version);
        assert_eq!(found.last_seen, expected.last_seen);
        assert_eq!(
            (found.battery_mv, found.battery_percent),
            (expected.battery_mv, expected.battery_percent)
        );
        assert_eq!(found.heartbeat_interval_s, expected.heartbeat_interval_s);
        assert_eq!(found.online, expected.online);
        assert_eq!(found.highest_boot, expected.highest_boot);
        assert_eq!(found.boot_reuse, expected.boot_reuse);
        assert_eq!(&found, expected);
    }
    assert_eq!(store.devices().unwrap(), golden.devices);
    assert_eq!(store.residents().unwrap(), golden.residents);
    assert_eq!(store.assignments(&dev("pnd-1")).unwrap(), golden.assignments);
    assert_eq!(
        store.resident_for(&dev("pnd-1"), Timestamp(T0)).unwrap(),
        Some(res("R1"))
    );

    let alerts = store.alerts(&AlertFilter::default()).unwrap();
    assert_eq!(alerts.len(), golden.alerts.len());
    for (found, expected) in alerts.iter().zip(&golden.alerts) {
        assert_eq!(found.transitions, expected.transitions, "{}", expected.id);
        assert_eq!(found, expected);
    }
    let open: Vec<Alert> = golden.alerts.iter().filter(|a| a.is_open()).cloned().collect();
    assert_eq!(store.open_alerts().unwrap(), open);
    let by_resident = AlertFilter {
        resident: Some(res("R1")),
        ..AlertFilter::default()
    };
    assert_eq!(store.alerts(&by_resident).unwrap().len(), 2);
    assert_eq!(store.max_alert_id().unwrap(), Some(AlertId(3)));

    assert_eq!(store.quarantined(None).unwrap(), golden.quarantine);
    assert_eq!(store.engine_state().unwrap(), golden.engine_state);
    assert_eq!(store.unreadable_count(), 0);

    // And it stays writable: the next event and a join append to what is there.
    let mut batch = store.begin_write().unwrap();
    let next = NewEvent::from_event(StoredEvent {
        received_at: Timestamp(T0 + 10_000),
        key: key("pnd-1", 2, 0),
        ..golden.events[0].1.clone()
    })
    .unwrap();
    assert_eq!(batch.insert_events(&[next]).unwrap(), [InsertOutcome::Inserted]);
    let mut joined = golden.alerts[1].clone();
    joined.transitions.push(Transition {
        at: Timestamp(T0 + 10_000),
        change: Change::Joined {
            event: key("pnd-1", 2, 0),
        },
    });
    batch.put_alert(&joined).unwrap();
    batch.commit().unwrap();
    assert_eq!(store.alert(AlertId(2)).unwrap(), Some(joined));
    assert_eq!(store.event_count().unwrap(), 5);
}
