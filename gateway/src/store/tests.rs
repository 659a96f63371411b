//! Internal checks; behaviour through the public API is tested in gateway/tests/store_*.rs.

use protocol::{AlarmKind, DeviceId, UplinkBody};
use redb::ReadableDatabase;

use super::schema::{ALERT_TRANSITIONS, from_json};
use super::{EventFilter, InsertOutcome, NewEvent, Store, StoreError};
use crate::domain::{
    Alert, AlertId, AlertKind, AlertState, Change, EventBody, EventKey, Priority, ResidentId, StoredEvent, Timestamp,
    Transition,
};

#[test]
fn undecodable_values_name_their_table_and_key() {
    let err = from_json::<Alert>("alerts", 7, b"[").unwrap_err();
    assert_eq!((err.table, err.key.as_str()), ("alerts", "7"));
    let err = StoreError::from(err);
    assert!(matches!(err, StoreError::Unreadable(_)));
    assert!(err.to_string().contains("table alerts, key 7"), "{err}");
}

#[test]
fn redb_lock_and_corruption_errors_map_to_typed_variants() {
    assert!(matches!(
        StoreError::from(redb::Error::DatabaseAlreadyOpen),
        StoreError::InUse
    ));
    assert!(matches!(
        StoreError::from(redb::Error::Corrupted("x".into())),
        StoreError::Corrupt { .. }
    ));
    assert!(matches!(
        StoreError::from(redb::DatabaseError::DatabaseAlreadyOpen),
        StoreError::InUse
    ));
}

fn key(device: &str, boot: u32, seq: u32) -> EventKey {
    EventKey {
        device: DeviceId::new(device).unwrap(),
        boot,
        seq,
    }
}

fn event(device: &str, seq: u32, at: i64, body: UplinkBody) -> NewEvent {
    NewEvent::from_event(StoredEvent {
        key: key(device, 1, seq),
        resident: Some(ResidentId::new("r1").unwrap()),
        received_at: Timestamp(at),
        device_time: None,
        protocol_version: 1,
        body: EventBody::Uplink(body),
    })
    .unwrap()
}

fn press() -> UplinkBody {
    UplinkBody::Alarm(AlarmKind::PendantPress)
}

fn fall() -> UplinkBody {
    UplinkBody::Alarm(AlarmKind::Fall)
}

fn cancel() -> UplinkBody {
    UplinkBody::AlarmCancelled { alarm_seq: 0 }
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    (dir, store)
}

fn insert(store: &Store, events: &[NewEvent]) -> Vec<InsertOutcome> {
    let mut batch = store.begin_write().unwrap();
    let outcomes = batch.insert_events(events).unwrap();
    batch.commit().unwrap();
    outcomes
}

#[test]
fn from_event_refuses_an_event_its_payload_does_not_say() {
    let mut event = event("pnd-1", 1, 10, press()).event;
    event.body = EventBody::Unrecognised {
        body_tag: 99,
        raw: vec![1, 2],
    };
    assert!(matches!(NewEvent::from_event(event), Err(StoreError::Encode { .. })));
}

#[test]
fn same_key_same_value_is_a_duplicate_even_in_other_bytes() {
    let (_dir, store) = temp_store();
    let original = event("pnd-1", 1, 10, press());
    assert_eq!(
        insert(&store, std::slice::from_ref(&original)),
        [InsertOutcome::Inserted]
    );
    // Seq 1 as an over-long varint (0x81 0x00): other bytes, same decoded value.
    assert_eq!(original.payload[2], 1);
    let mut overlong = original.payload.clone();
    overlong.splice(2..3, [0x81, 0x00]);
    let recoded = NewEvent::from_payload(original.event.key.device, &overlong, None, Timestamp(20)).unwrap();
    assert_eq!(recoded.event.key, original.event.key);
    let later = NewEvent {
        event: StoredEvent {
            received_at: Timestamp(30),
            ..original.event.clone()
        },
        ..original.clone()
    };
    assert_eq!(
        insert(&store, &[recoded, later]),
        [InsertOutcome::Duplicate, InsertOutcome::Duplicate]
    );
    assert_eq!(store.event_count().unwrap(), 1);
    assert_eq!(store.event(&original.event.key).unwrap(), Some(original.event));
}

#[test]
fn a_reused_key_is_stored_as_a_copy_and_a_copy_retransmitted_is_a_duplicate() {
    let (_dir, store) = temp_store();
    // Within one batch: the first arrival is the original, the different one a copy.
    assert_eq!(
        insert(&store, &[event("pnd-1", 1, 10, press()), event("pnd-1", 1, 11, fall())]),
        [InsertOutcome::Inserted, InsertOutcome::Conflict { copy: 1 }]
    );
    // Across batches: copies of the original and of copy 1 are duplicates; new content is copy 2.
    assert_eq!(
        insert(
            &store,
            &[
                event("pnd-1", 1, 20, fall()),
                event("pnd-1", 1, 21, press()),
                event("pnd-1", 1, 22, cancel()),
                event("pnd-1", 1, 23, cancel()),
            ]
        ),
        [
            InsertOutcome::Duplicate,
            InsertOutcome::Duplicate,
            InsertOutcome::Conflict { copy: 2 },
            InsertOutcome::Duplicate,
        ]
    );
    let copies = store.event_copies(&key("pnd-1", 1, 1)).unwrap();
    let seen: Vec<(u32, i64)> = copies.iter().map(|r| (r.copy, r.event.received_at.0)).collect();
    assert_eq!(seen, [(0, 10), (1, 11), (2, 22)]);
    assert_eq!(store.event_count().unwrap(), 3);
    // Every copy is in the time-ordered and the resident's history.
    for filter in [
        EventFilter::default(),
        EventFilter {
            resident: Some(ResidentId::new("r1").unwrap()),
            ..EventFilter::default()
        },
        EventFilter {
            device: Some(DeviceId::new("pnd-1").unwrap()),
            ..EventFilter::default()
        },
    ] {
        let page = store.events(&filter).unwrap();
        let copies: Vec<u32> = page.events.iter().map(|r| r.copy).collect();
        assert_eq!(copies, [0, 1, 2], "{filter:?}");
        assert!(page.unreadable.is_empty());
    }
}

#[test]
fn after_the_boot_went_back_an_old_copy_is_a_new_event() {
    let (_dir, store) = temp_store();
    let months_ago = event("pnd-1", 1, 1_000, press());
    let heartbeat_then = event("pnd-1", 2, 1_000, cancel());
    insert(&store, &[months_ago.clone(), heartbeat_then.clone()]);
    let flagged = |mut new: NewEvent, at: i64| {
        new.event.received_at = Timestamp(at);
        new.boot_reused_since = Some(Timestamp(5_000));
        new
    };
    // The wiped device's first press and its next event: the same bytes as months ago, but
    // after the flag: new events of its new life, kept as copies.
    assert_eq!(
        insert(
            &store,
            &[flagged(months_ago.clone(), 6_000), flagged(heartbeat_then, 6_000)]
        ),
        [InsertOutcome::Conflict { copy: 1 }, InsertOutcome::Conflict { copy: 1 }]
    );
    // Its retransmission matches the copy stored after the flag: a duplicate.
    assert_eq!(
        insert(&store, &[flagged(months_ago.clone(), 7_000)]),
        [InsertOutcome::Duplicate]
    );
    // Without the flag an exact copy is an ordinary duplicate.
    assert_eq!(insert(&store, &[months_ago]), [InsertOutcome::Duplicate]);
    assert_eq!(store.event_count().unwrap(), 4);
}

#[test]
fn a_conflict_flags_its_device_for_the_rest_of_the_batch() {
    let (_dir, store) = temp_store();
    insert(
        &store,
        &[event("pnd-1", 1, 10, cancel()), event("pnd-1", 2, 10, press())],
    );
    // Seq 1 comes back different (the device reused keys), then seq 2 with the old alarm's
    // exact bytes: when in doubt, that is a new alarm too.
    assert_eq!(
        insert(&store, &[event("pnd-1", 1, 50, fall()), event("pnd-1", 2, 50, press())]),
        [InsertOutcome::Conflict { copy: 1 }, InsertOutcome::Conflict { copy: 1 }]
    );
}

#[test]
fn an_unreadable_stored_version_cannot_make_a_duplicate() {
    let (_dir, store) = temp_store();
    let original = event("pnd-1", 1, 10, press());
    insert(&store, std::slice::from_ref(&original));
    {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(super::schema::EVENTS)
            .unwrap()
            .insert(("pnd-1", 1, 1, 0), [1_u8, 0].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(insert(&store, &[original]), [InsertOutcome::Conflict { copy: 1 }]);
    assert_eq!(store.unreadable_count(), 1);
    assert_eq!(store.unreadable()[0].table, "events");
}

#[test]
fn one_millisecond_split_over_commits_reads_in_key_order_and_honours_the_limit() {
    let (_dir, store) = temp_store();
    for events in [
        vec![
            event("pnd-c", 1, 5, press()),
            event("pnd-a", 1, 5, press()),
            event("pnd-z", 1, 4, press()),
        ],
        vec![event("pnd-b", 1, 5, press()), event("pnd-d", 1, 6, press())],
    ] {
        insert(&store, &events);
    }
    let order = |filter: &EventFilter| -> Vec<String> {
        store
            .events(filter)
            .unwrap()
            .into_events()
            .iter()
            .map(|e| format!("{}@{}", e.key.device, e.received_at.as_millis()))
            .collect()
    };
    assert_eq!(
        order(&EventFilter::default()),
        vec!["pnd-z@4", "pnd-a@5", "pnd-b@5", "pnd-c@5", "pnd-d@6"]
    );
    let window = EventFilter {
        since: Some(Timestamp(5)),
        limit: Some(2),
        ..EventFilter::default()
    };
    assert_eq!(order(&window), vec!["pnd-a@5", "pnd-b@5"]);
    let until = EventFilter {
        until: Some(Timestamp(6)),
        ..EventFilter::default()
    };
    assert_eq!(order(&until).len(), 4);
}

#[test]
fn resident_history_across_commits_filters_devices_and_honours_the_limit() {
    let (_dir, store) = temp_store();
    let of = |device: &str, seq: u32, at: i64, resident: &str| {
        let mut new = event(device, seq, at, press());
        new.event.resident = Some(ResidentId::new(resident.to_string()).unwrap());
        new
    };
    for events in [
        vec![
            of("pnd-b", 1, 5, "r1"),
            of("pnd-a", 1, 5, "r1"),
            of("pnd-x", 1, 5, "r2"),
        ],
        vec![
            of("pnd-a", 2, 5, "r1"),
            of("pnd-b", 2, 7, "r1"),
            of("pnd-x", 2, 3, "r2"),
        ],
    ] {
        insert(&store, &events);
    }
    let order = |filter: EventFilter| -> Vec<String> {
        store
            .events(&filter)
            .unwrap()
            .into_events()
            .iter()
            .map(|e| format!("{}/{}@{}", e.key.device, e.key.seq, e.received_at.as_millis()))
            .collect()
    };
    let r1 = Some(ResidentId::new("r1".to_string()).unwrap());
    let all = EventFilter {
        resident: r1.clone(),
        ..EventFilter::default()
    };
    assert_eq!(order(all), vec!["pnd-a/1@5", "pnd-a/2@5", "pnd-b/1@5", "pnd-b/2@7"]);
    let limited = EventFilter {
        resident: r1.clone(),
        limit: Some(3),
        ..EventFilter::default()
    };
    assert_eq!(order(limited), vec!["pnd-a/1@5", "pnd-a/2@5", "pnd-b/1@5"]);
    let one_device = EventFilter {
        resident: r1.clone(),
        device: Some(DeviceId::new("pnd-b").unwrap()),
        since: Some(Timestamp(6)),
        ..EventFilter::default()
    };
    assert_eq!(order(one_device), vec!["pnd-b/2@7"]);
    let other = EventFilter {
        resident: Some(ResidentId::new("r2".to_string()).unwrap()),
        until: Some(Timestamp(5)),
        ..EventFilter::default()
    };
    assert_eq!(order(other), vec!["pnd-x/2@3"]);
}

fn alert_with(transitions: usize) -> Alert {
    Alert {
        id: AlertId(4),
        kind: AlertKind::PendantPress,
        priority: Priority::LifeSafety,
        state: AlertState::Raised,
        resident: None,
        device: Some(DeviceId::new("pnd-1").unwrap()),
        unregistered_device: false,
        raised_at: Timestamp(1),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: (0..transitions)
            .map(|n| Transition {
                at: Timestamp(n as i64),
                change: Change::Joined {
                    event: key("pnd-1", 1, n as u32),
                },
            })
            .collect(),
    }
}

#[test]
fn put_alert_appends_only_new_transitions() {
    let (_dir, store) = temp_store();
    let mut batch = store.begin_write().unwrap();
    batch.put_alert(&alert_with(2)).unwrap();
    batch.commit().unwrap();
    // Damage transition 0 behind the store's back: a later put must not rewrite it (it writes
    // only what is new), so the damage stays visible.
    {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(ALERT_TRANSITIONS)
            .unwrap()
            .insert((4, 0), b"{".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let mut batch = store.begin_write().unwrap();
    batch.put_alert(&alert_with(3)).unwrap();
    batch.commit().unwrap();
    let read = store.alert(AlertId(4)).unwrap().unwrap();
    assert_eq!(read.transitions, alert_with(3).transitions[1..]);
    assert_eq!(store.unreadable()[0].key, "4/0");
    {
        let txn = store.db.begin_read().unwrap();
        assert_eq!(
            redb::ReadableTableMetadata::len(&txn.open_table(ALERT_TRANSITIONS).unwrap()).unwrap(),
            3
        );
    }
}

#[test]
fn device_days_count_stored_events_and_redelivered_copies_per_london_day() {
    let (_dir, store) = temp_store();
    // 2026-07-01 23:30 UTC is 00:30 on 2 July in London: the second day.
    let late = 1_782_948_600_000;
    let first = event("dev-a", 1, late - 3_600_000, press());
    let second = event("dev-a", 2, late, press());
    assert_eq!(
        insert(&store, &[first.clone(), second.clone()]),
        vec![InsertOutcome::Inserted; 2]
    );
    // The same two again (a retransmission), and one of them a third time in the same batch.
    assert_eq!(
        insert(&store, &[first.clone(), second.clone(), second]),
        vec![InsertOutcome::Duplicate; 3]
    );
    let device = DeviceId::new("dev-a").unwrap();
    let (july_1, july_2) = (jiff::civil::date(2026, 7, 1), jiff::civil::date(2026, 7, 2));
    let days = store.device_days([&device], july_1, july_2).unwrap();
    let days = days.get(&device).unwrap();
    let day_1 = days.get(&july_1).unwrap();
    let day_2 = days.get(&july_2).unwrap();
    assert_eq!((day_1.events, day_1.duplicates), (1, 1));
    assert_eq!((day_2.events, day_2.duplicates), (1, 2));
    assert_eq!(day_2.first, Timestamp(late));
    assert_eq!(store.delivery_totals(july_1, july_2).unwrap(), (2, 3));
    assert_eq!(store.delivery_totals(july_2, july_2).unwrap(), (1, 2));
}
