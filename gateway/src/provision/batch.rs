//! A delivery of devices as CSV (`device_id,kind,resident_id,serial`), checked in full
//! before anything is written: one bad row refuses the whole file, every problem listed
//! with its line number.

use protocol::DeviceId;
use serde::Deserialize as _;
use serde::de::IntoDeserializer as _;

use crate::domain::{DeviceKind, ResidentId};

/// The header the file must start with (`resident_id` and `serial` may be empty).
pub const COLUMNS: [&str; 4] = ["device_id", "kind", "resident_id", "serial"];
/// Longest serial accepted (it is printed on the installers' sheet, nothing more).
const MAX_SERIAL_LEN: usize = 64;

/// One device of the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Line in the file (the header is line 1).
    pub line: usize,
    pub device: DeviceId,
    pub kind: DeviceKind,
    pub resident: Option<ResidentId>,
    pub serial: Option<String>,
}

/// Every problem of a refused file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", report(.problems))]
pub struct BatchRefused {
    pub problems: Vec<RowProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: usize,
    pub reason: String,
}

fn report(problems: &[RowProblem]) -> String {
    let mut text = String::new();
    for problem in problems {
        text.push_str(&format!("line {}: {}\n", problem.line, problem.reason));
    }
    text.push_str("nothing was provisioned");
    text
}

/// A device kind by its snake_case name (`pendant`, `smoke_detector`, ...).
pub fn parse_kind(text: &str) -> Result<DeviceKind, String> {
    let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
    DeviceKind::deserialize(deserializer).map_err(|_| {
        format!(
            "unknown kind {text:?} (one of: pendant, fall_detector, smoke_detector, heat_detector, co_detector, \
             flood_detector, door_sensor, bed_sensor, chair_sensor, motion_sensor, temperature_sensor, hub, other)"
        )
    })
}

/// Parses and checks the file on its own (ids, kinds, duplicates); the caller then checks
/// each row against the store and the broker files with [`BatchRefused`] lines of its own.
pub fn parse_delivery(bytes: &[u8]) -> Result<Vec<DeliveryRow>, BatchRefused> {
    let refuse = |line: usize, reason: String| BatchRefused {
        problems: vec![RowProblem { line, reason }],
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| refuse(1, format!("unreadable header: {e}")))?
        .clone();
    if header.iter().collect::<Vec<_>>() != COLUMNS {
        return Err(refuse(1, format!("the header must be exactly {}", COLUMNS.join(","))));
    }
    let mut rows: Vec<DeliveryRow> = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                problems.push(RowProblem {
                    line,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        match parse_row(line, &record) {
            Ok(row) => {
                if let Some(first) = rows.iter().find(|known| known.device == row.device) {
                    problems.push(RowProblem {
                        line,
                        reason: format!("device {} is already on line {}", row.device, first.line),
                    });
                } else {
                    rows.push(row);
                }
            }
            Err(reason) => problems.push(RowProblem { line, reason }),
        }
    }
    if !problems.is_empty() {
        return Err(BatchRefused { problems });
    }
    if rows.is_empty() {
        return Err(refuse(1, "no devices in the file".into()));
    }
    Ok(rows)
}

fn parse_row(line: usize, record: &csv::StringRecord) -> Result<DeliveryRow, String> {
    let field = |index: usize| record.get(index).unwrap_or_default();
    let device = DeviceId::new(field(0)).map_err(|e| format!("device_id {:?}: {e}", field(0)))?;
    let kind = parse_kind(field(1))?;
    let resident = match field(2) {
        "" => None,
        id => Some(ResidentId::new(id).map_err(|e| format!("resident_id {id:?}: {e}"))?),
    };
    let serial = match field(3) {
        "" => None,
        serial if serial.len() > MAX_SERIAL_LEN || !serial.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(format!(
                "serial {serial:?}: at most {MAX_SERIAL_LEN} printable ASCII characters, no spaces"
            ));
        }
        serial => Some(serial.to_owned()),
    };
    Ok(DeliveryRow {
        line,
        device,
        kind,
        resident,
        serial,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_good_file_parses() {
        let rows = parse_delivery(
            b"device_id,kind,resident_id,serial\npend-1,pendant,R-1,SN001\nsmoke-1, smoke_detector ,,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].resident, Some(ResidentId::new("R-1").unwrap()));
        assert_eq!(rows[1].kind, DeviceKind::SmokeDetector);
        assert_eq!(rows[1].resident, None);
        assert_eq!(rows[1].serial, None);
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let refused = parse_delivery(
            b"device_id,kind,resident_id,serial\nPEND-1,pendant,,\npend-2,toaster,,\npend-3,pendant,,\npend-3,hub,,\npend-4,pendant\n",
        )
        .unwrap_err();
        let lines: Vec<usize> = refused.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 6], "{refused}");
        let text = refused.to_string();
        assert!(text.contains("line 3: unknown kind \"toaster\""), "{text}");
        assert!(text.contains("line 5: device pend-3 is already on line 4"), "{text}");
        assert!(text.ends_with("nothing was provisioned"));
    }

    #[test]
    fn a_wrong_header_or_an_empty_file_is_refused() {
        assert_eq!(parse_delivery(b"id,kind\nx,pendant\n").unwrap_err().problems[0].line, 1);
        assert!(parse_delivery(b"device_id,kind,resident_id,serial\n").is_err());
        assert!(parse_delivery(b"").is_err());
    }
}
