//! Escalation of alerts nobody has acknowledged in time.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **Escalation.** Each passed target is one `Escalated{level}` transition, stamped with
//!   the instant the target passed. Only `Raised` alerts escalate.

use super::*;

impl AlertEngine {
    pub(super) fn escalation_deadline(&self, alert: &Alert) -> Option<Timestamp> {
        if alert.state != AlertState::Raised {
            return None;
        }
        let target = self
            .config
            .escalation
            .targets(alert.priority)
            .get(usize::from(alert.escalation_level))?;
        Some(alert.raised_at.plus_ms(i64::from(*target).saturating_mul(1_000)))
    }

    pub(super) fn reschedule_escalation(&mut self, id: AlertId) {
        let due = self.open.get(&id).and_then(|alert| self.escalation_deadline(alert));
        self.escalation_due.set(id, due);
    }

    /// Take every step whose target has passed, each stamped when it passed.
    pub(super) fn escalate(&mut self, id: AlertId, now: Timestamp, effects: &mut Vec<Effect>) {
        let mut escalated = false;
        while let Some(due) = self.open.get(&id).and_then(|alert| self.escalation_deadline(alert))
            && due <= now
            && let Some(alert) = self.open.get_mut(&id)
            && alert.escalation_level < u8::MAX
        {
            alert.escalation_level += 1;
            alert.transitions.push(Transition {
                at: due,
                change: Change::Escalated {
                    level: alert.escalation_level,
                },
            });
            tracing::warn!(alert = %id, level = alert.escalation_level, "alert escalated: not acknowledged in time");
            escalated = true;
        }
        if escalated && let Some(alert) = self.open.get(&id) {
            effects.push(Effect::AlertChanged(alert.clone()));
        }
        self.reschedule_escalation(id);
    }
}
