//! Reading the care register from CSV: `people.csv` and `assignments.csv` (columns in
//! `docs/reports.md`). Pure: bytes in, records or every bad line out, so an import either
//! changes nothing or everything, and the operator fixes the whole file in one go.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::civil::Date;
use protocol::DeviceId;

use super::register::{PersonRecord, PersonRole, RegisterAssignment};
use crate::domain::ResidentId;

/// Larger files are refused before parsing (a borough's register is a few MB).
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;
/// Bad lines listed in full; beyond this they are counted.
pub const MAX_LISTED_ERRORS: usize = 200;

pub const PEOPLE_COLUMNS: &[&str] = &[
    "person_id",
    "role",
    "service",
    "start_date",
    "end_date",
    "age_band",
    "sex",
    "ethnicity",
    "disability",
];
/// Columns that must be present (the equality ones may be left out entirely).
const PEOPLE_REQUIRED: &[&str] = &["person_id", "role", "service", "start_date", "end_date"];
pub const ASSIGNMENT_COLUMNS: &[&str] = &["person_id", "device_id", "from", "to"];

/// One bad line: its number in the file (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The file as a whole cannot be read as the register.
    #[error("{0}")]
    Refused(String),
    /// Some lines are wrong; nothing was imported.
    #[error("{} bad line(s); nothing imported", .0.len())]
    BadLines(Vec<LineError>),
}

impl ImportError {
    /// Every bad line, one per line of text, capped at [`MAX_LISTED_ERRORS`].
    pub fn report(&self) -> String {
        match self {
            ImportError::Refused(reason) => format!("refused: {reason}\n"),
            ImportError::BadLines(lines) => {
                let mut text = String::new();
                for error in lines.iter().take(MAX_LISTED_ERRORS) {
                    text.push_str(&format!("line {}: {}\n", error.line, error.reason));
                }
                if lines.len() > MAX_LISTED_ERRORS {
                    text.push_str(&format!("... and {} more bad lines\n", lines.len() - MAX_LISTED_ERRORS));
                }
                text.push_str(&format!("{} bad line(s); nothing was imported\n", lines.len()));
                text
            }
        }
    }
}

/// A file's readable rows `(line number, column -> value)` and the lines that are not rows.
type Rows = (Vec<(u64, HashMap<String, String>)>, Vec<LineError>);

/// The rows of a CSV file with its header checked.
fn rows<'a>(bytes: &'a [u8], known: &[&str], required: &[&str]) -> Result<Rows, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::Refused(format!(
            "file too large ({} bytes; at most {MAX_IMPORT_BYTES})",
            bytes.len()
        )));
    }
    if bytes.contains(&0) || std::str::from_utf8(bytes).is_err() {
        return Err(ImportError::Refused("not a UTF-8 text file (binary content)".into()));
    }
    let bytes: &'a [u8] = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| ImportError::Refused(format!("cannot read the header line: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let mut seen = BTreeSet::new();
    for name in &header {
        if !known.contains(&name.as_str()) {
            return Err(ImportError::Refused(format!(
                "unknown column {name:?} in the header (expected: {})",
                known.join(", ")
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(ImportError::Refused(format!(
                "column {name:?} appears twice in the header"
            )));
        }
    }
    let missing: Vec<&str> = required.iter().copied().filter(|c| !seen.contains(*c)).collect();
    if !missing.is_empty() {
        return Err(ImportError::Refused(format!(
            "missing column(s): {}",
            missing.join(", ")
        )));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Line numbers as an editor shows them (quoted newlines aside): the header is line 1.
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(index as u64 + 2, csv::Position::line);
        match record {
            Err(e) => errors.push(LineError {
                line,
                reason: format!("unreadable CSV: {e}"),
            }),
            Ok(record) if record.iter().all(str::is_empty) => {}
            Ok(record) if record.len() != header.len() => errors.push(LineError {
                line,
                reason: format!("{} fields, but the header has {}", record.len(), header.len()),
            }),
            Ok(record) => out.push((
                line,
                header.iter().cloned().zip(record.iter().map(str::to_owned)).collect(),
            )),
        }
    }
    Ok((out, errors))
}

fn field<'a>(row: &'a HashMap<String, String>, name: &str) -> &'a str {
    row.get(name).map_or("", String::as_str)
}

fn date_field(row: &HashMap<String, String>, name: &str) -> Result<Option<Date>, String> {
    let text = field(row, name);
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<Date>()
        .map(Some)
        .map_err(|_| format!("{name} {text:?} is not a date (YYYY-MM-DD)"))
}

fn optional<T: std::str::FromStr<Err = String>>(
    row: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, String> {
    let text = field(row, name);
    if text.is_empty() {
        Ok(None)
    } else {
        text.parse().map(Some)
    }
}

fn person_line(row: &HashMap<String, String>) -> Result<PersonRecord, String> {
    let id = ResidentId::new(field(row, "person_id")).map_err(|e| format!("person_id: {e}"))?;
    let role: PersonRole = field(row, "role").parse()?;
    let service = field(row, "service").parse()?;
    let start = date_field(row, "start_date")?.ok_or("start_date is required")?;
    let end = date_field(row, "end_date")?;
    if end.is_some_and(|end| end < start) {
        return Err("end_date is before start_date".into());
    }
    Ok(PersonRecord {
        id,
        role,
        service,
        start,
        end,
        equality: super::register::Equality {
            age_band: optional(row, "age_band")?,
            sex: optional(row, "sex")?,
            ethnicity: optional(row, "ethnicity")?,
            disability: optional(row, "disability")?,
        },
    })
}

/// Parses `people.csv`: one line per person and role. Every bad line is reported.
pub fn parse_people(bytes: &[u8]) -> Result<Vec<PersonRecord>, ImportError> {
    let mut people = Vec::new();
    let (rows, mut errors) = rows(bytes, PEOPLE_COLUMNS, PEOPLE_REQUIRED)?;
    let mut first_line: BTreeMap<(ResidentId, PersonRole), u64> = BTreeMap::new();
    for (line, row) in rows {
        match person_line(&row) {
            Ok(person) => match first_line.get(&(person.id.clone(), person.role)) {
                Some(first) => errors.push(LineError {
                    line,
                    reason: format!(
                        "duplicate: person {} as {} is already on line {first}",
                        person.id.as_str(),
                        person.role
                    ),
                }),
                None => {
                    first_line.insert((person.id.clone(), person.role), line);
                    people.push(person);
                }
            },
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    errors.sort_by_key(|e| e.line);
    if errors.is_empty() {
        Ok(people)
    } else {
        Err(ImportError::BadLines(errors))
    }
}

fn assignment_line(row: &HashMap<String, String>) -> Result<RegisterAssignment, String> {
    let person = ResidentId::new(field(row, "person_id")).map_err(|e| format!("person_id: {e}"))?;
    let device_text = field(row, "device_id");
    let device =
        DeviceId::new(device_text).map_err(|_| format!("device_id {device_text:?} is not a valid device id"))?;
    let from = date_field(row, "from")?.ok_or("from is required")?;
    let to = date_field(row, "to")?;
    if to.is_some_and(|to| to < from) {
        return Err("to is before from".into());
    }
    Ok(RegisterAssignment {
        person,
        device,
        from,
        to,
    })
}

/// Parses `assignments.csv` against the people the register will hold (`known`) and the
/// assignments already stored for other people (`existing`): unknown people and overlapping
/// assignments of one device are bad lines. A stored assignment of a device starting the
/// day a line of the same device starts is replaced by that line, as the store replaces an
/// assignment with the same start (so re-importing a file changes nothing, and a re-import
/// may end an open assignment).
pub fn parse_assignments(
    bytes: &[u8],
    known: &BTreeSet<ResidentId>,
    existing: &[RegisterAssignment],
) -> Result<Vec<RegisterAssignment>, ImportError> {
    Ok(parse_assignment_lines(bytes, known, existing)?
        .into_iter()
        .map(|(_, assignment)| assignment)
        .collect())
}

/// [`parse_assignments`] with each assignment's line (the first, for repeated lines), so a
/// refusal when it is written can still name the line.
pub fn parse_assignment_lines(
    bytes: &[u8],
    known: &BTreeSet<ResidentId>,
    existing: &[RegisterAssignment],
) -> Result<Vec<(u64, RegisterAssignment)>, ImportError> {
    let mut parsed: Vec<(u64, RegisterAssignment)> = Vec::new();
    let (rows, mut errors) = rows(bytes, ASSIGNMENT_COLUMNS, ASSIGNMENT_COLUMNS)?;
    for (line, row) in rows {
        match assignment_line(&row) {
            Ok(assignment) if !known.contains(&assignment.person) => errors.push(LineError {
                line,
                reason: format!("unknown person {} (import people first)", assignment.person.as_str()),
            }),
            Ok(assignment) => parsed.push((line, assignment)),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    for (i, (line, a)) in parsed.iter().enumerate() {
        let clash_in_file = parsed
            .iter()
            .take(i)
            .find(|(_, b)| b.device == a.device && overlap(a, b) && a != b);
        if let Some((other, _)) = clash_in_file {
            errors.push(LineError {
                line: *line,
                reason: format!(
                    "device {} is already assigned over these dates on line {other}",
                    a.device
                ),
            });
            continue;
        }
        if let Some(stored) = existing.iter().find(|b| {
            b.device == a.device
                && overlap(a, b)
                && !parsed.iter().any(|(_, p)| p.device == b.device && p.from == b.from)
        }) {
            errors.push(LineError {
                line: *line,
                reason: format!(
                    "device {} is already assigned to {} from {} over these dates",
                    a.device,
                    stored.person.as_str(),
                    stored.from
                ),
            });
        }
    }
    errors.sort_by_key(|e| e.line);
    if errors.is_empty() {
        let mut unique: Vec<(u64, RegisterAssignment)> = Vec::new();
        for (line, a) in parsed {
            if !unique.iter().any(|(_, seen)| *seen == a) {
                unique.push((line, a));
            }
        }
        Ok(unique)
    } else {
        Err(ImportError::BadLines(errors))
    }
}

/// Two date ranges (inclusive, open-ended when `to` is empty) share a day.
fn overlap(a: &RegisterAssignment, b: &RegisterAssignment) -> bool {
    a.from <= b.to.unwrap_or(Date::MAX) && b.from <= a.to.unwrap_or(Date::MAX)
}
