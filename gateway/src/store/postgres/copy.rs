//! What `tec-gateway store export` (redb to PostgreSQL, `export.rs`) and `store import`
//! (PostgreSQL to redb, `import.rs`) copy: one list of the tables, read from one store into
//! these values and written from them into the other, so the two directions cannot drift
//! apart. Events are the exception: there can be millions, so they go across in chunks of
//! [`EVENT_CHUNK`] rows rather than in the [`Snapshot`].

use crate::domain::{Alert, Assignment, DeviceRecord, EventKey, QuarantineRecord, Resident, ResidentId, Timestamp};
use crate::reports::register::PersonRecord;
use crate::store::AuditCheckpoint;
use crate::store::access::{AuditHead, UserRecord};
use crate::store::activity::StoredDeviceDay;
use crate::store::schema::AlertHeader;

/// Events are read from one store and written to the other this many at a time.
pub(super) const EVENT_CHUNK: usize = 1_000;
/// Device days (small fixed-size rows, up to millions) are written this many at a time.
pub(super) const DEVICE_DAY_CHUNK: usize = 10_000;

/// One stored event row: its key and copy, what the gateway recorded on receipt, and the
/// payload exactly as received.
#[derive(Debug)]
pub(super) struct CopiedEvent {
    pub key: EventKey,
    pub copy: u32,
    pub received_at: Timestamp,
    pub resident: Option<ResidentId>,
    pub payload: Vec<u8>,
}

/// One entry of the alert-change log as both stores keep it: the alert's header as it was
/// right after the change (its history is the alert's own, append-only).
#[derive(Debug)]
pub(super) struct LoggedChange {
    pub seq: u64,
    pub committed_at: Timestamp,
    pub header: AlertHeader,
}

/// Everything copied besides events. Login sessions are not: users log in again.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub alerts: Vec<Alert>,
    /// Oldest first.
    pub alert_changes: Vec<LoggedChange>,
    /// The newest seq ever committed (may be above the newest kept change: never goes back).
    pub last_alert_change_seq: u64,
    pub engine_state: Vec<(String, Vec<u8>)>,
    pub devices: Vec<DeviceRecord>,
    pub assignments: Vec<Assignment>,
    pub residents: Vec<Resident>,
    pub people: Vec<PersonRecord>,
    /// Newest first (written oldest first, so the target numbers them in the same order).
    pub quarantine: Vec<QuarantineRecord>,
    pub users: Vec<UserRecord>,
    /// (seq, the entry's bytes exactly as hashed).
    pub audit: Vec<(u64, Vec<u8>)>,
    pub audit_head: Option<AuditHead>,
    /// Where the chain starts once the retention purge removed its oldest entries.
    pub audit_checkpoint: Option<AuditCheckpoint>,
    /// Each device's activity per day, as counted on ingest (redelivered copies included,
    /// which the events alone cannot tell), in (device, day) order.
    pub device_days: Vec<StoredDeviceDay>,
}

impl Snapshot {
    /// Adds what it holds to `counts`.
    pub(super) fn count_into(&self, counts: &mut CopyCounts) {
        let rows = |n: usize| n as u64;
        counts.alerts = rows(self.alerts.len());
        counts.alert_transitions = self.alerts.iter().map(|alert| rows(alert.transitions.len())).sum();
        counts.alert_changes = rows(self.alert_changes.len());
        counts.alert_change_seq = self.last_alert_change_seq;
        counts.engine_state = rows(self.engine_state.len());
        counts.devices = rows(self.devices.len());
        counts.assignments = rows(self.assignments.len());
        counts.residents = rows(self.residents.len());
        counts.people = rows(self.people.len());
        counts.quarantine = rows(self.quarantine.len());
        counts.users = rows(self.users.len());
        counts.audit_entries = rows(self.audit.len());
        counts.device_days = rows(self.device_days.len());
    }
}

/// How many rows a copy moved, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyCounts {
    /// Event rows, conflicting copies included.
    pub events: u64,
    /// Of those, the conflicting copies (copy > 0).
    pub conflicting_copies: u64,
    pub alerts: u64,
    pub alert_transitions: u64,
    pub alert_changes: u64,
    /// The alert-change counter carried over (the newest seq ever committed).
    pub alert_change_seq: u64,
    pub engine_state: u64,
    pub devices: u64,
    pub assignments: u64,
    pub residents: u64,
    pub people: u64,
    pub quarantine: u64,
    pub users: u64,
    pub audit_entries: u64,
    pub device_days: u64,
}

impl CopyCounts {
    /// Counts a chunk of event rows.
    pub(super) fn add_events(&mut self, rows: &[CopiedEvent]) {
        self.events += rows.len() as u64;
        self.conflicting_copies += rows.iter().filter(|row| row.copy > 0).count() as u64;
    }

    /// (table, rows) in the order the commands print them.
    pub fn lines(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("events", self.events),
            ("  of which conflicting copies", self.conflicting_copies),
            ("alerts", self.alerts),
            ("alert transitions", self.alert_transitions),
            ("alert changes", self.alert_changes),
            ("alert change seq", self.alert_change_seq),
            ("engine state", self.engine_state),
            ("devices", self.devices),
            ("assignments", self.assignments),
            ("residents", self.residents),
            ("people", self.people),
            ("quarantine", self.quarantine),
            ("users", self.users),
            ("audit entries", self.audit_entries),
            ("device days", self.device_days),
        ]
    }
}
