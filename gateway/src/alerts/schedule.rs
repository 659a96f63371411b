//! Timers by due time, so a tick and `next_deadline` cost O(log n) plus what is due,
//! not a scan of every device, resident and alert (a region has millions of devices).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::domain::Timestamp;

#[derive(Debug)]
pub(crate) struct Schedule<K> {
    queue: BTreeSet<(Timestamp, K)>,
    due_at: HashMap<K, Timestamp>,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Self {
            queue: BTreeSet::new(),
            due_at: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Schedule<K> {
    /// Replace the key's timer (`None` cancels it).
    pub fn set(&mut self, key: K, due: Option<Timestamp>) {
        if self.due_at.get(&key).copied() == due {
            return;
        }
        if let Some(old) = self.due_at.remove(&key) {
            self.queue.remove(&(old, key.clone()));
        }
        if let Some(due) = due {
            self.queue.insert((due, key.clone()));
            self.due_at.insert(key, due);
        }
    }

    pub fn earliest(&self) -> Option<Timestamp> {
        self.queue.first().map(|(due, _)| *due)
    }

    /// Keys due at or before `now`, earliest first (ties by key).
    pub fn due(&self, now: Timestamp) -> Vec<K> {
        self.queue
            .iter()
            .take_while(|(due, _)| *due <= now)
            .map(|(_, key)| key.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_timer_per_key_in_due_order() {
        let mut schedule = Schedule::default();
        schedule.set("b", Some(Timestamp(20)));
        schedule.set("a", Some(Timestamp(30)));
        schedule.set("c", Some(Timestamp(10)));
        schedule.set("c", Some(Timestamp(40)));
        assert_eq!(schedule.earliest(), Some(Timestamp(20)));
        assert_eq!(schedule.due(Timestamp(30)), vec!["b", "a"]);
        schedule.set("b", None);
        assert_eq!(schedule.due(Timestamp(100)), vec!["a", "c"]);
    }
}
