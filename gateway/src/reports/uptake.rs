//! The uptake measure: "the proportion of social care users and carers using
//! technology-enabled care". A pure function of the care register, the device assignments and
//! each device's days of activity, so every figure can be checked by hand (the fixtures in the
//! tests are).
//!
//! Definitions (also in `docs/reports.md`, in words a care manager can check):
//! - **people**: everyone with at least one day of support in the window (a person with two
//!   records, say user and carer, counts once);
//! - **issued**: of those, people who had a device assigned to them at some time during a day of
//!   their support in the window;
//! - **in use**: of those, people whose assigned device sent anything (an alarm, a sensor event,
//!   a heartbeat) while it was assigned to them, on a day of their support in the usage window.
//!
//! The in-year figure uses the whole period as both windows. The snapshot on a date uses that
//! one day for "people" and "issued", and the [`SNAPSHOT_USAGE_DAYS`] days up to it for "in use"
//! (a pendant that is worn but never pressed still sends its daily heartbeat).

use std::collections::BTreeMap;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::register::{PersonRecord, PersonRole, ServiceType};
use protocol::DeviceId;

use crate::domain::{ResidentId, Timestamp};

/// Days up to a snapshot date in which a device must have reported to count as in use.
pub const SNAPSHOT_USAGE_DAYS: i32 = 30;

/// A device lent to a person over an interval of time (`until` exclusive, `None` open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentSpan {
    pub person: ResidentId,
    pub device: DeviceId,
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

/// One device's activity on one local day: when it was first and last heard from, how many
/// events were stored, and how many redelivered copies of stored events arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceDay {
    pub first: Timestamp,
    pub last: Timestamp,
    pub events: u32,
    pub duplicates: u32,
}

/// Each device's days of activity.
pub type ActivityIndex = BTreeMap<DeviceId, BTreeMap<Date, DeviceDay>>;

/// What the report counts over.
#[derive(Debug, Clone, Copy)]
pub struct UptakeInput<'a> {
    pub people: &'a [PersonRecord],
    pub assignments: &'a [AssignmentSpan],
    pub activity: &'a ActivityIndex,
    /// Days are local days in this zone (Europe/London).
    pub tz: &'a TimeZone,
}

/// Counts for one cell of the report; proportions are of `people`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub people: u64,
    pub issued: u64,
    pub in_use: u64,
}

impl Figures {
    pub fn issued_share(&self) -> Option<f64> {
        share(self.issued, self.people)
    }

    pub fn in_use_share(&self) -> Option<f64> {
        share(self.in_use, self.people)
    }
}

fn share(part: u64, whole: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Which records of a person a cell takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Role,
    Service,
    AgeBand,
    Sex,
    Ethnicity,
    Disability,
}

impl Dimension {
    pub const ALL: &'static [Dimension] = &[
        Dimension::Role,
        Dimension::Service,
        Dimension::AgeBand,
        Dimension::Sex,
        Dimension::Ethnicity,
        Dimension::Disability,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Dimension::Role => "Role",
            Dimension::Service => "Service type",
            Dimension::AgeBand => "Age band",
            Dimension::Sex => "Sex",
            Dimension::Ethnicity => "Ethnic group",
            Dimension::Disability => "Disability",
        }
    }

    /// The group a record falls in.
    fn group(self, record: &PersonRecord) -> &'static str {
        let not_recorded = "Not recorded";
        match self {
            Dimension::Role => record.role.label(),
            Dimension::Service => record.service.label(),
            Dimension::AgeBand => record.equality.age_band.map_or(not_recorded, |v| v.label()),
            Dimension::Sex => record.equality.sex.map_or(not_recorded, |v| v.label()),
            Dimension::Ethnicity => record.equality.ethnicity.map_or(not_recorded, |v| v.label()),
            Dimension::Disability => record.equality.disability.map_or(not_recorded, |v| v.label()),
        }
    }

    /// Every group, in report order (so an empty group still shows as 0).
    fn groups(self) -> Vec<&'static str> {
        let mut groups: Vec<&'static str> = match self {
            Dimension::Role => PersonRole::ALL.iter().map(|v| v.label()).collect(),
            Dimension::Service => ServiceType::ALL.iter().map(|v| v.label()).collect(),
            Dimension::AgeBand => super::register::AgeBand::ALL.iter().map(|v| v.label()).collect(),
            Dimension::Sex => super::register::Sex::ALL.iter().map(|v| v.label()).collect(),
            Dimension::Ethnicity => super::register::EthnicGroup::ALL.iter().map(|v| v.label()).collect(),
            Dimension::Disability => super::register::Disability::ALL.iter().map(|v| v.label()).collect(),
        };
        if !matches!(self, Dimension::Role | Dimension::Service) {
            groups.push("Not recorded");
        }
        groups
    }

    /// Whether a person is in exactly one group (equality fields), so the groups add up to the
    /// total; role and service can hold one person in two groups.
    pub fn partitions_people(self) -> bool {
        !matches!(self, Dimension::Role | Dimension::Service)
    }
}

/// One group's in-year and snapshot figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub group: String,
    pub in_year: Figures,
    pub snapshot: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub dimension: Dimension,
    pub rows: Vec<Row>,
}

/// One month of the period (the trend).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthRow {
    /// `YYYY-MM`.
    pub month: String,
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UptakeReport {
    pub from: Date,
    pub to: Date,
    pub snapshot_date: Date,
    pub in_year: Figures,
    pub snapshot: Figures,
    pub breakdowns: Vec<Breakdown>,
    pub months: Vec<MonthRow>,
}

/// The windows one figure is counted over: records active in `active`, device activity in
/// `usage` (both inclusive local dates).
#[derive(Debug, Clone, Copy)]
struct Windows {
    active: (Date, Date),
    usage: (Date, Date),
}

/// Builds the whole report. `snapshot_date` defaults to `to` in the caller.
pub fn uptake(input: &UptakeInput<'_>, from: Date, to: Date, snapshot_date: Date) -> UptakeReport {
    let by_person = group_by_person(input.people);
    let assignments = assignments_by_person(input.assignments, input.tz);
    let counter = Counter {
        input,
        assignments: &assignments,
    };
    let in_year = Windows {
        active: (from, to),
        usage: (from, to),
    };
    let usage_start = snapshot_date
        .checked_sub((SNAPSHOT_USAGE_DAYS - 1).days())
        .unwrap_or(snapshot_date);
    let snapshot = Windows {
        active: (snapshot_date, snapshot_date),
        usage: (usage_start, snapshot_date),
    };
    let everyone = |_: &PersonRecord| true;
    let breakdowns = Dimension::ALL
        .iter()
        .map(|&dimension| Breakdown {
            dimension,
            rows: dimension
                .groups()
                .into_iter()
                .map(|group| {
                    let in_group = |record: &PersonRecord| dimension.group(record) == group;
                    Row {
                        group: group.to_owned(),
                        in_year: counter.figures(&by_person, in_year, &in_group),
                        snapshot: counter.figures(&by_person, snapshot, &in_group),
                    }
                })
                .collect(),
        })
        .collect();
    let months = months_of(from, to)
        .into_iter()
        .map(|(label, start, end)| MonthRow {
            month: label,
            figures: counter.figures(
                &by_person,
                Windows {
                    active: (start, end),
                    usage: (start, end),
                },
                &everyone,
            ),
        })
        .collect();
    UptakeReport {
        from,
        to,
        snapshot_date,
        in_year: counter.figures(&by_person, in_year, &everyone),
        snapshot: counter.figures(&by_person, snapshot, &everyone),
        breakdowns,
        months,
    }
}

fn group_by_person(people: &[PersonRecord]) -> BTreeMap<&ResidentId, Vec<&PersonRecord>> {
    let mut map: BTreeMap<&ResidentId, Vec<&PersonRecord>> = BTreeMap::new();
    for record in people {
        map.entry(&record.id).or_default().push(record);
    }
    map
}

/// An assignment with the local days it touches, worked out once (a zone lookup per check
/// would be millions of them over a report's cells).
struct Assigned<'a> {
    span: &'a AssignmentSpan,
    first_day: Option<Date>,
    /// The day of its last instant; `None` while open-ended.
    last_day: Option<Date>,
}

impl Assigned<'_> {
    /// It covers some instant of the local days `[first, last]`: it began on or before `last`
    /// and its last instant is on or after `first`.
    fn during(&self, (first, last): (Date, Date)) -> bool {
        self.first_day.is_some_and(|day| day <= last)
            && (self.span.until.is_none() || self.last_day.is_some_and(|day| day >= first))
    }
}

fn local_day(at: Timestamp, tz: &TimeZone) -> Option<Date> {
    at.to_jiff().map(|ts| ts.to_zoned(tz.clone()).date())
}

fn assignments_by_person<'a>(
    assignments: &'a [AssignmentSpan],
    tz: &TimeZone,
) -> BTreeMap<&'a ResidentId, Vec<Assigned<'a>>> {
    let mut map: BTreeMap<&ResidentId, Vec<Assigned<'a>>> = BTreeMap::new();
    for span in assignments {
        map.entry(&span.person).or_default().push(Assigned {
            span,
            first_day: local_day(span.from, tz),
            last_day: span.until.and_then(|until| local_day(until.plus_ms(-1), tz)),
        });
    }
    map
}

struct Counter<'a> {
    input: &'a UptakeInput<'a>,
    assignments: &'a BTreeMap<&'a ResidentId, Vec<Assigned<'a>>>,
}

impl Counter<'_> {
    fn figures(
        &self,
        by_person: &BTreeMap<&ResidentId, Vec<&PersonRecord>>,
        windows: Windows,
        in_cell: &dyn Fn(&PersonRecord) -> bool,
    ) -> Figures {
        let mut figures = Figures::default();
        for (person, records) in by_person {
            let (mut active, mut issued, mut in_use) = (false, false, false);
            for record in records.iter().filter(|record| in_cell(record)) {
                let Some(support) = record.overlap(windows.active.0, windows.active.1) else {
                    continue;
                };
                active = true;
                let usage = record.overlap(windows.usage.0, windows.usage.1);
                for assignment in self.assignments.get(person).into_iter().flatten() {
                    if !assignment.during(support) {
                        continue;
                    }
                    issued = true;
                    if usage.is_some_and(|usage| self.reported_while_assigned(assignment.span, usage)) {
                        in_use = true;
                    }
                }
            }
            figures.people += u64::from(active);
            figures.issued += u64::from(issued);
            figures.in_use += u64::from(in_use);
        }
        figures
    }

    /// The device reported on a day of `[first, last]`, at a time it was with this person.
    fn reported_while_assigned(&self, assignment: &AssignmentSpan, (first, last): (Date, Date)) -> bool {
        let Some(days) = self.input.activity.get(&assignment.device) else {
            return false;
        };
        days.range(first..=last).any(|(_, day)| {
            // The day's reports span [first, last]; with only the day's first and last time
            // kept, a report is credited when that span meets the assignment. A day with only
            // redelivered copies (events counted on an earlier day) is not a report.
            day.events > 0 && day.first < assignment.until.unwrap_or(Timestamp(i64::MAX)) && day.last >= assignment.from
        })
    }
}

/// The months `[from, to]` touches, each clipped to it: `(YYYY-MM, first, last)`.
fn months_of(from: Date, to: Date) -> Vec<(String, Date, Date)> {
    let mut months = Vec::new();
    let mut start = from;
    while start <= to {
        let month_end = start.last_of_month();
        let end = month_end.min(to);
        months.push((format!("{:04}-{:02}", start.year(), start.month()), start, end));
        match month_end.tomorrow() {
            Ok(next) => start = next,
            Err(_) => break,
        }
    }
    months
}
