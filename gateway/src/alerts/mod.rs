//! The alert engine: a pure state machine fed with stored events, presence and operator
//! actions plus the current time, returning the alerts to persist and the downlinks to
//! send. No IO and no clock reads: the writer calls it inside each store write transaction
//! and persists what it returns, including [`AlertEngine::take_state_changes`].
//!
//! The rules live in one file per family, each listing the decisions it makes: `alarms`
//! (device alarms, the resident's cancel, device conditions), `no_comms` (presence, offline,
//! last will), `floods` (many devices offline at once: one infrastructure incident),
//! `resident_rules` (night door, bed, movement), `escalation`, `lifecycle` (raise or join,
//! notes, closing, operator actions) and `persistence` (restore, state).
//!
//! Decisions every family shares (docs/architecture.md, "The alert lifecycle"):
//!
//! - **Merging.** A repeat of an alert kind joins the open alert of that kind for the same
//!   resident (the same device when the event has no resident). Device conditions (tamper,
//!   mains power, low battery, offline, key conflict) are kept per device even for one
//!   resident, so that one device's recovery clears only its own alert. Repeats caused by an
//!   event are recorded as `Joined`; repeats of a timer rule as a note from `gateway`. An
//!   infrastructure incident has no subject and is never merged (see `floods`).
//! - **Rule alerts explain themselves.** Offline, heartbeat battery, bed and movement alerts
//!   carry a note from `gateway` saying why (ids and numbers only); later news about them
//!   ("bed occupied again", "movement seen") is added as notes, never as auto-resolution:
//!   wellbeing alerts are closed by a human.
//! - **Time.** Transitions carry the `now` of the call; rules that ask when something
//!   happened (night period, cancel window, bed timer, movement) use the event's own time
//!   when the device has a clock, never later than its arrival.

mod alarms;
mod calendar;
mod config;
mod error;
mod escalation;
mod floods;
mod lifecycle;
mod no_comms;
mod persistence;
mod resident_rules;
mod schedule;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use protocol::{AlarmKind, DeviceId, DownlinkBody, SensorState, UPLINK_ALARM_TAG, UplinkBody};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use config::{EngineConfig, EscalationPolicy};
pub use error::EngineError;
pub use lifecycle::{
    LATE_ANSWER_MS, Resolution, answer_time_so_far_ms, complete_follow_up, has_open_follow_up, needs_late_answer_reason,
};
pub use state::ResidentRules;

use crate::domain::{
    Alert, AlertId, AlertKind, AlertState, CallOutcome, Change, DeviceKind, EventBody, EventKey, Outcome, Priority,
    ResidentId, StoredEvent, Timestamp, Transition,
};
use schedule::Schedule;
use state::{AlarmRef, BedTimer, DeviceWatch, HeldCancel, ResidentState, StateKey};

/// Operator name on notes the engine writes about a resident's cancel.
pub const RESIDENT_OPERATOR: &str = "resident";
/// Operator name on notes the engine writes itself.
pub const GATEWAY_OPERATOR: &str = "gateway";
/// Longest note an operator may add.
pub const MAX_NOTE_CHARS: usize = 4_000;

/// Something that happened, for the engine to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineInput {
    /// A NEW event (never a duplicate) just inserted in the store, with what the register
    /// says about its device.
    Event {
        event: StoredEvent,
        device_registered: bool,
        device_kind: DeviceKind,
    },
    /// Presence from the status topic (Offline includes the broker-published last will).
    Presence {
        device: DeviceId,
        resident: Option<ResidentId>,
        online: bool,
        boot: Option<u32>,
        at: Timestamp,
    },
    /// The device reused a key: `detail` says how (ids and numbers only). Raises (or joins)
    /// the device's `KeyConflict` technical alert. The conflicting event itself, if any,
    /// comes as its own `Event` input and alerts like any other.
    KeyConflict {
        device: DeviceId,
        resident: Option<ResidentId>,
        detail: String,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Persist (upsert) this alert and show it on the operators' live stream.
    AlertChanged(Alert),
    /// Send this to the device's down topic.
    Downlink { device: DeviceId, body: DownlinkBody },
}

/// What is about to raise or join an alert.
struct Trigger {
    kind: AlertKind,
    resident: Option<ResidentId>,
    device: Option<DeviceId>,
    event: Option<EventKey>,
    /// Set for alarm events: the device gets feedback and may cancel.
    alarm: Option<AlarmRef>,
    unregistered: bool,
    late_by_ms: Option<i64>,
    /// False when only an open alert may be joined (low-battery latch already set).
    may_raise: bool,
    /// Why a rule fired, for the operator (a note from `gateway`); ids and numbers only.
    detail: Option<String>,
}

impl Trigger {
    fn rule(kind: AlertKind, resident: Option<ResidentId>, device: Option<DeviceId>, detail: String) -> Self {
        Self {
            kind,
            resident,
            device,
            event: None,
            alarm: None,
            unregistered: false,
            late_by_ms: None,
            may_raise: true,
            detail: Some(detail),
        }
    }

    fn subject(&self) -> Option<Subject> {
        subject(self.kind, self.resident.as_ref(), self.device)
    }
}

/// Who an open alert is about, for merging (see "Merging" above).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Resident(ResidentId),
    Device(DeviceId),
}

fn subject(kind: AlertKind, resident: Option<&ResidentId>, device: Option<DeviceId>) -> Option<Subject> {
    let per_device = matches!(
        kind,
        AlertKind::Tamper
            | AlertKind::MainsPowerLost
            | AlertKind::LowBattery
            | AlertKind::DeviceOffline
            | AlertKind::KeyConflict
    );
    match (resident, device) {
        (Some(resident), _) if !per_device => Some(Subject::Resident(resident.clone())),
        (_, Some(device)) => Some(Subject::Device(device)),
        (Some(resident), None) => Some(Subject::Resident(resident.clone())),
        (None, None) => None,
    }
}

fn alert_subject(alert: &Alert) -> Option<(AlertKind, Subject)> {
    subject(alert.kind, alert.resident.as_ref(), alert.device).map(|subject| (alert.kind, subject))
}

/// The alert engine. See the module documentation for the rules' decisions.
#[derive(Debug)]
pub struct AlertEngine {
    config: EngineConfig,
    next_alert_id: AlertId,
    /// No-comms silence is counted from no earlier than this (set after a gateway outage).
    silence_counted_from: Option<Timestamp>,
    open: BTreeMap<AlertId, Alert>,
    /// Open alerts by what they are about: one per (kind, subject).
    open_by_subject: HashMap<(AlertKind, Subject), AlertId>,
    alarms: BTreeMap<AlertId, Vec<AlarmRef>>,
    alert_by_alarm: HashMap<EventKey, AlertId>,
    devices: BTreeMap<DeviceId, DeviceWatch>,
    rules: BTreeMap<ResidentId, ResidentRules>,
    residents: BTreeMap<ResidentId, ResidentState>,
    offline_due: Schedule<DeviceId>,
    escalation_due: Schedule<AlertId>,
    bed_due: Schedule<ResidentId>,
    movement_due: Schedule<ResidentId>,
    /// Cancels that arrived before their alarm, by the alarm they name.
    held_cancels: BTreeMap<EventKey, HeldCancel>,
    held_cancel_due: Schedule<EventKey>,
    /// Flood detection and the infrastructure incident in progress.
    flood: floods::Flood,
    dirty: BTreeSet<StateKey>,
    /// While [`Self::handle_batch`] runs: devices whose no-comms timer is recomputed once at
    /// the end of the batch rather than after every event (nothing reads the timers mid-batch).
    deferred_reschedules: Option<BTreeSet<DeviceId>>,
}

impl AlertEngine {
    pub fn new(config: EngineConfig, next_alert_id: AlertId) -> Self {
        Self {
            config,
            next_alert_id,
            silence_counted_from: None,
            open: BTreeMap::new(),
            open_by_subject: HashMap::new(),
            alarms: BTreeMap::new(),
            alert_by_alarm: HashMap::new(),
            devices: BTreeMap::new(),
            rules: BTreeMap::new(),
            residents: BTreeMap::new(),
            offline_due: Schedule::default(),
            escalation_due: Schedule::default(),
            bed_due: Schedule::default(),
            movement_due: Schedule::default(),
            held_cancels: BTreeMap::new(),
            held_cancel_due: Schedule::default(),
            flood: floods::Flood::default(),
            dirty: BTreeSet::new(),
            deferred_reschedules: None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The id the next new alert will get.
    pub fn next_alert_id(&self) -> AlertId {
        self.next_alert_id
    }

    pub fn handle(&mut self, input: EngineInput, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        match input {
            EngineInput::Event {
                event,
                device_registered,
                device_kind,
            } => {
                let _span = tracing::debug_span!("alert_event", event = %event.key).entered();
                self.on_event(&event, device_registered, device_kind, now, &mut effects);
            }
            EngineInput::Presence {
                device,
                resident,
                online,
                boot,
                at,
            } => {
                let _span = tracing::debug_span!("alert_presence", %device, online, ?boot).entered();
                if online {
                    self.on_online(device, resident, at, now, &mut effects);
                } else {
                    self.on_last_will(device, resident, at, now, &mut effects);
                }
            }
            EngineInput::KeyConflict {
                device,
                resident,
                detail,
            } => {
                let _span = tracing::debug_span!("alert_key_conflict", %device).entered();
                self.on_key_conflict(device, resident, detail, now, &mut effects);
            }
        }
        if self.deferred_reschedules.is_none() {
            self.flush_incident(&mut effects);
        }
        effects
    }

    /// Handles many inputs in order, with the same outcome as calling [`Self::handle`] on each,
    /// but recomputes each device's no-comms timer once rather than per event.
    pub fn handle_batch(&mut self, inputs: impl IntoIterator<Item = EngineInput>, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.deferred_reschedules = Some(BTreeSet::new());
        for input in inputs {
            effects.extend(self.handle(input, now));
        }
        for device in self.deferred_reschedules.take().unwrap_or_default() {
            self.reschedule_device(device);
        }
        self.flush_incident(&mut effects);
        effects
    }

    /// Fire due timers: no-comms, bed return, no movement by, escalation, the end of an
    /// infrastructure incident, held cancels.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        for device in self.offline_due.due(now) {
            self.mark_offline(device, now, &mut effects);
        }
        for resident in self.bed_due.due(now) {
            self.fire_bed_timer(resident, now, &mut effects);
        }
        for resident in self.movement_due.due(now) {
            self.check_movement(resident, now, &mut effects);
        }
        for alert in self.escalation_due.due(now) {
            self.escalate(alert, now, &mut effects);
        }
        for _ in self.flood.due.due(now) {
            self.check_incident(now, &mut effects);
        }
        for alarm in self.held_cancel_due.due(now) {
            self.expire_held_cancel(alarm);
        }
        self.flush_incident(&mut effects);
        effects
    }

    /// Earliest instant at which `tick` would do something (possibly already past).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [
            self.offline_due.earliest(),
            self.bed_due.earliest(),
            self.movement_due.earliest(),
            self.escalation_due.earliest(),
            self.held_cancel_due.earliest(),
            self.flood.due.earliest(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.open.values()
    }

    pub fn alert(&self, alert: AlertId) -> Option<&Alert> {
        self.open.get(&alert)
    }

    fn on_event(
        &mut self,
        event: &StoredEvent,
        registered: bool,
        device_kind: DeviceKind,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let device = event.key.device;
        self.heard_from(
            device,
            event.resident.clone(),
            Some(!registered),
            event.received_at,
            now,
            effects,
        );
        match &event.body {
            EventBody::Unrecognised { body_tag, .. } if *body_tag == UPLINK_ALARM_TAG => {
                self.raise_or_join(
                    self.alarm_trigger(AlertKind::UnrecognisedAlarm, event, registered, false, now),
                    now,
                    effects,
                );
            }
            EventBody::Unrecognised { .. } => {}
            EventBody::Uplink(body) => match body {
                UplinkBody::Alarm(AlarmKind::MainsPowerRestored) => {
                    self.clear_condition(AlertKind::MainsPowerLost, device, "mains power restored", now, effects);
                }
                UplinkBody::Alarm(AlarmKind::LowBattery { .. }) => {
                    let mut trigger = self.alarm_trigger(AlertKind::LowBattery, event, registered, false, now);
                    trigger.may_raise = self.latch_battery(device);
                    self.raise_or_join(trigger, now, effects);
                }
                UplinkBody::Alarm(kind) => {
                    if let Some(alert_kind) = AlertKind::for_alarm(kind) {
                        let trigger =
                            self.alarm_trigger(alert_kind, event, registered, kind.resident_cancellable(), now);
                        self.raise_or_join(trigger, now, effects);
                    }
                }
                UplinkBody::AlarmCancelled { alarm_seq } => self.on_cancel(event, *alarm_seq, now, effects),
                UplinkBody::Heartbeat(status) => {
                    self.heartbeat_interval(device, status.heartbeat_interval_s);
                    // 0 mV means "no reading yet" (SPEC.md): not an empty battery.
                    let battery_percent = (status.battery_mv > 0).then_some(status.battery_percent);
                    self.heartbeat_battery(event, registered, battery_percent, now, effects);
                }
                UplinkBody::SensorChange { state, .. } => {
                    self.on_sensor(event, registered, *state, device_kind, now, effects)
                }
                UplinkBody::Activity(summary) => self.on_activity(event, summary, now, effects),
                UplinkBody::CommandAck { .. } => {}
            },
        }
        if event.body.is_alarm() {
            self.apply_held_cancel(event.key, now, effects);
        }
    }
}

/// When the event happened: the device's clock if it had one, never later than arrival.
fn occurred_at(event: &StoredEvent) -> Timestamp {
    event.received_at.plus_ms(-event.delivery_delay_ms().unwrap_or(0))
}
