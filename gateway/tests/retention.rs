//! Retention with an injected clock: what is past its period is compacted or purged, what is
//! inside it is untouched (exact counts), open alerts stay, the audit chain still verifies,
//! an erasure leaves an audit entry without names, reports agree before and after
//! compaction, a dry run changes nothing, and bad periods are configuration errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use gateway::access::verify_chain;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use gateway::config::{BrokerUrl, Config, ConfigError, StoreConfig, StoreKind};
use gateway::demo::{DemoConfig, write_demo};
use gateway::domain::*;
use gateway::reports::register::{Equality, PersonRecord, PersonRole, ServiceType};
use gateway::reports::source::{kpi_from_store, uptake_from_store};
use gateway::retention::{PurgeCounts, RetentionPolicy, purge_offline};
use gateway::store::postgres::{PgStore, PgStoreOptions};
use gateway::store::*;
use jiff::civil::{Date, date};
use protocol::{AlarmKind, DeviceId, SensorState, UplinkBody};

const DAY: i64 = 86_400_000;

fn london(day: Date, hour: i8, minute: i8) -> Timestamp {
    Timestamp::from_jiff(day.at(hour, minute, 0, 0).in_tz("Europe/London").unwrap().timestamp())
}

/// The injected clock: 03:30 London on 15 June 2030.
fn now() -> Timestamp {
    london(date(2030, 6, 15), 3, 30)
}

fn years_ago(years: i16, days_more: i64) -> Timestamp {
    london(date(2030 - years, 6, 15), 3, 30).plus_ms(-days_more * DAY)
}

fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn event(device: &str, seq: u32, at: Timestamp, resident: Option<&str>, body: UplinkBody) -> NewEvent {
    NewEvent::from_event(StoredEvent {
        key: EventKey {
            device: dev(device),
            boot: 1,
            seq,
        },
        resident: resident.map(res),
        received_at: at,
        device_time: None,
        protocol_version: 1,
        body: EventBody::Uplink(body),
    })
    .unwrap()
}

fn sensor() -> UplinkBody {
    UplinkBody::SensorChange {
        input: 1,
        state: SensorState::DoorOpen,
    }
}

fn press() -> UplinkBody {
    UplinkBody::Alarm(AlarmKind::PendantPress)
}

/// An alert raised at `raised`, resolved at `resolved` if given (else open).
fn alert(id: u64, resident: &str, raised: Timestamp, resolved: Option<Timestamp>) -> Alert {
    let mut transitions = vec![Transition {
        at: raised,
        change: Change::Raised { event: None },
    }];
    if let Some(at) = resolved {
        transitions.push(Transition {
            at,
            change: Change::Resolved {
                operator: Some("olive".into()),
                outcome: Outcome::FalseAlarm,
                note: None,
            },
        });
    }
    Alert {
        id: AlertId(id),
        kind: AlertKind::PendantPress,
        priority: Priority::LifeSafety,
        state: if resolved.is_some() {
            AlertState::Resolved
        } else {
            AlertState::Raised
        },
        resident: Some(res(resident)),
        device: Some(dev("pnd-1")),
        unregistered_device: false,
        raised_at: raised,
        late_by_ms: None,
        escalation_level: 0,
        transitions,
        affected_devices: Vec::new(),
    }
}

fn person(id: &str, end: Option<Date>) -> PersonRecord {
    PersonRecord {
        id: res(id),
        role: PersonRole::User,
        service: ServiceType::Homecare,
        start: date(2015, 1, 1),
        end,
        equality: Equality::default(),
    }
}

fn resident(id: &str, name: &str) -> Resident {
    Resident {
        id: res(id),
        display_name: name.into(),
        address: "1 Secret Street".into(),
        access_notes: "key safe 1234".into(),
        responders: Vec::new(),
        care: CareProfile::default(),
    }
}

fn audit(at: Timestamp, action: &str, resident: Option<&str>) -> AuditDraft {
    AuditDraft {
        at,
        username: "olive".into(),
        role: None,
        action: action.into(),
        resident: resident.map(res),
        target: None,
        client: None,
    }
}

fn quarantined(at: Timestamp) -> QuarantineRecord {
    QuarantineRecord {
        received_at: at,
        topic: "tec/v1/dev/x/up".into(),
        payload: vec![0xff],
        original_len: 1,
        reason: RejectReason::Malformed,
        detail: "test".into(),
    }
}

/// A store with data on both sides of every period:
/// - pnd-1 (resident STAYS, in care): 3 sensor events 100 days ago and 2 ten days ago; an alarm
///   100 days ago and one 9 years ago;
/// - alerts of STAYS: resolved 9 years ago (goes), resolved 7 years ago (stays), open since 9
///   years ago (stays);
/// - GONE: care and loan ended 9 years ago, resident record with a name, 4 events, 1 alert;
/// - ALERTED: care ended 9 years ago but an alert of theirs is open: kept whole;
/// - audit: 3 entries 11 years ago, 2 last year;
/// - quarantine: 2 payloads 100 days ago, 1 yesterday.
fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let mut batch = store.begin_write().unwrap();
    let recent = now().plus_ms(-10 * DAY);
    let old = now().plus_ms(-100 * DAY);
    let ancient = years_ago(9, 0);
    batch
        .insert_events(&[
            event("pnd-1", 1, old, Some("STAYS"), sensor()),
            event("pnd-1", 2, old.plus_ms(1), Some("STAYS"), sensor()),
            event("pnd-1", 3, old.plus_ms(1), Some("STAYS"), sensor()),
            event("pnd-1", 4, old.plus_ms(2), Some("STAYS"), press()),
            event("pnd-1", 5, recent, Some("STAYS"), sensor()),
            event("pnd-1", 6, recent.plus_ms(5), Some("STAYS"), sensor()),
            event("pnd-1", 7, ancient, Some("STAYS"), press()),
            event("pnd-2", 1, ancient.plus_ms(-DAY), Some("GONE"), press()),
            event("pnd-2", 2, ancient.plus_ms(-DAY), Some("GONE"), sensor()),
            event("pnd-2", 3, old, Some("GONE"), sensor()),
            event("pnd-2", 4, recent, Some("GONE"), sensor()),
        ])
        .unwrap();
    batch
        .put_alert(&alert(1, "STAYS", years_ago(9, 2), Some(years_ago(9, 1))))
        .unwrap();
    batch
        .put_alert(&alert(2, "STAYS", years_ago(7, 2), Some(years_ago(7, 1))))
        .unwrap();
    batch.put_alert(&alert(3, "STAYS", years_ago(9, 3), None)).unwrap();
    batch
        .put_alert(&alert(4, "GONE", years_ago(9, 5), Some(years_ago(9, 4))))
        .unwrap();
    batch.put_alert(&alert(5, "ALERTED", years_ago(9, 5), None)).unwrap();
    batch
        .upsert_people(&[
            person("STAYS", None),
            person("GONE", Some(date(2021, 1, 1))),
            person("ALERTED", Some(date(2021, 1, 1))),
        ])
        .unwrap();
    batch.put_resident(&resident("STAYS", "Stay Person")).unwrap();
    batch.put_resident(&resident("GONE", "Ada Secret")).unwrap();
    batch.put_resident(&resident("ALERTED", "Al Erted")).unwrap();
    batch
        .assign(&Assignment {
            device: dev("pnd-1"),
            resident: res("STAYS"),
            from: years_ago(10, 0),
            until: None,
        })
        .unwrap();
    batch
        .assign(&Assignment {
            device: dev("pnd-2"),
            resident: res("GONE"),
            from: years_ago(12, 0),
            until: Some(years_ago(9, 200)),
        })
        .unwrap();
    batch.quarantine(&quarantined(old)).unwrap();
    batch.quarantine(&quarantined(old.plus_ms(1))).unwrap();
    batch.quarantine(&quarantined(now().plus_ms(-DAY))).unwrap();
    batch.commit().unwrap();
    store
        .apply_access(&AccessChange {
            ops: Vec::new(),
            audit: vec![
                audit(years_ago(11, 3), "read_resident", Some("STAYS")),
                audit(years_ago(11, 2), "read_resident", Some("GONE")),
                audit(years_ago(11, 1), "logout", None),
                audit(years_ago(1, 0), "read_resident", Some("STAYS")),
                audit(years_ago(1, -1), "logout", None),
            ],
        })
        .unwrap()
        .unwrap();
    (dir, store)
}

fn chain_intact(store: &Store) -> (bool, u64, Option<u64>) {
    let report = verify_chain(
        &store.audit_raw().unwrap(),
        store.audit_checkpoint().unwrap().as_ref(),
        store.audit_head().unwrap().as_ref(),
    );
    assert!(report.intact, "{:?}", report.first_break);
    (report.intact, report.entries, report.starts_after)
}

fn event_keys(store: &Store, filter: &EventFilter) -> Vec<String> {
    store
        .events(filter)
        .unwrap()
        .events
        .iter()
        .map(|read| read.event.key.to_string())
        .collect()
}

fn alert_ids(store: &Store) -> Vec<u64> {
    store
        .alerts(&AlertFilter::default())
        .unwrap()
        .iter()
        .map(|a| a.id.0)
        .collect()
}

fn purge(store: &Store, dry_run: bool) -> PurgeCounts {
    let mut batches = 0;
    let counts = purge_offline(store, &small_batches(), now(), dry_run, &mut |_| batches += 1).unwrap();
    assert_eq!(batches, counts.batches);
    counts
}

/// The defaults with the smallest batch, so every class takes several transactions.
fn small_batches() -> RetentionPolicy {
    RetentionPolicy {
        batch_size: 100,
        ..RetentionPolicy::default()
    }
}

#[test]
fn what_is_past_its_period_goes_and_everything_inside_it_stays() {
    let (_dir, store) = seeded();
    let counts = purge(&store, false);
    assert_eq!(
        (
            counts.telemetry_events,
            counts.alarm_events,
            counts.alerts,
            counts.quarantine,
            counts.audit_entries,
            counts.people_erased,
        ),
        // Telemetry: the 3 old sensor events of pnd-1 and 2 of pnd-2 (compaction runs before
        // the erasure). Alarm events: the presses of 9 years ago on both. Alerts: 1, and 4 of
        // GONE. Audit: the 3 entries of 11 years ago.
        (5, 2, 2, 2, 3, 1)
    );
    // Events: what is inside its period, exactly.
    assert_eq!(
        event_keys(&store, &EventFilter::default()),
        ["pnd-1/1/4", "pnd-1/1/5", "pnd-1/1/6"]
    );
    assert_eq!(store.event_count().unwrap(), 3);
    // The resident index has lost the same keys as the events table.
    assert_eq!(
        event_keys(
            &store,
            &EventFilter {
                resident: Some(res("STAYS")),
                ..EventFilter::default()
            }
        ),
        ["pnd-1/1/4", "pnd-1/1/5", "pnd-1/1/6"]
    );
    assert!(
        event_keys(
            &store,
            &EventFilter {
                resident: Some(res("GONE")),
                ..EventFilter::default()
            }
        )
        .is_empty()
    );
    // Alerts: the open ones stay however old, the one resolved 7 years ago stays.
    assert_eq!(alert_ids(&store), [2, 3, 5]);
    assert_eq!(store.alert(AlertId(2)).unwrap().unwrap().transitions.len(), 2);
    let by_resident = |id: &str| {
        store
            .alerts(&AlertFilter {
                resident: Some(res(id)),
                ..AlertFilter::default()
            })
            .unwrap()
            .len()
    };
    assert_eq!(
        (by_resident("STAYS"), by_resident("GONE"), by_resident("ALERTED")),
        (2, 0, 1)
    );
    // Quarantine: the one from yesterday.
    assert_eq!(store.quarantine_len().unwrap(), 1);
    // People: GONE erased whole; ALERTED (open alert) and STAYS untouched.
    let people: Vec<String> = store.people().unwrap().iter().map(|p| p.id.to_string()).collect();
    assert_eq!(people, ["ALERTED", "STAYS"]);
    assert!(store.resident(&res("GONE")).unwrap().is_none());
    assert!(store.resident(&res("ALERTED")).unwrap().is_some());
    assert!(store.assignments(&dev("pnd-2")).unwrap().is_empty());
    assert_eq!(store.assignments(&dev("pnd-1")).unwrap().len(), 1);

    // The audit chain verifies from the checkpoint: 2 old entries kept + erasure + purge.
    let (_, entries, starts_after) = chain_intact(&store);
    assert_eq!((entries, starts_after), (4, Some(3)));
    let raw = store.audit_raw().unwrap();
    let text: Vec<String> = raw
        .iter()
        .map(|(_, bytes)| String::from_utf8(bytes.clone()).unwrap())
        .collect();
    let erased: Vec<&String> = text.iter().filter(|t| t.contains("person_erased")).collect();
    assert_eq!(erased.len(), 1);
    assert!(erased[0].contains("\"resident\":\"GONE\""), "{}", erased[0]);
    // What was left of GONE: the recent sensor event; people, resident and loan records.
    assert!(
        erased[0].contains("erased events 1, alerts 0, records 3"),
        "{}",
        erased[0]
    );
    for secret in ["Ada Secret", "Secret Street", "key safe"] {
        assert!(text.iter().all(|t| !t.contains(secret)), "{secret} in the audit log");
    }
    assert!(text.last().unwrap().contains("retention_purged"));

    // A second run finds nothing more, and writes no audit entry.
    let again = purge(&store, false);
    assert!(again.is_empty(), "{again}");
    assert_eq!(chain_intact(&store).1, 4);
}

#[test]
fn a_dry_run_counts_exactly_what_a_run_removes_and_changes_nothing() {
    let (dir, store) = seeded();
    let events_before = store.event_count().unwrap();
    let raw_before = store.audit_raw().unwrap();
    let dry = purge(&store, true);
    assert_eq!(store.event_count().unwrap(), events_before);
    assert_eq!(store.audit_raw().unwrap(), raw_before);
    assert_eq!(alert_ids(&store), [1, 2, 3, 4, 5]);
    assert_eq!(store.quarantine_len().unwrap(), 3);
    assert_eq!(store.people().unwrap().len(), 3);
    assert!(store.audit_checkpoint().unwrap().is_none());
    drop(store);
    let store = Store::open_in_dir(dir.path()).unwrap();
    assert_eq!(store.event_count().unwrap(), events_before);
    let real = purge(&store, false);
    assert_eq!(
        PurgeCounts {
            batches: 0,
            ..dry.clone()
        },
        PurgeCounts { batches: 0, ..real }
    );
    assert!(!dry.is_empty());
}

#[test]
fn the_audit_chain_check_still_catches_a_removed_entry_after_a_purge() {
    let (_dir, store) = seeded();
    purge(&store, false);
    let mut raw = store.audit_raw().unwrap();
    let checkpoint = store.audit_checkpoint().unwrap();
    let head = store.audit_head().unwrap();
    raw.remove(0);
    let report = verify_chain(&raw, checkpoint.as_ref(), head.as_ref());
    assert!(!report.intact);
    assert_eq!(report.first_break.unwrap().seq, 4);
    // Without the checkpoint, the purged start shows as missing entries.
    let report = verify_chain(&store.audit_raw().unwrap(), None, head.as_ref());
    assert!(!report.intact);
}

/// Thirteen months of demo history (weekly heartbeats, few sensors), as in `demo_data.rs`.
fn demo_store() -> (tempfile::TempDir, Store) {
    let until = date(2021, 4, 30);
    let cutoff = london(until.tomorrow().unwrap(), 0, 0);
    let mut config = DemoConfig::new(7, until, cutoff);
    config.heartbeat_every_days = 7;
    config.sensor_share = 0.05;
    config.activity_per_day = 4;
    config.people_scale = 0.2;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    write_demo(&store, &config, &mut |_| {}).unwrap();
    (dir, store)
}

#[test]
fn uptake_and_kpi_reports_agree_before_and_after_compaction() {
    let (_dir, store) = demo_store();
    let (from, to) = (date(2020, 4, 1), date(2021, 3, 31));
    let later = london(date(2021, 9, 1), 3, 30);
    let uptake_before = uptake_from_store(&store, from, to, to).unwrap();
    let kpi_before = kpi_from_store(&store, from, to, later).unwrap();
    let events_before = store.event_count().unwrap();
    let alerts_before = alert_ids(&store).len();

    // September 2021: every raw telemetry event (all before May) is past 90 days.
    let counts = purge_offline(&store, &RetentionPolicy::default(), later, false, &mut |_| {}).unwrap();
    assert!(counts.telemetry_events > 1000, "{counts}");
    assert_eq!((counts.alarm_events, counts.alerts, counts.people_erased), (0, 0, 0));
    assert_eq!(store.event_count().unwrap(), events_before - counts.telemetry_events);
    assert_eq!(alert_ids(&store).len(), alerts_before);

    assert_eq!(uptake_from_store(&store, from, to, to).unwrap(), uptake_before);
    assert_eq!(kpi_from_store(&store, from, to, later).unwrap(), kpi_before);
    assert!(kpi_before.delivery.events_stored > 0);
}

fn config_error(toml: &str) -> String {
    match Config::from_toml(toml, Path::new("gateway.toml")) {
        Err(ConfigError::Invalid { field, message }) => format!("{field}: {message}"),
        Err(other) => other.to_string(),
        Ok(_) => panic!("accepted: {toml}"),
    }
}

#[test]
fn bad_retention_values_are_clear_configuration_errors() {
    let cases = [
        (
            "[retention]\nalert_years = 0",
            "retention.alert_years: must be from 1 to 100 years, not 0",
        ),
        ("[retention]\ntelemetry_days = 0", "retention.telemetry_days"),
        (
            "[retention]\naudit_years = 5",
            "retention.audit_years: the audit is kept longest",
        ),
        (
            "[retention]\nalert_years = 1\ntelemetry_days = 400",
            "alerts (1 years) would be kept shorter than raw telemetry (400 days)",
        ),
        ("[retention]\nrun_at = \"3.30\"", "retention.run_at"),
        ("[retention]\nquarantine_days = -5", "quarantine_days"),
        ("[retention]\nkeep_forever = true", "keep_forever"),
    ];
    for (toml, expected) in cases {
        let message = config_error(toml);
        assert!(message.contains(expected), "{toml:?} gave {message:?}");
    }
}

#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_purges_daily_at_the_configured_london_time_through_its_writer() {
    let (dir, store) = seeded();
    drop(store);
    let clock = Arc::new(ManualClock(AtomicI64::new(now().plus_ms(-60_000).as_millis())));
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    // Nobody listens there: the broker connection retries in the background.
    config.mqtt.broker = BrokerUrl::parse("mqtt://127.0.0.1:9").unwrap();
    config.retention.batch_size = 100;
    let handle = gateway::app::spawn(config, clock.clone()).await.unwrap();
    let client = handle.client();
    let events = || client.store().unwrap().event_count().unwrap();
    // GONE still has a rule in the alert engine: the erasure must leave no engine state.
    let rules = gateway::alerts::ResidentRules {
        bed_return_within_min: Some(30),
        movement_expected_by: None,
    };
    client.set_resident_rules(res("GONE"), rules).await.unwrap();
    let engine_keys = || -> Vec<String> {
        client
            .store()
            .unwrap()
            .engine_state()
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| key.contains("GONE"))
            .collect()
    };
    assert_eq!(engine_keys(), ["rules/GONE"]);
    // A minute before 03:30 nothing happens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(events(), 11);
    clock.0.fetch_add(120_000, Ordering::SeqCst);
    let mut waited = 0;
    while client.store().unwrap().people().unwrap().len() != 2 || events() != 3 {
        assert!(waited < 150, "the purge did not run: {} events", events());
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // The purge's own audit entry comes last; wait for it, then check the chain.
    let store = client.store().unwrap();
    let mut waited = 0;
    while !String::from_utf8(store.audit_raw().unwrap().last().unwrap().1.clone())
        .unwrap()
        .contains("retention_purged")
    {
        assert!(waited < 100, "no purge audit entry");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    chain_intact(&store);
    assert_eq!(alert_ids(&store), [2, 3, 5]);
    assert!(engine_keys().is_empty(), "{:?}", engine_keys());
    assert!(store.resident(&res("GONE")).unwrap().is_none());
    let metrics = client.metrics_text();
    for line in [
        "tec_retention_removed_total{class=\"telemetry_events\"} 5",
        "tec_retention_removed_total{class=\"alerts\"} 2",
        "tec_retention_removed_total{class=\"audit_entries\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    drop(store);
    handle.shutdown().await.unwrap();
}

#[test]
fn the_purge_command_prints_counts_per_batch_and_a_dry_run_says_would() {
    let (dir, store) = seeded();
    drop(store);
    let clock = ManualClock(AtomicI64::new(now().as_millis()));
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.retention.batch_size = 100;
    let mut out = Vec::new();
    let counts = gateway::cli::purge::run(&config, true, &clock, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, counts.batches + 1, "{text}");
    assert!(
        lines[0].starts_with("batch 1: telemetry events 5, alarm events 2"),
        "{text}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("retention purge would remove: telemetry events 5"),
        "{text}"
    );
    let mut out = Vec::new();
    gateway::cli::purge::run(&config, false, &clock, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("retention purge removed: telemetry events 5, alarm events 2, alerts 2"),
        "{text}"
    );
}

/// The same history on PostgreSQL (exported from a seeded redb store), purged by a leading
/// gateway's daily run through its fenced writer, ends as the redb store purged offline does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_postgres_purges_what_redb_purges() {
    let (_reference_dir, reference) = seeded();
    purge(&reference, false);
    let (_source_dir, source) = seeded();
    let server = tokio::task::block_in_place(testkit::Postgres::start).unwrap();
    let mut pg_config = StoreConfig {
        kind: StoreKind::Postgres,
        postgres_url: Some(server.connection_string("postgres")),
        lease_s: 3,
        ..StoreConfig::default()
    };
    {
        let mut target = PgStore::connect(
            &pg_config.postgres_config().unwrap(),
            PgStoreOptions::new("export", Duration::from_secs(30)),
        )
        .await
        .unwrap();
        target.acquire_lease().await.unwrap();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(gateway::store::postgres::export_redb(&source, &mut target))
        })
        .unwrap();
        target.release_lease().await.unwrap();
    }
    drop(source);

    let clock = Arc::new(ManualClock(AtomicI64::new(now().plus_ms(-60_000).as_millis())));
    let data = tempfile::tempdir().unwrap();
    pg_config.holder = Some("gw-retention".into());
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        store: pg_config,
        ..Config::default()
    };
    config.mqtt.broker = BrokerUrl::parse("mqtt://127.0.0.1:9").unwrap();
    config.retention.batch_size = 100;
    let handle = gateway::app::spawn(config, clock.clone()).await.unwrap();
    let client = handle.client();
    let rules = gateway::alerts::ResidentRules {
        bed_return_within_min: Some(30),
        movement_expected_by: None,
    };
    client.set_resident_rules(res("GONE"), rules).await.unwrap();
    clock.0.fetch_add(120_000, Ordering::SeqCst);
    let reads = client.reads().unwrap();
    let mut waited = 0;
    while !String::from_utf8(reads.audit_raw().unwrap().last().unwrap().1.clone())
        .unwrap()
        .contains("retention_purged")
    {
        assert!(
            waited < 150,
            "the purge did not run: {} events",
            reads.event_count().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }

    let keys = |store: &dyn ReadStore| -> Vec<String> {
        let page = store.events(&EventFilter::default()).unwrap();
        page.events.iter().map(|read| read.event.key.to_string()).collect()
    };
    let ids = |store: &dyn ReadStore| -> Vec<u64> {
        store
            .alerts(&AlertFilter::default())
            .unwrap()
            .iter()
            .map(|a| a.id.0)
            .collect()
    };
    assert_eq!(keys(&*reads), keys(&reference));
    assert_eq!(keys(&reference).len(), 3, "the reference purged something");
    assert_eq!(ids(&*reads), ids(&reference));
    assert_eq!(reads.people().unwrap(), reference.people().unwrap());
    assert_eq!(reads.residents().unwrap(), reference.residents().unwrap());
    assert_eq!(reads.all_assignments().unwrap(), reference.all_assignments().unwrap());
    assert_eq!(reads.quarantine_len().unwrap(), reference.quarantine_len().unwrap());
    assert!(reads.resident(&res("GONE")).unwrap().is_none());
    // The chain verifies from the same checkpoint on both.
    let report = verify_chain(
        &reads.audit_raw().unwrap(),
        reads.audit_checkpoint().unwrap().as_ref(),
        reads.audit_head().unwrap().as_ref(),
    );
    assert!(report.intact, "{:?}", report.first_break);
    assert_eq!(report.starts_after, chain_intact(&reference).2);
    assert!(report.starts_after.is_some());
    // The erasure left no engine state behind.
    let state = server
        .psql("SELECT count(*) FROM engine_state WHERE key LIKE '%GONE%'")
        .unwrap();
    assert_eq!(state, "0");
    handle.shutdown().await.unwrap();
}
