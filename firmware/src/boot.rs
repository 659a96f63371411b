//! The boot counter: half of every event's identity `(boot, seq)`. It must be persisted and
//! incremented on every start, before the first event, or a restarted device would reuse
//! `(boot, seq)` pairs the gateway has already stored (and silently deduplicate new events).

/// Persistent boot counter. On hardware this is a flash (or FRAM) cell; on the host and in
/// tests [`MemoryBootCounter`].
pub trait BootCounter {
    type Error;

    /// Reads the stored counter, stores the incremented value and returns it. The new value
    /// must be durable before this returns.
    fn load_and_increment(&mut self) -> Result<u32, Self::Error>;

    /// Stores `max(stored, floor)` and returns the value now stored; never lowers the
    /// counter. The gateway's `BootFloor` asks for this when it has seen this device's keys
    /// reused (its counter was wiped or went back): the device then numbers new events with
    /// the returned boot, and the next start boots above it. Durable before it returns.
    fn raise_to(&mut self, floor: u32) -> Result<u32, Self::Error>;
}

/// Why the in-memory counter refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BootCounterError {
    /// Wrapping would reuse boot numbers; refuse instead.
    #[error("boot counter exhausted")]
    Exhausted,
}

/// A boot counter in RAM, for host simulation and tests (a simulated reboot keeps the
/// value, as flash would).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryBootCounter {
    stored: u32,
}

impl MemoryBootCounter {
    /// A counter whose next boot will be `stored + 1`.
    pub const fn new(stored: u32) -> Self {
        Self { stored }
    }

    /// The value last stored.
    pub const fn stored(&self) -> u32 {
        self.stored
    }
}

impl BootCounter for MemoryBootCounter {
    type Error = BootCounterError;

    fn load_and_increment(&mut self) -> Result<u32, Self::Error> {
        let next = self.stored.checked_add(1).ok_or(BootCounterError::Exhausted)?;
        self.stored = next;
        Ok(next)
    }

    fn raise_to(&mut self, floor: u32) -> Result<u32, Self::Error> {
        self.stored = self.stored.max(floor);
        Ok(self.stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_from_one_and_refuses_to_wrap() {
        let mut counter = MemoryBootCounter::default();
        assert_eq!(counter.load_and_increment(), Ok(1));
        assert_eq!(counter.load_and_increment(), Ok(2));
        assert_eq!(counter.stored(), 2);
        let mut full = MemoryBootCounter::new(u32::MAX);
        assert_eq!(full.load_and_increment(), Err(BootCounterError::Exhausted));
        assert_eq!(full.stored(), u32::MAX);
    }

    #[test]
    fn raise_to_only_ever_raises() {
        let mut counter = MemoryBootCounter::new(5);
        assert_eq!(counter.raise_to(3), Ok(5), "a floor below the counter changes nothing");
        assert_eq!(counter.raise_to(5), Ok(5));
        assert_eq!(counter.raise_to(9), Ok(9));
        assert_eq!(
            counter.load_and_increment(),
            Ok(10),
            "the next start boots above the floor"
        );
        assert_eq!(counter.raise_to(u32::MAX), Ok(u32::MAX));
    }
}
