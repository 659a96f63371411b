//! Device alarms (with the resident's cancel) and device conditions: mains power, low battery.
//!
//! Decisions (ARCHITECTURE.md, "Alert lifecycle"):
//!
//! - **Cancel.** `AlarmCancelled` resolves the alert with `CancelledByResident` when it comes
//!   from the alarm's device and boot, within `cancel_grace_s` of the alarm (comparing the
//!   events' own times, so an outbox backlog does not void a prompt cancel), the alert is
//!   unacknowledged, and no other device's alarm joined it. Otherwise it adds a note from
//!   `resident` and the alert stays open: an operator who has engaged (or a second device
//!   that also raised the alarm) means a human must close it.
//! - **Low battery.** One alert per device per low spell: the latch (persisted) is set when
//!   it is raised and cleared only above `battery_recovered_percent`. A LowBattery alarm
//!   while latched joins an open alert but never raises a new one.
//! - **Alarms nobody can place.** An alarm from a device the register does not know raises
//!   its alert with `unregistered_device` (and a repeat from one flags the joined alert); an
//!   alarm body this gateway cannot decode raises `UnrecognisedAlarm` (life-safety). Both
//!   still need a human.

use super::*;

impl AlertEngine {
    pub(super) fn on_cancel(&mut self, event: &StoredEvent, alarm_seq: u32, now: Timestamp, effects: &mut Vec<Effect>) {
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

    pub(super) fn alarm_trigger(&self, kind: AlertKind, event: &StoredEvent, registered: bool) -> Trigger {
        let mut trigger = self.event_trigger(kind, event, registered);
        trigger.alarm = Some(AlarmRef {
            event: event.key,
            occurred_at: occurred_at(event),
        });
        trigger
    }

    pub(super) fn event_trigger(&self, kind: AlertKind, event: &StoredEvent, registered: bool) -> Trigger {
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
