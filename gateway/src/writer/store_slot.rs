//! The store the writer commits to, shared with readers, and replaced when the writer
//! reopens it. redb latches an I/O error (a full disk, a failed fsync) and refuses every
//! later transaction until the database is closed and opened again; the committer does that
//! by itself, so a fault heals without a restart once its cause is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::store::{Store, StoreError};

/// No redb store is open for reads right now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreUnavailable {
    /// The writer closed it to reopen it after a fault.
    #[error("the store is being reopened after a fault (see /healthz); try again shortly")]
    Reopening,
    /// The gateway writes to PostgreSQL, and this read is not served from it yet.
    #[error("this gateway runs on the PostgreSQL store, and this view is not yet served from it (docs/postgres.md)")]
    NotOnPostgres,
}

/// The current store, or none while the writer reopens it. Readers take an `Arc` for one
/// query and let it go: a reader that keeps one keeps the old database open, and the
/// writer cannot reopen the file until it is dropped (it retries meanwhile).
#[derive(Debug, Default)]
pub struct SharedStore {
    current: RwLock<Option<Arc<Store>>>,
    on_postgres: AtomicBool,
}

impl SharedStore {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            current: RwLock::new(Some(store)),
            on_postgres: AtomicBool::new(false),
        }
    }

    /// The open store, for reads.
    pub fn get(&self) -> Result<Arc<Store>, StoreUnavailable> {
        if self.on_postgres.load(Ordering::Relaxed) {
            return Err(StoreUnavailable::NotOnPostgres);
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreUnavailable::Reopening)
    }

    /// The gateway writes to PostgreSQL: no redb store will ever be here.
    pub(crate) fn mark_on_postgres(&self) {
        self.on_postgres.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set(&self, store: Arc<Store>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// Gives up this handle's reference, so the database can close once readers let go.
    pub(crate) fn clear(&self) {
        let old = self.current.write().unwrap_or_else(PoisonError::into_inner).take();
        drop(old);
    }
}

/// A short, stable name for the kind of store failure (a metric label), or `None` when the
/// error belongs to what was being written rather than to the store (an encode error, an
/// undecodable record): retrying that alone fails the same way, so it is a poison message,
/// not a reason to wait for the disk.
pub fn store_fault_kind(error: &StoreError) -> Option<&'static str> {
    match error {
        StoreError::Io(io) => Some(io_kind(io)),
        StoreError::Db(db) => Some(match db.as_ref() {
            redb::Error::PreviousIo => "previous_io",
            redb::Error::DatabaseClosed => "closed",
            redb::Error::Io(io) => io_kind(io),
            redb::Error::LockPoisoned(_) => "lock_poisoned",
            _ => "database",
        }),
        StoreError::InUse => Some("in_use"),
        StoreError::Fenced { .. } => Some("fenced"),
        StoreError::NotLeader => Some("not_leader"),
        StoreError::RolledBack { .. } => Some("rolled_back"),
        StoreError::CommitUnknown { .. } => Some("commit_unknown"),
        StoreError::Postgres(pg) => postgres_fault_kind(pg),
        StoreError::SchemaTooNew { .. } => Some("schema_too_new"),
        StoreError::Corrupt { .. }
        | StoreError::Unreadable(_)
        | StoreError::Encode { .. }
        | StoreError::OverlappingAssignment { .. }
        | StoreError::NoActiveAssignment { .. }
        | StoreError::NotOnPostgres { .. } => None,
    }
}

/// PostgreSQL: a data exception (SQLSTATE class 22) or an integrity violation (23) comes from
/// what was written (a poison message); anything else from the database or the connection.
fn postgres_fault_kind(error: &crate::store::postgres::PgError) -> Option<&'static str> {
    use crate::store::postgres::PgError;
    match error {
        PgError::Db(db) => match db.code().map(|code| code.code().get(..2)) {
            Some(Some("22" | "23")) => None,
            _ => Some("postgres"),
        },
        PgError::OutOfRange { .. } | PgError::Encode { .. } | PgError::Unreadable(_) | PgError::Refused(_) => None,
        PgError::Fenced { .. } => Some("fenced"),
        PgError::NotLeader => Some("not_leader"),
        PgError::SchemaTooNew { .. } => Some("schema_too_new"),
    }
}

/// ENOSPC gets its own label: it is the fault an operator can fix by freeing space.
fn io_kind(io: &std::io::Error) -> &'static str {
    const ENOSPC: i32 = 28;
    if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(ENOSPC) {
        "no_space"
    } else {
        "io"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_told_from_poison() {
        let full = StoreError::Io(std::io::Error::from_raw_os_error(28));
        assert_eq!(store_fault_kind(&full), Some("no_space"));
        let eio = StoreError::Io(std::io::Error::from_raw_os_error(5));
        assert_eq!(store_fault_kind(&eio), Some("io"));
        let latched = StoreError::from(redb::Error::PreviousIo);
        assert_eq!(store_fault_kind(&latched), Some("previous_io"));
        let encode = StoreError::Encode {
            table: "events",
            detail: "x".into(),
        };
        assert_eq!(store_fault_kind(&encode), None);
    }

    #[test]
    fn a_commit_not_known_to_have_happened_is_a_fault_never_poison() {
        use crate::store::CommitOutcome;
        // Retried whole after a reopen (nothing acked), never split as if the batch were bad.
        let unknown = CommitOutcome::Unknown(StoreError::CommitUnknown {
            reason: "no answer to COMMIT".into(),
        });
        let error = unknown.into_result().unwrap_err();
        assert_eq!(store_fault_kind(&error), Some("commit_unknown"));
        let refused = CommitOutcome::RolledBack(StoreError::RolledBack {
            reason: "serialization failure".into(),
        });
        assert_eq!(
            store_fault_kind(&refused.into_result().unwrap_err()),
            Some("rolled_back")
        );
        // redb's own commit error keeps its kind: a full disk is still told apart.
        let full = CommitOutcome::Unknown(StoreError::Io(std::io::Error::from_raw_os_error(28)));
        assert_eq!(store_fault_kind(&full.into_result().unwrap_err()), Some("no_space"));
        assert!(CommitOutcome::Committed.into_result().is_ok());
    }
}
