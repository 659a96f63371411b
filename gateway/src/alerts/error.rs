use crate::domain::{AlertId, AlertState, Outcome};

/// Why an operator action or a restore was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No alert with this id was ever allocated.
    #[error("no alert {0}")]
    UnknownAlert(AlertId),
    /// The alert exists but is closed; the engine only holds open alerts.
    #[error("alert {0} is already resolved")]
    AlreadyResolved(AlertId),
    #[error("alert {alert} is {from:?}: cannot {action}")]
    InvalidTransition {
        alert: AlertId,
        from: AlertState,
        action: &'static str,
    },
    #[error("operator name is empty")]
    MissingOperator,
    /// `resident` and `gateway` mark automatic entries in the audit trail.
    #[error("operator name {0:?} is reserved for automatic entries")]
    ReservedOperator(String),
    #[error("note text is empty")]
    EmptyNote,
    /// This outcome does not say enough on its own (docs/outcomes.md): write what happened.
    #[error("outcome {0:?} needs a note saying what happened")]
    NoteRequired(Outcome),
    #[error("note is longer than {max} characters")]
    NoteTooLong { max: usize },
    /// A life-safety or wellbeing alert answered later than the standard closes only with
    /// the reason for the exception.
    #[error(
        "alert {alert} was answered after {answer_s} s, beyond the 180 s standard: give the reason for the exception"
    )]
    LateAnswerReasonRequired { alert: AlertId, answer_s: i64 },
    /// Follow-up done on an alert without one outstanding.
    #[error("alert {0} has no open follow-up")]
    NoOpenFollowUp(AlertId),
    #[error("alert engine state entry {key:?} is unreadable: {reason}")]
    CorruptState { key: String, reason: String },
}
