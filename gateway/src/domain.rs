//! The gateway's vocabulary, shared by ingest, the store, the alert engine and the
//! command line. Validated types; no IO here.

use std::fmt;

use protocol::{AlarmKind, DecodeError, DeviceId, UplinkBody, UplinkHeader};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). One type for every instant in the gateway,
/// so device time, receive time and rule timers compare directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub const fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn to_jiff(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_millisecond(self.0).ok()
    }

    pub fn from_jiff(ts: jiff::Timestamp) -> Self {
        Self(ts.as_millisecond())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_jiff() {
            Some(ts) => write!(f, "{ts}"),
            None => write!(f, "{}ms", self.0),
        }
    }
}

/// The source of "now". Production reads the system clock; tests drive a manual clock.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_jiff(jiff::Timestamp::now())
    }
}

/// A resident (care user) id from the council's case system. 1-64 printable ASCII
/// characters without spaces or `/`; never a name, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resident id must be 1-64 ASCII graphic characters other than '/'")]
pub struct InvalidResidentId;

impl ResidentId {
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidResidentId> {
        let id = id.into();
        let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if valid { Ok(Self(id)) } else { Err(InvalidResidentId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResidentId {
    type Error = InvalidResidentId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ResidentId> for String {
    fn from(value: ResidentId) -> Self {
        value.0
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identity of one uplink: stored once however often it arrives (contract 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    #[serde(with = "device_id_serde")]
    pub device: DeviceId,
    pub boot: u32,
    pub seq: u32,
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.device, self.boot, self.seq)
    }
}

/// What an uplink said. Bodies from a newer protocol revision are kept raw so they are
/// still stored, receipted and (if they are alarms) answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    Uplink(UplinkBody),
    /// The body was of a newer revision, or malformed (a device bug); `raw` is the whole
    /// payload. `body_tag` is `UPLINK_ALARM_TAG` when not even the tag could be read: a body
    /// nobody can read is treated as an alarm (SPEC.md).
    Unrecognised {
        body_tag: u32,
        raw: Vec<u8>,
    },
}

impl EventBody {
    /// True if a human must look at this event (including alarms we cannot decode).
    pub fn is_alarm(&self) -> bool {
        match self {
            EventBody::Uplink(body) => matches!(body, UplinkBody::Alarm(_)),
            EventBody::Unrecognised { body_tag, .. } => *body_tag == protocol::UPLINK_ALARM_TAG,
        }
    }

    /// Reads a whole uplink payload by the protocol's forward-compatibility rules: a body from
    /// a newer revision, or a malformed body behind a good header, is kept raw as
    /// `Unrecognised` (SPEC.md 10.3); only an unreadable version or header is an error. Ingest
    /// and the store's reader share it, so a stored payload means what it meant on arrival
    /// (and more, once a later gateway knows the newer body).
    pub fn decode_uplink(payload: &[u8]) -> Result<DecodedUplink, DecodeError> {
        match protocol::decode_uplink(payload) {
            Ok(uplink) => Ok(DecodedUplink {
                version: uplink.version,
                header: uplink.header,
                body: EventBody::Uplink(uplink.body),
                body_malformed: false,
            }),
            Err(error @ (DecodeError::UnknownVariant { .. } | DecodeError::MalformedBody)) => {
                let (version, header, body) = protocol::peek_uplink_header(payload)?;
                let (body_tag, body_malformed) = match error {
                    DecodeError::UnknownVariant { body_tag } => (body_tag, false),
                    // No readable tag at all (an empty body, a cut or over-long tag varint):
                    // it may have been an alarm, so it counts as one, an unrecognised alarm
                    // for a human (SPEC.md 10.3). The raw bytes show what it was.
                    _ => (
                        postcard::take_from_bytes::<u32>(body).map_or(protocol::UPLINK_ALARM_TAG, |(tag, _)| tag),
                        true,
                    ),
                };
                Ok(DecodedUplink {
                    version,
                    header,
                    body: EventBody::Unrecognised {
                        body_tag,
                        raw: payload.to_vec(),
                    },
                    body_malformed,
                })
            }
            Err(error) => Err(error),
        }
    }
}

/// An uplink payload read by [`EventBody::decode_uplink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedUplink {
    pub version: u8,
    pub header: UplinkHeader,
    pub body: EventBody,
    /// The body was not a newer revision's but broken (a device bug): worth a warning.
    pub body_malformed: bool,
}

/// One event as committed to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub key: EventKey,
    /// The resident the device was assigned to when the event was received, if any.
    pub resident: Option<ResidentId>,
    /// Gateway time when the payload arrived.
    pub received_at: Timestamp,
    /// Device clock at the event, if the device has one.
    pub device_time: Option<Timestamp>,
    /// Protocol revision byte the device sent.
    pub protocol_version: u8,
    pub body: EventBody,
}

impl StoredEvent {
    /// The event a decoded payload describes, received under `key` (device from the topic).
    pub fn from_decoded(
        device: DeviceId,
        decoded: DecodedUplink,
        resident: Option<ResidentId>,
        received_at: Timestamp,
    ) -> Self {
        Self {
            key: EventKey {
                device,
                boot: decoded.header.boot,
                seq: decoded.header.seq,
            },
            resident,
            received_at,
            // Outside the accepted range the clock is unset or broken: unknown, as at ingest
            // (the payload keeps the value).
            device_time: decoded
                .header
                .accepted_device_time_ms()
                .and_then(|ms| i64::try_from(ms).ok())
                .map(Timestamp::from_millis),
            protocol_version: decoded.version,
            body: decoded.body,
        }
    }

    /// Whether `other` says the same as this event: same revision, device time and body,
    /// compared decoded (so a different encoding of one value, such as an over-long varint, is
    /// the same event). Receive time and resident are the gateway's, not the device's.
    pub fn same_content(&self, other: &StoredEvent) -> bool {
        self.key == other.key
            && self.protocol_version == other.protocol_version
            && self.device_time == other.device_time
            && self.body == other.body
    }

    /// How long the event took to arrive, if the device knew the time (outbox backlog,
    /// outage). Negative values (clock skew) are reported as zero.
    pub fn delivery_delay_ms(&self) -> Option<i64> {
        self.device_time.map(|sent| self.received_at.millis_since(sent).max(0))
    }
}

/// What kind of hardware a device is; drives which alerts make sense for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Pendant,
    FallDetector,
    SmokeDetector,
    HeatDetector,
    CoDetector,
    FloodDetector,
    DoorSensor,
    BedSensor,
    ChairSensor,
    MotionSensor,
    TemperatureSensor,
    Hub,
    Other,
}

/// Liveness as the gateway believes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnlineState {
    Unknown,
    Online,
    Offline,
}

/// A device the gateway knows of: registered by an administrator, or first seen on the
/// broker (then `registered` is false and its alarms are flagged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    #[serde(with = "device_id_serde")]
    pub id: DeviceId,
    pub kind: DeviceKind,
    pub registered: bool,
    pub firmware: Option<protocol::FirmwareVersion>,
    pub protocol_version: Option<u8>,
    pub last_seen: Option<Timestamp>,
    pub battery_mv: Option<u16>,
    pub battery_percent: Option<u8>,
    pub heartbeat_interval_s: Option<u32>,
    pub online: OnlineState,
    /// Highest boot counter seen from the device, in events or `Online` presences.
    pub highest_boot: Option<u32>,
    /// Set while the device is known to have reused keys (its boot counter went back) and has
    /// not yet moved to a boot of at least `min_boot`.
    pub boot_reuse: Option<BootReuse>,
}

/// A device's boot counter went back (a wiped or replaced device): its keys may collide with
/// events of its earlier life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReuse {
    /// When the gateway first noticed. Events stored before this may be from the earlier life,
    /// so an exact copy of one arriving now is treated as a new event (an alarm alerts).
    pub since: Timestamp,
    /// The boot the device was told to move to (`BootFloor`): one above the highest seen.
    pub min_boot: u32,
}

impl DeviceRecord {
    pub fn new(id: DeviceId, kind: DeviceKind, registered: bool) -> Self {
        Self {
            id,
            kind,
            registered,
            firmware: None,
            protocol_version: None,
            last_seen: None,
            battery_mv: None,
            battery_percent: None,
            heartbeat_interval_s: None,
            online: OnlineState::Unknown,
            highest_boot: None,
            boot_reuse: None,
        }
    }

    /// Notes the boot of an event: a boot at or above the floor clears a boot-reuse flag.
    pub fn note_event_boot(&mut self, boot: u32) {
        self.highest_boot = Some(self.highest_boot.map_or(boot, |seen| seen.max(boot)));
        if self.boot_reuse.is_some_and(|reuse| boot >= reuse.min_boot) {
            self.boot_reuse = None;
        }
    }

    /// Notes the boot of an `Online` presence. A boot below one already seen means the counter
    /// went back: the device is flagged and the floor to send it is returned.
    pub fn note_online_boot(&mut self, boot: u32, at: Timestamp) -> Option<u32> {
        if self.highest_boot.is_some_and(|seen| boot < seen) {
            return Some(self.flag_boot_reuse(at));
        }
        self.note_event_boot(boot);
        None
    }

    /// Flags the device as reusing keys (from `at`, unless already flagged earlier) and
    /// returns the boot it must move to: one above the highest seen.
    pub fn flag_boot_reuse(&mut self, at: Timestamp) -> u32 {
        let min_boot = self.highest_boot.map_or(1, |seen| seen.saturating_add(1));
        let since = self.boot_reuse.map_or(at, |reuse| reuse.since.min(at));
        self.boot_reuse = Some(BootReuse { since, min_boot });
        min_boot
    }
}

/// A person a device is assigned to. Kept minimal: the monitoring centre needs enough to
/// send help, nothing more. Personal data: never logged (log the id only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resident {
    pub id: ResidentId,
    pub display_name: String,
    pub address: String,
    pub access_notes: String,
    /// Who to call, in order (name and phone as free text).
    pub responders: Vec<Responder>,
    /// What the operator needs on the call (absent in records written before it existed).
    #[serde(default)]
    pub care: CareProfile,
}

/// What a call handler reads before speaking to the resident: how to reach them, what to
/// watch for, and how to talk with them. Free text, kept short.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CareProfile {
    /// The home's phone number (the pendant's speech unit calls it back).
    pub phone: String,
    /// Known risks (falls history, lives alone, oxygen at home...).
    pub risks: String,
    /// A short medical summary for the ambulance service.
    pub medical_summary: String,
    /// Hearing, sight, language, memory: how to speak with the resident.
    pub communication_needs: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responder {
    pub name: String,
    pub phone: String,
    /// Son, neighbour, warden... (empty in records written before it existed).
    #[serde(default)]
    pub relationship: String,
}

/// A device lent to a resident from `from` until `until` (open-ended if `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    #[serde(with = "device_id_serde")]
    pub device: DeviceId,
    pub resident: ResidentId,
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

impl Assignment {
    pub fn covers(&self, at: Timestamp) -> bool {
        self.from <= at && self.until.is_none_or(|until| at < until)
    }
}

/// Monotonic alert number, allocated by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(pub u64);

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "A{}", self.0)
    }
}

/// What an alert is about. Device alarms map one to one; the rest come from gateway rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    PendantPress,
    Fall,
    Smoke,
    Heat,
    CarbonMonoxide,
    Seizure,
    Flood,
    TemperatureExtreme,
    DoorOpenedAtNight,
    LeavingHome,
    BedNotReturned,
    ChairNotReturned,
    Inactivity,
    /// Gateway rule: no movement seen by the resident's configured time of day.
    NoMovementByTime,
    MedicationMissed,
    Tamper,
    MainsPowerLost,
    LowBattery,
    DeviceOffline,
    /// An alarm from a newer device whose kind this gateway cannot decode. Treated as
    /// life-safety: a human must look.
    UnrecognisedAlarm,
    /// The device reused keys (its boot counter went back): an event arrived under a key
    /// already stored with different content, or it came online with a lower boot number
    /// than one already seen. Nothing was lost (the copy is stored), but the device needs a
    /// technician's look.
    KeyConflict,
    /// Many devices lost contact within a short window (broker restart, network or power cut
    /// in a block of flats): one alert naming them all ([`Alert::affected_devices`]) instead
    /// of one `DeviceOffline` each. No single device or resident.
    InfrastructureIncident,
}

impl AlertKind {
    /// The alert kind a device alarm raises. `None` for messages that clear rather than
    /// raise (mains power restored).
    pub fn for_alarm(kind: &AlarmKind) -> Option<Self> {
        Some(match kind {
            AlarmKind::PendantPress => Self::PendantPress,
            AlarmKind::Fall => Self::Fall,
            AlarmKind::Smoke => Self::Smoke,
            AlarmKind::Heat => Self::Heat,
            AlarmKind::CarbonMonoxide => Self::CarbonMonoxide,
            AlarmKind::Flood => Self::Flood,
            AlarmKind::TemperatureExtreme { .. } => Self::TemperatureExtreme,
            AlarmKind::BedNotReturned => Self::BedNotReturned,
            AlarmKind::ChairNotReturned => Self::ChairNotReturned,
            AlarmKind::DoorOpenedAtNight => Self::DoorOpenedAtNight,
            AlarmKind::LeavingHome => Self::LeavingHome,
            AlarmKind::Inactivity => Self::Inactivity,
            AlarmKind::Seizure => Self::Seizure,
            AlarmKind::MedicationMissed => Self::MedicationMissed,
            AlarmKind::Tamper => Self::Tamper,
            AlarmKind::MainsPowerLost => Self::MainsPowerLost,
            AlarmKind::MainsPowerRestored => return None,
            AlarmKind::LowBattery { .. } => Self::LowBattery,
        })
    }

    /// Life-safety first, technical last (docs/architecture.md, contract 4).
    pub fn priority(self) -> Priority {
        match self {
            Self::PendantPress
            | Self::Fall
            | Self::Smoke
            | Self::Heat
            | Self::CarbonMonoxide
            | Self::Seizure
            | Self::UnrecognisedAlarm => Priority::LifeSafety,
            Self::Flood
            | Self::TemperatureExtreme
            | Self::DoorOpenedAtNight
            | Self::LeavingHome
            | Self::BedNotReturned
            | Self::ChairNotReturned
            | Self::Inactivity
            | Self::NoMovementByTime
            | Self::MedicationMissed => Priority::Wellbeing,
            Self::Tamper
            | Self::MainsPowerLost
            | Self::LowBattery
            | Self::DeviceOffline
            | Self::KeyConflict
            | Self::InfrastructureIncident => Priority::Technical,
        }
    }

    /// As an operator reads it in the queue and on the call page.
    pub fn label(self) -> &'static str {
        match self {
            Self::PendantPress => "pendant pressed",
            Self::Fall => "fall detected",
            Self::Smoke => "smoke alarm",
            Self::Heat => "heat alarm",
            Self::CarbonMonoxide => "carbon monoxide alarm",
            Self::Seizure => "seizure alarm",
            Self::Flood => "flood alarm",
            Self::TemperatureExtreme => "extreme temperature",
            Self::DoorOpenedAtNight => "door opened at night",
            Self::LeavingHome => "left home",
            Self::BedNotReturned => "not back in bed",
            Self::ChairNotReturned => "not back in chair",
            Self::Inactivity => "no activity",
            Self::NoMovementByTime => "no movement by the usual time",
            Self::MedicationMissed => "medication missed",
            Self::Tamper => "device tampered with",
            Self::MainsPowerLost => "mains power lost",
            Self::LowBattery => "low battery",
            Self::DeviceOffline => "device offline",
            Self::UnrecognisedAlarm => "unrecognised alarm (newer device)",
            Self::KeyConflict => "device reused event numbers",
            Self::InfrastructureIncident => "many devices offline at once",
        }
    }
}

/// Order in the operators' queue. Lower sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    LifeSafety = 0,
    Wellbeing = 1,
    Technical = 2,
}

impl Priority {
    /// As an operator reads it (the queue's badge: colour and these words).
    pub fn label(self) -> &'static str {
        match self {
            Self::LifeSafety => "Life-safety",
            Self::Wellbeing => "Wellbeing",
            Self::Technical => "Technical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Raised,
    Acknowledged,
    Resolved,
}

/// How an alert ended. Codes are stable: they are stored and feed the KPI reports, so a
/// variant is never renamed or removed (its serde name is pinned by a test); new codes are
/// only appended. docs/outcomes.md gives each code's meaning, whether a note is required
/// and how the KPI report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The resident cancelled from the device within the grace window (set by the gateway).
    CancelledByResident,
    /// Operator spoke to the resident: OK, no assistance needed (an accidental activation).
    FalseAlarm,
    /// Advice or reassurance given by the operator.
    AdviceGiven,
    /// A responder attended, type not recorded (older records; prefer the specific codes).
    ResponderAttended,
    /// Emergency services called, service not recorded (older records; prefer the specific
    /// codes).
    EmergencyServices,
    /// A technical fault logged and passed to maintenance.
    MaintenanceRequested,
    /// The condition cleared by itself (device back online, battery recovered; set by the
    /// gateway).
    AutoCleared,
    /// A resident's test call, answered and OK.
    TestCall,
    /// A device's offline alert was taken over by an infrastructure incident alert, which
    /// names the device and follows it from there (set by the gateway).
    GroupedIntoIncident,
    /// A named contact or key holder (family, neighbour, warden) attended.
    KeyHolderAttended,
    /// The monitoring centre's own mobile responder attended.
    MobileResponderAttended,
    /// An ambulance was called.
    AmbulanceCalled,
    /// The fire and rescue service was called.
    FireServiceCalled,
    /// The police were called.
    PoliceCalled,
    /// Referred to the resident's GP.
    ReferralGp,
    /// Referred to the district nursing team.
    ReferralDistrictNurse,
    /// Referred to adult social care.
    ReferralSocialCare,
    /// No voice contact with the resident; someone visited.
    NoVoiceContactVisitMade,
    /// No voice contact and nobody visited: the note must say why.
    NoVoiceContactNoVisit,
    /// The same incident as another alert, dealt with there: the note names it.
    DuplicateOrMerged,
    /// Nobody answered and no responder could be reached: escalated (to whom, in the note).
    NoResponseEscalated,
}

/// How the KPI report counts an outcome (docs/outcomes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiClass {
    /// Someone needed help or a check: counted in answer times and in "genuine calls".
    Genuine,
    /// Accidental, cancelled or a test: counted in answer times, not as genuine calls.
    NonGenuine,
    /// Equipment: counted apart from calls from people.
    Technical,
    /// Bookkeeping (duplicates, grouping): excluded from call counts and answer times.
    Excluded,
}

impl Outcome {
    /// Every code, in declaration order (stored names must never change: a test pins them).
    pub const ALL: [Outcome; 21] = [
        Self::CancelledByResident,
        Self::FalseAlarm,
        Self::AdviceGiven,
        Self::ResponderAttended,
        Self::EmergencyServices,
        Self::MaintenanceRequested,
        Self::AutoCleared,
        Self::TestCall,
        Self::GroupedIntoIncident,
        Self::KeyHolderAttended,
        Self::MobileResponderAttended,
        Self::AmbulanceCalled,
        Self::FireServiceCalled,
        Self::PoliceCalled,
        Self::ReferralGp,
        Self::ReferralDistrictNurse,
        Self::ReferralSocialCare,
        Self::NoVoiceContactVisitMade,
        Self::NoVoiceContactNoVisit,
        Self::DuplicateOrMerged,
        Self::NoResponseEscalated,
    ];

    /// An operator resolving with this code must write a note: the code alone does not say
    /// enough for the audit trail (which service, who, why no visit, which alert).
    /// Older codes keep their old rule (no note required) so stored clients keep working.
    pub fn requires_note(self) -> bool {
        matches!(
            self,
            Self::AmbulanceCalled
                | Self::FireServiceCalled
                | Self::PoliceCalled
                | Self::ReferralGp
                | Self::ReferralDistrictNurse
                | Self::ReferralSocialCare
                | Self::NoVoiceContactVisitMade
                | Self::NoVoiceContactNoVisit
                | Self::DuplicateOrMerged
                | Self::NoResponseEscalated
        )
    }

    /// As an operator reads it when choosing how to close an alert (docs/outcomes.md).
    pub fn label(self) -> &'static str {
        match self {
            Self::CancelledByResident => "Cancelled by the resident",
            Self::FalseAlarm => "False alarm: resident OK",
            Self::AdviceGiven => "Advice or reassurance given",
            Self::ResponderAttended => "Responder attended (type not recorded)",
            Self::EmergencyServices => "Emergency services (service not recorded)",
            Self::MaintenanceRequested => "Maintenance requested",
            Self::AutoCleared => "Cleared by itself",
            Self::TestCall => "Test call",
            Self::GroupedIntoIncident => "Grouped into an incident",
            Self::KeyHolderAttended => "Key holder or contact attended",
            Self::MobileResponderAttended => "Mobile responder attended",
            Self::AmbulanceCalled => "Ambulance called",
            Self::FireServiceCalled => "Fire service called",
            Self::PoliceCalled => "Police called",
            Self::ReferralGp => "Referred to the GP",
            Self::ReferralDistrictNurse => "Referred to the district nurse",
            Self::ReferralSocialCare => "Referred to adult social care",
            Self::NoVoiceContactVisitMade => "No voice contact: visit made",
            Self::NoVoiceContactNoVisit => "No voice contact: no visit",
            Self::DuplicateOrMerged => "Duplicate of another alert",
            Self::NoResponseEscalated => "No response: escalated",
        }
    }

    pub fn kpi_class(self) -> KpiClass {
        match self {
            Self::AdviceGiven
            | Self::ResponderAttended
            | Self::EmergencyServices
            | Self::KeyHolderAttended
            | Self::MobileResponderAttended
            | Self::AmbulanceCalled
            | Self::FireServiceCalled
            | Self::PoliceCalled
            | Self::ReferralGp
            | Self::ReferralDistrictNurse
            | Self::ReferralSocialCare
            | Self::NoVoiceContactVisitMade
            | Self::NoVoiceContactNoVisit
            | Self::NoResponseEscalated => KpiClass::Genuine,
            Self::CancelledByResident | Self::FalseAlarm | Self::TestCall => KpiClass::NonGenuine,
            Self::MaintenanceRequested | Self::AutoCleared => KpiClass::Technical,
            Self::GroupedIntoIncident | Self::DuplicateOrMerged => KpiClass::Excluded,
        }
    }
}

/// One step in an alert's life. Alerts keep every transition for the audit trail and KPIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Timestamp,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Change {
    Raised {
        event: Option<EventKey>,
    },
    /// A repeat of the same kind from the same resident joined the open alert.
    Joined {
        event: EventKey,
    },
    /// Not acknowledged within its priority's target: moved up a step.
    Escalated {
        level: u8,
    },
    Acknowledged {
        operator: String,
    },
    Note {
        operator: String,
        text: String,
    },
    Resolved {
        operator: Option<String>,
        outcome: Outcome,
        note: Option<String>,
    },
    /// A responder from the resident's list was called, and how that went (one per attempt).
    ResponderCalled {
        operator: String,
        /// The responder's name as it was in the record at the time of the call.
        responder: String,
        outcome: CallOutcome,
    },
    /// Why an alarm answered later than the 180-second standard was so; required to close
    /// such an alert, recorded just before its `Resolved`.
    LateAnswerReason {
        operator: String,
        reason: String,
    },
    /// Something promised at resolution (a visit, a call back, a device check); it sits on
    /// the worklist until `FollowUpDone`.
    FollowUp {
        operator: String,
        text: String,
    },
    FollowUpDone {
        operator: String,
        note: Option<String>,
    },
}

/// How one call to a responder went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Answered and going to the resident.
    WillAttend,
    /// Answered but cannot go.
    CannotAttend,
    NoAnswer,
    /// Voicemail or a message with someone else.
    LeftMessage,
    /// Number wrong or out of service (the record needs correcting).
    NumberUnobtainable,
}

impl CallOutcome {
    pub const ALL: &'static [CallOutcome] = &[
        CallOutcome::WillAttend,
        CallOutcome::CannotAttend,
        CallOutcome::NoAnswer,
        CallOutcome::LeftMessage,
        CallOutcome::NumberUnobtainable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::WillAttend => "will_attend",
            CallOutcome::CannotAttend => "cannot_attend",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::LeftMessage => "left_message",
            CallOutcome::NumberUnobtainable => "number_unobtainable",
        }
    }

    /// As an operator reads it.
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::WillAttend => "answered: will attend",
            CallOutcome::CannotAttend => "answered: cannot attend",
            CallOutcome::NoAnswer => "no answer",
            CallOutcome::LeftMessage => "left a message",
            CallOutcome::NumberUnobtainable => "number unobtainable",
        }
    }
}

/// An alert with its whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub kind: AlertKind,
    pub priority: Priority,
    pub state: AlertState,
    pub resident: Option<ResidentId>,
    /// The device whose event raised it (rules may raise alerts without one).
    #[serde(with = "option_device_id_serde")]
    pub device: Option<DeviceId>,
    /// Raised by a device the register does not know: a human must still answer it.
    pub unregistered_device: bool,
    pub raised_at: Timestamp,
    /// Delivery delay of the raising event when it arrived late (backlog, outage).
    pub late_by_ms: Option<i64>,
    pub escalation_level: u8,
    pub transitions: Vec<Transition>,
    /// For an infrastructure incident: every device it covers, kept current as they come
    /// back. Empty (and absent from the stored form) for every other alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_devices: Vec<AffectedDevice>,
}

/// One device an infrastructure incident covers (ids only: no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedDevice {
    #[serde(with = "device_id_serde")]
    pub device: DeviceId,
    pub resident: Option<ResidentId>,
    /// When the gateway counted it offline.
    pub since: Timestamp,
    /// When it was heard from again; `None` while it is still silent.
    #[serde(default)]
    pub back_at: Option<Timestamp>,
}

impl Alert {
    pub fn acknowledged_at(&self) -> Option<Timestamp> {
        self.transitions
            .iter()
            .find_map(|t| matches!(t.change, Change::Acknowledged { .. }).then_some(t.at))
    }

    /// Answer time for the KPI report: acknowledged minus raised.
    pub fn answer_time_ms(&self) -> Option<i64> {
        self.acknowledged_at().map(|at| at.millis_since(self.raised_at))
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.transitions.iter().rev().find_map(|t| match t.change {
            Change::Resolved { outcome, .. } => Some(outcome),
            _ => None,
        })
    }

    pub fn is_open(&self) -> bool {
        self.state != AlertState::Resolved
    }
}

/// One committed alert change as the live stream and the store's change log carry it.
/// `seq` is store-wide, gap-free and increasing: a client that has seen change N asks for
/// everything after N (`GatewayClient::alert_changes_since`) and misses nothing, across
/// gateway restarts. Derefs to the alert as it was right after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertChange {
    pub seq: u64,
    /// Gateway time of the write transaction that stored the change.
    pub committed_at: Timestamp,
    pub alert: Alert,
}

impl std::ops::Deref for AlertChange {
    type Target = Alert;
    fn deref(&self) -> &Alert {
        &self.alert
    }
}

/// Why a payload was quarantined instead of stored as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Topic outside `tec/v1/dev/{id}/{up|status}`.
    ForeignTopic,
    /// Payload longer than the protocol's limit.
    Oversize,
    /// Empty, truncated, or not a message.
    Malformed,
    /// Revision byte 0.
    BadVersion,
    /// The payload claims to be from another device than its topic says.
    IdentityMismatch,
    /// Storing it failed every time while the store itself was healthy (a poison message):
    /// kept here so it cannot hold up the publishes behind it.
    ProcessingFailed,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        Self::ForeignTopic,
        Self::Oversize,
        Self::Malformed,
        Self::BadVersion,
        Self::IdentityMismatch,
        Self::ProcessingFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForeignTopic => "foreign_topic",
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::BadVersion => "bad_version",
            Self::IdentityMismatch => "identity_mismatch",
            Self::ProcessingFailed => "processing_failed",
        }
    }
}

/// A rejected payload, kept (bounded, oldest evicted first) for inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub received_at: Timestamp,
    pub topic: String,
    /// At most the protocol's uplink limit plus a little; longer payloads are truncated
    /// here (with `original_len` kept) so an attacker cannot fill the disk.
    pub payload: Vec<u8>,
    pub original_len: usize,
    pub reason: RejectReason,
    pub detail: String,
}

/// Serde for `DeviceId` as its string form, validated on the way in.
pub mod device_id_serde {
    use protocol::DeviceId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &DeviceId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceId, D::Error> {
        let text = String::deserialize(d)?;
        DeviceId::new(&text).map_err(D::Error::custom)
    }
}

/// Serde for `Option<DeviceId>`.
pub mod option_device_id_serde {
    use protocol::DeviceId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &Option<DeviceId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(id.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeviceId>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| DeviceId::new(&t).map_err(D::Error::custom)).transpose()
    }
}
