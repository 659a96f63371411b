//! Device credentials: random from the operating system, never derived from an id or serial.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Characters of a credential: letters and digits only, so it survives being read aloud,
/// typed from a printed sheet, and put in a config file without quoting.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 24 characters of 62: 142 bits.
pub const CREDENTIAL_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomUnavailable;

/// A new device password.
pub fn new_password() -> Result<String, RandomUnavailable> {
    let rng = SystemRandom::new();
    let mut password = String::with_capacity(CREDENTIAL_LEN);
    let mut buffer = [0u8; 64];
    while password.len() < CREDENTIAL_LEN {
        rng.fill(&mut buffer).map_err(|_| RandomUnavailable)?;
        // Rejection sampling: 248 = 4 x 62, so bytes below it map uniformly.
        for byte in buffer.iter().filter(|byte| **byte < 248) {
            if password.len() == CREDENTIAL_LEN {
                break;
            }
            if let Some(symbol) = ALPHABET.get(usize::from(byte % 62)) {
                password.push(char::from(*symbol));
            }
        }
    }
    Ok(password)
}

/// A new salt for a password hash.
pub fn new_salt<const N: usize>() -> Result<[u8; N], RandomUnavailable> {
    let mut salt = [0u8; N];
    SystemRandom::new().fill(&mut salt).map_err(|_| RandomUnavailable)?;
    Ok(salt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let password = new_password().unwrap();
            assert_eq!(password.len(), CREDENTIAL_LEN);
            assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(password));
        }
    }

    #[test]
    fn every_symbol_is_used() {
        let mut used = std::collections::HashSet::new();
        for _ in 0..100 {
            used.extend(new_password().unwrap().chars());
        }
        assert_eq!(used.len(), 62);
    }
}
