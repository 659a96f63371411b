//! A tiny seedable PRNG for reconnect jitter. Not for anything secret: it only spreads
//! thousands of devices' reconnects after a broker restart so they do not arrive at once.

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, passes BigCrush, and any seed
/// (including 0) is fine. A device seeds it from something device-specific (id hash, boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (modulo bias is irrelevant for jitter).
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(span) => self.next_u64() % span,
            None => self.next_u64(),
        }
    }
}

/// FNV-1a, to turn a device id into a seed.
pub fn seed_from(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed_and_bounded() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let mut c = SplitMix64::new(43);
        let xs: std::vec::Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: std::vec::Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: std::vec::Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!((0..1_000).all(|_| a.up_to(10) <= 10));
        assert_eq!(a.up_to(0), 0);
        let _ = a.up_to(u64::MAX);
        assert_ne!(seed_from(b"sim-h00001-pendant"), seed_from(b"sim-h00002-pendant"));
    }
}
