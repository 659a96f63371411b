#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `tec-gateway user ...` and `tec-gateway audit verify` with `--config FILE` on a private
//! PostgreSQL cluster: the changes are made under the writer lease and give it back at once;
//! they are refused while a gateway leads (nothing written, the leader's lease untouched),
//! while the reads work beside it. Bad invocations and bad configuration files are refused
//! with a clear error.
//!
//! Synchronous tests: the commands run their own runtime, as `main` runs them.

mod access_support;

mod seam_support;

use seam_support::{assert_lease_free, connect, pg_config, runtime};
use std::time::Duration;

use access_support::{audit_cmd, one_time_password, user_cmd};
use gateway::access::Username;
use gateway::access::password::verify_password;
use gateway::store::postgres::LeaseAttempt;
use testkit::Postgres;

fn err(result: anyhow::Result<String>) -> String {
    format!("{:#}", result.unwrap_err())
}

fn audit_entries(server: &Postgres) -> String {
    server.psql("SELECT count(*) FROM audit_log").unwrap()
}

#[test]
fn user_and_audit_commands_on_postgres() {
    let server = Postgres::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = pg_config(dir.path(), &server);
    let config = config.to_str().unwrap();

    // The first administrator, on a database the gateway never ran on (the schema is made).
    let out = user_cmd(&["add", "ada", "--role", "admin", "--config", config]).unwrap();
    assert!(out.contains("created user ada (admin)"), "{out}");
    let ada_first = one_time_password(&out);
    assert!(
        ada_first.len() >= 16 && ada_first.chars().all(|c| c.is_ascii_alphanumeric()),
        "{ada_first}"
    );
    assert_lease_free(&server);
    // The change was made under the command's own lease, at a new epoch.
    let holder = server.psql("SELECT holder, epoch FROM tec_leader_lease").unwrap();
    assert_eq!(holder, format!("tec-gateway-cli-{}|1", std::process::id()));

    let olive = one_time_password(&user_cmd(&["add", "olive", "--role", "operator", "--config", config]).unwrap());
    assert_ne!(olive, ada_first);
    assert_lease_free(&server);

    // The same refusals as on redb; a refused change writes nothing and gives the lease back.
    let e = err(user_cmd(&["add", "ada", "--role", "operator", "--config", config]));
    assert!(e.contains("user ada already exists"), "{e}");
    assert_lease_free(&server);
    let e = err(user_cmd(&["add", "bob", "--role", "root", "--config", config]));
    assert!(e.contains("unknown role \"root\""), "{e}");
    let e = err(user_cmd(&["disable", "nobody", "--config", config]));
    assert!(e.contains("no user nobody"), "{e}");
    assert_lease_free(&server);
    let e = err(user_cmd(&["reset", "nobody", "--config", config]));
    assert!(e.contains("no user nobody"), "{e}");
    assert_lease_free(&server);
    assert_eq!(audit_entries(&server), "2");

    user_cmd(&["disable", "olive", "--config", config]).unwrap();
    assert_lease_free(&server);
    let reset = user_cmd(&["reset", "ada", "--config", config]).unwrap();
    assert_lease_free(&server);
    let ada_second = one_time_password(&reset);
    assert_ne!(ada_second, ada_first);

    let list = user_cmd(&["list", "--config", config]).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[1].starts_with("ada") && lines[1].contains("admin") && lines[1].contains("active"),
        "{list}"
    );
    assert!(lines[1].contains("one-time"), "{list}");
    assert!(lines[2].starts_with("olive") && lines[2].contains("disabled"), "{list}");
    assert!(!list.contains("argon2") && !list.contains(&ada_second), "{list}");

    // What is stored is what the gateway will check a login against.
    let runtime = runtime();
    let store = connect(&runtime, &server, "reader", Duration::from_secs(60));
    let ada = runtime
        .block_on(store.user(&Username::new("ada").unwrap()))
        .unwrap()
        .unwrap();
    assert!(verify_password(&ada_second, &ada.password_hash));
    assert!(!verify_password(&ada_first, &ada.password_hash));
    assert!(ada.must_change_password && !ada.disabled);

    let out = audit_cmd(&["verify", "--config", config]).unwrap();
    assert_eq!(out.trim(), "audit chain intact: 4 entries");
    assert_lease_free(&server);

    // An entry altered in place is named, as on redb.
    server
        .psql("UPDATE audit_log SET entry = convert_to(replace(convert_from(entry, 'UTF8'), '\"cli\"', '\"eve\"'), 'UTF8') WHERE seq = 2")
        .unwrap();
    let e = err(audit_cmd(&["verify", "--config", config]));
    assert!(
        e.contains("AUDIT CHAIN BROKEN at audit entry 2") && e.contains("altered"),
        "{e}"
    );
}

#[test]
fn changes_are_refused_while_a_gateway_leads() {
    let server = Postgres::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = pg_config(dir.path(), &server);
    let config = config.to_str().unwrap();
    user_cmd(&["add", "ada", "--role", "admin", "--config", config]).unwrap();

    let runtime = runtime();
    let mut leader = connect(&runtime, &server, "gw-site-a", Duration::from_secs(60));
    let LeaseAttempt::Acquired(lease) = runtime.block_on(leader.acquire_lease()).unwrap() else {
        panic!("the gateway could not lead");
    };
    let before = server
        .psql("SELECT holder, epoch, expires_at FROM tec_leader_lease")
        .unwrap();

    for args in [
        &["add", "bob", "--role", "operator", "--config", config][..],
        &["disable", "ada", "--config", config],
        &["reset", "ada", "--config", config],
    ] {
        let e = err(user_cmd(args));
        assert!(
            e.contains("a gateway is running") && e.contains("gw-site-a") && e.contains("stop the gateways"),
            "{e}"
        );
        assert!(e.contains("through the API") && e.contains("administrator"), "{e}");
        assert!(e.contains("nothing was changed"), "{e}");
    }
    // Nothing written, and the leader's lease as it was.
    assert_eq!(audit_entries(&server), "1");
    assert_eq!(
        server
            .psql("SELECT holder, epoch, expires_at FROM tec_leader_lease")
            .unwrap(),
        before
    );
    assert_eq!(lease.epoch, 2, "the command's own lease came first");

    // The reads need no lease.
    let list = user_cmd(&["list", "--config", config]).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains("ada") && list.contains("active") && !list.contains("disabled"),
        "{list}"
    );
    assert_eq!(
        audit_cmd(&["verify", "--config", config]).unwrap().trim(),
        "audit chain intact: 1 entries"
    );

    // Once the gateway has stopped (its lease given back), the change goes through.
    runtime.block_on(leader.release_lease()).unwrap();
    user_cmd(&["disable", "ada", "--config", config]).unwrap();
    assert_lease_free(&server);
    assert_eq!(audit_entries(&server), "2");
    assert_eq!(
        server.psql("SELECT epoch FROM tec_leader_lease").unwrap(),
        "3",
        "a new epoch: anything the old leader still tries is fenced"
    );
}

#[test]
fn exactly_one_store_and_a_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.to_str().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };

    // A redb configuration uses its data_dir, as `--data` does.
    let redb = file("redb.toml", &format!("data_dir = \"{data}\"\n"));
    user_cmd(&["add", "ada", "--role", "admin", "--config", &redb]).unwrap();
    let list = user_cmd(&["list", "--data", data]).unwrap();
    assert!(list.contains("ada"), "{list}");
    let list = user_cmd(&["list", "--config", &redb]).unwrap();
    assert!(list.contains("ada"), "{list}");
    assert_eq!(
        audit_cmd(&["verify", "--config", &redb]).unwrap().trim(),
        "audit chain intact: 1 entries"
    );

    // Both, or neither.
    let e = err(user_cmd(&[
        "add", "bob", "--role", "operator", "--data", data, "--config", &redb,
    ]));
    assert!(
        e.contains("--data") && e.contains("--config") && e.contains("cannot be used with"),
        "{e}"
    );
    let e = err(audit_cmd(&["verify", "--config", &redb, "--data", data]));
    assert!(e.contains("cannot be used with"), "{e}");
    let e = err(user_cmd(&["list"]));
    assert!(e.contains("--data") && e.contains("--config"), "{e}");

    // Bad configuration files.
    let missing = dir.path().join("missing.toml");
    let e = err(user_cmd(&["list", "--config", missing.to_str().unwrap()]));
    assert!(
        e.contains("configuration error") && e.contains("cannot read config file"),
        "{e}"
    );
    let no_url = file("no-url.toml", "[store]\nkind = \"postgres\"\n");
    let e = err(user_cmd(&["add", "bob", "--role", "operator", "--config", &no_url]));
    assert!(
        e.contains("configuration error") && e.contains("store.postgres_url"),
        "{e}"
    );
    let typo = file("typo.toml", "[store]\nkind = \"postgres\"\npostgres_uri = \"host=x\"\n");
    let e = err(audit_cmd(&["verify", "--config", &typo]));
    assert!(e.contains("configuration error") && e.contains("is not valid"), "{e}");
    let elsewhere = dir.path().join("not-here");
    let moved = file("moved.toml", &format!("data_dir = \"{}\"\n", elsewhere.display()));
    let e = err(user_cmd(&["add", "bob", "--role", "operator", "--config", &moved]));
    assert!(e.contains("no data directory") && e.contains("data_dir"), "{e}");
    assert!(!elsewhere.exists(), "a wrong data_dir must not be created");

    // Nobody listening: said plainly, after the input was checked.
    let port = testkit::net::free_port().unwrap();
    let unreachable = file(
        "unreachable.toml",
        &format!(
            "[store]\nkind = \"postgres\"\npostgres_url = \"host=127.0.0.1 port={port} user=postgres connect_timeout=5\"\n"
        ),
    );
    let e = err(user_cmd(&[
        "add",
        "Bob",
        "--role",
        "operator",
        "--config",
        &unreachable,
    ]));
    assert!(e.contains("invalid username"), "{e}");
    let e = err(user_cmd(&["list", "--config", &unreachable]));
    assert!(e.contains("connecting to the PostgreSQL store"), "{e}");
}
