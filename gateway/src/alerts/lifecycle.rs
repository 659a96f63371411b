//! An alert's life: raising and joining, clearing by itself, notes, closing, operator
//! actions, and the feedback the alarm devices hear.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **Auto-clear.** A condition that clears by itself (device heard again, battery above
//!   the recovery threshold, mains power restored) resolves its alert with `AutoCleared`
//!   only while nobody has acknowledged it. Once an operator has acknowledged, the engine
//!   adds a note from `gateway` instead and leaves the closing (and its real outcome, which
//!   the KPI report counts) to that operator.
//! - **Feedback.** `HelpOnTheWay` and `AlertResolved` go to the devices whose *alarms*
//!   raised or joined the alert; rule alerts (offline, heartbeat battery, bed, movement,
//!   door sensor) have no device to tell.
//! - **Operator actions.** Acknowledge only from Raised; notes and resolve while open
//!   (notes on resolved alerts are not the engine's business: it forgets closed alerts).
//!   Resolving straight from Raised records no acknowledgement, so such an alert has no
//!   answer time.
//! - **Late answers.** A life-safety or wellbeing alert answered later than the 180-second
//!   standard (first acknowledgement minus raised; never acknowledged: now minus raised)
//!   closes only with the operator's reason for the exception, recorded as
//!   `LateAnswerReason` just before `Resolved`: the monitoring standard's exception report
//!   reads it. Technical alerts have no such standard. The gateway's own closings
//!   (auto-clear, cancel, grouping) need none.
//! - **Responder calls** are recorded on open alerts only, one transition per attempt, with
//!   the responder's name as the record said at the time (the writer copies it).
//! - **Follow-ups** are promised at resolution (`FollowUp`, before `Resolved`) and outlive
//!   the alert: marking one done ([`complete_follow_up`]) works on resolved alerts too,
//!   which the writer reads from the store since the engine forgets closed alerts.

use super::*;

impl AlertEngine {
    /// An operator takes the alert: the device(s) that raised it hear "help is on the way".
    pub fn acknowledge(&mut self, alert: AlertId, operator: &str, now: Timestamp) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        let open = self.open_alert_mut(alert)?;
        if open.state != AlertState::Raised {
            return Err(EngineError::InvalidTransition {
                alert,
                from: open.state,
                action: "acknowledge",
            });
        }
        open.state = AlertState::Acknowledged;
        open.transitions.push(Transition {
            at: now,
            change: Change::Acknowledged {
                operator: operator.to_owned(),
            },
        });
        tracing::info!(%alert, answer_ms = now.millis_since(open.raised_at), "alert acknowledged");
        let mut effects = vec![Effect::AlertChanged(open.clone())];
        self.escalation_due.set(alert, None);
        self.feedback(alert, DownlinkBody::HelpOnTheWay { alert_ref: alert.0 }, &mut effects);
        Ok(effects)
    }

    pub fn add_note(
        &mut self,
        alert: AlertId,
        operator: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        check_note(text)?;
        let open = self.open_alert_mut(alert)?;
        open.transitions.push(Transition {
            at: now,
            change: Change::Note {
                operator: operator.to_owned(),
                text: text.to_owned(),
            },
        });
        Ok(vec![Effect::AlertChanged(open.clone())])
    }

    /// Close the alert with an outcome and no more than a note; see [`Self::resolve_with`].
    pub fn resolve(
        &mut self,
        alert: AlertId,
        operator: &str,
        outcome: Outcome,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        let resolution = Resolution {
            note: note.map(str::to_owned),
            ..Resolution::new(outcome)
        };
        self.resolve_with(alert, operator, &resolution, now)
    }

    /// Close the alert; the device(s) that raised it hear it is over. Every text is checked
    /// before anything changes, so a refusal leaves the alert as it was.
    pub fn resolve_with(
        &mut self,
        alert: AlertId,
        operator: &str,
        resolution: &Resolution,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        let outcome = resolution.outcome;
        let note = given(resolution.note.as_deref());
        if let Some(text) = note {
            check_note(text)?;
        } else if outcome.requires_note() {
            return Err(EngineError::NoteRequired(outcome));
        }
        let reason = given(resolution.exception_reason.as_deref());
        let follow_up = given(resolution.follow_up.as_deref());
        for text in reason.iter().chain(follow_up.iter()) {
            check_note(text)?;
        }
        let open = self.open_alert_mut(alert)?;
        if reason.is_none() && needs_late_answer_reason(open, now) {
            return Err(EngineError::LateAnswerReasonRequired {
                alert,
                answer_s: answer_time_so_far_ms(open, now) / 1000,
            });
        }
        if let Some(text) = follow_up {
            open.transitions.push(Transition {
                at: now,
                change: Change::FollowUp {
                    operator: operator.to_owned(),
                    text: text.to_owned(),
                },
            });
        }
        if let Some(reason) = reason {
            open.transitions.push(Transition {
                at: now,
                change: Change::LateAnswerReason {
                    operator: operator.to_owned(),
                    reason: reason.to_owned(),
                },
            });
        }
        let mut effects = Vec::new();
        if self.flood.incident.is_some_and(|incident| incident.alert == alert) {
            // Nothing still silent may be left without an alert of its own.
            self.end_incident(now, false, &mut effects);
        }
        self.close(
            alert,
            Some(operator.to_owned()),
            outcome,
            note.map(str::to_owned),
            now,
            &mut effects,
        );
        Ok(effects)
    }

    /// Records one call to a responder of the alert's resident and how it went.
    pub fn record_responder_call(
        &mut self,
        alert: AlertId,
        operator: &str,
        responder: &str,
        outcome: CallOutcome,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        check_operator(operator)?;
        let open = self.open_alert_mut(alert)?;
        open.transitions.push(Transition {
            at: now,
            change: Change::ResponderCalled {
                operator: operator.to_owned(),
                responder: responder.to_owned(),
                outcome,
            },
        });
        tracing::info!(%alert, outcome = outcome.as_str(), "responder call recorded");
        Ok(vec![Effect::AlertChanged(open.clone())])
    }

    /// Marks the follow-up of an alert still open done. Follow-ups are promised at
    /// resolution, so this finds one only on an alert restored with one; resolved alerts
    /// (the usual case) go through [`complete_follow_up`] on the stored alert.
    pub fn follow_up_done(
        &mut self,
        alert: AlertId,
        operator: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Effect>, EngineError> {
        let open = self.open_alert_mut(alert)?;
        complete_follow_up(open, operator, note, now)?;
        Ok(vec![Effect::AlertChanged(open.clone())])
    }

    /// The open alert, or why there is none (never allocated, or already resolved).
    pub fn open_alert(&self, id: AlertId) -> Result<&Alert, EngineError> {
        self.open.get(&id).ok_or(if id < self.next_alert_id {
            EngineError::AlreadyResolved(id)
        } else {
            EngineError::UnknownAlert(id)
        })
    }

    /// The alert raised or joined (`None` if the trigger may only join and nothing was open).
    pub(super) fn raise_or_join(
        &mut self,
        trigger: Trigger,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) -> Option<AlertId> {
        let subject = trigger.subject();
        let existing = subject
            .as_ref()
            .and_then(|subject| self.open_by_subject.get(&(trigger.kind, subject.clone())));
        let id = if let Some(id) = existing.copied() {
            let alert = self.open.get_mut(&id)?;
            let change = match (trigger.event, &trigger.detail) {
                (Some(event), _) => Change::Joined { event },
                (None, detail) => Change::Note {
                    operator: GATEWAY_OPERATOR.to_owned(),
                    text: format!("seen again: {}", detail.as_deref().unwrap_or("same condition")),
                },
            };
            alert.transitions.push(Transition { at: now, change });
            alert.unregistered_device |= trigger.unregistered;
            tracing::info!(alert = %id, kind = ?trigger.kind, "repeat joined the open alert");
            effects.push(Effect::AlertChanged(alert.clone()));
            id
        } else if trigger.may_raise {
            let id = self.next_alert_id;
            self.next_alert_id = AlertId(id.0.saturating_add(1));
            self.dirty.insert(StateKey::NextAlertId);
            let mut transitions = vec![Transition {
                at: now,
                change: Change::Raised { event: trigger.event },
            }];
            if let Some(text) = trigger.detail {
                transitions.push(Transition {
                    at: now,
                    change: Change::Note {
                        operator: GATEWAY_OPERATOR.to_owned(),
                        text,
                    },
                });
            }
            let alert = Alert {
                id,
                kind: trigger.kind,
                priority: trigger.kind.priority(),
                state: AlertState::Raised,
                resident: trigger.resident,
                device: trigger.device,
                unregistered_device: trigger.unregistered,
                raised_at: now,
                late_by_ms: trigger.late_by_ms,
                escalation_level: 0,
                transitions,
                affected_devices: Vec::new(),
            };
            tracing::info!(
                alert = %id,
                kind = ?alert.kind,
                device = ?alert.device.map(|d| d.to_string()),
                unregistered = alert.unregistered_device,
                late_by_ms = ?alert.late_by_ms,
                "alert raised"
            );
            effects.push(Effect::AlertChanged(alert.clone()));
            if let Some(subject) = subject {
                self.open_by_subject.insert((alert.kind, subject), id);
            }
            self.open.insert(id, alert);
            self.reschedule_escalation(id);
            id
        } else {
            return None;
        };
        if let Some(alarm) = trigger.alarm {
            let refs = self.alarms.entry(id).or_default();
            refs.push(alarm);
            self.alert_by_alarm.insert(alarm.event, id);
            if let Some(forgotten) = forget_oldest_repeat(refs) {
                self.alert_by_alarm.remove(&forgotten.event);
            }
            self.dirty.insert(StateKey::Alarms(id));
        }
        Some(id)
    }

    /// A device condition cleared by itself: close the alert unless a human has it.
    pub(super) fn clear_condition(
        &mut self,
        kind: AlertKind,
        device: DeviceId,
        what: &str,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(id) = self.open_by_subject.get(&(kind, Subject::Device(device))).copied() else {
            return;
        };
        let Some(state) = self.open.get(&id).map(|alert| alert.state) else {
            return;
        };
        if state == AlertState::Raised {
            tracing::info!(alert = %id, what, "alert cleared by itself");
            self.close(id, None, Outcome::AutoCleared, Some(what.to_owned()), now, effects);
        } else {
            let text = format!("{what}; acknowledged alerts are left for the operator to resolve");
            self.note(id, GATEWAY_OPERATOR, text, now, effects);
        }
    }

    /// Tell the open alert about (kind, subject), if there is one, what just happened.
    pub(super) fn note_subject(
        &mut self,
        subject: &(AlertKind, Subject),
        text: &str,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(id) = self.open_by_subject.get(subject).copied() {
            self.note(id, GATEWAY_OPERATOR, text.to_owned(), now, effects);
        }
    }

    pub(super) fn note(
        &mut self,
        id: AlertId,
        operator: &str,
        text: String,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(alert) = self.open.get_mut(&id) {
            alert.transitions.push(Transition {
                at: now,
                change: Change::Note {
                    operator: operator.to_owned(),
                    text,
                },
            });
            effects.push(Effect::AlertChanged(alert.clone()));
        }
    }

    pub(super) fn close(
        &mut self,
        id: AlertId,
        operator: Option<String>,
        outcome: Outcome,
        note: Option<String>,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(mut alert) = self.open.remove(&id) else { return };
        alert.state = AlertState::Resolved;
        alert.transitions.push(Transition {
            at: now,
            change: Change::Resolved {
                operator,
                outcome,
                note,
            },
        });
        tracing::info!(alert = %id, ?outcome, "alert resolved");
        if let Some(subject) = alert_subject(&alert)
            && self.open_by_subject.get(&subject) == Some(&id)
        {
            self.open_by_subject.remove(&subject);
        }
        self.escalation_due.set(id, None);
        effects.push(Effect::AlertChanged(alert));
        self.feedback(id, DownlinkBody::AlertResolved { alert_ref: id.0 }, effects);
        if let Some(refs) = self.alarms.remove(&id) {
            for alarm in refs {
                self.alert_by_alarm.remove(&alarm.event);
            }
            self.dirty.insert(StateKey::Alarms(id));
        }
    }

    /// Tell each device whose alarm raised or joined the alert, once each.
    pub(super) fn feedback(&self, id: AlertId, body: DownlinkBody, effects: &mut Vec<Effect>) {
        let Some(refs) = self.alarms.get(&id) else { return };
        let mut told = BTreeSet::new();
        for alarm in refs {
            if told.insert(alarm.event.device) {
                effects.push(Effect::Downlink {
                    device: alarm.event.device,
                    body: body.clone(),
                });
            }
        }
    }

    pub(super) fn open_alert_mut(&mut self, id: AlertId) -> Result<&mut Alert, EngineError> {
        self.open_alert(id)?;
        self.open.get_mut(&id).ok_or(EngineError::UnknownAlert(id))
    }
}

/// How an operator closes an alert (`POST /api/v1/alerts/{id}/resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub outcome: Outcome,
    /// Required by some outcomes (docs/outcomes.md).
    pub note: Option<String>,
    /// Why the alert was answered late; required when [`needs_late_answer_reason`].
    pub exception_reason: Option<String>,
    /// Something promised (a visit, a call back) that stays on the worklist until done.
    pub follow_up: Option<String>,
}

impl Resolution {
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            note: None,
            exception_reason: None,
            follow_up: None,
        }
    }
}

/// The answer-time standard an exception reason is asked for beyond (TEC Quality: 99% of
/// calls answered within 180 s).
pub const LATE_ANSWER_MS: i64 = 180_000;

/// Answer time, or, while nobody has acknowledged, how long the alert has waited so far.
pub fn answer_time_so_far_ms(alert: &Alert, now: Timestamp) -> i64 {
    alert.acknowledged_at().unwrap_or(now).millis_since(alert.raised_at)
}

/// Whether an operator closing `alert` at `now` must say why it was answered late.
pub fn needs_late_answer_reason(alert: &Alert, now: Timestamp) -> bool {
    alert.priority != Priority::Technical && answer_time_so_far_ms(alert, now) > LATE_ANSWER_MS
}

/// Whether the alert has a follow-up not yet marked done.
pub fn has_open_follow_up(alert: &Alert) -> bool {
    let mut open = false;
    for transition in &alert.transitions {
        match transition.change {
            Change::FollowUp { .. } => open = true,
            Change::FollowUpDone { .. } => open = false,
            _ => {}
        }
    }
    open
}

/// Appends `FollowUpDone` to an alert (open or resolved) with a follow-up still open.
pub fn complete_follow_up(
    alert: &mut Alert,
    operator: &str,
    note: Option<&str>,
    now: Timestamp,
) -> Result<(), EngineError> {
    check_operator(operator)?;
    let note = given(note);
    if let Some(text) = note {
        check_note(text)?;
    }
    if !has_open_follow_up(alert) {
        return Err(EngineError::NoOpenFollowUp(alert.id));
    }
    alert.transitions.push(Transition {
        at: now,
        change: Change::FollowUpDone {
            operator: operator.to_owned(),
            note: note.map(str::to_owned),
        },
    });
    tracing::info!(alert = %alert.id, "follow-up done");
    Ok(())
}

/// Optional text that is there only if it says something.
fn given(text: Option<&str>) -> Option<&str> {
    text.filter(|text| !text.trim().is_empty())
}

fn check_operator(operator: &str) -> Result<(), EngineError> {
    let operator = operator.trim();
    if operator.is_empty() {
        return Err(EngineError::MissingOperator);
    }
    if operator.eq_ignore_ascii_case(RESIDENT_OPERATOR) || operator.eq_ignore_ascii_case(GATEWAY_OPERATOR) {
        return Err(EngineError::ReservedOperator(operator.to_owned()));
    }
    Ok(())
}

fn check_note(text: &str) -> Result<(), EngineError> {
    if text.trim().is_empty() {
        return Err(EngineError::EmptyNote);
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(EngineError::NoteTooLong { max: MAX_NOTE_CHARS });
    }
    Ok(())
}

/// Most alarm references one alert keeps. A stuck button or a faulty device can join an alert
/// thousands of times; the references (persisted whole with the alert's engine state) only
/// serve feedback, which needs each device once, and a cancel, which names a recent alarm.
pub(super) const MAX_ALARM_REFS_PER_ALERT: usize = 64;

/// Over the cap, forgets the oldest reference whose device has a later one, so every device
/// that raised or joined the alert still hears the operator. A cancel naming a forgotten
/// alarm no longer finds it: the alert stays open for a human (the safe side).
fn forget_oldest_repeat(refs: &mut Vec<AlarmRef>) -> Option<AlarmRef> {
    if refs.len() <= MAX_ALARM_REFS_PER_ALERT {
        return None;
    }
    let position = refs.iter().enumerate().position(|(n, alarm)| {
        refs.iter()
            .skip(n + 1)
            .any(|later| later.event.device == alarm.event.device)
    })?;
    Some(refs.remove(position))
}
