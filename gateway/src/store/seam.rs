//! The store seam: what the committer's core needs of a store to ingest a batch, fire timers,
//! apply operator actions and change the registers ([`WriteStore`], [`WriteTxn`]), and what
//! the console reads ([`ReadStore`], so far its alert queue, histories and the registers),
//! with two implementations: the redb [`Store`] (by delegation, behaviour unchanged) and the
//! PostgreSQL store ([`PgBlocking`]).
//!
//! Batch-shaped on purpose: a PostgreSQL round trip per call, not per publish, so the core
//! reads every device of a batch in one call and every resident in another. Synchronous like
//! the core, which runs on tokio's blocking pool; [`PgBlocking`] runs the async client there
//! with a runtime [`Handle`]. `docs/postgres.md` ("The store seam") says what is wired.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::civil::Date;
use protocol::DeviceId;
use tokio::runtime::Handle;

use super::postgres::{self, PgStore, PgWriteBatch};
use super::{
    AlertChangesSince, AlertFilter, AlertPage, AlertQuery, AuditDraft, AuditEntry, CompactedEvents, ErasureStep,
    EventFilter, EventPage, InsertOutcome, NewEvent, Progress, Store, StoreError, Unreadable, WriteBatch,
};
use crate::domain::{Alert, AlertId, Assignment, DeviceRecord, QuarantineRecord, Resident, ResidentId, Timestamp};
use crate::reports::register::PersonRecord;
use crate::reports::uptake::ActivityIndex;

/// How a write transaction ended, whichever the store. Only `Committed` allows a PUBACK, a
/// receipt or anything else that tells the outside the data is stored.
#[must_use = "nothing may be acknowledged unless the commit is Committed"]
#[derive(Debug)]
pub enum CommitOutcome {
    Committed,
    /// Nothing of the transaction is stored (the database refused the commit).
    RolledBack(StoreError),
    /// It may or may not be stored: redb's commit failed (an fsync that reports failure may
    /// still have reached the disk), or PostgreSQL's COMMIT lost its connection or returned a
    /// warning (see [`postgres::CommitOutcome`]). Receipt nothing: the device resends, and a
    /// resent event that did land is a duplicate, receipted after a later successful commit.
    Unknown(StoreError),
}

impl CommitOutcome {
    /// `Ok` only when committed; otherwise the error the caller handles like any failed
    /// write (nothing acked, the engine rebuilt from the store, the batch retried).
    pub fn into_result(self) -> Result<(), StoreError> {
        match self {
            CommitOutcome::Committed => Ok(()),
            CommitOutcome::RolledBack(error) | CommitOutcome::Unknown(error) => Err(error),
        }
    }
}

/// One write transaction. Dropping it without [`WriteTxn::commit`] rolls it back.
pub trait WriteTxn {
    /// Stores the events; for each, new, a duplicate or a reused key (first arrival wins).
    fn insert_events(&mut self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError>;
    /// The devices' records as this transaction sees them, in the order asked. A record that
    /// does not decode is `Err` (and listed by the store): the caller must not overwrite it.
    fn devices(&mut self, ids: &[DeviceId]) -> Result<Vec<Result<Option<DeviceRecord>, Unreadable>>, StoreError>;
    fn put_devices(&mut self, records: &[&DeviceRecord]) -> Result<(), StoreError>;
    /// Each device's resident at its instant, in the order asked.
    fn residents_for(&mut self, at: &[(DeviceId, Timestamp)]) -> Result<Vec<Option<ResidentId>>, StoreError>;
    fn put_alert(&mut self, alert: &Alert) -> Result<(), StoreError>;
    /// Appends the alert as it is after this change to the alert-change log; its seq.
    fn record_alert_change(&mut self, alert: &Alert, committed_at: Timestamp) -> Result<u64, StoreError>;
    /// Sets (or, with `None`, deletes) one opaque alert-engine state entry.
    fn put_engine_state(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError>;
    fn quarantine(&mut self, record: &QuarantineRecord) -> Result<(), StoreError>;
    /// The resident as this transaction sees it (`StoreError::Unreadable` if it does not decode).
    fn resident(&mut self, id: &ResidentId) -> Result<Option<Resident>, StoreError>;
    /// The alert with its whole history as this transaction sees it (a resolved one too: the
    /// engine holds only open alerts).
    fn alert(&mut self, id: AlertId) -> Result<Option<Alert>, StoreError>;
    /// Stores the resident unless its id is taken; whether it was stored.
    fn create_resident(&mut self, resident: &Resident) -> Result<bool, StoreError>;
    fn put_resident(&mut self, resident: &Resident) -> Result<(), StoreError>;
    /// Records a loan of a device: one starting at the same instant as an existing one
    /// replaces it; any other overlap is `StoreError::OverlappingAssignment`.
    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError>;
    /// Ends the device's assignment covering `at`, at `at` (`StoreError::NoActiveAssignment`).
    fn end_assignment(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), StoreError>;
    /// Each device's assignments, earliest first, in the order asked.
    fn assignments(&mut self, devices: &[DeviceId]) -> Result<Vec<Vec<Assignment>>, StoreError>;
    /// Inserts or replaces the care register's records; how many were new or different.
    fn upsert_people(&mut self, people: &[PersonRecord]) -> Result<usize, StoreError>;
    /// Retention (`store/retention.rs` says the rules): telemetry received before
    /// `telemetry_before` and other events before `alarms_before`, about `limit` examined
    /// after `resume`; where the next step resumes.
    fn compact_events(
        &mut self,
        telemetry_before: Timestamp,
        alarms_before: Timestamp,
        resume: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<(CompactedEvents, Option<(i64, u64)>), StoreError>;
    /// Resolved alerts closed before `before`, up to `limit` examined after id `resume`.
    fn purge_closed_alerts(
        &mut self,
        before: Timestamp,
        resume: u64,
        limit: usize,
    ) -> Result<Progress<u64>, StoreError>;
    /// The oldest audit entries written before `before`, moving the chain's checkpoint.
    fn purge_audit(&mut self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Progress<()>, StoreError>;
    fn purge_quarantine(&mut self, before: Timestamp, limit: usize) -> Result<Progress<()>, StoreError>;
    /// One step of removing everything held about `person`.
    fn erase_person_step(&mut self, person: &ResidentId, limit: usize) -> Result<ErasureStep, StoreError>;
    /// Appends entries to the audit chain in this transaction, so a change and the entry
    /// recording it land together or not at all (the offline register and device commands).
    fn append_audit(&mut self, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, StoreError>;
    /// Commits durably and says how that ended. Never timed out or cancelled.
    fn commit(self) -> CommitOutcome;
}

/// A store the committer's core writes to. `&mut self`: one writer, one transaction at a time
/// (PostgreSQL: one connection; redb: its single write transaction).
pub trait WriteStore {
    type Txn<'s>: WriteTxn
    where
        Self: 's;

    /// Opens a write transaction (not `begin_write`, so it never shadows the redb store's own
    /// method on an `Arc<Store>`): fenced on PostgreSQL (`StoreError::Fenced`,
    /// `StoreError::NotLeader`); redb's file lock already makes its one process the only writer.
    fn begin_txn(&mut self) -> Result<Self::Txn<'_>, StoreError>;

    /// What the core reads to rebuild its alert engine: the highest alert id stored, the open
    /// alerts, and the engine's state entries.
    fn max_alert_id(&self) -> Result<Option<AlertId>, StoreError>;
    fn open_alerts(&self) -> Result<Vec<Alert>, StoreError>;
    fn engine_state(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// Everything the console, the HTTP API and the live stream read, from either store.
pub trait ConsoleReads: ReadStore + super::AccessStore + Send + Sync {}

impl<T: ReadStore + super::AccessStore + Send + Sync> ConsoleReads for T {}

/// What the console reads (the rest of the read side is listed in `docs/postgres.md`).
pub trait ReadStore {
    /// One page of the alerts `query` selects: the operators' queue, or any filtered list.
    fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, StoreError>;
    /// Events matching `filter` in receive-time order: a resident's history, a device's.
    fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError>;
    /// The device's record (`StoreError::Unreadable` if it does not decode).
    fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError>;
    /// Every readable device record, by id.
    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;
    /// The resident's record (`StoreError::Unreadable` if it does not decode).
    fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError>;
    /// Every readable resident, by id.
    fn residents(&self) -> Result<Vec<Resident>, StoreError>;
    /// The device's readable assignments, earliest first.
    fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError>;
    /// Every readable assignment, by device and start.
    fn all_assignments(&self) -> Result<Vec<Assignment>, StoreError>;
    /// Every readable care-register record, by person id and role.
    fn people(&self) -> Result<Vec<PersonRecord>, StoreError>;
    /// The resident the device was assigned to at `at`.
    fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError>;
    /// One alert with its whole history; `None` for an id never allocated.
    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError>;
    /// Alerts matching `filter`, in id order.
    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError>;
    fn residents_with_open_alerts(&self) -> Result<Vec<ResidentId>, StoreError>;
    /// The newest quarantined payloads first, at most `limit`.
    fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, StoreError>;
    fn quarantine_len(&self) -> Result<u64, StoreError>;
    fn event_count(&self) -> Result<u64, StoreError>;
    /// The alert-change log after `after`, for a live client resuming (`Last-Event-ID`).
    fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError>;
    fn last_alert_change_seq(&self) -> Result<u64, StoreError>;
    /// The activity of `devices` on the report zone's days `[from, to]` (every device listed,
    /// with or without days): what the uptake report counts, never the events themselves.
    fn device_days(&self, devices: &BTreeSet<DeviceId>, from: Date, to: Date) -> Result<ActivityIndex, StoreError>;
    /// Events stored and redelivered copies received on the days `[from, to]`, every device.
    fn delivery_totals(&self, from: Date, to: Date) -> Result<(u64, u64), StoreError>;
    /// The records found unreadable since the process started (each listed once), for a
    /// human to see: no query that skipped one may hide it.
    fn unreadable(&self) -> Vec<Unreadable>;
}

impl ReadStore for Store {
    fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, StoreError> {
        Store::alert_page(self, query)
    }

    fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        Store::events(self, filter)
    }

    fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        Store::device(self, id)
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        Store::devices(self)
    }

    fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        Store::resident(self, id)
    }

    fn residents(&self) -> Result<Vec<Resident>, StoreError> {
        Store::residents(self)
    }

    fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError> {
        Store::assignments(self, device)
    }

    fn all_assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        Store::all_assignments(self)
    }

    fn people(&self) -> Result<Vec<PersonRecord>, StoreError> {
        Store::people(self)
    }

    fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        Store::resident_for(self, device, at)
    }

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        Store::alert(self, id)
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        Store::alerts(self, filter)
    }

    fn residents_with_open_alerts(&self) -> Result<Vec<ResidentId>, StoreError> {
        Store::residents_with_open_alerts(self)
    }

    fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, StoreError> {
        Store::quarantined(self, limit)
    }

    fn quarantine_len(&self) -> Result<u64, StoreError> {
        Store::quarantine_len(self)
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        Store::event_count(self)
    }

    fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError> {
        Store::alert_changes_since(self, after, limit)
    }

    fn last_alert_change_seq(&self) -> Result<u64, StoreError> {
        Store::last_alert_change_seq(self)
    }

    fn device_days(&self, devices: &BTreeSet<DeviceId>, from: Date, to: Date) -> Result<ActivityIndex, StoreError> {
        Store::device_days(self, devices, from, to)
    }

    fn delivery_totals(&self, from: Date, to: Date) -> Result<(u64, u64), StoreError> {
        Store::delivery_totals(self, from, to)
    }

    fn unreadable(&self) -> Vec<Unreadable> {
        Store::unreadable(self)
    }
}

impl ReadStore for PgBlocking {
    fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, StoreError> {
        self.read(self.store.alert_page(query))
    }

    fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        self.read(self.store.events(filter))
    }

    fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(self.store.device(id))
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.read(self.store.devices())
    }

    fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        self.read(self.store.resident(id))
    }

    fn residents(&self) -> Result<Vec<Resident>, StoreError> {
        self.read(self.store.residents())
    }

    fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError> {
        self.read(self.store.assignments(device))
    }

    fn all_assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        self.read(self.store.all_assignments())
    }

    fn people(&self) -> Result<Vec<PersonRecord>, StoreError> {
        self.read(self.store.people())
    }

    fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        self.read(self.store.resident_for(device, at))
    }

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        self.read(self.store.alert(id))
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        self.read(self.store.alerts(filter))
    }

    fn residents_with_open_alerts(&self) -> Result<Vec<ResidentId>, StoreError> {
        self.read(self.store.residents_with_open_alerts())
    }

    fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.read(self.store.quarantined(limit))
    }

    fn quarantine_len(&self) -> Result<u64, StoreError> {
        self.read(self.store.quarantine_len())
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        self.read(self.store.event_count())
    }

    fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError> {
        self.read(self.store.alert_changes_since(after, limit))
    }

    fn last_alert_change_seq(&self) -> Result<u64, StoreError> {
        self.read(self.store.last_alert_change_seq())
    }

    fn device_days(&self, devices: &BTreeSet<DeviceId>, from: Date, to: Date) -> Result<ActivityIndex, StoreError> {
        self.read(self.store.device_days(devices, from, to))
    }

    fn delivery_totals(&self, from: Date, to: Date) -> Result<(u64, u64), StoreError> {
        self.read(self.store.delivery_totals(from, to))
    }

    fn unreadable(&self) -> Vec<Unreadable> {
        self.store.problems().list()
    }
}

impl WriteTxn for WriteBatch<'_> {
    fn insert_events(&mut self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        WriteBatch::insert_events(self, events)
    }

    fn devices(&mut self, ids: &[DeviceId]) -> Result<Vec<Result<Option<DeviceRecord>, Unreadable>>, StoreError> {
        ids.iter()
            .map(|id| match WriteBatch::device(self, id) {
                Ok(found) => Ok(Ok(found)),
                Err(StoreError::Unreadable(unreadable)) => Ok(Err(unreadable)),
                Err(other) => Err(other),
            })
            .collect()
    }

    fn put_devices(&mut self, records: &[&DeviceRecord]) -> Result<(), StoreError> {
        records
            .iter()
            .try_for_each(|record| WriteBatch::put_device(self, record))
    }

    fn residents_for(&mut self, at: &[(DeviceId, Timestamp)]) -> Result<Vec<Option<ResidentId>>, StoreError> {
        at.iter()
            .map(|(device, at)| WriteBatch::resident_for(self, device, *at))
            .collect()
    }

    fn put_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        WriteBatch::put_alert(self, alert)
    }

    fn record_alert_change(&mut self, alert: &Alert, committed_at: Timestamp) -> Result<u64, StoreError> {
        WriteBatch::record_alert_change(self, alert, committed_at)
    }

    fn put_engine_state(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        WriteBatch::put_engine_state(self, key, value)
    }

    fn quarantine(&mut self, record: &QuarantineRecord) -> Result<(), StoreError> {
        WriteBatch::quarantine(self, record)
    }

    fn resident(&mut self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        WriteBatch::resident(self, id)
    }

    fn alert(&mut self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        WriteBatch::alert(self, id)
    }

    fn create_resident(&mut self, resident: &Resident) -> Result<bool, StoreError> {
        WriteBatch::create_resident(self, resident)
    }

    fn put_resident(&mut self, resident: &Resident) -> Result<(), StoreError> {
        WriteBatch::put_resident(self, resident)
    }

    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        WriteBatch::assign(self, assignment)
    }

    fn end_assignment(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), StoreError> {
        WriteBatch::end_assignment(self, device, at)
    }

    fn assignments(&mut self, devices: &[DeviceId]) -> Result<Vec<Vec<Assignment>>, StoreError> {
        devices
            .iter()
            .map(|device| WriteBatch::assignments(self, device))
            .collect()
    }

    fn upsert_people(&mut self, people: &[PersonRecord]) -> Result<usize, StoreError> {
        WriteBatch::upsert_people(self, people)
    }

    fn compact_events(
        &mut self,
        telemetry_before: Timestamp,
        alarms_before: Timestamp,
        resume: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<(CompactedEvents, Option<(i64, u64)>), StoreError> {
        WriteBatch::compact_events(self, telemetry_before, alarms_before, resume, limit)
    }

    fn purge_closed_alerts(
        &mut self,
        before: Timestamp,
        resume: u64,
        limit: usize,
    ) -> Result<Progress<u64>, StoreError> {
        WriteBatch::purge_closed_alerts(self, before, resume, limit)
    }

    fn purge_audit(&mut self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Progress<()>, StoreError> {
        WriteBatch::purge_audit(self, before, now, limit)
    }

    fn purge_quarantine(&mut self, before: Timestamp, limit: usize) -> Result<Progress<()>, StoreError> {
        WriteBatch::purge_quarantine(self, before, limit)
    }

    fn erase_person_step(&mut self, person: &ResidentId, limit: usize) -> Result<ErasureStep, StoreError> {
        WriteBatch::erase_person_step(self, person, limit)
    }

    fn append_audit(&mut self, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, StoreError> {
        WriteBatch::append_audit(self, drafts)
    }

    /// redb's commit error is kept whole (the committer tells a full disk from a latched
    /// I/O error by it) as an unknown outcome.
    fn commit(self) -> CommitOutcome {
        match WriteBatch::commit(self) {
            Ok(()) => CommitOutcome::Committed,
            Err(error) => CommitOutcome::Unknown(error),
        }
    }
}

/// The redb store is shared with its readers; its writer is whoever holds the `Arc` mutably.
impl WriteStore for Arc<Store> {
    type Txn<'s> = WriteBatch<'s>;

    fn begin_txn(&mut self) -> Result<WriteBatch<'_>, StoreError> {
        Store::begin_write(self)
    }

    fn max_alert_id(&self) -> Result<Option<AlertId>, StoreError> {
        Store::max_alert_id(self)
    }

    fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        Store::open_alerts(self)
    }

    fn engine_state(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Store::engine_state(self)
    }
}

/// The PostgreSQL store for the synchronous core: every call runs the async client on
/// `runtime` and waits. Call it from a blocking thread (tokio's blocking pool, or a thread of
/// its own), never from an async task; and the runtime must be multi-threaded, since its
/// workers drive the connection while the caller waits.
#[derive(Debug)]
pub struct PgBlocking {
    store: PgStore,
    runtime: Handle,
}

impl PgBlocking {
    pub fn new(store: PgStore, runtime: Handle) -> Self {
        Self { store, runtime }
    }

    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// For the lease (acquire, renew, release) between transactions.
    pub fn store_mut(&mut self) -> &mut PgStore {
        &mut self.store
    }

    /// Takes the writer lease if it is vacant or expired ([`PgStore::acquire_lease`]).
    pub fn acquire_lease(&mut self) -> Result<postgres::LeaseAttempt, StoreError> {
        let PgBlocking { store, runtime } = self;
        Ok(runtime.block_on(store.acquire_lease())?)
    }

    /// Extends the held lease; `Fenced` or `NotLeader` once it is lost ([`PgStore::renew_lease`]).
    pub fn renew_lease(&mut self) -> Result<postgres::Lease, StoreError> {
        let PgBlocking { store, runtime } = self;
        Ok(runtime.block_on(store.renew_lease())?.clone())
    }

    /// Gives the lease up at a clean shutdown, so a standby need not wait for it to expire.
    pub fn release_lease(&mut self) -> Result<(), StoreError> {
        let PgBlocking { store, runtime } = self;
        Ok(runtime.block_on(store.release_lease())?)
    }

    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Runs one of the store's async calls to its end. Also from a runtime worker (an HTTP
    /// handler reading in place, as it may from redb): that thread is handed over to blocking
    /// work meanwhile, so the runtime's other tasks go on.
    pub fn block_on<F: std::future::Future>(&self, work: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(work))
    }

    /// [`PgBlocking::block_on`] for a read, listing a record it met that does not decode.
    fn read<T>(&self, work: impl std::future::Future<Output = Result<T, postgres::PgError>>) -> Result<T, StoreError> {
        let result = self.block_on(work);
        if let Err(postgres::PgError::Unreadable(unreadable)) = &result {
            self.store.problems().report(unreadable);
        }
        Ok(result?)
    }
}

/// A fenced PostgreSQL write transaction, driven synchronously.
#[derive(Debug)]
pub struct PgTxn<'s> {
    batch: PgWriteBatch<'s>,
    runtime: &'s Handle,
}

impl WriteTxn for PgTxn<'_> {
    fn insert_events(&mut self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        Ok(self.runtime.block_on(self.batch.insert_events(events))?)
    }

    fn devices(&mut self, ids: &[DeviceId]) -> Result<Vec<Result<Option<DeviceRecord>, Unreadable>>, StoreError> {
        Ok(self.runtime.block_on(self.batch.devices(ids))?)
    }

    fn put_devices(&mut self, records: &[&DeviceRecord]) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.put_devices(records))?)
    }

    fn residents_for(&mut self, at: &[(DeviceId, Timestamp)]) -> Result<Vec<Option<ResidentId>>, StoreError> {
        Ok(self.runtime.block_on(self.batch.residents_for(at))?)
    }

    fn put_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.put_alert(alert))?)
    }

    fn record_alert_change(&mut self, alert: &Alert, committed_at: Timestamp) -> Result<u64, StoreError> {
        Ok(self
            .runtime
            .block_on(self.batch.record_alert_change(alert, committed_at))?)
    }

    fn put_engine_state(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.put_engine_state(key, value))?)
    }

    fn quarantine(&mut self, record: &QuarantineRecord) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.quarantine(record))?)
    }

    fn resident(&mut self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        Ok(self.runtime.block_on(self.batch.resident(id))?)
    }

    fn alert(&mut self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        Ok(self.runtime.block_on(self.batch.alert(id))?)
    }

    fn create_resident(&mut self, resident: &Resident) -> Result<bool, StoreError> {
        Ok(self.runtime.block_on(self.batch.create_resident(resident))?)
    }

    fn put_resident(&mut self, resident: &Resident) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.put_resident(resident))?)
    }

    fn assign(&mut self, assignment: &Assignment) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.assign(assignment))?)
    }

    fn end_assignment(&mut self, device: &DeviceId, at: Timestamp) -> Result<(), StoreError> {
        Ok(self.runtime.block_on(self.batch.end_assignment(device, at))?)
    }

    fn assignments(&mut self, devices: &[DeviceId]) -> Result<Vec<Vec<Assignment>>, StoreError> {
        Ok(self.runtime.block_on(self.batch.assignments(devices))?)
    }

    fn upsert_people(&mut self, people: &[PersonRecord]) -> Result<usize, StoreError> {
        Ok(self.runtime.block_on(self.batch.upsert_people(people))?)
    }

    fn compact_events(
        &mut self,
        telemetry_before: Timestamp,
        alarms_before: Timestamp,
        resume: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<(CompactedEvents, Option<(i64, u64)>), StoreError> {
        Ok(self.runtime.block_on(
            self.batch
                .compact_events(telemetry_before, alarms_before, resume, limit),
        )?)
    }

    fn purge_closed_alerts(
        &mut self,
        before: Timestamp,
        resume: u64,
        limit: usize,
    ) -> Result<Progress<u64>, StoreError> {
        Ok(self
            .runtime
            .block_on(self.batch.purge_closed_alerts(before, resume, limit))?)
    }

    fn purge_audit(&mut self, before: Timestamp, now: Timestamp, limit: usize) -> Result<Progress<()>, StoreError> {
        Ok(self.runtime.block_on(self.batch.purge_audit(before, now, limit))?)
    }

    fn purge_quarantine(&mut self, before: Timestamp, limit: usize) -> Result<Progress<()>, StoreError> {
        Ok(self.runtime.block_on(self.batch.purge_quarantine(before, limit))?)
    }

    fn erase_person_step(&mut self, person: &ResidentId, limit: usize) -> Result<ErasureStep, StoreError> {
        Ok(self.runtime.block_on(self.batch.erase_person_step(person, limit))?)
    }

    fn append_audit(&mut self, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.runtime.block_on(self.batch.append_audit(drafts))?)
    }

    fn commit(self) -> CommitOutcome {
        match self.runtime.block_on(self.batch.commit()) {
            postgres::CommitOutcome::Committed => CommitOutcome::Committed,
            postgres::CommitOutcome::RolledBack { reason } => {
                CommitOutcome::RolledBack(StoreError::RolledBack { reason })
            }
            postgres::CommitOutcome::Unknown { reason } => CommitOutcome::Unknown(StoreError::CommitUnknown { reason }),
        }
    }
}

impl WriteStore for PgBlocking {
    type Txn<'s> = PgTxn<'s>;

    fn begin_txn(&mut self) -> Result<PgTxn<'_>, StoreError> {
        let PgBlocking { store, runtime } = self;
        let batch = runtime.block_on(store.begin_write())?;
        Ok(PgTxn { batch, runtime })
    }

    fn max_alert_id(&self) -> Result<Option<AlertId>, StoreError> {
        Ok(self.block_on(self.store.max_alert_id())?)
    }

    fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        Ok(self.block_on(self.store.open_alerts())?)
    }

    fn engine_state(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.block_on(self.store.engine_state())?)
    }
}
