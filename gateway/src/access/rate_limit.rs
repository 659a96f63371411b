//! Login rate limiting: failed attempts per username and per client address within a window.
//! In memory (a restart forgets it; a restart is rare and visible), which keeps a flood of bad
//! logins off the store and off the single writer that also commits alarms: a refused attempt
//! is audited once per block, not once per request.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::domain::Timestamp;

/// Most keys remembered; beyond this the keys with no failures in the window are dropped, so a
/// flood of made-up usernames cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
struct Failures {
    times: VecDeque<Timestamp>,
    /// A refusal was already audited for the block that ends then.
    refusal_noted_until: Option<Timestamp>,
}

/// An attempt refused without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Seconds until the attempt would be considered (for `Retry-After`).
    pub retry_after_s: u64,
    /// The first refusal of this block: audit it (later ones in the same block are not).
    pub first: bool,
}

#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window_ms: i64,
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window_ms: i64) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window_ms: window_ms.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some` if any of `keys` has had too many failures in the window.
    pub fn blocked(&self, keys: &[String], now: Timestamp) -> Option<Refusal> {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut refusal: Option<Refusal> = None;
        for key in keys {
            let Some(entry) = failures.get_mut(key) else { continue };
            prune(&mut entry.times, now, self.window_ms);
            if entry.times.len() < self.max_failures as usize {
                continue;
            }
            let Some(oldest) = entry.times.front() else { continue };
            let until = oldest.plus_ms(self.window_ms);
            let wait_ms = until.millis_since(now).max(1);
            let wait_s = u64::try_from(wait_ms.saturating_add(999) / 1000).unwrap_or(1).max(1);
            let first = entry.refusal_noted_until.is_none_or(|noted| noted <= now);
            if first {
                entry.refusal_noted_until = Some(until);
            }
            refusal = Some(match refusal {
                None => Refusal {
                    retry_after_s: wait_s,
                    first,
                },
                Some(other) => Refusal {
                    retry_after_s: other.retry_after_s.max(wait_s),
                    first: other.first || first,
                },
            });
        }
        refusal
    }

    pub fn failed(&self, keys: &[String], now: Timestamp) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_KEYS {
            let window = self.window_ms;
            failures.retain(|_, entry| {
                prune(&mut entry.times, now, window);
                !entry.times.is_empty()
            });
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_default();
            prune(&mut entry.times, now, self.window_ms);
            entry.times.push_back(now);
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
        let refusal = limiter.blocked(&keys, t0.plus_ms(10)).unwrap();
        assert_eq!(
            refusal,
            Refusal {
                retry_after_s: 60,
                first: true
            }
        );
        // Later refusals in the same block are not audited again.
        assert!(!limiter.blocked(&keys, t0.plus_ms(11)).unwrap().first);
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
