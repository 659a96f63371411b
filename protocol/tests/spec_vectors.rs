//! Checks `protocol/SPEC.md` against the code, both ways.
//!
//! SPEC.md carries machine-readable blocks:
//!
//! * ```` ```golden ```` blocks: `<kind> <name> <hex bytes>` lines, each followed by a `= <value>`
//!   line. Every vector must decode to the value this file expects for its name, re-encode to the
//!   same bytes, and its `=` line must be the description this file derives from that value.
//! * ```` ```golden-decode ```` blocks: the same layout, for inputs that only decode (newer
//!   revisions, unknown variants, errors); the `=` line describes the decode result.
//! * a ```` ```tags ```` block: `<Enum> <tag> <Variant>`, the wire tag of every enum variant.
//! * a ```` ```limits ```` block: `<CONSTANT> <value>`.
//!
//! A vector without an expectation here, an expectation without a vector, a variant no vector
//! covers, or a tag or limit that differs from the code all fail the tests.
//!
//! `cargo test -p tec-protocol --test spec_vectors -- --ignored --nocapture` prints the blocks
//! as the code sees them, for editing SPEC.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use protocol::{
    ALARM_KIND_VARIANTS, ActivitySummary, AlarmKind, COMMAND_RESULT_VARIANTS, CommandResult, DEVICE_TIME_MAX_MS,
    DEVICE_TIME_MIN_MS, DOWNLINK_BODY_VARIANTS, DecodeError, DeviceConfig, DeviceStatus, Downlink, DownlinkBody,
    EncodeError, FirmwareVersion, MAX_ACTIVITY_WINDOWS, MAX_DEVICE_ID_LEN, MAX_DOWNLINK_LEN, MAX_RECEIPT_SEQS,
    MAX_STATUS_LEN, MAX_TOPIC_LEN, MAX_UPLINK_LEN, MIN_DEVICE_ID_LEN, PRESENCE_VARIANTS, PROTOCOL_VERSION, Presence,
    SENSOR_STATE_VARIANTS, SensorState, StatusMessage, UPLINK_ALARM_CANCELLED_TAG, UPLINK_ALARM_TAG,
    UPLINK_BODY_VARIANTS, Uplink, UplinkBody, UplinkHeader, decode_downlink, decode_status, decode_uplink,
    encode_downlink, encode_status, encode_uplink, peek_uplink_header,
};

// ---------------------------------------------------------------------------------------------
// Messages and their descriptions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Up(Uplink),
    Down(Downlink),
    Status(StatusMessage),
}

impl Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Up(_) => "uplink",
            Msg::Down(_) => "downlink",
            Msg::Status(_) => "status",
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let bytes = match self {
            Msg::Up(m) => encode_uplink(m, &mut buf),
            Msg::Down(m) => encode_downlink(m, &mut buf),
            Msg::Status(m) => encode_status(m, &mut buf),
        };
        bytes.unwrap_or_else(|e| panic!("cannot encode {self:?}: {e}")).to_vec()
    }

    /// Decodes `bytes` as a message of the same kind as `self`.
    fn decode_same_kind(&self, bytes: &[u8]) -> Result<Msg, DecodeError> {
        decode_kind(self.kind(), bytes)
    }

    fn with_version(&self, version: u8) -> Msg {
        let mut out = self.clone();
        match &mut out {
            Msg::Up(m) => m.version = version,
            Msg::Down(m) => m.version = version,
            Msg::Status(m) => m.version = version,
        }
        out
    }

    fn limit(&self) -> usize {
        match self {
            Msg::Up(_) => MAX_UPLINK_LEN,
            Msg::Down(_) => MAX_DOWNLINK_LEN,
            Msg::Status(_) => MAX_STATUS_LEN,
        }
    }
}

fn decode_kind(kind: &str, bytes: &[u8]) -> Result<Msg, DecodeError> {
    match kind {
        "uplink" => decode_uplink(bytes).map(Msg::Up),
        "downlink" => decode_downlink(bytes).map(Msg::Down),
        "status" => decode_status(bytes).map(Msg::Status),
        other => panic!("unknown message kind {other}"),
    }
}

fn describe_header(version: u8, h: &UplinkHeader) -> String {
    format!(
        "rev {version}, boot {}, seq {}, time {:?}",
        h.boot, h.seq, h.device_time_ms
    )
}

/// The text of a vector's `=` line.
fn describe(msg: &Msg) -> String {
    match msg {
        Msg::Up(m) => format!("{}, {:?}", describe_header(m.version, &m.header), m.body),
        Msg::Down(m) => format!("rev {}, {:?}", m.version, m.body),
        Msg::Status(m) => format!("rev {}, {:?}", m.version, m.presence),
    }
}

// ---------------------------------------------------------------------------------------------
// Expected values of the golden vectors
// ---------------------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z in Unix milliseconds.
const NEW_YEAR_2026_MS: u64 = 1_767_225_600_000;

fn header(boot: u32, seq: u32, device_time_ms: Option<u64>) -> UplinkHeader {
    UplinkHeader {
        boot,
        seq,
        device_time_ms,
    }
}

fn up(boot: u32, seq: u32, body: UplinkBody) -> Msg {
    Msg::Up(Uplink::new(header(boot, seq, None), body))
}

fn up_timed(boot: u32, seq: u32, time: u64, body: UplinkBody) -> Msg {
    Msg::Up(Uplink::new(header(boot, seq, Some(time)), body))
}

fn down(body: DownlinkBody) -> Msg {
    Msg::Down(Downlink::new(body))
}

fn status_msg(presence: Presence) -> Msg {
    Msg::Status(StatusMessage::new(presence))
}

fn seqs(items: &[u32]) -> heapless::Vec<u32, MAX_RECEIPT_SEQS> {
    heapless::Vec::from_slice(items).unwrap()
}

fn counts(items: &[u16]) -> heapless::Vec<u16, MAX_ACTIVITY_WINDOWS> {
    heapless::Vec::from_slice(items).unwrap()
}

fn alarm(kind: AlarmKind) -> UplinkBody {
    UplinkBody::Alarm(kind)
}

fn sensor(state: SensorState) -> UplinkBody {
    UplinkBody::SensorChange { input: 2, state }
}

fn ack(command_id: u32, result: CommandResult) -> UplinkBody {
    UplinkBody::CommandAck { command_id, result }
}

/// Every round-trip golden vector SPEC.md must carry, by name.
fn golden_expectations() -> Vec<(&'static str, Msg)> {
    use AlarmKind as A;
    use CommandResult as C;
    use SensorState as S;
    let heartbeat = DeviceStatus {
        battery_mv: 3_700,
        battery_percent: 85,
        rssi_dbm: -71,
        uptime_s: 86_400,
        firmware: FirmwareVersion {
            major: 1,
            minor: 4,
            patch: 2,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    };
    let busy_heartbeat = DeviceStatus {
        battery_mv: 3_350,
        battery_percent: 12,
        rssi_dbm: 0,
        uptime_s: 0,
        firmware: FirmwareVersion {
            major: 2,
            minor: 0,
            patch: 0,
        },
        heartbeat_interval_s: 60,
        outbox_depth: 200,
        events_dropped: 70_000,
    };
    let cold_config = DeviceConfig {
        heartbeat_interval_s: 900,
        cancel_grace_s: 60,
        temperature_high_centi: 3_000,
        temperature_low_centi: -500,
        low_battery_percent: 25,
        fall_free_fall_mg: 400,
        fall_impact_mg: 3_000,
    };
    vec![
        // Every alarm kind.
        ("alarm-pendant-press", up(3, 7, alarm(A::PendantPress))),
        ("alarm-fall", up(3, 8, alarm(A::Fall))),
        ("alarm-smoke", up(3, 9, alarm(A::Smoke))),
        ("alarm-heat", up(3, 10, alarm(A::Heat))),
        ("alarm-carbon-monoxide", up(3, 11, alarm(A::CarbonMonoxide))),
        ("alarm-flood", up(3, 12, alarm(A::Flood))),
        (
            "alarm-temperature-extreme-cold",
            up(3, 13, alarm(A::TemperatureExtreme { centi_celsius: -550 })),
        ),
        (
            "alarm-temperature-extreme-hot",
            up(3, 14, alarm(A::TemperatureExtreme { centi_celsius: 4_150 })),
        ),
        ("alarm-bed-not-returned", up(3, 15, alarm(A::BedNotReturned))),
        ("alarm-chair-not-returned", up(3, 16, alarm(A::ChairNotReturned))),
        ("alarm-door-opened-at-night", up(3, 17, alarm(A::DoorOpenedAtNight))),
        ("alarm-leaving-home", up(3, 18, alarm(A::LeavingHome))),
        ("alarm-inactivity", up(3, 19, alarm(A::Inactivity))),
        ("alarm-seizure", up(3, 20, alarm(A::Seizure))),
        ("alarm-medication-missed", up(3, 21, alarm(A::MedicationMissed))),
        ("alarm-tamper", up(3, 22, alarm(A::Tamper))),
        ("alarm-mains-power-lost", up(3, 23, alarm(A::MainsPowerLost))),
        ("alarm-mains-power-restored", up(3, 24, alarm(A::MainsPowerRestored))),
        (
            "alarm-low-battery",
            up_timed(
                3,
                25,
                NEW_YEAR_2026_MS,
                alarm(A::LowBattery {
                    millivolts: 3_420,
                    percent: 15,
                }),
            ),
        ),
        (
            "alarm-pendant-press-timed",
            up_timed(12, 0, NEW_YEAR_2026_MS + 1_234, alarm(A::PendantPress)),
        ),
        (
            "alarm-pendant-press-max-header",
            Msg::Up(Uplink::new(
                header(u32::MAX, u32::MAX, Some(u64::MAX)),
                alarm(A::PendantPress),
            )),
        ),
        // The other uplink bodies.
        (
            "alarm-cancelled",
            up(3, 26, UplinkBody::AlarmCancelled { alarm_seq: 7 }),
        ),
        (
            "heartbeat",
            up_timed(300, 1_000, NEW_YEAR_2026_MS, UplinkBody::Heartbeat(heartbeat)),
        ),
        ("heartbeat-backlog", up(4, 128, UplinkBody::Heartbeat(busy_heartbeat))),
        // Every sensor state.
        ("sensor-door-open", up(3, 30, sensor(S::DoorOpen))),
        ("sensor-door-closed", up(3, 31, sensor(S::DoorClosed))),
        ("sensor-bed-occupied", up(3, 32, sensor(S::BedOccupied))),
        ("sensor-bed-empty", up(3, 33, sensor(S::BedEmpty))),
        ("sensor-chair-occupied", up(3, 34, sensor(S::ChairOccupied))),
        ("sensor-chair-empty", up(3, 35, sensor(S::ChairEmpty))),
        ("sensor-motion", up(3, 36, sensor(S::Motion))),
        (
            "sensor-temperature",
            up(3, 37, sensor(S::Temperature { centi_celsius: 1_850 })),
        ),
        (
            "sensor-temperature-below-zero",
            up(3, 38, sensor(S::Temperature { centi_celsius: -1 })),
        ),
        (
            "sensor-temperature-i16-min",
            up(
                3,
                39,
                sensor(S::Temperature {
                    centi_celsius: i16::MIN,
                }),
            ),
        ),
        (
            "activity",
            up_timed(
                3,
                40,
                NEW_YEAR_2026_MS,
                UplinkBody::Activity(ActivitySummary {
                    window_s: 900,
                    motion_counts: counts(&[0, 3, 12, 200, 1, 0]),
                }),
            ),
        ),
        (
            "activity-empty",
            up(
                3,
                41,
                UplinkBody::Activity(ActivitySummary {
                    window_s: 3_600,
                    motion_counts: counts(&[]),
                }),
            ),
        ),
        // Every command result.
        ("command-ack-applied", up(3, 50, ack(17, C::Applied))),
        ("command-ack-rejected", up(3, 51, ack(17, C::Rejected))),
        ("command-ack-unsupported", up(3, 52, ack(17, C::Unsupported))),
        ("command-ack-self-test-passed", up(3, 53, ack(18, C::SelfTestPassed))),
        (
            "command-ack-self-test-failed",
            up(3, 54, ack(300, C::SelfTestFailed { fault_code: 513 })),
        ),
        // Every downlink body.
        (
            "receipt-one",
            down(DownlinkBody::Receipt {
                boot: 3,
                seqs: seqs(&[7]),
            }),
        ),
        (
            "receipt-out-of-order",
            down(DownlinkBody::Receipt {
                boot: 3,
                seqs: seqs(&[26, 7, 25, 128, 100_000]),
            }),
        ),
        ("help-on-the-way", down(DownlinkBody::HelpOnTheWay { alert_ref: 42 })),
        (
            "help-on-the-way-large-ref",
            down(DownlinkBody::HelpOnTheWay { alert_ref: 1 << 40 }),
        ),
        ("alert-resolved", down(DownlinkBody::AlertResolved { alert_ref: 42 })),
        (
            "configure-default",
            down(DownlinkBody::Configure {
                command_id: 17,
                config: DeviceConfig::default(),
            }),
        ),
        (
            "configure-cold-band",
            down(DownlinkBody::Configure {
                command_id: 19,
                config: cold_config,
            }),
        ),
        ("self-test", down(DownlinkBody::SelfTest { command_id: 18 })),
        (
            "time-sync",
            down(DownlinkBody::TimeSync {
                unix_ms: NEW_YEAR_2026_MS,
            }),
        ),
        ("boot-floor", down(DownlinkBody::BootFloor { min_boot: 42 })),
        ("boot-floor-max", down(DownlinkBody::BootFloor { min_boot: u32::MAX })),
        // Every presence.
        ("presence-online", status_msg(Presence::Online { boot: 3 })),
        ("presence-online-boot-300", status_msg(Presence::Online { boot: 300 })),
        ("presence-offline", status_msg(Presence::Offline)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Expected results of the decode-only vectors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Up {
        decoded: Result<Uplink, DecodeError>,
        header: Result<(u8, UplinkHeader), DecodeError>,
    },
    Down(Result<Downlink, DecodeError>),
    Status(Result<StatusMessage, DecodeError>),
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Up { .. } => "uplink",
            Outcome::Down(_) => "downlink",
            Outcome::Status(_) => "status",
        }
    }

    fn of(kind: &str, bytes: &[u8]) -> Outcome {
        match kind {
            "uplink" => Outcome::Up {
                decoded: decode_uplink(bytes),
                header: peek_uplink_header(bytes).map(|(version, header, _body)| (version, header)),
            },
            "downlink" => Outcome::Down(decode_downlink(bytes)),
            "status" => Outcome::Status(decode_status(bytes)),
            other => panic!("unknown message kind {other}"),
        }
    }

    fn describe(&self) -> String {
        fn result<T>(r: &Result<T, DecodeError>, ok: impl Fn(&T) -> String) -> String {
            match r {
                Ok(value) => ok(value),
                Err(e) => format!("Err({e:?})"),
            }
        }
        match self {
            Outcome::Up { decoded, header } => format!(
                "{}; header: {}",
                result(decoded, |m| describe(&Msg::Up(m.clone()))),
                result(header, |(v, h)| describe_header(*v, h))
            ),
            Outcome::Down(r) => result(r, |m| describe(&Msg::Down(m.clone()))),
            Outcome::Status(r) => result(r, |m| describe(&Msg::Status(*m))),
        }
    }
}

fn pendant(version: u8) -> Uplink {
    Uplink {
        version,
        header: header(3, 7, None),
        body: UplinkBody::Alarm(AlarmKind::PendantPress),
    }
}

/// Every decode-only vector SPEC.md must carry, by name.
fn decode_expectations() -> Vec<(&'static str, Outcome)> {
    use DecodeError as E;
    let h = Ok((1, header(3, 7, None)));
    let unknown = |body_tag| Outcome::Up {
        decoded: Err(E::UnknownVariant { body_tag }),
        header: h,
    };
    vec![
        (
            "uplink-revision-2-with-new-field",
            Outcome::Up {
                decoded: Ok(pendant(2)),
                header: Ok((2, header(3, 7, None))),
            },
        ),
        ("uplink-unknown-body", unknown(6)),
        ("uplink-unknown-body-large-tag", unknown(300)),
        ("uplink-unknown-alarm-kind", unknown(UPLINK_ALARM_TAG)),
        ("uplink-unknown-sensor-state", unknown(3)),
        ("uplink-unknown-command-result", unknown(5)),
        (
            "uplink-reserved-revision-0",
            Outcome::Up {
                decoded: Err(E::ReservedVersion),
                header: Err(E::ReservedVersion),
            },
        ),
        (
            "uplink-truncated-header",
            Outcome::Up {
                decoded: Err(E::MalformedHeader),
                header: Err(E::MalformedHeader),
            },
        ),
        (
            "uplink-bad-option-tag",
            Outcome::Up {
                decoded: Err(E::MalformedHeader),
                header: Err(E::MalformedHeader),
            },
        ),
        (
            "uplink-boot-varint-overflows-u32",
            Outcome::Up {
                decoded: Err(E::MalformedHeader),
                header: Err(E::MalformedHeader),
            },
        ),
        (
            "uplink-seq-varint-too-long",
            Outcome::Up {
                decoded: Err(E::MalformedHeader),
                header: Err(E::MalformedHeader),
            },
        ),
        (
            "uplink-time-varint-overflows-u64",
            Outcome::Up {
                decoded: Err(E::MalformedHeader),
                header: Err(E::MalformedHeader),
            },
        ),
        (
            "uplink-millivolts-overflows-u16",
            Outcome::Up {
                decoded: Err(E::MalformedBody),
                header: Ok((1, header(3, 25, None))),
            },
        ),
        (
            "uplink-truncated-body",
            Outcome::Up {
                decoded: Err(E::MalformedBody),
                header: h,
            },
        ),
        (
            "uplink-empty-body",
            Outcome::Up {
                decoded: Err(E::MalformedBody),
                header: h,
            },
        ),
        (
            "uplink-body-tag-cut",
            Outcome::Up {
                decoded: Err(E::MalformedBody),
                header: h,
            },
        ),
        (
            "uplink-centi-celsius-overflows-i16",
            Outcome::Up {
                decoded: Err(E::MalformedBody),
                header: Ok((1, header(3, 13, None))),
            },
        ),
        (
            "uplink-pendant-press-overlong-seq",
            Outcome::Up {
                decoded: Ok(pendant(1)),
                header: h,
            },
        ),
        (
            "downlink-revision-2-with-new-field",
            Outcome::Down(Ok(Downlink {
                version: 2,
                body: DownlinkBody::SelfTest { command_id: 18 },
            })),
        ),
        (
            "downlink-unknown-body",
            Outcome::Down(Err(E::UnknownVariant { body_tag: 7 })),
        ),
        ("receipt-too-many-seqs", Outcome::Down(Err(E::MalformedBody))),
        (
            "status-unknown-presence",
            Outcome::Status(Err(E::UnknownVariant { body_tag: 2 })),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Variant tags, by exhaustive match: adding a variant breaks the build here until it is covered.
// ---------------------------------------------------------------------------------------------

fn uplink_tag(body: &UplinkBody) -> (u32, &'static str) {
    match body {
        UplinkBody::Alarm(_) => (0, "Alarm"),
        UplinkBody::AlarmCancelled { .. } => (1, "AlarmCancelled"),
        UplinkBody::Heartbeat(_) => (2, "Heartbeat"),
        UplinkBody::SensorChange { .. } => (3, "SensorChange"),
        UplinkBody::Activity(_) => (4, "Activity"),
        UplinkBody::CommandAck { .. } => (5, "CommandAck"),
    }
}

fn alarm_tag(kind: &AlarmKind) -> (u32, &'static str) {
    match kind {
        AlarmKind::PendantPress => (0, "PendantPress"),
        AlarmKind::Fall => (1, "Fall"),
        AlarmKind::Smoke => (2, "Smoke"),
        AlarmKind::Heat => (3, "Heat"),
        AlarmKind::CarbonMonoxide => (4, "CarbonMonoxide"),
        AlarmKind::Flood => (5, "Flood"),
        AlarmKind::TemperatureExtreme { .. } => (6, "TemperatureExtreme"),
        AlarmKind::BedNotReturned => (7, "BedNotReturned"),
        AlarmKind::ChairNotReturned => (8, "ChairNotReturned"),
        AlarmKind::DoorOpenedAtNight => (9, "DoorOpenedAtNight"),
        AlarmKind::LeavingHome => (10, "LeavingHome"),
        AlarmKind::Inactivity => (11, "Inactivity"),
        AlarmKind::Seizure => (12, "Seizure"),
        AlarmKind::MedicationMissed => (13, "MedicationMissed"),
        AlarmKind::Tamper => (14, "Tamper"),
        AlarmKind::MainsPowerLost => (15, "MainsPowerLost"),
        AlarmKind::MainsPowerRestored => (16, "MainsPowerRestored"),
        AlarmKind::LowBattery { .. } => (17, "LowBattery"),
    }
}

fn sensor_tag(state: &SensorState) -> (u32, &'static str) {
    match state {
        SensorState::DoorOpen => (0, "DoorOpen"),
        SensorState::DoorClosed => (1, "DoorClosed"),
        SensorState::BedOccupied => (2, "BedOccupied"),
        SensorState::BedEmpty => (3, "BedEmpty"),
        SensorState::ChairOccupied => (4, "ChairOccupied"),
        SensorState::ChairEmpty => (5, "ChairEmpty"),
        SensorState::Motion => (6, "Motion"),
        SensorState::Temperature { .. } => (7, "Temperature"),
    }
}

fn command_result_tag(result: &CommandResult) -> (u32, &'static str) {
    match result {
        CommandResult::Applied => (0, "Applied"),
        CommandResult::Rejected => (1, "Rejected"),
        CommandResult::Unsupported => (2, "Unsupported"),
        CommandResult::SelfTestPassed => (3, "SelfTestPassed"),
        CommandResult::SelfTestFailed { .. } => (4, "SelfTestFailed"),
    }
}

fn downlink_tag(body: &DownlinkBody) -> (u32, &'static str) {
    match body {
        DownlinkBody::Receipt { .. } => (0, "Receipt"),
        DownlinkBody::HelpOnTheWay { .. } => (1, "HelpOnTheWay"),
        DownlinkBody::AlertResolved { .. } => (2, "AlertResolved"),
        DownlinkBody::Configure { .. } => (3, "Configure"),
        DownlinkBody::SelfTest { .. } => (4, "SelfTest"),
        DownlinkBody::TimeSync { .. } => (5, "TimeSync"),
        DownlinkBody::BootFloor { .. } => (6, "BootFloor"),
    }
}

fn presence_tag(presence: &Presence) -> (u32, &'static str) {
    match presence {
        Presence::Online { .. } => (0, "Online"),
        Presence::Offline => (1, "Offline"),
    }
}

/// `(enum name, tag, variant name)` of every enum variant inside `msg`, outermost first.
fn tags_of(msg: &Msg) -> Vec<(&'static str, u32, &'static str)> {
    let mut out = Vec::new();
    let mut push = |enum_name, (tag, name): (u32, &'static str)| out.push((enum_name, tag, name));
    match msg {
        Msg::Up(m) => {
            push("UplinkBody", uplink_tag(&m.body));
            match &m.body {
                UplinkBody::Alarm(kind) => push("AlarmKind", alarm_tag(kind)),
                UplinkBody::SensorChange { state, .. } => push("SensorState", sensor_tag(state)),
                UplinkBody::CommandAck { result, .. } => push("CommandResult", command_result_tag(result)),
                UplinkBody::AlarmCancelled { .. } | UplinkBody::Heartbeat(_) | UplinkBody::Activity(_) => {}
            }
        }
        Msg::Down(m) => push("DownlinkBody", downlink_tag(&m.body)),
        Msg::Status(m) => push("Presence", presence_tag(&m.presence)),
    }
    out
}

/// The tags as they sit on the wire in `bytes` (an encoding of `msg`), outermost first.
fn wire_tags(msg: &Msg, bytes: &[u8]) -> Vec<u32> {
    fn varint(b: &[u8]) -> (u32, &[u8]) {
        postcard::take_from_bytes::<u32>(b).unwrap()
    }
    match msg {
        Msg::Up(m) => {
            let (_, _, body) = peek_uplink_header(bytes).unwrap();
            let (tag, rest) = varint(body);
            let mut out = vec![tag];
            match &m.body {
                UplinkBody::Alarm(_) => out.push(varint(rest).0),
                UplinkBody::SensorChange { .. } => out.push(varint(&rest[1..]).0),
                UplinkBody::CommandAck { .. } => out.push(varint(varint(rest).1).0),
                UplinkBody::AlarmCancelled { .. } | UplinkBody::Heartbeat(_) | UplinkBody::Activity(_) => {}
            }
            out
        }
        Msg::Down(_) | Msg::Status(_) => vec![varint(&bytes[1..]).0],
    }
}

const ENUM_VARIANTS: [(&str, u32); 6] = [
    ("UplinkBody", UPLINK_BODY_VARIANTS),
    ("AlarmKind", ALARM_KIND_VARIANTS),
    ("SensorState", SENSOR_STATE_VARIANTS),
    ("CommandResult", COMMAND_RESULT_VARIANTS),
    ("DownlinkBody", DOWNLINK_BODY_VARIANTS),
    ("Presence", PRESENCE_VARIANTS),
];

// ---------------------------------------------------------------------------------------------
// Reading SPEC.md
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Vector {
    line: usize,
    kind: String,
    name: String,
    bytes: Vec<u8>,
    value: Option<String>,
}

#[derive(Debug, Default)]
struct Spec {
    golden: Vec<Vector>,
    decode_only: Vec<Vector>,
    tags: Vec<(usize, String)>,
    limits: Vec<(usize, String)>,
}

fn spec_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn parse_hex(tokens: &[&str], line: usize) -> Vec<u8> {
    assert!(!tokens.is_empty(), "SPEC.md line {line}: vector has no bytes");
    tokens
        .iter()
        .map(|t| {
            assert!(
                t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit()),
                "SPEC.md line {line}: `{t}` is not one byte as two hex digits"
            );
            u8::from_str_radix(t, 16).unwrap()
        })
        .collect()
}

fn parse_spec(text: &str) -> Spec {
    #[derive(Clone, Copy, PartialEq)]
    enum Block {
        None,
        Other,
        Golden,
        DecodeOnly,
        Tags,
        Limits,
    }
    let mut spec = Spec::default();
    let mut block = Block::None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            block = match block {
                Block::None => match info.trim() {
                    "golden" => Block::Golden,
                    "golden-decode" => Block::DecodeOnly,
                    "tags" => Block::Tags,
                    "limits" => Block::Limits,
                    _ => Block::Other,
                },
                _ => Block::None,
            };
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match block {
            Block::None | Block::Other => {}
            Block::Tags => spec.tags.push((line, trimmed.to_owned())),
            Block::Limits => spec.limits.push((line, trimmed.to_owned())),
            Block::Golden | Block::DecodeOnly => {
                let list = if block == Block::Golden {
                    &mut spec.golden
                } else {
                    &mut spec.decode_only
                };
                if let Some(value) = trimmed.strip_prefix('=') {
                    let last = list
                        .last_mut()
                        .unwrap_or_else(|| panic!("SPEC.md line {line}: `=` line before any vector"));
                    assert!(
                        last.value.is_none() && last.line + 1 == line,
                        "SPEC.md line {line}: `=` line must directly follow its vector line"
                    );
                    last.value = Some(value.trim().to_owned());
                    continue;
                }
                let tokens: Vec<&str> = trimmed.split_whitespace().collect();
                assert!(
                    tokens.len() >= 3,
                    "SPEC.md line {line}: expected `<kind> <name> <hex bytes>`"
                );
                let kind = tokens[0];
                assert!(
                    ["uplink", "downlink", "status"].contains(&kind),
                    "SPEC.md line {line}: unknown kind `{kind}`"
                );
                list.push(Vector {
                    line,
                    kind: kind.to_owned(),
                    name: tokens[1].to_owned(),
                    bytes: parse_hex(&tokens[2..], line),
                    value: None,
                });
            }
        }
    }
    assert!(block == Block::None, "SPEC.md: unterminated fenced block");
    spec
}

fn spec() -> Spec {
    parse_spec(&spec_text())
}

fn hex_spaced(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Matches SPEC.md's vectors to `expected` by name: both sides must name the same set.
fn pair_up<'a, T>(vectors: &'a [Vector], expected: &'a [(&'static str, T)], what: &str) -> Vec<(&'a Vector, &'a T)> {
    let mut by_name: BTreeMap<&str, &T> = BTreeMap::new();
    for (name, value) in expected {
        assert!(
            by_name.insert(name, value).is_none(),
            "test lists {what} `{name}` twice"
        );
    }
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for v in vectors {
        if !seen.insert(v.name.as_str()) {
            problems.push(format!("SPEC.md line {}: {what} `{}` appears twice", v.line, v.name));
        }
        match by_name.get(v.name.as_str()) {
            Some(value) => pairs.push((v, *value)),
            None => problems.push(format!(
                "SPEC.md line {}: {what} `{}` has no expected value in tests/spec_vectors.rs",
                v.line, v.name
            )),
        }
    }
    for name in by_name.keys() {
        if !seen.contains(name) {
            problems.push(format!(
                "{what} `{name}` is expected by tests/spec_vectors.rs but missing from SPEC.md"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    pairs
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

#[test]
fn every_golden_vector_decodes_to_its_value_and_reencodes_byte_for_byte() {
    let spec = spec();
    let expected = golden_expectations();
    let mut problems = Vec::new();
    for (vector, value) in pair_up(&spec.golden, &expected, "golden vector") {
        let at = format!("SPEC.md line {} ({})", vector.line, vector.name);
        let encoded = value.encode();
        let should_be = format!("{} {} {}", value.kind(), vector.name, hex_spaced(&encoded));
        if vector.kind != value.kind() {
            problems.push(format!("{at}: kind `{}`, expected `{}`", vector.kind, value.kind()));
            continue;
        }
        match value.decode_same_kind(&vector.bytes) {
            Ok(decoded) if decoded == *value => {}
            other => problems.push(format!("{at}: decodes to {other:?}, expected {value:?}")),
        }
        if encoded != vector.bytes {
            problems.push(format!("{at}: the code encodes the value as\n    {should_be}"));
        }
        let description = describe(value);
        if vector.value.as_deref() != Some(description.as_str()) {
            problems.push(format!("{at}: its `=` line should read\n    = {description}"));
        }
        if encoded.len() > value.limit() {
            problems.push(format!(
                "{at}: {} bytes exceed the limit {}",
                encoded.len(),
                value.limit()
            ));
        }
        if let Msg::Up(m) = value {
            let peeked = peek_uplink_header(&vector.bytes).map(|(v, h, _)| (v, h));
            if peeked != Ok((m.version, m.header)) {
                problems.push(format!("{at}: peek_uplink_header gives {peeked:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_decode_only_vector_gives_its_outcome() {
    let spec = spec();
    let expected = decode_expectations();
    let mut problems = Vec::new();
    for (vector, outcome) in pair_up(&spec.decode_only, &expected, "decode-only vector") {
        let at = format!("SPEC.md line {} ({})", vector.line, vector.name);
        if vector.kind != outcome.kind() {
            problems.push(format!("{at}: kind `{}`, expected `{}`", vector.kind, outcome.kind()));
            continue;
        }
        let actual = Outcome::of(&vector.kind, &vector.bytes);
        if actual != *outcome {
            problems.push(format!("{at}: decodes to {actual:?}, expected {outcome:?}"));
        }
        let description = outcome.describe();
        if vector.value.as_deref() != Some(description.as_str()) {
            problems.push(format!("{at}: its `=` line should read\n    = {description}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn golden_vectors_cover_every_variant_of_every_enum() {
    let mut covered: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for (name, msg) in golden_expectations() {
        let encoded = msg.encode();
        let tags = tags_of(&msg);
        let on_wire = wire_tags(&msg, &encoded);
        let numbers: Vec<u32> = tags.iter().map(|(_, tag, _)| *tag).collect();
        assert_eq!(numbers, on_wire, "{name}: the tags in this test differ from the wire");
        for (enum_name, tag, _) in tags {
            covered.entry(enum_name).or_default().insert(tag);
        }
    }
    for (enum_name, variants) in ENUM_VARIANTS {
        let expected: BTreeSet<u32> = (0..variants).collect();
        assert_eq!(
            covered.get(enum_name),
            Some(&expected),
            "{enum_name}: golden vectors must cover tags 0..{variants}"
        );
    }
}

#[test]
fn tag_table_in_spec_matches_the_code() {
    let spec = spec();
    let mut from_code = BTreeSet::new();
    for (_, msg) in golden_expectations() {
        for (enum_name, tag, variant) in tags_of(&msg) {
            from_code.insert(format!("{enum_name} {tag} {variant}"));
        }
    }
    let mut from_spec = BTreeSet::new();
    for (line, text) in &spec.tags {
        let normalised = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(from_spec.insert(normalised), "SPEC.md line {line}: duplicate tag line");
    }
    let missing: Vec<_> = from_code.difference(&from_spec).collect();
    let extra: Vec<_> = from_spec.difference(&from_code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "tags block in SPEC.md: missing {missing:?}, not in the code {extra:?}"
    );
}

/// The longest encoding of every variant of revision 1: every number at its widest.
fn worst_case_messages() -> Vec<Msg> {
    let h = header(u32::MAX, u32::MAX, Some(u64::MAX));
    let status = DeviceStatus {
        battery_mv: u16::MAX,
        battery_percent: u8::MAX,
        rssi_dbm: i8::MIN,
        uptime_s: u32::MAX,
        firmware: FirmwareVersion {
            major: u8::MAX,
            minor: u8::MAX,
            patch: u8::MAX,
        },
        heartbeat_interval_s: u32::MAX,
        outbox_depth: u16::MAX,
        events_dropped: u32::MAX,
    };
    let config = DeviceConfig {
        heartbeat_interval_s: u32::MAX,
        cancel_grace_s: u16::MAX,
        temperature_high_centi: i16::MIN,
        temperature_low_centi: i16::MIN,
        low_battery_percent: u8::MAX,
        fall_free_fall_mg: u16::MAX,
        fall_impact_mg: u16::MAX,
    };
    let bodies = [
        UplinkBody::Alarm(AlarmKind::TemperatureExtreme {
            centi_celsius: i16::MIN,
        }),
        UplinkBody::Alarm(AlarmKind::LowBattery {
            millivolts: u16::MAX,
            percent: u8::MAX,
        }),
        UplinkBody::AlarmCancelled { alarm_seq: u32::MAX },
        UplinkBody::Heartbeat(status),
        UplinkBody::SensorChange {
            input: u8::MAX,
            state: SensorState::Temperature {
                centi_celsius: i16::MIN,
            },
        },
        UplinkBody::Activity(ActivitySummary {
            window_s: u16::MAX,
            motion_counts: counts(&[u16::MAX; MAX_ACTIVITY_WINDOWS]),
        }),
        UplinkBody::CommandAck {
            command_id: u32::MAX,
            result: CommandResult::SelfTestFailed { fault_code: u16::MAX },
        },
    ];
    let mut out: Vec<Msg> = bodies.into_iter().map(|b| Msg::Up(Uplink::new(h, b))).collect();
    out.extend(
        [
            DownlinkBody::Receipt {
                boot: u32::MAX,
                seqs: seqs(&[u32::MAX; MAX_RECEIPT_SEQS]),
            },
            DownlinkBody::HelpOnTheWay { alert_ref: u64::MAX },
            DownlinkBody::AlertResolved { alert_ref: u64::MAX },
            DownlinkBody::Configure {
                command_id: u32::MAX,
                config,
            },
            DownlinkBody::SelfTest { command_id: u32::MAX },
            DownlinkBody::TimeSync { unix_ms: u64::MAX },
            DownlinkBody::BootFloor { min_boot: u32::MAX },
        ]
        .map(down),
    );
    out.push(status_msg(Presence::Online { boot: u32::MAX }));
    out.push(status_msg(Presence::Offline));
    out
}

fn largest(messages: &[Msg], kind: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.kind() == kind)
        .map(|m| m.encode().len())
        .max()
        .unwrap()
}

#[test]
fn worst_case_messages_fit_their_limits() {
    let messages = worst_case_messages();
    for (enum_name, variants) in [
        ("UplinkBody", UPLINK_BODY_VARIANTS),
        ("DownlinkBody", DOWNLINK_BODY_VARIANTS),
    ] {
        let covered: BTreeSet<u32> = messages
            .iter()
            .flat_map(tags_of)
            .filter(|(e, _, _)| *e == enum_name)
            .map(|(_, tag, _)| tag)
            .collect();
        assert_eq!(covered, (0..variants).collect(), "{enum_name}");
    }
    for m in &messages {
        assert!(m.encode().len() <= m.limit(), "{m:?}");
        assert_eq!(m.decode_same_kind(&m.encode()), Ok(m.clone()));
    }
}

#[test]
fn limits_in_spec_match_the_code() {
    let code: BTreeMap<&str, usize> = [
        ("PROTOCOL_VERSION", usize::from(PROTOCOL_VERSION)),
        ("MAX_UPLINK_LEN", MAX_UPLINK_LEN),
        ("MAX_DOWNLINK_LEN", MAX_DOWNLINK_LEN),
        ("MAX_STATUS_LEN", MAX_STATUS_LEN),
        ("MAX_ACTIVITY_WINDOWS", MAX_ACTIVITY_WINDOWS),
        ("MAX_RECEIPT_SEQS", MAX_RECEIPT_SEQS),
        ("MIN_DEVICE_ID_LEN", MIN_DEVICE_ID_LEN),
        ("MAX_DEVICE_ID_LEN", MAX_DEVICE_ID_LEN),
        ("MAX_TOPIC_LEN", MAX_TOPIC_LEN),
        ("LARGEST_UPLINK_REV1", largest(&worst_case_messages(), "uplink")),
        ("LARGEST_DOWNLINK_REV1", largest(&worst_case_messages(), "downlink")),
        ("LARGEST_STATUS_REV1", largest(&worst_case_messages(), "status")),
        ("DEVICE_TIME_MIN_MS", usize::try_from(DEVICE_TIME_MIN_MS).unwrap()),
        ("DEVICE_TIME_MAX_MS", usize::try_from(DEVICE_TIME_MAX_MS).unwrap()),
    ]
    .into_iter()
    .collect();
    let mut seen = BTreeMap::new();
    for (line, text) in spec().limits {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(tokens.len(), 2, "SPEC.md line {line}: expected `<NAME> <value>`");
        let value: usize = tokens[1].parse().unwrap_or_else(|e| panic!("SPEC.md line {line}: {e}"));
        seen.insert(tokens[0].to_owned(), value);
    }
    let code: BTreeMap<String, usize> = code.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(seen, code, "limits block in SPEC.md");
}

#[test]
fn spec_parser_rejects_what_it_should() {
    let bad = [
        "```golden\nuplink x 01 3\n```\n",
        "```golden\nuplink x 01 zz\n```\n",
        "```golden\nsideways x 01\n```\n",
        "```golden\nuplink x\n```\n",
        "```golden\n= orphan\n```\n",
        "```golden\nuplink x 01\n\n= detached\n```\n",
        "```golden\nuplink x 01\n",
    ];
    for text in bad {
        assert!(
            std::panic::catch_unwind(|| parse_spec(text)).is_err(),
            "accepted:\n{text}"
        );
    }
    let ok = parse_spec("```rust\nuplink not-a-vector 01\n```\n```golden\n# note\nstatus x 01 01\n= rev 1\n```\n");
    assert_eq!(ok.golden.len(), 1);
    assert_eq!(ok.golden[0].bytes, vec![1, 1]);
}

// ---------------------------------------------------------------------------------------------
// Forward compatibility
// ---------------------------------------------------------------------------------------------

/// Tags beyond what this revision knows, including multi-byte varints.
fn unknown_tags(known: u32) -> Vec<u32> {
    let mut tags: Vec<u32> = (known..known + 10).collect();
    tags.extend([127, 128, 300, 16_384, u32::MAX]);
    tags.retain(|t| *t >= known);
    tags
}

fn varint(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

#[test]
fn unknown_uplink_body_is_reported_and_its_header_still_decodes() {
    // rev 1, boot 300, seq 5, time Some(1)
    let head = [0x01, 0xac, 0x02, 0x05, 0x01, 0x01];
    for tag in unknown_tags(UPLINK_BODY_VARIANTS) {
        for extra in [&[][..], &[0x00], &[0x07, 0xff, 0xff, 0xff]] {
            let mut bytes = head.to_vec();
            bytes.extend(varint(tag));
            bytes.extend_from_slice(extra);
            assert_eq!(
                decode_uplink(&bytes),
                Err(DecodeError::UnknownVariant { body_tag: tag })
            );
            let (version, h, body) = peek_uplink_header(&bytes).unwrap();
            assert_eq!((version, h), (1, header(300, 5, Some(1))));
            assert_eq!(body, &bytes[head.len()..]);
        }
    }
}

#[test]
fn unknown_nested_variants_are_reported_with_their_body_tag() {
    let head = [0x01, 0x03, 0x07, 0x00];
    let cases: [(u32, Vec<u8>, u32); 3] = [
        (UPLINK_ALARM_TAG, vec![], ALARM_KIND_VARIANTS),
        (3, vec![0x02], SENSOR_STATE_VARIANTS),
        (5, varint(70_000), COMMAND_RESULT_VARIANTS),
    ];
    for (body_tag, before_nested, known) in cases {
        for tag in unknown_tags(known) {
            for extra in [&[][..], &[0x2a, 0x2a]] {
                let mut bytes = head.to_vec();
                bytes.extend(varint(body_tag));
                bytes.extend_from_slice(&before_nested);
                bytes.extend(varint(tag));
                bytes.extend_from_slice(extra);
                assert_eq!(
                    decode_uplink(&bytes),
                    Err(DecodeError::UnknownVariant { body_tag }),
                    "{bytes:02x?}"
                );
                assert_eq!(
                    peek_uplink_header(&bytes).map(|(v, h, _)| (v, h)),
                    Ok((1, header(3, 7, None)))
                );
            }
        }
    }
}

#[test]
fn unknown_alarm_kind_is_still_an_alarm() {
    // What the gateway relies on: body tag 0 means "alarm", whatever follows.
    let bytes = [0x01, 0x03, 0x07, 0x00, 0x00, 0x80, 0x01];
    match decode_uplink(&bytes) {
        Err(DecodeError::UnknownVariant { body_tag }) => assert_eq!(body_tag, UPLINK_ALARM_TAG),
        other => panic!("expected UnknownVariant, got {other:?}"),
    }
}

#[test]
fn the_alarm_lane_tags_are_the_wire_tags() {
    let cases = [
        (UplinkBody::Alarm(AlarmKind::PendantPress), UPLINK_ALARM_TAG),
        (UplinkBody::AlarmCancelled { alarm_seq: 7 }, UPLINK_ALARM_CANCELLED_TAG),
    ];
    for (body, tag) in cases {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let bytes = encode_uplink(&Uplink::new(header(3, 7, None), body), &mut buf).unwrap();
        let (_, _, body_bytes) = peek_uplink_header(bytes).unwrap();
        assert_eq!(body_bytes.first().copied(), Some(tag as u8));
    }
}

#[test]
fn unknown_downlink_and_presence_variants_are_reported() {
    for tag in unknown_tags(DOWNLINK_BODY_VARIANTS) {
        let mut bytes = vec![0x01];
        bytes.extend(varint(tag));
        bytes.extend([0x05, 0x06]);
        assert_eq!(
            decode_downlink(&bytes),
            Err(DecodeError::UnknownVariant { body_tag: tag })
        );
    }
    for tag in unknown_tags(PRESENCE_VARIANTS) {
        let mut bytes = vec![0x01];
        bytes.extend(varint(tag));
        assert_eq!(
            decode_status(&bytes),
            Err(DecodeError::UnknownVariant { body_tag: tag })
        );
    }
}

#[test]
fn trailing_bytes_after_every_golden_vector_are_ignored() {
    for (name, msg) in golden_expectations() {
        let encoded = msg.encode();
        let tails: [Vec<u8>; 5] = [
            vec![0x00],
            vec![0xff],
            vec![0x80, 0x80, 0x80],
            vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            encoded.clone(),
        ];
        for tail in tails {
            let mut bytes = encoded.clone();
            bytes.extend(&tail);
            if bytes.len() > msg.limit() {
                continue;
            }
            assert_eq!(msg.decode_same_kind(&bytes), Ok(msg.clone()), "{name} + {tail:02x?}");
        }
        // Padded to exactly the limit still decodes; one byte more is rejected unread.
        let mut bytes = encoded.clone();
        bytes.resize(msg.limit(), 0xee);
        assert_eq!(
            msg.decode_same_kind(&bytes),
            Ok(msg.clone()),
            "{name} padded to the limit"
        );
        bytes.push(0xee);
        assert_eq!(
            msg.decode_same_kind(&bytes),
            Err(DecodeError::TooLarge {
                len: msg.limit() + 1,
                limit: msg.limit()
            }),
            "{name} over the limit"
        );
        if let Msg::Up(m) = &msg {
            assert!(matches!(peek_uplink_header(&bytes), Err(DecodeError::TooLarge { .. })));
            bytes.pop();
            assert_eq!(
                peek_uplink_header(&bytes).map(|(v, h, _)| (v, h)),
                Ok((m.version, m.header))
            );
        }
    }
}

#[test]
fn later_revisions_decode_and_keep_their_revision_byte() {
    for (name, msg) in golden_expectations() {
        let encoded = msg.encode();
        for version in [2u8, 3, 0x7f, 0x80, 0xff] {
            let mut bytes = encoded.clone();
            bytes[0] = version;
            let expected = msg.with_version(version);
            assert_eq!(
                msg.decode_same_kind(&bytes),
                Ok(expected.clone()),
                "{name} as revision {version}"
            );
            // A newer field appended at the end is skipped.
            bytes.extend([0x01, 0x90, 0x4e]);
            assert_eq!(
                msg.decode_same_kind(&bytes),
                Ok(expected.clone()),
                "{name} rev {version} + field"
            );
            bytes.truncate(encoded.len());
            assert_eq!(expected.encode(), bytes, "{name}: encoding keeps revision {version}");
        }
        let mut reserved = encoded.clone();
        reserved[0] = 0;
        assert_eq!(
            msg.decode_same_kind(&reserved),
            Err(DecodeError::ReservedVersion),
            "{name}"
        );
    }
}

#[test]
fn encoding_refuses_revision_0_and_short_buffers_without_panicking() {
    for (name, msg) in golden_expectations() {
        let encoded = msg.encode();
        let mut buf = vec![0u8; encoded.len()];
        for short in 0..encoded.len() {
            let slice = &mut buf[..short];
            let result = match &msg {
                Msg::Up(m) => encode_uplink(m, slice).map(<[u8]>::len),
                Msg::Down(m) => encode_downlink(m, slice).map(<[u8]>::len),
                Msg::Status(m) => encode_status(m, slice).map(<[u8]>::len),
            };
            assert_eq!(result, Err(EncodeError::BufferTooSmall), "{name} into {short} bytes");
        }
        let exact = match &msg {
            Msg::Up(m) => encode_uplink(m, &mut buf).map(<[u8]>::to_vec),
            Msg::Down(m) => encode_downlink(m, &mut buf).map(<[u8]>::to_vec),
            Msg::Status(m) => encode_status(m, &mut buf).map(<[u8]>::to_vec),
        };
        assert_eq!(exact, Ok(encoded.clone()), "{name} into an exact buffer");
        let zero = msg.with_version(0);
        let mut big = [0u8; 512];
        let result = match &zero {
            Msg::Up(m) => encode_uplink(m, &mut big).map(<[u8]>::len),
            Msg::Down(m) => encode_downlink(m, &mut big).map(<[u8]>::len),
            Msg::Status(m) => encode_status(m, &mut big).map(<[u8]>::len),
        };
        assert_eq!(result, Err(EncodeError::ReservedVersion), "{name} as revision 0");
    }
}

#[test]
fn varint_limits_are_as_the_spec_says() {
    // Largest values in their longest valid form decode; one more bit does not.
    assert_eq!(
        decode_uplink(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0]).map(|m| m.header.boot),
        Ok(u32::MAX)
    );
    assert_eq!(
        decode_uplink(&[1, 0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 0]),
        Err(DecodeError::MalformedHeader)
    );
    let low_battery = |mv: &[u8]| {
        let mut bytes = vec![1, 3, 25, 0, 0, 17];
        bytes.extend_from_slice(mv);
        bytes.push(15);
        decode_uplink(&bytes)
    };
    assert!(matches!(
        low_battery(&[0xff, 0xff, 0x03]).map(|m| m.body),
        Ok(UplinkBody::Alarm(AlarmKind::LowBattery {
            millivolts: u16::MAX,
            ..
        }))
    ));
    assert_eq!(low_battery(&[0xff, 0xff, 0x04]), Err(DecodeError::MalformedBody));
    assert_eq!(low_battery(&[0x80, 0x80, 0x80, 0x00]), Err(DecodeError::MalformedBody));
    // Over-long (non-minimal) forms within the maximum length are accepted by the reference
    // decoder (SPEC.md 4.1 says so, and that encoders must not send them).
    assert_eq!(
        decode_uplink(&[1, 0x83, 0x00, 0x87, 0x80, 0x80, 0x80, 0x00, 0, 0, 0]).map(|m| m.header),
        Ok(header(3, 7, None))
    );
    // Option bytes other than 00 and 01 are invalid.
    for bad in 2..=u8::MAX {
        assert_eq!(decode_uplink(&[1, 3, 7, bad, 0, 0]), Err(DecodeError::MalformedHeader));
    }
}

#[test]
fn empty_payloads_are_rejected() {
    assert_eq!(decode_uplink(&[]), Err(DecodeError::Empty));
    assert_eq!(peek_uplink_header(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_downlink(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_status(&[]), Err(DecodeError::Empty));
}

#[test]
fn alarms_are_the_bodies_never_dropped() {
    for (name, msg) in golden_expectations() {
        if let Msg::Up(m) = msg {
            let (tag, _) = uplink_tag(&m.body);
            assert_eq!(m.body.is_alarm(), tag <= 1, "{name}");
        }
    }
}

/// Prints the machine-readable blocks as the code sees them.
#[test]
#[ignore = "a helper for editing SPEC.md"]
fn print_spec_blocks() {
    println!("```golden");
    for (name, msg) in golden_expectations() {
        println!("{} {} {}", msg.kind(), name, hex_spaced(&msg.encode()));
        println!("= {}", describe(&msg));
    }
    println!("```\n\n```golden-decode");
    let spec = spec();
    for (name, outcome) in decode_expectations() {
        let bytes = spec
            .decode_only
            .iter()
            .find(|v| v.name == name)
            .map(|v| hex_spaced(&v.bytes));
        println!("{} {} {}", outcome.kind(), name, bytes.unwrap_or_else(|| "??".into()));
        println!("= {}", outcome.describe());
    }
    println!("```\n\n```tags");
    let mut seen = BTreeMap::new();
    for (_, msg) in golden_expectations() {
        for (enum_name, tag, variant) in tags_of(&msg) {
            let order = ENUM_VARIANTS.iter().position(|(e, _)| *e == enum_name);
            seen.insert((order, tag), format!("{enum_name} {tag} {variant}"));
        }
    }
    for line in seen.values() {
        println!("{line}");
    }
    println!("```");
}

#[test]
fn cancellable_kinds_in_spec_match_the_code() {
    let text = spec_text();
    let row = text
        .lines()
        .find(|line| line.starts_with("| yes |"))
        .expect("SPEC.md section 8.1 has a `| yes |` row of cancellable kinds");
    let in_spec: BTreeSet<&str> = row.split('`').skip(1).step_by(2).collect();
    let in_code: BTreeSet<&str> = golden_expectations()
        .iter()
        .filter_map(|(_, msg)| match msg {
            Msg::Up(Uplink {
                body: UplinkBody::Alarm(kind),
                ..
            }) if kind.resident_cancellable() => Some(alarm_tag(kind).1),
            _ => None,
        })
        .collect();
    assert_eq!(in_spec, in_code);
    assert_eq!(in_code, BTreeSet::from(["PendantPress", "Fall"]));
}
