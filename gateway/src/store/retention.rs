//! Retention at the store: small removal steps, each inside the caller's write transaction,
//! so whoever drives them (the single writer while the gateway runs, `tec-gateway purge`
//! offline) decides how many keys one transaction holds. What goes is decided by
//! `crate::retention`; these only remove what they are told, keeping every index true.
//!
//! - [`WriteBatch::compact_events`]: raw events received before a cut-off, by class
//!   (telemetry earlier than alarms), with their time and resident index entries. The
//!   per-device day summaries (`device_days`) are left alone: they are what survives.
//! - [`WriteBatch::purge_closed_alerts`]: resolved alerts closed before a cut-off, with their
//!   history and index entries. An open alert is never removed, nor the newest alert.
//! - [`WriteBatch::purge_audit`]: the oldest audit entries, leaving an [`AuditCheckpoint`]
//!   (the last removed entry's seq and hash) so the chain still verifies from there.
//! - [`WriteBatch::purge_quarantine`]: quarantined payloads received before a cut-off.
//! - [`WriteBatch::erase_person_step`]: everything held about one person.

use std::ops::Bound;

use protocol::UplinkBody;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::access::AuditEntry;
use super::register::PEOPLE;
use super::schema::*;
use super::{StoreError, WriteBatch, queries};
use crate::domain::{AlertState, Assignment, EventBody, ResidentId, Timestamp, Transition};

/// Key of the checkpoint in the `audit_head` table (beside the head).
pub(crate) const CHECKPOINT_KEY: &str = "checkpoint";

/// Where the audit chain starts once its oldest entries were removed: the last removed
/// entry's seq and hash. The first kept entry must be `seq + 1` with `prev_hash == hash`.
/// A new key in an existing table: an older gateway ignores it (its chain check then reports
/// the purged entries as missing, which they are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    pub seq: u64,
    pub hash: String,
    /// When the entries up to `seq` were removed.
    pub purged_at: Timestamp,
}

/// What one step removed, and where the next step of the same kind resumes (`None`: done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<C> {
    pub removed: u64,
    pub resume: Option<C>,
}

/// Events removed by one compaction step, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactedEvents {
    /// Heartbeats, sensor changes, activity summaries, command receipts.
    pub telemetry: u64,
    /// Alarms, cancels and bodies this gateway cannot read (kept as long as alerts).
    pub alarms: u64,
}

/// One step of erasing a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureStep {
    pub events: u64,
    pub alerts: u64,
    /// Register, resident, assignment and engine-state records.
    pub records: u64,
    pub state: ErasureState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErasureState {
    /// More to remove: call again.
    #[default]
    More,
    /// Nothing is left about the person.
    Done,
    /// The person has an open alert: nothing more is removed until it is resolved.
    OpenAlert,
}

/// An event that may be compacted after the short (telemetry) period: status and sensor
/// readings. Alarms, cancels and bodies this gateway cannot read are kept as long as alerts.
pub(crate) fn is_telemetry(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::Uplink(
            UplinkBody::Heartbeat(_)
                | UplinkBody::SensorChange { .. }
                | UplinkBody::Activity(_)
                | UplinkBody::CommandAck { .. }
        )
    )
}

impl WriteBatch<'_> {
    /// Walks the time index after `resume` up to `alarms_before.max(telemetry_before)`,
    /// examining about `limit` events, and removes telemetry received before
    /// `telemetry_before` and everything else received before `alarms_before`. An event that
    /// cannot be read is kept (its age or class is unknown). Resumes after the last index
    /// entry examined.
    pub fn compact_events(
        &mut self,
        telemetry_before: Timestamp,
        alarms_before: Timestamp,
        resume: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<(CompactedEvents, Option<(i64, u64)>), StoreError> {
        let end = telemetry_before.max(alarms_before).as_millis();
        let mut groups: Vec<((i64, u64), Vec<TimeIndexKey>)> = Vec::new();
        let mut examined = 0usize;
        let mut more = false;
        {
            let index = self.txn.open_table(EVENTS_BY_TIME)?;
            let start = resume.map_or(Bound::Unbounded, Bound::Excluded);
            for entry in index.range::<(i64, u64)>((start, Bound::Excluded((end, 0))))? {
                if examined >= limit {
                    more = true;
                    break;
                }
                let (key, value) = entry?;
                let (received, group) = key.value();
                match from_json::<Vec<TimeIndexKey>>(
                    "events_by_time",
                    format_args!("{received}/{group}"),
                    value.value(),
                ) {
                    Ok(keys) => {
                        examined += keys.len().max(1);
                        groups.push(((received, group), keys));
                    }
                    Err(unreadable) => {
                        examined += 1;
                        self.problems.report(&unreadable);
                    }
                }
            }
        }
        let resume = if more { groups.last().map(|(key, _)| *key) } else { None };
        let mut removed = CompactedEvents::default();
        let mut events = self.txn.open_table(EVENTS)?;
        let mut by_resident = self.txn.open_table(EVENTS_BY_RESIDENT)?;
        let mut index = self.txn.open_table(EVENTS_BY_TIME)?;
        for ((received, group), keys) in groups {
            let mut kept: Vec<TimeIndexKey> = Vec::with_capacity(keys.len());
            for key in &keys {
                let (device, boot, seq, copy) = (key.0.as_str(), key.1, key.2, key.3);
                let read = match events.get((device, boot, seq, copy))? {
                    // A dangling index entry: nothing to keep it for.
                    None => continue,
                    Some(bytes) => queries::event_read(device, boot, seq, copy, bytes.value()),
                };
                let event = match read {
                    Ok(read) => read.event,
                    Err(unreadable) => {
                        self.problems.report(&unreadable);
                        kept.push(key.clone());
                        continue;
                    }
                };
                let telemetry = is_telemetry(&event.body);
                let goes = if telemetry {
                    event.received_at < telemetry_before
                } else {
                    event.received_at < alarms_before
                };
                if !goes {
                    kept.push(key.clone());
                    continue;
                }
                events.remove((device, boot, seq, copy))?;
                if let Some(resident) = &event.resident {
                    by_resident.remove((
                        resident.as_str(),
                        event.received_at.as_millis(),
                        device,
                        boot,
                        seq,
                        copy,
                    ))?;
                }
                if telemetry {
                    removed.telemetry += 1;
                } else {
                    removed.alarms += 1;
                }
            }
            if kept.is_empty() {
                index.remove((received, group))?;
            } else if kept.len() != keys.len() {
                let bytes = to_json("events_by_time", &kept)?;
                index.insert((received, group), bytes.as_slice())?;
            }
        }
        Ok((removed, resume))
    }

    /// Examines up to `limit` alerts after id `resume` and removes the resolved ones whose
    /// last change (their resolution) was before `before`, with their history and index
    /// entries. Open alerts, and alerts that cannot be read, stay.
    pub fn purge_closed_alerts(
        &mut self,
        before: Timestamp,
        resume: u64,
        limit: usize,
    ) -> Result<Progress<u64>, StoreError> {
        let mut headers: Vec<(u64, AlertHeader)> = Vec::new();
        let mut last_examined = None;
        let newest;
        {
            let alerts = self.txn.open_table(ALERTS)?;
            newest = alerts.last()?.map(|(key, _)| key.value());
            for entry in alerts.range((Bound::Excluded(resume), Bound::Unbounded))?.take(limit) {
                let (key, value) = entry?;
                let id = key.value();
                last_examined = Some(id);
                match from_json::<AlertHeader>("alerts", id, value.value()) {
                    Ok(header) => headers.push((id, header)),
                    Err(unreadable) => self.problems.report(&unreadable),
                }
            }
        }
        let examined_all = last_examined.is_none();
        let mut removed = 0u64;
        let mut alerts = self.txn.open_table(ALERTS)?;
        let mut transitions = self.txn.open_table(ALERT_TRANSITIONS)?;
        let open = self.txn.open_table(OPEN_ALERTS)?;
        let mut by_resident = self.txn.open_table(ALERTS_BY_RESIDENT)?;
        for (id, header) in headers {
            // The newest alert stays whatever its age: its id is where numbering resumes
            // after a restart (`Store::max_alert_id`), so no number is ever given twice.
            if header.state != AlertState::Resolved || open.get(id)?.is_some() || Some(id) == newest {
                continue;
            }
            let last_index = header.transition_count.checked_sub(1);
            let closed_at = match last_index.map(|index| transitions.get((id, index))).transpose()? {
                Some(Some(bytes)) => match from_json::<Transition>("alert_transitions", id, bytes.value()) {
                    Ok(transition) => transition.at,
                    // Cannot tell when it closed: keep it.
                    Err(_) => continue,
                },
                _ => header.raised_at,
            };
            if closed_at >= before {
                continue;
            }
            alerts.remove(id)?;
            remove_transitions(&mut transitions, id)?;
            if let Some(resident) = &header.resident {
                by_resident.remove((resident.as_str(), id))?;
            }
            removed += 1;
        }
        Ok(Progress {
            removed,
            resume: if examined_all { None } else { last_examined },
        })
    }

    /// Removes up to `limit` of the oldest audit entries written before `before` (never the
    /// newest entry, which the head names), with their resident-index keys, and moves the
    /// checkpoint to the last one removed. Stops at the first entry it cannot read.
    pub fn purge_audit(&mut self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Progress<()>, StoreError> {
        let mut log = self.txn.open_table(AUDIT_LOG)?;
        let mut heads = self.txn.open_table(AUDIT_HEAD)?;
        let mut index = self.txn.open_table(AUDIT_BY_RESIDENT)?;
        let newest = log.last()?.map(|(key, _)| key.value());
        let mut removed = 0u64;
        let mut checkpoint = None;
        let mut more = false;
        loop {
            let Some((seq, bytes)) = log.first()?.map(|(key, value)| (key.value(), value.value().to_vec())) else {
                break;
            };
            if Some(seq) == newest {
                break;
            }
            let entry = match from_json::<AuditEntry>("audit_log", seq, &bytes) {
                Ok(entry) => entry,
                Err(unreadable) => {
                    self.problems.report(&unreadable);
                    break;
                }
            };
            if entry.at >= before {
                break;
            }
            if removed >= limit as u64 {
                more = true;
                break;
            }
            log.remove(seq)?;
            if let Some(resident) = &entry.resident {
                index.remove((resident.as_str(), seq))?;
            }
            checkpoint = Some(AuditCheckpoint {
                seq,
                hash: entry.hash,
                purged_at: now,
            });
            removed += 1;
        }
        if let Some(checkpoint) = checkpoint {
            heads.insert(CHECKPOINT_KEY, to_json("audit_head", &checkpoint)?.as_slice())?;
        }
        Ok(Progress {
            removed,
            resume: more.then_some(()),
        })
    }

    /// Removes up to `limit` quarantined payloads received before `before`, oldest first.
    /// Stops at one it cannot read (the capacity bound evicts it in time).
    pub fn purge_quarantine(&mut self, before: Timestamp, limit: usize) -> Result<Progress<()>, StoreError> {
        let mut quarantine = self.txn.open_table(QUARANTINE)?;
        let mut removed = 0u64;
        loop {
            let Some((seq, bytes)) = quarantine
                .first()?
                .map(|(key, value)| (key.value(), value.value().to_vec()))
            else {
                break;
            };
            match decode_quarantine(seq, &bytes) {
                Ok(record) if record.received_at < before => {}
                Ok(_) => break,
                Err(unreadable) => {
                    self.problems.report(&unreadable);
                    break;
                }
            }
            if removed >= limit as u64 {
                return Ok(Progress {
                    removed,
                    resume: Some(()),
                });
            }
            quarantine.remove(seq)?;
            removed += 1;
        }
        Ok(Progress { removed, resume: None })
    }

    /// Removes up to `limit` of the person's events (all classes), then their alerts, then
    /// their records: register entries, resident record (with care profile and access notes),
    /// device assignments and alert-engine state. Device-day summaries stay: they count a
    /// device's activity and no longer lead to anyone once the assignments are gone. The audit
    /// log keeps its entries (ids only, never names), as the chain requires.
    pub fn erase_person_step(&mut self, person: &ResidentId, limit: usize) -> Result<ErasureStep, StoreError> {
        let id = person.as_str();
        let mut step = ErasureStep::default();
        let mut by_resident = self.txn.open_table(EVENTS_BY_RESIDENT)?;
        let mut keys: Vec<(i64, String, u32, u32, u32)> = Vec::new();
        for entry in by_resident.range((id, i64::MIN, "", 0u32, 0u32, 0u32)..)? {
            let (key, _) = entry?;
            let (resident, received, device, boot, seq, copy) = key.value();
            if resident != id || keys.len() >= limit {
                break;
            }
            keys.push((received, device.to_owned(), boot, seq, copy));
        }
        if !keys.is_empty() {
            let mut events = self.txn.open_table(EVENTS)?;
            let mut index = self.txn.open_table(EVENTS_BY_TIME)?;
            for (received, device, boot, seq, copy) in keys {
                events.remove((device.as_str(), boot, seq, copy))?;
                by_resident.remove((id, received, device.as_str(), boot, seq, copy))?;
                let key: TimeIndexKey = (device, boot, seq, copy);
                let mut groups: Vec<((i64, u64), Vec<TimeIndexKey>)> = Vec::new();
                for entry in index.range((received, 0u64)..=(received, u64::MAX))? {
                    let (group_key, value) = entry?;
                    let (at, group) = group_key.value();
                    // An unreadable group is reported by readers; it cannot name this event.
                    if let Ok(keys) =
                        from_json::<Vec<TimeIndexKey>>("events_by_time", format_args!("{at}/{group}"), value.value())
                        && keys.contains(&key)
                    {
                        groups.push(((at, group), keys));
                    }
                }
                for (group_key, mut keys) in groups {
                    keys.retain(|k| *k != key);
                    if keys.is_empty() {
                        index.remove(group_key)?;
                    } else {
                        index.insert(group_key, to_json("events_by_time", &keys)?.as_slice())?;
                    }
                }
                step.events += 1;
            }
            return Ok(step);
        }
        drop(by_resident);
        let mut alerts_by_resident = self.txn.open_table(ALERTS_BY_RESIDENT)?;
        let alert_ids: Vec<u64> = alerts_by_resident
            .range((id, 0u64)..=(id, u64::MAX))?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        if !alert_ids.is_empty() {
            let mut alerts = self.txn.open_table(ALERTS)?;
            let mut transitions = self.txn.open_table(ALERT_TRANSITIONS)?;
            let open = self.txn.open_table(OPEN_ALERTS)?;
            for alert in alert_ids {
                if open.get(alert)?.is_some() {
                    step.state = ErasureState::OpenAlert;
                    return Ok(step);
                }
                alerts.remove(alert)?;
                remove_transitions(&mut transitions, alert)?;
                alerts_by_resident.remove((id, alert))?;
                step.alerts += 1;
            }
            return Ok(step);
        }
        drop(alerts_by_resident);
        let mut people = self.txn.open_table(PEOPLE)?;
        let mut roles: Vec<String> = Vec::new();
        for entry in people.range((id, "")..)? {
            let (key, _) = entry?;
            let (person_id, role) = key.value();
            if person_id != id {
                break;
            }
            roles.push(role.to_owned());
        }
        for role in roles {
            people.remove((id, role.as_str()))?;
            step.records += 1;
        }
        if self.txn.open_table(RESIDENTS)?.remove(id)?.is_some() {
            step.records += 1;
        }
        let mut assignments = self.txn.open_table(ASSIGNMENTS)?;
        let mut theirs: Vec<(String, i64)> = Vec::new();
        for entry in assignments.iter()? {
            let (key, value) = entry?;
            let (device, from) = key.value();
            // An unreadable loan cannot be told to be theirs; readers report it.
            if let Ok(assignment) =
                from_json::<Assignment>("assignments", format_args!("{device}@{from}"), value.value())
                && assignment.resident == *person
            {
                theirs.push((device.to_owned(), from));
            }
        }
        for (device, from) in theirs {
            assignments.remove((device.as_str(), from))?;
            step.records += 1;
        }
        let mut state = self.txn.open_table(ENGINE_STATE)?;
        for key in [format!("res/{id}"), format!("rules/{id}")] {
            if state.remove(key.as_str())?.is_some() {
                step.records += 1;
            }
        }
        step.state = ErasureState::Done;
        Ok(step)
    }

    /// Ends the transaction without writing anything (a dry run).
    pub fn abort(self) -> Result<(), StoreError> {
        self.txn.abort()?;
        Ok(())
    }
}

fn remove_transitions(transitions: &mut redb::Table<(u64, u32), &[u8]>, alert: u64) -> Result<(), StoreError> {
    let indexes: Vec<u32> = transitions
        .range((alert, 0u32)..=(alert, u32::MAX))?
        .map(|entry| entry.map(|(key, _)| key.value().1))
        .collect::<Result<_, _>>()?;
    for index in indexes {
        transitions.remove((alert, index))?;
    }
    Ok(())
}

impl super::Store {
    /// Where the audit chain starts, if its oldest entries were purged.
    pub fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        let txn = self.db.begin_read()?;
        let heads = txn.open_table(AUDIT_HEAD)?;
        let found = heads
            .get(CHECKPOINT_KEY)?
            .map(|value| from_json("audit_head", CHECKPOINT_KEY, value.value()))
            .transpose();
        if let Err(unreadable) = &found {
            self.problems.report(unreadable);
        }
        Ok(found?)
    }

    /// Residents with an open alert (from the open-alert index): never erased.
    pub fn residents_with_open_alerts(&self) -> Result<Vec<ResidentId>, StoreError> {
        Ok(self
            .open_alerts()?
            .into_iter()
            .filter_map(|alert| alert.resident)
            .collect())
    }
}
