//! The console's, API's and live stream's reads on the PostgreSQL store: one connection of
//! their own (never the writer's, whose transactions they would queue behind), shared by all
//! readers (tokio-postgres pipelines their queries), opened on first use and opened again
//! after any database error, so a database failover heals by itself.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::civil::Date;
use protocol::DeviceId;
use tokio::runtime::Handle;

use super::postgres::{PgError, PgStore, PgStoreOptions};
use super::seam::{PgBlocking, ReadStore};
use super::{
    AccessChange, AccessRefusal, AccessStore, AlertChangesSince, AlertFilter, AlertPage, AlertQuery, AuditCheckpoint,
    AuditEntry, AuditHead, EventFilter, EventPage, SessionRecord, StoreError, Unreadable, UserRecord,
};
use crate::access::Username;
use crate::domain::{Alert, AlertId, Assignment, DeviceRecord, QuarantineRecord, Resident, ResidentId, Timestamp};
use crate::reports::register::PersonRecord;
use crate::reports::uptake::ActivityIndex;

/// Reads from PostgreSQL for the readers of a gateway (leader or standby).
#[derive(Debug)]
pub struct PgReader {
    config: tokio_postgres::Config,
    options: PgStoreOptions,
    runtime: Handle,
    current: Mutex<Option<Arc<PgBlocking>>>,
}

impl PgReader {
    /// How many records this process found unreadable (the writer's finds included).
    pub fn unreadable_count(&self) -> u64 {
        self.options.problems.count()
    }

    /// Connects at the first read. `runtime` must be multi-threaded (see [`PgBlocking`]).
    pub fn new(config: tokio_postgres::Config, options: PgStoreOptions, runtime: Handle) -> Self {
        Self {
            config,
            options,
            runtime,
            current: Mutex::new(None),
        }
    }

    fn connection(&self) -> Result<Arc<PgBlocking>, StoreError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        let store = tokio::task::block_in_place(|| {
            self.runtime
                .block_on(PgStore::connect(&self.config, self.options.clone()))
        })?;
        let connection = Arc::new(PgBlocking::new(store, self.runtime.clone()));
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Runs one read; a database error drops the connection, so the next read connects again
    /// (to the new primary, after a failover).
    fn read<T>(&self, read: impl FnOnce(&PgBlocking) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let connection = self.connection()?;
        let result = read(&connection);
        if let Err(StoreError::Postgres(error)) = &result
            && matches!(**error, PgError::Db(_))
        {
            tracing::warn!(%error, "PostgreSQL read failed; the readers' connection is opened again at the next read");
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }
}

impl ReadStore for PgReader {
    fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, StoreError> {
        self.read(|store| store.alert_page(query))
    }

    fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        self.read(|store| store.events(filter))
    }

    fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(|store| store.device(id))
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.read(|store| store.devices())
    }

    fn resident(&self, id: &ResidentId) -> Result<Option<Resident>, StoreError> {
        self.read(|store| store.resident(id))
    }

    fn residents(&self) -> Result<Vec<Resident>, StoreError> {
        self.read(|store| store.residents())
    }

    fn assignments(&self, device: &DeviceId) -> Result<Vec<Assignment>, StoreError> {
        self.read(|store| store.assignments(device))
    }

    fn all_assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        self.read(|store| store.all_assignments())
    }

    fn people(&self) -> Result<Vec<PersonRecord>, StoreError> {
        self.read(|store| store.people())
    }

    fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, StoreError> {
        self.read(|store| store.resident_for(device, at))
    }

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        self.read(|store| ReadStore::alert(store, id))
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        self.read(|store| store.alerts(filter))
    }

    fn residents_with_open_alerts(&self) -> Result<Vec<ResidentId>, StoreError> {
        self.read(|store| store.residents_with_open_alerts())
    }

    fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.read(|store| store.quarantined(limit))
    }

    fn quarantine_len(&self) -> Result<u64, StoreError> {
        self.read(|store| store.quarantine_len())
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        self.read(|store| store.event_count())
    }

    fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, StoreError> {
        self.read(|store| store.alert_changes_since(after, limit))
    }

    fn last_alert_change_seq(&self) -> Result<u64, StoreError> {
        self.read(|store| store.last_alert_change_seq())
    }

    fn device_days(&self, devices: &BTreeSet<DeviceId>, from: Date, to: Date) -> Result<ActivityIndex, StoreError> {
        self.read(|store| store.device_days(devices, from, to))
    }

    fn delivery_totals(&self, from: Date, to: Date) -> Result<(u64, u64), StoreError> {
        self.read(|store| store.delivery_totals(from, to))
    }

    /// Without a connection: the list is the process's, shared with the writer.
    fn unreadable(&self) -> Vec<Unreadable> {
        self.options.problems.list()
    }
}

impl AccessStore for PgReader {
    fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        self.read(|store| store.user(username))
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|store| store.users())
    }

    fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read(|store| store.session(token_hash))
    }

    fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.read(|store| store.audit_raw())
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        self.read(|store| store.audit_head())
    }

    fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        self.read(|store| store.audit_checkpoint())
    }

    fn audit_for_resident(&self, resident: &ResidentId) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|store| store.audit_for_resident(resident))
    }

    /// Access changes go through the committer (fenced by the writer lease), never a reader.
    fn apply_access(&self, _change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        Err(StoreError::NotOnPostgres {
            what: "an access change outside the writer",
        })
    }
}
