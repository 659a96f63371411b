//! The store's list of records it could not read: each logged once, counted, and listed for a
//! human (nothing unreadable may vanish quietly behind a query that skipped it).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Unreadable;

/// Distinct records kept in the list; beyond it they are still counted and logged.
const LISTED_MAX: usize = 10_000;

/// Shared by a process's PostgreSQL connections (the writer's and the readers'), so the
/// metric and the inspection list cover every read; the redb store keeps its own.
#[derive(Debug, Default)]
pub struct Problems {
    listed: Mutex<BTreeSet<(&'static str, String)>>,
    details: Mutex<Vec<Unreadable>>,
    count: AtomicU64,
}

impl Problems {
    /// Records `unreadable` (once per table and key).
    pub fn report(&self, unreadable: &Unreadable) {
        let Ok(mut listed) = self.listed.lock() else { return };
        if listed.contains(&(unreadable.table, unreadable.key.clone())) {
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            table = unreadable.table,
            key = %unreadable.key,
            detail = %without_quoted_values(&unreadable.detail),
            "unreadable store record (skipped by this query, listed in Store::unreadable)"
        );
        if listed.len() < LISTED_MAX {
            listed.insert((unreadable.table, unreadable.key.clone()));
            if let Ok(mut details) = self.details.lock() {
                details.push(unreadable.clone());
            }
        }
    }

    pub fn list(&self) -> Vec<Unreadable> {
        self.details.lock().map(|details| details.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// A decoder's message without the values it quotes (`invalid type: string "Ann Smith"`):
/// a damaged record may hold a name, and logs carry ids, never names. Field names (in
/// backticks) and positions stay, so the log still says what is wrong where.
pub(crate) fn without_quoted_values(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut quoted = false;
    for c in detail.chars() {
        match (quoted, c) {
            (false, '"') => {
                out.push_str("\"…");
                quoted = true;
            }
            (true, '"') => {
                out.push('"');
                quoted = false;
            }
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    if quoted {
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_left_out_of_logged_details() {
        let err = serde_json::from_str::<u64>("\"Ann Smith, 1 Test Street\"").unwrap_err();
        let logged = without_quoted_values(&err.to_string());
        assert!(!logged.contains("Ann"), "{logged}");
        assert!(
            logged.starts_with("invalid type: string \"…\", expected u64"),
            "{logged}"
        );
        let missing = "missing field `display_name` at line 1 column 9";
        assert_eq!(without_quoted_values(missing), missing);
        assert_eq!(without_quoted_values("cut \"short"), "cut \"…\"");
    }
}
