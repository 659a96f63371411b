#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `tec-gateway store export` (the real binary) from a redb store with a realistic history
//! (a demo borough's register, events and alerts; a conflicting copy; alert changes; engine
//! state; a quarantined payload; users with their audit entries) into a private PostgreSQL
//! cluster: every read gives the same answer on both stores and the audit chain verifies.
//! Refused, with nothing written and the lease given back, on a PostgreSQL store that holds
//! anything, and while a gateway leads.

mod access_support;
mod seam_support;
mod store_copy_support;
/// TEC_TEST_STORE is ignored here: picks its stores itself: a redb store exported to a PostgreSQL of its own.
#[path = "store_support/fixed.rs"]
mod store_support;

use std::time::Duration;

use access_support::{T0, user_cmd};
use gateway::access::verify_chain;
use gateway::domain::*;
use gateway::store::postgres::LeaseAttempt;
use gateway::store::*;
use protocol::DeviceId;
use seam_support::{assert_lease_free, connect, pg_config, runtime};
use store_copy_support::{export, press, realistic_store, text};
use testkit::Postgres;

#[test]
fn export_copies_every_read_and_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    realistic_store(&data);
    let server = Postgres::start().unwrap();
    let config = pg_config(dir.path(), &server);

    let out = export(&data, &config);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("of which conflicting copies") && stdout.contains("users"),
        "{stdout}"
    );
    assert!(stdout.contains("login sessions are not copied"), "{stdout}");
    assert_lease_free(&server);

    let redb = Store::open_in_dir(&data).unwrap();
    let runtime = runtime();
    let pg = connect(&runtime, &server, "reader", Duration::from_secs(60));

    let events = redb.events(&EventFilter::default()).unwrap();
    assert!(events.unreadable.is_empty());
    assert!(events.events.len() > 100, "{} events", events.events.len());
    assert_eq!(runtime.block_on(pg.events(&EventFilter::default())).unwrap(), events);
    assert!(
        stdout.contains(&format!("{:<30} {}", "events", events.events.len())),
        "{stdout}"
    );
    let conflicting = EventKey {
        device: DeviceId::new("pnd-exp").unwrap(),
        boot: 1,
        seq: 7,
    };
    let copies = redb.event_copies(&conflicting).unwrap();
    assert_eq!(copies.len(), 2);
    assert_eq!(runtime.block_on(pg.event_copies(&conflicting)).unwrap(), copies);
    // The payload bytes themselves, as received.
    let stored = server
        .psql("SELECT encode(payload, 'hex') FROM events WHERE device = 'pnd-exp' AND copy = 1")
        .unwrap();
    let sent: String = press("pnd-exp", 7, T0 + 60_000, T0 + 70_000)
        .payload
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(stored, sent);

    let alerts = redb.alerts(&AlertFilter::default()).unwrap();
    assert_eq!(runtime.block_on(pg.alerts(&AlertFilter::default())).unwrap(), alerts);
    assert_eq!(
        runtime.block_on(pg.open_alerts()).unwrap(),
        redb.alerts(&AlertFilter {
            open_only: true,
            ..AlertFilter::default()
        })
        .unwrap()
    );
    assert_eq!(redb.last_alert_change_seq().unwrap(), 4);
    assert_eq!(runtime.block_on(pg.last_alert_change_seq()).unwrap(), 4);
    for after in [0, 2, 4, 5] {
        assert_eq!(
            runtime.block_on(pg.alert_changes_since(after, 100)).unwrap(),
            redb.alert_changes_since(after, 100).unwrap(),
            "changes after {after}"
        );
    }
    assert_eq!(
        runtime.block_on(pg.engine_state()).unwrap(),
        redb.engine_state().unwrap()
    );
    assert!(!redb.devices().unwrap().is_empty() && !redb.residents().unwrap().is_empty());
    assert!(!redb.all_assignments().unwrap().is_empty() && !redb.quarantined(None).unwrap().is_empty());
    assert_eq!(runtime.block_on(pg.devices()).unwrap(), redb.devices().unwrap());
    assert_eq!(runtime.block_on(pg.residents()).unwrap(), redb.residents().unwrap());
    assert_eq!(
        runtime.block_on(pg.all_assignments()).unwrap(),
        redb.all_assignments().unwrap()
    );
    let people = redb.people().unwrap();
    assert!(!people.is_empty());
    assert_eq!(runtime.block_on(pg.people()).unwrap(), people);
    assert_eq!(
        runtime.block_on(pg.quarantined(None)).unwrap(),
        redb.quarantined(None).unwrap()
    );

    let users = AccessStore::users(&redb).unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(runtime.block_on(pg.users()).unwrap(), users);
    let raw = AccessStore::audit_raw(&redb).unwrap();
    let head = AccessStore::audit_head(&redb).unwrap();
    assert_eq!(raw.len(), 2);
    let checkpoint = redb.audit_checkpoint().unwrap();
    assert!(checkpoint.is_some());
    assert_eq!(runtime.block_on(pg.audit_checkpoint()).unwrap(), checkpoint);
    let pg_raw = runtime.block_on(pg.audit_raw()).unwrap();
    assert_eq!(pg_raw, raw, "audit entries byte for byte");
    let pg_head = runtime.block_on(pg.audit_head()).unwrap();
    assert_eq!(pg_head, head);
    let report = verify_chain(&pg_raw, checkpoint.as_ref(), pg_head.as_ref());
    assert_eq!((report.first_break, report.entries), (None, 2));

    // The activity as counted on ingest, the redelivery included.
    let (first, last) = (jiff::civil::date(2000, 1, 1), jiff::civil::date(2100, 1, 1));
    let totals = redb.delivery_totals(first, last).unwrap();
    assert_eq!(totals.1, 1);
    assert_eq!(runtime.block_on(pg.delivery_totals(first, last)).unwrap(), totals);
    let devices: std::collections::BTreeSet<DeviceId> =
        events.events.iter().map(|read| read.event.key.device).collect();
    assert_eq!(
        runtime.block_on(pg.device_days(&devices, first, last)).unwrap(),
        redb.device_days(&devices, first, last).unwrap()
    );

    // Exporting again would merge: refused, nothing more written, the lease given back.
    drop(redb);
    let again = export(&data, &config);
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM events").unwrap(),
        events.events.len().to_string()
    );
    assert_lease_free(&server);
}

#[test]
fn export_refuses_a_store_in_use_and_a_leading_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    realistic_store(&data);

    // A PostgreSQL store that already has a user (a first administrator added there).
    let used = Postgres::start().unwrap();
    let used_dir = tempfile::tempdir().unwrap();
    let used_config = pg_config(used_dir.path(), &used);
    user_cmd(&[
        "add",
        "root",
        "--role",
        "admin",
        "--config",
        used_config.to_str().unwrap(),
    ])
    .unwrap();
    let out = export(&data, &used_config);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not empty (rows in: users, audit_log, audit_head)"),
        "{stderr}"
    );
    assert_eq!(used.psql("SELECT count(*) FROM events").unwrap(), "0");
    assert_eq!(used.psql("SELECT count(*) FROM users").unwrap(), "1");
    assert_eq!(used.psql("SELECT count(*) FROM audit_log").unwrap(), "1");
    assert_lease_free(&used);

    // An empty store on which a gateway leads: refused, its lease untouched.
    let server = Postgres::start().unwrap();
    let config = pg_config(dir.path(), &server);
    let runtime = runtime();
    let mut leader = connect(&runtime, &server, "gateway-a", Duration::from_secs(60));
    assert!(matches!(
        runtime.block_on(leader.acquire_lease()).unwrap(),
        LeaseAttempt::Acquired(_)
    ));
    let out = export(&data, &config);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("gateway-a holds the writer lease") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(server.psql("SELECT count(*) FROM events").unwrap(), "0");
    assert_eq!(
        server.psql("SELECT holder, epoch FROM tec_leader_lease").unwrap(),
        "gateway-a|1"
    );

    // Once the gateway has stopped, the export goes through.
    runtime.block_on(leader.release_lease()).unwrap();
    let out = export(&data, &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_lease_free(&server);
}
