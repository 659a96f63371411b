//! Device identifiers, as they appear in topics and as the broker authenticates them.

use core::fmt;

/// Longest device id accepted. Short enough to keep topics and device state small,
/// long enough for a vendor prefix plus a serial number.
pub const MAX_DEVICE_ID_LEN: usize = 32;
/// Shortest device id accepted.
pub const MIN_DEVICE_ID_LEN: usize = 3;

/// Why a string is not a valid device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("device id is shorter than {MIN_DEVICE_ID_LEN} characters")]
    TooShort,
    #[error("device id is longer than {MAX_DEVICE_ID_LEN} characters")]
    TooLong,
    #[error("device id contains a character outside [a-z0-9_-] at byte {0}")]
    InvalidCharacter(usize),
    #[error("device id must start with a letter or digit")]
    BadFirstCharacter,
}

/// A validated device id: 3 to 32 characters from `a-z`, `0-9`, `-` and `_`, starting
/// with a letter or digit.
///
/// The rules keep ids safe inside MQTT topic levels (no `/`, `+`, `#`, no NUL), safe
/// as broker usernames and file names, and unambiguous (lower case only, so `PND-1`
/// and `pnd-1` cannot be two devices). Stored inline so it is `Copy` and heap-free.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId {
    len: u8,
    bytes: [u8; MAX_DEVICE_ID_LEN],
}

impl DeviceId {
    /// Validates `text` as a device id.
    pub fn new(text: &str) -> Result<Self, DeviceIdError> {
        let raw = text.as_bytes();
        if raw.len() < MIN_DEVICE_ID_LEN {
            return Err(DeviceIdError::TooShort);
        }
        if raw.len() > MAX_DEVICE_ID_LEN {
            return Err(DeviceIdError::TooLong);
        }
        for (index, byte) in raw.iter().enumerate() {
            let allowed = byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-' || *byte == b'_';
            if !allowed {
                return Err(DeviceIdError::InvalidCharacter(index));
            }
        }
        if matches!(raw.first(), Some(b'-' | b'_')) {
            return Err(DeviceIdError::BadFirstCharacter);
        }
        let mut bytes = [0u8; MAX_DEVICE_ID_LEN];
        for (slot, byte) in bytes.iter_mut().zip(raw) {
            *slot = *byte;
        }
        Ok(Self {
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII was ever stored, so this cannot fail; fall back to "" rather than panic.
        core::str::from_utf8(self.used()).unwrap_or("")
    }

    fn used(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// Ordered as text (not by length first), so sorted lists and range scans read naturally.
impl Ord for DeviceId {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        // Byte order of ASCII is text order; skipping the UTF-8 check keeps this cheap
        // (ids are map keys on the gateway's hot path).
        self.used().cmp(other.used())
    }
}

impl PartialOrd for DeviceId {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.as_str())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for ok in ["pnd-000123", "hub_7", "abc", "a1234567890123456789012345678901"] {
            assert_eq!(DeviceId::new(ok).map(|d| d.to_string()), Ok(ok.into()), "{ok}");
        }
    }

    #[test]
    fn orders_as_text() {
        let short = DeviceId::new("zzz").unwrap();
        let long = DeviceId::new("aaaa").unwrap();
        assert!(long < short);
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(DeviceId::new("ab"), Err(DeviceIdError::TooShort));
        assert_eq!(DeviceId::new(&"a".repeat(33)), Err(DeviceIdError::TooLong));
        assert_eq!(DeviceId::new("PND-1"), Err(DeviceIdError::InvalidCharacter(0)));
        assert_eq!(DeviceId::new("pnd/1"), Err(DeviceIdError::InvalidCharacter(3)));
        assert_eq!(DeviceId::new("pnd+"), Err(DeviceIdError::InvalidCharacter(3)));
        assert_eq!(DeviceId::new("pnd#"), Err(DeviceIdError::InvalidCharacter(3)));
        assert_eq!(DeviceId::new("-pnd"), Err(DeviceIdError::BadFirstCharacter));
        assert_eq!(DeviceId::new("pnd é"), Err(DeviceIdError::InvalidCharacter(3)));
    }
}
