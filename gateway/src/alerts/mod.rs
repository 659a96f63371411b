//! The alert engine: a pure state machine fed with stored events, presence and operator
//! actions plus the current time, returning the alerts to persist and the downlinks to
//! send. No IO and no clock reads: the ingest calls it inside each store write transaction
//! and persists what it returns, including [`AlertEngine::take_state_changes`].
//!
//! Decisions the rules make (ARCHITECTURE.md, "Alert lifecycle"):
//!
//! - **Merging.** A repeat of an alert kind joins the open alert of that kind for the same
//!   resident (the same device when the event has no resident). Device conditions (tamper,
//!   mains power, low battery, offline) are kept per device even for one resident, so that
//!   one device's recovery clears only its own alert. Repeats caused by an event are
//!   recorded as `Joined`; repeats of a timer rule as a note from `gateway`.
//! - **Auto-clear.** A condition that clears by itself (device heard again, battery above
//!   the recovery threshold, mains power restored) resolves its alert with `AutoCleared`
//!   only while nobody has acknowledged it. Once an operator has acknowledged, the engine
//!   adds a note from `gateway` instead and leaves the closing (and its real outcome, which
//!   the KPI report counts) to that operator.
//! - **Cancel.** `AlarmCancelled` resolves the alert with `CancelledByResident` when it comes
//!   from the alarm's device and boot, within `cancel_grace_s` of the alarm (comparing the
//!   events' own times, so an outbox backlog does not void a prompt cancel), the alert is
//!   unacknowledged, and no other device's alarm joined it. Otherwise it adds a note from
//!   `resident` and the alert stays open: an operator who has engaged (or a second device
//!   that also raised the alarm) means a human must close it.
//! - **Feedback.** `HelpOnTheWay` and `AlertResolved` go to the devices whose *alarms*
//!   raised or joined the alert; rule alerts (offline, heartbeat battery, bed, movement,
//!   door sensor) have no device to tell.
//! - **Low battery.** One alert per device per low spell: the latch (persisted) is set when
//!   it is raised and cleared only above `battery_recovered_percent`. A LowBattery alarm
//!   while latched joins an open alert but never raises a new one.
//! - **No-comms.** Only devices heard from (any event or an Online presence) are watched.
//!   A last will for a device never heard from, or one older than the latest thing heard,
//!   is ignored. An interval of 0 in a heartbeat means "use the default".
//! - **Escalation.** Each passed target is one `Escalated{level}` transition, stamped with
//!   the instant the target passed. Only `Raised` alerts escalate.
//! - **Rule alerts explain themselves.** Offline, heartbeat battery, bed and movement alerts
//!   carry a note from `gateway` saying why (ids and numbers only); later news about them
//!   ("bed occupied again", "movement seen") is added as notes, never as auto-resolution:
//!   wellbeing alerts are closed by a human.
//! - **Movement by a time.** A resident's day starts at `EngineConfig::day_start` (04:00
//!   local); the check runs once per resident day at the rule's local time, DST-correct
//!   (a time in the spring gap means the time after it). Days missed while the gateway was
//!   down are not raised afterwards; today is checked at its own time.
//! - **Time.** Transitions carry the `now` of the call; rules that ask when something
//!   happened (night period, cancel window, bed timer, movement) use the event's own time
//!   when the device has a clock, never later than its arrival.
//! - **Alarms nobody can place.** An alarm from a device the register does not know raises
//!   its alert with `unregistered_device` (and a repeat from one flags the joined alert); an
//!   alarm body this gateway cannot decode raises `UnrecognisedAlarm` (life-safety). Both
//!   still need a human.
//! - **Night rules.** A BedEmpty (any device of a resident with a bed rule) or a DoorOpen
//!   (door sensors of a resident) counts when it happened inside the night period. The bed
//!   timer runs from the first BedEmpty; repeats do not push it back; BedOccupied stops it.
//! - **State.** `meta/next_alert_id`, `meta/silence_counted_from`, `dev/<device>` (watch and
//!   battery latch), `res/<resident>` (bed timer, first movement of the day, last checked
//!   day), `rules/<resident>`, `alarms/<alert>` (the alarm events of an open alert, for
//!   feedback and cancels), all serde_json. Timers are derived from these on restore and
//!   indexed by due time, so a tick costs O(log n) plus what fires.
//! - **Operator actions.** Acknowledge only from Raised; notes and resolve while open
//!   (notes on resolved alerts are not the engine's business: it forgets closed alerts).
//!   Resolving straight from Raised records no acknowledgement, so such an alert has no
//!   answer time.

mod calendar;
mod config;
mod error;
mod schedule;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use protocol::{AlarmKind, DeviceId, DownlinkBody, SensorState, UPLINK_ALARM_TAG, UplinkBody};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use config::{EngineConfig, EscalationPolicy};
pub use error::EngineError;
pub use state::ResidentRules;

use crate::domain::{
    Alert, AlertId, AlertKind, AlertState, Change, DeviceKind, EventBody, EventKey, Outcome, ResidentId, StoredEvent,
    Timestamp, Transition,
};
use schedule::Schedule;
use state::{AlarmRef, BedTimer, DeviceWatch, ResidentState, StateKey};

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
            dirty: BTreeSet::new(),
            deferred_reschedules: None,
        }
    }

    /// Rebuild after a restart from what the store holds: the open alerts and the state
    /// entries from [`Self::take_state_changes`]. Timers that fell due while the gateway
    /// was down fire on the next `tick`, as they would have without the restart (so the
    /// shell should let the broker's queued messages in before its first tick). Unknown
    /// keys (from a newer gateway) are skipped with a warning; unreadable values fail.
    /// `now` is only used for logging; everything else comes from the stored state.
    pub fn restore(
        config: EngineConfig,
        next_alert_id: AlertId,
        open_alerts: Vec<Alert>,
        state: Vec<(String, Vec<u8>)>,
        now: Timestamp,
    ) -> Result<Self, EngineError> {
        let mut engine = Self::new(config, next_alert_id);
        for (key, value) in state {
            match StateKey::parse(&key) {
                Some(StateKey::NextAlertId) => {
                    let stored: u64 = decode(&key, &value)?;
                    engine.next_alert_id = engine.next_alert_id.max(AlertId(stored));
                }
                Some(StateKey::SilenceCountedFrom) => {
                    engine.silence_counted_from = Some(decode(&key, &value)?);
                }
                Some(StateKey::Device(device)) => {
                    engine.devices.insert(device, decode(&key, &value)?);
                }
                Some(StateKey::Resident(resident)) => {
                    engine.residents.insert(resident, decode(&key, &value)?);
                }
                Some(StateKey::Rules(resident)) => {
                    engine.rules.insert(resident, decode(&key, &value)?);
                }
                Some(StateKey::Alarms(alert)) => {
                    engine.alarms.insert(alert, decode(&key, &value)?);
                }
                None => tracing::warn!(key, "unknown alert engine state entry ignored"),
            }
        }
        for alert in open_alerts.into_iter().filter(Alert::is_open) {
            let after = AlertId(alert.id.0.saturating_add(1));
            engine.next_alert_id = engine.next_alert_id.max(after);
            if let Some(subject) = alert_subject(&alert) {
                engine.open_by_subject.insert(subject, alert.id);
            }
            engine.open.insert(alert.id, alert);
        }
        let stale: Vec<AlertId> = engine
            .alarms
            .keys()
            .filter(|id| !engine.open.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            engine.alarms.remove(&id);
            engine.dirty.insert(StateKey::Alarms(id));
        }
        for (id, refs) in &engine.alarms {
            for alarm in refs {
                engine.alert_by_alarm.insert(alarm.event, *id);
            }
        }
        let devices: Vec<DeviceId> = engine.devices.keys().copied().collect();
        for device in devices {
            engine.reschedule_device(device);
        }
        let alerts: Vec<AlertId> = engine.open.keys().copied().collect();
        for alert in alerts {
            engine.reschedule_escalation(alert);
        }
        let residents: Vec<ResidentId> = engine.residents.keys().chain(engine.rules.keys()).cloned().collect();
        for resident in residents {
            engine.reschedule_resident(&resident);
        }
        tracing::info!(
            open_alerts = engine.open.len(),
            devices = engine.devices.len(),
            residents_with_rules = engine.rules.len(),
            next_alert_id = engine.next_alert_id.0,
            %now,
            "alert engine restored"
        );
        Ok(engine)
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
                let trigger = Trigger::rule(AlertKind::KeyConflict, resident, Some(device), detail);
                self.raise_or_join(trigger, now, &mut effects);
            }
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
        effects
    }

    /// Fire due timers: no-comms, bed return, no movement by, escalation.
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
        effects
    }

    /// Earliest instant at which `tick` would do something (possibly already past).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [
            self.offline_due.earliest(),
            self.bed_due.earliest(),
            self.movement_due.earliest(),
            self.escalation_due.earliest(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Replace a resident's rules. Switching the bed rule off drops a pending timer. A
    /// movement rule set after today's check time starts tomorrow (no alert for a day the
    /// rule did not cover from its start).
    pub fn set_resident_rules(&mut self, resident: ResidentId, rules: ResidentRules, now: Timestamp) -> Vec<Effect> {
        let _span = tracing::info_span!("resident_rules", %resident).entered();
        let config = &self.config;
        let state = self.residents.entry(resident.clone()).or_default();
        if rules.bed_return_within_min.is_none() && state.bed_timer.take().is_some() {
            self.dirty.insert(StateKey::Resident(resident.clone()));
        }
        if let Some(by) = rules.movement_expected_by
            && let Some(today) = calendar::resident_day(now, &config.time_zone, config.day_start)
        {
            let check = calendar::movement_deadline(today, by, &config.time_zone, config.day_start);
            let covered = if check.is_some_and(|check| check <= now) {
                Some(today)
            } else {
                today.yesterday().ok()
            };
            // The day before the first day this rule covers counts as checked.
            let checked = state.movement_checked_day.max(covered);
            if checked != state.movement_checked_day {
                state.movement_checked_day = checked;
                self.dirty.insert(StateKey::Resident(resident.clone()));
            }
        }
        if rules.is_empty() {
            self.rules.remove(&resident);
        } else {
            self.rules.insert(resident.clone(), rules);
        }
        self.dirty.insert(StateKey::Rules(resident.clone()));
        self.reschedule_resident(&resident);
        Vec::new()
    }

    pub fn resident_rules(&self, resident: &ResidentId) -> Option<&ResidentRules> {
        self.rules.get(resident)
    }

    /// The gateway could not hear anyone until `from` (it was stopped, or lost the broker):
    /// count no-comms silence from `from` for every watched device, so an outage of the
    /// gateway itself does not raise an offline alert for every device before their queued
    /// messages arrive. Devices already offline stay so; pending last wills are kept.
    /// Persisted as one entry, so a restored engine keeps it. Not called by the engine
    /// itself: `restore` alone keeps behaving exactly as if there had been no restart.
    pub fn restart_silence_timers(&mut self, from: Timestamp) {
        if self.silence_counted_from.is_some_and(|counted| counted >= from) {
            return;
        }
        tracing::info!(%from, devices = self.devices.len(), "no-comms timers restarted after a gateway outage");
        self.silence_counted_from = Some(from);
        self.dirty.insert(StateKey::SilenceCountedFrom);
        let devices: Vec<DeviceId> = self.devices.keys().copied().collect();
        for device in devices {
            self.reschedule_device(device);
        }
    }

    /// Stop watching a device (retired or taken back). Its open alerts stay open.
    pub fn forget_device(&mut self, device: DeviceId) {
        if self.devices.remove(&device).is_some() {
            tracing::info!(%device, "device no longer watched");
            self.dirty.insert(StateKey::Device(device));
            self.offline_due.set(device, None);
        }
    }

    /// An operator takes the alert: the device(s) that raised it hear "help is on the way".
    pub fn acknowledge(&mut self, alert: AlertId, operator: &str, now: Timestamp) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        let open = self.open_alert_mut(alert)?;
        if open.state != AlertState::Raised {
            return Err(EngineError::InvalidTransition {
                alert,
                from: open.state,
                action: "acknowledge",
            });
        }
        open.state = AlertState::Acknowledged;
        open.transitions.push(Transition {
            at: now,
            change: Change::Acknowledged {
                operator: operator.to_owned(),
            },
        });
        tracing::info!(%alert, answer_ms = now.millis_since(open.raised_at), "alert acknowledged");
        let mut effects = vec![Effect::AlertChanged(open.clone())];
        self.escalation_due.set(alert, None);
        self.feedback(alert, DownlinkBody::HelpOnTheWay { alert_ref: alert.0 }, &mut effects);
        Ok(effects)
    }

    pub fn add_note(
        &mut self,
        alert: AlertId,
        operator: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        check_note(text)?;
        let open = self.open_alert_mut(alert)?;
        open.transitions.push(Transition {
            at: now,
            change: Change::Note {
                operator: operator.to_owned(),
                text: text.to_owned(),
            },
        });
        Ok(vec![Effect::AlertChanged(open.clone())])
    }

    /// Close the alert with an outcome; the device(s) that raised it hear it is over.
    pub fn resolve(
        &mut self,
        alert: AlertId,
        operator: &str,
        outcome: Outcome,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        let note = note.filter(|text| !text.trim().is_empty());
        if let Some(text) = note {
            check_note(text)?;
        }
        self.open_alert_mut(alert)?;
        let mut effects = Vec::new();
        self.close(
            alert,
            Some(operator.to_owned()),
            outcome,
            note.map(str::to_owned),
            now,
            &mut effects,
        );
        Ok(effects)
    }

    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.open.values()
    }

    pub fn alert(&self, alert: AlertId) -> Option<&Alert> {
        self.open.get(&alert)
    }

    /// State entries changed since the last call, for the store to persist in the same
    /// write transaction as the events that caused them (`None` = delete).
    pub fn take_state_changes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::with_capacity(dirty.len());
        for key in dirty {
            let value = match &key {
                StateKey::NextAlertId => Some(encode(&self.next_alert_id.0)),
                StateKey::SilenceCountedFrom => self.silence_counted_from.as_ref().map(encode),
                StateKey::Device(device) => self.devices.get(device).map(encode),
                StateKey::Resident(resident) => self.residents.get(resident).filter(|s| !s.is_empty()).map(encode),
                StateKey::Rules(resident) => self.rules.get(resident).map(encode),
                StateKey::Alarms(alert) => self.alarms.get(alert).map(encode),
            };
            match value {
                None => changes.push((key.encode(), None)),
                Some(Ok(bytes)) => changes.push((key.encode(), Some(bytes))),
                Some(Err(error)) => {
                    // Plain data structs: serde_json cannot fail on them. Keep the key dirty
                    // rather than write or delete something wrong.
                    tracing::error!(key = key.encode(), %error, "alert engine state not serialisable");
                    self.dirty.insert(key);
                }
            }
        }
        changes
    }

    // ----- events -----

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
                    self.alarm_trigger(AlertKind::UnrecognisedAlarm, event, registered),
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
                    let mut trigger = self.alarm_trigger(AlertKind::LowBattery, event, registered);
                    trigger.may_raise = self.latch_battery(device);
                    self.raise_or_join(trigger, now, effects);
                }
                UplinkBody::Alarm(kind) => {
                    if let Some(alert_kind) = AlertKind::for_alarm(kind) {
                        self.raise_or_join(self.alarm_trigger(alert_kind, event, registered), now, effects);
                    }
                }
                UplinkBody::AlarmCancelled { alarm_seq } => self.on_cancel(event, *alarm_seq, now, effects),
                UplinkBody::Heartbeat(status) => self.on_heartbeat(
                    event,
                    registered,
                    status.heartbeat_interval_s,
                    // 0 mV means "no reading yet" (SPEC.md): not an empty battery.
                    (status.battery_mv > 0).then_some(status.battery_percent),
                    now,
                    effects,
                ),
                UplinkBody::SensorChange { state, .. } => {
                    self.on_sensor(event, registered, *state, device_kind, now, effects)
                }
                UplinkBody::Activity(summary) => {
                    if let Some(resident) = &event.resident
                        && let Some(at) = last_motion(summary, occurred_at(event))
                    {
                        self.saw_movement(resident, at, now, effects);
                    }
                }
                UplinkBody::CommandAck { .. } => {}
            },
        }
    }

    fn alarm_trigger(&self, kind: AlertKind, event: &StoredEvent, registered: bool) -> Trigger {
        let mut trigger = self.event_trigger(kind, event, registered);
        trigger.alarm = Some(AlarmRef {
            event: event.key,
            occurred_at: occurred_at(event),
        });
        trigger
    }

    fn event_trigger(&self, kind: AlertKind, event: &StoredEvent, registered: bool) -> Trigger {
        Trigger {
            kind,
            resident: event.resident.clone(),
            device: Some(event.key.device),
            event: Some(event.key),
            alarm: None,
            unregistered: !registered,
            late_by_ms: event
                .delivery_delay_ms()
                .filter(|delay| *delay > self.config.late_threshold_ms),
            may_raise: true,
            detail: None,
        }
    }

    fn on_heartbeat(
        &mut self,
        event: &StoredEvent,
        registered: bool,
        interval_s: u32,
        battery_percent: Option<u8>,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let device = event.key.device;
        if let Some(watch) = self.devices.get_mut(&device) {
            let interval = Some(interval_s).filter(|s| *s > 0);
            if watch.heartbeat_interval_s != interval {
                watch.heartbeat_interval_s = interval;
                self.dirty.insert(StateKey::Device(device));
                self.reschedule_device(device);
            }
        }
        let Some(battery_percent) = battery_percent else {
            return;
        };
        if battery_percent < self.config.low_battery_percent {
            if self.latch_battery(device) {
                let mut trigger = self.event_trigger(AlertKind::LowBattery, event, registered);
                trigger.detail = Some(format!("battery at {battery_percent}%"));
                self.raise_or_join(trigger, now, effects);
            }
        } else if battery_percent > self.config.battery_recovered_percent {
            let was_low = self
                .devices
                .get_mut(&device)
                .is_some_and(|watch| std::mem::replace(&mut watch.battery_low, false));
            if was_low {
                self.dirty.insert(StateKey::Device(device));
                let what = format!("battery recovered to {battery_percent}%");
                self.clear_condition(AlertKind::LowBattery, device, &what, now, effects);
            }
        }
    }

    /// Sets the battery latch; true if it was not set (a new alert may be raised).
    fn latch_battery(&mut self, device: DeviceId) -> bool {
        let newly = self
            .devices
            .get_mut(&device)
            .is_some_and(|watch| !std::mem::replace(&mut watch.battery_low, true));
        if newly {
            self.dirty.insert(StateKey::Device(device));
        }
        newly
    }

    fn on_sensor(
        &mut self,
        event: &StoredEvent,
        registered: bool,
        state: SensorState,
        device_kind: DeviceKind,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(resident) = event.resident.clone() else { return };
        let at = occurred_at(event);
        let night = calendar::is_night(at, &self.config.time_zone, self.config.night);
        match state {
            SensorState::DoorOpen if night && device_kind == DeviceKind::DoorSensor => {
                self.raise_or_join(
                    self.event_trigger(AlertKind::DoorOpenedAtNight, event, registered),
                    now,
                    effects,
                );
            }
            SensorState::BedEmpty if night => {
                let Some(minutes) = self.rules.get(&resident).and_then(|rules| rules.bed_return_within_min) else {
                    return;
                };
                let state = self.residents.entry(resident.clone()).or_default();
                // A bouncing sensor must not push the deadline back: keep the first timer.
                if state.bed_timer.is_none() {
                    let due = at.plus_ms(i64::from(minutes).saturating_mul(60_000));
                    state.bed_timer = Some(BedTimer { event: event.key, due });
                    self.dirty.insert(StateKey::Resident(resident.clone()));
                    self.reschedule_resident(&resident);
                }
            }
            SensorState::BedOccupied => {
                if let Some(state) = self.residents.get_mut(&resident)
                    && state.bed_timer.take().is_some()
                {
                    self.dirty.insert(StateKey::Resident(resident.clone()));
                    self.reschedule_resident(&resident);
                }
                let subject = (AlertKind::BedNotReturned, Subject::Resident(resident));
                self.note_subject(&subject, "bed occupied again", now, effects);
            }
            SensorState::Motion => self.saw_movement(&resident, at, now, effects),
            _ => {}
        }
    }

    fn saw_movement(&mut self, resident: &ResidentId, at: Timestamp, now: Timestamp, effects: &mut Vec<Effect>) {
        let config = &self.config;
        let day_start = calendar::resident_day(at, &config.time_zone, config.day_start)
            .and_then(|day| calendar::day_start_instant(day, &config.time_zone, config.day_start));
        let state = self.residents.entry(resident.clone()).or_default();
        // Only "was there movement this resident day" matters, so record the first
        // movement of each day and skip the rest (fewer state writes).
        let first_today = match (state.last_movement, day_start) {
            (None, _) => true,
            (Some(previous), Some(start)) => previous < start && previous < at,
            (Some(previous), None) => previous < at,
        };
        if first_today {
            state.last_movement = Some(at);
            self.dirty.insert(StateKey::Resident(resident.clone()));
            let subject = (AlertKind::NoMovementByTime, Subject::Resident(resident.clone()));
            self.note_subject(&subject, "movement seen", now, effects);
        }
    }

    fn on_cancel(&mut self, event: &StoredEvent, alarm_seq: u32, now: Timestamp, effects: &mut Vec<Effect>) {
        let target = EventKey {
            device: event.key.device,
            boot: event.key.boot,
            seq: alarm_seq,
        };
        let Some(id) = self.alert_by_alarm.get(&target).copied() else {
            tracing::debug!(alarm = %target, "cancel for an alarm with no open alert");
            return;
        };
        let (Some(alert), Some(refs)) = (self.open.get(&id), self.alarms.get(&id)) else {
            return;
        };
        let Some(alarm_at) = refs.iter().find(|r| r.event == target).map(|r| r.occurred_at) else {
            return;
        };
        let after_ms = occurred_at(event).millis_since(alarm_at);
        let in_grace = after_ms <= self.config.cancel_grace_ms();
        let only_this_device = refs
            .iter()
            .all(|r| r.event.device == target.device && r.event.boot == target.boot);
        let keep_open_because = if alert.state != AlertState::Raised {
            Some("already acknowledged by an operator")
        } else if !in_grace {
            Some("outside the cancel window")
        } else if !only_this_device {
            Some("other devices raised this alert too")
        } else {
            None
        };
        match keep_open_because {
            None => {
                tracing::info!(alert = %id, alarm = %target, "alert cancelled by resident");
                self.close(id, None, Outcome::CancelledByResident, None, now, effects);
            }
            Some(reason) => {
                let seconds = after_ms / 1_000;
                let text = format!("cancel from the device {seconds} s after alarm {target}; kept open: {reason}");
                tracing::info!(alert = %id, alarm = %target, reason, "resident cancel noted, alert kept open");
                self.note(id, RESIDENT_OPERATOR, text, now, effects);
            }
        }
    }

    // ----- presence and no-comms -----

    /// Anything from the device: it is alive. Starts watching it if new.
    fn heard_from(
        &mut self,
        device: DeviceId,
        resident: Option<ResidentId>,
        unregistered: Option<bool>,
        at: Timestamp,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let watch = self.devices.entry(device).or_insert_with(|| DeviceWatch::new(at));
        watch.last_heard = watch.last_heard.max(at);
        watch.last_will_at = None;
        if resident.is_some() || unregistered.is_some() {
            watch.resident = resident;
        }
        if let Some(unregistered) = unregistered {
            watch.unregistered = unregistered;
        }
        let was_offline = std::mem::replace(&mut watch.offline, false);
        self.dirty.insert(StateKey::Device(device));
        self.reschedule_device(device);
        if was_offline {
            tracing::info!(%device, "device back online");
            self.clear_condition(
                AlertKind::DeviceOffline,
                device,
                "device heard from again",
                now,
                effects,
            );
        }
    }

    fn on_online(
        &mut self,
        device: DeviceId,
        resident: Option<ResidentId>,
        at: Timestamp,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let resident = resident.or_else(|| self.devices.get(&device).and_then(|watch| watch.resident.clone()));
        self.heard_from(device, resident, None, at, now, effects);
        self.repeat_help_on_the_way(device, effects);
    }

    /// Devices connect with a clean session (their outbox, not the broker, keeps their
    /// uplinks), so a "help is on the way" sent while one was offline never reached it.
    /// Say it again when it comes back, for every acknowledged alert its alarms raised.
    fn repeat_help_on_the_way(&self, device: DeviceId, effects: &mut Vec<Effect>) {
        for (id, refs) in &self.alarms {
            let acknowledged = self
                .open
                .get(id)
                .is_some_and(|alert| alert.state == AlertState::Acknowledged);
            if acknowledged && refs.iter().any(|alarm| alarm.event.device == device) {
                effects.push(Effect::Downlink {
                    device,
                    body: DownlinkBody::HelpOnTheWay { alert_ref: id.0 },
                });
            }
        }
    }

    fn on_last_will(
        &mut self,
        device: DeviceId,
        resident: Option<ResidentId>,
        at: Timestamp,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(watch) = self.devices.get_mut(&device) else {
            tracing::debug!("last will from a device never heard from: not watched");
            return;
        };
        if at < watch.last_heard || watch.offline || watch.last_will_at.is_some() {
            return;
        }
        watch.last_will_at = Some(at);
        if resident.is_some() {
            watch.resident = resident;
        }
        self.dirty.insert(StateKey::Device(device));
        self.reschedule_device(device);
        if self
            .devices
            .get(&device)
            .and_then(|watch| self.offline_deadline(watch))
            .is_some_and(|due| due <= now)
        {
            self.mark_offline(device, now, effects);
        }
    }

    fn offline_deadline(&self, watch: &DeviceWatch) -> Option<Timestamp> {
        if watch.offline {
            return None;
        }
        let counted_from = self
            .silence_counted_from
            .map_or(watch.last_heard, |from| from.max(watch.last_heard));
        let silent = counted_from.plus_ms(self.config.silence_limit_ms(watch.heartbeat_interval_s));
        let will = watch
            .last_will_at
            .map(|at| at.plus_ms(self.config.last_will_grace_ms()));
        Some(will.map_or(silent, |will| will.min(silent)))
    }

    fn reschedule_device(&mut self, device: DeviceId) {
        if let Some(deferred) = &mut self.deferred_reschedules {
            deferred.insert(device);
            return;
        }
        let due = self.devices.get(&device).and_then(|watch| self.offline_deadline(watch));
        self.offline_due.set(device, due);
    }

    fn mark_offline(&mut self, device: DeviceId, now: Timestamp, effects: &mut Vec<Effect>) {
        let Some(watch) = self.devices.get_mut(&device) else {
            return;
        };
        watch.offline = true;
        let detail = match watch.last_will_at.take() {
            Some(_) => "the broker reported the connection lost (last will)".to_owned(),
            None => format!("nothing heard for {} s", now.millis_since(watch.last_heard) / 1_000),
        };
        let mut trigger = Trigger::rule(AlertKind::DeviceOffline, watch.resident.clone(), Some(device), detail);
        trigger.unregistered = watch.unregistered;
        self.dirty.insert(StateKey::Device(device));
        self.reschedule_device(device);
        tracing::info!(%device, "device offline");
        self.raise_or_join(trigger, now, effects);
    }

    // ----- resident rules -----

    /// Reset a resident's bed and movement timers from their state and rules.
    fn reschedule_resident(&mut self, resident: &ResidentId) {
        let state = self.residents.get(resident);
        let bed = state.and_then(|state| state.bed_timer.as_ref()).map(|timer| timer.due);
        self.bed_due.set(resident.clone(), bed);
        let movement = self
            .rules
            .get(resident)
            .and_then(|rules| rules.movement_expected_by)
            .and_then(|by| {
                let next_day = state?.movement_checked_day?.tomorrow().ok()?;
                calendar::movement_deadline(next_day, by, &self.config.time_zone, self.config.day_start)
            });
        self.movement_due.set(resident.clone(), movement);
    }

    fn fire_bed_timer(&mut self, resident: ResidentId, now: Timestamp, effects: &mut Vec<Effect>) {
        let Some(timer) = self
            .residents
            .get_mut(&resident)
            .and_then(|state| state.bed_timer.take())
        else {
            return;
        };
        self.dirty.insert(StateKey::Resident(resident.clone()));
        self.reschedule_resident(&resident);
        let minutes = self
            .rules
            .get(&resident)
            .and_then(|rules| rules.bed_return_within_min)
            .unwrap_or_default();
        let detail = format!("not back in bed within {minutes} min");
        let mut trigger = Trigger::rule(
            AlertKind::BedNotReturned,
            Some(resident),
            Some(timer.event.device),
            detail,
        );
        trigger.event = Some(timer.event);
        trigger.unregistered = self
            .devices
            .get(&timer.event.device)
            .is_some_and(|watch| watch.unregistered);
        self.raise_or_join(trigger, now, effects);
    }

    /// The movement timer fired: check today if today's time has come, else wait for it.
    fn check_movement(&mut self, resident: ResidentId, now: Timestamp, effects: &mut Vec<Effect>) {
        let config = &self.config;
        let Some(by) = self.rules.get(&resident).and_then(|rules| rules.movement_expected_by) else {
            self.movement_due.set(resident, None);
            return;
        };
        let tz = &config.time_zone;
        let Some(today) = calendar::resident_day(now, tz, config.day_start) else {
            // Out of the calendar's range: nothing sensible to wait for.
            self.movement_due.set(resident, None);
            return;
        };
        let day_start = calendar::day_start_instant(today, tz, config.day_start);
        let state = self.residents.entry(resident.clone()).or_default();
        let checked_today = state.movement_checked_day.is_some_and(|done| done >= today);
        let next_day = if checked_today {
            today.tomorrow().ok()
        } else {
            Some(today)
        };
        let next = next_day.and_then(|day| calendar::movement_deadline(day, by, tz, config.day_start));
        if checked_today || next.is_none_or(|next| next > now) {
            // Woken for a day already past (the gateway was down): wait for the next check.
            self.movement_due.set(resident, next.filter(|next| *next > now));
            return;
        }
        state.movement_checked_day = Some(today);
        let moved = state
            .last_movement
            .zip(day_start)
            .is_some_and(|(moved, start)| moved >= start);
        self.dirty.insert(StateKey::Resident(resident.clone()));
        self.reschedule_resident(&resident);
        if !moved {
            tracing::info!(%resident, day = %today, "no movement by the expected time");
            let detail = format!("no movement seen between {} and {by} local time", self.config.day_start);
            let trigger = Trigger::rule(AlertKind::NoMovementByTime, Some(resident), None, detail);
            self.raise_or_join(trigger, now, effects);
        }
    }

    // ----- escalation -----

    fn escalation_deadline(&self, alert: &Alert) -> Option<Timestamp> {
        if alert.state != AlertState::Raised {
            return None;
        }
        let target = self
            .config
            .escalation
            .targets(alert.priority)
            .get(usize::from(alert.escalation_level))?;
        Some(alert.raised_at.plus_ms(i64::from(*target).saturating_mul(1_000)))
    }

    fn reschedule_escalation(&mut self, id: AlertId) {
        let due = self.open.get(&id).and_then(|alert| self.escalation_deadline(alert));
        self.escalation_due.set(id, due);
    }

    /// Take every step whose target has passed, each stamped when it passed.
    fn escalate(&mut self, id: AlertId, now: Timestamp, effects: &mut Vec<Effect>) {
        let mut escalated = false;
        while let Some(due) = self.open.get(&id).and_then(|alert| self.escalation_deadline(alert))
            && due <= now
            && let Some(alert) = self.open.get_mut(&id)
            && alert.escalation_level < u8::MAX
        {
            alert.escalation_level += 1;
            alert.transitions.push(Transition {
                at: due,
                change: Change::Escalated {
                    level: alert.escalation_level,
                },
            });
            tracing::warn!(alert = %id, level = alert.escalation_level, "alert escalated: not acknowledged in time");
            escalated = true;
        }
        if escalated && let Some(alert) = self.open.get(&id) {
            effects.push(Effect::AlertChanged(alert.clone()));
        }
        self.reschedule_escalation(id);
    }

    // ----- alert bookkeeping -----

    fn raise_or_join(&mut self, trigger: Trigger, now: Timestamp, effects: &mut Vec<Effect>) {
        let subject = trigger.subject();
        let existing = subject
            .as_ref()
            .and_then(|subject| self.open_by_subject.get(&(trigger.kind, subject.clone())));
        let id = if let Some(id) = existing.copied() {
            let Some(alert) = self.open.get_mut(&id) else { return };
            let change = match (trigger.event, &trigger.detail) {
                (Some(event), _) => Change::Joined { event },
                (None, detail) => Change::Note {
                    operator: GATEWAY_OPERATOR.to_owned(),
                    text: format!("seen again: {}", detail.as_deref().unwrap_or("same condition")),
                },
            };
            alert.transitions.push(Transition { at: now, change });
            alert.unregistered_device |= trigger.unregistered;
            tracing::info!(alert = %id, kind = ?trigger.kind, "repeat joined the open alert");
            effects.push(Effect::AlertChanged(alert.clone()));
            id
        } else if trigger.may_raise {
            let id = self.next_alert_id;
            self.next_alert_id = AlertId(id.0.saturating_add(1));
            self.dirty.insert(StateKey::NextAlertId);
            let mut transitions = vec![Transition {
                at: now,
                change: Change::Raised { event: trigger.event },
            }];
            if let Some(text) = trigger.detail {
                transitions.push(Transition {
                    at: now,
                    change: Change::Note {
                        operator: GATEWAY_OPERATOR.to_owned(),
                        text,
                    },
                });
            }
            let alert = Alert {
                id,
                kind: trigger.kind,
                priority: trigger.kind.priority(),
                state: AlertState::Raised,
                resident: trigger.resident,
                device: trigger.device,
                unregistered_device: trigger.unregistered,
                raised_at: now,
                late_by_ms: trigger.late_by_ms,
                escalation_level: 0,
                transitions,
            };
            tracing::info!(
                alert = %id,
                kind = ?alert.kind,
                device = ?alert.device.map(|d| d.to_string()),
                unregistered = alert.unregistered_device,
                late_by_ms = ?alert.late_by_ms,
                "alert raised"
            );
            effects.push(Effect::AlertChanged(alert.clone()));
            if let Some(subject) = subject {
                self.open_by_subject.insert((alert.kind, subject), id);
            }
            self.open.insert(id, alert);
            self.reschedule_escalation(id);
            id
        } else {
            return;
        };
        if let Some(alarm) = trigger.alarm {
            self.alarms.entry(id).or_default().push(alarm);
            self.alert_by_alarm.insert(alarm.event, id);
            self.dirty.insert(StateKey::Alarms(id));
        }
    }

    /// A device condition cleared by itself: close the alert unless a human has it.
    fn clear_condition(
        &mut self,
        kind: AlertKind,
        device: DeviceId,
        what: &str,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(id) = self.open_by_subject.get(&(kind, Subject::Device(device))).copied() else {
            return;
        };
        let Some(state) = self.open.get(&id).map(|alert| alert.state) else {
            return;
        };
        if state == AlertState::Raised {
            tracing::info!(alert = %id, what, "alert cleared by itself");
            self.close(id, None, Outcome::AutoCleared, Some(what.to_owned()), now, effects);
        } else {
            let text = format!("{what}; acknowledged alerts are left for the operator to resolve");
            self.note(id, GATEWAY_OPERATOR, text, now, effects);
        }
    }

    /// Tell the open alert about (kind, subject), if there is one, what just happened.
    fn note_subject(&mut self, subject: &(AlertKind, Subject), text: &str, now: Timestamp, effects: &mut Vec<Effect>) {
        if let Some(id) = self.open_by_subject.get(subject).copied() {
            self.note(id, GATEWAY_OPERATOR, text.to_owned(), now, effects);
        }
    }

    fn note(&mut self, id: AlertId, operator: &str, text: String, now: Timestamp, effects: &mut Vec<Effect>) {
        if let Some(alert) = self.open.get_mut(&id) {
            alert.transitions.push(Transition {
                at: now,
                change: Change::Note {
                    operator: operator.to_owned(),
                    text,
                },
            });
            effects.push(Effect::AlertChanged(alert.clone()));
        }
    }

    fn close(
        &mut self,
        id: AlertId,
        operator: Option<String>,
        outcome: Outcome,
        note: Option<String>,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(mut alert) = self.open.remove(&id) else { return };
        alert.state = AlertState::Resolved;
        alert.transitions.push(Transition {
            at: now,
            change: Change::Resolved {
                operator,
                outcome,
                note,
            },
        });
        tracing::info!(alert = %id, ?outcome, "alert resolved");
        if let Some(subject) = alert_subject(&alert)
            && self.open_by_subject.get(&subject) == Some(&id)
        {
            self.open_by_subject.remove(&subject);
        }
        self.escalation_due.set(id, None);
        effects.push(Effect::AlertChanged(alert));
        self.feedback(id, DownlinkBody::AlertResolved { alert_ref: id.0 }, effects);
        if let Some(refs) = self.alarms.remove(&id) {
            for alarm in refs {
                self.alert_by_alarm.remove(&alarm.event);
            }
            self.dirty.insert(StateKey::Alarms(id));
        }
    }

    /// Tell each device whose alarm raised or joined the alert, once each.
    fn feedback(&self, id: AlertId, body: DownlinkBody, effects: &mut Vec<Effect>) {
        let Some(refs) = self.alarms.get(&id) else { return };
        let mut told = BTreeSet::new();
        for alarm in refs {
            if told.insert(alarm.event.device) {
                effects.push(Effect::Downlink {
                    device: alarm.event.device,
                    body: body.clone(),
                });
            }
        }
    }

    fn open_alert_mut(&mut self, id: AlertId) -> Result<&mut Alert, EngineError> {
        let allocated = id < self.next_alert_id;
        self.open.get_mut(&id).ok_or(if allocated {
            EngineError::AlreadyResolved(id)
        } else {
            EngineError::UnknownAlert(id)
        })
    }
}

/// When the event happened: the device's clock if it had one, never later than arrival.
fn occurred_at(event: &StoredEvent) -> Timestamp {
    event.received_at.plus_ms(-event.delivery_delay_ms().unwrap_or(0))
}

/// End of the last window with motion in an activity summary (windows run oldest first and
/// the last one ends at the message's time), or `None` if nothing moved.
fn last_motion(summary: &protocol::ActivitySummary, ends_at: Timestamp) -> Option<Timestamp> {
    let windows_after = summary.motion_counts.iter().rev().position(|count| *count > 0)?;
    let window_ms = i64::from(summary.window_s).saturating_mul(1_000);
    Some(
        ends_at.plus_ms(
            -(i64::try_from(windows_after)
                .unwrap_or(i64::MAX)
                .saturating_mul(window_ms)),
        ),
    )
}

fn check_operator(operator: &str) -> Result<(), EngineError> {
    let operator = operator.trim();
    if operator.is_empty() {
        return Err(EngineError::MissingOperator);
    }
    if operator.eq_ignore_ascii_case(RESIDENT_OPERATOR) || operator.eq_ignore_ascii_case(GATEWAY_OPERATOR) {
        return Err(EngineError::ReservedOperator(operator.to_owned()));
    }
    Ok(())
}

fn check_note(text: &str) -> Result<(), EngineError> {
    if text.trim().is_empty() {
        return Err(EngineError::EmptyNote);
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(EngineError::NoteTooLong { max: MAX_NOTE_CHARS });
    }
    Ok(())
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(value).map_err(|error| EngineError::CorruptState {
        key: key.to_owned(),
        reason: error.to_string(),
    })
}
