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
