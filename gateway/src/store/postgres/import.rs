//! `tec-gateway store import`: the PostgreSQL store copied into a new redb store, the way
//! back of `store export` (a site returning to the embedded store, or an offline copy to
//! inspect). The same tables are copied (`copy.rs`), as stored: event payloads byte for byte
//! with their copy numbers, receive times and residents; alerts with their histories; the
//! alert-change log under its own seqs with its counter; audit entries byte for byte with the
//! head. Login sessions are not copied: users log in again.
//!
//! - **A quiet source, one snapshot.** The caller holds the writer lease (on its own
//!   connection, renewed here while the copy runs, and checked still held at the end), so no
//!   gateway leads meanwhile, and every table is read in one `REPEATABLE READ READ ONLY`
//!   transaction on a second connection.
//! - **A new target, all or nothing.** The store is written to `tec-gateway.redb.partial`
//!   beside its final name and renamed into place only once complete and durable: a rename
//!   within one directory is atomic, so the data directory holds the whole store or none,
//!   whatever fails or crashes first. (One redb write transaction would be atomic too, but
//!   would hold a whole store's changed pages in memory; the partial file is committed in
//!   chunks instead, and is the import's own until renamed.) A directory whose store holds
//!   anything is refused: the import never merges.
//! - **Strict.** A row that does not decode stops the import, naming its table and key: it
//!   could not be copied as stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use protocol::DeviceId;
use redb::{Durability, ReadOnlyDatabase, ReadableDatabase};
use serde::de::DeserializeOwned;
use tokio_postgres::{IsolationLevel, Row, Transaction};

use super::copy::{CopiedEvent, CopyCounts, EVENT_CHUNK, LoggedChange, Snapshot};
use super::write::decode_row;
use super::{PgError, PgStore, from_json};
use crate::domain::{Alert, EventKey, StoredEvent, Timestamp, Transition};
use crate::reports::uptake::DeviceDay;
use crate::store::access::{AuditHead, HEAD_KEY, catch_up_audit_index};
use crate::store::activity::put_device_days;
use crate::store::alert_changes::AlertChangeRecord;
use crate::store::backup::{BackupError, partial_path, sync_parent, tables_with_rows};
use crate::store::retention::CHECKPOINT_KEY;
use crate::store::schema::{
    ALERT_CHANGE_NEXT_SEQ_KEY, ALERT_CHANGES, AUDIT_HEAD, AUDIT_LOG, AlertHeader, EVENTS, EventEncoder, META, USERS,
    decode_quarantine, to_json,
};
use crate::store::{AuditCheckpoint, STORE_FILE_NAME, Store, StoreError, Unreadable, WriteBatch};

/// Event chunks written per redb commit of the partial file.
const CHUNKS_PER_COMMIT: usize = 50;

/// Why an import did not happen. In every case the data directory is as it was.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{} already holds a store with data (rows in: {}): the import writes a new store only and \
         never merges; nothing was written",
        path.display(), tables.join(", ")
    )]
    NotEmpty { path: PathBuf, tables: Vec<&'static str> },
    #[error("a row of the PostgreSQL store cannot be read, so it cannot be copied as stored: {0}; nothing was written")]
    Unreadable(Unreadable),
    #[error("reading the PostgreSQL store: {0}; nothing was written")]
    Source(PgError),
    #[error(
        "the writer lease could not be renewed during the import ({0}): a gateway may have led \
         meanwhile; nothing was written"
    )]
    LeaseLost(PgError),
    #[error("writing the redb store: {0}; nothing was written")]
    Target(#[from] StoreError),
    #[error("{} I/O error: {source}; nothing was written", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<PgError> for ImportError {
    fn from(err: PgError) -> Self {
        match err {
            PgError::Unreadable(unreadable) => Self::Unreadable(unreadable),
            other => Self::Source(other),
        }
    }
}

impl From<tokio_postgres::Error> for ImportError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Source(err.into())
    }
}

impl From<Unreadable> for ImportError {
    fn from(unreadable: Unreadable) -> Self {
        Self::Unreadable(unreadable)
    }
}

impl From<BackupError> for ImportError {
    fn from(err: BackupError) -> Self {
        match err {
            BackupError::Io { path, source } => Self::Io { path, source },
            BackupError::Store(store) => Self::Target(store),
            other => Self::Target(StoreError::Io(std::io::Error::other(other.to_string()))),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies the PostgreSQL store into a new redb store in `data_dir`. `lease` must hold the
/// writer lease (it is renewed while the copy runs; the caller gives it back); `reader` is a
/// second connection to the same database, for the snapshot.
pub async fn import_to_redb(
    lease: &mut PgStore,
    reader: &mut PgStore,
    data_dir: &Path,
) -> Result<CopyCounts, ImportError> {
    let target = Target::prepare(data_dir)?;
    let copied = match Store::open(&target.partial) {
        Ok(store) => while_renewing(lease, copy_into(reader, store.with_quarantine_capacity(usize::MAX))).await,
        Err(err) => Err(err.into()),
    };
    let placed = copied.and_then(|counts| target.place().map(|()| counts));
    if placed.is_err() {
        target.discard();
    }
    placed
}

/// Where the new store goes, and what was there before.
struct Target {
    final_path: PathBuf,
    partial: PathBuf,
    /// The directory did not exist: removed again if the import fails.
    created_dir: Option<PathBuf>,
    /// An empty store already at the final name, held open read-only (a shared lock, which a
    /// gateway's exclusive one waits for) so that no gateway starts on it before the new one
    /// replaces it. Read-only, so a refused directory is left byte for byte as it was.
    empty_store: Option<ReadOnlyDatabase>,
}

impl Target {
    fn prepare(data_dir: &Path) -> Result<Self, ImportError> {
        let created_dir = if data_dir.exists() {
            None
        } else {
            std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            Some(data_dir.to_path_buf())
        };
        let final_path = data_dir.join(STORE_FILE_NAME);
        let empty_store = if final_path.exists() {
            let existing = ReadOnlyDatabase::open(&final_path).map_err(StoreError::from)?;
            let holding = tables_with_rows(&existing.begin_read().map_err(StoreError::from)?)?;
            if !holding.is_empty() {
                return Err(ImportError::NotEmpty {
                    path: final_path,
                    tables: holding,
                });
            }
            Some(existing)
        } else {
            None
        };
        let partial = partial_path(&final_path);
        // A leftover of an interrupted import or restore is no store: ours to replace.
        match std::fs::remove_file(&partial) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(io(&partial)(err)),
            _ => {}
        }
        Ok(Self {
            final_path,
            partial,
            created_dir,
            empty_store,
        })
    }

    /// Gives the complete store its name: it replaces an empty store held open, and otherwise
    /// is linked under the name only if nothing took the name meanwhile (never replacing a
    /// store a gateway created in between).
    fn place(&self) -> Result<(), ImportError> {
        // Opening it as a store proves the gateway will start on it (and, its markers being
        // right, changes nothing).
        drop(Store::open(&self.partial)?);
        if self.empty_store.is_some() {
            std::fs::rename(&self.partial, &self.final_path).map_err(io(&self.final_path))?;
        } else {
            std::fs::hard_link(&self.partial, &self.final_path).map_err(io(&self.final_path))?;
            // The store is in place; a second name left behind would be replaced next time.
            let _ = std::fs::remove_file(&self.partial);
        }
        sync_parent(&self.final_path)?;
        Ok(())
    }

    /// Removes what the import made.
    fn discard(&self) {
        let _ = std::fs::remove_file(&self.partial);
        if let Some(dir) = &self.created_dir {
            // Only if empty: never more than this import made.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs `work` while renewing the writer lease every third of its length (so no gateway can
/// take over however long the copy takes), then renews it once more: that succeeds only if
/// the lease never ran out, proof that no gateway led at any time during the copy. A renewal
/// runs to its end before `work` goes on (never cancelled halfway, which would leave it
/// unknown whether the lease is still held).
async fn while_renewing<T>(
    lease: &mut PgStore,
    work: impl Future<Output = Result<T, ImportError>>,
) -> Result<T, ImportError> {
    let mut work = std::pin::pin!(work);
    let every = lease.options.lease_ttl / 3;
    let mut due = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let done = loop {
        tokio::select! {
            done = &mut work => break done?,
            _ = due.tick() => {
                lease.renew_lease().await.map_err(ImportError::LeaseLost)?;
            }
        }
    };
    lease.renew_lease().await.map_err(ImportError::LeaseLost)?;
    Ok(done)
}

async fn copy_into(reader: &mut PgStore, store: Store) -> Result<CopyCounts, ImportError> {
    let txn = reader
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let snapshot = read_snapshot(&txn).await?;
    let mut counts = CopyCounts::default();

    let portal = txn
        .bind(
            "SELECT device, boot, seq, copy, received_at_ms, resident, payload FROM events
             ORDER BY device, boot, seq, copy",
            &[],
        )
        .await?;
    let chunk_rows = i32::try_from(EVENT_CHUNK).unwrap_or(i32::MAX);
    let mut batch = bulk_batch(&store)?;
    let mut chunks = 0;
    loop {
        let rows = txn.query_portal(&portal, chunk_rows).await?;
        if rows.is_empty() {
            break;
        }
        let events = rows.iter().map(event_row).collect::<Result<Vec<_>, _>>()?;
        batch.insert_imported_events(&events)?;
        let copied: Vec<CopiedEvent> = events.into_iter().map(|(row, _)| row).collect();
        counts.add_events(&copied);
        chunks += 1;
        if chunks % CHUNKS_PER_COMMIT == 0 {
            batch.commit()?;
            batch = bulk_batch(&store)?;
        }
    }
    drop(portal);
    txn.commit().await?;

    for alert in &snapshot.alerts {
        batch.put_alert(alert)?;
    }
    batch.insert_alert_changes_keeping_seq(&snapshot.alert_changes, snapshot.last_alert_change_seq)?;
    for (key, value) in &snapshot.engine_state {
        batch.put_engine_state(key, Some(value))?;
    }
    for device in &snapshot.devices {
        batch.put_device(device)?;
    }
    for assignment in &snapshot.assignments {
        batch.assign(assignment)?;
    }
    for resident in &snapshot.residents {
        batch.put_resident(resident)?;
    }
    batch.upsert_people(&snapshot.people)?;
    // Oldest first, so redb numbers them in the same order.
    for record in snapshot.quarantine.iter().rev() {
        batch.quarantine(record)?;
    }
    batch.insert_imported_users(&snapshot.users)?;
    batch.insert_audit_keeping_bytes(
        &snapshot.audit,
        snapshot.audit_head.as_ref(),
        snapshot.audit_checkpoint.as_ref(),
    )?;
    put_device_days(&batch.txn, &snapshot.device_days)?;
    snapshot.count_into(&mut counts);
    // The last commit makes every earlier one durable too.
    batch
        .txn
        .set_durability(Durability::Immediate)
        .map_err(|err| StoreError::from(redb::Error::from(err)))?;
    batch.commit()?;
    Ok(counts)
}

/// A write transaction on the partial file that is not synced on commit: nothing of it counts
/// until the last commit (durable) and the rename.
fn bulk_batch(store: &Store) -> Result<WriteBatch<'_>, StoreError> {
    let mut batch = store.begin_write()?;
    batch
        .txn
        .set_durability(Durability::None)
        .map_err(|err| StoreError::from(redb::Error::from(err)))?;
    Ok(batch)
}

/// One event row, checked as the gateway reads it (a payload that does not decode, or whose
/// header disagrees with its key, stops the import).
fn event_row(row: &Row) -> Result<(CopiedEvent, StoredEvent), ImportError> {
    let device: &str = row.try_get(0)?;
    let (boot, seq, copy): (i64, i64, i64) = (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
    let name = format_args!("{device}/{boot}/{seq} copy {copy}");
    let unreadable = |detail: &dyn std::fmt::Display| Unreadable::new("events", name, detail);
    let device = DeviceId::new(device).map_err(|err| unreadable(&err))?;
    let number = |value: i64| u32::try_from(value).map_err(|_| unreadable(&"a key number out of range"));
    let key = EventKey {
        device,
        boot: number(boot)?,
        seq: number(seq)?,
    };
    let copy = number(copy)?;
    let received_at_ms: i64 = row.try_get(4)?;
    let resident: Option<&str> = row.try_get(5)?;
    let payload: Vec<u8> = row.try_get(6)?;
    let event = decode_row(key, copy, received_at_ms, resident, &payload)?;
    let copied = CopiedEvent {
        key,
        copy,
        received_at: event.received_at,
        resident: event.resident.clone(),
        payload,
    };
    Ok((copied, event))
}

/// Reads every table but the events, each row decoded as the gateway decodes it.
async fn read_snapshot(txn: &Transaction<'_>) -> Result<Snapshot, ImportError> {
    let alert_changes = txn
        .query(
            "SELECT seq, committed_at_ms, alert::text FROM alert_changes ORDER BY seq",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            let seq = stored_seq("alert_changes", row.try_get(0)?)?;
            Ok(LoggedChange {
                seq,
                committed_at: Timestamp::from_millis(row.try_get(1)?),
                header: from_json("alert_changes", seq, row.try_get(2)?)?,
            })
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    let counter = txn
        .query_opt("SELECT value FROM tec_counters WHERE name = 'alert_change_seq'", &[])
        .await?;
    let last_alert_change_seq = match counter {
        Some(row) => stored_seq("tec_counters", row.try_get(0)?)?,
        None => 0,
    };
    let engine_state = txn
        .query("SELECT key, value FROM engine_state ORDER BY key", &[])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<Vec<_>, ImportError>>()?;
    let quarantine = txn
        .query("SELECT seq, record FROM quarantine ORDER BY seq DESC", &[])
        .await?
        .iter()
        .map(|row| {
            Ok(decode_quarantine(
                stored_seq("quarantine", row.try_get(0)?)?,
                row.try_get(1)?,
            )?)
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    let audit = txn
        .query("SELECT seq, entry FROM audit_log ORDER BY seq", &[])
        .await?
        .iter()
        .map(|row| Ok((stored_seq("audit_log", row.try_get(0)?)?, row.try_get(1)?)))
        .collect::<Result<Vec<_>, ImportError>>()?;
    let audit_head: Option<AuditHead> = audit_record(txn, HEAD_KEY).await?;
    let audit_checkpoint: Option<AuditCheckpoint> = audit_record(txn, CHECKPOINT_KEY).await?;
    let device_days = txn
        .query(
            "SELECT device, day, first_ms, last_ms, events, duplicates FROM device_days ORDER BY device, day",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            let (device, day): (String, i32) = (row.try_get(0)?, row.try_get(1)?);
            // Read as the gateway reads them (saturated at u32, as redb keeps them).
            let count = |value: i64| {
                super::reads::count(value)
                    .ok_or_else(|| Unreadable::new("device_days", format_args!("{device}/{day}"), "a negative count"))
            };
            let activity = DeviceDay {
                first: Timestamp::from_millis(row.try_get(2)?),
                last: Timestamp::from_millis(row.try_get(3)?),
                events: count(row.try_get(4)?)?,
                duplicates: count(row.try_get(5)?)?,
            };
            Ok((device, day, activity))
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    let key = |row: &Row| row.try_get::<_, String>(0);
    Ok(Snapshot {
        alerts: read_alerts(txn).await?,
        alert_changes,
        last_alert_change_seq,
        engine_state,
        devices: records(txn, "devices", "SELECT id, record::text FROM devices ORDER BY id", key).await?,
        assignments: records(
            txn,
            "assignments",
            "SELECT device, from_ms, record::text FROM assignments ORDER BY device, from_ms",
            |row| Ok(format!("{}@{}", row.try_get::<_, &str>(0)?, row.try_get::<_, i64>(1)?)),
        )
        .await?,
        residents: records(
            txn,
            "residents",
            "SELECT id, record::text FROM residents ORDER BY id",
            key,
        )
        .await?,
        people: records(
            txn,
            "people",
            "SELECT id, role, record::text FROM people ORDER BY id, role",
            |row| Ok(format!("{}/{}", row.try_get::<_, &str>(0)?, row.try_get::<_, &str>(1)?)),
        )
        .await?,
        quarantine,
        users: records(
            txn,
            "users",
            "SELECT username, record::text FROM users ORDER BY username",
            key,
        )
        .await?,
        audit,
        audit_head,
        audit_checkpoint,
        device_days,
    })
}

/// The head or the checkpoint (`audit_head` rows, by name).
async fn audit_record<T: DeserializeOwned>(txn: &Transaction<'_>, name: &str) -> Result<Option<T>, ImportError> {
    let row = txn
        .query_opt("SELECT record::text FROM audit_head WHERE name = $1", &[&name])
        .await?;
    match row {
        Some(row) => Ok(Some(from_json("audit_head", name, row.try_get(0)?)?)),
        None => Ok(None),
    }
}

/// Every alert with its whole history, in id order.
async fn read_alerts(txn: &Transaction<'_>) -> Result<Vec<Alert>, ImportError> {
    let mut histories: HashMap<i64, Vec<Transition>> = HashMap::new();
    for row in txn
        .query(
            "SELECT alert_id, idx, transition::text FROM alert_transitions ORDER BY alert_id, idx",
            &[],
        )
        .await?
    {
        let (id, index): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let history = histories.entry(id).or_default();
        if usize::try_from(index).ok() != Some(history.len()) {
            return Err(Unreadable::new(
                "alert_transitions",
                format_args!("{id}/{index}"),
                format_args!("transition {index} follows {} stored", history.len()),
            )
            .into());
        }
        history.push(from_json(
            "alert_transitions",
            format_args!("{id}/{index}"),
            row.try_get(2)?,
        )?);
    }
    let mut alerts = Vec::new();
    for row in txn
        .query("SELECT id, header::text FROM alerts ORDER BY id", &[])
        .await?
    {
        let id: i64 = row.try_get(0)?;
        let header: AlertHeader = from_json("alerts", id, row.try_get(1)?)?;
        let mut history = histories.remove(&id).unwrap_or_default();
        let count = header.transition_count as usize;
        if history.len() < count {
            return Err(Unreadable::new(
                "alerts",
                id,
                format_args!("{count} transitions in its header, {} stored", history.len()),
            )
            .into());
        }
        // Rows beyond the header's count belong to no committed state of the alert.
        history.truncate(count);
        alerts.push(header.into_alert(history));
    }
    Ok(alerts)
}

/// The records (JSON text in the last column) of a query, each decoded; the first that does
/// not stops the import, named by `key_of`.
async fn records<T: DeserializeOwned>(
    txn: &Transaction<'_>,
    table: &'static str,
    sql: &str,
    key_of: impl Fn(&Row) -> Result<String, tokio_postgres::Error>,
) -> Result<Vec<T>, ImportError> {
    let rows = txn.query(sql, &[]).await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let last = row.len().saturating_sub(1);
        found.push(from_json(table, key_of(row)?, row.try_get(last)?)?);
    }
    Ok(found)
}

fn stored_seq(table: &'static str, seq: i64) -> Result<u64, Unreadable> {
    u64::try_from(seq).map_err(|_| Unreadable::new(table, seq, "a negative sequence number"))
}

impl WriteBatch<'_> {
    /// Stores event rows under their own keys and copy numbers, with the time and resident
    /// indexes as ingest would have (the per-device activity is copied as it was counted).
    fn insert_imported_events(&mut self, rows: &[(CopiedEvent, StoredEvent)]) -> Result<(), StoreError> {
        let mut encoder = EventEncoder::default();
        {
            let mut table = self.txn.open_table(EVENTS)?;
            for (row, event) in rows {
                let bytes = encoder.encode(event.received_at, event.resident.as_ref(), &row.payload)?;
                let key = (row.key.device.as_str(), row.key.boot, row.key.seq, row.copy);
                if table.insert(key, bytes)?.is_some() {
                    return Err(StoreError::Encode {
                        table: "events",
                        detail: format!("{} copy {} came twice", row.key, row.copy),
                    });
                }
            }
        }
        let stored: Vec<(&StoredEvent, u32)> = rows.iter().map(|(row, event)| (event, row.copy)).collect();
        self.write_lookup_indexes(&stored)
    }

    /// Stores alert changes under their own seqs and sets the counter to `last_seq` (which may
    /// be above the newest kept change: the counter never goes back).
    fn insert_alert_changes_keeping_seq(&mut self, changes: &[LoggedChange], last_seq: u64) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(ALERT_CHANGES)?;
        for change in changes {
            let record = AlertChangeRecord {
                committed_at: change.committed_at,
                alert: change.header.clone(),
            };
            table.insert(change.seq, to_json("alert_changes", &record)?.as_slice())?;
        }
        if last_seq > 0 {
            self.txn
                .open_table(META)?
                .insert(ALERT_CHANGE_NEXT_SEQ_KEY, last_seq.saturating_add(1))?;
        }
        Ok(())
    }

    /// Stores user records as they are (password hashes, roles, one-time flags).
    fn insert_imported_users(&mut self, users: &[crate::store::UserRecord]) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(USERS)?;
        for user in users {
            table.insert(user.username.as_str(), to_json("users", user)?.as_slice())?;
        }
        Ok(())
    }

    /// Stores audit entries under their seqs with their bytes untouched (the hash chain covers
    /// them), the head and the checkpoint, then indexes them by resident as the store does.
    fn insert_audit_keeping_bytes(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        head: Option<&AuditHead>,
        checkpoint: Option<&AuditCheckpoint>,
    ) -> Result<(), StoreError> {
        {
            let mut log = self.txn.open_table(AUDIT_LOG)?;
            for (seq, entry) in entries {
                log.insert(*seq, entry.as_slice())?;
            }
        }
        {
            let mut heads = self.txn.open_table(AUDIT_HEAD)?;
            if let Some(head) = head {
                heads.insert(HEAD_KEY, to_json("audit_head", head)?.as_slice())?;
            }
            if let Some(checkpoint) = checkpoint {
                heads.insert(CHECKPOINT_KEY, to_json("audit_head", checkpoint)?.as_slice())?;
            }
        }
        catch_up_audit_index(&self.txn)?;
        Ok(())
    }
}
