#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The register and resident changes of the writer's core on both stores: the same device
//! registrations, resident records, assignment changes, care-register imports, responder
//! calls and follow-ups through `Core` on redb and on PostgreSQL (a private cluster) give the
//! same results, refusals included, and leave the same registers and alerts behind, read
//! through `ReadStore`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::alerts::{EngineConfig, Resolution};
use gateway::domain::*;
use gateway::reports::apply::{known_people, prepare_assignments, prepare_people};
use gateway::reports::register::PersonRecord;
use gateway::store::{PgBlocking, ReadStore, Store, WriteStore};
use gateway::writer::core::AssignmentChange;
use gateway::writer::{Core, OperatorError, Received};
use protocol::{AlarmKind, DeviceId, MAX_UPLINK_LEN, Uplink, UplinkBody, UplinkHeader, encode_uplink};
use testkit::Postgres;

mod seam_support;

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn alarm(device: &str, seq: u32, at: i64) -> Received {
    let mut buf = [0u8; MAX_UPLINK_LEN];
    let header = UplinkHeader {
        boot: 1,
        seq,
        device_time_ms: None,
    };
    let body = UplinkBody::Alarm(AlarmKind::PendantPress);
    let bytes = encode_uplink(&Uplink::new(header, body), &mut buf).unwrap().to_vec();
    Received {
        topic: Bytes::from(format!("tec/v1/dev/{device}/up")),
        payload: bytes.into(),
        retained: false,
        received_at: Timestamp(at),
    }
}

fn resident(id: &str, name: &str, responders: &[&str]) -> Resident {
    Resident {
        id: res(id),
        display_name: name.into(),
        address: "1 High Street".into(),
        access_notes: "key safe 1234".into(),
        responders: responders
            .iter()
            .map(|name| Responder {
                name: (*name).into(),
                phone: "01632 960000".into(),
                relationship: "neighbour".into(),
            })
            .collect(),
        care: CareProfile::default(),
    }
}

fn lent(device: &str, resident: &str, from: i64) -> Assignment {
    Assignment {
        device: dev(device),
        resident: res(resident),
        from: Timestamp(from),
        until: None,
    }
}

const PEOPLE: &str = "\
person_id,role,service,start_date,end_date,age_band,sex,ethnicity,disability
P1,user,homecare,2020-01-01,,85+,female,white,yes
P2,user,care_home,2020-02-01,,,,,
P2,carer,carer_support,2020-02-01,,,,,
";

const PEOPLE_AGAIN: &str = "\
person_id,role,service,start_date,end_date,age_band,sex,ethnicity,disability
P1,user,homecare,2020-01-01,2021-03-31,85+,female,white,yes
P2,user,care_home,2020-02-01,,,,,
";

const ASSIGNMENTS: &str = "\
person_id,device_id,from,to
P1,pnd-7,2020-01-01,2020-06-30
P2,pnd-7,2020-07-01,
P2,pnd-8,2020-03-01,2020-12-31
";

/// Every register change the core makes, with its result (as text: refusals compared too);
/// `reads` gives the store's read side, which the import checks its file against.
fn scenario<S: WriteStore>(core: &mut Core<S>, reads: fn(&S) -> &dyn ReadStore) -> Vec<String> {
    let mut results = Vec::new();
    let mut note = |what: &str, result: String| results.push(format!("{what}: {result}"));

    let pendant = DeviceRecord::new(dev("pnd-1"), DeviceKind::Pendant, true);
    note(
        "register",
        format!(
            "{:?}",
            core.register_device(pendant.clone(), Some(lent("pnd-1", "res-1", 0)))
        ),
    );
    note(
        "create",
        format!("{:?}", core.create_resident(&resident("res-1", "Ann", &["Bob"]))),
    );
    note(
        "create taken",
        format!("{:?}", core.create_resident(&resident("res-1", "Someone else", &[]))),
    );
    note(
        "put",
        format!(
            "{:?}",
            core.put_resident(&resident("res-1", "Ann Smith", &["Bob", "Cath"]))
        ),
    );
    note(
        "create second",
        format!("{:?}", core.create_resident(&resident("res-2", "Dan", &["Eve", "Fay"]))),
    );
    // What ingest learns about the device survives its registration again.
    let first = core.ingest(&[alarm("pnd-1", 1, 1_000)], Timestamp(1_000));
    note("ingest", format!("{first:?}"));
    note(
        "register again",
        format!("{:?}", core.register_device(pendant, Some(lent("pnd-1", "res-1", 0)))),
    );

    note(
        "end",
        format!(
            "{:?}",
            core.change_assignment(AssignmentChange::End {
                device: dev("pnd-1"),
                at: Timestamp(5_000),
            })
        ),
    );
    note(
        "end again",
        format!(
            "{:?}",
            core.change_assignment(AssignmentChange::End {
                device: dev("pnd-1"),
                at: Timestamp(5_000),
            })
        ),
    );
    note(
        "assign",
        format!(
            "{:?}",
            core.change_assignment(AssignmentChange::Assign(lent("pnd-1", "res-2", 5_000)))
        ),
    );
    note(
        "assign overlapping",
        format!(
            "{:?}",
            core.change_assignment(AssignmentChange::Assign(lent("pnd-1", "res-1", 6_000)))
        ),
    );

    // An alarm now alerts for the second resident; the operator calls her responders.
    let raised = core.ingest(&[alarm("pnd-1", 2, 6_000)], Timestamp(6_000));
    note("alarm", format!("{raised:?}"));
    let alert = raised
        .unwrap()
        .alerts
        .iter()
        .find(|change| change.resident == Some(res("res-2")))
        .expect("an alert for res-2")
        .id;
    note(
        "call",
        format!(
            "{:?}",
            core.record_responder_call(alert, "op-1", 1, CallOutcome::WillAttend, Timestamp(7_000))
        ),
    );
    note(
        "call nobody",
        format!(
            "{:?}",
            core.record_responder_call(alert, "op-1", 5, CallOutcome::WillAttend, Timestamp(7_100))
        ),
    );
    let resolution = Resolution {
        follow_up: Some("call back tomorrow".into()),
        ..Resolution::new(Outcome::FalseAlarm)
    };
    note(
        "resolve",
        format!(
            "{:?}",
            core.operator(Timestamp(8_000), |engine| engine.resolve_with(
                alert,
                "op-1",
                &resolution,
                Timestamp(8_000)
            ))
        ),
    );
    // Resolved: the engine no longer holds it, so it is read in the transaction.
    note(
        "follow-up done",
        format!(
            "{:?}",
            core.follow_up_done(alert, "op-2", Some("spoke to Dan"), Timestamp(9_000))
        ),
    );
    note(
        "follow-up of no alert",
        format!(
            "{:?}",
            core.follow_up_done(AlertId(999), "op-2", None, Timestamp(9_100))
        ),
    );

    // The care register: people, the same file again, a changed one, then assignments
    // checked against what the store holds.
    for file in [PEOPLE, PEOPLE, PEOPLE_AGAIN] {
        let change = prepare_people(file.as_bytes()).unwrap();
        note("people", format!("{:?}", core.import_register(&change)));
    }
    let known = known_people(&reads(core.store()).people().unwrap());
    let stored = reads(core.store()).all_assignments().unwrap();
    let change = prepare_assignments(ASSIGNMENTS.as_bytes(), &known, &stored).unwrap();
    note("assignments", format!("{:?}", core.import_register(&change)));
    note("assignments again", format!("{:?}", core.import_register(&change)));
    results
}

/// The registers and the alert as a store holds them after the scenario.
#[derive(Debug, PartialEq)]
struct Registers {
    device: Option<DeviceRecord>,
    devices: Vec<DeviceRecord>,
    resident: Option<Resident>,
    residents: Vec<Resident>,
    assignments: Vec<Assignment>,
    all_assignments: Vec<Assignment>,
    people: Vec<PersonRecord>,
}

fn registers(store: &dyn ReadStore) -> Registers {
    Registers {
        device: store.device(&dev("pnd-1")).unwrap(),
        devices: store.devices().unwrap(),
        resident: store.resident(&res("res-1")).unwrap(),
        residents: store.residents().unwrap(),
        assignments: store.assignments(&dev("pnd-1")).unwrap(),
        all_assignments: store.all_assignments().unwrap(),
        people: store.people().unwrap(),
    }
}

#[test]
fn register_changes_go_alike_on_redb_and_postgres() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(Store::open_in_dir(dir.path()).unwrap());
    let mut on_redb = Core::open(redb.clone(), EngineConfig::default(), Timestamp(0)).unwrap();
    let redb_results = scenario(&mut on_redb, |store: &Arc<Store>| &**store);

    let pg = seam_support::leading_store(&runtime, &server, "gw-register", Duration::from_secs(60));
    let writer = PgBlocking::new(pg, runtime.handle().clone());
    let mut on_postgres = Core::open(writer, EngineConfig::default(), Timestamp(0)).unwrap();
    let postgres_results = scenario(&mut on_postgres, |store: &PgBlocking| store);

    // The scenario did what it says on redb (today's store), so the comparison means something.
    let said = |what: &str| -> &str {
        redb_results
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{what}: ")))
            .unwrap_or_else(|| panic!("no {what} in {redb_results:#?}"))
    };
    assert_eq!(said("register"), "Ok(())");
    assert_eq!(said("create"), "Ok(true)");
    assert_eq!(said("create taken"), "Ok(false)");
    assert_eq!(said("end"), "Ok(())");
    assert!(
        said("end again").starts_with("Err(NoActiveAssignment"),
        "{}",
        said("end again")
    );
    assert_eq!(said("assign"), "Ok(())");
    assert!(
        said("assign overlapping").starts_with("Err(OverlappingAssignment"),
        "{}",
        said("assign overlapping")
    );
    assert!(
        said("call").contains("Fay"),
        "the second responder's name is copied: {}",
        said("call")
    );
    assert!(
        said("call nobody").starts_with("Err(NoSuchResponder"),
        "{}",
        said("call nobody")
    );
    assert!(
        said("follow-up done").contains("FollowUpDone"),
        "{}",
        said("follow-up done")
    );
    assert!(
        said("follow-up of no alert").contains("UnknownAlert"),
        "{}",
        said("follow-up of no alert")
    );
    let imports: Vec<&String> = redb_results
        .iter()
        .filter(|line| line.starts_with("people: "))
        .collect();
    assert_eq!(
        imports,
        [
            "people: Ok(Ok(ImportCounts { changed: 3, unchanged: 0 }))",
            "people: Ok(Ok(ImportCounts { changed: 0, unchanged: 3 }))",
            "people: Ok(Ok(ImportCounts { changed: 1, unchanged: 1 }))",
        ]
    );
    assert_eq!(said("assignments"), "Ok(Ok(ImportCounts { changed: 3, unchanged: 0 }))");
    assert_eq!(
        said("assignments again"),
        "Ok(Ok(ImportCounts { changed: 0, unchanged: 3 }))"
    );

    assert_eq!(postgres_results, redb_results);

    let in_redb = registers(&*redb);
    let in_postgres = registers(on_postgres.store());
    let kept = in_redb.device.as_ref().unwrap();
    assert!(kept.registered && kept.last_seen.is_some(), "{kept:?}");
    assert_eq!(in_redb.resident.as_ref().unwrap().display_name, "Ann Smith");
    assert_eq!(in_redb.residents.len(), 2);
    assert_eq!(
        in_redb
            .assignments
            .iter()
            .map(|a| (a.resident.as_str(), a.until))
            .collect::<Vec<_>>(),
        [("res-1", Some(Timestamp(5_000))), ("res-2", None)]
    );
    assert_eq!(in_redb.all_assignments.len(), 5);
    assert_eq!(in_redb.people.len(), 3);
    assert_eq!(in_postgres, in_redb);

    // The alert, resolved with its follow-up done, and the change log alike.
    let pg = on_postgres.store().store();
    let alerts_in_redb: Vec<Option<Alert>> = (1..=3).map(|id| redb.alert(AlertId(id)).unwrap()).collect();
    let alerts_in_postgres: Vec<Option<Alert>> = (1..=3)
        .map(|id| runtime.block_on(pg.alert(AlertId(id))).unwrap())
        .collect();
    assert!(alerts_in_redb.iter().flatten().count() >= 2, "{alerts_in_redb:?}");
    assert_eq!(alerts_in_postgres, alerts_in_redb);
    assert_eq!(
        runtime.block_on(pg.last_alert_change_seq()).unwrap(),
        redb.last_alert_change_seq().unwrap()
    );
}

/// A PostgreSQL core whose lease was taken over changes no register: fenced, then not leader.
#[test]
fn a_fenced_postgres_core_changes_no_register() {
    let seam_support::Fenced {
        mut core,
        new,
        taken,
        runtime,
        server: _server,
    } = seam_support::fenced_core(Duration::from_millis(200), Timestamp(0), |core| {
        assert!(core.create_resident(&resident("res-1", "Ann", &["Bob"])).unwrap());
    });
    assert!(taken.epoch > 1);

    let fenced = core.put_resident(&resident("res-1", "Changed", &[]));
    assert!(
        matches!(fenced, Err(gateway::store::StoreError::Fenced { .. })),
        "{fenced:?}"
    );
    let after = core.change_assignment(AssignmentChange::Assign(lent("pnd-1", "res-1", 0)));
    assert!(matches!(after, Err(gateway::store::StoreError::NotLeader)), "{after:?}");
    let not_leader = core.follow_up_done(AlertId(1), "op-1", None, Timestamp(1));
    assert!(
        matches!(
            not_leader,
            Err(OperatorError::Store(gateway::store::StoreError::NotLeader))
        ),
        "{not_leader:?}"
    );
    let kept = runtime.block_on(new.resident(&res("res-1"))).unwrap().unwrap();
    assert_eq!(kept.display_name, "Ann");
    assert!(runtime.block_on(new.all_assignments()).unwrap().is_empty());
}
