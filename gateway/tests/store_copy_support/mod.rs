//! Shared by the `store export` and `store import` tests: the real binary, a configuration
//! file naming a private PostgreSQL cluster, and a redb store with a realistic history (a demo
//! borough's register, events and alerts; a conflicting copy; alert changes; engine state; a
//! quarantined payload; users with their audit entries, the oldest purged to a checkpoint).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::access_support::{T0, add_user, user_cmd};
use crate::seam_support::pg_config;
use gateway::demo::{DemoConfig, write_demo};
use gateway::domain::*;
use gateway::store::*;
use protocol::{AlarmKind, DeviceId, UplinkBody};
use testkit::Postgres;

pub fn tec_gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tec-gateway"))
        .args(args)
        .env_remove("TEC_GATEWAY_CONFIG")
        .output()
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn export(data: &Path, config: &Path) -> Output {
    store_cmd("export", data, config)
}

pub fn import(config: &Path, data: &Path) -> Output {
    store_cmd("import", data, config)
}

fn store_cmd(command: &str, data: &Path, config: &Path) -> Output {
    tec_gateway(&[
        "store",
        command,
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
}

/// A realistic redb store in `dir/original`, exported to a new PostgreSQL cluster: the
/// store's directory, the cluster and a configuration file naming it.
pub fn exported_store(dir: &Path) -> (PathBuf, Postgres, PathBuf) {
    let original = dir.join("original");
    std::fs::create_dir(&original).unwrap();
    realistic_store(&original);
    let server = Postgres::start().unwrap();
    let config = pg_config(dir, &server);
    let out = export(&original, &config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (original, server, config)
}

pub fn press(device: &str, seq: u32, device_time_ms: i64, received_ms: i64) -> NewEvent {
    NewEvent::from_event(StoredEvent {
        key: EventKey {
            device: DeviceId::new(device).unwrap(),
            boot: 1,
            seq,
        },
        resident: None,
        received_at: Timestamp(received_ms),
        device_time: Some(Timestamp(device_time_ms)),
        protocol_version: 1,
        body: EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)),
    })
    .unwrap()
}

/// A redb store in `data` with a demo borough and what the demo does not write.
pub fn realistic_store(data: &Path) {
    {
        let store = Store::open_in_dir(data).unwrap();
        let mut config = DemoConfig::new(7, jiff::civil::date(2020, 6, 30), Timestamp(T0));
        config.people_scale = 0.01;
        write_demo(&store, &config, &mut |_| {}).unwrap();

        let mut batch = store.begin_write().unwrap();
        // A reused key with other content: kept as copy 1.
        let outcomes = batch
            .insert_events(&[
                press("pnd-exp", 7, T0, T0 + 5),
                press("pnd-exp", 7, T0 + 60_000, T0 + 70_000),
            ])
            .unwrap();
        assert_eq!(outcomes[1], InsertOutcome::Conflict { copy: 1 });
        // A redelivery: nothing stored, counted in the device's day.
        let outcomes = batch.insert_events(&[press("pnd-exp", 7, T0, T0 + 80_000)]).unwrap();
        assert_eq!(outcomes, [InsertOutcome::Duplicate]);
        // The alert-change log: the demo's alerts as they are now, one of them twice.
        let alerts = store.alerts(&AlertFilter::default()).unwrap();
        assert!(alerts.len() >= 3, "the demo raised {} alerts", alerts.len());
        assert!(alerts.iter().any(|alert| alert.transitions.len() > 1));
        for alert in alerts.iter().take(3).chain(alerts.first()) {
            batch.record_alert_change(alert, Timestamp(T0 + 100_000)).unwrap();
        }
        batch.put_engine_state("export-test", Some(&[1, 2, 3, 0xff])).unwrap();
        batch
            .quarantine(&QuarantineRecord {
                received_at: Timestamp(T0 + 1),
                topic: "tec/v1/dev/pnd-exp/up".to_owned(),
                payload: vec![0xde, 0xad],
                original_len: 2,
                reason: RejectReason::ForeignTopic,
                detail: "export test".to_owned(),
            })
            .unwrap();
        batch.commit().unwrap();
    }
    // Users and their audit entries, made as an administrator makes them.
    add_user(data, "ada", "admin");
    add_user(data, "olive", "operator");
    user_cmd(&["disable", "olive", "--data", data.to_str().unwrap()]).unwrap();
    // The retention purge removed the oldest audit entry: the chain starts at a checkpoint.
    let store = Store::open_in_dir(data).unwrap();
    let mut batch = store.begin_write().unwrap();
    let far = Timestamp(i64::MAX);
    batch.purge_audit(far, Timestamp(T0 + 200_000), 1).unwrap();
    batch.commit().unwrap();
    assert_eq!(
        store.audit_checkpoint().unwrap().map(|checkpoint| checkpoint.seq),
        Some(1)
    );
}
