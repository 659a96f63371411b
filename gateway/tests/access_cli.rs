#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `tec-gateway user ...` and `tec-gateway audit verify` offline: bad input, and tampering with
//! the audit log directly in the store (one entry changed, one deleted, the newest removed).

mod access_support;
/// TEC_TEST_STORE is ignored here: redb only, the `--data` commands and a redb audit log altered
/// in place (the `--config` commands on PostgreSQL: `access_cli_postgres.rs`).
#[path = "store_support/fixed.rs"]
mod store_support;

use access_support::{Gateway, add_user, audit_cmd, user_cmd};
use gateway::store::{AccessStore, STORE_FILE_NAME, Store};
use redb::{ReadableDatabase, TableDefinition};

const AUDIT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");

fn err(result: anyhow::Result<String>) -> String {
    format!("{:#}", result.unwrap_err())
}

#[test]
fn user_commands_and_their_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let password = add_user(dir.path(), "ada", "admin");
    assert!(
        password.len() >= 16 && password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );
    assert_ne!(password, add_user(dir.path(), "olive", "operator"));

    let e = err(user_cmd(&["add", "bob", "--role", "root", "--data", data]));
    assert!(e.contains("unknown role \"root\""), "{e}");
    let e = err(user_cmd(&["add", "Bob Smith", "--role", "operator", "--data", data]));
    assert!(e.contains("invalid username") && e.contains("lowercase"), "{e}");
    let e = err(user_cmd(&["add", "ada", "--role", "operator", "--data", data]));
    assert!(e.contains("user ada already exists"), "{e}");
    let missing = dir.path().join("not-here");
    let e = err(user_cmd(&[
        "add",
        "bob",
        "--role",
        "operator",
        "--data",
        missing.to_str().unwrap(),
    ]));
    assert!(e.contains("no data directory"), "{e}");
    assert!(!missing.exists(), "a mistyped --data must not create anything");
    let e = err(user_cmd(&["add", "bob", "--role", "operator"]));
    assert!(e.contains("--data"), "{e}");
    let e = err(user_cmd(&["list", "--data", missing.to_str().unwrap()]));
    assert!(e.contains("no data directory"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = err(user_cmd(&["list", "--data", empty.path().to_str().unwrap()]));
    assert!(e.contains("no gateway store"), "{e}");
    let e = err(user_cmd(&["disable", "nobody", "--data", data]));
    assert!(e.contains("no user nobody"), "{e}");
    let e = err(user_cmd(&["reset", "nobody", "--data", data]));
    assert!(e.contains("no user nobody"), "{e}");

    user_cmd(&["disable", "olive", "--data", data]).unwrap();
    let list = user_cmd(&["list", "--data", data]).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[1].starts_with("ada") && lines[1].contains("admin") && lines[1].contains("active"),
        "{list}"
    );
    assert!(lines[2].starts_with("olive") && lines[2].contains("disabled"), "{list}");
    assert!(!list.contains("argon2") && !list.contains(&password), "{list}");
    let reset = user_cmd(&["reset", "ada", "--data", data]).unwrap();
    assert!(!reset.contains(&password), "{reset}");

    // A running gateway holds the store: said plainly, nothing changed.
    {
        let _running = Store::open_in_dir(dir.path()).unwrap();
        let e = err(user_cmd(&["add", "bob", "--role", "operator", "--data", data]));
        assert!(e.contains("in use") && e.contains("stop the gateway"), "{e}");
    }

    // Every change was audited, and the failures changed nothing.
    let out = audit_cmd(&["verify", "--data", data]).unwrap();
    assert_eq!(out.trim(), "audit chain intact: 4 entries");
    let store = Store::open_in_dir(dir.path()).unwrap();
    assert_eq!(store.users().unwrap().len(), 2);
}

/// A store with a few audit entries, written through the running gateway.
async fn audited() -> Gateway {
    let (gw, passwords) = Gateway::start(&[("mona", "manager")]).await;
    let token = gw.first_login("mona", &passwords[0], "a long enough passphrase").await;
    for _ in 0..3 {
        let reply = gw.call("GET", "/api/v1/audit?resident=R1", Some(&token), None).await;
        assert_eq!(reply.status, 200);
    }
    gw
}

fn with_log(data: &std::path::Path, change: impl FnOnce(&mut redb::Table<u64, &[u8]>)) {
    let db = redb::Database::open(data.join(STORE_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut log = txn.open_table(AUDIT_LOG).unwrap();
        change(&mut log);
    }
    txn.commit().unwrap();
}

fn entry(data: &std::path::Path, seq: u64) -> Vec<u8> {
    let db = redb::Database::open(data.join(STORE_FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let log = txn.open_table(AUDIT_LOG).unwrap();
    log.get(seq).unwrap().unwrap().value().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_entry_is_named() {
    let mut gw = audited().await;
    gw.stop().await;
    let data = gw.dir.path().to_path_buf();
    // user_created, login, password change, then reads of R1 from entry 4.
    assert_eq!(
        audit_cmd(&["verify", "--data", gw.data()]).unwrap().trim(),
        "audit chain intact: 6 entries"
    );
    let original = String::from_utf8(entry(&data, 4)).unwrap();
    assert!(original.contains("\"resident\":\"R1\""), "{original}");
    let forged = original.replace("\"username\":\"mona\"", "\"username\":\"carl\"");
    assert_ne!(forged, original);
    with_log(&data, |log| {
        log.insert(4, forged.as_bytes()).unwrap();
    });
    let e = err(audit_cmd(&["verify", "--data", gw.data()]));
    assert!(
        e.contains("AUDIT CHAIN BROKEN at audit entry 4") && e.contains("altered"),
        "{e}"
    );
    // Bytes that are not even JSON.
    with_log(&data, |log| {
        log.insert(2, &b"\x00garbage"[..]).unwrap();
    });
    let e = err(audit_cmd(&["verify", "--data", gw.data()]));
    assert!(e.contains("audit entry 2") && e.contains("unreadable"), "{e}");
    // The API says the same to a manager (and the gateway keeps appending to the log).
    gw.restart().await;
    let token = gw.login("mona", "a long enough passphrase").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = gw.call("GET", "/api/v1/audit/verify", Some(&token), None).await.json();
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_break"]["seq"], 2, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_is_named() {
    let mut gw = audited().await;
    gw.stop().await;
    let data = gw.dir.path().to_path_buf();
    with_log(&data, |log| {
        log.remove(3).unwrap();
    });
    let e = err(audit_cmd(&["verify", "--data", gw.data()]));
    assert!(e.contains("audit entry 3: missing") && e.contains("deleted"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_newest_entries_is_noticed() {
    let mut gw = audited().await;
    gw.stop().await;
    let data = gw.dir.path().to_path_buf();
    with_log(&data, |log| {
        log.remove(6).unwrap();
        log.remove(5).unwrap();
    });
    let e = err(audit_cmd(&["verify", "--data", gw.data()]));
    assert!(e.contains("audit entry 5: missing") && e.contains("up to 6"), "{e}");
}

#[test]
fn verify_needs_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(audit_cmd(&["verify", "--data", dir.path().to_str().unwrap()]));
    assert!(e.contains("no gateway store"), "{e}");
    assert!(err(audit_cmd(&["verify"])).contains("--data"));
    // A new store has an empty, intact chain.
    Store::open_in_dir(dir.path()).unwrap();
    let out = audit_cmd(&["verify", "--data", dir.path().to_str().unwrap()]).unwrap();
    assert_eq!(out.trim(), "audit chain intact: 0 entries");
}
