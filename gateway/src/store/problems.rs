//! The store's list of records it could not read: each logged once, counted, and listed for a
//! human (nothing unreadable may vanish quietly behind a query that skipped it).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Unreadable;

/// Distinct records kept in the list; beyond it they are still counted and logged.
const LISTED_MAX: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Problems {
    listed: Mutex<BTreeSet<(&'static str, String)>>,
    details: Mutex<Vec<Unreadable>>,
    count: AtomicU64,
}

impl Problems {
    /// Records `unreadable` (once per table and key).
    pub(crate) fn report(&self, unreadable: &Unreadable) {
        let Ok(mut listed) = self.listed.lock() else { return };
        if listed.contains(&(unreadable.table, unreadable.key.clone())) {
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            table = unreadable.table,
            key = %unreadable.key,
            detail = %unreadable.detail,
            "unreadable store record (skipped by this query, listed in Store::unreadable)"
        );
        if listed.len() < LISTED_MAX {
            listed.insert((unreadable.table, unreadable.key.clone()));
            if let Ok(mut details) = self.details.lock() {
                details.push(unreadable.clone());
            }
        }
    }

    pub(crate) fn list(&self) -> Vec<Unreadable> {
        self.details.lock().map(|details| details.clone()).unwrap_or_default()
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
