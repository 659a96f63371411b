//! Property tests of the wire format, topics and device ids.
//!
//! Every message round-trips and fits its limit; the encoding matches an independent encoder
//! written from SPEC.md's rules; no input, random or a mutated valid message, makes a decoder
//! panic, and decoders agree with each other about what they reject; topics and device ids
//! accept exactly what SPEC.md says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use protocol::{
    ALARM_KIND_VARIANTS, ActivitySummary, AlarmKind, COMMAND_RESULT_VARIANTS, CommandResult, DOWNLINK_BODY_VARIANTS,
    DecodeError, DeviceConfig, DeviceId, DeviceStatus, Downlink, DownlinkBody, FirmwareVersion, MAX_DOWNLINK_LEN,
    MAX_STATUS_LEN, MAX_TOPIC_LEN, MAX_UPLINK_LEN, PRESENCE_VARIANTS, PROTOCOL_VERSION, Presence,
    SENSOR_STATE_VARIANTS, SensorState, StatusMessage, TOPIC_PREFIX, Topic, TopicKind, UPLINK_BODY_VARIANTS, Uplink,
    UplinkBody, UplinkHeader, decode_downlink, decode_status, decode_uplink, encode_downlink, encode_status,
    encode_uplink, peek_uplink_header,
};

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies. Integers favour the varint length boundaries as well as the full range.
// ---------------------------------------------------------------------------------------------

fn any_u16() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..128, 128u16..16_384, any::<u16>(), Just(u16::MAX)]
}

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..128, 128u32..16_384, any::<u32>(), Just(u32::MAX)]
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..128,
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
        Just(u64::MAX)
    ]
}

fn any_i16() -> impl Strategy<Value = i16> {
    prop_oneof![
        -64i16..64,
        -8_192i16..8_192,
        any::<i16>(),
        Just(i16::MIN),
        Just(i16::MAX)
    ]
}

fn version() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(PROTOCOL_VERSION), 1 => 1u8..=u8::MAX]
}

fn header() -> impl Strategy<Value = UplinkHeader> {
    (any_u32(), any_u32(), proptest::option::of(any_u64())).prop_map(|(boot, seq, device_time_ms)| UplinkHeader {
        boot,
        seq,
        device_time_ms,
    })
}

fn alarm_kind() -> impl Strategy<Value = AlarmKind> {
    use AlarmKind as A;
    prop_oneof![
        select(vec![
            A::PendantPress,
            A::Fall,
            A::Smoke,
            A::Heat,
            A::CarbonMonoxide,
            A::Flood,
            A::BedNotReturned,
            A::ChairNotReturned,
            A::DoorOpenedAtNight,
            A::LeavingHome,
            A::Inactivity,
            A::Seizure,
            A::MedicationMissed,
            A::Tamper,
            A::MainsPowerLost,
            A::MainsPowerRestored,
        ]),
        any_i16().prop_map(|centi_celsius| A::TemperatureExtreme { centi_celsius }),
        (any_u16(), any::<u8>()).prop_map(|(millivolts, percent)| A::LowBattery { millivolts, percent }),
    ]
}

fn sensor_state() -> impl Strategy<Value = SensorState> {
    use SensorState as S;
    prop_oneof![
        select(vec![
            S::DoorOpen,
            S::DoorClosed,
            S::BedOccupied,
            S::BedEmpty,
            S::ChairOccupied,
            S::ChairEmpty,
            S::Motion,
        ]),
        any_i16().prop_map(|centi_celsius| S::Temperature { centi_celsius }),
    ]
}

fn command_result() -> impl Strategy<Value = CommandResult> {
    use CommandResult as C;
    prop_oneof![
        select(vec![C::Applied, C::Rejected, C::Unsupported, C::SelfTestPassed]),
        any_u16().prop_map(|fault_code| C::SelfTestFailed { fault_code }),
    ]
}

fn device_status() -> impl Strategy<Value = DeviceStatus> {
    (
        any_u16(),
        any::<u8>(),
        any::<i8>(),
        any_u32(),
        any::<(u8, u8, u8)>(),
        any_u32(),
        any_u16(),
        any_u32(),
    )
        .prop_map(
            |(
                battery_mv,
                battery_percent,
                rssi_dbm,
                uptime_s,
                (major, minor, patch),
                heartbeat_interval_s,
                outbox_depth,
                events_dropped,
            )| DeviceStatus {
                battery_mv,
                battery_percent,
                rssi_dbm,
                uptime_s,
                firmware: FirmwareVersion { major, minor, patch },
                heartbeat_interval_s,
                outbox_depth,
                events_dropped,
            },
        )
}

fn uplink_body() -> impl Strategy<Value = UplinkBody> {
    prop_oneof![
        // Alarms have the most variants; weight them so each kind is well exercised.
        3 => alarm_kind().prop_map(UplinkBody::Alarm),
        1 => any_u32().prop_map(|alarm_seq| UplinkBody::AlarmCancelled { alarm_seq }),
        1 => device_status().prop_map(UplinkBody::Heartbeat),
        2 => (any::<u8>(), sensor_state()).prop_map(|(input, state)| UplinkBody::SensorChange { input, state }),
        1 => (any_u16(), vec(any_u16(), 0..=protocol::MAX_ACTIVITY_WINDOWS)).prop_map(|(window_s, counts)| {
            UplinkBody::Activity(ActivitySummary {
                window_s,
                motion_counts: heapless::Vec::from_slice(&counts).unwrap(),
            })
        }),
        1 => (any_u32(), command_result()).prop_map(|(command_id, result)| UplinkBody::CommandAck { command_id, result }),
    ]
}

fn uplink() -> impl Strategy<Value = Uplink> {
    (version(), header(), uplink_body()).prop_map(|(version, header, body)| Uplink { version, header, body })
}

fn device_config() -> impl Strategy<Value = DeviceConfig> {
    (
        any_u32(),
        any_u16(),
        any_i16(),
        any_i16(),
        any::<u8>(),
        any_u16(),
        any_u16(),
    )
        .prop_map(
            |(
                heartbeat_interval_s,
                cancel_grace_s,
                temperature_high_centi,
                temperature_low_centi,
                low_battery_percent,
                fall_free_fall_mg,
                fall_impact_mg,
            )| DeviceConfig {
                heartbeat_interval_s,
                cancel_grace_s,
                temperature_high_centi,
                temperature_low_centi,
                low_battery_percent,
                fall_free_fall_mg,
                fall_impact_mg,
            },
        )
}

fn downlink_body() -> impl Strategy<Value = DownlinkBody> {
    prop_oneof![
        2 => (any_u32(), vec(any_u32(), 0..=protocol::MAX_RECEIPT_SEQS)).prop_map(|(boot, seqs)| {
            DownlinkBody::Receipt {
                boot,
                seqs: heapless::Vec::from_slice(&seqs).unwrap(),
            }
        }),
        1 => any_u64().prop_map(|alert_ref| DownlinkBody::HelpOnTheWay { alert_ref }),
        1 => any_u64().prop_map(|alert_ref| DownlinkBody::AlertResolved { alert_ref }),
        1 => (any_u32(), device_config()).prop_map(|(command_id, config)| DownlinkBody::Configure { command_id, config }),
        1 => any_u32().prop_map(|command_id| DownlinkBody::SelfTest { command_id }),
        1 => any_u64().prop_map(|unix_ms| DownlinkBody::TimeSync { unix_ms }),
        1 => any_u32().prop_map(|min_boot| DownlinkBody::BootFloor { min_boot }),
    ]
}

fn downlink() -> impl Strategy<Value = Downlink> {
    (version(), downlink_body()).prop_map(|(version, body)| Downlink { version, body })
}

fn status_message() -> impl Strategy<Value = StatusMessage> {
    let presence = prop_oneof![
        any_u32().prop_map(|boot| Presence::Online { boot }),
        Just(Presence::Offline)
    ];
    (version(), presence).prop_map(|(version, presence)| StatusMessage { version, presence })
}

fn encode_up(m: &Uplink) -> Vec<u8> {
    let mut buf = [0u8; MAX_UPLINK_LEN];
    encode_uplink(m, &mut buf).unwrap().to_vec()
}

fn encode_down(m: &Downlink) -> Vec<u8> {
    let mut buf = [0u8; MAX_DOWNLINK_LEN];
    encode_downlink(m, &mut buf).unwrap().to_vec()
}

fn encode_stat(m: &StatusMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_STATUS_LEN];
    encode_status(m, &mut buf).unwrap().to_vec()
}

// ---------------------------------------------------------------------------------------------
// An independent encoder, written from SPEC.md ("Byte layout"), not from postcard.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct SpecWriter(Vec<u8>);

impl SpecWriter {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }
    /// LEB128: 7 bits at a time, least significant group first, high bit set on all but the last.
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    /// Zigzag: 0, -1, 1, -2, 2 ... become 0, 1, 2, 3, 4 ..., then a varint.
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }
    fn tag(&mut self, t: u32) {
        self.varint(u64::from(t));
    }
}

fn spec_encode_uplink(m: &Uplink) -> Vec<u8> {
    let mut w = SpecWriter::default();
    w.byte(m.version);
    w.varint(u64::from(m.header.boot));
    w.varint(u64::from(m.header.seq));
    match m.header.device_time_ms {
        None => w.byte(0),
        Some(t) => {
            w.byte(1);
            w.varint(t);
        }
    }
    match &m.body {
        UplinkBody::Alarm(kind) => {
            w.tag(0);
            match kind {
                AlarmKind::PendantPress => w.tag(0),
                AlarmKind::Fall => w.tag(1),
                AlarmKind::Smoke => w.tag(2),
                AlarmKind::Heat => w.tag(3),
                AlarmKind::CarbonMonoxide => w.tag(4),
                AlarmKind::Flood => w.tag(5),
                AlarmKind::TemperatureExtreme { centi_celsius } => {
                    w.tag(6);
                    w.zigzag(i64::from(*centi_celsius));
                }
                AlarmKind::BedNotReturned => w.tag(7),
                AlarmKind::ChairNotReturned => w.tag(8),
                AlarmKind::DoorOpenedAtNight => w.tag(9),
                AlarmKind::LeavingHome => w.tag(10),
                AlarmKind::Inactivity => w.tag(11),
                AlarmKind::Seizure => w.tag(12),
                AlarmKind::MedicationMissed => w.tag(13),
                AlarmKind::Tamper => w.tag(14),
                AlarmKind::MainsPowerLost => w.tag(15),
                AlarmKind::MainsPowerRestored => w.tag(16),
                AlarmKind::LowBattery { millivolts, percent } => {
                    w.tag(17);
                    w.varint(u64::from(*millivolts));
                    w.byte(*percent);
                }
            }
        }
        UplinkBody::AlarmCancelled { alarm_seq } => {
            w.tag(1);
            w.varint(u64::from(*alarm_seq));
        }
        UplinkBody::Heartbeat(s) => {
            w.tag(2);
            w.varint(u64::from(s.battery_mv));
            w.byte(s.battery_percent);
            w.i8(s.rssi_dbm);
            w.varint(u64::from(s.uptime_s));
            w.byte(s.firmware.major);
            w.byte(s.firmware.minor);
            w.byte(s.firmware.patch);
            w.varint(u64::from(s.heartbeat_interval_s));
            w.varint(u64::from(s.outbox_depth));
            w.varint(u64::from(s.events_dropped));
        }
        UplinkBody::SensorChange { input, state } => {
            w.tag(3);
            w.byte(*input);
            match state {
                SensorState::DoorOpen => w.tag(0),
                SensorState::DoorClosed => w.tag(1),
                SensorState::BedOccupied => w.tag(2),
                SensorState::BedEmpty => w.tag(3),
                SensorState::ChairOccupied => w.tag(4),
                SensorState::ChairEmpty => w.tag(5),
                SensorState::Motion => w.tag(6),
                SensorState::Temperature { centi_celsius } => {
                    w.tag(7);
                    w.zigzag(i64::from(*centi_celsius));
                }
            }
        }
        UplinkBody::Activity(a) => {
            w.tag(4);
            w.varint(u64::from(a.window_s));
            w.varint(a.motion_counts.len() as u64);
            for c in &a.motion_counts {
                w.varint(u64::from(*c));
            }
        }
        UplinkBody::CommandAck { command_id, result } => {
            w.tag(5);
            w.varint(u64::from(*command_id));
            match result {
                CommandResult::Applied => w.tag(0),
                CommandResult::Rejected => w.tag(1),
                CommandResult::Unsupported => w.tag(2),
                CommandResult::SelfTestPassed => w.tag(3),
                CommandResult::SelfTestFailed { fault_code } => {
                    w.tag(4);
                    w.varint(u64::from(*fault_code));
                }
            }
        }
    }
    w.0
}

fn spec_encode_downlink(m: &Downlink) -> Vec<u8> {
    let mut w = SpecWriter::default();
    w.byte(m.version);
    match &m.body {
        DownlinkBody::Receipt { boot, seqs } => {
            w.tag(0);
            w.varint(u64::from(*boot));
            w.varint(seqs.len() as u64);
            for s in seqs {
                w.varint(u64::from(*s));
            }
        }
        DownlinkBody::HelpOnTheWay { alert_ref } => {
            w.tag(1);
            w.varint(*alert_ref);
        }
        DownlinkBody::AlertResolved { alert_ref } => {
            w.tag(2);
            w.varint(*alert_ref);
        }
        DownlinkBody::Configure { command_id, config: c } => {
            w.tag(3);
            w.varint(u64::from(*command_id));
            w.varint(u64::from(c.heartbeat_interval_s));
            w.varint(u64::from(c.cancel_grace_s));
            w.zigzag(i64::from(c.temperature_high_centi));
            w.zigzag(i64::from(c.temperature_low_centi));
            w.byte(c.low_battery_percent);
            w.varint(u64::from(c.fall_free_fall_mg));
            w.varint(u64::from(c.fall_impact_mg));
        }
        DownlinkBody::SelfTest { command_id } => {
            w.tag(4);
            w.varint(u64::from(*command_id));
        }
        DownlinkBody::TimeSync { unix_ms } => {
            w.tag(5);
            w.varint(*unix_ms);
        }
        DownlinkBody::BootFloor { min_boot } => {
            w.tag(6);
            w.varint(u64::from(*min_boot));
        }
    }
    w.0
}

fn spec_encode_status(m: &StatusMessage) -> Vec<u8> {
    let mut w = SpecWriter::default();
    w.byte(m.version);
    match m.presence {
        Presence::Online { boot } => {
            w.tag(0);
            w.varint(u64::from(boot));
        }
        Presence::Offline => w.tag(1),
    }
    w.0
}

// ---------------------------------------------------------------------------------------------
// (a) Round trips, limits and agreement with SPEC.md's rules
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn uplinks_round_trip_within_the_limit(message in uplink()) {
        // Encoding into a MAX_UPLINK_LEN buffer succeeding is the limit check.
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let bytes = encode_uplink(&message, &mut buf).unwrap();
        let by_spec = spec_encode_uplink(&message);
        prop_assert_eq!(bytes, by_spec.as_slice());
        prop_assert_eq!(decode_uplink(bytes), Ok(message.clone()));
        let (version, header, _body) = peek_uplink_header(bytes).unwrap();
        prop_assert_eq!((version, header), (message.version, message.header));
    }

    #[test]
    fn downlinks_round_trip_within_the_limit(message in downlink()) {
        let mut buf = [0u8; MAX_DOWNLINK_LEN];
        let bytes = encode_downlink(&message, &mut buf).unwrap();
        let by_spec = spec_encode_downlink(&message);
        prop_assert_eq!(bytes, by_spec.as_slice());
        prop_assert_eq!(decode_downlink(bytes), Ok(message));
    }

    #[test]
    fn status_messages_round_trip_within_the_limit(message in status_message()) {
        let mut buf = [0u8; MAX_STATUS_LEN];
        let bytes = encode_status(&message, &mut buf).unwrap();
        let by_spec = spec_encode_status(&message);
        prop_assert_eq!(bytes, by_spec.as_slice());
        prop_assert_eq!(decode_status(bytes), Ok(message));
    }
}

/// The strategies above reach every variant of every enum (checked on the wire tags, so this
/// does not depend on the strategies' own code).
#[test]
fn strategies_cover_every_variant() {
    fn tag(bytes: &[u8]) -> (u32, &[u8]) {
        postcard::take_from_bytes::<u32>(bytes).unwrap()
    }
    let mut runner = TestRunner::deterministic();
    let mut seen: [BTreeSet<u32>; 6] = Default::default();
    for _ in 0..2_000 {
        let up = uplink().new_tree(&mut runner).unwrap().current();
        let bytes = encode_up(&up);
        let (_, _, body) = peek_uplink_header(&bytes).unwrap();
        let (body_tag, rest) = tag(body);
        seen[0].insert(body_tag);
        match body_tag {
            0 => {
                seen[1].insert(tag(rest).0);
            }
            3 => {
                seen[2].insert(tag(&rest[1..]).0);
            }
            5 => {
                seen[3].insert(tag(tag(rest).1).0);
            }
            _ => {}
        }
        let down = downlink().new_tree(&mut runner).unwrap().current();
        seen[4].insert(tag(&encode_down(&down)[1..]).0);
        let status = status_message().new_tree(&mut runner).unwrap().current();
        seen[5].insert(tag(&encode_stat(&status)[1..]).0);
    }
    let known = [
        UPLINK_BODY_VARIANTS,
        ALARM_KIND_VARIANTS,
        SENSOR_STATE_VARIANTS,
        COMMAND_RESULT_VARIANTS,
        DOWNLINK_BODY_VARIANTS,
        PRESENCE_VARIANTS,
    ];
    for (seen, known) in seen.iter().zip(known) {
        assert_eq!(seen, &(0..known).collect::<BTreeSet<_>>());
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Arbitrary bytes never panic, and the decoders agree about the header
// ---------------------------------------------------------------------------------------------

/// What the uplink decoders must agree on, whatever the input.
fn check_uplink_decoders_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = decode_uplink(bytes);
    let peeked = peek_uplink_header(bytes);
    match (&decoded, &peeked) {
        (Ok(m), Ok((version, header, _))) => {
            prop_assert_eq!((m.version, m.header), (*version, *header));
            // A decoded message re-encodes (canonically, so never longer) and decodes the same.
            let again = encode_up(m);
            prop_assert!(again.len() <= bytes.len());
            prop_assert_eq!(decode_uplink(&again), Ok(m.clone()));
        }
        (Err(DecodeError::UnknownVariant { .. } | DecodeError::MalformedBody), Ok(_)) => {}
        (
            Err(
                e @ (DecodeError::Empty
                | DecodeError::TooLarge { .. }
                | DecodeError::ReservedVersion
                | DecodeError::MalformedHeader),
            ),
            Err(p),
        ) => prop_assert_eq!(e, p),
        _ => prop_assert!(false, "decode {:?} disagrees with peek {:?}", decoded, peeked),
    }
    Ok(())
}

fn check_downlink_decoder(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = decode_downlink(bytes) {
        let again = encode_down(&m);
        prop_assert!(again.len() <= bytes.len());
        prop_assert_eq!(decode_downlink(&again), Ok(m));
    }
    Ok(())
}

fn check_status_decoder(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = decode_status(bytes) {
        let again = encode_stat(&m);
        prop_assert!(again.len() <= bytes.len());
        prop_assert_eq!(decode_status(&again), Ok(m));
    }
    Ok(())
}

fn check_all_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_uplink_decoders_agree(bytes)?;
    check_downlink_decoder(bytes)?;
    check_status_decoder(bytes)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..=300)) {
        check_all_decoders(&bytes)?;
    }

    /// Random bytes after a valid revision byte and small tags get further into the decoders.
    #[test]
    fn plausible_bytes_never_panic(
        version in 1u8..=3,
        tags in vec(0u8..24, 0..=6),
        rest in vec(any::<u8>(), 0..=80),
    ) {
        let mut bytes = vec![version];
        bytes.extend(tags);
        bytes.extend(rest);
        check_all_decoders(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Mutated valid encodings never panic
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Insert(_, b) = mutation {
            bytes.push(*b);
        }
        return;
    }
    match mutation {
        Mutation::FlipBit(i, bit) => {
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Mutation::Insert(i, b) => {
            let at = i.index(bytes.len() + 1);
            bytes.insert(at, *b);
        }
        Mutation::Delete(i) => {
            let at = i.index(bytes.len());
            bytes.remove(at);
        }
        Mutation::Truncate(i) => {
            let at = i.index(bytes.len());
            bytes.truncate(at);
        }
    }
}

fn any_valid_encoding() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => uplink().prop_map(|m| encode_up(&m)).boxed(),
        2 => downlink().prop_map(|m| encode_down(&m)).boxed(),
        1 => status_message().prop_map(|m| encode_stat(&m)).boxed(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_encodings_never_panic(
        original in any_valid_encoding(),
        mutations in vec(mutation(), 1..=4),
    ) {
        let mut bytes = original;
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_all_decoders(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// (d) Topics and (e) device ids
// ---------------------------------------------------------------------------------------------

/// SPEC.md's device id rule, written independently of `DeviceId::new`.
fn is_valid_device_id(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=32).contains(&b.len())
        && b.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        && matches!(b.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
}

const VALID_ID: &str = "[a-z0-9][a-z0-9_-]{2,31}";
/// Near misses: the right alphabet plus the characters most likely to sneak in.
const NEARLY_ID: &str = "[a-zA-Z0-9_/+#. \\-\u{e9}\u{0}]{0,40}";

fn topic_kind() -> impl Strategy<Value = TopicKind> {
    select(vec![TopicKind::Up, TopicKind::Down, TopicKind::Status])
}

fn kind_text() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["up", "down", "status", "", "Up", "up/", "up/x", "stat", "#", "+"]).prop_map(String::from),
        "\\PC{0,10}",
    ]
}

fn check_topic_parse(text: &str) -> Result<(), TestCaseError> {
    if let Ok(topic) = Topic::parse(text) {
        // One topic, one spelling: a parsed topic prints back to exactly its input.
        prop_assert_eq!(topic.to_string(), text);
        let short = topic.to_heapless();
        prop_assert_eq!(short.as_str(), text);
        prop_assert!(text.len() <= MAX_TOPIC_LEN);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn topic_parse_never_panics_on_any_string(text in any::<String>()) {
        check_topic_parse(&text)?;
    }

    #[test]
    fn topic_parse_accepts_exactly_prefix_valid_id_and_kind(
        id in prop_oneof![VALID_ID, NEARLY_ID, "\\PC{0,40}"],
        kind in kind_text(),
        prefix in prop_oneof![8 => Just(TOPIC_PREFIX.to_owned()), 1 => "[a-z/0-9]{0,12}"],
    ) {
        let text = format!("{prefix}{id}/{kind}");
        check_topic_parse(&text)?;
        let expected = prefix == TOPIC_PREFIX
            && is_valid_device_id(&id)
            && ["up", "down", "status"].contains(&kind.as_str());
        prop_assert_eq!(Topic::parse(&text).is_ok(), expected, "{}", text);
    }

    #[test]
    fn topics_build_and_parse_back_for_every_valid_id(id in VALID_ID, kind in topic_kind()) {
        let device_id = DeviceId::new(&id).unwrap();
        let topic = Topic::new(device_id, kind);
        let text = topic.to_heapless();
        prop_assert_eq!(text.as_str(), format!("{TOPIC_PREFIX}{id}/{}", kind.suffix()));
        prop_assert!(text.len() <= MAX_TOPIC_LEN);
        prop_assert_eq!(Topic::parse(&text), Ok(topic));
    }

    #[test]
    fn device_id_new_never_panics_and_follows_the_rule(text in prop_oneof![any::<String>(), NEARLY_ID, VALID_ID]) {
        match DeviceId::new(&text) {
            Ok(id) => {
                prop_assert!(is_valid_device_id(&text), "accepted {:?}", text);
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert_eq!(id.to_string(), text);
            }
            Err(_) => prop_assert!(!is_valid_device_id(&text), "rejected {:?}", text),
        }
    }
}
