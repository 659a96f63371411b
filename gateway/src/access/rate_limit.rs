//! Login rate limiting: failed attempts per username and per client address within a window.
//! In memory (a restart forgets it; a restart is rare and audited in the log), which keeps a
//! flood of bad logins off the store and off the single writer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::domain::Timestamp;

/// Most keys remembered; beyond this the keys with the oldest failures are dropped, so a flood
/// of made-up usernames cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window_ms: i64,
    failures: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window_ms: i64) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window_ms: window_ms.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` if any of `keys` has had too many failures in the window.
    pub fn blocked(&self, keys: &[String], now: Timestamp) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut wait_ms: Option<i64> = None;
        for key in keys {
            if let Some(times) = failures.get_mut(key) {
                prune(times, now, self.window_ms);
                if times.len() >= self.max_failures as usize
                    && let Some(oldest) = times.front()
                {
                    let until = oldest.plus_ms(self.window_ms).millis_since(now).max(1);
                    wait_ms = Some(wait_ms.map_or(until, |w| w.max(until)));
                }
            }
        }
        wait_ms.map(|ms| u64::try_from(ms.saturating_add(999) / 1000).unwrap_or(1).max(1))
    }

    pub fn failed(&self, keys: &[String], now: Timestamp) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_KEYS {
            let window = self.window_ms;
            failures.retain(|_, times| {
                prune(times, now, window);
                !times.is_empty()
            });
        }
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            prune(times, now, self.window_ms);
            times.push_back(now);
        }
    }

    /// A successful login clears its username's failures (not its address's).
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(key);
    }
}

fn prune(times: &mut VecDeque<Timestamp>, now: Timestamp, window_ms: i64) {
    while times.front().is_some_and(|t| now.millis_since(*t) >= window_ms) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_passes() {
        let limiter = LoginLimiter::new(3, 60_000);
        let keys = ["user:alice".to_owned(), "addr:10.0.0.1".to_owned()];
        let t0 = Timestamp(1_000_000);
        for i in 0..3 {
            assert_eq!(limiter.blocked(&keys, t0.plus_ms(i)), None);
            limiter.failed(&keys, t0.plus_ms(i));
        }
        assert_eq!(limiter.blocked(&keys, t0.plus_ms(10)), Some(60));
        // Another user from the same address is blocked too; the same user elsewhere as well.
        assert!(limiter.blocked(&["addr:10.0.0.1".to_owned()], t0.plus_ms(10)).is_some());
        assert!(limiter.blocked(&["user:alice".to_owned()], t0.plus_ms(10)).is_some());
        assert_eq!(limiter.blocked(&["user:bob".to_owned()], t0), None);
        assert_eq!(limiter.blocked(&keys, t0.plus_ms(60_000)), None);
        limiter.failed(&keys, t0.plus_ms(60_000));
        limiter.succeeded("user:alice");
        assert_eq!(limiter.blocked(&["user:alice".to_owned()], t0.plus_ms(60_001)), None);
    }
}
