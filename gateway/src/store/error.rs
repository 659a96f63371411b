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
