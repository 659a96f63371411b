//! Mosquitto's password file and ACL file, as pure text transformations (the shell in
//! `cli/device.rs` reads, transforms and atomically replaces the files).
//!
//! Password lines use Mosquitto 2's own format, `user:$7$<iterations>$<salt>$<hash>`:
//! PBKDF2-HMAC-SHA512 over the password with a 12-byte random salt, both base64 (standard
//! alphabet, padded), exactly what `mosquitto_passwd` writes, so the broker needs no plug-in.
//!
//! ACL: one `user` block per device, each opened by a marker comment so it can be found,
//! replaced and removed again. Per-device blocks rather than one `pattern ... %u` set: a
//! device then needs BOTH a password line and its own ACL block to do anything, so a stray
//! password line (a half-finished revoke, an account added by hand) grants no topic, and the
//! ACL file itself says which devices may talk.

use std::fmt::Write as _;
use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use protocol::DeviceId;

/// Mosquitto 2's default iteration count (`mosquitto_passwd` writes `$7$101$`). The device
/// credentials are 140+ bits of OS randomness, so a guessing attack is hopeless whatever the
/// count; a higher one would only make every device connection slower.
pub const ITERATIONS: u32 = 101;
/// Salt bytes, as `mosquitto_passwd` uses.
pub const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;
/// Opens each device's ACL block; the id follows.
const DEVICE_MARKER: &str = "# tec-gateway device ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerFileError {
    #[error("password file line {line}: not `username:hash`")]
    MalformedPasswordLine { line: usize },
    #[error("password file: {user} appears on lines {first} and {second}")]
    DuplicateUser { user: String, first: usize, second: usize },
    #[error("ACL file line {line}: device block for {id:?} is not a valid device id")]
    MalformedDeviceBlock { line: usize, id: String },
    #[error("{name} is a broker account of the ACL's own header (not a device): choose another device id")]
    ReservedName { name: String },
    #[error("{name} is a provisioned device, not a service account")]
    DeviceAccount { name: String },
}

/// The `$7$...` hash Mosquitto 2 stores for `password` with this salt.
pub fn hash_password(password: &str, salt: &[u8; SALT_LEN], iterations: NonZeroU32) -> String {
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password.as_bytes(),
        &mut hash,
    );
    format!("$7${iterations}${}${}", BASE64.encode(salt), BASE64.encode(hash))
}

/// Whether `password` matches a `$7$` hash (constant-time comparison of the digests).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(""), Some("7"), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse::<NonZeroU32>(),
        BASE64.decode(salt),
        BASE64.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// A password file's lines, kept in order; comments and blank lines survive a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFile {
    lines: Vec<String>,
}

impl PasswordFile {
    pub fn parse(text: &str) -> Result<Self, BrokerFileError> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if is_comment_or_blank(line) {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(BrokerFileError::MalformedPasswordLine { line: number });
            };
            if user.is_empty() || hash.is_empty() {
                return Err(BrokerFileError::MalformedPasswordLine { line: number });
            }
            if let Some((_, first)) = seen.iter().find(|(known, _)| known == user) {
                return Err(BrokerFileError::DuplicateUser {
                    user: user.to_owned(),
                    first: *first,
                    second: number,
                });
            }
            seen.push((user.to_owned(), number));
        }
        Ok(Self {
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    pub fn contains(&self, user: &str) -> bool {
        self.hash_of(user).is_some()
    }

    /// The stored hash of `user`.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.lines
            .iter()
            .filter(|line| !is_comment_or_blank(line))
            .find_map(|line| {
                line.split_once(':')
                    .filter(|(name, _)| *name == user)
                    .map(|(_, hash)| hash)
            })
    }

    /// Sets `user`'s hash, replacing its line in place or appending one.
    pub fn set(&mut self, user: &str, hash: &str) {
        let entry = format!("{user}:{hash}");
        match self.position(user) {
            Some(index) => {
                if let Some(line) = self.lines.get_mut(index) {
                    *line = entry;
                }
            }
            None => self.lines.push(entry),
        }
    }

    /// Removes `user`'s line; whether there was one.
    pub fn remove(&mut self, user: &str) -> bool {
        match self.position(user) {
            Some(index) => {
                self.lines.remove(index);
                true
            }
            None => false,
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    fn position(&self, user: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|line| !is_comment_or_blank(line) && line.split_once(':').is_some_and(|(name, _)| name == user))
    }
}

fn is_comment_or_blank(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// The ACL file: the operator's header (the gateway's own account and anything else they
/// wrote), then one block per provisioned device, appended at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFile {
    header: Vec<String>,
    devices: Vec<DeviceId>,
}

impl AclFile {
    pub fn parse(text: &str) -> Result<Self, BrokerFileError> {
        let mut header = Vec::new();
        let mut devices = Vec::new();
        let mut in_device_block = false;
        for (index, line) in text.lines().enumerate() {
            if let Some(id) = line.strip_prefix(DEVICE_MARKER) {
                let id = DeviceId::new(id.trim()).map_err(|_| BrokerFileError::MalformedDeviceBlock {
                    line: index + 1,
                    id: id.trim().to_owned(),
                })?;
                devices.push(id);
                in_device_block = true;
                continue;
            }
            if in_device_block {
                // A device block is its marker and the lines up to the next blank line; the
                // blocks are regenerated from the id, so their content is not kept.
                if line.trim().is_empty() {
                    in_device_block = false;
                }
                continue;
            }
            header.push(line.to_owned());
        }
        while header.last().is_some_and(|line| line.trim().is_empty()) {
            header.pop();
        }
        Ok(Self { header, devices })
    }

    pub fn contains(&self, id: &DeviceId) -> bool {
        self.devices.contains(id)
    }

    /// Whether the operator's header has a `user NAME` block.
    pub fn header_has_user(&self, name: &str) -> bool {
        self.header.iter().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("user") && words.next() == Some(name) && words.next().is_none()
        })
    }

    /// Refuses a device id that names an account of the header (e.g. `gateway`): that
    /// account's rights would then apply to the device.
    pub fn check_not_reserved(&self, name: &str) -> Result<(), BrokerFileError> {
        if self.header_has_user(name) {
            return Err(BrokerFileError::ReservedName { name: name.to_owned() });
        }
        Ok(())
    }

    pub fn add(&mut self, id: DeviceId) {
        if !self.contains(&id) {
            self.devices.push(id);
        }
    }

    pub fn remove(&mut self, id: &DeviceId) -> bool {
        let before = self.devices.len();
        self.devices.retain(|known| known != id);
        self.devices.len() != before
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.header {
            text.push_str(line);
            text.push('\n');
        }
        for id in &self.devices {
            text.push('\n');
            text.push_str(&device_block(id));
        }
        text
    }
}

/// A device's rights: publish its own uplinks, alarms and status (including its last will,
/// which Mosquitto checks as a publish), read its own downlinks. Nothing else.
pub fn device_block(id: &DeviceId) -> String {
    let mut block = String::new();
    let _ = writeln!(block, "{DEVICE_MARKER}{id}");
    let _ = writeln!(block, "user {id}");
    let _ = writeln!(block, "topic write tec/v1/dev/{id}/up");
    let _ = writeln!(block, "topic write tec/v1/dev/{id}/alarm");
    let _ = writeln!(block, "topic write tec/v1/dev/{id}/status");
    let _ = writeln!(block, "topic read tec/v1/dev/{id}/down");
    block
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ITER: NonZeroU32 = NonZeroU32::new(ITERATIONS).unwrap();

    #[test]
    fn verifies_a_hash_made_by_mosquitto_passwd_2_0_11() {
        // `mosquitto_passwd -c -b pw dev-1 secret123` on Debian 12 (mosquitto 2.0.11).
        let stored = "$7$101$+4wlM9OYd1v8j4oY$Tyav3GtceVO6sPv2GyipsADuBjw3Xr/Sl9pKIQhSHVCpJbhH91WKiHYnZ//bawYx1KNLaHUEimVA3GwRxpKNGA==";
        assert!(verify_password("secret123", stored));
        assert!(!verify_password("secret124", stored));
        let salt: [u8; SALT_LEN] = BASE64.decode("+4wlM9OYd1v8j4oY").unwrap().try_into().unwrap();
        assert_eq!(hash_password("secret123", &salt, ITER), stored);
    }

    #[test]
    fn malformed_hashes_never_verify() {
        for stored in [
            "",
            "$6$abc$def",
            "$7$0$AAAA$AAAA",
            "$7$101$!!$AAAA",
            "$7$101$AAAA$AAAA$x",
        ] {
            assert!(!verify_password("x", stored), "{stored}");
        }
    }

    #[test]
    fn password_file_set_replaces_in_place_and_keeps_comments() {
        let mut file = PasswordFile::parse("# broker accounts\ngateway:$7$a\ndev-1:$7$b\n").unwrap();
        file.set("dev-1", "$7$c");
        file.set("dev-2", "$7$d");
        assert_eq!(
            file.render(),
            "# broker accounts\ngateway:$7$a\ndev-1:$7$c\ndev-2:$7$d\n"
        );
        assert!(file.remove("dev-1"));
        assert!(!file.remove("dev-1"));
        assert_eq!(file.render(), "# broker accounts\ngateway:$7$a\ndev-2:$7$d\n");
    }

    #[test]
    fn password_file_refuses_duplicates_and_malformed_lines() {
        assert_eq!(
            PasswordFile::parse("a:x\nb:y\na:z\n"),
            Err(BrokerFileError::DuplicateUser {
                user: "a".into(),
                first: 1,
                second: 3
            })
        );
        assert_eq!(
            PasswordFile::parse("a:x\nnocolon\n"),
            Err(BrokerFileError::MalformedPasswordLine { line: 2 })
        );
    }

    #[test]
    fn acl_blocks_round_trip_and_the_header_is_kept() {
        let header = "# gateway\nuser gateway\ntopic read tec/v1/dev/+/up\n";
        let mut acl = AclFile::parse(header).unwrap();
        acl.add(DeviceId::new("dev-1").unwrap());
        acl.add(DeviceId::new("dev-2").unwrap());
        acl.add(DeviceId::new("dev-1").unwrap());
        let text = acl.render();
        assert_eq!(AclFile::parse(&text).unwrap(), acl);
        assert!(text.contains(
            "user dev-2\ntopic write tec/v1/dev/dev-2/up\ntopic write tec/v1/dev/dev-2/alarm\n\
             topic write tec/v1/dev/dev-2/status\ntopic read tec/v1/dev/dev-2/down\n"
        ));
        // A block written before the alarm topic existed gets its alarm line when re-rendered.
        let old_block = format!(
            "{header}\n# tec-gateway device dev-9\nuser dev-9\ntopic write tec/v1/dev/dev-9/up\n\
             topic write tec/v1/dev/dev-9/status\ntopic read tec/v1/dev/dev-9/down\n"
        );
        assert!(
            AclFile::parse(&old_block)
                .unwrap()
                .render()
                .contains("topic write tec/v1/dev/dev-9/alarm\n")
        );
        let mut again = AclFile::parse(&text).unwrap();
        assert!(again.remove(&DeviceId::new("dev-1").unwrap()));
        let text = again.render();
        assert!(!text.contains("dev-1"));
        assert!(text.starts_with(header));
        assert_eq!(
            acl.check_not_reserved("gateway"),
            Err(BrokerFileError::ReservedName { name: "gateway".into() })
        );
        assert_eq!(acl.check_not_reserved("dev-3"), Ok(()));
    }
}
