//! The monitoring KPIs for a period, from the alerts themselves (every transition is kept, so
//! the figures can be recomputed and checked at any time).
//!
//! Definitions (also in `docs/reports.md`):
//! - an alert belongs to the period it was **raised** in (`from` inclusive, `to` exclusive);
//! - **calls** are alerts of life-safety or wellbeing priority (technical alerts are equipment,
//!   not calls) other than bookkeeping outcomes (merged duplicates, grouped into an incident);
//! - a call's **answer time** is from raised to the first acknowledgement;
//! - a call closed without an acknowledgement (cancelled by the resident, cleared by itself) needed
//!   no answer and is counted apart;
//! - a call still unanswered when the report is made counts as missing each target its waiting
//!   time already exceeds, and is left out of a target it can still meet.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{Alert, AlertKind, AlertState, KpiClass, Outcome, Priority, Timestamp};

/// TEC Quality's call-handling standard: 97.5% of alarm calls answered within 60 s, 99% within
/// 180 s.
pub const TARGET_60S: f64 = 0.975;
pub const TARGET_180S: f64 = 0.99;

/// One answer-time target and how the period did against it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    pub within_ms: i64,
    pub goal: f64,
    /// Calls answered within the time.
    pub met: u64,
    /// Calls the target applies to (answered, plus unanswered ones already past it).
    pub counted: u64,
}

impl Target {
    pub fn share(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.counted > 0).then(|| self.met as f64 / self.counted as f64)
    }

    pub fn achieved(&self) -> Option<bool> {
        self.share().map(|share| share >= self.goal)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerTimes {
    pub calls: u64,
    pub answered: u64,
    /// Closed without an acknowledgement (resident cancelled, cleared by itself).
    pub closed_unanswered: u64,
    /// Still waiting when the report was made.
    pub still_unanswered: u64,
    pub within_60s: Target,
    pub within_180s: Target,
    pub median_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// Offline alerts and infrastructure incidents: how many and how long devices were silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NoComms {
    pub device_offline: u64,
    pub infrastructure_incidents: u64,
    /// Of those closed: raised to resolved.
    pub median_ms: Option<i64>,
    pub longest_ms: Option<i64>,
    pub still_open: u64,
}

/// How well events travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryHealth {
    /// Alerts whose raising event arrived late (after a backlog or an outage).
    pub late_alerts: u64,
    pub key_conflicts: u64,
    /// Events stored in the period: each was receipted, most at the first try.
    pub events_stored: u64,
    /// Copies of already stored events that came again (the device did not hear the receipt
    /// in time and sent again, or the broker redelivered): how often delivery took a second try.
    pub redelivered: u64,
}

impl DeliveryHealth {
    /// Share of deliveries that needed no second copy.
    pub fn first_time_share(&self) -> Option<f64> {
        let total = self.events_stored + self.redelivered;
        #[allow(clippy::cast_precision_loss)]
        (total > 0).then(|| self.events_stored as f64 / total as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiReport {
    pub from: Timestamp,
    pub to: Timestamp,
    pub as_of: Timestamp,
    pub alerts: u64,
    pub by_priority: BTreeMap<String, u64>,
    pub by_kind: BTreeMap<String, u64>,
    pub answer: AnswerTimes,
    pub by_outcome: BTreeMap<String, u64>,
    pub resident_cancellations: u64,
    pub no_comms: NoComms,
    pub delivery: DeliveryHealth,
}

fn is_call(alert: &Alert) -> bool {
    matches!(alert.priority, Priority::LifeSafety | Priority::Wellbeing)
        && alert
            .outcome()
            .is_none_or(|outcome| outcome.kpi_class() != KpiClass::Excluded)
}

fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "unknown".to_owned(),
    }
}

/// When the alert was resolved, if it was.
fn resolved_at(alert: &Alert) -> Option<Timestamp> {
    (alert.state == AlertState::Resolved)
        .then(|| alert.transitions.last().map(|t| t.at))
        .flatten()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// The KPI report over the alerts raised in `[from, to)`, as known at `as_of` (the report's
/// end, or now if that is earlier).
pub fn kpi(alerts: &[Alert], from: Timestamp, to: Timestamp, as_of: Timestamp) -> KpiReport {
    let in_period: Vec<&Alert> = alerts
        .iter()
        .filter(|a| from <= a.raised_at && a.raised_at < to)
        .collect();
    let mut by_priority = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    let mut by_outcome = BTreeMap::new();
    let mut answer_times = Vec::new();
    let mut answer = AnswerTimes {
        calls: 0,
        answered: 0,
        closed_unanswered: 0,
        still_unanswered: 0,
        within_60s: Target {
            within_ms: 60_000,
            goal: TARGET_60S,
            met: 0,
            counted: 0,
        },
        within_180s: Target {
            within_ms: 180_000,
            goal: TARGET_180S,
            met: 0,
            counted: 0,
        },
        median_ms: None,
        p95_ms: None,
    };
    let mut no_comms = NoComms::default();
    let mut silences = Vec::new();
    let mut delivery = DeliveryHealth::default();
    let mut resident_cancellations = 0;
    for alert in &in_period {
        *by_priority.entry(snake(&alert.priority)).or_insert(0) += 1;
        *by_kind.entry(snake(&alert.kind)).or_insert(0) += 1;
        if let Some(outcome) = alert.outcome() {
            *by_outcome.entry(snake(&outcome)).or_insert(0) += 1;
            if outcome == Outcome::CancelledByResident {
                resident_cancellations += 1;
            }
        }
        if alert.late_by_ms.is_some() {
            delivery.late_alerts += 1;
        }
        match alert.kind {
            AlertKind::KeyConflict => delivery.key_conflicts += 1,
            AlertKind::DeviceOffline | AlertKind::InfrastructureIncident => {
                if alert.kind == AlertKind::DeviceOffline {
                    no_comms.device_offline += 1;
                } else {
                    no_comms.infrastructure_incidents += 1;
                }
                match resolved_at(alert) {
                    Some(end) => silences.push(end.millis_since(alert.raised_at)),
                    None => no_comms.still_open += 1,
                }
            }
            _ => {}
        }
        if !is_call(alert) {
            continue;
        }
        answer.calls += 1;
        match alert.answer_time_ms() {
            Some(ms) => {
                answer.answered += 1;
                answer_times.push(ms);
                for target in [&mut answer.within_60s, &mut answer.within_180s] {
                    target.counted += 1;
                    target.met += u64::from(ms <= target.within_ms);
                }
            }
            None if alert.state == AlertState::Resolved => answer.closed_unanswered += 1,
            None => {
                answer.still_unanswered += 1;
                let waited = as_of.millis_since(alert.raised_at);
                for target in [&mut answer.within_60s, &mut answer.within_180s] {
                    target.counted += u64::from(waited > target.within_ms);
                }
            }
        }
    }
    answer_times.sort_unstable();
    answer.median_ms = percentile(&answer_times, 0.5);
    answer.p95_ms = percentile(&answer_times, 0.95);
    silences.sort_unstable();
    no_comms.median_ms = percentile(&silences, 0.5);
    no_comms.longest_ms = silences.last().copied();
    KpiReport {
        from,
        to,
        as_of,
        alerts: in_period.len() as u64,
        by_priority,
        by_kind,
        answer,
        by_outcome,
        resident_cancellations,
        no_comms,
        delivery,
    }
}
