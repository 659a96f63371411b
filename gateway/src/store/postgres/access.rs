//! User accounts, login sessions and the hash-chained audit log on PostgreSQL, with the redb
//! store's rules (`store/access.rs`): the same records in the same JSON, the same refusals,
//! the same audit chain. A change is one fenced write transaction: a replaced leader writes
//! no user, session or audit entry, and a change is reported applied only on a commit known
//! to have happened.
//!
//! Audit entries are stored as the exact bytes that were hashed (`bytea`), so the chain
//! verifies byte for byte and [`PgStore::audit_raw`] answers what redb's does. The resident an
//! entry names is a column beside it, indexed: redb's separate resident index and its
//! high-water mark are not needed, since the column commits with the entry. Users, sessions
//! and the head are `jsonb` (read back as text and decoded as redb decodes them); a session's
//! user and expiry are columns too, written from the record, so revoking a user's sessions and
//! dropping expired ones need not read every session.

use tokio_postgres::Transaction;

use super::write::{CommitOutcome, to_json};
use super::{PgError, PgStore, from_json};
use crate::access::Username;
use crate::domain::{ResidentId, Timestamp};
use crate::store::access::{HEAD_KEY, chain_entry};
use crate::store::retention::CHECKPOINT_KEY;
use crate::store::{
    AUDIT_GENESIS_HASH, AccessChange, AccessOp, AccessRefusal, AuditCheckpoint, AuditDraft, AuditEntry, AuditHead,
    PgBlocking, SessionRecord, StoreError, Unreadable, UserRecord,
};

impl PgStore {
    /// Reports a record that does not decode (by table and key, never its content) and
    /// passes the result on.
    fn reported<T>(&self, decoded: Result<T, Unreadable>) -> Result<T, Unreadable> {
        if let Err(unreadable) = &decoded {
            self.problems().report(unreadable);
        }
        decoded
    }

    /// The user's record; `Unreadable` if it does not decode.
    pub async fn user(&self, username: &Username) -> Result<Option<UserRecord>, PgError> {
        let row = self
            .client
            .query_opt(
                "SELECT record::text FROM users WHERE username = $1",
                &[&username.as_str()],
            )
            .await?;
        match row {
            Some(row) => Ok(Some(self.reported(from_json("users", username, row.try_get(0)?))?)),
            None => Ok(None),
        }
    }

    /// Every readable user, by name (unreadable ones reported and left out).
    pub async fn users(&self) -> Result<Vec<UserRecord>, PgError> {
        let rows = self
            .client
            .query("SELECT username, record::text FROM users ORDER BY username", &[])
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let username: &str = row.try_get(0)?;
            if let Ok(user) = self.reported(from_json("users", username, row.try_get(1)?)) {
                found.push(user);
            }
        }
        Ok(found)
    }

    /// The session stored under `token_hash`; `Unreadable` (named by a prefix of the hash
    /// only) if it does not decode.
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, PgError> {
        let row = self
            .client
            .query_opt(
                "SELECT record::text FROM sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
        match row {
            Some(row) => Ok(Some(self.reported(from_json(
                "sessions",
                session_key(token_hash),
                row.try_get(0)?,
            ))?)),
            None => Ok(None),
        }
    }

    /// The whole audit log as stored, (sequence, bytes) in sequence order, for verification.
    pub async fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, PgError> {
        let rows = self
            .client
            .query("SELECT seq, entry FROM audit_log ORDER BY seq", &[])
            .await?;
        rows.iter()
            .map(|row| Ok((stored_seq(row.try_get(0)?)?, row.try_get(1)?)))
            .collect()
    }

    /// The last audit entry's seq and hash, kept apart from the log so that removing the
    /// newest entries shows; `Unreadable` if it does not decode.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>, PgError> {
        let row = self
            .client
            .query_opt("SELECT record::text FROM audit_head WHERE name = $1", &[&HEAD_KEY])
            .await?;
        match row {
            Some(row) => Ok(Some(self.reported(from_json(
                "audit_head",
                HEAD_KEY,
                row.try_get(0)?,
            ))?)),
            None => Ok(None),
        }
    }

    /// Where the chain starts once the retention purge removed its oldest entries;
    /// `Unreadable` if it does not decode.
    pub async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, PgError> {
        let row = self
            .client
            .query_opt(
                "SELECT record::text FROM audit_head WHERE name = $1",
                &[&CHECKPOINT_KEY],
            )
            .await?;
        match row {
            Some(row) => Ok(Some(self.reported(from_json(
                "audit_head",
                CHECKPOINT_KEY,
                row.try_get(0)?,
            ))?)),
            None => Ok(None),
        }
    }

    /// Readable entries naming `resident`, oldest first. An entry whose stored content names
    /// someone else (altered after it was written) is left out, as on redb; the chain check
    /// names the alteration.
    pub async fn audit_for_resident(&self, resident: &ResidentId) -> Result<Vec<AuditEntry>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT seq, entry FROM audit_log WHERE resident = $1 ORDER BY seq",
                &[&resident.as_str()],
            )
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq = stored_seq(row.try_get(0)?)?;
            let decoded = crate::store::schema::from_json::<AuditEntry>("audit_log", seq, row.try_get(1)?);
            match self.reported(decoded) {
                Ok(entry) if entry.resident.as_deref() == Some(resident.as_str()) => found.push(entry),
                Ok(_) | Err(_) => {}
            }
        }
        Ok(found)
    }

    /// Applies `change` in one fenced write transaction: the appended entries, or why it was
    /// refused (then nothing is written). `Fenced` or `NotLeader` if this gateway no longer
    /// leads; `RolledBack` or `CommitUnknown` unless the commit is known to have happened.
    pub async fn apply_access(
        &mut self,
        change: &AccessChange,
    ) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        let batch = self.begin_write().await?;
        if let Err(refusal) = apply_ops(&batch.txn, &change.ops).await? {
            // Best effort: a transaction that is not committed is rolled back by the server
            // whatever becomes of this request.
            if let Err(err) = batch.txn.rollback().await {
                tracing::warn!(error = %err, "rolling back a refused access change failed");
            }
            return Ok(Err(refusal));
        }
        // Any error above or here drops the transaction, which rolls it back.
        let appended = append_audit(&batch.txn, &change.audit).await?;
        match batch.commit().await {
            CommitOutcome::Committed => Ok(Ok(appended)),
            CommitOutcome::RolledBack { reason } => Err(StoreError::RolledBack { reason }),
            CommitOutcome::Unknown { reason } => Err(StoreError::CommitUnknown { reason }),
        }
    }
}

/// The audit chain in a write batch, beside the batch's other writes.
impl super::PgWriteBatch<'_> {
    /// Appends the drafts to the chain in this fenced transaction: committed with its other
    /// writes, or not at all.
    pub async fn append_audit(&mut self, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, PgError> {
        let result = append_audit(&self.txn, drafts).await;
        self.guard(result)
    }
}

/// The access records on PostgreSQL for synchronous callers (the committer's core runs on
/// tokio's blocking pool): [`crate::store::AccessStore`]'s calls, except that applying a
/// change takes `&mut self`, since it holds the store's one connection for its transaction.
impl PgBlocking {
    pub fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.block_on(self.store().user(username))?)
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.block_on(self.store().users())?)
    }

    pub fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.block_on(self.store().session(token_hash))?)
    }

    pub fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self.block_on(self.store().audit_raw())?)
    }

    pub fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        Ok(self.block_on(self.store().audit_head())?)
    }

    pub fn audit_for_resident(&self, resident: &ResidentId) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.block_on(self.store().audit_for_resident(resident))?)
    }

    pub fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        Ok(self.block_on(self.store().audit_checkpoint())?)
    }

    pub fn apply_access(
        &mut self,
        change: &AccessChange,
    ) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        let runtime = self.runtime().clone();
        runtime.block_on(self.store_mut().apply_access(change))
    }
}

/// A session's key is a token hash: it is named by a prefix only.
fn session_key(token_hash: &str) -> &str {
    token_hash.get(..8).unwrap_or_default()
}

pub(super) fn stored_seq(seq: i64) -> Result<u64, PgError> {
    u64::try_from(seq).map_err(|_| PgError::OutOfRange {
        what: "audit seq",
        value: seq,
    })
}

fn seq_param(seq: u64) -> Result<i64, PgError> {
    i64::try_from(seq).map_err(|_| PgError::Encode {
        table: "audit_log",
        detail: format!("audit seq {seq} above the bigint range"),
    })
}

/// The ops in order, as redb applies them; the first refusal ends them (the caller rolls back).
async fn apply_ops(txn: &Transaction<'_>, ops: &[AccessOp]) -> Result<Result<(), AccessRefusal>, PgError> {
    for op in ops {
        match op {
            AccessOp::CreateUser(user) => {
                let created = txn
                    .execute(
                        "INSERT INTO users (username, record) VALUES ($1, $2::text::jsonb)
                         ON CONFLICT (username) DO NOTHING",
                        &[&user.username.as_str(), &to_json("users", user)?],
                    )
                    .await?;
                if created == 0 {
                    return Ok(Err(AccessRefusal::UserExists(user.username.clone())));
                }
            }
            AccessOp::UpdateUser(user) => {
                let updated = txn
                    .execute(
                        "UPDATE users SET record = $2::text::jsonb WHERE username = $1",
                        &[&user.username.as_str(), &to_json("users", user)?],
                    )
                    .await?;
                if updated == 0 {
                    return Ok(Err(AccessRefusal::NoSuchUser(user.username.clone())));
                }
                if user.disabled {
                    revoke_user_sessions(txn, &user.username, user.changed_at).await?;
                }
            }
            AccessOp::CreateSession { token_hash, session } => {
                drop_expired_sessions(txn, session.created_at).await?;
                txn.execute(
                    "INSERT INTO sessions (token_hash, username, expires_at_ms, record)
                     VALUES ($1, $2, $3, $4::text::jsonb)
                     ON CONFLICT (token_hash) DO UPDATE SET username = EXCLUDED.username,
                         expires_at_ms = EXCLUDED.expires_at_ms, record = EXCLUDED.record",
                    &[
                        &token_hash.as_str(),
                        &session.username.as_str(),
                        &session.expires_at.as_millis(),
                        &to_json("sessions", session)?,
                    ],
                )
                .await?;
            }
            AccessOp::RevokeSession { token_hash, at } => {
                let row = txn
                    .query_opt(
                        "SELECT record::text FROM sessions WHERE token_hash = $1 FOR UPDATE",
                        &[&token_hash.as_str()],
                    )
                    .await?;
                // An unreadable session cannot be used either (it fails to load on every
                // request): left as it is, as on redb.
                let existing = match &row {
                    Some(row) => from_json::<SessionRecord>("sessions", "?", row.try_get(0)?).ok(),
                    None => None,
                };
                if let Some(mut session) = existing
                    && session.revoked_at.is_none()
                {
                    session.revoked_at = Some(*at);
                    put_session_record(txn, token_hash, &session).await?;
                }
            }
            AccessOp::RevokeUserSessions { username, at } => revoke_user_sessions(txn, username, *at).await?,
        }
    }
    Ok(Ok(()))
}

/// Marks every live session of `username` revoked at `at` (unreadable ones are left: they
/// cannot be used either).
async fn revoke_user_sessions(txn: &Transaction<'_>, username: &Username, at: Timestamp) -> Result<(), PgError> {
    let rows = txn
        .query(
            "SELECT token_hash, record::text FROM sessions WHERE username = $1 ORDER BY token_hash FOR UPDATE",
            &[&username.as_str()],
        )
        .await?;
    for row in &rows {
        let token_hash: &str = row.try_get(0)?;
        if let Ok(mut session) = from_json::<SessionRecord>("sessions", "?", row.try_get(1)?)
            && session.username == *username
            && session.revoked_at.is_none()
        {
            session.revoked_at = Some(at);
            put_session_record(txn, token_hash, &session).await?;
        }
    }
    Ok(())
}

/// Sessions past their expiry are of no further use (the audit log keeps the logins and
/// logouts): dropping them when a session is created keeps the table to live sessions. A
/// session is dropped by what its record says, as on redb; an unreadable one is kept.
async fn drop_expired_sessions(txn: &Transaction<'_>, now: Timestamp) -> Result<(), PgError> {
    let rows = txn
        .query(
            "SELECT token_hash, record::text FROM sessions WHERE expires_at_ms <= $1 FOR UPDATE",
            &[&now.as_millis()],
        )
        .await?;
    let mut expired: Vec<&str> = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Ok(old) = from_json::<SessionRecord>("sessions", "?", row.try_get(1)?)
            && old.expires_at <= now
        {
            expired.push(row.try_get(0)?);
        }
    }
    if !expired.is_empty() {
        txn.execute("DELETE FROM sessions WHERE token_hash = ANY($1)", &[&expired])
            .await?;
    }
    Ok(())
}

async fn put_session_record(txn: &Transaction<'_>, token_hash: &str, session: &SessionRecord) -> Result<(), PgError> {
    txn.execute(
        "UPDATE sessions SET record = $2::text::jsonb WHERE token_hash = $1",
        &[&token_hash, &to_json("sessions", session)?],
    )
    .await?;
    Ok(())
}

/// Appends the drafts to the chain after the head (without one, a new store: after the last
/// entry in the log) and moves the head, as redb does. The head row is locked for the
/// transaction, so two writers could not both continue from it.
async fn append_audit(txn: &Transaction<'_>, drafts: &[AuditDraft]) -> Result<Vec<AuditEntry>, PgError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let head = txn
        .query_opt(
            "SELECT record::text FROM audit_head WHERE name = $1 FOR UPDATE",
            &[&HEAD_KEY],
        )
        .await?
        .map(|row| row.try_get::<_, String>(0))
        .transpose()?
        .and_then(|text| from_json::<AuditHead>("audit_head", HEAD_KEY, &text).ok());
    let (mut seq, mut prev_hash) = match head {
        Some(head) => (head.seq, head.hash),
        None => {
            let last = txn
                .query_opt("SELECT seq, entry FROM audit_log ORDER BY seq DESC LIMIT 1", &[])
                .await?;
            match last {
                Some(row) => {
                    let seq = stored_seq(row.try_get(0)?)?;
                    let hash = crate::store::schema::from_json::<AuditEntry>("audit_log", seq, row.try_get(1)?)
                        .map(|entry| entry.hash)
                        .unwrap_or_else(|_| AUDIT_GENESIS_HASH.to_owned());
                    (seq, hash)
                }
                None => (0, AUDIT_GENESIS_HASH.to_owned()),
            }
        }
    };
    let mut appended = Vec::with_capacity(drafts.len());
    let mut seqs: Vec<i64> = Vec::with_capacity(drafts.len());
    let mut residents: Vec<Option<&str>> = Vec::with_capacity(drafts.len());
    let mut stored: Vec<Vec<u8>> = Vec::with_capacity(drafts.len());
    for draft in drafts {
        seq = seq.checked_add(1).ok_or_else(|| PgError::Encode {
            table: "audit_log",
            detail: "audit seq overflow".to_owned(),
        })?;
        let entry = chain_entry(seq, &prev_hash, draft).map_err(|err| PgError::Encode {
            table: "audit_log",
            detail: err.to_string(),
        })?;
        seqs.push(seq_param(seq)?);
        residents.push(draft.resident.as_ref().map(ResidentId::as_str));
        // The bytes redb stores for the same entry.
        stored.push(serde_json::to_vec(&entry).map_err(|err| PgError::Encode {
            table: "audit_log",
            detail: err.to_string(),
        })?);
        prev_hash.clone_from(&entry.hash);
        appended.push(entry);
    }
    txn.execute(
        "INSERT INTO audit_log (seq, resident, entry)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[])",
        &[&seqs, &residents, &stored],
    )
    .await?;
    let head = AuditHead { seq, hash: prev_hash };
    txn.execute(
        "INSERT INTO audit_head (name, record) VALUES ($1, $2::text::jsonb)
         ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
        &[&HEAD_KEY, &to_json("audit_head", &head)?],
    )
    .await?;
    Ok(appended)
}
