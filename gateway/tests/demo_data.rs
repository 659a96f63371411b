//! The demo borough: the uptake report for 2020-21 shows the strategy's figures exactly, the
//! history keeps the store's contracts, the same seed gives the same store, and the KPI report
//! has answer times to show.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use gateway::demo::{DemoConfig, DemoError, write_demo};
use gateway::domain::{AlertState, Change, Timestamp};
use gateway::reports::register::PersonRole;
use gateway::reports::source::{kpi_from_store, uptake_from_store};
use gateway::reports::uptake::{Dimension, UptakeReport};
use gateway::store::{AlertFilter, Store};
use jiff::civil::{Date, date};

const YEAR_START: Date = date(2020, 4, 1);
const YEAR_END: Date = date(2021, 3, 31);

fn midnight(day: Date) -> Timestamp {
    Timestamp::from_jiff(day.in_tz("Europe/London").unwrap().timestamp())
}

/// Thirteen months of history, heartbeats weekly and few sensors so it runs in seconds.
fn small_config(seed: u64) -> DemoConfig {
    let until = date(2021, 4, 30);
    let mut config = DemoConfig::new(seed, until, midnight(until.tomorrow().unwrap()));
    config.heartbeat_every_days = 7;
    config.sensor_share = 0.05;
    config.activity_per_day = 4;
    config
}

fn demo_store(config: &DemoConfig) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let mut last_progress = None;
    write_demo(&store, config, &mut |progress| last_progress = Some(*progress)).unwrap();
    let progress = last_progress.expect("progress reported");
    assert_eq!(progress.days_done, progress.days_total);
    (dir, store)
}

fn year_report(store: &Store) -> UptakeReport {
    uptake_from_store(store, YEAR_START, YEAR_END, YEAR_END).unwrap()
}

fn rows(report: &UptakeReport, dimension: Dimension) -> BTreeMap<String, (u64, u64, u64, u64)> {
    report
        .breakdowns
        .iter()
        .find(|b| b.dimension == dimension)
        .unwrap()
        .rows
        .iter()
        .map(|row| {
            (
                row.group.clone(),
                (
                    row.in_year.people,
                    row.in_year.issued,
                    row.in_year.in_use,
                    row.snapshot.people,
                ),
            )
        })
        .collect()
}

#[test]
fn the_borough_matches_the_strategy_figures_and_keeps_the_store_contracts() {
    let config = small_config(11);
    let (_dir, store) = demo_store(&config);
    let report = year_report(&store);

    // The denominators by service type are the strategy's, exactly.
    let by_service = rows(&report, Dimension::Service);
    let people = |group: &str| by_service[group].0;
    assert_eq!(people("Care home"), 693);
    assert_eq!(people("Homecare"), 2_310);
    assert_eq!(people("Direct payment"), 686);
    assert_eq!(people("Day care"), 640);
    assert_eq!(people("Short-term support / reablement"), 440);
    let carers = people("Carer support");
    assert!((250..=400).contains(&carers), "carers {carers}");
    // 3,974 in long-term care on the year's last day.
    let long_term_at_end: u64 = ["Care home", "Homecare", "Direct payment", "Day care"]
        .iter()
        .map(|group| by_service[*group].3)
        .sum();
    assert_eq!(long_term_at_end, 3_974);

    // Some carers are also users: the total counts them once.
    let by_role = rows(&report, Dimension::Role);
    let (users, carers_by_role) = (by_role["Users of services"].0, by_role["Carers"].0);
    assert_eq!(users, 4_329 + 440);
    assert!(report.in_year.people < users + carers_by_role);
    assert!(report.in_year.people > users);

    // About a quarter issued; most issued devices in use, some silent.
    let issued = report.in_year.issued as f64 / report.in_year.people as f64;
    assert!((0.2..0.3).contains(&issued), "issued share {issued}");
    assert!(report.in_year.in_use < report.in_year.issued);
    assert!(report.in_year.in_use as f64 > 0.85 * report.in_year.issued as f64);

    // Age bands skewed old among users.
    let by_age = rows(&report, Dimension::AgeBand);
    assert!(by_age["85 and over"].0 > by_age["65-74"].0);

    // Contracts: every alert's raising event is stored; every loan's person is a resident with
    // a registered device.
    let alerts = store.alerts(&AlertFilter::default()).unwrap();
    assert!(alerts.len() > 1_000, "{} alerts", alerts.len());
    for alert in &alerts {
        let Change::Raised { event: Some(key) } = &alert.transitions[0].change else {
            panic!("alert {} not raised by an event", alert.id);
        };
        let event = store.event(key).unwrap().expect("the raising event is stored");
        assert_eq!(event.resident, alert.resident);
        assert_eq!(event.received_at, alert.raised_at);
    }
    assert!(
        alerts.windows(2).all(|w| w[0].raised_at <= w[1].raised_at),
        "ids follow time"
    );
    let assignments = store.all_assignments().unwrap();
    assert!(!assignments.is_empty());
    for assignment in &assignments {
        assert!(store.resident(&assignment.resident).unwrap().is_some());
        assert!(store.device(&assignment.device).unwrap().unwrap().registered);
    }
    let people_ids: std::collections::BTreeSet<_> = store.people().unwrap().into_iter().map(|p| p.id).collect();
    assert!(assignments.iter().all(|a| people_ids.contains(&a.resident)));
    assert!(
        store
            .people()
            .unwrap()
            .iter()
            .any(|p| p.role == PersonRole::Carer && p.end.is_none())
    );

    // The KPI report has answer times: mostly within a minute, some late with a reason.
    let kpi = kpi_from_store(&store, YEAR_START, YEAR_END, midnight(date(2021, 5, 1))).unwrap();
    assert!(kpi.answer.answered > 1_000);
    assert!(kpi.answer.median_ms.unwrap() < 60_000);
    assert!(kpi.answer.p95_ms.unwrap() < 180_000);
    let within_60 = kpi.answer.within_60s.share().unwrap();
    assert!((0.93..0.99).contains(&within_60), "within 60 s {within_60}");
    assert!(kpi.answer.within_180s.met < kpi.answer.within_180s.counted);
    assert!(kpi.resident_cancellations > 0);
    let late = alerts
        .iter()
        .filter(|a| a.answer_time_ms().is_some_and(|ms| ms > 180_000) && a.state == AlertState::Resolved);
    for alert in late {
        assert!(
            alert
                .transitions
                .iter()
                .any(|t| matches!(t.change, Change::LateAnswerReason { .. })),
            "late alert {} has a reason",
            alert.id
        );
    }

    // A second run into the same store is refused: nothing is mixed in.
    let again = write_demo(&store, &config, &mut |_| {});
    assert!(matches!(again, Err(DemoError::NotEmpty { .. })), "{again:?}");
}

#[test]
fn the_same_seed_gives_the_same_store() {
    let mut config = small_config(5);
    config.until = date(2020, 7, 31);
    config.cutoff = midnight(date(2020, 8, 1));
    let (_a, first) = demo_store(&config);
    let (_b, second) = demo_store(&config);
    assert_eq!(first.people().unwrap(), second.people().unwrap());
    assert_eq!(first.all_assignments().unwrap(), second.all_assignments().unwrap());
    assert_eq!(first.event_count().unwrap(), second.event_count().unwrap());
    assert_eq!(
        first.alerts(&AlertFilter::default()).unwrap(),
        second.alerts(&AlertFilter::default()).unwrap()
    );
    assert_eq!(year_report(&first), year_report(&second));

    config.seed = 6;
    let (_c, other) = demo_store(&config);
    assert_ne!(first.people().unwrap(), other.people().unwrap());
}
