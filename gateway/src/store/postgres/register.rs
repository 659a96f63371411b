//! The device register, assignments and the quarantine in a PostgreSQL write transaction:
//! what ingest reads and writes besides events and alerts, batch-shaped so a batch of 1,024
//! publishes costs a few round trips, not one per device. The records are the redb store's
//! own JSON (and its quarantine encoding), so an export from one store reads in the other.

use std::collections::HashMap;

use protocol::DeviceId;

use super::PgError;
use super::write::{PgWriteBatch, to_json};
use crate::domain::{Assignment, DeviceRecord, QuarantineRecord, ResidentId, Timestamp};
use crate::store::schema::encode_quarantine;
use crate::store::{QUARANTINE_PAYLOAD_LIMIT, StoreError, Unreadable};

impl PgWriteBatch<'_> {
    /// The devices' records as this transaction sees them, in the order asked; a record that
    /// does not decode is `Err` (left as it is by the caller, and listed).
    pub async fn devices(
        &mut self,
        ids: &[DeviceId],
    ) -> Result<Vec<Result<Option<DeviceRecord>, Unreadable>>, PgError> {
        let result = self.devices_unguarded(ids).await;
        self.guard(result)
    }

    async fn devices_unguarded(
        &mut self,
        ids: &[DeviceId],
    ) -> Result<Vec<Result<Option<DeviceRecord>, Unreadable>>, PgError> {
        let names: Vec<&str> = ids.iter().map(DeviceId::as_str).collect();
        let rows = self
            .txn
            .query(
                "SELECT id, record::text FROM devices WHERE id = ANY($1::text[])",
                &[&names],
            )
            .await?;
        let mut found: HashMap<String, String> = HashMap::with_capacity(rows.len());
        for row in &rows {
            found.insert(row.try_get(0)?, row.try_get(1)?);
        }
        Ok(ids
            .iter()
            .map(|id| {
                found
                    .get(id.as_str())
                    .map(|text| super::from_json::<DeviceRecord>("devices", id, text))
                    .transpose()
            })
            .collect())
    }

    /// Inserts or replaces the devices' records.
    pub async fn put_devices(&mut self, records: &[&DeviceRecord]) -> Result<(), PgError> {
        let result = self.put_devices_unguarded(records).await;
        self.guard(result)
    }

    async fn put_devices_unguarded(&mut self, records: &[&DeviceRecord]) -> Result<(), PgError> {
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = records.iter().map(|record| record.id.as_str()).collect();
        let texts = records
            .iter()
            .map(|record| to_json("devices", record))
            .collect::<Result<Vec<_>, _>>()?;
        self.txn
            .execute(
                "INSERT INTO devices (id, record)
                 SELECT id, record::jsonb FROM unnest($1::text[], $2::text[]) AS d(id, record)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&ids, &texts],
            )
            .await?;
        Ok(())
    }

    /// Records a loan of a device, with the redb store's rule: one starting at the same
    /// instant as an existing one replaces it; any other overlap is refused
    /// (`StoreError::OverlappingAssignment`, as a `PgError::Refused`).
    pub async fn assign(&mut self, assignment: &Assignment) -> Result<(), PgError> {
        let result = self.assign_unguarded(assignment).await;
        self.guard(result)
    }

    async fn assign_unguarded(&mut self, assignment: &Assignment) -> Result<(), PgError> {
        let device = assignment.device.as_str();
        let rows = self
            .txn
            .query(
                "SELECT from_ms, record::text FROM assignments WHERE device = $1 ORDER BY from_ms",
                &[&device],
            )
            .await?;
        for row in &rows {
            let from_ms: i64 = row.try_get(0)?;
            let existing = match super::from_json::<Assignment>(
                "assignments",
                format_args!("{device}@{from_ms}"),
                row.try_get(1)?,
            ) {
                Ok(existing) => existing,
                Err(unreadable) => {
                    tracing::warn!(error = %unreadable, "an assignment cannot be read; left out");
                    continue;
                }
            };
            let overlaps = existing.from != assignment.from
                && existing.until.is_none_or(|until| assignment.from < until)
                && assignment.until.is_none_or(|until| existing.from < until);
            if overlaps {
                return Err(PgError::Refused(Box::new(StoreError::OverlappingAssignment {
                    device: assignment.device,
                    existing_resident: existing.resident,
                    existing_from: existing.from,
                    existing_until: existing.until,
                })));
            }
        }
        let text = to_json("assignments", assignment)?;
        self.txn
            .execute(
                "INSERT INTO assignments (device, from_ms, record) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (device, from_ms) DO UPDATE SET record = EXCLUDED.record",
                &[&device, &assignment.from.as_millis(), &text],
            )
            .await?;
        Ok(())
    }

    /// Each device's resident at its instant, in the order asked: the assignment starting
    /// last at or before it, if it still covers it (they never overlap). An unreadable one
    /// reads as "no resident", as in redb: the event is still stored and alerts.
    pub async fn residents_for(&mut self, at: &[(DeviceId, Timestamp)]) -> Result<Vec<Option<ResidentId>>, PgError> {
        let result = self.residents_for_unguarded(at).await;
        self.guard(result)
    }

    async fn residents_for_unguarded(
        &mut self,
        at: &[(DeviceId, Timestamp)],
    ) -> Result<Vec<Option<ResidentId>>, PgError> {
        let devices: Vec<&str> = at.iter().map(|(device, _)| device.as_str()).collect();
        let instants: Vec<i64> = at.iter().map(|(_, at)| at.as_millis()).collect();
        let ordinals: Vec<i64> = (0..at.len()).map(|n| i64::try_from(n).unwrap_or(i64::MAX)).collect();
        let rows = self
            .txn
            .query(
                "SELECT q.n, a.from_ms, a.record::text
                 FROM unnest($1::text[], $2::int8[], $3::int8[]) AS q(device, at_ms, n)
                 CROSS JOIN LATERAL (
                     SELECT from_ms, record FROM assignments
                     WHERE device = q.device AND from_ms <= q.at_ms
                     ORDER BY from_ms DESC LIMIT 1
                 ) a",
                &[&devices, &instants, &ordinals],
            )
            .await?;
        let mut found = vec![None; at.len()];
        for row in &rows {
            let n: i64 = row.try_get(0)?;
            let from_ms: i64 = row.try_get(1)?;
            let (Some(slot), Some((device, instant))) = (
                usize::try_from(n).ok().and_then(|n| found.get_mut(n)),
                usize::try_from(n).ok().and_then(|n| at.get(n)),
            ) else {
                continue;
            };
            match super::from_json::<Assignment>("assignments", format_args!("{device}@{from_ms}"), row.try_get(2)?) {
                Ok(assignment) => *slot = assignment.covers(*instant).then_some(assignment.resident),
                Err(unreadable) => tracing::warn!(error = %unreadable, "an assignment cannot be read; no resident"),
            }
        }
        Ok(found)
    }

    /// Keeps the payload (cut to 1 KiB) for inspection; the oldest beyond the capacity go.
    pub async fn quarantine(&mut self, record: &QuarantineRecord) -> Result<(), PgError> {
        let result = self.quarantine_unguarded(record).await;
        self.guard(result)
    }

    async fn quarantine_unguarded(&mut self, record: &QuarantineRecord) -> Result<(), PgError> {
        let mut stored = record.clone();
        stored.original_len = record.original_len.max(record.payload.len());
        stored.payload.truncate(QUARANTINE_PAYLOAD_LIMIT);
        let bytes = encode_quarantine(&stored).map_err(|err| PgError::Encode {
            table: "quarantine",
            detail: err.to_string(),
        })?;
        self.txn
            .execute("INSERT INTO quarantine (record) VALUES ($1)", &[&bytes])
            .await?;
        let capacity = i64::try_from(self.quarantine_capacity).unwrap_or(i64::MAX);
        self.txn
            .execute(
                "DELETE FROM quarantine WHERE seq IN (SELECT seq FROM quarantine ORDER BY seq DESC OFFSET $1)",
                &[&capacity],
            )
            .await?;
        Ok(())
    }
}
