//! Turning a parsed register file into one store transaction, for the offline command
//! (`tec-gateway import`) and the admin API alike (the API through the single writer).
//!
//! A person id is a resident id: an assignment row becomes the store's own [`Assignment`]
//! `{ device, resident: person, from: London midnight starting `from`, until: London midnight
//! starting the day after `to` }`, so the alarm path and the uptake report read the same
//! records. A device the register names before it is registered (or before it ever reported)
//! is fine: the assignment is stored without a device record; the uptake report reads every
//! assignment and the per-day activity the store keeps for every device, registered or not.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use protocol::DeviceId;

use super::import::{ImportError, LineError, parse_assignment_lines, parse_people};
use super::register::{PersonRecord, RegisterAssignment};
use crate::domain::{Assignment, ResidentId, Timestamp};
use crate::store::{AuditDraft, CommitOutcome, REPORT_TIMEZONE, StoreError, WriteStore, WriteTxn};

/// One register file, checked and ready to write in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterChange {
    People(Vec<PersonRecord>),
    /// Each assignment with its line in the file, so a refusal at write time names it.
    Assignments(Vec<(u64, Assignment)>),
}

impl RegisterChange {
    /// Which file: `people` or `assignments`.
    pub fn what(&self) -> &'static str {
        match self {
            RegisterChange::People(_) => "people",
            RegisterChange::Assignments(_) => "assignments",
        }
    }

    /// How many records the file holds (repeated identical lines once).
    pub fn records(&self) -> usize {
        match self {
            RegisterChange::People(people) => people.len(),
            RegisterChange::Assignments(assignments) => assignments.len(),
        }
    }

    /// What the audit log says about this import, e.g. `people: 12 lines`.
    pub fn audit_target(&self) -> String {
        format!("{}: {} lines", self.what(), self.records())
    }
}

/// What an import did: records new or different, and records already as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImportCounts {
    pub changed: usize,
    pub unchanged: usize,
}

impl ImportCounts {
    /// One line for a person: `people: 3 new or changed records, 12 unchanged`.
    pub fn summary(&self, what: &str) -> String {
        if self.changed == 0 {
            format!(
                "{what}: nothing changed ({} records already as in the file)",
                self.unchanged
            )
        } else {
            format!(
                "{what}: {} new or changed records, {} unchanged",
                self.changed, self.unchanged
            )
        }
    }
}

/// Checks `people.csv`.
pub fn prepare_people(bytes: &[u8]) -> Result<RegisterChange, ImportError> {
    parse_people(bytes).map(RegisterChange::People)
}

/// Checks `assignments.csv` against the people in the register (`known`) and the stored
/// assignments (`stored`, of any devices).
///
/// Overlaps with stored assignments are checked on register dates: a stored assignment
/// covers the London days from its start to its last instant. Because an imported
/// assignment covers whole London days, two ranges share a day exactly when they share an
/// instant, so this check and the store's own (on instants) agree, with one exception: a
/// line starting the day a stored assignment of its device starts replaces it (the store's
/// same-start rule), which holds at write time only when the stored one starts at London
/// midnight, as imported ones do. One started mid-day through the API is refused when the
/// file is written, naming the line, and nothing is written.
pub fn prepare_assignments(
    bytes: &[u8],
    known: &BTreeSet<ResidentId>,
    stored: &[Assignment],
) -> Result<RegisterChange, ImportError> {
    let tz = report_zone();
    let existing: Vec<RegisterAssignment> = stored.iter().map(|a| register_dates(a, &tz)).collect();
    let checked = parse_assignment_lines(bytes, known, &existing)?;
    to_instants(checked, &tz).map(RegisterChange::Assignments)
}

/// Writes the change and `audit` (the entries recording it) in one transaction of either
/// store, the one path for the admin API's import (through the writer's `Core`) and the
/// offline command. `Ok(Err(line))`: the store refused a line (an assignment overlapping one
/// stored since the file was checked), and nothing was written, the audit entries neither.
/// Otherwise the counts and how the commit ended: only `Committed` means stored.
pub fn apply_register<S: WriteStore>(
    store: &mut S,
    change: &RegisterChange,
    audit: &[AuditDraft],
) -> Result<Result<(ImportCounts, CommitOutcome), LineError>, StoreError> {
    let mut txn = store.begin_txn()?;
    let counts = match write_register(&mut txn, change)? {
        Ok(counts) => counts,
        // Dropping `txn` unwritten aborts it: nothing of this import is stored.
        Err(line) => return Ok(Err(line)),
    };
    txn.append_audit(audit)?;
    Ok(Ok((counts, txn.commit())))
}

/// Writes the change into `txn` (of either store), which the caller commits only on
/// `Ok(Ok(counts))`; on `Ok(Err(line))` (a line the store refused) it must be dropped, so
/// nothing of the file is stored.
fn write_register(
    txn: &mut impl WriteTxn,
    change: &RegisterChange,
) -> Result<Result<ImportCounts, LineError>, StoreError> {
    match change {
        RegisterChange::People(people) => {
            let changed = txn.upsert_people(people)?;
            Ok(Ok(ImportCounts {
                changed,
                unchanged: people.len() - changed,
            }))
        }
        RegisterChange::Assignments(assignments) => {
            // Every device's assignments as stored before this file, read in one call.
            let devices: Vec<DeviceId> = assignments
                .iter()
                .map(|(_, assignment)| assignment.device)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let stored: BTreeMap<DeviceId, Vec<Assignment>> =
                devices.iter().copied().zip(txn.assignments(&devices)?).collect();
            let mut counts = ImportCounts {
                changed: 0,
                unchanged: 0,
            };
            for (line, assignment) in assignments {
                if stored
                    .get(&assignment.device)
                    .is_some_and(|same_device| same_device.contains(assignment))
                {
                    counts.unchanged += 1;
                    continue;
                }
                match txn.assign(assignment) {
                    Ok(()) => counts.changed += 1,
                    Err(refusal @ StoreError::OverlappingAssignment { .. }) => {
                        return Ok(Err(LineError {
                            line: *line,
                            reason: format!("{refusal} (stored since the file was checked)"),
                        }));
                    }
                    Err(other) => return Err(other),
                }
            }
            Ok(Ok(counts))
        }
    }
}

/// The people ids the register holds (what assignment lines may name).
pub fn known_people(people: &[PersonRecord]) -> BTreeSet<ResidentId> {
    people.iter().map(|p| p.id.clone()).collect()
}

fn report_zone() -> TimeZone {
    TimeZone::get(REPORT_TIMEZONE).unwrap_or(TimeZone::UTC)
}

/// London midnight starting `day`, if it is within the range of times the store keeps.
fn day_start(day: Date, tz: &TimeZone) -> Option<Timestamp> {
    day.to_zoned(tz.clone())
        .ok()
        .map(|zoned| Timestamp::from_jiff(zoned.timestamp()))
}

/// The store's instants for register lines: `from` at London midnight, `to` (inclusive) as
/// the London midnight after it.
fn to_instants(lines: Vec<(u64, RegisterAssignment)>, tz: &TimeZone) -> Result<Vec<(u64, Assignment)>, ImportError> {
    let mut out = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    for (line, register) in lines {
        let from = day_start(register.from, tz);
        let until = match register.to {
            None => Some(None),
            Some(to) => to.tomorrow().ok().and_then(|next| day_start(next, tz)).map(Some),
        };
        match (from, until) {
            (Some(from), Some(until)) => out.push((
                line,
                Assignment {
                    device: register.device,
                    resident: register.person,
                    from,
                    until,
                },
            )),
            _ => errors.push(LineError {
                line,
                reason: "a date is out of the range this system keeps".into(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ImportError::BadLines(errors))
    }
}

/// The London days a stored assignment covers: from the day it starts to the day of its last
/// instant (an instant it covers).
fn register_dates(assignment: &Assignment, tz: &TimeZone) -> RegisterAssignment {
    let day_of = |at: Timestamp, fallback: Date| {
        at.to_jiff()
            .map_or(fallback, |instant| instant.to_zoned(tz.clone()).date())
    };
    RegisterAssignment {
        person: assignment.resident.clone(),
        device: assignment.device,
        from: day_of(assignment.from, Date::MIN),
        to: assignment
            .until
            .map(|until| day_of(Timestamp(until.0.saturating_sub(1)), Date::MAX)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    fn id(text: &str) -> ResidentId {
        ResidentId::new(text).unwrap()
    }

    fn instant(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse().unwrap())
    }

    #[test]
    fn register_dates_become_london_midnights_across_summer_time() {
        let known: BTreeSet<_> = [id("p1")].into();
        let file = b"person_id,device_id,from,to\np1,dev-1,2024-03-01,2024-06-30\n";
        let RegisterChange::Assignments(lines) = prepare_assignments(file, &known, &[]).unwrap() else {
            panic!("not assignments");
        };
        assert_eq!(lines.len(), 1);
        let (line, assignment) = &lines[0];
        assert_eq!(*line, 2);
        // 1 March is GMT; 1 July is BST (midnight London = 23:00 UTC the day before).
        assert_eq!(assignment.from, instant("2024-03-01T00:00:00Z"));
        assert_eq!(assignment.until, Some(instant("2024-06-30T23:00:00Z")));
    }

    #[test]
    fn stored_assignments_are_checked_on_the_days_they_cover() {
        let known: BTreeSet<_> = [id("p1"), id("p2")].into();
        let device = DeviceId::new("dev-1").unwrap();
        // Ends at 10:00 on 5 March: 5 March is still that person's day.
        let stored = Assignment {
            device,
            resident: id("p2"),
            from: instant("2024-01-01T09:00:00Z"),
            until: Some(instant("2024-03-05T10:00:00Z")),
        };
        let clash = b"person_id,device_id,from,to\np1,dev-1,2024-03-05,\n";
        let Err(ImportError::BadLines(lines)) = prepare_assignments(clash, &known, std::slice::from_ref(&stored))
        else {
            panic!("an overlap with the stored assignment must be refused");
        };
        assert_eq!(lines[0].line, 2);
        let after = b"person_id,device_id,from,to\np1,dev-1,2024-03-06,\n";
        assert!(prepare_assignments(after, &known, &[stored]).is_ok());
    }

    #[test]
    fn a_line_with_a_stored_start_replaces_it() {
        let known: BTreeSet<_> = [id("p1")].into();
        let device = DeviceId::new("dev-1").unwrap();
        let open = Assignment {
            device,
            resident: id("p1"),
            from: instant("2024-01-01T00:00:00Z"),
            until: None,
        };
        let ended = b"person_id,device_id,from,to\np1,dev-1,2024-01-01,2024-02-29\n";
        let RegisterChange::Assignments(lines) = prepare_assignments(ended, &known, &[open]).unwrap() else {
            panic!("not assignments");
        };
        assert_eq!(lines[0].1.until, Some(instant("2024-03-01T00:00:00Z")));
    }
}
