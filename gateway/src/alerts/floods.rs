//! Floods: many devices losing contact at once (a broker restart, a network or power cut in a
//! block of flats) become one infrastructure incident, not hundreds of offline alerts.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **Floods.** Only no-comms is grouped: every alarm and every other rule alerts as
//!   always, during an incident too. Devices counted offline are remembered by when
//!   (`last_offline_at`, persisted with the device). While fewer than `flood_threshold` went
//!   offline within `flood_window_s`, each alerts on its own at once, as before. The device
//!   that reaches the threshold raises one `InfrastructureIncident` (technical, no device or
//!   resident) listing every device of the window still silent (`Alert::affected_devices`:
//!   device and resident ids, since, back). The window's individual offline alerts are folded
//!   in: unacknowledged ones close as `GroupedIntoIncident` with a note naming the incident;
//!   acknowledged ones get that note and stay with their operator.
//! - **Joining.** While the incident is open and the count in the window is still at the
//!   threshold (the flood goes on), a device going offline joins it instead of alerting. A
//!   device failing once the flood has stopped alerts on its own, so an unrelated fault is
//!   never hidden in a long-running incident.
//! - **Ending.** Devices coming back are marked `back_at` (kept in the list). The incident
//!   ends when all are back, or when fewer than the threshold are still silent and none has
//!   joined or come back for `flood_settle_s` (so a recovery in progress does not spawn
//!   alerts for devices seconds from returning). Each device still silent then gets its own
//!   `DeviceOffline` alert, and the incident auto-clears if unacknowledged (else a note
//!   leaves it to its operator). An operator resolving the incident ends it the same way:
//!   nothing still silent is left without an alert.
//! - **Cost.** The list lives in the incident alert; its changes within one engine call are
//!   coalesced into one `AlertChanged`, so a flood of n devices in one tick is one write.

use std::collections::HashMap;

use super::*;
use crate::domain::AffectedDevice;
use state::IncidentState;

/// The incident in progress, with an index into its alert's device list.
#[derive(Debug, Default)]
pub(super) struct Flood {
    /// Devices counted offline, by when; pruned to the window when counting.
    pub onsets: BTreeSet<(Timestamp, DeviceId)>,
    pub incident: Option<IncidentState>,
    /// Position of each device in the incident alert's `affected_devices`.
    pub members: HashMap<DeviceId, usize>,
    /// Members not back yet.
    pub silent: usize,
    pub due: Schedule<AlertId>,
    /// The incident alert changed since it was last handed out.
    pub changed: bool,
}

impl AlertEngine {
    /// `None` when grouping is off.
    fn flood_threshold(&self) -> Option<usize> {
        let threshold = usize::try_from(self.config.flood_threshold).unwrap_or(usize::MAX);
        (threshold >= 2).then_some(threshold)
    }

    /// `device` was just counted offline (`previous`: when it last was). True when an
    /// incident takes it, so it raises no alert of its own.
    pub(super) fn offline_onset(
        &mut self,
        device: DeviceId,
        previous: Option<Timestamp>,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let onsets = &mut self.flood.onsets;
        if let Some(previous) = previous {
            onsets.remove(&(previous, device));
        }
        onsets.insert((now, device));
        let window_start = now.plus_ms(-self.config.flood_window_ms());
        while onsets.first().is_some_and(|(at, _)| *at <= window_start) {
            onsets.pop_first();
        }
        let Some(threshold) = self.flood_threshold() else {
            return false;
        };
        if self.flood.onsets.len() < threshold {
            return false;
        }
        match self.flood.incident {
            Some(_) => self.join_incident(device, now),
            None => self.open_incident(now, effects),
        }
        true
    }

    fn open_incident(&mut self, now: Timestamp, effects: &mut Vec<Effect>) {
        let counted = self.flood.onsets.len();
        let silent: Vec<(Timestamp, DeviceId)> = self
            .flood
            .onsets
            .iter()
            .filter(|(_, device)| self.devices.get(device).is_some_and(|watch| watch.offline))
            .copied()
            .collect();
        let detail = format!(
            "{counted} devices lost contact within {} s: one incident instead of an alert each \
             (affected_devices lists them)",
            self.config.flood_window_s
        );
        let trigger = Trigger::rule(AlertKind::InfrastructureIncident, None, None, detail);
        let Some(id) = self.raise_or_join(trigger, now, effects) else {
            return;
        };
        tracing::warn!(alert = %id, devices = counted, "infrastructure incident: many devices lost contact at once");
        self.flood.incident = Some(IncidentState {
            alert: id,
            last_change: now,
        });
        self.dirty.insert(StateKey::Incident);
        for (since, device) in silent {
            self.add_member(device, since);
            self.fold_into_incident(device, id, now, effects);
        }
        self.flood.changed = true;
        self.check_incident(now, effects);
    }

    fn add_member(&mut self, device: DeviceId, since: Timestamp) {
        let resident = self.devices.get(&device).and_then(|watch| watch.resident.clone());
        let Some(list) = self
            .flood
            .incident
            .and_then(|incident| self.open.get_mut(&incident.alert))
            .map(|alert| &mut alert.affected_devices)
        else {
            return;
        };
        match self.flood.members.get(&device).and_then(|at| list.get_mut(*at)) {
            Some(member) => {
                if member.back_at.take().is_some() {
                    self.flood.silent += 1;
                }
                member.since = since;
                member.resident = resident;
            }
            None => {
                self.flood.members.insert(device, list.len());
                list.push(AffectedDevice {
                    device,
                    resident,
                    since,
                    back_at: None,
                });
                self.flood.silent += 1;
            }
        }
    }

    /// The device's own offline alert, raised earlier in the window, is taken over.
    fn fold_into_incident(&mut self, device: DeviceId, incident: AlertId, now: Timestamp, effects: &mut Vec<Effect>) {
        let subject = (AlertKind::DeviceOffline, Subject::Device(device));
        let Some(id) = self.open_by_subject.get(&subject).copied() else {
            return;
        };
        let Some(state) = self.open.get(&id).map(|alert| alert.state) else {
            return;
        };
        let text = format!("grouped into infrastructure incident {incident}");
        if state == AlertState::Raised {
            self.close(id, None, Outcome::GroupedIntoIncident, Some(text), now, effects);
        } else {
            let text = format!("{text}; acknowledged alerts are left for the operator to resolve");
            self.note(id, GATEWAY_OPERATOR, text, now, effects);
        }
    }

    fn join_incident(&mut self, device: DeviceId, now: Timestamp) {
        let Some(alert) = self.flood.incident.as_mut().map(|incident| {
            incident.last_change = now;
            incident.alert
        }) else {
            return;
        };
        tracing::info!(%device, %alert, "device offline: part of the infrastructure incident");
        self.dirty.insert(StateKey::Incident);
        self.add_member(device, now);
        self.flood.changed = true;
        self.reschedule_incident();
    }

    /// A device was heard from again: mark it back in the incident, which may end.
    pub(super) fn incident_member_back(&mut self, device: DeviceId, now: Timestamp, effects: &mut Vec<Effect>) {
        let Some(incident) = &mut self.flood.incident else {
            return;
        };
        let Some(member) = self
            .flood
            .members
            .get(&device)
            .and_then(|at| self.open.get_mut(&incident.alert)?.affected_devices.get_mut(*at))
        else {
            return;
        };
        if member.back_at.is_some() {
            return;
        }
        member.back_at = Some(now);
        incident.last_change = now;
        self.flood.silent = self.flood.silent.saturating_sub(1);
        self.flood.changed = true;
        self.dirty.insert(StateKey::Incident);
        self.check_incident(now, effects);
    }

    /// When the incident ends: when all are back (at once), or a settle time after the last
    /// change once fewer than the threshold are silent.
    pub(super) fn incident_deadline(&self) -> Option<Timestamp> {
        let incident = self.flood.incident?;
        let threshold = self.flood_threshold().unwrap_or(usize::MAX);
        if self.flood.silent == 0 {
            Some(incident.last_change)
        } else if self.flood.silent < threshold {
            Some(incident.last_change.plus_ms(self.config.flood_settle_ms()))
        } else {
            None
        }
    }

    pub(super) fn reschedule_incident(&mut self) {
        if let Some(incident) = self.flood.incident {
            let due = self.incident_deadline();
            self.flood.due.set(incident.alert, due);
        }
    }

    /// Reschedule, and end the incident if its time has come.
    pub(super) fn check_incident(&mut self, now: Timestamp, effects: &mut Vec<Effect>) {
        self.reschedule_incident();
        if self.incident_deadline().is_some_and(|due| due <= now) {
            self.end_incident(now, true, effects);
        }
    }

    /// Every device still silent gets its own offline alert. `close_alert`: the engine closes
    /// (or notes) the incident alert; false when an operator is resolving it.
    pub(super) fn end_incident(&mut self, now: Timestamp, close_alert: bool, effects: &mut Vec<Effect>) {
        let Some(incident) = self.flood.incident.take() else {
            return;
        };
        self.dirty.insert(StateKey::Incident);
        self.flood.due.set(incident.alert, None);
        self.flood.members.clear();
        self.flood.silent = 0;
        self.flood.changed = false;
        let affected = self
            .open
            .get(&incident.alert)
            .map(|alert| alert.affected_devices.clone())
            .unwrap_or_default();
        let still_silent: Vec<&AffectedDevice> = affected.iter().filter(|member| member.back_at.is_none()).collect();
        tracing::info!(
            alert = %incident.alert,
            devices = affected.len(),
            still_silent = still_silent.len(),
            "infrastructure incident over"
        );
        if close_alert {
            let text = format!(
                "incident over: {} of {} devices back; {} still silent now alerted one by one",
                affected.len() - still_silent.len(),
                affected.len(),
                still_silent.len()
            );
            match self.open.get(&incident.alert).map(|alert| alert.state) {
                Some(AlertState::Raised) => {
                    self.close(incident.alert, None, Outcome::AutoCleared, Some(text), now, effects);
                }
                Some(_) => {
                    let text = format!("{text}; acknowledged alerts are left for the operator to resolve");
                    self.note(incident.alert, GATEWAY_OPERATOR, text, now, effects);
                }
                None => {}
            }
        }
        for member in still_silent {
            let Some(watch) = self.devices.get(&member.device).filter(|watch| watch.offline) else {
                continue;
            };
            let detail = format!(
                "still silent after infrastructure incident {} ended (offline since {})",
                incident.alert, member.since
            );
            let mut trigger = Trigger::rule(
                AlertKind::DeviceOffline,
                watch.resident.clone(),
                Some(member.device),
                detail,
            );
            trigger.unregistered = watch.unregistered;
            self.raise_or_join(trigger, now, effects);
        }
    }

    /// Hand out the incident alert once for all the changes of one engine call.
    pub(super) fn flush_incident(&mut self, effects: &mut Vec<Effect>) {
        if !std::mem::take(&mut self.flood.changed) {
            return;
        }
        if let Some(alert) = self.flood.incident.and_then(|incident| self.open.get(&incident.alert)) {
            effects.push(Effect::AlertChanged(alert.clone()));
        }
    }

    /// After restore: the incident (if its alert is still open), its index and timer, and
    /// the recent offline counts.
    pub(super) fn restore_flood(&mut self) {
        for (device, watch) in &self.devices {
            if let Some(at) = watch.last_offline_at {
                self.flood.onsets.insert((at, *device));
            }
        }
        let Some(incident) = self.flood.incident else {
            return;
        };
        let Some(alert) = self.open.get(&incident.alert) else {
            // Closed elsewhere (e.g. between two commits): the incident is over.
            self.flood.incident = None;
            self.dirty.insert(StateKey::Incident);
            return;
        };
        for (at, member) in alert.affected_devices.iter().enumerate() {
            self.flood.members.insert(member.device, at);
            if member.back_at.is_none() {
                self.flood.silent += 1;
            }
        }
        self.reschedule_incident();
    }
}
