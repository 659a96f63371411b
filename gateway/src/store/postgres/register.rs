//! The device register, assignments and the quarantine in a PostgreSQL write transaction:
//! what ingest reads and writes besides events and alerts, batch-shaped so a batch of 1,024
//! publishes costs a few round trips, not one per device. The records are the redb store's
//! own JSON (and its quarantine encoding), so an export from one store reads in the other.
//!
//! The resident register (residents, the care register's people, the end of an assignment)
//! is here too, with the redb store's rules: a resident is created only if its id is free,
//! an assignment ends only where one covers the instant, and a person's record counts as
//! changed only if it differs from the stored one.

use std::collections::{HashMap, HashSet};

use protocol::DeviceId;

use super::write::{PgWriteBatch, to_json};
use super::{PgError, PgStore};
use crate::domain::{Alert, AlertId, Assignment, DeviceRecord, QuarantineRecord, Resident, ResidentId, Timestamp};
use crate::reports::register::PersonRecord;
use crate::store::schema::encode_quarantine;
use crate::store::{Problems, QUARANTINE_PAYLOAD_LIMIT, StoreError, Unreadable};

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
                let record = found
                    .get(id.as_str())
                    .map(|text| super::from_json::<DeviceRecord>("devices", id, text))
                    .transpose();
                if let Err(unreadable) = &record {
                    self.problems.report(unreadable);
                }
                record
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
                    self.problems.report(&unreadable);
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
                Err(unreadable) => self.problems.report(&unreadable),
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

    /// Ends the device's assignment that covers `at`, at `at`;
    /// `StoreError::NoActiveAssignment` (as a `PgError::Refused`) if none does. An unreadable
    /// one covers nothing, as in redb.
    pub async fn end_assignment(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), PgError> {
        let result = self.end_assignment_unguarded(device, at).await;
        self.guard(result)
    }

    async fn end_assignment_unguarded(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), PgError> {
        let row = self
            .txn
            .query_opt(
                "SELECT from_ms, record::text FROM assignments WHERE device = $1 AND from_ms <= $2
                 ORDER BY from_ms DESC LIMIT 1",
                &[&device.as_str(), &at.as_millis()],
            )
            .await?;
        let covering = match &row {
            Some(row) => {
                let from_ms: i64 = row.try_get(0)?;
                match super::from_json::<Assignment>("assignments", format_args!("{device}@{from_ms}"), row.try_get(1)?)
                {
                    Ok(assignment) => assignment.covers(at).then_some(assignment),
                    Err(unreadable) => {
                        // It covers nothing.
                        self.problems.report(&unreadable);
                        None
                    }
                }
            }
            None => None,
        };
        let Some(mut current) = covering else {
            return Err(PgError::Refused(Box::new(StoreError::NoActiveAssignment {
                device: *device,
                at,
            })));
        };
        current.until = Some(at);
        let text = to_json("assignments", &current)?;
        self.txn
            .execute(
                "UPDATE assignments SET record = $3::text::jsonb WHERE device = $1 AND from_ms = $2",
                &[&device.as_str(), &current.from.as_millis(), &text],
            )
            .await?;
        Ok(())
    }

    /// The devices' assignments as this transaction sees them, each earliest first, in the
    /// order asked; unreadable ones are left out (and logged), as in redb.
    pub async fn assignments(&mut self, devices: &[DeviceId]) -> Result<Vec<Vec<Assignment>>, PgError> {
        let result = self.assignments_unguarded(devices).await;
        self.guard(result)
    }

    async fn assignments_unguarded(&mut self, devices: &[DeviceId]) -> Result<Vec<Vec<Assignment>>, PgError> {
        let names: Vec<&str> = devices.iter().map(DeviceId::as_str).collect();
        let rows = self
            .txn
            .query(
                "SELECT device, from_ms, record::text FROM assignments WHERE device = ANY($1::text[])
                 ORDER BY device, from_ms",
                &[&names],
            )
            .await?;
        let mut by_device: HashMap<String, Vec<Assignment>> = HashMap::new();
        for row in &rows {
            let device: String = row.try_get(0)?;
            let from_ms: i64 = row.try_get(1)?;
            match super::from_json::<Assignment>("assignments", format_args!("{device}@{from_ms}"), row.try_get(2)?) {
                Ok(assignment) => by_device.entry(device).or_default().push(assignment),
                Err(unreadable) => self.problems.report(&unreadable),
            }
        }
        Ok(devices
            .iter()
            .map(|device| by_device.get(device.as_str()).cloned().unwrap_or_default())
            .collect())
    }

    /// The resident's record as this transaction sees it; `Unreadable` if it does not decode.
    pub async fn resident(&mut self, id: &ResidentId) -> Result<Option<Resident>, PgError> {
        let result = self.resident_unguarded(id).await;
        self.guard(result)
    }

    async fn resident_unguarded(&mut self, id: &ResidentId) -> Result<Option<Resident>, PgError> {
        let row = self
            .txn
            .query_opt("SELECT record::text FROM residents WHERE id = $1", &[&id.as_str()])
            .await?;
        match row {
            Some(row) => Ok(Some(super::from_json("residents", id, row.try_get(0)?)?)),
            None => Ok(None),
        }
    }

    /// Stores the resident unless one with its id exists; whether it was stored. Two
    /// creations of one id cannot both succeed (the primary key, in the fenced transaction).
    pub async fn create_resident(&mut self, resident: &Resident) -> Result<bool, PgError> {
        let result = self.create_resident_unguarded(resident).await;
        self.guard(result)
    }

    async fn create_resident_unguarded(&mut self, resident: &Resident) -> Result<bool, PgError> {
        let text = to_json("residents", resident)?;
        let inserted = self
            .txn
            .execute(
                "INSERT INTO residents (id, record) VALUES ($1, $2::text::jsonb) ON CONFLICT (id) DO NOTHING",
                &[&resident.id.as_str(), &text],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Inserts or replaces the resident's record.
    pub async fn put_resident(&mut self, resident: &Resident) -> Result<(), PgError> {
        let result = self.put_resident_unguarded(resident).await;
        self.guard(result)
    }

    async fn put_resident_unguarded(&mut self, resident: &Resident) -> Result<(), PgError> {
        let text = to_json("residents", resident)?;
        self.txn
            .execute(
                "INSERT INTO residents (id, record) VALUES ($1, $2::text::jsonb)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&resident.id.as_str(), &text],
            )
            .await?;
        Ok(())
    }

    /// Inserts or replaces each person's record for its role (re-importing a file changes
    /// nothing). Returns how many were new or different, counted as redb counts them: in
    /// file order, each against the record stored or written before it (JSON compared as
    /// values). Two round trips, whatever the file's length.
    pub async fn upsert_people(&mut self, people: &[PersonRecord]) -> Result<usize, PgError> {
        let result = self.upsert_people_unguarded(people).await;
        self.guard(result)
    }

    async fn upsert_people_unguarded(&mut self, people: &[PersonRecord]) -> Result<usize, PgError> {
        if people.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = people.iter().map(|person| person.id.as_str()).collect();
        let roles: Vec<&str> = people.iter().map(|person| person.role.code()).collect();
        let rows = self
            .txn
            .query(
                "SELECT p.id, p.role, p.record::text FROM people p
                 JOIN unnest($1::text[], $2::text[]) AS k(id, role) ON (p.id, p.role) = (k.id, k.role)",
                &[&ids, &roles],
            )
            .await?;
        let mut current: HashMap<(String, String), serde_json::Value> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get(0)?;
            let role: String = row.try_get(1)?;
            let text: &str = row.try_get(2)?;
            // jsonb always holds valid JSON; a record this gateway cannot decode is still
            // compared (and replaced) as redb compares bytes.
            let value = serde_json::from_str(text)
                .map_err(|err| Unreadable::new("people", format_args!("{id}/{role}"), err))?;
            current.insert((id, role), value);
        }
        let mut changed = 0;
        let mut written: HashSet<(String, String)> = HashSet::new();
        for person in people {
            let value = serde_json::to_value(person).map_err(|err| PgError::Encode {
                table: "people",
                detail: err.to_string(),
            })?;
            let key = (person.id.as_str().to_owned(), person.role.code().to_owned());
            if current.get(&key) != Some(&value) {
                current.insert(key.clone(), value);
                written.insert(key);
                changed += 1;
            }
        }
        if written.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<&str> = Vec::with_capacity(written.len());
        let mut roles: Vec<&str> = Vec::with_capacity(written.len());
        let mut texts: Vec<String> = Vec::with_capacity(written.len());
        for key in &written {
            if let Some(value) = current.get(key) {
                ids.push(&key.0);
                roles.push(&key.1);
                texts.push(value.to_string());
            }
        }
        self.txn
            .execute(
                "INSERT INTO people (id, role, record)
                 SELECT id, role, record::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS p(id, role, record)
                 ON CONFLICT (id, role) DO UPDATE SET record = EXCLUDED.record",
                &[&ids, &roles, &texts],
            )
            .await?;
        Ok(changed)
    }

    /// The alert with its whole history as this transaction sees it.
    pub async fn alert(&mut self, id: AlertId) -> Result<Option<Alert>, PgError> {
        let result = super::alert_in(&self.txn, id).await;
        self.guard(result)
    }
}

/// The registers as the console, the HTTP API and the reports read them, in the redb store's
/// orders (keys compared as bytes, `COLLATE "C"`, whatever the database's locale). Unreadable
/// records are left out and logged, as redb leaves them out and lists them.
impl PgStore {
    /// Every readable device record, by id.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>, PgError> {
        let rows = self
            .client
            .query("SELECT id, record::text FROM devices ORDER BY id COLLATE \"C\"", &[])
            .await?;
        readable(
            self.problems(),
            &rows,
            "devices",
            |row| Ok(row.try_get::<_, String>(0)?),
        )
    }

    /// The resident's record; `Unreadable` if it does not decode.
    pub async fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, PgError> {
        let row = self
            .client
            .query_opt("SELECT record::text FROM residents WHERE id = $1", &[&id.as_str()])
            .await?;
        match row {
            Some(row) => Ok(Some(super::from_json("residents", id, row.try_get(0)?)?)),
            None => Ok(None),
        }
    }

    /// Every readable resident, by id.
    pub async fn residents(&self) -> Result<Vec<Resident>, PgError> {
        let rows = self
            .client
            .query("SELECT id, record::text FROM residents ORDER BY id COLLATE \"C\"", &[])
            .await?;
        readable(self.problems(), &rows, "residents", |row| {
            Ok(row.try_get::<_, String>(0)?)
        })
    }

    /// The device's readable assignments, earliest first.
    pub async fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT device, from_ms, record::text FROM assignments WHERE device = $1 ORDER BY from_ms",
                &[&device.as_str()],
            )
            .await?;
        readable(self.problems(), &rows, "assignments", assignment_key)
    }

    /// Every readable assignment, of every device, by device and start.
    pub async fn all_assignments(&self) -> Result<Vec<Assignment>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT device, from_ms, record::text FROM assignments ORDER BY device COLLATE \"C\", from_ms",
                &[],
            )
            .await?;
        readable(self.problems(), &rows, "assignments", assignment_key)
    }

    /// Every readable care-register record, by person id and role code.
    pub async fn people(&self) -> Result<Vec<PersonRecord>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT id, role, record::text FROM people ORDER BY id COLLATE \"C\", role COLLATE \"C\"",
                &[],
            )
            .await?;
        readable(self.problems(), &rows, "people", |row| {
            Ok(format!("{}/{}", row.try_get::<_, &str>(0)?, row.try_get::<_, &str>(1)?))
        })
    }
}

fn assignment_key(row: &tokio_postgres::Row) -> Result<String, PgError> {
    Ok(format!("{}@{}", row.try_get::<_, &str>(0)?, row.try_get::<_, i64>(1)?))
}

/// The rows' records (JSON text in the last column) that decode; the others are reported by
/// their key (`key_of`) and left out.
fn readable<T: serde::de::DeserializeOwned>(
    problems: &Problems,
    rows: &[tokio_postgres::Row],
    table: &'static str,
    key_of: impl Fn(&tokio_postgres::Row) -> Result<String, PgError>,
) -> Result<Vec<T>, PgError> {
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let last = row.len().saturating_sub(1);
        match super::from_json::<T>(table, key_of(row)?, row.try_get(last)?) {
            Ok(record) => found.push(record),
            Err(unreadable) => problems.report(&unreadable),
        }
    }
    Ok(found)
}
