//! The pure core of the purge: given the clock's now and the policy, the cut-off of each
//! class, who is to be erased, the order of the steps, and the counts of what went. No store
//! access here: the shell (`run.rs`) applies each step in its own write transaction.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Zoned};

use super::policy::RetentionPolicy;
use crate::domain::{Assignment, ResidentId, Timestamp};
use crate::reports::register::PersonRecord;
use crate::store::{CompactedEvents, ErasureState, ErasureStep, Progress, REPORT_TIMEZONE};

/// Everything older than these goes (all in Europe/London calendar terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Heartbeats and sensor telemetry received before this.
    pub telemetry: Timestamp,
    /// Alarm events received, and alerts resolved, before this.
    pub alerts: Timestamp,
    /// Audit entries written before this.
    pub audit: Timestamp,
    /// Quarantined payloads received before this.
    pub quarantine: Timestamp,
    /// People whose care's last day was before this day.
    pub care_ended_before: Date,
}

fn zone() -> TimeZone {
    TimeZone::get(REPORT_TIMEZONE).unwrap_or(TimeZone::UTC)
}

fn zoned(now: Timestamp) -> Option<Zoned> {
    Some(now.to_jiff()?.to_zoned(zone()))
}

/// `now` moved back by `span` on the London calendar; the epoch's start if out of range (then
/// nothing is old enough to go).
fn back(now: &Option<Zoned>, span: Span) -> Timestamp {
    now.as_ref()
        .and_then(|now| now.checked_sub(span).ok())
        .map_or(Timestamp(i64::MIN), |then| Timestamp::from_jiff(then.timestamp()))
}

impl Cutoffs {
    pub fn at(now: Timestamp, policy: &RetentionPolicy) -> Self {
        let local = zoned(now);
        let years = |n: u32| Span::new().years(i64::from(n));
        let days = |n: u32| Span::new().days(i64::from(n));
        let care_ended_before = local
            .as_ref()
            .and_then(|now| now.date().checked_sub(years(policy.erase_after_care_years)).ok())
            .unwrap_or(Date::MIN);
        Self {
            telemetry: back(&local, days(policy.telemetry_days)),
            alerts: back(&local, years(policy.alert_years)),
            audit: back(&local, years(policy.audit_years)),
            quarantine: back(&local, days(policy.quarantine_days)),
            care_ended_before,
        }
    }

    /// The instant the London day `care_ended_before` starts.
    fn care_cutoff_instant(&self) -> Timestamp {
        self.care_ended_before
            .to_zoned(zone())
            .map_or(Timestamp(i64::MIN), |start| Timestamp::from_jiff(start.timestamp()))
    }
}

/// The people to erase: every register record of theirs has ended before
/// `care_ended_before`, every device loan of theirs ended before that day, and they have no
/// open alert. Someone still in care, with an open-ended loan or an open alert stays.
/// Residents who are not in the care register are not erased by this rule (their care's end
/// is not known here); `docs/retention.md` says how they are handled.
pub fn people_to_erase(
    people: &[PersonRecord],
    assignments: &[Assignment],
    open_alert_residents: &BTreeSet<ResidentId>,
    cutoffs: &Cutoffs,
) -> Vec<ResidentId> {
    let loans_end = cutoffs.care_cutoff_instant();
    let mut ended: BTreeSet<&ResidentId> = BTreeSet::new();
    let mut ongoing: BTreeSet<&ResidentId> = BTreeSet::new();
    for person in people {
        match person.end {
            Some(end) if end < cutoffs.care_ended_before => {
                ended.insert(&person.id);
            }
            _ => {
                ongoing.insert(&person.id);
            }
        }
    }
    for assignment in assignments {
        if assignment.until.is_none_or(|until| until > loans_end) {
            ongoing.insert(&assignment.resident);
        }
    }
    ended
        .into_iter()
        .filter(|id| !ongoing.contains(id) && !open_alert_residents.contains(*id))
        .cloned()
        .collect()
}

/// The first instant at or after `now` when the local clock reads `at` (a time in the spring
/// gap means the first instant after it).
pub fn next_run(now: Timestamp, at: Time) -> Timestamp {
    let Some(local) = zoned(now) else {
        return now;
    };
    let today = local.date();
    for date in [
        Some(today),
        today.tomorrow().ok(),
        today.tomorrow().ok().and_then(|d| d.tomorrow().ok()),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(when) = date.to_datetime(at).to_zoned(zone()) {
            let when = Timestamp::from_jiff(when.timestamp());
            if when >= now {
                return when;
            }
        }
    }
    now
}

/// One bounded piece of the purge, applied in one write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeStep {
    /// Raw events by the time index, after this index key.
    Events {
        resume: Option<(i64, u64)>,
    },
    /// Resolved alerts, after this id.
    Alerts {
        resume: u64,
    },
    Quarantine,
    Erase(ResidentId),
    Audit,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Events {
        removed: CompactedEvents,
        resume: Option<(i64, u64)>,
    },
    Alerts(Progress<u64>),
    Quarantine(Progress<()>),
    Erase(ErasureStep),
    Audit(Progress<()>),
}

impl StepOutcome {
    /// Whether the step changed the store (an erasure's last step may remove no record yet
    /// finish: nothing to commit then either).
    pub fn wrote(&self) -> bool {
        self.removed().iter().any(|(_, removed)| *removed > 0)
    }

    /// (class, removed) pairs, for the metrics.
    pub fn removed(&self) -> Vec<(&'static str, u64)> {
        match self {
            StepOutcome::Events { removed, .. } => {
                vec![
                    ("telemetry_events", removed.telemetry),
                    ("alarm_events", removed.alarms),
                ]
            }
            StepOutcome::Alerts(progress) => vec![("alerts", progress.removed)],
            StepOutcome::Quarantine(progress) => vec![("quarantine", progress.removed)],
            StepOutcome::Erase(step) => vec![
                ("erased_events", step.events),
                ("erased_alerts", step.alerts),
                ("erased_records", step.records),
            ],
            StepOutcome::Audit(progress) => vec![("audit_entries", progress.removed)],
        }
    }
}

/// What one person's erasure removed (for the audit entry: ids and counts only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub person: ResidentId,
    pub events: u64,
    pub alerts: u64,
    pub records: u64,
    /// An open alert stopped it; the rest is erased on a later run.
    pub deferred: bool,
}

/// Counts of what a purge removed, per class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub telemetry_events: u64,
    pub alarm_events: u64,
    pub alerts: u64,
    pub quarantine: u64,
    pub audit_entries: u64,
    pub people_erased: u64,
    pub people_deferred: u64,
    /// Write transactions (steps) it took.
    pub batches: u64,
}

impl PurgeCounts {
    pub fn is_empty(&self) -> bool {
        self.telemetry_events
            + self.alarm_events
            + self.alerts
            + self.quarantine
            + self.audit_entries
            + self.people_erased
            + self.people_deferred
            == 0
    }
}

impl fmt::Display for PurgeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "telemetry events {}, alarm events {}, alerts {}, quarantined payloads {}, audit entries {}, people erased {} (deferred {})",
            self.telemetry_events,
            self.alarm_events,
            self.alerts,
            self.quarantine,
            self.audit_entries,
            self.people_erased,
            self.people_deferred
        )
    }
}

/// The purge as a sequence of steps: call [`Purge::next_step`], apply it, hand the outcome to
/// [`Purge::record`], until there is no next step. The audit goes last, so the entries this
/// purge writes follow what it removed.
#[derive(Debug)]
pub struct Purge {
    pub cutoffs: Cutoffs,
    steps: VecDeque<PurgeStep>,
    counts: PurgeCounts,
    current: Option<Erasure>,
    erasures: Vec<Erasure>,
}

impl Purge {
    pub fn new(cutoffs: Cutoffs, erase: Vec<ResidentId>) -> Self {
        let mut steps = VecDeque::from([
            PurgeStep::Events { resume: None },
            PurgeStep::Alerts { resume: 0 },
            PurgeStep::Quarantine,
        ]);
        steps.extend(erase.into_iter().map(PurgeStep::Erase));
        steps.push_back(PurgeStep::Audit);
        Self {
            cutoffs,
            steps,
            counts: PurgeCounts::default(),
            current: None,
            erasures: Vec::new(),
        }
    }

    pub fn next_step(&self) -> Option<&PurgeStep> {
        self.steps.front()
    }

    /// Takes the outcome of the step [`Purge::next_step`] gave; the next step follows from it.
    pub fn record(&mut self, outcome: StepOutcome) {
        self.counts.batches += 1;
        let Some(step) = self.steps.pop_front() else {
            return;
        };
        let again = match (step, outcome) {
            (PurgeStep::Events { .. }, StepOutcome::Events { removed, resume }) => {
                self.counts.telemetry_events += removed.telemetry;
                self.counts.alarm_events += removed.alarms;
                resume.map(|resume| PurgeStep::Events { resume: Some(resume) })
            }
            (PurgeStep::Alerts { .. }, StepOutcome::Alerts(progress)) => {
                self.counts.alerts += progress.removed;
                progress.resume.map(|resume| PurgeStep::Alerts { resume })
            }
            (PurgeStep::Quarantine, StepOutcome::Quarantine(progress)) => {
                self.counts.quarantine += progress.removed;
                progress.resume.map(|()| PurgeStep::Quarantine)
            }
            (PurgeStep::Audit, StepOutcome::Audit(progress)) => {
                self.counts.audit_entries += progress.removed;
                progress.resume.map(|()| PurgeStep::Audit)
            }
            (PurgeStep::Erase(person), StepOutcome::Erase(erased)) => {
                let current = self.current.get_or_insert_with(|| Erasure {
                    person: person.clone(),
                    events: 0,
                    alerts: 0,
                    records: 0,
                    deferred: false,
                });
                current.events += erased.events;
                current.alerts += erased.alerts;
                current.records += erased.records;
                match erased.state {
                    ErasureState::More => Some(PurgeStep::Erase(person)),
                    ErasureState::Done => {
                        self.counts.people_erased += 1;
                        self.erasures.extend(self.current.take());
                        None
                    }
                    ErasureState::OpenAlert => {
                        self.counts.people_deferred += 1;
                        current.deferred = true;
                        self.erasures.extend(self.current.take());
                        None
                    }
                }
            }
            // An outcome of another kind cannot come from applying this step; go on.
            _ => None,
        };
        if let Some(again) = again {
            self.steps.push_front(again);
        }
    }

    pub fn counts(&self) -> &PurgeCounts {
        &self.counts
    }

    /// Erasures finished since the last call (for their audit entries).
    pub fn take_erasures(&mut self) -> Vec<Erasure> {
        std::mem::take(&mut self.erasures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::register::{Equality, PersonRole, ServiceType};
    use jiff::civil::date;

    fn at(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
        Timestamp::from_jiff(date(y, m, d).at(h, min, 0, 0).to_zoned(zone()).unwrap().timestamp())
    }

    fn person(id: &str, end: Option<Date>) -> PersonRecord {
        PersonRecord {
            id: ResidentId::new(id).unwrap(),
            role: PersonRole::User,
            service: ServiceType::Homecare,
            start: date(2010, 1, 1),
            end,
            equality: Equality::default(),
        }
    }

    #[test]
    fn cutoffs_count_london_calendar_periods() {
        let now = at(2030, 6, 15, 3, 30);
        let cut = Cutoffs::at(now, &RetentionPolicy::default());
        assert_eq!(cut.alerts, at(2022, 6, 15, 3, 30));
        assert_eq!(cut.audit, at(2020, 6, 15, 3, 30));
        assert_eq!(cut.telemetry, at(2030, 3, 17, 3, 30));
        assert_eq!(cut.care_ended_before, date(2022, 6, 15));
    }

    #[test]
    fn only_people_whose_care_and_loans_ended_long_ago_are_erased() {
        let cut = Cutoffs::at(at(2030, 6, 15, 3, 30), &RetentionPolicy::default());
        let people = vec![
            person("OLD", Some(date(2022, 6, 14))),
            person("EDGE", Some(date(2022, 6, 15))),
            person("ONGOING", None),
            // Two roles: one ended long ago, one still going.
            person("BOTH", Some(date(2015, 1, 1))),
            person("BOTH", None),
            person("LOAN", Some(date(2020, 1, 1))),
            person("ALERT", Some(date(2020, 1, 1))),
        ];
        let device = protocol::DeviceId::new("pnd-1").unwrap();
        let assignments = vec![Assignment {
            device,
            resident: ResidentId::new("LOAN").unwrap(),
            from: at(2019, 1, 1, 0, 0),
            until: None,
        }];
        let open = BTreeSet::from([ResidentId::new("ALERT").unwrap()]);
        let erased = people_to_erase(&people, &assignments, &open, &cut);
        assert_eq!(erased, vec![ResidentId::new("OLD").unwrap()]);
    }

    #[test]
    fn next_run_is_today_or_tomorrow_at_the_local_time() {
        let at_time = Time::constant(3, 30, 0, 0);
        assert_eq!(next_run(at(2030, 6, 15, 1, 0), at_time), at(2030, 6, 15, 3, 30));
        assert_eq!(next_run(at(2030, 6, 15, 3, 31), at_time), at(2030, 6, 16, 3, 30));
        // Winter: 03:30 London is 03:30 UTC.
        assert_eq!(next_run(at(2030, 1, 15, 4, 0), at_time), at(2030, 1, 16, 3, 30));
    }

    #[test]
    fn steps_repeat_while_there_is_more_and_count_what_went() {
        let cut = Cutoffs::at(at(2030, 6, 15, 3, 30), &RetentionPolicy::default());
        let person = ResidentId::new("OLD").unwrap();
        let mut purge = Purge::new(cut, vec![person.clone()]);
        assert_eq!(purge.next_step(), Some(&PurgeStep::Events { resume: None }));
        purge.record(StepOutcome::Events {
            removed: CompactedEvents {
                telemetry: 5,
                alarms: 1,
            },
            resume: Some((7, 0)),
        });
        assert_eq!(purge.next_step(), Some(&PurgeStep::Events { resume: Some((7, 0)) }));
        purge.record(StepOutcome::Events {
            removed: CompactedEvents {
                telemetry: 2,
                alarms: 0,
            },
            resume: None,
        });
        purge.record(StepOutcome::Alerts(Progress {
            removed: 3,
            resume: None,
        }));
        purge.record(StepOutcome::Quarantine(Progress {
            removed: 1,
            resume: None,
        }));
        assert_eq!(purge.next_step(), Some(&PurgeStep::Erase(person.clone())));
        purge.record(StepOutcome::Erase(ErasureStep {
            events: 10,
            ..ErasureStep::default()
        }));
        purge.record(StepOutcome::Erase(ErasureStep {
            records: 3,
            state: ErasureState::Done,
            ..ErasureStep::default()
        }));
        assert_eq!(purge.next_step(), Some(&PurgeStep::Audit));
        purge.record(StepOutcome::Audit(Progress {
            removed: 4,
            resume: None,
        }));
        assert_eq!(purge.next_step(), None);
        let counts = purge.counts();
        assert_eq!(
            (
                counts.telemetry_events,
                counts.alarm_events,
                counts.alerts,
                counts.quarantine
            ),
            (7, 1, 3, 1)
        );
        assert_eq!((counts.audit_entries, counts.people_erased, counts.batches), (4, 1, 7));
        let erasures = purge.take_erasures();
        assert_eq!(erasures.len(), 1);
        assert_eq!((erasures[0].events, erasures[0].records), (10, 3));
    }
}
