//! `tec-gateway store export`: a stopped gateway's redb store copied into an empty PostgreSQL
//! store, so a site moves to PostgreSQL without losing anything it kept.
//!
//! Everything is copied as stored: event payloads byte for byte with their copy numbers,
//! receive times and residents; alerts with their whole histories; the alert-change log under
//! its own seqs with its counter (so a console following it sees no jump); audit entries byte
//! for byte (their hashes cover the bytes, so the chain still verifies) with the head. Login
//! sessions are not copied: users log in again.
//!
//! The whole copy is one write transaction under the writer lease: the lease row stays locked
//! until it commits, so no gateway can lead meanwhile, and a failure leaves PostgreSQL as empty
//! as it was (the export can simply be run again). A PostgreSQL store that already holds
//! anything is refused: the export never merges two stores.

use std::ops::Bound;

use protocol::DeviceId;
use redb::ReadableDatabase;

use super::copy::{CopiedEvent, CopyCounts, DEVICE_DAY_CHUNK, EVENT_CHUNK, LoggedChange, Snapshot};
use super::write::{PgWriteBatch, to_json};
use super::{CommitOutcome, PgError, PgStore};
use crate::domain::{EventKey, ResidentId};
use crate::store::access::{AccessStore, AuditEntry, AuditHead, HEAD_KEY, UserRecord};
use crate::store::activity::StoredDeviceDay;
use crate::store::retention::CHECKPOINT_KEY;
use crate::store::schema::{AlertHeader, EVENTS, decode_event, open_envelope};
use crate::store::{
    AlertChangesSince, AlertFilter, AuditCheckpoint, MAX_ALERT_CHANGES_PAGE, Store, StoreError, Unreadable,
};

/// Tables whose rows mean the PostgreSQL store is in use (the lease table aside).
const DATA_TABLES: &[&str] = &[
    "events",
    "alerts",
    "alert_transitions",
    "alert_changes",
    "tec_counters",
    "engine_state",
    "devices",
    "assignments",
    "quarantine",
    "residents",
    "people",
    "users",
    "sessions",
    "audit_log",
    "audit_head",
    "device_days",
];

/// Why an export did not happen, or may not have.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "the PostgreSQL store is not empty (rows in: {}): the export copies into an empty store only \
         and never merges; nothing was written",
        tables.join(", ")
    )]
    NotEmpty { tables: Vec<&'static str> },
    #[error("reading the redb store: {0}")]
    Source(#[from] StoreError),
    #[error("a record of the redb store cannot be read, so it cannot be copied: {0}")]
    Unreadable(#[from] Unreadable),
    #[error(
        "{count} record(s) of the redb store cannot be read (the first: {first}): a record that \
         cannot be read cannot be copied as stored; nothing was written"
    )]
    UnreadableRecords { count: u64, first: Unreadable },
    #[error("writing to PostgreSQL: {0}")]
    Target(#[from] PgError),
    #[error("PostgreSQL refused the commit ({reason}): nothing was written")]
    RolledBack { reason: String },
    #[error(
        "the commit's outcome is unknown ({reason}): the store may or may not have been copied; \
         run the export again: it is refused as not empty if the copy landed"
    )]
    Unknown { reason: String },
}

/// The position of an event row in redb's key order.
type EventPosition = (String, u32, u32, u32);

impl Store {
    /// Up to `limit` event rows after `after` in key order, with their payload bytes (the
    /// public reads give events decoded; PostgreSQL must keep the bytes as received).
    fn exported_events_after(
        &self,
        after: Option<&EventPosition>,
        limit: usize,
    ) -> Result<Vec<CopiedEvent>, ExportError> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        let events = txn.open_table(EVENTS).map_err(StoreError::from)?;
        let start = match after {
            Some((device, boot, seq, copy)) => Bound::Excluded((device.as_str(), *boot, *seq, *copy)),
            None => Bound::Unbounded,
        };
        let mut found = Vec::with_capacity(limit);
        for entry in events
            .range::<(&str, u32, u32, u32)>((start, Bound::Unbounded))
            .map_err(StoreError::from)?
            .take(limit)
        {
            let (key, value) = entry.map_err(StoreError::from)?;
            let (device, boot, seq, copy) = key.value();
            let bytes = value.value();
            let name = format_args!("{device}/{boot}/{seq} copy {copy}");
            let record = decode_event(device, boot, seq, copy, bytes)?;
            let (_, payload) = open_envelope(bytes).map_err(|detail| Unreadable::new("events", name, detail))?;
            let device = DeviceId::new(device).map_err(|err| Unreadable::new("events", name, err))?;
            found.push(CopiedEvent {
                key: EventKey { device, boot, seq },
                copy,
                received_at: record.received_at,
                resident: record.resident,
                payload: payload.to_vec(),
            });
        }
        Ok(found)
    }

    /// Every alert change the log still keeps, oldest first.
    fn kept_alert_changes(&self) -> Result<Vec<LoggedChange>, ExportError> {
        let mut changes = Vec::new();
        let mut after = 0;
        loop {
            match self.alert_changes_since(after, MAX_ALERT_CHANGES_PAGE)? {
                AlertChangesSince::Changes(page) => {
                    if let Some(unreadable) = page.unreadable.into_iter().next() {
                        return Err(unreadable.into());
                    }
                    let done = page.next_after == after || page.next_after >= page.last_seq;
                    after = page.next_after;
                    changes.extend(page.changes.into_iter().map(|change| LoggedChange {
                        seq: change.seq,
                        committed_at: change.committed_at,
                        header: AlertHeader::of(&change.alert),
                    }));
                    if done {
                        return Ok(changes);
                    }
                }
                // The oldest changes were pruned by the retention: start at the oldest kept.
                AlertChangesSince::TooOld { oldest_kept, .. } => after = oldest_kept.saturating_sub(1),
                AlertChangesSince::Ahead { .. } => return Ok(changes),
            }
        }
    }
}

/// The export reads the snapshot before its transaction opens (so the transaction is never
/// idle for long while redb is read; only event chunks are read inside).
impl Snapshot {
    /// Reads it all. The store's list reads leave out (and report) a record they cannot read:
    /// any such record refuses the export, which would otherwise quietly drop it.
    fn read_redb(source: &Store) -> Result<Self, ExportError> {
        let snapshot = Self {
            alerts: source.alerts(&AlertFilter::default())?,
            alert_changes: source.kept_alert_changes()?,
            last_alert_change_seq: source.last_alert_change_seq()?,
            engine_state: source.engine_state()?,
            devices: source.devices()?,
            assignments: source.all_assignments()?,
            residents: source.residents()?,
            people: source.people()?,
            quarantine: source.quarantined(None)?,
            users: AccessStore::users(source)?,
            audit: AccessStore::audit_raw(source)?,
            audit_head: AccessStore::audit_head(source)?,
            audit_checkpoint: source.audit_checkpoint()?,
            device_days: source.all_device_days()?,
        };
        if let Some(first) = source.unreadable().into_iter().next() {
            return Err(ExportError::UnreadableRecords {
                count: source.unreadable_count(),
                first,
            });
        }
        Ok(snapshot)
    }
}

/// Copies the whole redb store `source` into the empty PostgreSQL store `target`, in one
/// transaction. `target` must hold the writer lease; it keeps it (the caller gives it back).
pub async fn export_redb(source: &Store, target: &mut PgStore) -> Result<CopyCounts, ExportError> {
    let snapshot = Snapshot::read_redb(source)?;
    let mut batch = target.begin_write().await?;
    let holdings = batch.exported_holdings().await?;
    if !holdings.is_empty() {
        return Err(ExportError::NotEmpty { tables: holdings });
    }
    let mut counts = CopyCounts::default();

    let mut after: Option<EventPosition> = None;
    loop {
        let rows = source.exported_events_after(after.as_ref(), EVENT_CHUNK)?;
        let Some(last) = rows.last() else { break };
        after = Some((
            last.key.device.as_str().to_owned(),
            last.key.boot,
            last.key.seq,
            last.copy,
        ));
        batch.insert_exported_events(&rows).await?;
        counts.add_events(&rows);
    }

    for alert in &snapshot.alerts {
        batch.put_alert(alert).await?;
    }
    batch
        .insert_alert_changes_keeping_seq(&snapshot.alert_changes, snapshot.last_alert_change_seq)
        .await?;
    for (key, value) in &snapshot.engine_state {
        batch.put_engine_state(key, Some(value)).await?;
    }
    batch.put_devices(&snapshot.devices.iter().collect::<Vec<_>>()).await?;
    for assignment in &snapshot.assignments {
        batch.assign(assignment).await?;
    }
    for resident in &snapshot.residents {
        batch.put_resident(resident).await?;
    }
    batch.upsert_people(&snapshot.people).await?;
    // Oldest first, so PostgreSQL numbers them in the same order.
    for record in snapshot.quarantine.iter().rev() {
        batch.quarantine(record).await?;
    }
    batch.insert_exported_users(&snapshot.users).await?;
    batch
        .insert_audit_keeping_bytes(
            &snapshot.audit,
            snapshot.audit_head.as_ref(),
            snapshot.audit_checkpoint.as_ref(),
        )
        .await?;
    for days in snapshot.device_days.chunks(DEVICE_DAY_CHUNK) {
        batch.insert_exported_device_days(days).await?;
    }
    snapshot.count_into(&mut counts);

    match batch.commit().await {
        CommitOutcome::Committed => Ok(counts),
        CommitOutcome::RolledBack { reason } => Err(ExportError::RolledBack { reason }),
        CommitOutcome::Unknown { reason } => Err(ExportError::Unknown { reason }),
    }
}

impl PgWriteBatch<'_> {
    /// The data tables that hold any row.
    async fn exported_holdings(&mut self) -> Result<Vec<&'static str>, PgError> {
        let sql = DATA_TABLES
            .iter()
            .map(|table| format!("SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let result = self.txn.query(&sql, &[]).await.map_err(PgError::from);
        let rows = self.guard(result)?;
        let mut named: Vec<&str> = Vec::with_capacity(rows.len());
        for row in &rows {
            named.push(row.try_get(0)?);
        }
        // In the list's order, whatever order the server answered in.
        let found = DATA_TABLES
            .iter()
            .filter(|table| named.contains(table))
            .copied()
            .collect();
        Ok(found)
    }

    /// Inserts event rows as they are, copy numbers included (the target is empty: a key
    /// already present fails the statement rather than being skipped).
    async fn insert_exported_events(&mut self, rows: &[CopiedEvent]) -> Result<(), PgError> {
        let devices: Vec<&str> = rows.iter().map(|row| row.key.device.as_str()).collect();
        let boots: Vec<i64> = rows.iter().map(|row| i64::from(row.key.boot)).collect();
        let seqs: Vec<i64> = rows.iter().map(|row| i64::from(row.key.seq)).collect();
        let copies: Vec<i64> = rows.iter().map(|row| i64::from(row.copy)).collect();
        let received: Vec<i64> = rows.iter().map(|row| row.received_at.as_millis()).collect();
        let residents: Vec<Option<&str>> = rows
            .iter()
            .map(|row| row.resident.as_ref().map(ResidentId::as_str))
            .collect();
        let payloads: Vec<&[u8]> = rows.iter().map(|row| row.payload.as_slice()).collect();
        let result = self
            .txn
            .execute(
                "INSERT INTO events (device, boot, seq, copy, received_at_ms, resident, payload)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::bytea[])",
                &[&devices, &boots, &seqs, &copies, &received, &residents, &payloads],
            )
            .await
            .map(drop)
            .map_err(PgError::from);
        self.guard(result)
    }

    /// Inserts alert changes under their own seqs and sets the counter to `last_seq` (which
    /// may be above the newest kept change: the counter never goes back).
    async fn insert_alert_changes_keeping_seq(
        &mut self,
        changes: &[LoggedChange],
        last_seq: u64,
    ) -> Result<(), PgError> {
        let result = self.insert_alert_changes_unguarded(changes, last_seq).await;
        self.guard(result)
    }

    async fn insert_alert_changes_unguarded(&mut self, changes: &[LoggedChange], last_seq: u64) -> Result<(), PgError> {
        let mut seqs: Vec<i64> = Vec::with_capacity(changes.len());
        let mut committed: Vec<i64> = Vec::with_capacity(changes.len());
        let mut headers: Vec<String> = Vec::with_capacity(changes.len());
        for change in changes {
            seqs.push(bigint("alert_changes", change.seq)?);
            committed.push(change.committed_at.as_millis());
            headers.push(to_json("alert_changes", &change.header)?);
        }
        if !seqs.is_empty() {
            self.txn
                .execute(
                    "INSERT INTO alert_changes (seq, committed_at_ms, alert)
                     SELECT seq, committed_at_ms, alert::jsonb
                     FROM unnest($1::int8[], $2::int8[], $3::text[]) AS c(seq, committed_at_ms, alert)",
                    &[&seqs, &committed, &headers],
                )
                .await?;
        }
        if last_seq > 0 {
            self.txn
                .execute(
                    "INSERT INTO tec_counters (name, value) VALUES ('alert_change_seq', $1)",
                    &[&bigint("tec_counters", last_seq)?],
                )
                .await?;
        }
        Ok(())
    }

    /// Inserts activity records as they are (the target is empty: nothing to merge with).
    async fn insert_exported_device_days(&mut self, days: &[StoredDeviceDay]) -> Result<(), PgError> {
        let rows = days
            .iter()
            .map(|(device, day, activity)| (device.as_str(), *day, activity));
        let result = self.merge_device_days(rows).await;
        self.guard(result)
    }

    /// Inserts user records as they are (password hashes, roles, one-time flags).
    async fn insert_exported_users(&mut self, users: &[UserRecord]) -> Result<(), PgError> {
        let result = self.insert_users_unguarded(users).await;
        self.guard(result)
    }

    async fn insert_users_unguarded(&mut self, users: &[UserRecord]) -> Result<(), PgError> {
        if users.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = users.iter().map(|user| user.username.as_str()).collect();
        let records = users
            .iter()
            .map(|user| to_json("users", user))
            .collect::<Result<Vec<_>, _>>()?;
        self.txn
            .execute(
                "INSERT INTO users (username, record)
                 SELECT username, record::jsonb FROM unnest($1::text[], $2::text[]) AS u(username, record)",
                &[&names, &records],
            )
            .await?;
        Ok(())
    }

    /// Inserts audit entries under their seqs with their bytes untouched (the hash chain
    /// covers them), each beside the resident it names, and the head.
    async fn insert_audit_keeping_bytes(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        head: Option<&AuditHead>,
        checkpoint: Option<&AuditCheckpoint>,
    ) -> Result<(), PgError> {
        let result = self.insert_audit_unguarded(entries, head, checkpoint).await;
        self.guard(result)
    }

    async fn insert_audit_unguarded(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        head: Option<&AuditHead>,
        checkpoint: Option<&AuditCheckpoint>,
    ) -> Result<(), PgError> {
        let mut seqs: Vec<i64> = Vec::with_capacity(entries.len());
        let mut residents: Vec<Option<String>> = Vec::with_capacity(entries.len());
        let mut bytes: Vec<&[u8]> = Vec::with_capacity(entries.len());
        for (seq, entry) in entries {
            seqs.push(bigint("audit_log", *seq)?);
            // An entry that does not decode is copied all the same (verification names it);
            // it just has no resident to be found by.
            residents.push(
                serde_json::from_slice::<AuditEntry>(entry)
                    .ok()
                    .and_then(|entry| entry.resident),
            );
            bytes.push(entry.as_slice());
        }
        if !seqs.is_empty() {
            self.txn
                .execute(
                    "INSERT INTO audit_log (seq, resident, entry)
                     SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[])",
                    &[&seqs, &residents, &bytes],
                )
                .await?;
        }
        let head = head.map(|head| to_json("audit_head", head)).transpose()?;
        let checkpoint = checkpoint
            .map(|checkpoint| to_json("audit_head", checkpoint))
            .transpose()?;
        for (name, record) in [(HEAD_KEY, head), (CHECKPOINT_KEY, checkpoint)] {
            if let Some(record) = record {
                self.txn
                    .execute(
                        "INSERT INTO audit_head (name, record) VALUES ($1, $2::text::jsonb)",
                        &[&name, &record],
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

fn bigint(table: &'static str, value: u64) -> Result<i64, PgError> {
    i64::try_from(value).map_err(|_| PgError::Encode {
        table,
        detail: format!("{value} above the bigint range"),
    })
}
