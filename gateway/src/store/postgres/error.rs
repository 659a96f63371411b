//! Errors of the PostgreSQL store: typed so the writer can tell "another gateway leads now,
//! stop writing" from "the database is unreachable, retry" from "upgrade the gateway".

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The query failed or the connection is gone (tokio-postgres says which). Shown with
    /// its causes: the client's own text is only the kind ("db error", "error performing
    /// TLS handshake"), the server's message and the certificate problem are in the causes.
    #[error("PostgreSQL: {}", with_causes(.0))]
    Db(tokio_postgres::Error),

    /// The writer lease was taken over (or ran out) since this gateway last held it: it is no
    /// longer the leader and must not write or receipt anything. The transaction was rolled back.
    #[error(
        "fenced: this gateway's writer lease (epoch {epoch}) is no longer valid; the lease is {}",
        current.as_ref().map_or_else(|| "vacant".to_string(), |(holder, epoch)| format!("held by {holder} at epoch {epoch}"))
    )]
    Fenced {
        epoch: i64,
        /// Who holds the lease now, and at which epoch (`None`: nobody, or it expired).
        current: Option<(String, i64)>,
    },

    /// A write was asked for without holding the writer lease.
    #[error("this gateway does not hold the writer lease: only the leader writes")]
    NotLeader,

    #[error(
        "the database was migrated by a newer gateway (schema version {found}, this gateway supports up to \
         {supported}); run a gateway at least as new as the one that migrated it"
    )]
    SchemaTooNew { found: i32, supported: i32 },

    /// A value this gateway could not serialise (should not happen for domain types).
    #[error("could not encode a value for table {table}: {detail}")]
    Encode { table: &'static str, detail: String },

    /// One stored record did not decode (its table and key say which).
    #[error(transparent)]
    Unreadable(#[from] crate::store::Unreadable),

    /// A write the store's rules refuse (an assignment overlapping another), as the redb
    /// store refuses it.
    #[error(transparent)]
    Refused(Box<crate::store::StoreError>),

    /// A stored number outside the range of the domain type it stands for (u32 keys are
    /// stored as bigint: PostgreSQL has no unsigned types).
    #[error("stored {what} = {value} is out of range")]
    OutOfRange { what: &'static str, value: i64 },
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(error)
    }
}

fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
