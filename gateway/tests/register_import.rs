#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The care register imported end to end: `tec-gateway import people|assignments` on a data
//! directory and `POST /api/v1/register/...` on a running gateway. Good files are written in
//! one transaction and re-importing changes nothing; a file with any bad line writes nothing;
//! the uptake report reads what was imported.

mod access_support;

use std::path::Path;
use std::sync::Arc;

use access_support::{Gateway, add_user};
use clap::Parser;
use gateway::cli::import::{ImportArgs, run_import};
use gateway::domain::{Assignment, ResidentId, Timestamp};
use gateway::reports::apply::{RegisterChange, apply_register, prepare_assignments};
use gateway::reports::import::MAX_IMPORT_BYTES;
use gateway::reports::source::uptake_from_store;
use gateway::store::{AccessStore, STORE_FILE_NAME, Store};
use jiff::civil::date;
use protocol::DeviceId;

const PEOPLE: &str = "\
person_id,role,service,start_date,end_date,age_band,sex,ethnicity,disability
P1,user,homecare,2020-01-01,,85+,female,white,yes
P2,user,care_home,2020-02-01,,,,,
P2,carer,carer_support,2020-02-01,,,,,
P3,user,day_care,2020-03-01,2020-12-31,,,,
";

/// Device `dev-9` is in no device record: the register may know it before it reports.
const ASSIGNMENTS: &str = "\
person_id,device_id,from,to
P1,dev-1,2020-01-01,2020-06-30
P2,dev-1,2020-07-01,
P3,dev-9,2020-03-01,2020-12-31
";

#[derive(Debug, Parser)]
struct ImportCli {
    #[command(flatten)]
    args: ImportArgs,
}

/// Runs `tec-gateway import ...` (without the leading `import`).
fn import_cmd(args: &[&str]) -> anyhow::Result<String> {
    let cli = ImportCli::try_parse_from([&["import"], args].concat())?;
    let mut out = Vec::new();
    run_import(&cli.args, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn import_file(data: &Path, what: &str, contents: &[u8]) -> anyhow::Result<String> {
    let file = data.join(format!("{what}-upload.csv"));
    std::fs::write(&file, contents).unwrap();
    import_cmd(&[what, file.to_str().unwrap(), "--data", data.to_str().unwrap()])
}

fn err(result: anyhow::Result<String>) -> String {
    format!("{:#}", result.unwrap_err())
}

fn open(data: &Path) -> Store {
    Store::open(&data.join(STORE_FILE_NAME)).unwrap()
}

fn id(text: &str) -> ResidentId {
    ResidentId::new(text).unwrap()
}

fn device(text: &str) -> DeviceId {
    DeviceId::new(text).unwrap()
}

fn instant(text: &str) -> Timestamp {
    Timestamp::from_jiff(text.parse().unwrap())
}

/// The store's register and assignments, in a comparable form.
fn snapshot(data: &Path) -> (Vec<String>, Vec<Assignment>) {
    let store = open(data);
    let mut people: Vec<String> = store
        .people()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}/{:?}", p.id.as_str(), p.role, p.end))
        .collect();
    people.sort();
    let mut assignments = store.all_assignments().unwrap();
    assignments.sort_by_key(|a| (a.device.as_str().to_owned(), a.from));
    (people, assignments)
}

fn audit_text(store: &Store) -> String {
    store
        .audit_raw()
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| String::from_utf8(bytes).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cli_imports_good_files_once_and_the_uptake_report_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_user(data, "ada", "admin");

    let out = import_file(data, "people", PEOPLE.as_bytes()).unwrap();
    assert_eq!(out.trim(), "people: 4 new or changed records, 0 unchanged");
    let out = import_file(data, "people", PEOPLE.as_bytes()).unwrap();
    assert_eq!(out.trim(), "people: nothing changed (4 records already as in the file)");
    // P3's support ends later: one record changes.
    let changed = PEOPLE.replace(
        "P3,user,day_care,2020-03-01,2020-12-31",
        "P3,user,day_care,2020-03-01,2021-01-31",
    );
    let out = import_file(data, "people", changed.as_bytes()).unwrap();
    assert_eq!(out.trim(), "people: 1 new or changed records, 3 unchanged");

    let out = import_file(data, "assignments", ASSIGNMENTS.as_bytes()).unwrap();
    assert_eq!(out.trim(), "assignments: 3 new or changed records, 0 unchanged");
    let before = snapshot(data);
    let out = import_file(data, "assignments", ASSIGNMENTS.as_bytes()).unwrap();
    assert_eq!(
        out.trim(),
        "assignments: nothing changed (3 records already as in the file)"
    );
    assert_eq!(snapshot(data), before, "a re-import writes nothing");

    // London midnights: 1 July is in summer time (23:00 UTC the day before).
    let (people, assignments) = before;
    assert_eq!(people.len(), 4, "{people:?}");
    assert_eq!(
        assignments[0],
        Assignment {
            device: device("dev-1"),
            resident: id("P1"),
            from: instant("2020-01-01T00:00:00Z"),
            until: Some(instant("2020-06-30T23:00:00Z")),
        }
    );
    assert_eq!(assignments[1].resident, id("P2"));
    assert_eq!(assignments[1].from, instant("2020-06-30T23:00:00Z"));
    assert_eq!(assignments[1].until, None);

    // A re-import may end an open assignment (same device and start: replaced).
    let ended = ASSIGNMENTS.replace("P2,dev-1,2020-07-01,", "P2,dev-1,2020-07-01,2020-11-30");
    let out = import_file(data, "assignments", ended.as_bytes()).unwrap();
    assert_eq!(out.trim(), "assignments: 1 new or changed records, 2 unchanged");

    let store = open(data);
    // dev-9 has no device record: its assignment is stored all the same and counted.
    assert!(store.device(&device("dev-9")).unwrap().is_none());
    let report = uptake_from_store(&store, date(2020, 4, 1), date(2021, 3, 31), date(2021, 3, 31)).unwrap();
    assert_eq!(report.in_year.people, 3, "P2 as user and carer counts once");
    assert_eq!(report.in_year.issued, 3);
    let audit = audit_text(&store);
    assert_eq!(audit.matches("register_imported").count(), 6, "{audit}");
    assert!(
        audit.contains("people: 4 lines") && audit.contains("assignments: 3 lines"),
        "{audit}"
    );
}

#[test]
fn cli_files_with_bad_lines_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_user(data, "ada", "admin");
    let empty = snapshot(data);

    let bad_people = "\
person_id,role,service,start_date,end_date
P1,user,homecare,2020-01-01,
P2,friend,homecare,2020-01-01,
P3,user,homecare,2020-13-01,
P1,user,homecare,2020-01-01,
";
    let e = err(import_file(data, "people", bad_people.as_bytes()));
    assert!(e.contains("line 3: ") && e.contains("friend"), "{e}");
    assert!(e.contains("line 4: ") && e.contains("not a date"), "{e}");
    assert!(e.contains("line 5: duplicate"), "{e}");
    assert!(e.contains("3 bad line(s); nothing was imported"), "{e}");
    assert_eq!(snapshot(data), empty, "the good line 2 was not written either");

    let e = err(import_file(data, "people", b"\x00\x01\x02binary"));
    assert!(e.contains("refused: not a UTF-8 text file"), "{e}");
    assert_eq!(snapshot(data), empty);

    import_file(data, "people", PEOPLE.as_bytes()).unwrap();
    import_file(
        data,
        "assignments",
        b"person_id,device_id,from,to\nP1,dev-1,2020-01-01,2020-06-30\n",
    )
    .unwrap();
    let stored = snapshot(data);
    let bad_assignments = "\
person_id,device_id,from,to
P2,dev-2,2020-01-01,
P9,dev-3,2020-01-01,
P3,dev-2,2020-05-01,2020-05-31
";
    let e = err(import_file(data, "assignments", bad_assignments.as_bytes()));
    assert!(e.contains("line 3: unknown person P9"), "{e}");
    assert!(
        e.contains("line 4: device dev-2 is already assigned over these dates on line 2"),
        "{e}"
    );
    assert_eq!(snapshot(data), stored);
    // Against the stored assignment of dev-1 (P1 until 30 June): 30 June is P1's day.
    let clash = "person_id,device_id,from,to\nP2,dev-4,2020-01-01,\nP2,dev-1,2020-06-30,\n";
    let e = err(import_file(data, "assignments", clash.as_bytes()));
    assert!(
        e.contains("line 3: device dev-1 is already assigned to P1 from 2020-01-01"),
        "{e}"
    );
    assert_eq!(snapshot(data), stored, "dev-4 on line 2 was not written either");
    import_file(
        data,
        "assignments",
        b"person_id,device_id,from,to\nP2,dev-1,2020-07-01,\n",
    )
    .unwrap();

    let e = err(import_cmd(&[
        "people",
        "/no/such/file.csv",
        "--data",
        data.to_str().unwrap(),
    ]));
    assert!(e.contains("cannot open /no/such/file.csv"), "{e}");
    let missing = data.join("not-here");
    let file = data.join("people-upload.csv");
    let e = err(import_cmd(&[
        "people",
        file.to_str().unwrap(),
        "--data",
        missing.to_str().unwrap(),
    ]));
    assert!(e.contains("no data directory"), "{e}");
    assert!(!missing.exists(), "a mistyped --data must not create anything");
}

/// A refusal by the store inside the transaction names the line and leaves the whole import
/// unwritten: here a device assigned through the API mid-morning on the day a line starts
/// (the date check takes the line as replacing it; the store, on instants, refuses).
#[test]
fn a_refusal_at_write_time_aborts_the_whole_import() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_user(data, "ada", "admin");
    import_file(data, "people", PEOPLE.as_bytes()).unwrap();
    let store = open(data);
    let mut txn = store.begin_write().unwrap();
    txn.assign(&Assignment {
        device: device("dev-6"),
        resident: id("P3"),
        from: instant("2020-01-01T09:30:00Z"),
        until: None,
    })
    .unwrap();
    txn.commit().unwrap();

    let known = [id("P1"), id("P2"), id("P3")].into();
    let file = b"person_id,device_id,from,to\nP1,dev-5,2020-01-01,\nP2,dev-6,2020-01-01,\n";
    let change = prepare_assignments(file, &known, &store.all_assignments().unwrap()).unwrap();
    assert!(matches!(&change, RegisterChange::Assignments(lines) if lines.len() == 2));
    let mut store = Arc::new(store);
    let refused = apply_register(&mut store, &change, &[]).unwrap().unwrap_err();
    assert_eq!(refused.line, 3, "{refused:?}");
    assert!(refused.reason.contains("dev-6"), "{refused:?}");
    assert!(
        store.assignments(&device("dev-5")).unwrap().is_empty(),
        "line 2 not written"
    );
    assert_eq!(store.assignments(&device("dev-6")).unwrap().len(), 1);
}

fn csv_headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "text/csv".to_owned()),
        ("Authorization", format!("Bearer {token}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_imports_through_the_writer() {
    let (gw, passwords) = Gateway::start(&[("ada", "admin"), ("olive", "operator")]).await;
    let ada = gw.first_login("ada", &passwords[0], "ada-new-password-1").await;
    let olive = gw.first_login("olive", &passwords[1], "olive-new-password-1").await;
    let people_path = "/api/v1/register/people";
    let assignments_path = "/api/v1/register/assignments";

    let reply = gw.raw("POST", people_path, &csv_headers(&ada), PEOPLE.as_bytes()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), serde_json::json!({"changed": 4, "unchanged": 0}));
    let reply = gw.raw("POST", people_path, &csv_headers(&ada), PEOPLE.as_bytes()).await;
    assert_eq!(reply.json(), serde_json::json!({"changed": 0, "unchanged": 4}));
    let reply = gw
        .raw("POST", assignments_path, &csv_headers(&ada), ASSIGNMENTS.as_bytes())
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), serde_json::json!({"changed": 3, "unchanged": 0}));

    // Bad lines: 400 with each line, nothing written.
    let bad = "person_id,device_id,from,to\nP9,dev-7,2020-01-01,\nP1,dev-1,2020-03-01,\nP1,dev-8,2020-01-01,\n";
    let reply = gw
        .raw("POST", assignments_path, &csv_headers(&ada), bad.as_bytes())
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["bad_lines"], 2, "{body}");
    assert_eq!(body["lines"][0]["line"], 2);
    assert!(
        body["lines"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown person P9")
    );
    assert_eq!(body["lines"][1]["line"], 3);
    assert!(body["error"].as_str().unwrap().contains("nothing was imported"));
    let store = gw.handle().client().store().unwrap();
    assert!(store.assignments(&device("dev-8")).unwrap().is_empty());

    // Not an admin: 403, nothing written.
    let other = "person_id,role,service,start_date,end_date\nP7,user,homecare,2020-01-01,\n";
    let reply = gw
        .raw("POST", people_path, &csv_headers(&olive), other.as_bytes())
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    // Binary: refused whole.
    let reply = gw
        .raw("POST", people_path, &csv_headers(&ada), b"\x89PNG\r\n\x1a\n\x00\x00")
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error().contains("not a UTF-8 text file"), "{reply:?}");
    // Not declared as CSV: 415.
    let json_headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("Authorization", format!("Bearer {ada}")),
    ];
    let reply = gw.raw("POST", people_path, &json_headers, other.as_bytes()).await;
    assert_eq!(reply.status, 415, "{reply:?}");
    assert!(store.people().unwrap().iter().all(|p| p.id.as_str() != "P7"));

    // Larger than the API's usual 16 KiB limit is fine here...
    let mut big = String::from("person_id,role,service,start_date,end_date\n");
    for n in 0..2000 {
        big.push_str(&format!("B{n:05},user,homecare,2020-01-01,\n"));
    }
    assert!(big.len() > 16 * 1024);
    let reply = gw.raw("POST", people_path, &csv_headers(&ada), big.as_bytes()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["changed"], 2000);
    // ...but not on other routes...
    let reply = gw.raw("POST", "/api/v1/residents", &json_headers, big.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    // ...and not beyond the import limit.
    let huge = vec![b'a'; MAX_IMPORT_BYTES + 1];
    let reply = gw.raw("POST", people_path, &csv_headers(&ada), &huge).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.error().contains("file too large"), "{reply:?}");

    let audit = audit_text(&store);
    assert!(audit.contains("\"register_imported\""), "{audit}");
    assert!(
        audit.contains("people: 4 lines") && audit.contains("assignments: 3 lines"),
        "{audit}"
    );
    assert!(audit.contains("people: 2000 lines"), "{audit}");
    assert_eq!(
        audit.matches("register_imported").count(),
        4,
        "refused files are not audited: {audit}"
    );
    let report = uptake_from_store(&*store, date(2020, 4, 1), date(2021, 3, 31), date(2021, 3, 31)).unwrap();
    assert_eq!(report.in_year.people, 2003);
    assert_eq!(report.in_year.issued, 3);
}
