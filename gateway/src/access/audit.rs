//! The audit trail: what is recorded ([`Action`]), the helper handlers call to record an
//! audited read ([`AuditRecorder::record`]), and the chain check ([`verify_chain`]).

use std::sync::Arc;

use serde::Serialize;

use super::{Caller, Role};
use crate::app::GatewayClient;
use crate::domain::{Clock, ResidentId};
use crate::store::{AUDIT_GENESIS_HASH, AccessChange, AuditCheckpoint, AuditDraft, AuditEntry, AuditHead};
use crate::writer::core::OperatorError;

/// What an audit entry records. Stored as its text ([`Action::as_str`]); never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginSucceeded,
    /// A wrong password, an unknown or disabled user (the entry does not say which).
    LoginFailed,
    /// Refused without checking the password: too many failures.
    LoginRateLimited,
    Logout,
    PasswordChanged,
    UserCreated,
    UserDisabled,
    UserPasswordReset,
    /// An administrator changed a user's role (target: the user, old and new role).
    UserRoleChanged,
    /// A manager read a resident's audit trail.
    ReadAuditTrail,
    VerifyAuditChain,
    /// Audited reads for the resident, history and export handlers (issue 8, later items).
    ReadResident,
    ReadHistory,
    ExportRecords,
    /// An operator was shown a resident's access notes for an open alert (target: the alert).
    RevealAccessInfo,
    /// A request for access notes was refused (target: the alert and why).
    RevealAccessInfoRefused,
    /// An administrator created or updated a resident (target: which).
    ChangeResident,
    /// An administrator assigned or unassigned a device (target: the device and what).
    AssignDevice,
    /// Alert actions by an operator (the target names the alert; never the note text).
    AlertAcknowledged,
    AlertNoteAdded,
    AlertResolved,
    /// A call to one of the resident's responders and how it went (target: alert, outcome).
    ResponderCalled,
    /// A follow-up promised at resolution marked done (target: the alert).
    FollowUpDone,
    /// An administrator read the quarantined payloads (`GET /api/v1/inspect/quarantine`).
    ReadQuarantine,
    /// A care-register file was imported (target: which file and how many lines).
    RegisterImported,
    /// The retention purge removed records past their period (target: counts per class).
    RetentionPurged,
    /// Everything held about a person whose care ended long ago was erased (resident: the
    /// id; target: counts of what went, never any of it).
    PersonErased,
    /// Devices registered with new broker credentials, or their credentials rotated
    /// (`tec-gateway device provision`; target: the device ids).
    DeviceProvisioned,
    /// A device's broker credentials removed and its assignment ended (target: the device).
    DeviceRevoked,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::LoginSucceeded => "login_succeeded",
            Action::LoginFailed => "login_failed",
            Action::LoginRateLimited => "login_rate_limited",
            Action::Logout => "logout",
            Action::PasswordChanged => "password_changed",
            Action::UserCreated => "user_created",
            Action::UserDisabled => "user_disabled",
            Action::UserPasswordReset => "user_password_reset",
            Action::UserRoleChanged => "user_role_changed",
            Action::ReadAuditTrail => "read_audit_trail",
            Action::VerifyAuditChain => "verify_audit_chain",
            Action::ReadResident => "read_resident",
            Action::ReadHistory => "read_history",
            Action::ExportRecords => "export_records",
            Action::RevealAccessInfo => "reveal_access_info",
            Action::RevealAccessInfoRefused => "reveal_access_info_refused",
            Action::ChangeResident => "change_resident",
            Action::AssignDevice => "assign_device",
            Action::AlertAcknowledged => "alert_acknowledged",
            Action::AlertNoteAdded => "alert_note_added",
            Action::AlertResolved => "alert_resolved",
            Action::ResponderCalled => "responder_called",
            Action::FollowUpDone => "follow_up_done",
            Action::ReadQuarantine => "read_quarantine",
            Action::RegisterImported => "register_imported",
            Action::RetentionPurged => "retention_purged",
            Action::PersonErased => "person_erased",
            Action::DeviceProvisioned => "device_provisioned",
            Action::DeviceRevoked => "device_revoked",
        }
    }
}

/// An audit entry to append, by someone (or, for failed logins, a tried name).
pub fn draft(
    at: crate::domain::Timestamp,
    username: &str,
    role: Option<Role>,
    action: Action,
    resident: Option<&ResidentId>,
    target: Option<&str>,
    client: Option<std::net::IpAddr>,
) -> AuditDraft {
    AuditDraft {
        at,
        username: username.to_owned(),
        role,
        action: action.as_str().to_owned(),
        resident: resident.cloned(),
        target: target.map(str::to_owned),
        client: client.map(|ip| ip.to_string()),
    }
}

/// Appends audit entries through the committer. Handlers of audited reads call
/// [`AuditRecorder::record`] BEFORE answering and answer 503 if it fails: a read that could
/// not be recorded is not served.
#[derive(Debug, Clone)]
pub struct AuditRecorder {
    client: GatewayClient,
    clock: Arc<dyn Clock>,
}

impl AuditRecorder {
    pub fn new(client: GatewayClient, clock: Arc<dyn Clock>) -> Self {
        Self { client, clock }
    }

    pub async fn record(
        &self,
        actor: &Caller,
        action: Action,
        resident: Option<&ResidentId>,
        target: Option<&str>,
    ) -> Result<AuditEntry, OperatorError> {
        let entry = draft(
            self.clock.now(),
            actor.username.as_str(),
            Some(actor.role),
            action,
            resident,
            target,
            actor.client,
        );
        let change = AccessChange {
            ops: Vec::new(),
            audit: vec![entry],
        };
        match self.client.apply_access(change).await? {
            Ok(mut appended) => appended
                .pop()
                .ok_or_else(|| OperatorError::Unavailable("the audit entry was not appended".into())),
            // No ops, so nothing can be refused.
            Err(refusal) => Err(OperatorError::Unavailable(refusal.to_string())),
        }
    }
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first entry that is missing, altered or unreadable.
    pub seq: u64,
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit entry {}: {}", self.seq, self.reason)
    }
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries found in the log.
    pub entries: u64,
    pub intact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_break: Option<ChainBreak>,
    /// The retention purged the entries up to this seq; the chain is checked from the
    /// checkpoint it left (`store/retention.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_after: Option<u64>,
}

/// Checks every entry: sequence numbers from 1 (or from just after the retention's
/// checkpoint) without gaps, each entry's hash over its own content, each `prev_hash` equal to
/// the previous entry's hash (the first kept one to the checkpoint's), and the head equal to
/// the last entry. Names the first entry where that fails.
pub fn verify_chain(
    raw: &[(u64, Vec<u8>)],
    checkpoint: Option<&AuditCheckpoint>,
    head: Option<&AuditHead>,
) -> ChainReport {
    let entries = raw.len() as u64;
    let starts_after = checkpoint.map(|checkpoint| checkpoint.seq);
    let broken = |seq: u64, reason: String| ChainReport {
        entries,
        intact: false,
        first_break: Some(ChainBreak { seq, reason }),
        starts_after,
    };
    let (mut expected_seq, mut prev_hash) = match checkpoint {
        Some(checkpoint) => (checkpoint.seq.saturating_add(1), checkpoint.hash.clone()),
        None => (1u64, AUDIT_GENESIS_HASH.to_owned()),
    };
    for (seq, bytes) in raw {
        if *seq != expected_seq {
            let reason = if *seq > expected_seq {
                format!(
                    "missing: the log goes from entry {} to entry {seq} (deleted)",
                    expected_seq.saturating_sub(1)
                )
            } else {
                format!("out of order: found entry {seq}")
            };
            return broken(expected_seq, reason);
        }
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(e) => return broken(*seq, format!("unreadable ({e}): altered")),
        };
        let entry: AuditEntry = match serde_json::from_value(value.clone()) {
            Ok(entry) => entry,
            Err(e) => return broken(*seq, format!("unreadable ({e}): altered")),
        };
        let computed = crate::store::access_audit_hash(value);
        if computed != entry.hash {
            return broken(*seq, "its content does not match its hash: altered".into());
        }
        if entry.seq != *seq {
            return broken(*seq, format!("stored under {seq} but says {}: altered", entry.seq));
        }
        if entry.prev_hash != prev_hash {
            return broken(
                *seq,
                "its previous-entry hash does not match the entry before it: an entry before it was altered or \
                 replaced"
                    .into(),
            );
        }
        prev_hash = entry.hash;
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    match head {
        Some(head) if head.seq != last || head.hash != prev_hash => broken(
            last + 1,
            format!(
                "missing: the log ends at entry {last} but entries were written up to {} (deleted)",
                head.seq
            ),
        ),
        None if last > 0 => broken(1, "the chain head record is missing (deleted)".into()),
        _ => ChainReport {
            entries,
            intact: true,
            first_break: None,
            starts_after,
        },
    }
}
