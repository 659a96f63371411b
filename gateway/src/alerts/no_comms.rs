//! No-comms: presence, the silence timer, last wills.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **No-comms.** Only devices heard from (any event or an Online presence) are watched.
//!   A last will for a device never heard from, or one older than the latest thing heard,
//!   is ignored. An interval of 0 in a heartbeat means "use the default".

use super::*;

impl AlertEngine {
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

    /// A heartbeat announces the device's interval (0: use the default), which sets how
    /// long it may stay silent.
    pub(super) fn heartbeat_interval(&mut self, device: DeviceId, interval_s: u32) {
        if let Some(watch) = self.devices.get_mut(&device) {
            let interval = Some(interval_s).filter(|s| *s > 0);
            if watch.heartbeat_interval_s != interval {
                watch.heartbeat_interval_s = interval;
                self.dirty.insert(StateKey::Device(device));
                self.reschedule_device(device);
            }
        }
    }

    /// Anything from the device: it is alive. Starts watching it if new.
    pub(super) fn heard_from(
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
            self.incident_member_back(device, now, effects);
            self.clear_condition(
                AlertKind::DeviceOffline,
                device,
                "device heard from again",
                now,
                effects,
            );
        }
    }

    pub(super) fn on_online(
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
    pub(super) fn repeat_help_on_the_way(&self, device: DeviceId, effects: &mut Vec<Effect>) {
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

    pub(super) fn on_last_will(
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

    pub(super) fn offline_deadline(&self, watch: &DeviceWatch) -> Option<Timestamp> {
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

    pub(super) fn reschedule_device(&mut self, device: DeviceId) {
        if let Some(deferred) = &mut self.deferred_reschedules {
            deferred.insert(device);
            return;
        }
        let due = self.devices.get(&device).and_then(|watch| self.offline_deadline(watch));
        self.offline_due.set(device, due);
    }

    pub(super) fn mark_offline(&mut self, device: DeviceId, now: Timestamp, effects: &mut Vec<Effect>) {
        let Some(watch) = self.devices.get_mut(&device) else {
            return;
        };
        watch.offline = true;
        let previous = watch.last_offline_at.replace(now);
        let detail = match watch.last_will_at.take() {
            Some(_) => "the broker reported the connection lost (last will)".to_owned(),
            None => format!("nothing heard for {} s", now.millis_since(watch.last_heard) / 1_000),
        };
        let mut trigger = Trigger::rule(AlertKind::DeviceOffline, watch.resident.clone(), Some(device), detail);
        trigger.unregistered = watch.unregistered;
        self.dirty.insert(StateKey::Device(device));
        self.reschedule_device(device);
        if self.offline_onset(device, previous, now, effects) {
            return;
        }
        tracing::info!(%device, "device offline");
        self.raise_or_join(trigger, now, effects);
    }
}
