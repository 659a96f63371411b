//! Access-control records: users, sessions and the hash-chained audit log.
//!
//! [`AccessStore`] is the whole interface the rest of the gateway uses, so a second store
//! (PostgreSQL, issue 12) provides the same few calls. Every change is one [`AccessChange`]
//! applied in one transaction: the users and sessions it touches and the audit entries that
//! record it are committed together or not at all.
//!
//! Audit entries are JSON objects (the rules in `schema.rs`). Each holds `prev_hash`, the hash
//! of the entry before it (64 zeros for the first), and `hash`: SHA-256 over the entry's own
//! JSON without `hash`, serialised from a `serde_json::Value` (keys sorted). The hash is taken
//! over whatever fields the stored object has, so a later version that adds a field still
//! verifies entries written before it.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditCheckpoint;

use super::schema::{
    AUDIT_BY_RESIDENT, AUDIT_HEAD, AUDIT_INDEXED_THROUGH_KEY, AUDIT_LOG, META, SESSIONS, USERS, from_json, to_json,
};
use super::{Store, StoreError};
use crate::access::token::hex;
use crate::access::{Role, Username};
use crate::domain::{ResidentId, Timestamp};

/// `prev_hash` of the first audit entry.
pub const AUDIT_GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The audit head's key (redb) or row name (PostgreSQL).
pub(crate) const HEAD_KEY: &str = "head";

/// A user as stored. The password is an argon2id PHC string, never the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: Username,
    pub role: Role,
    pub password_hash: String,
    /// Set by `user add`, `user reset` and `POST /api/v1/users`: the one-time password must be
    /// replaced before anything else is allowed.
    #[serde(default)]
    pub must_change_password: bool,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: Timestamp,
    pub changed_at: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("must_change_password", &self.must_change_password)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A login session, stored under the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub username: Username,
    /// The role when the session was created (the user's current record decides access).
    pub role: Role,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

impl SessionRecord {
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// An audit entry to append (sequence and hashes are given by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub at: Timestamp,
    /// Who acted (for a failed login, the name that was tried, if it is a valid name).
    pub username: String,
    pub role: Option<Role>,
    pub action: String,
    pub resident: Option<ResidentId>,
    /// What was acted on (a user, a route, a report), if anything.
    pub target: Option<String>,
    /// The client's IP address, if known.
    pub client: Option<String>,
}

/// An audit entry as stored. Roles and residents are kept as text: the log must stay readable
/// whatever later versions do to those types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The last audit entry: kept apart from the log so that removing the newest entries shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// One change to users or sessions.
#[derive(Debug, Clone)]
pub enum AccessOp {
    /// Refused with [`AccessRefusal::UserExists`] if the name is taken.
    CreateUser(Box<UserRecord>),
    /// Replaces an existing user (refused with [`AccessRefusal::NoSuchUser`] otherwise). A
    /// disabled user's sessions are revoked in the same transaction.
    UpdateUser(Box<UserRecord>),
    CreateSession {
        token_hash: String,
        session: SessionRecord,
    },
    RevokeSession {
        token_hash: String,
        at: Timestamp,
    },
    RevokeUserSessions {
        username: Username,
        at: Timestamp,
    },
}

/// Changes and the audit entries recording them, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct AccessChange {
    pub ops: Vec<AccessOp>,
    pub audit: Vec<AuditDraft>,
}

/// A change the store refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    #[error("user {0} already exists")]
    UserExists(Username),
    #[error("no user {0}")]
    NoSuchUser(Username),
}

/// What the access module needs from a store.
pub trait AccessStore {
    fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError>;
    /// Every readable user, by name (unreadable ones reported and left out).
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// The whole audit log as stored, (sequence, bytes) in sequence order, for verification.
    fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;
    /// Where the chain starts once the retention purge removed its oldest entries.
    fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError>;
    /// Readable entries naming `resident`, oldest first, through the resident index (entries
    /// written since the index was last caught up, normally none, are found by a scan).
    fn audit_for_resident(&self, resident: &ResidentId) -> Result<Vec<AuditEntry>, StoreError>;
    /// Applies `change` atomically: the appended entries, or why it was refused.
    fn apply_access(&self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError>;
}

/// SHA-256 over the JSON object without its `hash` field (keys sorted by `serde_json::Value`).
pub fn audit_hash(mut value: serde_json::Value) -> String {
    if let Some(object) = value.as_object_mut() {
        object.remove("hash");
    }
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

/// The entry `draft` becomes at `seq` after an entry hashed `prev_hash`, its hash computed: one
/// rule for every store, so a chain verifies whichever store wrote it.
pub(crate) fn chain_entry(seq: u64, prev_hash: &str, draft: &AuditDraft) -> Result<AuditEntry, serde_json::Error> {
    let mut entry = AuditEntry {
        seq,
        at: draft.at,
        username: draft.username.clone(),
        role: draft.role.map(|role| role.as_str().to_owned()),
        action: draft.action.clone(),
        resident: draft.resident.as_ref().map(|r| r.as_str().to_owned()),
        target: draft.target.clone(),
        client: draft.client.clone(),
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    entry.hash = audit_hash(serde_json::to_value(&entry)?);
    Ok(entry)
}

impl AccessStore for Store {
    fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let found = users
            .get(username.as_str())?
            .map(|value| from_json("users", username, value.value()))
            .transpose();
        if let Err(unreadable) = &found {
            self.problems.report(unreadable);
        }
        Ok(found?)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let mut found = Vec::new();
        for entry in users.iter()? {
            let (key, value) = entry?;
            match from_json("users", key.value(), value.value()) {
                Ok(user) => found.push(user),
                Err(unreadable) => self.problems.report(&unreadable),
            }
        }
        Ok(found)
    }

    fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        Store::audit_checkpoint(self)
    }

    fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let sessions = txn.open_table(SESSIONS)?;
        // The key is a token hash: name it by a prefix only in any report.
        let key = token_hash.get(..8).unwrap_or_default();
        let found = sessions
            .get(token_hash)?
            .map(|value| from_json("sessions", key, value.value()))
            .transpose();
        if let Err(unreadable) = &found {
            self.problems.report(unreadable);
        }
        Ok(found?)
    }

    fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(AUDIT_LOG)?;
        let mut found = Vec::new();
        for entry in log.iter()? {
            let (key, value) = entry?;
            found.push((key.value(), value.value().to_vec()));
        }
        Ok(found)
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        let txn = self.db.begin_read()?;
        let head = txn.open_table(AUDIT_HEAD)?;
        let found = head
            .get(HEAD_KEY)?
            .map(|value| from_json("audit_head", HEAD_KEY, value.value()))
            .transpose();
        if let Err(unreadable) = &found {
            self.problems.report(unreadable);
        }
        Ok(found?)
    }

    fn audit_for_resident(&self, resident: &ResidentId) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(AUDIT_LOG)?;
        let index = txn.open_table(AUDIT_BY_RESIDENT)?;
        let through = txn
            .open_table(META)?
            .get(AUDIT_INDEXED_THROUGH_KEY)?
            .map_or(0, |value| value.value());
        let wanted = Some(resident.as_str());
        let mut found = Vec::new();
        let mut keep = |seq: u64, bytes: &[u8]| match from_json::<AuditEntry>("audit_log", seq, bytes) {
            // An entry altered to name someone else no longer belongs here (the chain check
            // names the alteration).
            Ok(entry) if entry.resident.as_deref() == wanted => found.push(entry),
            Ok(_) => {}
            Err(unreadable) => self.problems.report(&unreadable),
        };
        for key in index.range((resident.as_str(), 0)..=(resident.as_str(), through))? {
            let seq = key?.0.value().1;
            // A deleted entry leaves its index key behind: skipped here, named by the check.
            if let Some(value) = log.get(seq)? {
                keep(seq, value.value());
            }
        }
        let mut scanned = 0u64;
        for entry in log.range(through.saturating_add(1)..)? {
            let (key, value) = entry?;
            scanned += 1;
            keep(key.value(), value.value());
        }
        if scanned > 0 {
            tracing::warn!(
                entries = scanned,
                "audit entries not yet in the resident index were read by a scan"
            );
        }
        Ok(found)
    }

    fn apply_access(&self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        let txn = self.db.begin_write()?;
        if let Err(refusal) = apply_ops(&txn, &change.ops)? {
            txn.abort()?;
            return Ok(Err(refusal));
        }
        let appended = append_audit(&txn, &change.audit)?;
        catch_up_audit_index(&txn)?;
        txn.commit()?;
        Ok(Ok(appended))
    }
}

/// The audit chain in a write batch, beside the batch's other writes.
impl super::WriteBatch<'_> {
    /// Appends the drafts to the chain (and its resident index) in this batch's transaction:
    /// committed with its other writes, or not at all.
    pub fn append_audit(&mut self, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, StoreError> {
        let appended = append_audit(&self.txn, drafts)?;
        catch_up_audit_index(&self.txn)?;
        Ok(appended)
    }
}

fn apply_ops(txn: &WriteTransaction, ops: &[AccessOp]) -> Result<Result<(), AccessRefusal>, StoreError> {
    let mut users = txn.open_table(USERS)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    let revoke_all = |sessions: &mut redb::Table<&str, &[u8]>, username: &Username, at: Timestamp| {
        let mut revoked = Vec::new();
        for entry in sessions.iter()? {
            let (key, value) = entry?;
            // An unreadable session cannot be used either (it fails to load on every request).
            if let Ok(mut session) = from_json::<SessionRecord>("sessions", "?", value.value())
                && session.username == *username
                && session.revoked_at.is_none()
            {
                session.revoked_at = Some(at);
                revoked.push((key.value().to_owned(), to_json("sessions", &session)?));
            }
        }
        for (key, value) in revoked {
            sessions.insert(key.as_str(), value.as_slice())?;
        }
        Ok::<(), StoreError>(())
    };
    for op in ops {
        match op {
            AccessOp::CreateUser(user) => {
                if users.get(user.username.as_str())?.is_some() {
                    return Ok(Err(AccessRefusal::UserExists(user.username.clone())));
                }
                users.insert(user.username.as_str(), to_json("users", user)?.as_slice())?;
            }
            AccessOp::UpdateUser(user) => {
                if users.get(user.username.as_str())?.is_none() {
                    return Ok(Err(AccessRefusal::NoSuchUser(user.username.clone())));
                }
                users.insert(user.username.as_str(), to_json("users", user)?.as_slice())?;
                if user.disabled {
                    revoke_all(&mut sessions, &user.username, user.changed_at)?;
                }
            }
            AccessOp::CreateSession { token_hash, session } => {
                // Sessions past their expiry are of no further use (the audit log keeps the
                // logins and logouts): dropping them here keeps the table to live sessions.
                let mut expired = Vec::new();
                for entry in sessions.iter()? {
                    let (key, value) = entry?;
                    if let Ok(old) = from_json::<SessionRecord>("sessions", "?", value.value())
                        && old.expires_at <= session.created_at
                    {
                        expired.push(key.value().to_owned());
                    }
                }
                for key in expired {
                    sessions.remove(key.as_str())?;
                }
                sessions.insert(token_hash.as_str(), to_json("sessions", session)?.as_slice())?;
            }
            AccessOp::RevokeSession { token_hash, at } => {
                let existing = sessions
                    .get(token_hash.as_str())?
                    .and_then(|value| from_json::<SessionRecord>("sessions", "?", value.value()).ok());
                if let Some(mut session) = existing
                    && session.revoked_at.is_none()
                {
                    session.revoked_at = Some(*at);
                    sessions.insert(token_hash.as_str(), to_json("sessions", &session)?.as_slice())?;
                }
            }
            AccessOp::RevokeUserSessions { username, at } => revoke_all(&mut sessions, username, *at)?,
        }
    }
    Ok(Ok(()))
}

fn append_audit(txn: &WriteTransaction, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, StoreError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let mut log = txn.open_table(AUDIT_LOG)?;
    let mut head_table = txn.open_table(AUDIT_HEAD)?;
    // Continue from the head; without one (a new store), from the last entry in the log.
    let head = head_table
        .get(HEAD_KEY)?
        .and_then(|value| from_json::<AuditHead>("audit_head", HEAD_KEY, value.value()).ok());
    let (mut seq, mut prev_hash) = match head {
        Some(head) => (head.seq, head.hash),
        None => match log.last()? {
            Some((key, value)) => {
                let hash = from_json::<AuditEntry>("audit_log", key.value(), value.value())
                    .map(|entry| entry.hash)
                    .unwrap_or_else(|_| AUDIT_GENESIS_HASH.to_owned());
                (key.value(), hash)
            }
            None => (0, AUDIT_GENESIS_HASH.to_owned()),
        },
    };
    let mut appended = Vec::with_capacity(drafts.len());
    for draft in drafts {
        seq += 1;
        let entry = chain_entry(seq, &prev_hash, draft).map_err(|e| StoreError::Encode {
            table: "audit_log",
            detail: e.to_string(),
        })?;
        log.insert(seq, to_json("audit_log", &entry)?.as_slice())?;
        prev_hash = entry.hash.clone();
        appended.push(entry);
    }
    let head = AuditHead { seq, hash: prev_hash };
    head_table.insert(HEAD_KEY, to_json("audit_head", &head)?.as_slice())?;
    Ok(appended)
}

/// Adds every audit entry after the index's high-water mark to the resident index and moves
/// the mark; answers how many entries named a resident. Called in the transaction that appends
/// entries (so an entry and its index key commit together) and when the store is opened (a
/// store written before the index, or by an older gateway, is caught up once). An unreadable
/// entry is not indexed: the chain check names it.
pub(super) fn catch_up_audit_index(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let through = meta.get(AUDIT_INDEXED_THROUGH_KEY)?.map_or(0, |value| value.value());
    let log = txn.open_table(AUDIT_LOG)?;
    let mut index = txn.open_table(AUDIT_BY_RESIDENT)?;
    let mut last = through;
    let mut indexed = 0u64;
    for entry in log.range(through.saturating_add(1)..)? {
        let (key, value) = entry?;
        let seq = key.value();
        last = seq;
        if let Ok(AuditEntry {
            resident: Some(resident),
            ..
        }) = from_json::<AuditEntry>("audit_log", seq, value.value())
        {
            index.insert((resident.as_str(), seq), ())?;
            indexed += 1;
        }
    }
    if last != through {
        meta.insert(AUDIT_INDEXED_THROUGH_KEY, last)?;
    }
    Ok(indexed)
}
