//! What survives a restart: restoring the engine and the state entries it hands the store.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **State.** `meta/next_alert_id`, `meta/silence_counted_from`, `meta/incident` (the
//!   infrastructure incident in progress: its alert and last change), `dev/<device>` (watch,
//!   battery latch, last counted offline), `res/<resident>` (bed timer, first movement of the day, last checked
//!   day), `rules/<resident>`, `alarms/<alert>` (the alarm events of an open alert, for
//!   feedback and cancels), `cancel/<device>/<boot>/<seq>` (a cancel held for that alarm),
//!   all serde_json. Timers are derived from these on restore and
//!   indexed by due time, so a tick costs O(log n) plus what fires.

use super::*;

impl AlertEngine {
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
                Some(StateKey::Incident) => {
                    engine.flood.incident = Some(decode(&key, &value)?);
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
                Some(StateKey::HeldCancel(alarm)) => {
                    let held: HeldCancel = decode(&key, &value)?;
                    engine.held_cancel_due.set(alarm, Some(held.expires_at));
                    engine.held_cancels.insert(alarm, held);
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
        engine.restore_flood();
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

    /// State entries changed since the last call, for the store to persist in the same
    /// write transaction as the events that caused them (`None` = delete).
    pub fn take_state_changes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::with_capacity(dirty.len());
        for key in dirty {
            let value = match &key {
                StateKey::NextAlertId => Some(encode(&self.next_alert_id.0)),
                StateKey::SilenceCountedFrom => self.silence_counted_from.as_ref().map(encode),
                StateKey::Incident => self.flood.incident.as_ref().map(encode),
                StateKey::Device(device) => self.devices.get(device).map(encode),
                StateKey::Resident(resident) => self.residents.get(resident).filter(|s| !s.is_empty()).map(encode),
                StateKey::Rules(resident) => self.rules.get(resident).map(encode),
                StateKey::Alarms(alert) => self.alarms.get(alert).map(encode),
                StateKey::HeldCancel(alarm) => self.held_cancels.get(alarm).map(encode),
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
