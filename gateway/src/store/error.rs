//! Store errors: typed so callers can tell "stop the other process" from "upgrade the gateway"
//! from "the disk is broken".

use protocol::DeviceId;

use crate::domain::{ResidentId, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store was written by a newer gateway (schema version {found}, this gateway supports up to \
         {supported}); run a gateway at least as new as the one that wrote it"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    /// redb locks the file for one process; a running gateway holds it.
    #[error(
        "the store is in use by another process (probably a running gateway): stop the gateway to inspect \
         the store offline, or query the running gateway's HTTP API instead"
    )]
    InUse,

    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The file itself (redb's own structures) is damaged: never a panic.
    #[error("corrupt store: {detail}")]
    Corrupt { detail: String },

    /// One stored record did not decode. Queries over many records list these instead of
    /// failing ([`crate::store::EventPage::unreadable`], [`crate::store::Store::unreadable`]).
    #[error(transparent)]
    Unreadable(#[from] Unreadable),

    /// A value this gateway could not serialise (should not happen for domain types).
    #[error("could not encode a value for table {table}: {detail}")]
    Encode { table: &'static str, detail: String },

    #[error(
        "device {device} is already assigned to resident {existing_resident} from {existing_from} \
         (until {}): assignments of one device must not overlap",
        existing_until.map_or_else(|| "open-ended".to_string(), |t| t.to_string())
    )]
    OverlappingAssignment {
        device: DeviceId,
        existing_resident: ResidentId,
        existing_from: Timestamp,
        existing_until: Option<Timestamp>,
    },

    #[error("device {device} has no assignment covering {at}")]
    NoActiveAssignment { device: DeviceId, at: Timestamp },

    #[error("database error: {0}")]
    Db(#[source] Box<redb::Error>),

    /// PostgreSQL: another gateway holds the writer lease now (or this one's ran out): this
    /// gateway must not write or receipt anything. The transaction was rolled back.
    #[error(
        "fenced: this gateway's writer lease (epoch {epoch}) is no longer valid; the lease is {}",
        current.as_ref().map_or_else(|| "vacant".to_string(), |(holder, epoch)| format!("held by {holder} at epoch {epoch}"))
    )]
    Fenced { epoch: i64, current: Option<(String, i64)> },

    /// PostgreSQL: a write was asked for without holding the writer lease.
    #[error("this gateway does not hold the writer lease: only the leader writes")]
    NotLeader,

    /// The database refused the commit: nothing of the transaction is stored.
    #[error("the database rolled the transaction back: {reason}")]
    RolledBack { reason: String },

    /// Whether the commit happened is not known (the connection was lost during COMMIT, or
    /// it returned with a warning): nothing may be acknowledged for it.
    #[error("the commit's outcome is unknown: {reason}")]
    CommitUnknown { reason: String },

    /// An operation this gateway does not yet run on PostgreSQL (`docs/postgres.md` lists
    /// them): refused as a whole, nothing written.
    #[error("{what} is not yet available on the PostgreSQL store (it is on redb)")]
    NotOnPostgres { what: &'static str },

    /// Any other PostgreSQL failure (a query failed, the connection is gone).
    #[error(transparent)]
    Postgres(Box<super::postgres::PgError>),
}

impl From<super::postgres::PgError> for StoreError {
    fn from(err: super::postgres::PgError) -> Self {
        use super::postgres::PgError;
        match err {
            PgError::Fenced { epoch, current } => Self::Fenced { epoch, current },
            PgError::NotLeader => Self::NotLeader,
            PgError::SchemaTooNew { found, supported } => Self::SchemaTooNew {
                found: u32::try_from(found).unwrap_or(0),
                supported: u32::try_from(supported).unwrap_or(0),
            },
            PgError::Encode { table, detail } => Self::Encode { table, detail },
            PgError::Unreadable(unreadable) => Self::Unreadable(unreadable),
            PgError::Refused(refused) => *refused,
            other @ (PgError::Db(_) | PgError::OutOfRange { .. }) => Self::Postgres(Box::new(other)),
        }
    }
}

/// A stored record this gateway cannot decode (damaged, or written against the rules in
/// `store/schema.rs`). Reported with its table and key, counted, never fatal to a query over
/// many records or to startup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[error("unreadable record in table {table}, key {key}: {detail}")]
pub struct Unreadable {
    pub table: &'static str,
    pub key: String,
    pub detail: String,
}

impl Unreadable {
    pub(crate) fn new(table: &'static str, key: impl std::fmt::Display, detail: impl std::fmt::Display) -> Self {
        Self {
            table,
            key: key.to_string(),
            detail: detail.to_string(),
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(err: redb::Error) -> Self {
        match err {
            redb::Error::DatabaseAlreadyOpen => Self::InUse,
            redb::Error::Corrupted(detail) => Self::Corrupt { detail },
            redb::Error::Io(io) => Self::Io(io),
            other => Self::Db(Box::new(other)),
        }
    }
}

macro_rules! via_redb_error {
    ($($ty:ty),*) => {
        $(impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                redb::Error::from(err).into()
            }
        })*
    };
}

via_redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
