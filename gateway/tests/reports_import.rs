//! The register's CSV files: every kind of bad line is reported with its number and reason,
//! nothing is taken from a file with any error, and huge or binary files are refused whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use gateway::domain::ResidentId;
use gateway::reports::import::{ImportError, MAX_IMPORT_BYTES, parse_assignments, parse_people};
use gateway::reports::register::{AgeBand, PersonRole, RegisterAssignment, ServiceType};
use jiff::civil::date;
use protocol::DeviceId;

const PEOPLE: &str = "\
person_id,role,service,start_date,end_date,age_band,sex,ethnicity,disability
P001,user,homecare,2020-04-01,,85+,female,white,yes
P002,carer,carer_support,2020-06-15,2021-01-31,,,,
P001,carer,carer_support,2020-05-01,,85+,female,white,yes
";

fn bad_lines(result: Result<impl std::fmt::Debug, ImportError>) -> Vec<(u64, String)> {
    match result {
        Err(ImportError::BadLines(lines)) => lines.into_iter().map(|l| (l.line, l.reason)).collect(),
        other => panic!("expected bad lines, got {other:?}"),
    }
}

#[test]
fn a_good_people_file_reads_every_field() {
    let people = parse_people(PEOPLE.as_bytes()).unwrap();
    assert_eq!(people.len(), 3);
    assert_eq!(people[0].id.as_str(), "P001");
    assert_eq!(people[0].service, ServiceType::Homecare);
    assert_eq!(people[0].equality.age_band, Some(AgeBand::From85));
    assert_eq!(people[1].end, Some(date(2021, 1, 31)));
    assert_eq!(people[2].role, PersonRole::Carer);
    // Columns in any order, a byte-order mark, equality columns left out, CRLF line ends.
    let reordered = "\u{feff}role,person_id,end_date,start_date,service\r\nuser,P9,,2021-01-01,day_care\r\n";
    let people = parse_people(reordered.as_bytes()).unwrap();
    assert_eq!(people[0].id.as_str(), "P9");
    assert_eq!(people[0].equality.sex, None);
}

#[test]
fn every_kind_of_bad_people_line_is_reported_with_its_number() {
    let file = "\
person_id,role,service,start_date,end_date
P1,user,homecare,2020-04-01,
P2,visitor,homecare,2020-04-01,
P3,user,spa_days,2020-04-01,
P4,user,homecare,01/04/2020,
P5,user,homecare,2020-04-01,2020-03-01
P1,user,day_care,2020-04-01,
P6,user,homecare
,user,homecare,2020-04-01,
P7,user,homecare,2021-02-29,
";
    let lines = bad_lines(parse_people(file.as_bytes()));
    let numbers: Vec<u64> = lines.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![3, 4, 5, 6, 7, 8, 9, 10], "{lines:#?}");
    let reason = |n: u64| lines.iter().find(|(l, _)| *l == n).unwrap().1.clone();
    assert!(reason(3).contains("unknown role \"visitor\""), "{}", reason(3));
    assert!(reason(4).contains("unknown service type"), "{}", reason(4));
    assert!(reason(5).contains("not a date"), "{}", reason(5));
    assert!(reason(6).contains("end_date is before start_date"), "{}", reason(6));
    assert!(
        reason(7).contains("duplicate") && reason(7).contains("line 2"),
        "{}",
        reason(7)
    );
    assert!(reason(8).contains("3 fields, but the header has 5"), "{}", reason(8));
    assert!(reason(9).contains("person_id"), "{}", reason(9));
    assert!(
        reason(10).contains("not a date"),
        "2021 has no 29 February: {}",
        reason(10)
    );
    let report = parse_people(file.as_bytes()).unwrap_err().report();
    assert!(report.ends_with("8 bad line(s); nothing was imported\n"), "{report}");
}

#[test]
fn whole_files_are_refused_for_a_bad_header_binary_content_or_size() {
    let refused = |bytes: &[u8]| match parse_people(bytes) {
        Err(ImportError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(
        refused(b"person_id,role,service,start_date\nP1,user,homecare,2020-01-01\n")
            .contains("missing column(s): end_date")
    );
    assert!(
        refused(b"person_id,role,service,start_date,end_date,shoe_size\n").contains("unknown column \"shoe_size\"")
    );
    assert!(refused(b"person_id,person_id,role,service,start_date,end_date\n").contains("twice"));
    assert!(refused(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").contains("binary"));
    assert!(refused(&[0xff, 0xfe, 0x41]).contains("binary"));
    let huge = vec![b'a'; MAX_IMPORT_BYTES + 1];
    assert!(refused(&huge).contains("too large"));
    // An empty file has no header.
    assert!(refused(b"").contains("missing column(s)"));
}

fn known(ids: &[&str]) -> BTreeSet<ResidentId> {
    ids.iter().map(|id| ResidentId::new(*id).unwrap()).collect()
}

#[test]
fn assignments_need_known_people_and_never_overlap_on_one_device() {
    let existing = vec![RegisterAssignment {
        person: ResidentId::new("P9").unwrap(),
        device: DeviceId::new("pendant-9").unwrap(),
        from: date(2020, 1, 1),
        to: Some(date(2020, 12, 31)),
    }];
    let file = "\
person_id,device_id,from,to
P1,pendant-1,2020-04-01,2020-09-30
P2,pendant-1,2020-10-01,
P3,pendant-3,2020-04-01,
P1,pendant-2,2020-04-01,
P2,pendant-2,2020-06-01,2020-07-01
P1,pendant-9,2020-12-01,
P1,Not A Device,2020-01-01,
P1,pendant-4,2020-05-01,2020-04-01
P1,pendant-1,2020-04-01,2020-09-30
";
    let lines = bad_lines(parse_assignments(
        file.as_bytes(),
        &known(&["P1", "P2", "P9"]),
        &existing,
    ));
    let numbers: Vec<u64> = lines.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![4, 6, 7, 8, 9], "{lines:#?}");
    assert!(lines[0].1.contains("unknown person P3"), "{lines:?}");
    assert!(
        lines[1].1.contains("already assigned") && lines[1].1.contains("line 5"),
        "{lines:?}"
    );
    assert!(lines[2].1.contains("already assigned to P9"), "{lines:?}");
    assert!(lines[3].1.contains("not a valid device id"), "{lines:?}");
    assert!(lines[4].1.contains("to is before from"), "{lines:?}");
    // Line 10 repeats line 2 exactly: not an overlap. A clean file reads, and re-reading it
    // against what it stored is still clean (re-importing changes nothing).
    let clean = "person_id,device_id,from,to\nP1,pendant-1,2020-04-01,2020-09-30\nP2,pendant-1,2020-10-01,\n";
    let stored = parse_assignments(clean.as_bytes(), &known(&["P1", "P2"]), &existing).unwrap();
    assert_eq!(stored.len(), 2);
    let again = parse_assignments(clean.as_bytes(), &known(&["P1", "P2"]), &stored).unwrap();
    assert_eq!(again, stored);
}
