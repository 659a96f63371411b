#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The manager's reports on both stores: the same care register, assignments, events (across
//! London midnights and the change to summer time, redelivered copies and a reused key),
//! alarms and an operator's answer, through `Core` on redb and on PostgreSQL (a private
//! cluster), give the same uptake and KPI reports, the same per-device daily activity and the
//! same delivery totals, read through `ReadStore`; and the `report` command gives the same
//! answer from `--config` (PostgreSQL) as from `--data` (redb). PostgreSQL's one-off build of
//! the activity table from stored events (migration 5) counts days as the ingest does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use gateway::alerts::{EngineConfig, Resolution};
use gateway::cli::report::{ReportArgs, run};
use gateway::domain::*;
use gateway::reports::apply::{known_people, prepare_assignments, prepare_people};
use gateway::reports::source::{kpi_from_store, uptake_from_store};
use gateway::reports::uptake::ActivityIndex;
use gateway::store::postgres::DEVICE_DAYS_FROM_EVENTS;
use gateway::store::{PgBlocking, ReadStore, Store, WriteStore};
use gateway::writer::{Core, Received};
use jiff::civil::{Date, date};
use protocol::{AlarmKind, DeviceId, MAX_UPLINK_LEN, Uplink, UplinkBody, UplinkHeader, encode_uplink};
use testkit::Postgres;

mod seam_support;

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

/// An instant given in UTC, e.g. "2026-03-28T23:30:00Z".
fn at(utc: &str) -> Timestamp {
    Timestamp::from_jiff(utc.parse().unwrap())
}

fn uplink(device: &str, seq: u32, body: UplinkBody, received_at: Timestamp) -> Received {
    let lane = if matches!(body, UplinkBody::Alarm(_)) {
        "alarm"
    } else {
        "up"
    };
    let mut buf = [0u8; MAX_UPLINK_LEN];
    let header = UplinkHeader {
        boot: 1,
        seq,
        device_time_ms: None,
    };
    let bytes = encode_uplink(&Uplink::new(header, body), &mut buf).unwrap().to_vec();
    Received {
        topic: Bytes::from(format!("tec/v1/dev/{device}/{lane}")),
        payload: bytes.into(),
        retained: false,
        received_at,
    }
}

const PEOPLE: &str = "\
person_id,role,service,start_date,end_date,age_band,sex,ethnicity,disability
P1,user,homecare,2025-01-01,,85+,female,white,yes
P2,user,care_home,2025-02-01,,75-84,,,
P3,user,homecare,2025-01-01,,65-74,,,
P3,carer,carer_support,2025-01-01,,,,,
P4,user,homecare,2025-01-01,2026-05-31,,,,
";

const ASSIGNMENTS: &str = "\
person_id,device_id,from,to
P1,pnd-1,2025-01-01,
P2,pnd-2,2026-03-01,2026-06-30
P3,pnd-3,2025-06-01,
";

/// The whole history, through the writer's core as a gateway would write it.
fn scenario<S: WriteStore>(core: &mut Core<S>, reads: fn(&S) -> &dyn ReadStore) {
    let people = prepare_people(PEOPLE.as_bytes()).unwrap();
    core.import_register(&people).unwrap().unwrap();
    let known = known_people(&reads(core.store()).people().unwrap());
    let stored = reads(core.store()).all_assignments().unwrap();
    let assignments = prepare_assignments(ASSIGNMENTS.as_bytes(), &known, &stored).unwrap();
    core.import_register(&assignments).unwrap().unwrap();

    let march = vec![
        uplink("pnd-2", 1, seam_support::heartbeat(1), at("2026-03-15T10:00:00Z")),
        // 23:30 GMT: still the 28th in London.
        uplink("pnd-1", 1, seam_support::heartbeat(1), at("2026-03-28T23:30:00Z")),
        // 23:30 UTC on the 29th is 00:30 BST on the 30th: no event on the 29th.
        uplink("pnd-1", 2, seam_support::heartbeat(2), at("2026-03-29T23:30:00Z")),
        uplink("pnd-9", 1, seam_support::heartbeat(1), at("2026-03-29T23:45:00Z")),
    ];
    core.ingest(&march, at("2026-03-29T23:46:00Z")).unwrap();
    // Redelivered whole (a lost PUBACK): copies counted, nothing stored twice.
    core.ingest(&march, at("2026-03-29T23:50:00Z")).unwrap();

    let pressed = at("2026-04-10T09:00:00Z");
    let press = core
        .ingest(
            &[uplink("pnd-1", 3, UplinkBody::Alarm(AlarmKind::PendantPress), pressed)],
            pressed,
        )
        .unwrap();
    let alert = press.alerts.first().expect("the press raises an alert").id;
    let answered = at("2026-04-10T09:00:40Z");
    core.operator(answered, |engine| engine.acknowledge(alert, "op-1", answered))
        .unwrap();
    let resolved = at("2026-04-10T09:05:00Z");
    core.operator(resolved, |engine| {
        engine.resolve_with(alert, "op-1", &Resolution::new(Outcome::FalseAlarm), resolved)
    })
    .unwrap();

    let later = vec![
        // The key of an earlier heartbeat with other content: kept as a second copy.
        uplink("pnd-1", 1, seam_support::heartbeat(99), at("2026-04-20T12:00:00Z")),
        uplink("pnd-1", 4, seam_support::heartbeat(4), at("2026-04-20T12:00:01Z")),
        // 23:30 UTC on 30 June is 1 July in London, after pnd-2 went back.
        uplink(
            "pnd-2",
            2,
            UplinkBody::Alarm(AlarmKind::Fall),
            at("2026-06-30T23:30:00Z"),
        ),
    ];
    core.ingest(&later, at("2026-06-30T23:30:01Z")).unwrap();
}

/// What the reports read, and the reports themselves, as text.
#[derive(Debug, PartialEq)]
struct Reported {
    activity: ActivityIndex,
    delivery: (u64, u64),
    uptake: String,
    kpi: String,
}

const FROM: Date = date(2026, 3, 1);
const TO: Date = date(2026, 7, 31);

fn reported(store: &dyn ReadStore) -> Reported {
    let devices: BTreeSet<DeviceId> = ["pnd-1", "pnd-2", "pnd-3", "pnd-9"].into_iter().map(dev).collect();
    let uptake = uptake_from_store(store, FROM, date(2026, 4, 30), date(2026, 4, 30)).unwrap();
    let kpi = kpi_from_store(store, FROM, TO, at("2026-08-01T00:00:00Z")).unwrap();
    Reported {
        activity: store.device_days(&devices, FROM, TO).unwrap(),
        delivery: store.delivery_totals(FROM, TO).unwrap(),
        uptake: format!("{uptake:?}"),
        kpi: format!("{kpi:?}"),
    }
}

#[derive(Debug, Parser)]
struct ReportCli {
    #[command(flatten)]
    args: ReportArgs,
}

/// `tec-gateway report ...` (without the leading `report`), its output.
fn report_cmd(args: &[&str]) -> String {
    let cli = ReportCli::try_parse_from([&["report"], args].concat()).unwrap();
    let mut out = Vec::new();
    run(&cli.args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_reports_read_alike_from_redb_and_postgres() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(Store::open_in_dir(dir.path()).unwrap());
    let mut on_redb = Core::open(redb.clone(), EngineConfig::default(), at("2026-03-01T00:00:00Z")).unwrap();
    scenario(&mut on_redb, |store: &Arc<Store>| &**store);

    let pg = seam_support::leading_store(&runtime, &server, "gw-reports", Duration::from_secs(60));
    let writer = PgBlocking::new(pg, runtime.handle().clone());
    let mut on_postgres = Core::open(writer, EngineConfig::default(), at("2026-03-01T00:00:00Z")).unwrap();
    scenario(&mut on_postgres, |store: &PgBlocking| store);

    let in_redb = reported(redb.as_ref());
    let in_postgres = reported(on_postgres.store());

    // The scenario gave the reports something to count, so the comparison means something.
    let pnd_1: Vec<(Date, u32, u32)> = in_redb.activity[&dev("pnd-1")]
        .iter()
        .map(|(day, activity)| (*day, activity.events, activity.duplicates))
        .collect();
    assert_eq!(
        pnd_1,
        [
            (date(2026, 3, 28), 1, 1),
            (date(2026, 3, 30), 1, 1),
            (date(2026, 4, 10), 1, 0),
            // The reused key's second copy is a stored event.
            (date(2026, 4, 20), 2, 0),
        ]
    );
    let pnd_2: Vec<Date> = in_redb.activity[&dev("pnd-2")].keys().copied().collect();
    assert_eq!(pnd_2, [date(2026, 3, 15), date(2026, 7, 1)]);
    assert!(in_redb.activity[&dev("pnd-3")].is_empty());
    assert_eq!(in_redb.delivery, (8, 4));
    // The press, the fall and the reused key (a technical alert); the press answered in 40 s.
    assert!(
        in_redb.uptake.contains("people: 4, issued: 3, in_use: 2"),
        "{}",
        in_redb.uptake
    );
    assert!(in_redb.kpi.contains("alerts: 3"), "{}", in_redb.kpi);
    assert_eq!(in_postgres, in_redb);

    // The command line: `--config` reads PostgreSQL beside the leading writer (no lease).
    let config = seam_support::pg_config(dir.path(), &server);
    let config = config.to_str().unwrap();
    let uptake = [
        "uptake",
        "--from",
        "2026-03-01",
        "--to",
        "2026-04-30",
        "--format",
        "json",
    ];
    let from_postgres = report_cmd(&[&uptake[..], &["--config", config]].concat());
    drop(on_redb);
    drop(redb);
    let from_redb = report_cmd(&[&uptake[..], &["--data", dir.path().to_str().unwrap()]].concat());
    assert!(from_redb.contains("\"in_use\""), "{from_redb}");
    assert_eq!(from_postgres, from_redb);

    // Migration 5 built the table from the stored events of an older database: the same days
    // as the ingest counts (redelivered copies were never stored, so they start at 0).
    let kept = in_postgres.activity;
    server
        .psql(&format!("DELETE FROM device_days; {DEVICE_DAYS_FROM_EVENTS}"))
        .unwrap();
    let devices: BTreeSet<DeviceId> = kept.keys().copied().collect();
    let built = on_postgres.store().device_days(&devices, FROM, TO).unwrap();
    let without_copies: ActivityIndex = kept
        .into_iter()
        .map(|(device, days)| {
            let days = days
                .into_iter()
                .map(|(day, mut activity)| {
                    activity.duplicates = 0;
                    (day, activity)
                })
                .collect();
            (device, days)
        })
        .collect();
    assert_eq!(built, without_copies);
}
