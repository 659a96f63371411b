//! Simulated time: real time multiplied by a speed factor, so a day can pass in minutes.
//! Every timer of the firmware (heartbeats, retransmission, keep-alive, backoff) runs on
//! it, so a speed above 1 compresses network timers too (more pings per real second,
//! never fewer, so the broker's real-time keep-alive is still met).

use std::time::Duration;

use tokio::time::Instant;

/// Longest real wait the clock hands out; "never" deadlines become this.
const MAX_REAL_WAIT: Duration = Duration::from_secs(365 * 24 * 3_600);

#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start: Instant,
    speed: f64,
}

impl SimClock {
    /// A clock at 0 ms now. `speed` is simulated seconds per real second (clamped to
    /// 0.001..=100_000).
    pub fn new(speed: f64) -> Self {
        let speed = if speed.is_finite() {
            speed.clamp(0.001, 100_000.0)
        } else {
            1.0
        };
        Self {
            start: Instant::now(),
            speed,
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Simulated milliseconds since this clock started.
    pub fn now_ms(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1_000.0 * self.speed) as u64
    }

    /// The real instant at which the simulated time reaches `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        let real = Duration::try_from_secs_f64(ms as f64 / 1_000.0 / self.speed).unwrap_or(MAX_REAL_WAIT);
        self.start + real.min(MAX_REAL_WAIT)
    }

    /// Real duration of `ms` simulated milliseconds.
    pub fn real(&self, ms: u64) -> Duration {
        Duration::try_from_secs_f64(ms as f64 / 1_000.0 / self.speed)
            .unwrap_or(MAX_REAL_WAIT)
            .min(MAX_REAL_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let clock = SimClock::new(60.0);
        assert_eq!(clock.real(60_000), Duration::from_secs(1));
        assert_eq!(clock.instant_at(120_000) - clock.instant_at(0), Duration::from_secs(2));
        assert!(clock.instant_at(u64::MAX) > clock.instant_at(0));
        assert!(clock.now_ms() < 60_000);
        assert_eq!(SimClock::new(f64::NAN).speed(), 1.0);
    }
}
