//! The writer lease: one row saying which gateway may write, at which epoch, until when.
//!
//! Every time is the database's own clock (`now()`), never a gateway's, so gateways with
//! skewed clocks still agree on who leads. A gateway takes the lease only when it is vacant or
//! expired, and each taking raises the epoch; the holder renews it well before it expires.
//! Fencing is in the writes, not in the renewals: every write transaction first locks the
//! lease row `FOR SHARE` and checks that the epoch is still its own and unexpired
//! ([`super::PgWriteBatch`]). The lock holds until that transaction ends, so a takeover (an
//! update of the row) waits for a write in flight and every later write of the old leader
//! sees the new epoch and is refused: a paused or partitioned old leader can never write.

use std::time::Duration;

use tokio_postgres::Client;

use super::PgError;

/// The one lease row's name (the table could hold leases for other roles later).
pub(super) const WRITER_LEASE: &str = "writer";

/// The lease as this gateway holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Raised by one at every takeover; a write checks it is still the current one.
    pub epoch: i64,
    /// When it runs out, by the database's clock (ms since the Unix epoch), unless renewed.
    pub expires_at_ms: i64,
}

/// What an attempt to take the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// This gateway leads from now, at this epoch.
    Acquired(Lease),
    /// Someone else holds it (possibly this gateway, under this holder name: then renew).
    HeldBy {
        holder: String,
        epoch: i64,
        /// Time left by the database's clock; a standby tries again after it.
        expires_in_ms: i64,
    },
}

fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// Takes the lease for `holder` if it is vacant or expired (with a new epoch), in one
/// statement: two standbys trying at once cannot both win.
pub(super) async fn acquire(client: &Client, holder: &str, ttl: Duration) -> Result<LeaseAttempt, PgError> {
    // A look without a lock first: the takeover statement locks the row even when it finds
    // the lease held, and so would wait for the leader's write in flight and then hold up
    // its next one, every time a standby asks.
    if let Some(held) = held_lease(client).await?
        && held.expires_in_ms > 0
    {
        return Ok(held.into_attempt());
    }
    let taken = client
        .query_opt(
            "INSERT INTO tec_leader_lease AS lease (name, holder, epoch, acquired_at, expires_at)
             VALUES ($1, $2, 1, now(), now() + make_interval(secs => $3))
             ON CONFLICT (name) DO UPDATE
                 SET holder = EXCLUDED.holder, epoch = lease.epoch + 1,
                     acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
                 WHERE lease.expires_at <= now()
             RETURNING epoch, (extract(epoch FROM expires_at) * 1000)::bigint",
            &[&WRITER_LEASE, &holder, &seconds(ttl)],
        )
        .await?;
    if let Some(row) = taken {
        let lease = Lease {
            holder: holder.to_string(),
            epoch: row.try_get(0)?,
            expires_at_ms: row.try_get(1)?,
        };
        tracing::info!(holder, epoch = lease.epoch, "took the writer lease");
        return Ok(LeaseAttempt::Acquired(lease));
    }
    // Taken by someone else between the look and the takeover. The row is never deleted, so
    // it is there to read (if an administrator removed it, this fails: try again).
    let row = client.query_one(HELD_LEASE, &[&WRITER_LEASE]).await?;
    Ok(HeldLease::from_row(&row)?.into_attempt())
}

const HELD_LEASE: &str = "SELECT holder, epoch, (extract(epoch FROM expires_at - now()) * 1000)::bigint
                          FROM tec_leader_lease WHERE name = $1";

/// The lease row as a standby sees it.
struct HeldLease {
    holder: String,
    epoch: i64,
    expires_in_ms: i64,
}

impl HeldLease {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            holder: row.try_get(0)?,
            epoch: row.try_get(1)?,
            expires_in_ms: row.try_get(2)?,
        })
    }

    fn into_attempt(self) -> LeaseAttempt {
        LeaseAttempt::HeldBy {
            holder: self.holder,
            epoch: self.epoch,
            expires_in_ms: self.expires_in_ms,
        }
    }
}

async fn held_lease(client: &Client) -> Result<Option<HeldLease>, PgError> {
    let row = client.query_opt(HELD_LEASE, &[&WRITER_LEASE]).await?;
    Ok(row.as_ref().map(HeldLease::from_row).transpose()?)
}

/// Extends `lease` by `ttl` from now, if it is still this holder's, at its epoch, and
/// unexpired. An expired lease is not revived, even if nobody took it: the holder takes it
/// anew (a new epoch), so anything written under the old epoch stays fenced.
pub(super) async fn renew(client: &Client, lease: &Lease, ttl: Duration) -> Result<Lease, PgError> {
    let renewed = client
        .query_opt(
            "UPDATE tec_leader_lease SET expires_at = now() + make_interval(secs => $4)
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
             RETURNING (extract(epoch FROM expires_at) * 1000)::bigint",
            &[&WRITER_LEASE, &lease.holder, &lease.epoch, &seconds(ttl)],
        )
        .await?;
    match renewed {
        Some(row) => Ok(Lease {
            expires_at_ms: row.try_get(0)?,
            ..lease.clone()
        }),
        None => Err(PgError::Fenced {
            epoch: lease.epoch,
            current: current_holder(client).await?,
        }),
    }
}

/// Gives the lease up now (a clean shutdown), so a standby need not wait for it to expire.
pub(super) async fn release(client: &Client, lease: &Lease) -> Result<(), PgError> {
    client
        .execute(
            "UPDATE tec_leader_lease SET expires_at = now()
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()",
            &[&WRITER_LEASE, &lease.holder, &lease.epoch],
        )
        .await?;
    Ok(())
}

/// The holder and epoch of an unexpired lease, if any.
pub(super) async fn current_holder(client: &Client) -> Result<Option<(String, i64)>, PgError> {
    let row = client
        .query_opt(
            "SELECT holder, epoch FROM tec_leader_lease WHERE name = $1 AND expires_at > now()",
            &[&WRITER_LEASE],
        )
        .await?;
    Ok(match row {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    })
}
