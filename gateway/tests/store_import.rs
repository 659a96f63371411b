#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `tec-gateway store import` (the real binary): a private PostgreSQL cluster copied into a new
//! redb store. A redb store exported to PostgreSQL and imported back reads the same as the
//! original, event payloads and audit entries byte for byte (and exports again to the same
//! rows); data written on PostgreSQL by a leading store reads the same once imported. Refused,
//! with nothing written in the data directory and the lease given back, for a directory whose
//! store holds data, while a gateway leads, without a reachable PostgreSQL, and for a row that
//! cannot be read.

mod access_support;
mod seam_support;
mod store_copy_support;
/// TEC_TEST_STORE is ignored here: picks its stores itself: a PostgreSQL of its own imported into redb.
#[path = "store_support/fixed.rs"]
mod store_support;

use std::path::Path;
use std::time::Duration;

use access_support::{T0, user_cmd};
use gateway::domain::*;
use gateway::store::*;
use jiff::civil::date;
use protocol::DeviceId;
use seam_support::{assert_lease_free, connect, leading_store, pg_config, runtime};
use store_copy_support::{export, exported_store, import, press, realistic_store, tec_gateway, text};
use testkit::Postgres;

/// Wide enough for every day the tests' events fall on.
const FIRST_DAY: jiff::civil::Date = date(2000, 1, 1);
const LAST_DAY: jiff::civil::Date = date(2100, 1, 1);

/// Every device that has events, for the activity reads.
fn every_device(store: &Store) -> std::collections::BTreeSet<DeviceId> {
    let events = store.events(&EventFilter::default()).unwrap().events;
    events.iter().map(|read| read.event.key.device).collect()
}

/// Everything a redb store answers, for comparing two of them.
#[derive(Debug, PartialEq)]
struct Reads {
    events: EventPage,
    event_count: u64,
    alert_page: AlertPage,
    alerts: Vec<Alert>,
    open_alerts: Vec<Alert>,
    max_alert_id: Option<AlertId>,
    last_alert_change_seq: u64,
    alert_changes: AlertChangesSince,
    engine_state: Vec<(String, Vec<u8>)>,
    devices: Vec<DeviceRecord>,
    residents: Vec<Resident>,
    assignments: Vec<Assignment>,
    people: Vec<gateway::reports::register::PersonRecord>,
    quarantine: Vec<QuarantineRecord>,
    users: Vec<UserRecord>,
    audit: Vec<(u64, Vec<u8>)>,
    audit_head: Option<AuditHead>,
    audit_checkpoint: Option<AuditCheckpoint>,
    /// (events stored, redelivered copies) over every day.
    delivery_totals: (u64, u64),
    device_days: gateway::reports::uptake::ActivityIndex,
}

fn reads(store: &Store) -> Reads {
    let query = AlertQuery {
        limit: MAX_ALERT_PAGE,
        ..AlertQuery::default()
    };
    let reads = Reads {
        events: store.events(&EventFilter::default()).unwrap(),
        event_count: store.event_count().unwrap(),
        alert_page: ReadStore::alert_page(store, &query).unwrap(),
        alerts: store.alerts(&AlertFilter::default()).unwrap(),
        open_alerts: store.open_alerts().unwrap(),
        max_alert_id: store.max_alert_id().unwrap(),
        last_alert_change_seq: store.last_alert_change_seq().unwrap(),
        alert_changes: store.alert_changes_since(0, MAX_ALERT_CHANGES_PAGE).unwrap(),
        engine_state: store.engine_state().unwrap(),
        devices: store.devices().unwrap(),
        residents: store.residents().unwrap(),
        assignments: store.all_assignments().unwrap(),
        people: store.people().unwrap(),
        quarantine: store.quarantined(None).unwrap(),
        users: AccessStore::users(store).unwrap(),
        audit: AccessStore::audit_raw(store).unwrap(),
        audit_head: AccessStore::audit_head(store).unwrap(),
        audit_checkpoint: store.audit_checkpoint().unwrap(),
        delivery_totals: store.delivery_totals(FIRST_DAY, LAST_DAY).unwrap(),
        device_days: store.device_days(&every_device(store), FIRST_DAY, LAST_DAY).unwrap(),
    };
    assert_eq!(store.unreadable_count(), 0, "{:?}", store.unreadable());
    reads
}

/// Every table's rows as text, in key order, for comparing two PostgreSQL stores.
fn pg_rows(server: &Postgres) -> Vec<String> {
    [
        "SELECT device, boot, seq, copy, received_at_ms, resident, encode(payload, 'hex') FROM events ORDER BY 1, 2, 3, 4",
        "SELECT id, header, open, resident FROM alerts ORDER BY id",
        "SELECT alert_id, idx, transition FROM alert_transitions ORDER BY 1, 2",
        "SELECT seq, committed_at_ms, alert FROM alert_changes ORDER BY seq",
        "SELECT name, value FROM tec_counters ORDER BY name",
        "SELECT key, encode(value, 'hex') FROM engine_state ORDER BY key",
        "SELECT id, record FROM devices ORDER BY id",
        "SELECT device, from_ms, record FROM assignments ORDER BY 1, 2",
        "SELECT id, record FROM residents ORDER BY id",
        "SELECT id, role, record FROM people ORDER BY 1, 2",
        "SELECT seq, encode(record, 'hex') FROM quarantine ORDER BY seq",
        "SELECT username, record FROM users ORDER BY username",
        "SELECT seq, resident, encode(entry, 'hex') FROM audit_log ORDER BY seq",
        "SELECT name, record FROM audit_head ORDER BY name",
        "SELECT device, day, first_ms, last_ms, events, duplicates FROM device_days ORDER BY 1, 2",
    ]
    .iter()
    .map(|sql| server.psql(sql).unwrap())
    .collect()
}

fn audit_verifies(data: &Path) {
    let out = tec_gateway(&["audit", "verify", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

/// The data directory holds nothing the import made (no store, no partial file).
fn assert_nothing_written(data: &Path) {
    let names: Vec<_> = match std::fs::read_dir(data) {
        Ok(entries) => entries.map(|entry| entry.unwrap().file_name()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(names.is_empty(), "the import left {names:?} in {}", data.display());
}

#[test]
fn a_redb_store_exported_and_imported_back_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (original, server, config) = exported_store(dir.path());

    // Into a directory that does not exist yet.
    let imported = dir.path().join("imported");
    let out = import(&config, &imported);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("imported the PostgreSQL store into"), "{stdout}");
    assert!(stdout.contains("login sessions are not copied"), "{stdout}");
    assert_lease_free(&server);
    let files: Vec<_> = std::fs::read_dir(&imported)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [STORE_FILE_NAME], "only the store, no partial file");

    let before = Store::open_in_dir(&original).unwrap();
    let after = Store::open_in_dir(&imported).unwrap();
    let expected = reads(&before);
    assert!(expected.events.events.len() > 100 && expected.alerts.len() >= 3);
    // Counted on ingest, not from the events: the redelivery is only known from the count.
    assert_eq!(expected.delivery_totals.1, 1);
    assert!(!expected.people.is_empty() && !expected.quarantine.is_empty() && expected.users.len() == 2);
    assert_eq!(expected.last_alert_change_seq, 4);
    assert!(expected.audit_checkpoint.is_some() && expected.audit.len() == 2);
    assert!(
        stdout.contains(&format!("{:<30} {}", "events", expected.events.events.len())),
        "{stdout}"
    );
    assert_eq!(reads(&after), expected);
    let conflicting = EventKey {
        device: DeviceId::new("pnd-exp").unwrap(),
        boot: 1,
        seq: 7,
    };
    assert_eq!(after.event_copies(&conflicting).unwrap().len(), 2);
    assert_eq!(
        after.event_copies(&conflicting).unwrap(),
        before.event_copies(&conflicting).unwrap()
    );
    for after_seq in [0, 2, 4, 5] {
        assert_eq!(
            after.alert_changes_since(after_seq, 100).unwrap(),
            before.alert_changes_since(after_seq, 100).unwrap(),
            "changes after {after_seq}"
        );
    }
    drop((before, after));
    audit_verifies(&imported);

    // The payloads themselves: exported again, the imported store gives the same rows.
    let again = Postgres::start().unwrap();
    let again_dir = tempfile::tempdir().unwrap();
    let out = export(&imported, &pg_config(again_dir.path(), &again));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pg_rows(&again), pg_rows(&server));
}

#[test]
fn data_written_on_postgres_reads_the_same_once_imported() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    realistic_store(&source);
    let source = Store::open_in_dir(&source).unwrap();
    let server = Postgres::start().unwrap();
    let config = pg_config(dir.path(), &server);
    let runtime = runtime();

    // A leading gateway's store writes through its own write paths: ingest (a reused key
    // becomes copy 1), alerts and their change log, the registers, the quarantine.
    let mut leader = leading_store(&runtime, &server, "gateway-a", Duration::from_secs(60));
    runtime.block_on(async {
        let mut batch = leader.begin_write().await.unwrap();
        let events: Vec<NewEvent> = source
            .events(&EventFilter::default())
            .unwrap()
            .events
            .into_iter()
            .filter(|read| read.copy == 0 && read.event.key.device.as_str() != "pnd-exp")
            .map(|read| NewEvent::from_event(read.event).unwrap())
            .collect();
        batch.insert_events(&events).await.unwrap();
        let reused = batch
            .insert_events(&[
                press("pnd-exp", 7, T0, T0 + 5),
                press("pnd-exp", 7, T0 + 60_000, T0 + 70_000),
            ])
            .await
            .unwrap();
        assert_eq!(reused, [InsertOutcome::Inserted, InsertOutcome::Conflict { copy: 1 }]);
        // A redelivery: receipted again, nothing stored.
        let again = batch
            .insert_events(&[press("pnd-exp", 7, T0, T0 + 90_000)])
            .await
            .unwrap();
        assert_eq!(again, [InsertOutcome::Duplicate]);
        for alert in source.alerts(&AlertFilter::default()).unwrap() {
            batch.put_alert(&alert).await.unwrap();
            batch.record_alert_change(&alert, alert.raised_at).await.unwrap();
        }
        batch.put_engine_state("pg-test", Some(&[9, 8, 7])).await.unwrap();
        let devices = source.devices().unwrap();
        batch.put_devices(&devices.iter().collect::<Vec<_>>()).await.unwrap();
        for assignment in source.all_assignments().unwrap() {
            batch.assign(&assignment).await.unwrap();
        }
        for resident in source.residents().unwrap() {
            batch.put_resident(&resident).await.unwrap();
        }
        batch.upsert_people(&source.people().unwrap()).await.unwrap();
        for record in source.quarantined(None).unwrap().iter().rev() {
            batch.quarantine(record).await.unwrap();
        }
        assert!(batch.commit().await.is_committed());
        leader.release_lease().await.unwrap();
    });
    // Users and their audit entries, made by an administrator on PostgreSQL.
    for (name, role) in [("ada", "admin"), ("olive", "operator")] {
        user_cmd(&["add", name, "--role", role, "--config", config.to_str().unwrap()]).unwrap();
    }
    user_cmd(&["disable", "olive", "--config", config.to_str().unwrap()]).unwrap();
    // The leading gateway's retention purge removes the oldest audit entry.
    let mut leader = leading_store(&runtime, &server, "gateway-a", Duration::from_secs(60));
    runtime.block_on(async {
        let mut batch = leader.begin_write().await.unwrap();
        batch
            .purge_audit(Timestamp(i64::MAX), Timestamp(T0 + 200_000), 1)
            .await
            .unwrap();
        assert!(batch.commit().await.is_committed());
        leader.release_lease().await.unwrap();
    });

    let data = dir.path().join("imported");
    std::fs::create_dir(&data).unwrap();
    let out = import(&config, &data);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_lease_free(&server);
    let imported = Store::open_in_dir(&data).unwrap();
    let redb = reads(&imported);
    let pg = connect(&runtime, &server, "reader", Duration::from_secs(60));
    runtime.block_on(async {
        assert_eq!(pg.events(&EventFilter::default()).await.unwrap(), redb.events);
        assert_eq!(pg.event_count().await.unwrap(), redb.event_count);
        assert!(redb.events.events.iter().any(|read| read.copy == 1));
        assert_eq!(
            pg.alert_page(&AlertQuery {
                limit: MAX_ALERT_PAGE,
                ..AlertQuery::default()
            })
            .await
            .unwrap(),
            redb.alert_page
        );
        assert_eq!(pg.alerts(&AlertFilter::default()).await.unwrap(), redb.alerts);
        assert_eq!(pg.open_alerts().await.unwrap(), redb.open_alerts);
        assert_eq!(pg.max_alert_id().await.unwrap(), redb.max_alert_id);
        assert_eq!(pg.last_alert_change_seq().await.unwrap(), redb.last_alert_change_seq);
        assert!(redb.last_alert_change_seq >= 3);
        assert_eq!(
            pg.alert_changes_since(0, MAX_ALERT_CHANGES_PAGE).await.unwrap(),
            redb.alert_changes
        );
        assert_eq!(pg.engine_state().await.unwrap(), redb.engine_state);
        assert_eq!(pg.devices().await.unwrap(), redb.devices);
        assert_eq!(pg.residents().await.unwrap(), redb.residents);
        assert_eq!(pg.all_assignments().await.unwrap(), redb.assignments);
        assert_eq!(pg.people().await.unwrap(), redb.people);
        assert_eq!(pg.quarantined(None).await.unwrap(), redb.quarantine);
        assert_eq!(pg.users().await.unwrap(), redb.users);
        assert_eq!(redb.users.len(), 2);
        assert_eq!(pg.audit_raw().await.unwrap(), redb.audit, "audit entries byte for byte");
        assert_eq!(pg.audit_head().await.unwrap(), redb.audit_head);
        assert_eq!(pg.audit_checkpoint().await.unwrap(), redb.audit_checkpoint);
        assert_eq!(
            pg.delivery_totals(FIRST_DAY, LAST_DAY).await.unwrap(),
            redb.delivery_totals
        );
        assert_eq!(redb.delivery_totals.1, 1, "the redelivery counted on PostgreSQL");
        let devices = every_device(&imported);
        assert_eq!(
            pg.device_days(&devices, FIRST_DAY, LAST_DAY).await.unwrap(),
            redb.device_days
        );
    });
    assert_eq!(redb.audit.len(), 2);
    assert_eq!(redb.audit_checkpoint.as_ref().map(|checkpoint| checkpoint.seq), Some(1));
    drop(imported);
    audit_verifies(&data);
}

#[test]
fn a_directory_whose_store_holds_data_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (data, server, config) = exported_store(dir.path());

    let store_file = data.join(STORE_FILE_NAME);
    let bytes = std::fs::read(&store_file).unwrap();
    let out = import(&config, &data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already holds a store with data (rows in: events,") && stderr.contains("never merges"),
        "{stderr}"
    );
    assert!(std::fs::read(&store_file).unwrap() == bytes, "the store was touched");
    let names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [STORE_FILE_NAME]);
    assert_lease_free(&server);

    // A store with nothing in it (a gateway started once) is replaced.
    let empty = dir.path().join("empty");
    drop(Store::open_in_dir(&empty).unwrap());
    let out = import(&config, &empty);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let imported = Store::open_in_dir(&empty).unwrap();
    assert_eq!(
        imported.event_count().unwrap(),
        Store::open_in_dir(&data).unwrap().event_count().unwrap()
    );
}

#[test]
fn a_leading_gateway_or_an_unreachable_database_refuses_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let server = Postgres::start().unwrap();
    let config = pg_config(dir.path(), &server);
    let runtime = runtime();
    let mut leader = leading_store(&runtime, &server, "gateway-a", Duration::from_secs(60));
    let data = dir.path().join("data");
    let out = import(&config, &data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("gateway-a holds the writer lease") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert!(!data.exists(), "the data directory was made");
    assert_eq!(
        server.psql("SELECT holder, epoch FROM tec_leader_lease").unwrap(),
        "gateway-a|1"
    );
    runtime.block_on(leader.release_lease()).unwrap();

    // A configuration naming redb, and a database nobody serves.
    let redb_config = dir.path().join("redb.toml");
    std::fs::write(&redb_config, "[store]\nkind = \"redb\"\n").unwrap();
    let out = import(&redb_config, &data);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("names a redb store, not PostgreSQL"),
        "{}",
        text(&out.stderr)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = dir.path().join("nowhere.toml");
    std::fs::write(
        &nowhere,
        format!("[store]\nkind = \"postgres\"\npostgres_url = \"postgres://tec@127.0.0.1:{closed}/tec\"\n"),
    )
    .unwrap();
    let out = import(&nowhere, &data);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("connecting to the PostgreSQL store"),
        "{}",
        text(&out.stderr)
    );
    assert!(!data.exists(), "the data directory was made");
}

#[test]
fn a_row_that_cannot_be_read_stops_the_import_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_original, server, config) = exported_store(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();

    // A payload cut short: the event cannot be copied as stored.
    server
        .psql("UPDATE events SET payload = '\\x01'::bytea WHERE device = 'pnd-exp' AND copy = 1")
        .unwrap();
    let out = import(&config, &data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot be copied as stored")
            && stderr.contains("table events, key pnd-exp/1/7 copy 1")
            && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_nothing_written(&data);
    assert_lease_free(&server);

    // A register record that no longer decodes, the event repaired.
    let payload: String = press("pnd-exp", 7, T0 + 60_000, 0)
        .payload
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    server
        .psql(&format!(
            "UPDATE events SET payload = '\\x{payload}'::bytea WHERE device = 'pnd-exp' AND copy = 1"
        ))
        .unwrap();
    let device = server.psql("SELECT min(id) FROM devices").unwrap();
    server
        .psql(&format!(
            "UPDATE devices SET record = '{{\"id\": 5}}' WHERE id = '{device}'"
        ))
        .unwrap();
    let out = import(&config, &data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("table devices, key {device}")), "{stderr}");
    assert_nothing_written(&data);
    assert_lease_free(&server);
}

#[test]
fn the_lease_is_renewed_while_an_import_outlasts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_original, server, _) = exported_store(dir.path());
    // The shortest lease the configuration allows.
    let config = dir.path().join("short-lease.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"postgres\"\npostgres_url = \"{}\"\nlease_s = 3\n",
            server.connection_string("postgres")
        ),
    )
    .unwrap();
    let runtime = runtime();
    // Another session locks a table the import reads, so the import waits for it.
    let (locker, connection) = runtime
        .block_on(
            server
                .connection_string("postgres")
                .parse::<tokio_postgres::Config>()
                .unwrap()
                .connect(tokio_postgres::NoTls),
        )
        .unwrap();
    runtime.spawn(connection);
    runtime
        .block_on(locker.batch_execute("BEGIN; LOCK TABLE alert_changes IN ACCESS EXCLUSIVE MODE"))
        .unwrap();

    let data = dir.path().join("imported");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tec-gateway"))
        .args(["store", "import", "--config", config.to_str().unwrap(), "--data"])
        .arg(&data)
        .env_remove("TEC_GATEWAY_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the import holds the lease, wait twice its length: unrenewed, it would run out.
    while !server
        .psql("SELECT holder FROM tec_leader_lease WHERE expires_at > now()")
        .unwrap()
        .starts_with("tec-gateway-cli-")
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(6));
    let mut standby = connect(&runtime, &server, "gateway-b", Duration::from_secs(3));
    match runtime.block_on(standby.acquire_lease()).unwrap() {
        gateway::store::postgres::LeaseAttempt::HeldBy { holder, .. } => {
            assert!(holder.starts_with("tec-gateway-cli-"), "{holder}");
        }
        taken => panic!("a gateway took the lease during the import: {taken:?}"),
    }
    runtime.block_on(locker.batch_execute("COMMIT")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_lease_free(&server);
    assert!(Store::open_in_dir(&data).unwrap().event_count().unwrap() > 100);
}
