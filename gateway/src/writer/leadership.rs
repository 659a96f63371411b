//! Which gateway writes to a shared PostgreSQL store, from one gateway's side: it leads while
//! it holds the writer lease, renewing it at a third of its length between batches, and
//! otherwise stands by, asking again when the holder's lease runs out. The lease itself (and
//! the fencing of every write) is the store's (`store/postgres/lease.rs`); this decides when
//! to talk to it. Time is passed in, so tests step through a lease's life without waiting.
//!
//! The committer calls [`Leadership::keep`] between batches and on a standby's timer,
//! consumes from the broker only as [`Role::Leader`], and calls [`Leadership::lost`] when a
//! write is refused as `Fenced` or `NotLeader` (`docs/postgres.md`, "Leader and standby").

use std::time::{Duration, Instant};

use crate::store::StoreError;
use crate::store::postgres::LeaseAttempt;
use crate::store::seam::PgBlocking;

/// Whether this gateway may write now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease: consumes from the broker, commits, receipts.
    Leader,
    /// Someone else leads (or nobody can be reached): takes no publishes, serves reads.
    Standby,
}

/// This gateway's side of the writer lease.
#[derive(Debug)]
pub struct Leadership {
    lease: Duration,
    role: Role,
    /// When [`Leadership::keep`] next talks to the database.
    next: Instant,
}

impl Leadership {
    /// A standby that asks for the lease at its first [`Leadership::keep`].
    pub fn new(lease: Duration, now: Instant) -> Self {
        Self {
            lease,
            role: Role::Standby,
            next: now,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// When the next renewal or attempt is due: a standby sleeps until then.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// A third of the lease: two renewals can fail (a slow commit, a dropped packet) before
    /// the lease runs out.
    fn renew_period(&self) -> Duration {
        self.lease / 3
    }

    /// Renews the lease (leader) or tries to take it (standby) if that is due, and says the
    /// role that follows. A leader whose renewal is refused stands by at once and learns who
    /// leads. Any other failure leaves it a standby (the store forgets a lease whose renewal
    /// went unanswered: it may have lapsed) and is returned, for the caller to reconnect.
    pub fn keep(&mut self, store: &mut PgBlocking, now: Instant) -> Result<Role, StoreError> {
        if now < self.next {
            return Ok(self.role);
        }
        if self.role == Role::Leader {
            match store.renew_lease() {
                Ok(lease) => {
                    tracing::debug!(epoch = lease.epoch, "renewed the writer lease");
                    self.next = now + self.renew_period();
                    return Ok(Role::Leader);
                }
                Err(error @ (StoreError::Fenced { .. } | StoreError::NotLeader)) => {
                    tracing::warn!(%error, "lost the writer lease: standing by");
                    self.role = Role::Standby;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the writer lease: standing by");
                    self.role = Role::Standby;
                    self.next = now + self.renew_period();
                    return Err(error);
                }
            }
        }
        match store.acquire_lease() {
            Ok(LeaseAttempt::Acquired(lease)) => {
                tracing::info!(holder = %lease.holder, epoch = lease.epoch, "took the writer lease: leading");
                self.role = Role::Leader;
                self.next = now + self.renew_period();
                Ok(Role::Leader)
            }
            Ok(LeaseAttempt::HeldBy {
                holder,
                epoch,
                expires_in_ms,
            }) => {
                tracing::debug!(%holder, epoch, expires_in_ms, "the writer lease is held: standing by");
                // A little past the expiry, so the attempt does not find it a moment early; but
                // no later than a renewal period, so a lease given up at a clean stop is taken
                // within a third of its length rather than at its old expiry.
                let left = Duration::from_millis(u64::try_from(expires_in_ms).unwrap_or(0));
                self.next = now + (left + self.lease / 20).min(self.renew_period());
                Ok(Role::Standby)
            }
            Err(error) => {
                self.next = now + self.renew_period();
                Err(error)
            }
        }
    }

    /// Leads again on a new connection with the lease it held on the old one: the next
    /// [`Leadership::keep`] renews it at once, which only succeeds if nobody led since.
    pub fn resume(&mut self, now: Instant) {
        self.role = Role::Leader;
        self.next = now;
    }

    /// A write was refused (`Fenced`, `NotLeader`): stand by, and ask at the next
    /// [`Leadership::keep`] who leads and for how long.
    pub fn lost(&mut self, now: Instant) {
        self.role = Role::Standby;
        self.next = now;
    }
}
