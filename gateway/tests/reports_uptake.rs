//! The uptake measure on hand-computed fixtures: every figure below was worked out on paper
//! from the definitions in `docs/reports.md`, then checked against the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use gateway::domain::{ResidentId, Timestamp};
use gateway::reports::register::{Equality, PersonRecord, PersonRole, ServiceType, Sex};
use gateway::reports::uptake::{ActivityIndex, AssignmentSpan, DeviceDay, Dimension, Figures, UptakeInput, uptake};
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;
use protocol::DeviceId;

fn london() -> TimeZone {
    TimeZone::get("Europe/London").unwrap()
}

fn at(day: Date, hour: i8) -> Timestamp {
    Timestamp::from_jiff(london().to_timestamp(day.at(hour, 0, 0, 0)).unwrap())
}

fn person(id: &str, role: PersonRole, service: ServiceType, start: Date, end: Option<Date>) -> PersonRecord {
    PersonRecord {
        id: ResidentId::new(id).unwrap(),
        role,
        service,
        start,
        end,
        equality: Equality::default(),
    }
}

fn assign(person: &str, device: &str, from: Timestamp, until: Option<Timestamp>) -> AssignmentSpan {
    AssignmentSpan {
        person: ResidentId::new(person).unwrap(),
        device: DeviceId::new(device).unwrap(),
        from,
        until,
    }
}

/// One report at `hour` on each day given.
fn active(activity: &mut ActivityIndex, device: &str, days: &[(Date, i8)]) {
    let entry = activity.entry(DeviceId::new(device).unwrap()).or_default();
    for (day, hour) in days {
        entry.insert(
            *day,
            DeviceDay {
                first: at(*day, *hour),
                last: at(*day, *hour),
                events: 1,
                duplicates: 0,
            },
        );
    }
}

fn figures(people: u64, issued: u64, in_use: u64) -> Figures {
    Figures { people, issued, in_use }
}

/// The year 2024-04-01..2025-03-31 (with no leap day) and a cast that covers the cases.
struct Borough {
    people: Vec<PersonRecord>,
    assignments: Vec<AssignmentSpan>,
    activity: ActivityIndex,
}

fn borough() -> Borough {
    use PersonRole::{Carer, User};
    use ServiceType::{CareHome, CarerSupport, DayCare, Homecare};
    let mut activity = BTreeMap::new();
    let people = vec![
        // p1: all year, pendant used all year.
        person("p1", User, Homecare, date(2020, 1, 1), None),
        // p2: starts mid-year (Oct), device assigned but silent.
        person("p2", User, Homecare, date(2024, 10, 1), None),
        // p3: user AND carer: counted once in the total, once in each role.
        person("p3", User, DayCare, date(2023, 5, 1), None),
        person("p3", Carer, CarerSupport, date(2024, 6, 1), Some(date(2024, 12, 31))),
        // p4: support ended in June; their device kept reporting after (not counted then).
        person("p4", User, CareHome, date(2022, 1, 1), Some(date(2024, 6, 30))),
        // p5: ended before the period: not in it at all.
        person("p5", User, Homecare, date(2021, 1, 1), Some(date(2024, 3, 31))),
        // p6: a device that reported only before its assignment started, then went quiet.
        person("p6", User, Homecare, date(2024, 4, 1), None),
        // p7: two devices, only the second reports.
        person("p7", User, Homecare, date(2024, 4, 1), None),
        // p8: no device at all.
        person("p8", Carer, CarerSupport, date(2024, 9, 1), None),
    ];
    let assignments = vec![
        assign("p1", "pendant-1", at(date(2023, 1, 1), 9), None),
        assign("p2", "pendant-2", at(date(2024, 10, 2), 9), None),
        assign("p3", "pendant-3", at(date(2024, 7, 1), 9), None),
        // p4's device was with p4 until their support ended, then reassigned to p6.
        assign(
            "p4",
            "pendant-4",
            at(date(2023, 1, 1), 9),
            Some(at(date(2024, 6, 30), 12)),
        ),
        assign("p6", "pendant-4", at(date(2024, 8, 1), 12), None),
        assign("p7", "pendant-7a", at(date(2024, 4, 1), 9), None),
        assign("p7", "pendant-7b", at(date(2024, 4, 1), 9), None),
        assign("p5", "pendant-5", at(date(2021, 1, 1), 9), None),
    ];
    active(
        &mut activity,
        "pendant-1",
        &[(date(2024, 4, 10), 8), (date(2025, 3, 20), 8)],
    );
    active(&mut activity, "pendant-3", &[(date(2024, 8, 5), 10)]);
    // pendant-4: with p4 on 2024-05-05 (counts); on 2024-07-15 it was nobody's; on 2024-08-01
    // it reported at 09:00, three hours before p6's assignment began.
    active(
        &mut activity,
        "pendant-4",
        &[(date(2024, 5, 5), 10), (date(2024, 7, 15), 10), (date(2024, 8, 1), 9)],
    );
    active(&mut activity, "pendant-7b", &[(date(2025, 2, 1), 10)]);
    active(&mut activity, "pendant-5", &[(date(2024, 6, 1), 10)]);
    Borough {
        people,
        assignments,
        activity,
    }
}

#[test]
fn in_year_snapshot_and_breakdowns_match_the_hand_count() {
    let b = borough();
    let tz = london();
    let input = UptakeInput {
        people: &b.people,
        assignments: &b.assignments,
        activity: &b.activity,
        tz: &tz,
    };
    let report = uptake(&input, date(2024, 4, 1), date(2025, 3, 31), date(2025, 3, 31));
    // People: p1 p2 p3 p4 p6 p7 p8 = 7 (p5 ended before). Issued: p1 p2 p3 p4 p6 p7 = 6.
    // In use: p1 (April), p3 (August, as a user and as a carer), p4 (May, with p4 and
    // supported), p7 (second device) = 4. p6: pendant-4 reported at 09:00 on 1 August, before
    // p6's assignment began at 12:00: not counted. p2: silent.
    assert_eq!(report.in_year, figures(7, 6, 4));
    // Snapshot on 2025-03-31: active p1 p2 p3 (user) p6 p7 p8 = 6 (p3's carer record ended,
    // p4 ended). Issued on the day: p1 p2 p3 p6 p7 = 5. In use in the 30 days to it: p1
    // (20 March) = 1 (p7's report was 1 February).
    assert_eq!(report.snapshot, figures(6, 5, 1));
    let role = report
        .breakdowns
        .iter()
        .find(|b| b.dimension == Dimension::Role)
        .unwrap();
    assert_eq!(role.rows[0].group, "Users of services");
    // Users: p1 p2 p3 p4 p6 p7 = 6 people; issued 6; in use p1 p3 p4 p7 = 4.
    assert_eq!(role.rows[0].in_year, figures(6, 6, 4));
    // Carers: p3 (June-December, device from July, report in August) and p8 = 2; 1; 1.
    assert_eq!(role.rows[1].in_year, figures(2, 1, 1));
    let service = report
        .breakdowns
        .iter()
        .find(|b| b.dimension == Dimension::Service)
        .unwrap();
    let homecare = service.rows.iter().find(|r| r.group == "Homecare").unwrap();
    // Homecare: p1 p2 p6 p7 = 4; issued 4; in use p1 p7 = 2.
    assert_eq!(homecare.in_year, figures(4, 4, 2));
    let care_home = service.rows.iter().find(|r| r.group == "Care home").unwrap();
    assert_eq!(care_home.in_year, figures(1, 1, 1));
    assert_eq!(care_home.snapshot, figures(0, 0, 0));
    // Equality fields not recorded: everyone is in "Not recorded", which adds up to the total.
    let sex = report
        .breakdowns
        .iter()
        .find(|b| b.dimension == Dimension::Sex)
        .unwrap();
    assert_eq!(sex.rows.last().unwrap().group, "Not recorded");
    assert_eq!(sex.rows.last().unwrap().in_year, report.in_year);
    // Months: 12, two checked by hand.
    assert_eq!(report.months.len(), 12);
    assert_eq!(report.months[0].month, "2024-04");
    // April: p1 p3 p4 p6 p7 = 5; issued p1 p4 p7 (p3's device from July, p6's from August) = 3;
    // in use p1 (10 April) = 1.
    assert_eq!(report.months[0].figures, figures(5, 3, 1));
    // August: p1 p3 p6 p7 = 4 (p4 ended in June, p2 starts in October, p8 in September);
    // issued 4; in use p3 = 1 (p6's only August report came before the assignment).
    assert_eq!(report.months[4].month, "2024-08");
    assert_eq!(report.months[4].figures, figures(4, 4, 1));
}

#[test]
fn a_period_with_nobody_and_leap_days() {
    let b = borough();
    let tz = london();
    let input = UptakeInput {
        people: &b.people,
        assignments: &b.assignments,
        activity: &b.activity,
        tz: &tz,
    };
    // Before anyone's support began.
    let empty = uptake(&input, date(2019, 1, 1), date(2019, 12, 31), date(2019, 12, 31));
    assert_eq!(empty.in_year, figures(0, 0, 0));
    assert_eq!(empty.in_year.in_use_share(), None, "no share of nobody");
    // A person whose support is exactly the leap day, with a report on it.
    let leap = vec![person(
        "leap",
        PersonRole::User,
        ServiceType::Other,
        date(2024, 2, 29),
        Some(date(2024, 2, 29)),
    )];
    let spans = vec![assign("leap", "pendant-l", at(date(2024, 2, 1), 9), None)];
    let mut activity = BTreeMap::new();
    active(&mut activity, "pendant-l", &[(date(2024, 2, 29), 23)]);
    let input = UptakeInput {
        people: &leap,
        assignments: &spans,
        activity: &activity,
        tz: &tz,
    };
    let report = uptake(&input, date(2024, 2, 1), date(2024, 3, 31), date(2024, 2, 29));
    assert_eq!(report.in_year, figures(1, 1, 1));
    assert_eq!(report.snapshot, figures(1, 1, 1));
    assert_eq!(report.months[0].figures, figures(1, 1, 1));
    assert_eq!(report.months[1].figures, figures(0, 0, 0));
    // 23:00 on 29 February is still the 29th in London (GMT in winter).
    let report = uptake(&input, date(2024, 3, 1), date(2024, 3, 31), date(2024, 3, 31));
    assert_eq!(report.in_year, figures(0, 0, 0));
}

#[test]
fn equality_groups_partition_people() {
    let mut people = vec![
        person("a", PersonRole::User, ServiceType::Homecare, date(2024, 1, 1), None),
        person("b", PersonRole::User, ServiceType::Homecare, date(2024, 1, 1), None),
    ];
    people[0].equality.sex = Some(Sex::Female);
    let tz = london();
    let activity = BTreeMap::new();
    let input = UptakeInput {
        people: &people,
        assignments: &[],
        activity: &activity,
        tz: &tz,
    };
    let report = uptake(&input, date(2024, 4, 1), date(2025, 3, 31), date(2025, 3, 31));
    let sex = report
        .breakdowns
        .iter()
        .find(|b| b.dimension == Dimension::Sex)
        .unwrap();
    let counts: Vec<u64> = sex.rows.iter().map(|r| r.in_year.people).collect();
    assert_eq!(counts, vec![1, 0, 1], "female, male, not recorded");
    assert!(Dimension::Sex.partitions_people());
    assert!(!Dimension::Role.partitions_people());
}
