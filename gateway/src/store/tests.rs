//! Internal checks; behaviour through the public API is tested in gateway/tests/store_*.rs.

use super::StoreError;
use super::schema::{from_json, from_postcard, to_postcard};
use crate::domain::{QuarantineRecord, RejectReason, Timestamp};

#[test]
fn undecodable_values_name_their_table_and_key() {
    let err = from_postcard::<QuarantineRecord>("quarantine", 42, &[0xff, 0xff]).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    let text = err.to_string();
    assert!(text.contains("quarantine") && text.contains("42"), "{text}");

    let err = from_json::<crate::domain::Alert>("alerts", 7, b"[").unwrap_err();
    assert!(err.to_string().contains("table alerts, key 7"), "{err}");
}

#[test]
fn postcard_roundtrip_of_a_record() {
    let record = QuarantineRecord {
        received_at: Timestamp(1),
        topic: "t".into(),
        payload: vec![1, 2, 3],
        original_len: 3,
        reason: RejectReason::BadVersion,
        detail: "d".into(),
    };
    let bytes = to_postcard("quarantine", &record).unwrap();
    assert_eq!(
        from_postcard::<QuarantineRecord>("quarantine", 0, &bytes).unwrap(),
        record
    );
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

fn stored_event(device: &str, seq: u32, at: i64) -> crate::domain::StoredEvent {
    crate::domain::StoredEvent {
        key: crate::domain::EventKey {
            device: protocol::DeviceId::new(device).unwrap(),
            boot: 1,
            seq,
        },
        resident: None,
        received_at: Timestamp(at),
        device_time: None,
        protocol_version: 1,
        body: crate::domain::EventBody::Unrecognised {
            body_tag: 99,
            raw: vec![seq as u8],
        },
    }
}

#[test]
fn batch_insert_keeps_the_first_copy_and_reports_duplicates() {
    use super::{InsertOutcome, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let mut batch = store.begin_write().unwrap();
    let outcomes = batch
        .insert_events(&[stored_event("pnd-1", 1, 10), stored_event("pnd-1", 1, 11)])
        .unwrap();
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::Duplicate]);
    batch.commit().unwrap();
    let mut batch = store.begin_write().unwrap();
    let outcomes = batch
        .insert_events(&[stored_event("pnd-2", 1, 20), stored_event("pnd-1", 1, 21)])
        .unwrap();
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::Duplicate]);
    batch.commit().unwrap();
    let kept = store.event(&stored_event("pnd-1", 1, 0).key).unwrap().unwrap();
    assert_eq!(kept.received_at, Timestamp(10), "the first copy stays");
    assert_eq!(store.event_count().unwrap(), 2);
    assert_eq!(store.events(&super::EventFilter::default()).unwrap().len(), 2);
}

#[test]
fn one_millisecond_split_over_commits_reads_in_key_order_and_honours_the_limit() {
    use super::{EventFilter, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    for events in [
        vec![
            stored_event("pnd-c", 1, 5),
            stored_event("pnd-a", 1, 5),
            stored_event("pnd-z", 1, 4),
        ],
        vec![stored_event("pnd-b", 1, 5), stored_event("pnd-d", 1, 6)],
    ] {
        let mut batch = store.begin_write().unwrap();
        batch.insert_events(&events).unwrap();
        batch.commit().unwrap();
    }
    let order = |filter: &EventFilter| -> Vec<String> {
        store
            .events(filter)
            .unwrap()
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
    use super::{EventFilter, Store};
    use crate::domain::ResidentId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let of = |device: &str, seq: u32, at: i64, resident: &str| {
        let mut event = stored_event(device, seq, at);
        event.resident = Some(ResidentId::new(resident.to_string()).unwrap());
        event
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
        let mut batch = store.begin_write().unwrap();
        batch.insert_events(&events).unwrap();
        batch.commit().unwrap();
    }
    let order = |filter: EventFilter| -> Vec<String> {
        store
            .events(&filter)
            .unwrap()
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
        device: Some(protocol::DeviceId::new("pnd-b").unwrap()),
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
