//! Device alarms (with the resident's cancel) and device conditions: mains power, low
//! battery, reused event keys.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **Cancel.** `AlarmCancelled` resolves the alert with `CancelledByResident` when it comes
//!   from the alarm's device and boot, the alarm is one a resident may cancel
//!   ([`protocol::AlarmKind::resident_cancellable`]: pendant press, fall), the cancel was made
//!   within `cancel_grace_s` of the alarm (comparing the events' own times, so an outbox
//!   backlog does not void a prompt cancel), the alert is unacknowledged, and no other
//!   device's alarm joined it. Otherwise it adds a note from `resident` and the alert stays
//!   open: a hazard that endangers others, an operator who has engaged, or a second device
//!   that also raised the alarm means a human must close it.
//! - **Cancel before its alarm.** Retransmission can deliver the cancel first, even in an
//!   earlier batch. A cancel naming an earlier seq of its boot with no open alert is held
//!   (state, keyed by the alarm it names) for `cancel_grace_s` of gateway time; the alarm
//!   arriving inside that raises its alert (so it is recorded) and the held cancel is then
//!   judged by the rule above, the resolution noting it came first. A hold that runs out is
//!   dropped (debug log): the alarm, if it ever comes, alerts as usual. At most
//!   `MAX_HELD_CANCELS_PER_DEVICE` are held per device (the oldest is dropped, with a warning).
//! - **Low battery.** One alert per device per low spell: the latch (persisted) is set when
//!   it is raised and cleared only above `battery_recovered_percent`. A LowBattery alarm
//!   while latched joins an open alert but never raises a new one.
//! - **Key conflicts.** `EngineInput::KeyConflict` raises the device's `KeyConflict` alert
//!   (technical, per device) with the detail as a note from `gateway`; a repeat joins it with
//!   a note. It never clears by itself: a human closes it.
//! - **Alarms nobody can place.** An alarm from a device the register does not know raises
//!   its alert with `unregistered_device` (and a repeat from one flags the joined alert); an
//!   alarm body this gateway cannot decode raises `UnrecognisedAlarm` (life-safety). Both
//!   still need a human.

use super::*;

/// Cancels held per device before the oldest is dropped: far more alarms than a device
/// can have in flight within one grace window.
const MAX_HELD_CANCELS_PER_DEVICE: usize = 8;

impl AlertEngine {
    /// A resident's cancel: judge it against its alarm's open alert, or hold it if the
    /// alarm has not arrived yet.
    pub(super) fn on_cancel(&mut self, event: &StoredEvent, alarm_seq: u32, now: Timestamp, effects: &mut Vec<Effect>) {
        let target = EventKey {
            device: event.key.device,
            boot: event.key.boot,
            seq: alarm_seq,
        };
        let cancelled_at = occurred_at(event);
        if self.alert_by_alarm.contains_key(&target) {
            self.judge_cancel(target, cancelled_at, false, now, effects);
        } else if alarm_seq >= event.key.seq {
            // A cancel always follows its alarm within the boot: this names no alarm.
            tracing::debug!(alarm = %target, cancel = %event.key, "cancel names a later event: ignored");
        } else {
            let held = HeldCancel {
                cancel: event.key,
                cancelled_at,
                expires_at: now.plus_ms(self.config.cancel_grace_ms()),
            };
            self.hold_cancel(target, held);
        }
    }

    /// Keep a cancel whose alarm has not arrived (it may be in flight, or its alert
    /// already closed: then the hold simply expires).
    fn hold_cancel(&mut self, target: EventKey, held: HeldCancel) {
        if let Some(first) = self.held_cancels.get(&target) {
            tracing::debug!(alarm = %target, cancel = %held.cancel, first = %first.cancel, "alarm already has a held cancel: the first is kept");
            return;
        }
        let device = target.device;
        let of_device = EventKey {
            device,
            boot: 0,
            seq: 0,
        }..=EventKey {
            device,
            boot: u32::MAX,
            seq: u32::MAX,
        };
        let mut held_by_device = self
            .held_cancels
            .range(of_device)
            .map(|(alarm, held)| (held.expires_at, *alarm));
        let oldest = held_by_device.clone().min();
        if held_by_device.nth(MAX_HELD_CANCELS_PER_DEVICE - 1).is_some()
            && let Some((_, oldest)) = oldest
        {
            // A device cannot have that many alarms in flight: a fault. Keep memory bounded.
            tracing::warn!(%device, alarm = %oldest, "too many held cancels for one device: the oldest is dropped");
            self.drop_held_cancel(oldest);
        }
        tracing::debug!(alarm = %target, cancel = %held.cancel, "cancel arrived before its alarm: held");
        self.held_cancels.insert(target, held);
        self.held_cancel_due.set(target, Some(held.expires_at));
        self.dirty.insert(StateKey::HeldCancel(target));
    }

    fn drop_held_cancel(&mut self, alarm: EventKey) -> Option<HeldCancel> {
        let held = self.held_cancels.remove(&alarm)?;
        self.held_cancel_due.set(alarm, None);
        self.dirty.insert(StateKey::HeldCancel(alarm));
        Some(held)
    }

    /// The hold ran out without its alarm arriving.
    pub(super) fn expire_held_cancel(&mut self, alarm: EventKey) {
        if let Some(held) = self.drop_held_cancel(alarm) {
            tracing::debug!(%alarm, cancel = %held.cancel, "held cancel expired: its alarm never came");
        }
    }

    /// An alarm just raised or joined its alert: apply a cancel that arrived before it.
    pub(super) fn apply_held_cancel(&mut self, alarm: EventKey, now: Timestamp, effects: &mut Vec<Effect>) {
        let Some(held) = self.drop_held_cancel(alarm) else {
            return;
        };
        if held.expires_at <= now {
            tracing::debug!(%alarm, cancel = %held.cancel, "held cancel expired: its alarm came too late");
        } else if self.alert_by_alarm.contains_key(&alarm) {
            self.judge_cancel(alarm, held.cancelled_at, true, now, effects);
        } else {
            tracing::debug!(%alarm, cancel = %held.cancel, "held cancel for an alarm that raised no alert");
        }
    }

    /// The cancel rule (module documentation, "Cancel"), for a cancel of `target`, whose
    /// alert is open, made at `cancelled_at`; `early` if it arrived before the alarm.
    fn judge_cancel(
        &mut self,
        target: EventKey,
        cancelled_at: Timestamp,
        early: bool,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(id) = self.alert_by_alarm.get(&target).copied() else {
            return;
        };
        let (Some(alert), Some(refs)) = (self.open.get(&id), self.alarms.get(&id)) else {
            return;
        };
        let Some(alarm) = refs.iter().find(|r| r.event == target).copied() else {
            return;
        };
        let after_ms = cancelled_at.millis_since(alarm.occurred_at);
        let in_grace = after_ms <= self.config.cancel_grace_ms();
        let only_this_device = refs
            .iter()
            .all(|r| r.event.device == target.device && r.event.boot == target.boot);
        let keep_open_because = if !alarm.cancellable {
            Some("this kind of alarm is not cancelled from the device")
        } else if alert.state != AlertState::Raised {
            Some("already acknowledged by an operator")
        } else if !in_grace {
            Some("outside the cancel window")
        } else if !only_this_device {
            Some("other devices raised this alert too")
        } else {
            None
        };
        let arrival = if early { " (it arrived before the alarm)" } else { "" };
        match keep_open_because {
            None => {
                tracing::info!(alert = %id, alarm = %target, early, "alert cancelled by resident");
                let note = early.then(|| "the cancel arrived before its alarm".to_owned());
                self.close(id, None, Outcome::CancelledByResident, note, now, effects);
            }
            Some(reason) => {
                let seconds = after_ms / 1_000;
                let text =
                    format!("cancel from the device {seconds} s after alarm {target}{arrival}; kept open: {reason}");
                tracing::info!(alert = %id, alarm = %target, reason, early, "resident cancel noted, alert kept open");
                self.note(id, RESIDENT_OPERATOR, text, now, effects);
            }
        }
    }

    /// The device reused a key. Raised (or joined) as the device's technical alert with the
    /// detail as a note from `gateway`; nothing the device does later clears it, since a
    /// reused key means its boot counter or storage is faulty: a technician must look and
    /// a human closes it.
    pub(super) fn on_key_conflict(
        &mut self,
        device: DeviceId,
        resident: Option<ResidentId>,
        detail: String,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let detail = if detail.trim().is_empty() {
            "the device reused an event key".to_owned()
        } else {
            detail
        };
        let mut trigger = Trigger::rule(AlertKind::KeyConflict, resident, Some(device), detail);
        trigger.unregistered = self.devices.get(&device).is_some_and(|watch| watch.unregistered);
        tracing::warn!(%device, "device reused an event key");
        self.raise_or_join(trigger, now, effects);
    }

    /// `cancellable`: the resident may cancel this alarm from the device.
    pub(super) fn alarm_trigger(
        &self,
        kind: AlertKind,
        event: &StoredEvent,
        registered: bool,
        cancellable: bool,
        now: Timestamp,
    ) -> Trigger {
        let mut trigger = self.event_trigger(kind, event, registered, now);
        trigger.alarm = Some(AlarmRef {
            event: event.key,
            occurred_at: occurred_at(event),
            cancellable,
        });
        trigger
    }

    /// `now`: the commit that raises the alert. Lateness runs from the device's clock to it,
    /// not to the receive time, so that an event the gateway held while its store could not
    /// commit (a full disk) is late too: the operator saw it only now.
    pub(super) fn event_trigger(
        &self,
        kind: AlertKind,
        event: &StoredEvent,
        registered: bool,
        now: Timestamp,
    ) -> Trigger {
        Trigger {
            kind,
            resident: event.resident.clone(),
            device: Some(event.key.device),
            event: Some(event.key),
            alarm: None,
            unregistered: !registered,
            late_by_ms: event
                .device_time
                .map(|sent| now.max(event.received_at).millis_since(sent).max(0))
                .filter(|delay| *delay > self.config.late_threshold_ms),
            may_raise: true,
            detail: None,
        }
    }

    /// The battery reading of a heartbeat (`None`: no reading yet): raise or clear the
    /// low-battery condition.
    pub(super) fn heartbeat_battery(
        &mut self,
        event: &StoredEvent,
        registered: bool,
        battery_percent: Option<u8>,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let device = event.key.device;
        let Some(battery_percent) = battery_percent else {
            return;
        };
        if battery_percent < self.config.low_battery_percent {
            if self.latch_battery(device) {
                let mut trigger = self.event_trigger(AlertKind::LowBattery, event, registered, now);
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
    pub(super) fn latch_battery(&mut self, device: DeviceId) -> bool {
        let newly = self
            .devices
            .get_mut(&device)
            .is_some_and(|watch| !std::mem::replace(&mut watch.battery_low, true));
        if newly {
            self.dirty.insert(StateKey::Device(device));
        }
        newly
    }
}
