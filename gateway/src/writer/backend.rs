//! What the committer needs of its store beyond the write seam: the alert-change log (to
//! broadcast what a commit reported as failed may still have stored), the writer lease on a
//! shared database, how to hand the store to readers, and the operations only redb has so
//! far. Two implementations: redb (`Arc<Store>`) and PostgreSQL under a writer lease
//! ([`LeadingPg`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::core::Core;
use super::leadership::{Leadership, Role};
use super::store_slot::SharedStore;
use crate::domain::{Alert, AlertId};
use crate::retention::{RetentionStep, StepOutcome};
use crate::store::postgres::{Lease, PgStore, PgStoreOptions};
use crate::store::seam::{PgTxn, WriteStore};
use crate::store::{
    AccessChange, AccessRefusal, AccessStore, AlertChangesSince, AuditEntry, PgBlocking, Store, StoreError,
};

/// The committer's store. `Send + 'static`: the core moves to the blocking pool for each job.
pub trait CommitterStore: WriteStore + Send + Sized + 'static {
    /// Whether writing needs a lease renewed in time ([`CommitterStore::keep_leading`]).
    const LEASED: bool;

    /// Gives the readers (console, API, reports) this store, for those that read it through
    /// the committer's handle (redb: one file, one process).
    fn share(&self, readers: &SharedStore);
    fn last_alert_change_seq(&mut self) -> Result<u64, StoreError>;
    fn alert_changes_since(&mut self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError>;
    /// Records this store found unreadable so far (for the metric).
    fn unreadable_count(&self) -> u64;
    /// A second handle on the same store, to rebuild the engine after a job panicked; `None`
    /// when the store must be opened again instead (a connection is not shared).
    fn second_handle(&self) -> Option<Self>;
    /// Called between jobs and on the committer's timer (at least once a second): renews the
    /// writer lease when that is due. `Err(StoreError::NotLeader)` or `Fenced` when another
    /// gateway leads now: this one must stop writing.
    fn keep_leading(&mut self) -> Result<(), StoreError>;
    /// At a clean stop: gives the writer lease up, so a standby need not wait for it to run out.
    fn step_down(&mut self) -> Result<(), StoreError>;
    /// Users, sessions and the audit chain, in one transaction. `&mut`: on PostgreSQL the
    /// transaction holds the store's one connection.
    fn apply_access(&mut self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError>;
    /// One retention step, in its own transaction.
    fn apply_retention(core: &mut Core<Self>, step: &RetentionStep) -> Result<(StepOutcome, bool), StoreError>;
}

impl CommitterStore for Arc<Store> {
    const LEASED: bool = false;

    fn share(&self, readers: &SharedStore) {
        readers.set(self.clone());
    }

    fn last_alert_change_seq(&mut self) -> Result<u64, StoreError> {
        Store::last_alert_change_seq(self)
    }

    fn alert_changes_since(&mut self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError> {
        Store::alert_changes_since(self, after, limit)
    }

    fn unreadable_count(&self) -> u64 {
        Store::unreadable_count(self)
    }

    fn second_handle(&self) -> Option<Self> {
        Some(self.clone())
    }

    /// redb's file lock makes this process the only writer.
    fn keep_leading(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn step_down(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn apply_access(&mut self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        AccessStore::apply_access(&**self, change)
    }

    fn apply_retention(core: &mut Core<Self>, step: &RetentionStep) -> Result<(StepOutcome, bool), StoreError> {
        crate::retention::run::apply_in_core(core, step)
    }
}

/// The lease this gateway last held, kept across reconnects: a new connection resumes it
/// (renews it at its epoch) instead of waiting for it to expire, and fails if anyone led since.
pub type LeaseMemory = Arc<Mutex<Option<Lease>>>;

/// A PostgreSQL store on which this gateway holds the writer lease, renewing it as it goes.
#[derive(Debug)]
pub struct LeadingPg {
    store: PgBlocking,
    leadership: Leadership,
    memory: LeaseMemory,
}

impl LeadingPg {
    /// Connects and takes the lease back (a reconnect: the remembered lease is renewed at its
    /// epoch) or, with none remembered, takes it if it is free. `NotLeader` if another gateway
    /// leads. Blocking: call it off the async threads.
    pub fn connect(
        config: &tokio_postgres::Config,
        options: PgStoreOptions,
        memory: LeaseMemory,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        let lease_ttl = options.lease_ttl;
        let store = runtime.block_on(PgStore::connect(config, options))?;
        let mut leading = Self::standing_by(PgBlocking::new(store, runtime), lease_ttl, memory);
        let remembered = leading.memory.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(lease) = remembered {
            leading.store.store_mut().resume_lease(lease);
            leading.leadership.resume(Instant::now());
        }
        leading.keep_leading()?;
        Ok(leading)
    }

    /// Not leading yet: [`LeadingPg::try_to_lead`] asks for the lease.
    pub fn standing_by(store: PgBlocking, lease: Duration, memory: LeaseMemory) -> Self {
        Self {
            store,
            leadership: Leadership::new(lease, Instant::now()),
            memory,
        }
    }

    /// Takes the lease if it is due and free; the role that follows. A standby sleeps until
    /// [`LeadingPg::next_due`] and asks again.
    pub fn try_to_lead(&mut self) -> Result<Role, StoreError> {
        let role = self.leadership.keep(&mut self.store, Instant::now());
        self.remember();
        role
    }

    pub fn next_due(&self) -> Instant {
        self.leadership.next_due()
    }

    pub fn role(&self) -> Role {
        self.leadership.role()
    }

    pub fn store(&self) -> &PgBlocking {
        &self.store
    }

    /// Gives the lease up at a clean shutdown, so a standby need not wait for it to expire.
    pub fn release(&mut self) -> Result<(), StoreError> {
        let released = self.store.release_lease();
        *self.memory.lock().unwrap_or_else(PoisonError::into_inner) = None;
        released
    }

    /// Keeps the lease last held: after a lost connection it is resumed, and if anyone led
    /// since, its renewal is refused and this gateway stops writing.
    fn remember(&self) {
        if let Some(held) = self.store.store().lease() {
            *self.memory.lock().unwrap_or_else(PoisonError::into_inner) = Some(held.clone());
        }
    }
}

impl WriteStore for LeadingPg {
    type Txn<'s> = PgTxn<'s>;

    /// Renews the lease first if that is due (a long run of batches never lets it lapse); the
    /// transaction itself is fenced by the store.
    fn begin_txn(&mut self) -> Result<PgTxn<'_>, StoreError> {
        self.keep_leading()?;
        self.store.begin_txn()
    }

    fn max_alert_id(&self) -> Result<Option<AlertId>, StoreError> {
        self.store.max_alert_id()
    }

    fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.store.open_alerts()
    }

    fn engine_state(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.store.engine_state()
    }
}

impl CommitterStore for LeadingPg {
    const LEASED: bool = true;

    /// The console's and reports' reads are not served from PostgreSQL yet: they say so.
    fn share(&self, readers: &SharedStore) {
        readers.mark_on_postgres();
    }

    fn last_alert_change_seq(&mut self) -> Result<u64, StoreError> {
        Ok(self.store.block_on(self.store.store().last_alert_change_seq())?)
    }

    fn alert_changes_since(&mut self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError> {
        Ok(self
            .store
            .block_on(self.store.store().alert_changes_since(after, limit))?)
    }

    /// Shared with this process's readers: the metric counts what either met.
    fn unreadable_count(&self) -> u64 {
        self.store.store().problems().count()
    }

    fn second_handle(&self) -> Option<Self> {
        None
    }

    fn keep_leading(&mut self) -> Result<(), StoreError> {
        let role = self.leadership.keep(&mut self.store, Instant::now());
        self.remember();
        match role? {
            Role::Leader => Ok(()),
            Role::Standby => Err(StoreError::NotLeader),
        }
    }

    fn step_down(&mut self) -> Result<(), StoreError> {
        self.release()
    }

    /// Renews the lease first if that is due, as for any write; the transaction is fenced.
    fn apply_access(&mut self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        self.keep_leading()?;
        self.store.apply_access(change)
    }

    /// Fenced like any write: a replaced leader purges nothing.
    fn apply_retention(core: &mut Core<Self>, step: &RetentionStep) -> Result<(StepOutcome, bool), StoreError> {
        crate::retention::run::apply_in_core(core, step)
    }
}
