#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The redb store: idempotence, indexes, alerts, quarantine, schema, locking, corruption,
//! assignments.

use gateway::domain::*;
use gateway::store::*;
use protocol::{AlarmKind, DeviceId, UplinkBody};

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn event(device: &str, boot: u32, seq: u32, received_ms: i64, resident: Option<&str>) -> StoredEvent {
    StoredEvent {
        key: EventKey {
            device: dev(device),
            boot,
            seq,
        },
        resident: resident.map(res),
        received_at: Timestamp(received_ms),
        // A clock reading in the accepted range (SPEC.md): outside it a device time reads
        // back as unknown.
        device_time: Some(Timestamp(1_800_000_000_000 + received_ms)),
        protocol_version: 1,
        body: EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)),
    }
}

fn alert(id: u64, resident: Option<&str>, state: AlertState, raised_ms: i64) -> Alert {
    let mut transitions = vec![Transition {
        at: Timestamp(raised_ms),
        change: Change::Raised {
            event: Some(EventKey {
                device: dev("pnd-1"),
                boot: 1,
                seq: 1,
            }),
        },
    }];
    if state != AlertState::Raised {
        transitions.push(Transition {
            at: Timestamp(raised_ms + 30_000),
            change: Change::Acknowledged { operator: "op1".into() },
        });
    }
    if state == AlertState::Resolved {
        transitions.push(Transition {
            at: Timestamp(raised_ms + 90_000),
            change: Change::Resolved {
                operator: Some("op1".into()),
                outcome: Outcome::FalseAlarm,
                note: None,
            },
        });
    }
    Alert {
        id: AlertId(id),
        kind: AlertKind::PendantPress,
        priority: Priority::LifeSafety,
        state,
        resident: resident.map(res),
        device: Some(dev("pnd-1")),
        unregistered_device: false,
        raised_at: Timestamp(raised_ms),
        late_by_ms: None,
        escalation_level: 0,
        transitions,
        affected_devices: Vec::new(),
    }
}

fn quarantine_record(n: usize, len: usize) -> QuarantineRecord {
    QuarantineRecord {
        received_at: Timestamp(n as i64),
        topic: format!("tec/v1/dev/x{n}/up"),
        payload: vec![0xab; len],
        original_len: len,
        reason: RejectReason::Malformed,
        detail: format!("record {n}"),
    }
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    (dir, store)
}

fn keys(page: &EventPage) -> Vec<String> {
    assert!(page.unreadable.is_empty(), "{:?}", page.unreadable);
    page.events.iter().map(|e| e.event.key.to_string()).collect()
}

/// Stores one event through the real batch path.
fn put(batch: &mut WriteBatch<'_>, event: &StoredEvent) -> InsertOutcome {
    let outcomes = batch
        .insert_events(&[NewEvent::from_event(event.clone()).unwrap()])
        .unwrap();
    outcomes[0]
}

#[test]
fn insert_is_idempotent_on_key_and_value() {
    let (_dir, store) = temp_store();
    let first = event("pnd-1", 1, 7, 1_000, Some("r1"));
    let mut batch = store.begin_write().unwrap();
    assert_eq!(put(&mut batch, &first), InsertOutcome::Inserted);
    // Same key and content received again in the same batch: a duplicate, original kept.
    let mut again = first.clone();
    again.received_at = Timestamp(9_999);
    assert_eq!(put(&mut batch, &again), InsertOutcome::Duplicate);
    batch.commit().unwrap();

    let mut batch = store.begin_write().unwrap();
    assert_eq!(put(&mut batch, &first), InsertOutcome::Duplicate);
    batch.commit().unwrap();

    assert_eq!(store.event_count().unwrap(), 1);
    assert_eq!(store.event(&first.key).unwrap(), Some(first.clone()));
    // The duplicate left no second index entry behind.
    assert_eq!(
        store.events(&EventFilter::default()).unwrap().into_events(),
        vec![first.clone()]
    );
    let by_resident = EventFilter {
        resident: Some(res("r1")),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&by_resident).unwrap().into_events(), vec![first]);
}

#[test]
fn same_key_with_different_content_is_kept_as_a_copy() {
    let (_dir, store) = temp_store();
    let first = event("pnd-1", 1, 7, 1_000, Some("r1"));
    let mut fall = event("pnd-1", 1, 7, 2_000, Some("r1"));
    fall.body = EventBody::Uplink(UplinkBody::Alarm(AlarmKind::Fall));
    let mut batch = store.begin_write().unwrap();
    assert_eq!(put(&mut batch, &first), InsertOutcome::Inserted);
    assert_eq!(put(&mut batch, &fall), InsertOutcome::Conflict { copy: 1 });
    batch.commit().unwrap();
    let mut batch = store.begin_write().unwrap();
    assert_eq!(put(&mut batch, &fall), InsertOutcome::Duplicate);
    batch.commit().unwrap();
    assert_eq!(store.event(&first.key).unwrap(), Some(first.clone()));
    let copies = store.event_copies(&first.key).unwrap();
    assert_eq!(
        copies,
        vec![
            EventRead {
                copy: 0,
                event: first.clone()
            },
            EventRead { copy: 1, event: fall }
        ]
    );
    let by_resident = EventFilter {
        resident: Some(res("r1")),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&by_resident).unwrap().events, copies);
    assert_eq!(store.events(&EventFilter::default()).unwrap().events, copies);
}

#[test]
fn uncommitted_batch_is_discarded() {
    let (_dir, store) = temp_store();
    let mut batch = store.begin_write().unwrap();
    put(&mut batch, &event("pnd-1", 1, 1, 1, None));
    drop(batch);
    assert_eq!(store.event_count().unwrap(), 0);
}

#[test]
fn event_queries_use_device_resident_time_and_limit() {
    let (_dir, store) = temp_store();
    let mut batch = store.begin_write().unwrap();
    // Inserted out of time order on purpose.
    for e in [
        event("pnd-2", 1, 1, 3_000, Some("r2")),
        event("pnd-1", 1, 2, 2_000, Some("r1")),
        event("pnd-1", 1, 1, 1_000, Some("r1")),
        event("hub-9", 4, 1, 2_000, None),
        event("pnd-1", 2, 1, 5_000, Some("r1")),
        event("pnd-3", 1, 1, 4_000, Some("r1")),
    ] {
        put(&mut batch, &e);
    }
    batch.commit().unwrap();

    let all = store.events(&EventFilter::default()).unwrap();
    assert_eq!(
        keys(&all),
        [
            "pnd-1/1/1",
            "hub-9/4/1",
            "pnd-1/1/2",
            "pnd-2/1/1",
            "pnd-3/1/1",
            "pnd-1/2/1"
        ]
    );

    let device = EventFilter {
        device: Some(dev("pnd-1")),
        ..EventFilter::default()
    };
    assert_eq!(
        keys(&store.events(&device).unwrap()),
        ["pnd-1/1/1", "pnd-1/1/2", "pnd-1/2/1"]
    );

    let resident = EventFilter {
        resident: Some(res("r1")),
        ..EventFilter::default()
    };
    assert_eq!(
        keys(&store.events(&resident).unwrap()),
        ["pnd-1/1/1", "pnd-1/1/2", "pnd-3/1/1", "pnd-1/2/1"]
    );

    let resident_and_device = EventFilter {
        device: Some(dev("pnd-3")),
        ..resident.clone()
    };
    assert_eq!(keys(&store.events(&resident_and_device).unwrap()), ["pnd-3/1/1"]);

    let window = EventFilter {
        since: Some(Timestamp(2_000)),
        until: Some(Timestamp(4_000)),
        ..EventFilter::default()
    };
    assert_eq!(
        keys(&store.events(&window).unwrap()),
        ["hub-9/4/1", "pnd-1/1/2", "pnd-2/1/1"]
    );

    let resident_window = EventFilter {
        since: Some(Timestamp(2_000)),
        until: Some(Timestamp(5_000)),
        ..resident
    };
    assert_eq!(
        keys(&store.events(&resident_window).unwrap()),
        ["pnd-1/1/2", "pnd-3/1/1"]
    );

    let device_window = EventFilter {
        since: Some(Timestamp(1_500)),
        ..device.clone()
    };
    assert_eq!(keys(&store.events(&device_window).unwrap()), ["pnd-1/1/2", "pnd-1/2/1"]);

    let limited = EventFilter {
        limit: Some(2),
        ..EventFilter::default()
    };
    assert_eq!(keys(&store.events(&limited).unwrap()), ["pnd-1/1/1", "hub-9/4/1"]);
    let limited_device = EventFilter {
        limit: Some(1),
        ..device
    };
    assert_eq!(keys(&store.events(&limited_device).unwrap()), ["pnd-1/1/1"]);
    let zero = EventFilter {
        limit: Some(0),
        ..EventFilter::default()
    };
    assert!(store.events(&zero).unwrap().events.is_empty());

    let nobody = EventFilter {
        resident: Some(res("r0")),
        ..EventFilter::default()
    };
    assert!(store.events(&nobody).unwrap().events.is_empty());
}

#[test]
fn alerts_upsert_and_open_index() {
    let (_dir, store) = temp_store();
    assert_eq!(store.max_alert_id().unwrap(), None);
    let mut batch = store.begin_write().unwrap();
    batch
        .put_alert(&alert(1, Some("r1"), AlertState::Raised, 1_000))
        .unwrap();
    batch
        .put_alert(&alert(2, Some("r2"), AlertState::Acknowledged, 2_000))
        .unwrap();
    batch.put_alert(&alert(3, None, AlertState::Resolved, 3_000)).unwrap();
    batch.commit().unwrap();

    let ids = |alerts: Vec<Alert>| alerts.iter().map(|a| a.id.0).collect::<Vec<_>>();
    assert_eq!(ids(store.open_alerts().unwrap()), [1, 2]);
    assert_eq!(store.max_alert_id().unwrap(), Some(AlertId(3)));
    assert_eq!(
        store.alert(AlertId(2)).unwrap(),
        Some(alert(2, Some("r2"), AlertState::Acknowledged, 2_000))
    );
    assert_eq!(store.alert(AlertId(9)).unwrap(), None);

    // Resolve 1 and move it to another resident: both indexes follow.
    let mut batch = store.begin_write().unwrap();
    batch
        .put_alert(&alert(1, Some("r2"), AlertState::Resolved, 1_000))
        .unwrap();
    batch.commit().unwrap();
    assert_eq!(ids(store.open_alerts().unwrap()), [2]);
    assert_eq!(store.alert(AlertId(1)).unwrap().unwrap().state, AlertState::Resolved);

    let all = AlertFilter::default();
    assert_eq!(ids(store.alerts(&all).unwrap()), [1, 2, 3]);
    let r1 = AlertFilter {
        resident: Some(res("r1")),
        ..AlertFilter::default()
    };
    assert!(store.alerts(&r1).unwrap().is_empty());
    let r2 = AlertFilter {
        resident: Some(res("r2")),
        ..AlertFilter::default()
    };
    assert_eq!(ids(store.alerts(&r2).unwrap()), [1, 2]);
    let r2_open = AlertFilter {
        open_only: true,
        ..r2.clone()
    };
    assert_eq!(ids(store.alerts(&r2_open).unwrap()), [2]);
    let since = AlertFilter {
        since: Some(Timestamp(2_000)),
        ..AlertFilter::default()
    };
    assert_eq!(ids(store.alerts(&since).unwrap()), [2, 3]);
    let limited = AlertFilter { limit: Some(1), ..r2 };
    assert_eq!(ids(store.alerts(&limited).unwrap()), [1]);

    // Reopening an alert puts it back in the open index.
    let mut batch = store.begin_write().unwrap();
    batch.put_alert(&alert(3, None, AlertState::Raised, 3_000)).unwrap();
    batch.commit().unwrap();
    assert_eq!(ids(store.open_alerts().unwrap()), [2, 3]);
}

#[test]
fn quarantine_is_bounded_newest_first_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap().with_quarantine_capacity(3);
    for n in 0..5 {
        let mut batch = store.begin_write().unwrap();
        batch.quarantine(&quarantine_record(n, 10)).unwrap();
        batch.commit().unwrap();
    }
    assert_eq!(store.quarantine_len().unwrap(), 3);
    let details = |records: Vec<QuarantineRecord>| records.into_iter().map(|r| r.detail).collect::<Vec<_>>();
    assert_eq!(
        details(store.quarantined(None).unwrap()),
        ["record 4", "record 3", "record 2"]
    );
    assert_eq!(details(store.quarantined(Some(2)).unwrap()), ["record 4", "record 3"]);

    // Several in one batch, and a big payload.
    let mut batch = store.begin_write().unwrap();
    batch.quarantine(&quarantine_record(5, 5_000)).unwrap();
    batch.quarantine(&quarantine_record(6, 1)).unwrap();
    batch.commit().unwrap();
    assert_eq!(
        details(store.quarantined(None).unwrap()),
        ["record 6", "record 5", "record 4"]
    );
    let big = &store.quarantined(None).unwrap()[1];
    assert_eq!(big.payload.len(), QUARANTINE_PAYLOAD_LIMIT);
    assert_eq!(big.original_len, 5_000);

    // The eviction order survives a reopen (the sequence counter is stored).
    drop(store);
    let store = Store::open_in_dir(dir.path()).unwrap().with_quarantine_capacity(3);
    let mut batch = store.begin_write().unwrap();
    batch.quarantine(&quarantine_record(7, 1)).unwrap();
    batch.commit().unwrap();
    assert_eq!(
        details(store.quarantined(None).unwrap()),
        ["record 7", "record 6", "record 5"]
    );
}

#[test]
fn devices_residents_and_engine_state_roundtrip() {
    let (_dir, store) = temp_store();
    let mut device = DeviceRecord::new(dev("pnd-1"), DeviceKind::Pendant, true);
    let resident = Resident {
        id: res("r1"),
        display_name: "A Person".into(),
        address: "1 Street".into(),
        access_notes: "key safe".into(),
        responders: vec![Responder {
            name: "B".into(),
            phone: "0123".into(),
            relationship: String::new(),
        }],
        care: Default::default(),
    };
    let mut batch = store.begin_write().unwrap();
    assert_eq!(batch.device(&device.id).unwrap(), None);
    batch.put_device(&device).unwrap();
    device.battery_percent = Some(80);
    batch.put_device(&device).unwrap();
    assert_eq!(batch.device(&device.id).unwrap(), Some(device.clone()));
    batch
        .put_device(&DeviceRecord::new(dev("hub-1"), DeviceKind::Hub, false))
        .unwrap();
    batch.put_resident(&resident).unwrap();
    batch.put_engine_state("b", Some(b"two")).unwrap();
    batch.put_engine_state("a", Some(b"one")).unwrap();
    batch.put_engine_state("c", Some(b"three")).unwrap();
    batch.put_engine_state("c", None).unwrap();
    batch.commit().unwrap();

    assert_eq!(store.device(&device.id).unwrap(), Some(device));
    assert_eq!(store.devices().unwrap().len(), 2);
    assert_eq!(store.resident(&res("r1")).unwrap(), Some(resident.clone()));
    assert_eq!(store.resident(&res("r2")).unwrap(), None);
    assert_eq!(store.residents().unwrap(), vec![resident]);
    assert_eq!(
        store.engine_state().unwrap(),
        vec![("a".to_string(), b"one".to_vec()), ("b".into(), b"two".to_vec())]
    );
}

#[test]
fn assignments_reject_overlap_and_answer_resident_for() {
    let (_dir, store) = temp_store();
    let pendant = dev("pnd-1");
    let assignment = |resident: &str, from: i64, until: Option<i64>| Assignment {
        device: pendant,
        resident: res(resident),
        from: Timestamp(from),
        until: until.map(Timestamp),
    };
    let mut batch = store.begin_write().unwrap();
    batch.assign(&assignment("r1", 1_000, Some(2_000))).unwrap();
    batch.assign(&assignment("r2", 2_000, None)).unwrap();
    // Overlaps r1's loan.
    let err = batch.assign(&assignment("r3", 500, Some(1_500))).unwrap_err();
    assert!(
        matches!(err, StoreError::OverlappingAssignment { ref existing_resident, .. } if existing_resident.as_str() == "r1")
    );
    // Overlaps r2's open-ended loan.
    let err = batch.assign(&assignment("r3", 10_000, None)).unwrap_err();
    assert!(
        matches!(err, StoreError::OverlappingAssignment { ref existing_resident, .. } if existing_resident.as_str() == "r2")
    );
    assert!(err.to_string().contains("pnd-1"), "{err}");
    // Before the first loan is fine; another device is independent.
    batch.assign(&assignment("r0", 0, Some(1_000))).unwrap();
    batch
        .assign(&Assignment {
            device: dev("pnd-2"),
            ..assignment("r9", 0, None)
        })
        .unwrap();
    assert_eq!(batch.resident_for(&pendant, Timestamp(1_500)).unwrap(), Some(res("r1")));
    batch.commit().unwrap();

    let at = |ms: i64| {
        store
            .resident_for(&pendant, Timestamp(ms))
            .unwrap()
            .map(|r| r.to_string())
    };
    assert_eq!(at(-1), None);
    assert_eq!(at(0).as_deref(), Some("r0"));
    assert_eq!(at(999).as_deref(), Some("r0"));
    assert_eq!(at(1_000).as_deref(), Some("r1"));
    assert_eq!(at(1_999).as_deref(), Some("r1"));
    assert_eq!(at(2_000).as_deref(), Some("r2"));
    assert_eq!(at(1_000_000).as_deref(), Some("r2"));

    // End r2's loan; then the device is free and can go to r3.
    let mut batch = store.begin_write().unwrap();
    batch.end_assignment(&pendant, Timestamp(5_000)).unwrap();
    let err = batch.end_assignment(&pendant, Timestamp(6_000)).unwrap_err();
    assert!(matches!(err, StoreError::NoActiveAssignment { .. }), "{err}");
    batch.assign(&assignment("r3", 6_000, None)).unwrap();
    batch.commit().unwrap();
    assert_eq!(at(4_999).as_deref(), Some("r2"));
    assert_eq!(at(5_000), None);
    assert_eq!(at(7_000).as_deref(), Some("r3"));
    let residents: Vec<String> = store
        .assignments(&pendant)
        .unwrap()
        .iter()
        .map(|a| a.resident.to_string())
        .collect();
    assert_eq!(residents, ["r0", "r1", "r2", "r3"]);
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_in_dir(dir.path()).unwrap();
        let mut batch = store.begin_write().unwrap();
        put(&mut batch, &event("pnd-1", 1, 1, 1_000, Some("r1")));
        batch
            .put_alert(&alert(5, Some("r1"), AlertState::Raised, 1_000))
            .unwrap();
        batch.quarantine(&quarantine_record(1, 3)).unwrap();
        batch
            .put_device(&DeviceRecord::new(dev("pnd-1"), DeviceKind::Pendant, true))
            .unwrap();
        batch.put_engine_state("k", Some(b"v")).unwrap();
        batch.commit().unwrap();
    }
    let store = Store::open(&dir.path().join(STORE_FILE_NAME)).unwrap();
    assert_eq!(store.event_count().unwrap(), 1);
    assert_eq!(store.open_alerts().unwrap().len(), 1);
    assert_eq!(store.max_alert_id().unwrap(), Some(AlertId(5)));
    assert_eq!(store.quarantine_len().unwrap(), 1);
    assert_eq!(store.devices().unwrap().len(), 1);
    assert_eq!(store.engine_state().unwrap().len(), 1);
    let by_resident = EventFilter {
        resident: Some(res("r1")),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&by_resident).unwrap().events.len(), 1);
}

#[test]
fn second_open_while_first_alive_is_in_use() {
    let (dir, store) = temp_store();
    let err = Store::open_in_dir(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("stop the gateway") && message.contains("HTTP API"),
        "{message}"
    );
    drop(store);
    Store::open_in_dir(dir.path()).unwrap();
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    drop(Store::open(&path).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(redb::TableDefinition::<&str, u64>::new("meta")).unwrap();
            meta.insert("schema_version", u64::from(SCHEMA_VERSION) + 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
    );
    assert!(err.to_string().contains("newer gateway"), "{err}");
    // Refusing did not rewrite the version.
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }));
}

#[test]
fn unreadable_records_are_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    {
        let store = Store::open(&path).unwrap();
        let mut batch = store.begin_write().unwrap();
        put(&mut batch, &event("pnd-1", 1, 1, 1_000, Some("r1")));
        put(&mut batch, &event("pnd-1", 1, 2, 2_000, Some("r1")));
        batch.put_alert(&alert(1, None, AlertState::Raised, 1_000)).unwrap();
        batch.put_alert(&alert(2, None, AlertState::Raised, 2_000)).unwrap();
        batch
            .put_device(&DeviceRecord::new(dev("pnd-1"), DeviceKind::Pendant, true))
            .unwrap();
        batch
            .put_device(&DeviceRecord::new(dev("pnd-2"), DeviceKind::Pendant, true))
            .unwrap();
        batch.quarantine(&quarantine_record(1, 3)).unwrap();
        batch.commit().unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn
                .open_table(redb::TableDefinition::<(&str, u32, u32, u32), &[u8]>::new("events"))
                .unwrap();
            events
                .insert(("pnd-1", 1, 1, 0), [0xff_u8, 0xff, 0xff].as_slice())
                .unwrap();
            let mut alerts = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("alerts"))
                .unwrap();
            alerts.insert(1, b"{not json".as_slice()).unwrap();
            let mut devices = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("devices"))
                .unwrap();
            devices.insert("pnd-1", [7_u8].as_slice()).unwrap();
            let mut quarantine = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("quarantine"))
                .unwrap();
            quarantine.insert(0, [1_u8, 50].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = std::sync::Arc::new(Store::open(&path).unwrap());
    let key = EventKey {
        device: dev("pnd-1"),
        boot: 1,
        seq: 1,
    };
    let unreadable = |err: StoreError, table: &str| match err {
        StoreError::Unreadable(found) => assert_eq!(found.table, table),
        other => panic!("{other:?}"),
    };
    // Asked for one record, the answer is that record's problem.
    unreadable(store.event(&key).unwrap_err(), "events");
    unreadable(store.alert(AlertId(1)).unwrap_err(), "alerts");
    unreadable(store.device(&dev("pnd-1")).unwrap_err(), "devices");
    // Asked for many, the readable ones come back and the others are listed.
    for filter in [
        EventFilter::default(),
        EventFilter {
            device: Some(dev("pnd-1")),
            ..EventFilter::default()
        },
        EventFilter {
            resident: Some(res("r1")),
            ..EventFilter::default()
        },
    ] {
        let page = store.events(&filter).unwrap();
        assert_eq!(
            page.events.iter().map(|e| e.event.key.seq).collect::<Vec<_>>(),
            [2],
            "{filter:?}"
        );
        assert_eq!(page.unreadable.len(), 1, "{filter:?}");
        assert_eq!(
            (page.unreadable[0].table, page.unreadable[0].key.as_str()),
            ("events", "pnd-1/1/1 copy 0")
        );
    }
    assert_eq!(ids(store.open_alerts().unwrap()), [2]);
    assert_eq!(store.devices().unwrap().len(), 1);
    assert!(store.quarantined(None).unwrap().is_empty());
    let mut listed: Vec<&str> = Vec::new();
    let problems = store.unreadable();
    listed.extend(problems.iter().map(|u| u.table));
    listed.sort_unstable();
    assert_eq!(listed, ["alerts", "devices", "events", "quarantine"]);
    assert_eq!(store.unreadable_count(), 4);

    // The gateway still starts on this store (with the alerts it can read).
    let core = gateway::writer::Core::open(
        store.clone(),
        gateway::alerts::EngineConfig::default(),
        Timestamp(10_000),
    )
    .unwrap();
    assert_eq!(core.open_alert_count(), 1);

    // An unreadable alert can be overwritten (repaired).
    let mut batch = store.begin_write().unwrap();
    batch.put_alert(&alert(1, None, AlertState::Resolved, 1_000)).unwrap();
    batch.commit().unwrap();
    assert_eq!(store.alert(AlertId(1)).unwrap().unwrap().transitions.len(), 3);
}

fn ids(alerts: Vec<Alert>) -> Vec<u64> {
    alerts.iter().map(|a| a.id.0).collect()
}

#[test]
fn a_file_that_is_not_a_store_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    std::fs::write(&path, vec![0x42_u8; 8192]).unwrap();
    assert!(Store::open(&path).is_err());
}
