//! Retention on PostgreSQL: the redb store's removal steps (`store/retention.rs`) with the same
//! rules, each inside the caller's fenced write transaction, so a replaced leader can purge
//! nothing. What goes is decided by `crate::retention`; these remove only what they are told.
//!
//! The differences are in the bookkeeping, not the rules: PostgreSQL's own indexes stay true
//! by themselves, and the event walk resumes after a receive time (every event of the last
//! millisecond examined is finished in the same step) where redb resumes after a time-index
//! group. The per-device day summaries (`device_days`) are left alone, as on redb: they are
//! what survives.

use std::collections::HashSet;

use tokio_postgres::types::ToSql;

use super::access::stored_seq;
use super::write::{decode_row, stored_u32, to_json};
use super::{PgError, PgWriteBatch, from_json};
use crate::domain::{AlertState, Assignment, EventKey, ResidentId, Timestamp, Transition};
use crate::store::access::AuditEntry;
use crate::store::retention::{CHECKPOINT_KEY, is_telemetry};
use crate::store::schema::{AlertHeader, decode_quarantine};
use crate::store::{AuditCheckpoint, CompactedEvents, ErasureState, ErasureStep, Progress};

/// An event row's key, as the `DELETE ... unnest` statements take it.
type RowKey = (String, i64, i64, i64);

impl PgWriteBatch<'_> {
    /// Examines about `limit` events received after `resume` and before
    /// `alarms_before.max(telemetry_before)`, oldest first, and removes telemetry received
    /// before `telemetry_before` and everything else received before `alarms_before`. An
    /// event that cannot be read is kept (its class is unknown). Resumes after the last
    /// receive time examined.
    pub async fn compact_events(
        &mut self,
        telemetry_before: Timestamp,
        alarms_before: Timestamp,
        resume: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<(CompactedEvents, Option<(i64, u64)>), PgError> {
        let result = self
            .compact_events_unguarded(telemetry_before, alarms_before, resume, limit)
            .await;
        self.guard(result)
    }

    async fn compact_events_unguarded(
        &mut self,
        telemetry_before: Timestamp,
        alarms_before: Timestamp,
        resume: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<(CompactedEvents, Option<(i64, u64)>), PgError> {
        let end = telemetry_before.max(alarms_before).as_millis();
        let after = resume.map_or(i64::MIN, |(received, _)| received);
        // The receive time of the `limit`-th event: this step examines up to it, whole.
        let nth = i64::try_from(limit.max(1) - 1).unwrap_or(i64::MAX);
        let boundary: Option<i64> = self
            .txn
            .query_opt(
                "SELECT received_at_ms FROM events WHERE received_at_ms > $1 AND received_at_ms < $2
                 ORDER BY received_at_ms OFFSET $3 LIMIT 1",
                &[&after, &end, &nth],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        let upto = boundary.unwrap_or(end.saturating_sub(1));
        let rows = self
            .txn
            .query(
                "SELECT device, boot, seq, copy, received_at_ms, resident, payload FROM events
                 WHERE received_at_ms > $1 AND received_at_ms <= $2 AND received_at_ms < $3",
                &[&after, &upto, &end],
            )
            .await?;
        let mut removed = CompactedEvents::default();
        let mut going: Vec<RowKey> = Vec::new();
        for row in &rows {
            let device: &str = row.try_get(0)?;
            let (boot, seq, copy): (i64, i64, i64) = (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            let key = match protocol::DeviceId::new(device) {
                Ok(id) => EventKey {
                    device: id,
                    boot: stored_u32("boot", boot)?,
                    seq: stored_u32("seq", seq)?,
                },
                Err(err) => {
                    let unreadable =
                        crate::store::Unreadable::new("events", format_args!("{device}/{boot}/{seq}"), err);
                    self.problems.report(&unreadable);
                    continue;
                }
            };
            let event = match decode_row(
                key,
                stored_u32("copy", copy)?,
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
            ) {
                Ok(event) => event,
                Err(unreadable) => {
                    self.problems.report(&unreadable);
                    continue;
                }
            };
            let telemetry = is_telemetry(&event.body);
            let cut = if telemetry { telemetry_before } else { alarms_before };
            if event.received_at >= cut {
                continue;
            }
            going.push((device.to_owned(), boot, seq, copy));
            if telemetry {
                removed.telemetry += 1;
            } else {
                removed.alarms += 1;
            }
        }
        self.delete_events(&going).await?;
        let more = match boundary {
            Some(upto) => self
                .txn
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE received_at_ms > $1 AND received_at_ms < $2)",
                    &[&upto, &end],
                )
                .await?
                .try_get::<_, bool>(0)?,
            None => false,
        };
        Ok((removed, if more { boundary.map(|upto| (upto, 0)) } else { None }))
    }

    async fn delete_events(&self, keys: &[RowKey]) -> Result<(), PgError> {
        if keys.is_empty() {
            return Ok(());
        }
        let devices: Vec<&str> = keys.iter().map(|key| key.0.as_str()).collect();
        let boots: Vec<i64> = keys.iter().map(|key| key.1).collect();
        let seqs: Vec<i64> = keys.iter().map(|key| key.2).collect();
        let copies: Vec<i64> = keys.iter().map(|key| key.3).collect();
        self.txn
            .execute(
                "DELETE FROM events e USING unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS k(device, boot, seq, copy)
                 WHERE (e.device, e.boot, e.seq, e.copy) = (k.device, k.boot, k.seq, k.copy)",
                &[&devices, &boots, &seqs, &copies],
            )
            .await?;
        Ok(())
    }

    /// Examines up to `limit` alerts after id `resume` and removes the resolved ones whose
    /// last change (their resolution) was before `before`, with their history. Open alerts,
    /// alerts that cannot be read, and the newest alert (where numbering resumes) stay.
    pub async fn purge_closed_alerts(
        &mut self,
        before: Timestamp,
        resume: u64,
        limit: usize,
    ) -> Result<Progress<u64>, PgError> {
        let result = self.purge_closed_alerts_unguarded(before, resume, limit).await;
        self.guard(result)
    }

    async fn purge_closed_alerts_unguarded(
        &mut self,
        before: Timestamp,
        resume: u64,
        limit: usize,
    ) -> Result<Progress<u64>, PgError> {
        let newest: Option<i64> = self
            .txn
            .query_one("SELECT max(id) FROM alerts", &[])
            .await?
            .try_get(0)?;
        let rows = self
            .txn
            .query(
                "SELECT id, header::text, open FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
                &[
                    &i64::try_from(resume).unwrap_or(i64::MAX),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        let mut last_examined = None;
        let mut going: Vec<i64> = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            last_examined = u64::try_from(id).ok();
            let header = match from_json::<AlertHeader>("alerts", id, row.try_get(1)?) {
                Ok(header) => header,
                Err(unreadable) => {
                    self.problems.report(&unreadable);
                    continue;
                }
            };
            let open: bool = row.try_get(2)?;
            if header.state != AlertState::Resolved || open || Some(id) == newest {
                continue;
            }
            let closed_at = match header.transition_count.checked_sub(1) {
                Some(last) => {
                    let found = self
                        .txn
                        .query_opt(
                            "SELECT transition::text FROM alert_transitions WHERE alert_id = $1 AND idx = $2",
                            &[&id, &i64::from(last)],
                        )
                        .await?;
                    match found {
                        Some(row) => match from_json::<Transition>("alert_transitions", id, row.try_get(0)?) {
                            Ok(transition) => transition.at,
                            // Cannot tell when it closed: keep it.
                            Err(_) => continue,
                        },
                        None => header.raised_at,
                    }
                }
                None => header.raised_at,
            };
            if closed_at < before {
                going.push(id);
            }
        }
        self.delete_alerts(&going).await?;
        Ok(Progress {
            removed: going.len() as u64,
            resume: last_examined,
        })
    }

    async fn delete_alerts(&self, ids: &[i64]) -> Result<(), PgError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.txn
            .execute("DELETE FROM alert_transitions WHERE alert_id = ANY($1)", &[&ids])
            .await?;
        self.txn
            .execute("DELETE FROM alerts WHERE id = ANY($1)", &[&ids])
            .await?;
        Ok(())
    }

    /// Removes up to `limit` of the oldest audit entries written before `before` (never the
    /// newest, which the head names) and moves the checkpoint to the last one removed, so the
    /// chain still verifies from there. Stops at the first entry it cannot read.
    pub async fn purge_audit(
        &mut self,
        before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Result<Progress<()>, PgError> {
        let result = self.purge_audit_unguarded(before, now, limit).await;
        self.guard(result)
    }

    async fn purge_audit_unguarded(
        &mut self,
        before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Result<Progress<()>, PgError> {
        let newest: Option<i64> = self
            .txn
            .query_one("SELECT max(seq) FROM audit_log", &[])
            .await?
            .try_get(0)?;
        let rows = self
            .txn
            .query(
                "SELECT seq, entry FROM audit_log ORDER BY seq LIMIT $1",
                &[&i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)],
            )
            .await?;
        let mut going: Vec<i64> = Vec::new();
        let mut checkpoint = None;
        let mut more = false;
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            if Some(seq) == newest {
                break;
            }
            let entry = match crate::store::schema::from_json::<AuditEntry>("audit_log", seq, row.try_get(1)?) {
                Ok(entry) => entry,
                Err(unreadable) => {
                    self.problems.report(&unreadable);
                    break;
                }
            };
            if entry.at >= before {
                break;
            }
            if going.len() >= limit {
                more = true;
                break;
            }
            going.push(seq);
            checkpoint = Some(AuditCheckpoint {
                seq: stored_seq(seq)?,
                hash: entry.hash,
                purged_at: now,
            });
        }
        if let Some(checkpoint) = checkpoint {
            self.txn
                .execute("DELETE FROM audit_log WHERE seq = ANY($1)", &[&going])
                .await?;
            self.txn
                .execute(
                    "INSERT INTO audit_head (name, record) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
                    &[&CHECKPOINT_KEY, &to_json("audit_head", &checkpoint)?],
                )
                .await?;
        }
        Ok(Progress {
            removed: going.len() as u64,
            resume: more.then_some(()),
        })
    }

    /// Removes up to `limit` quarantined payloads received before `before`, oldest first.
    /// Stops at one it cannot read (the capacity bound evicts it in time).
    pub async fn purge_quarantine(&mut self, before: Timestamp, limit: usize) -> Result<Progress<()>, PgError> {
        let result = self.purge_quarantine_unguarded(before, limit).await;
        self.guard(result)
    }

    async fn purge_quarantine_unguarded(&mut self, before: Timestamp, limit: usize) -> Result<Progress<()>, PgError> {
        let rows = self
            .txn
            .query(
                "SELECT seq, record FROM quarantine ORDER BY seq LIMIT $1",
                &[&i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)],
            )
            .await?;
        let mut going: Vec<i64> = Vec::new();
        let mut more = false;
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            match decode_quarantine(stored_seq(seq)?, row.try_get(1)?) {
                Ok(record) if record.received_at < before => {}
                Ok(_) => break,
                Err(unreadable) => {
                    self.problems.report(&unreadable);
                    break;
                }
            }
            if going.len() >= limit {
                more = true;
                break;
            }
            going.push(seq);
        }
        if !going.is_empty() {
            self.txn
                .execute("DELETE FROM quarantine WHERE seq = ANY($1)", &[&going])
                .await?;
        }
        Ok(Progress {
            removed: going.len() as u64,
            resume: more.then_some(()),
        })
    }

    /// Removes up to `limit` of the person's events, then their alerts (stopping at an open
    /// one), then their records: care-register entries, resident record, device assignments
    /// and alert-engine state. Device-day summaries and the audit log (ids only) stay, as on
    /// redb.
    pub async fn erase_person_step(&mut self, person: &ResidentId, limit: usize) -> Result<ErasureStep, PgError> {
        let result = self.erase_person_step_unguarded(person, limit).await;
        self.guard(result)
    }

    async fn erase_person_step_unguarded(&mut self, person: &ResidentId, limit: usize) -> Result<ErasureStep, PgError> {
        let id = person.as_str();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut step = ErasureStep::default();
        let rows = self
            .txn
            .query(
                "SELECT device, boot, seq, copy FROM events WHERE resident = $1 LIMIT $2",
                &[&id, &limit],
            )
            .await?;
        if !rows.is_empty() {
            let keys = rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
                .collect::<Result<Vec<RowKey>, PgError>>()?;
            self.delete_events(&keys).await?;
            step.events = keys.len() as u64;
            return Ok(step);
        }
        let rows = self
            .txn
            .query(
                "SELECT id, open FROM alerts WHERE resident = $1 ORDER BY id LIMIT $2",
                &[&id, &limit],
            )
            .await?;
        if !rows.is_empty() {
            let mut going: Vec<i64> = Vec::new();
            for row in &rows {
                if row.try_get::<_, bool>(1)? {
                    step.state = ErasureState::OpenAlert;
                    break;
                }
                going.push(row.try_get(0)?);
            }
            self.delete_alerts(&going).await?;
            step.alerts = going.len() as u64;
            return Ok(step);
        }
        step.records += self.execute("DELETE FROM people WHERE id = $1", &[&id]).await?;
        step.records += self.execute("DELETE FROM residents WHERE id = $1", &[&id]).await?;
        let loans = self
            .txn
            .query("SELECT device, from_ms, record::text FROM assignments", &[])
            .await?;
        let mut theirs: HashSet<(String, i64)> = HashSet::new();
        for row in &loans {
            let (device, from): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            // An unreadable loan cannot be told to be theirs; readers report it.
            if let Ok(assignment) =
                from_json::<Assignment>("assignments", format_args!("{device}@{from}"), row.try_get(2)?)
                && assignment.resident == *person
            {
                theirs.insert((device, from));
            }
        }
        for (device, from) in &theirs {
            step.records += self
                .execute(
                    "DELETE FROM assignments WHERE device = $1 AND from_ms = $2",
                    &[device, from],
                )
                .await?;
        }
        let state_keys = [format!("res/{id}"), format!("rules/{id}")];
        step.records += self
            .execute(
                "DELETE FROM engine_state WHERE key = ANY($1)",
                &[&state_keys.as_slice()],
            )
            .await?;
        step.state = ErasureState::Done;
        Ok(step)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
        Ok(self.txn.execute(sql, params).await?)
    }
}
