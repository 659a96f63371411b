//! Passwords: argon2id hashes (the crate's defaults, OWASP's minimum: 19 MiB, 2 passes) with
//! salts from the OS random source, and generated one-time passwords.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A chosen password must be at least this long (characters).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longer passwords are refused (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Length of a generated one-time password.
pub const ONE_TIME_PASSWORD_LEN: usize = 20;
/// Letters and digits without look-alikes (0/O, 1/l/I), so it can be read out over a phone.
pub const ONE_TIME_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the new password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("the new password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Checks a password a person chose (length only: long passphrases beat composition rules).
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        Err(PasswordError::TooShort)
    } else if chars > MAX_PASSWORD_LEN {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// The PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True if `password` matches the stored hash; a damaged hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        // Verifies with the parameters in the hash, so older, weaker hashes still work.
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password nobody knows: a login for an unknown user is verified against
/// it so that it takes as long as one for a known user.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // Same parameters as a real hash; if hashing failed the fallback still parses and costs the same.
        hash_password(&one_time_password()).unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3y8mFkRz8V1vgjZ0Ww3xkYyL0J9oKf1m4m7o0Hq1rB8".into()
        })
    })
}

/// A random one-time password from [`ONE_TIME_ALPHABET`] (about 116 bits).
pub fn one_time_password() -> String {
    let mut out = String::with_capacity(ONE_TIME_PASSWORD_LEN);
    let alphabet_len = ONE_TIME_ALPHABET.len() as u32;
    // Rejection sampling keeps every character equally likely.
    let limit = u32::MAX - u32::MAX % alphabet_len;
    while out.len() < ONE_TIME_PASSWORD_LEN {
        let value = OsRng.next_u32();
        if value >= limit {
            continue;
        }
        if let Some(&c) = ONE_TIME_ALPHABET.get((value % alphabet_len) as usize) {
            out.push(char::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b);
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterY", &a));
        assert!(!verify_password("anything", "not a hash"));
        assert!(!verify_password("anything", dummy_hash()));
    }

    #[test]
    fn one_time_passwords_and_rules() {
        let a = one_time_password();
        assert_eq!(a.len(), ONE_TIME_PASSWORD_LEN);
        assert!(a.bytes().all(|b| ONE_TIME_ALPHABET.contains(&b)), "{a}");
        assert_ne!(a, one_time_password());
        assert!(check_new_password(&a).is_ok());
        assert!(matches!(check_new_password("short"), Err(PasswordError::TooShort)));
        assert!(matches!(
            check_new_password(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(PasswordError::TooLong)
        ));
    }
}
