//! What an incoming publish is: an event, a presence change, or something to quarantine.
//! Pure and total: any topic and payload bytes give a verdict, never a panic.

use protocol::{
    DecodeError, DeviceId, MAX_UPLINK_LEN, Presence, Topic, TopicKind, UPLINK_ALARM_CANCELLED_TAG, UPLINK_ALARM_TAG,
    UplinkHeader, decode_status,
};

use crate::domain::{EventBody, QuarantineRecord, RejectReason, Timestamp};

/// Payload bytes kept in the quarantine for an oversize publish: the protocol limit plus a
/// little, so the record shows what it looked like without letting anyone fill the disk.
pub const QUARANTINE_KEEP_BYTES: usize = MAX_UPLINK_LEN + 64;
/// Longest topic text kept in a quarantine record.
pub const QUARANTINE_KEEP_TOPIC: usize = 256;

/// The verdict on one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// An uplink to store (decoded, or kept raw when its body is from a newer revision).
    Event {
        device: DeviceId,
        version: u8,
        header: UplinkHeader,
        body: EventBody,
        /// Came on the alarm topic but is not an alarm or its cancel: stored like any uplink
        /// (the topic is a lane, not a meaning) and counted, so a device that misuses the lane
        /// is seen and gains nothing.
        off_lane: bool,
    },
    /// A device's presence (status topic, often its last will).
    Presence { device: DeviceId, presence: Presence },
    /// Not storable: quarantine it (and still ack it, so the broker stops redelivering).
    Reject(Reject),
}

/// Why a publish was rejected, without the payload (the caller owns that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    /// Safe to log: no payload contents, no personal data.
    pub detail: String,
}

impl Reject {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// The bounded record kept in the quarantine.
    pub fn to_record(&self, topic: &[u8], payload: &[u8], received_at: Timestamp) -> QuarantineRecord {
        let topic_kept = topic.get(..QUARANTINE_KEEP_TOPIC).unwrap_or(topic);
        let payload_kept = payload.get(..QUARANTINE_KEEP_BYTES).unwrap_or(payload);
        QuarantineRecord {
            received_at,
            topic: String::from_utf8_lossy(topic_kept).into_owned(),
            payload: payload_kept.to_vec(),
            original_len: payload.len(),
            reason: self.reason,
            detail: self.detail.clone(),
        }
    }
}

/// Classifies one publish by its topic and payload.
pub fn classify(topic: &[u8], payload: &[u8]) -> Classified {
    let Ok(topic_text) = std::str::from_utf8(topic) else {
        return Classified::Reject(Reject::new(RejectReason::ForeignTopic, "topic is not UTF-8"));
    };
    let topic = match Topic::parse(topic_text) {
        Ok(topic) => topic,
        Err(e) => return Classified::Reject(Reject::new(RejectReason::ForeignTopic, e.to_string())),
    };
    match topic.kind {
        TopicKind::Down => Classified::Reject(Reject::new(
            RejectReason::ForeignTopic,
            "a down topic is ours to publish, not to receive",
        )),
        TopicKind::Up => classify_uplink(topic.device_id, payload, false),
        TopicKind::Alarm => classify_uplink(topic.device_id, payload, true),
        TopicKind::Status => classify_status(topic.device_id, payload),
    }
}

/// `on_alarm_topic`: the payload is handled exactly as on `up` (SPEC 2.1); only whether it
/// belonged there is noted.
fn classify_uplink(device: DeviceId, payload: &[u8], on_alarm_topic: bool) -> Classified {
    if payload.len() > MAX_UPLINK_LEN {
        return Classified::Reject(Reject::new(
            RejectReason::Oversize,
            format!("uplink of {} bytes exceeds {MAX_UPLINK_LEN}", payload.len()),
        ));
    }
    match EventBody::decode_uplink(payload) {
        // A body from a newer revision, or a malformed one behind a good header (a device bug
        // that retransmission cannot repair: the bytes are identical each time), decodes as
        // `Unrecognised`: stored raw and receipted rather than retried forever; if its body
        // tag says alarm, the engine raises it for a human (SPEC.md 10.3).
        Ok(decoded) => {
            if decoded.body_malformed {
                let body_tag = match &decoded.body {
                    EventBody::Unrecognised { body_tag, .. } => *body_tag,
                    EventBody::Uplink(_) => UPLINK_ALARM_TAG,
                };
                tracing::warn!(%device, boot = decoded.header.boot, seq = decoded.header.seq, body_tag, "uplink body malformed; stored raw (an unreadable tag counts as an alarm)");
            }
            let off_lane = on_alarm_topic && !belongs_on_alarm_lane(&decoded.body);
            Classified::Event {
                device,
                version: decoded.version,
                header: decoded.header,
                body: decoded.body,
                off_lane,
            }
        }
        Err(e) => Classified::Reject(decode_reject(e)),
    }
}

/// An alarm or its cancel. A body this revision cannot read belongs there if its tag is the
/// alarm's or the cancel's.
fn belongs_on_alarm_lane(body: &EventBody) -> bool {
    match body {
        EventBody::Uplink(uplink) => uplink.is_alarm(),
        EventBody::Unrecognised { body_tag, .. } => {
            *body_tag == UPLINK_ALARM_TAG || *body_tag == UPLINK_ALARM_CANCELLED_TAG
        }
    }
}

fn classify_status(device: DeviceId, payload: &[u8]) -> Classified {
    match decode_status(payload) {
        Ok(status) => Classified::Presence {
            device,
            presence: status.presence,
        },
        Err(DecodeError::TooLarge { len, limit }) => Classified::Reject(Reject::new(
            RejectReason::Oversize,
            format!("status of {len} bytes exceeds {limit}"),
        )),
        Err(e) => Classified::Reject(decode_reject(e)),
    }
}

fn decode_reject(error: DecodeError) -> Reject {
    let reason = match error {
        DecodeError::ReservedVersion => RejectReason::BadVersion,
        DecodeError::TooLarge { .. } => RejectReason::Oversize,
        DecodeError::Empty
        | DecodeError::MalformedHeader
        | DecodeError::MalformedBody
        | DecodeError::UnknownVariant { .. } => RejectReason::Malformed,
    };
    Reject::new(reason, error.to_string())
}

#[cfg(test)]
mod tests {
    use protocol::{
        AlarmKind, MAX_UPLINK_LEN, StatusMessage, Uplink, UplinkBody, UplinkHeader, encode_status, encode_uplink,
    };

    use super::*;

    const UP: &[u8] = b"tec/v1/dev/pnd-1/up";

    fn encode(body: UplinkBody) -> Vec<u8> {
        let uplink = Uplink::new(
            UplinkHeader {
                boot: 2,
                seq: 9,
                device_time_ms: Some(1_700_000_000_000),
            },
            body,
        );
        let mut buf = [0u8; MAX_UPLINK_LEN];
        encode_uplink(&uplink, &mut buf).unwrap().to_vec()
    }

    fn reason(c: Classified) -> RejectReason {
        match c {
            Classified::Reject(r) => r.reason,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[test]
    fn good_uplink_is_an_event() {
        let payload = encode(UplinkBody::Alarm(AlarmKind::PendantPress));
        match classify(UP, &payload) {
            Classified::Event {
                device,
                version,
                header,
                body,
                off_lane,
            } => {
                assert_eq!(device.as_str(), "pnd-1");
                assert_eq!(version, 1);
                assert_eq!((header.boot, header.seq), (2, 9));
                assert_eq!(body, EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)));
                assert!(!off_lane);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_alarm_topic_is_a_lane_not_a_meaning() {
        const ALARM: &[u8] = b"tec/v1/dev/pnd-1/alarm";
        let on_lane = [
            encode(UplinkBody::Alarm(AlarmKind::Fall)),
            encode(UplinkBody::AlarmCancelled { alarm_seq: 8 }),
            // From a newer revision: unreadable, but tagged as an alarm or a cancel.
            vec![1, 3, 7, 0, 0, 0x80, 0x01],
            vec![1, 3, 7, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ];
        for payload in on_lane {
            match classify(ALARM, &payload) {
                Classified::Event { off_lane, .. } => assert!(!off_lane, "{payload:02x?}"),
                other => panic!("{other:?}"),
            }
        }
        // Anything else on the alarm topic is stored all the same, and flagged.
        let heartbeat = encode(UplinkBody::SensorChange {
            input: 1,
            state: protocol::SensorState::DoorOpen,
        });
        for payload in [heartbeat, vec![1, 3, 7, 0, 40, 1, 2]] {
            match classify(ALARM, &payload) {
                Classified::Event { off_lane, body, .. } => {
                    assert!(off_lane, "{body:?}");
                    assert!(!body.is_alarm());
                }
                other => panic!("{other:?}"),
            }
        }
        // The same bytes on `up` are not flagged: older firmware sends alarms there.
        match classify(UP, &encode(UplinkBody::Alarm(AlarmKind::Fall))) {
            Classified::Event { off_lane, body, .. } => assert!(!off_lane && body.is_alarm()),
            other => panic!("{other:?}"),
        }
        assert_eq!(reason(classify(ALARM, b"\x00junk")), RejectReason::BadVersion);
    }

    #[test]
    fn unknown_variant_is_kept_raw() {
        // Header boot 3, seq 7, no device time, then body tag 40 from a newer revision.
        let payload = [1, 3, 7, 0, 40, 1, 2];
        match classify(UP, &payload) {
            Classified::Event { header, body, .. } => {
                assert_eq!((header.boot, header.seq), (3, 7));
                assert_eq!(
                    body,
                    EventBody::Unrecognised {
                        body_tag: 40,
                        raw: payload.to_vec()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        // An unknown alarm kind is an unrecognised alarm.
        match classify(UP, &[1, 3, 8, 0, 0, 99]) {
            Classified::Event { body, .. } => assert!(body.is_alarm()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_payloads_are_rejected_with_reasons() {
        assert_eq!(reason(classify(UP, &[])), RejectReason::Malformed);
        assert_eq!(reason(classify(UP, b"garbage!")), RejectReason::Malformed);
        assert_eq!(reason(classify(UP, &[1, 3])), RejectReason::Malformed);
        let good = encode(UplinkBody::Alarm(AlarmKind::Fall));
        // Header intact, body cut: stored raw (so it is receipted) and, with body tag 0,
        // still an alarm for a human.
        let truncated = good.get(..good.len() - 1).unwrap();
        match classify(UP, truncated) {
            Classified::Event { body, .. } => {
                assert!(body.is_alarm(), "{body:?}");
                assert!(matches!(body, EventBody::Unrecognised { body_tag: 0, .. }));
            }
            other => panic!("{other:?}"),
        }
        // A complete header but no readable body tag: stored raw (receipted) as an alarm.
        for no_tag in [
            &[1, 3, 7, 0][..],                                 // nothing after the header
            &[1, 3, 7, 0, 0x80],                               // the tag varint is cut
            &[1, 3, 7, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // longer than a u32 varint
            &[1, 3, 7, 0, 0xff, 0xff, 0xff, 0xff, 0x1f],       // does not fit a u32
        ] {
            match classify(UP, no_tag) {
                Classified::Event { header, body, .. } => {
                    assert_eq!((header.boot, header.seq), (3, 7), "{no_tag:?}");
                    assert!(body.is_alarm(), "{no_tag:?}: {body:?}");
                    assert_eq!(
                        body,
                        EventBody::Unrecognised {
                            body_tag: UPLINK_ALARM_TAG,
                            raw: no_tag.to_vec()
                        }
                    );
                }
                other => panic!("{no_tag:?}: {other:?}"),
            }
        }
        // A readable tag of a known telemetry kind with a broken body is not an alarm.
        match classify(UP, &[1, 3, 7, 0, 2, 0xf4]) {
            Classified::Event { body, .. } => {
                assert!(!body.is_alarm(), "{body:?}");
                assert!(matches!(body, EventBody::Unrecognised { body_tag: 2, .. }));
            }
            other => panic!("{other:?}"),
        }
        // Header cut: nothing to receipt, quarantined.
        let header_cut = good.get(..2).unwrap();
        assert_eq!(reason(classify(UP, header_cut)), RejectReason::Malformed);
        assert_eq!(reason(classify(UP, &[0, 3, 7, 0, 0, 0])), RejectReason::BadVersion);
        let oversize = vec![1u8; MAX_UPLINK_LEN + 1];
        assert_eq!(reason(classify(UP, &oversize)), RejectReason::Oversize);
        let huge = vec![7u8; 200_000];
        match classify(UP, &huge) {
            Classified::Reject(r) => {
                let record = r.to_record(UP, &huge, Timestamp(5));
                assert_eq!(record.original_len, 200_000);
                assert_eq!(record.payload.len(), QUARANTINE_KEEP_BYTES);
                assert_eq!(record.reason, RejectReason::Oversize);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_topics_are_foreign() {
        let payload = encode(UplinkBody::Alarm(AlarmKind::PendantPress));
        for topic in [
            &b"tec/v1/dev/pnd-1/down"[..],
            b"tec/v2/dev/pnd-1/up",
            b"tec/v1/dev/PND-1/up",
            b"tec/v1/dev/p/up",
            b"tec/v1/dev/pnd-1/up/x",
            b"tec/v1/dev/pnd-1/sideways",
            b"other/topic",
            b"",
            &[0xff, 0xfe, b'/', b'u', b'p'],
        ] {
            assert_eq!(
                reason(classify(topic, &payload)),
                RejectReason::ForeignTopic,
                "{topic:?}"
            );
        }
        let long_topic = vec![b'a'; 10_000];
        match classify(&long_topic, &payload) {
            Classified::Reject(r) => assert_eq!(r.to_record(&long_topic, &payload, Timestamp(0)).topic.len(), 256),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_topic_gives_presence() {
        let topic = b"tec/v1/dev/pnd-1/status";
        let mut buf = [0u8; 16];
        let online = encode_status(&StatusMessage::new(Presence::Online { boot: 4 }), &mut buf)
            .unwrap()
            .to_vec();
        assert_eq!(
            classify(topic, &online),
            Classified::Presence {
                device: DeviceId::new("pnd-1").unwrap(),
                presence: Presence::Online { boot: 4 }
            }
        );
        assert_eq!(reason(classify(topic, &[])), RejectReason::Malformed);
        assert_eq!(reason(classify(topic, &[0, 1])), RejectReason::BadVersion);
        assert_eq!(reason(classify(topic, &[1u8; 100])), RejectReason::Oversize);
        assert_eq!(reason(classify(topic, &[1, 9])), RejectReason::Malformed);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        use proptest::prelude::*;
        proptest!(|(topic in proptest::collection::vec(any::<u8>(), 0..64),
                    payload in proptest::collection::vec(any::<u8>(), 0..300))| {
            let _ = classify(&topic, &payload);
            let mut up = UP.to_vec();
            let _ = classify(&up, &payload);
            up.clear();
            let _ = classify(b"tec/v1/dev/pnd-1/status", &payload);
        });
    }
}
