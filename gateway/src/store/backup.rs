//! Online backup and restore of the store.
//!
//! A redb read transaction is an MVCC snapshot: every table copied inside ONE read transaction
//! is the store as of one instant, while the single writer goes on committing alarms (it never
//! waits for a reader; the snapshot only keeps the pages it reads from being reused until it
//! ends). The copy goes into a new redb file with a manifest (`backup_manifest`: rows per table
//! as counted in the snapshot transaction), is checked against that manifest, and only then
//! takes its final name. A restore checks a file the same way before it becomes a store.
//!
//! [`every_table!`] is the one list of the store's tables: `Store::open` creates them from it
//! and the backup copies them from it, and a backup refuses a store holding a table the list
//! does not name, so a table added without the list cannot silently be left out of backups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, Value, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::schema::{META, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
use super::{STORE_FILE_NAME, Store, StoreError};

/// Calls `$then!` with every table definition of the store. Add a new table HERE (it is then
/// created on open, copied by backups and checked by restores).
macro_rules! every_table {
    ($then:ident) => {
        $then!(
            $crate::store::schema::META,
            $crate::store::schema::EVENTS,
            $crate::store::schema::EVENTS_BY_TIME,
            $crate::store::schema::EVENTS_BY_RESIDENT,
            $crate::store::schema::ALERTS,
            $crate::store::schema::ALERT_TRANSITIONS,
            $crate::store::schema::OPEN_ALERTS,
            $crate::store::schema::ALERTS_BY_RESIDENT,
            $crate::store::schema::ALERT_CHANGES,
            $crate::store::schema::QUARANTINE,
            $crate::store::schema::DEVICES,
            $crate::store::schema::RESIDENTS,
            $crate::store::schema::ASSIGNMENTS,
            $crate::store::schema::ENGINE_STATE,
            $crate::store::schema::USERS,
            $crate::store::schema::SESSIONS,
            $crate::store::schema::AUDIT_LOG,
            $crate::store::schema::AUDIT_HEAD,
            $crate::store::schema::AUDIT_BY_RESIDENT,
            $crate::store::activity::DEVICE_DAYS,
            $crate::store::register::PEOPLE
        )
    };
}

/// The names of every table, in [`every_table!`] order.
pub fn table_names() -> Vec<&'static str> {
    macro_rules! names {
        ($($table:expr),*) => { vec![$($table.name()),*] };
    }
    every_table!(names)
}

/// Rows per table and the `_`-prefixed facts below; lives only in backup files.
const MANIFEST: TableDefinition<&str, u64> = TableDefinition::new("backup_manifest");
/// When the snapshot was taken (ms since the epoch, the gateway's clock).
const MANIFEST_TAKEN_AT: &str = "_taken_at_ms";
/// Rows copied per write transaction of the backup file (bounds its memory).
const ROWS_PER_COMMIT: u64 = 50_000;

/// A backup or restore could not be made; nothing was left under the final name.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: a backup never overwrites a file; choose another name")]
    OutputExists(PathBuf),
    #[error("{0} is not empty: restore only into a new or empty data directory")]
    DataDirNotEmpty(PathBuf),
    #[error(
        "the store has a table {0:?} that this gateway's backup does not know; refusing an incomplete backup \
         (is the store from a newer gateway?)"
    )]
    UnknownTable(String),
    #[error("{path} is not a usable tec-gateway backup: {detail}")]
    NotABackup { path: PathBuf, detail: String },
    #[error("{path} I/O error: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn not_a_backup(path: &Path, detail: impl std::fmt::Display) -> Self {
        Self::NotABackup {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }
}

/// Rows of one table in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

/// What a backup holds (read back from the file, and equal to what the snapshot counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// When the snapshot was taken, ms since the epoch.
    pub taken_at_ms: i64,
    pub schema_version: u64,
    /// Every table, in [`table_names`] order.
    pub tables: Vec<TableRows>,
    pub bytes: u64,
}

impl BackupSummary {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// The rows of `table` (0 for a table it does not list).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.iter().find(|t| t.table == table).map_or(0, |t| t.rows)
    }

    /// One line per table, for a person checking a backup.
    pub fn table_lines(&self) -> String {
        let width = self.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
        self.tables
            .iter()
            .map(|t| format!("  {:<width$}  {:>12}\n", t.table, t.rows))
            .collect()
    }
}

/// A finished backup: where, what, and how long the snapshot was held.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    pub summary: BackupSummary,
    pub took: Duration,
}

/// Told `(rows or bytes done, total)` as a long copy goes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

fn copy_table<K: Key + 'static, V: Value + 'static>(
    source: &ReadTransaction,
    target: &mut Option<WriteTransaction>,
    db: &Database,
    definition: TableDefinition<K, V>,
    copied: &mut u64,
    total: u64,
    progress: Progress<'_>,
) -> Result<u64, BackupError> {
    let from = source.open_table(definition).map_err(StoreError::from)?;
    let mut rows = 0;
    let mut iter = from.iter().map_err(StoreError::from)?;
    loop {
        // A write transaction per chunk (not durable until the last commit), so a store of
        // millions of rows is not one transaction's worth of dirty pages in memory.
        let txn = match target.take() {
            Some(txn) => txn,
            None => begin_bulk(db)?,
        };
        let mut done = false;
        let mut chunk = 0;
        {
            let mut to = txn.open_table(definition).map_err(StoreError::from)?;
            for _ in 0..ROWS_PER_COMMIT {
                match iter.next() {
                    Some(entry) => {
                        let (key, value) = entry.map_err(StoreError::from)?;
                        to.insert(key.value(), value.value()).map_err(StoreError::from)?;
                        chunk += 1;
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
        }
        rows += chunk;
        *copied += chunk;
        progress(*copied, total);
        if done {
            *target = Some(txn);
            return Ok(rows);
        }
        txn.commit().map_err(StoreError::from)?;
    }
}

fn begin_bulk(db: &Database) -> Result<WriteTransaction, BackupError> {
    let mut txn = db.begin_write().map_err(StoreError::from)?;
    txn.set_durability(Durability::None)
        .map_err(|e| StoreError::from(redb::Error::from(e)))?;
    Ok(txn)
}

/// Rows of every table in `txn`, refusing a table the list does not know.
fn snapshot_counts(txn: &ReadTransaction) -> Result<BTreeMap<&'static str, u64>, BackupError> {
    let known = table_names();
    for handle in txn.list_tables().map_err(StoreError::from)? {
        if !known.contains(&handle.name()) {
            return Err(BackupError::UnknownTable(handle.name().to_owned()));
        }
    }
    if let Some(handle) = txn.list_multimap_tables().map_err(StoreError::from)?.next() {
        return Err(BackupError::UnknownTable(handle.name().to_owned()));
    }
    let mut counts = BTreeMap::new();
    macro_rules! count {
        ($($table:expr),*) => {
            $(
                let rows = txn.open_table($table).map_err(StoreError::from)?.len().map_err(StoreError::from)?;
                counts.insert($table.name(), rows);
            )*
        };
    }
    every_table!(count);
    Ok(counts)
}

impl Store {
    /// Copies a consistent snapshot of the whole store into a new file `out` (which must not
    /// exist), verifies it and returns what it holds. Safe while the gateway runs: the writer
    /// is not held up by the snapshot (see the module doc). `taken_at_ms` is recorded in it.
    pub fn backup_to(&self, out: &Path, taken_at_ms: i64, progress: Progress<'_>) -> Result<BackupReport, BackupError> {
        let started = Instant::now();
        if out.exists() {
            return Err(BackupError::OutputExists(out.to_path_buf()));
        }
        let partial = partial_path(out);
        // A leftover of an interrupted backup is ours to replace.
        remove_if_exists(&partial)?;
        let result = self.write_snapshot(&partial, taken_at_ms, progress);
        let counts = match result {
            Ok(counts) => counts,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let summary = match verify_backup(&partial) {
            Ok(summary) if counts_of(&summary) == counts => summary,
            Ok(summary) => {
                let _ = std::fs::remove_file(&partial);
                return Err(BackupError::not_a_backup(
                    &partial,
                    format!("the copy holds {:?}, the snapshot {counts:?}", counts_of(&summary)),
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        if out.exists() {
            let _ = std::fs::remove_file(&partial);
            return Err(BackupError::OutputExists(out.to_path_buf()));
        }
        std::fs::rename(&partial, out).map_err(BackupError::io(out))?;
        sync_parent(out)?;
        Ok(BackupReport {
            path: out.to_path_buf(),
            summary,
            took: started.elapsed(),
        })
    }

    /// Copies every table within one read transaction; returns the rows it counted in it.
    fn write_snapshot(
        &self,
        partial: &Path,
        taken_at_ms: i64,
        progress: Progress<'_>,
    ) -> Result<BTreeMap<&'static str, u64>, BackupError> {
        let snapshot = self.db.begin_read().map_err(StoreError::from)?;
        let counts = snapshot_counts(&snapshot)?;
        let total: u64 = counts.values().sum();
        let target = Database::create(partial).map_err(StoreError::from)?;
        let mut txn: Option<WriteTransaction> = None;
        let mut copied = 0;
        macro_rules! copy {
            ($($table:expr),*) => {
                $(
                    let rows = copy_table(&snapshot, &mut txn, &target, $table, &mut copied, total, progress)?;
                    if counts.get($table.name()) != Some(&rows) {
                        return Err(BackupError::not_a_backup(partial, format_args!(
                            "table {} gave {rows} rows, the snapshot counted {:?}", $table.name(), counts.get($table.name()))));
                    }
                )*
            };
        }
        every_table!(copy);
        drop(snapshot);
        let mut txn = match txn {
            Some(txn) => txn,
            None => begin_bulk(&target)?,
        };
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::from(redb::Error::from(e)))?;
        {
            let mut manifest = txn.open_table(MANIFEST).map_err(StoreError::from)?;
            for (table, rows) in &counts {
                manifest.insert(*table, *rows).map_err(StoreError::from)?;
            }
            manifest
                .insert(MANIFEST_TAKEN_AT, u64::try_from(taken_at_ms).unwrap_or(0))
                .map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)?;
        Ok(counts)
    }
}

fn counts_of(summary: &BackupSummary) -> BTreeMap<&'static str, u64> {
    table_names()
        .into_iter()
        .map(|name| (name, summary.rows(name)))
        .collect()
}

/// Opens a backup file and checks it: redb's own integrity check, a manifest, every table of
/// this gateway present with the rows the manifest says, no table it does not know, a schema
/// this gateway reads. The file is opened for writing (redb checks that way), so callers
/// verify a file of their own (the fresh backup, or the restore's copy).
pub fn verify_backup(path: &Path) -> Result<BackupSummary, BackupError> {
    // redb panics on some damaged pages instead of returning an error: a damaged file is
    // refused like any other, never the end of the gateway or the command.
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_open(path)));
    let mut summary = match checked {
        Ok(result) => result?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unreadable");
            return Err(BackupError::not_a_backup(path, format_args!("damaged: {what}")));
        }
    };
    // Measured once redb has closed the file (closing writes its allocator state).
    summary.bytes = std::fs::metadata(path).map_err(BackupError::io(path))?.len();
    Ok(summary)
}

fn verify_open(path: &Path) -> Result<BackupSummary, BackupError> {
    let mut db = Database::open(path).map_err(|e| BackupError::not_a_backup(path, e))?;
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => {
            return Err(BackupError::not_a_backup(
                path,
                "redb found damage (it was repaired in this copy)",
            ));
        }
        Err(e) => return Err(BackupError::not_a_backup(path, e)),
    }
    let txn = db.begin_read().map_err(|e| BackupError::not_a_backup(path, e))?;
    let manifest = txn
        .open_table(MANIFEST)
        .map_err(|_| BackupError::not_a_backup(path, "no backup manifest (a store file, not a backup?)"))?;
    let fact = |key: &str| -> Result<Option<u64>, BackupError> {
        Ok(manifest
            .get(key)
            .map_err(|e| BackupError::not_a_backup(path, e))?
            .map(|v| v.value()))
    };
    let taken_at_ms = fact(MANIFEST_TAKEN_AT)?.map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
    let schema_version = txn
        .open_table(META)
        .ok()
        .and_then(|meta| meta.get(SCHEMA_VERSION_KEY).ok().flatten().map(|v| v.value()))
        .ok_or_else(|| BackupError::not_a_backup(path, "no schema version"))?;
    if schema_version > u64::from(SCHEMA_VERSION) {
        return Err(BackupError::Store(StoreError::SchemaTooNew {
            found: u32::try_from(schema_version).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION,
        }));
    }
    let known = table_names();
    for handle in txn.list_tables().map_err(|e| BackupError::not_a_backup(path, e))? {
        if handle.name() != MANIFEST.name() && !known.contains(&handle.name()) {
            return Err(BackupError::UnknownTable(handle.name().to_owned()));
        }
    }
    let mut tables = Vec::new();
    macro_rules! check {
        ($($table:expr),*) => {
            $(
                let name = $table.name();
                let expected = fact(name)?
                    .ok_or_else(|| BackupError::not_a_backup(path, format_args!("the manifest does not list table {name}")))?;
                let found = txn
                    .open_table($table)
                    .and_then(|t| t.len().map_err(redb::TableError::from))
                    .map_err(|e| BackupError::not_a_backup(path, format_args!("table {name}: {e}")))?;
                if found != expected {
                    return Err(BackupError::not_a_backup(path, format_args!(
                        "table {name} holds {found} rows, the manifest says {expected}")));
                }
                tables.push(TableRows { table: name.to_owned(), rows: found });
            )*
        };
    }
    every_table!(check);
    Ok(BackupSummary {
        taken_at_ms,
        schema_version,
        tables,
        bytes: 0,
    })
}

/// Restores the backup `from` into `data_dir` (new, or existing and empty): copies it,
/// verifies the copy, removes the manifest and gives it the store's name. The original
/// file is only read.
pub fn restore_backup(from: &Path, data_dir: &Path, progress: Progress<'_>) -> Result<BackupSummary, BackupError> {
    let source_len = std::fs::metadata(from).map_err(BackupError::io(from))?.len();
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir).map_err(BackupError::io(data_dir))?;
        if entries.next().is_some() {
            return Err(BackupError::DataDirNotEmpty(data_dir.to_path_buf()));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(BackupError::io(data_dir))?;
    let store_path = data_dir.join(STORE_FILE_NAME);
    let partial = partial_path(&store_path);
    let result = copy_file(from, &partial, source_len, progress)
        .and_then(|()| verify_backup(&partial))
        .and_then(|summary| {
            drop_manifest(&partial)?;
            Ok(summary)
        });
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(match e {
                // Name the file the person gave, not our working copy.
                BackupError::NotABackup { detail, .. } => BackupError::not_a_backup(from, detail),
                other => other,
            });
        }
    };
    std::fs::rename(&partial, &store_path).map_err(BackupError::io(&store_path))?;
    sync_parent(&store_path)?;
    // Opening it as a store proves the gateway will start on it.
    drop(Store::open(&store_path)?);
    Ok(summary)
}

fn drop_manifest(path: &Path) -> Result<(), BackupError> {
    let db = Database::open(path).map_err(StoreError::from)?;
    let txn = db.begin_write().map_err(StoreError::from)?;
    txn.delete_table(MANIFEST).map_err(StoreError::from)?;
    txn.commit().map_err(StoreError::from)?;
    Ok(())
}

fn copy_file(from: &Path, to: &Path, total: u64, progress: Progress<'_>) -> Result<(), BackupError> {
    use std::io::{Read, Write};
    let mut source = std::fs::File::open(from).map_err(BackupError::io(from))?;
    let mut target = std::fs::File::create(to).map_err(BackupError::io(to))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut done = 0;
    loop {
        let n = source.read(&mut buffer).map_err(BackupError::io(from))?;
        let Some(chunk) = buffer.get(..n).filter(|chunk| !chunk.is_empty()) else {
            break;
        };
        target.write_all(chunk).map_err(BackupError::io(to))?;
        done += n as u64;
        progress(done, total);
    }
    target.sync_all().map_err(BackupError::io(to))
}

pub(super) fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

fn remove_if_exists(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackupError::io(path)(e)),
        _ => Ok(()),
    }
}

/// Makes a rename durable: the directory entry is on disk too.
pub(super) fn sync_parent(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(BackupError::io(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The store's tables that hold any row, `meta` aside (a new, empty store has its markers), in
/// [`every_table!`] order. A store's own tables are created when it is opened, but a file made
/// by an older gateway may lack some: a missing table holds nothing.
pub(super) fn tables_with_rows(txn: &ReadTransaction) -> Result<Vec<&'static str>, StoreError> {
    let mut holding = Vec::new();
    macro_rules! look {
        ($($table:expr),*) => {
            $(
                if $table.name() != META.name() {
                    match txn.open_table($table) {
                        Ok(table) if table.len()? > 0 => holding.push($table.name()),
                        Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => {}
                        Err(other) => return Err(other.into()),
                    }
                }
            )*
        };
    }
    every_table!(look);
    Ok(holding)
}

/// Creates every table of the store in `txn` (on open, so readers never meet a missing one).
pub(crate) fn create_every_table(txn: &WriteTransaction) -> Result<(), StoreError> {
    macro_rules! create {
        ($($table:expr),*) => { $( txn.open_table($table)?; )* };
    }
    every_table!(create);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The store holds exactly the listed tables (so `Store::open` and the backup agree), and
    /// a backup of it holds every one of them.
    #[test]
    fn the_table_list_is_the_store_and_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_dir(dir.path()).unwrap();
        let txn = store.db.begin_read().unwrap();
        let in_store: BTreeSet<String> = txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
        drop(txn);
        let listed: BTreeSet<String> = table_names().into_iter().map(str::to_owned).collect();
        assert_eq!(in_store, listed);
        assert_eq!(listed.len(), table_names().len(), "no table listed twice");

        let out = dir.path().join("copy.redb");
        let report = store.backup_to(&out, 5, &mut |_, _| {}).unwrap();
        let copied: Vec<&str> = report.summary.tables.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(copied, table_names());
        assert_eq!(report.summary.taken_at_ms, 5);
        assert_eq!(verify_backup(&out).unwrap(), report.summary);
    }

    /// A table the list does not name stops the backup instead of being left out of it.
    #[test]
    fn a_table_missing_from_the_list_refuses_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_dir(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("added_later")).unwrap();
        txn.commit().unwrap();
        let out = dir.path().join("copy.redb");
        let refused = store.backup_to(&out, 0, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(&refused, BackupError::UnknownTable(name) if name == "added_later"),
            "{refused}"
        );
        assert!(!out.exists() && !partial_path(&out).exists());
    }
}
