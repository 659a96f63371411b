//! Reading a stopped (or killed) gateway's store, and comparing it with what devices sent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gateway::domain::{DeviceKind, DeviceRecord, StoredEvent};
use gateway::store::{EventFilter, Store};
use protocol::DeviceId;

use crate::devices::SentKey;
use crate::error::{HarnessError, Result};

fn store_error(err: gateway::store::StoreError) -> HarnessError {
    HarnessError::Other(format!("store: {err}"))
}

/// Opens the store of a gateway that is not running.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    Store::open_in_dir(data_dir).map_err(store_error)
}

/// Registers devices (as an administrator would) before the gateway starts.
pub fn register_devices(data_dir: &Path, ids: &[DeviceId], kind: DeviceKind) -> Result<()> {
    let store = open_store(data_dir)?;
    let mut batch = store.begin_write().map_err(store_error)?;
    for id in ids {
        batch
            .put_device(&DeviceRecord::new(*id, kind, true))
            .map_err(store_error)?;
    }
    batch.commit().map_err(store_error)
}

/// Every stored event, in the store's own order; an unreadable record is an error here.
pub fn stored_events(data_dir: &Path) -> Result<Vec<StoredEvent>> {
    readable(
        open_store(data_dir)?
            .events(&EventFilter::default())
            .map_err(store_error)?,
    )
}

fn readable(page: gateway::store::EventPage) -> Result<Vec<StoredEvent>> {
    if let Some(first) = page.unreadable.first() {
        return Err(HarnessError::Other(format!(
            "{} unreadable stored record(s), the first: {first}",
            page.unreadable.len()
        )));
    }
    Ok(page.into_events())
}

/// What differs between the keys sent and the events stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub sent: usize,
    pub stored: usize,
    /// Sent but not stored: the one unforgivable outcome.
    pub missing: Vec<SentKey>,
    /// Stored but never sent by these devices.
    pub extra: Vec<SentKey>,
    /// Stored more than once.
    pub duplicated: Vec<SentKey>,
}

impl Reconciliation {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.duplicated.is_empty()
    }

    /// Panics (for tests) with the first few differences.
    pub fn assert_exact(&self) {
        assert!(
            self.is_exact(),
            "store does not hold every sent event exactly once: sent {}, stored {}, missing {} (first {:?}), \
             extra {} (first {:?}), duplicated {} (first {:?})",
            self.sent,
            self.stored,
            self.missing.len(),
            self.missing.iter().take(5).collect::<Vec<_>>(),
            self.extra.len(),
            self.extra.iter().take(5).collect::<Vec<_>>(),
            self.duplicated.len(),
            self.duplicated.iter().take(5).collect::<Vec<_>>(),
        );
    }
}

/// Compares sent keys with stored events, optionally only those of `devices`.
pub fn reconcile(
    sent: &BTreeSet<SentKey>,
    stored: &[StoredEvent],
    devices: Option<&BTreeSet<DeviceId>>,
) -> Reconciliation {
    let mut counts: BTreeMap<SentKey, usize> = BTreeMap::new();
    for event in stored {
        if devices.is_some_and(|wanted| !wanted.contains(&event.key.device)) {
            continue;
        }
        let key = SentKey {
            device: event.key.device,
            boot: event.key.boot,
            seq: event.key.seq,
        };
        *counts.entry(key).or_default() += 1;
    }
    Reconciliation {
        sent: sent.len(),
        stored: counts.values().sum(),
        missing: sent.iter().filter(|key| !counts.contains_key(key)).copied().collect(),
        extra: counts.keys().filter(|key| !sent.contains(key)).copied().collect(),
        duplicated: counts.iter().filter(|(_, n)| **n > 1).map(|(key, _)| *key).collect(),
    }
}

/// Reconciles against the store in `data_dir` and also checks the store's own count agrees.
pub fn reconcile_store(data_dir: &Path, sent: &BTreeSet<SentKey>) -> Result<Reconciliation> {
    let store = open_store(data_dir)?;
    let events = readable(store.events(&EventFilter::default()).map_err(store_error)?)?;
    let count = store.event_count().map_err(store_error)?;
    if count != events.len() as u64 {
        return Err(HarnessError::Other(format!(
            "store's event_count {count} disagrees with the {} events it lists",
            events.len()
        )));
    }
    Ok(reconcile(sent, &events, None))
}
