#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `tec-gateway import people|assignments` and `tec-gateway device provision|provision-batch|
//! revoke` with `--config FILE` on a private PostgreSQL cluster, side by side with the same
//! commands on a redb data directory: the same input gives the same output and the same store
//! contents (read through `ReadStore`, the audit log included), and bad input the same refusal
//! with nothing written. On PostgreSQL the writes take the writer lease and give it back, on
//! success and on failure; they are refused while a gateway leads, nothing written and the
//! gateway's lease untouched.
//!
//! Synchronous tests: the commands run their own runtime, as `main` runs them.

mod seam_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway::cli::device::{DeviceArgs, run as run_device};
use gateway::cli::import::{ImportArgs, run_import};
use gateway::domain::{Assignment, CareProfile, DeviceRecord, Resident, ResidentId, Timestamp};
use gateway::reports::register::PersonRecord;
use gateway::store::postgres::LeaseAttempt;
use gateway::store::{
    AccessStore as _, AuditEntry, PgBlocking, ReadStore, STORE_FILE_NAME, Store, WriteStore, WriteTxn,
};
use protocol::DeviceId;
use seam_support::{assert_lease_free, connect, leading_store, pg_config, runtime};
use testkit::Postgres;

const PEOPLE: &str = "\
person_id,role,service,start_date,end_date,age_band,sex,ethnicity,disability
R-1,user,homecare,2021-04-01,,75-84,male,white,no
R-2,user,care_home,2021-05-01,,,,,
R-2,carer,carer_support,2021-05-01,,,,,
";

/// `dev-20` reports nothing yet: the register may name it first.
const ASSIGNMENTS: &str = "\
person_id,device_id,from,to
R-1,dev-10,2021-04-01,2021-08-31
R-2,dev-10,2021-09-01,
R-2,dev-20,2021-05-01,
";

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Import(ImportArgs),
    Device(DeviceArgs),
}

/// Runs `tec-gateway ...` (without the program name); its output, or its error in full.
fn tec_gateway(args: &[String]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("tec-gateway".to_owned()).chain(args.iter().cloned()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match &cli.command {
        Command::Import(args) => run_import(args, &mut out),
        Command::Device(args) => run_device(args, &mut out),
    }
    .map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).unwrap())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redb,
    Postgres,
}

/// What a site's store holds, as both stores read it.
#[derive(Debug, PartialEq)]
struct Contents {
    people: Vec<PersonRecord>,
    assignments: Vec<Assignment>,
    devices: Vec<DeviceRecord>,
    /// Each entry's action, resident and target (its time and hash differ from run to run).
    audit: Vec<(String, Option<String>, Option<String>)>,
}

impl Contents {
    fn read(reads: &dyn ReadStore, audit_raw: Vec<(u64, Vec<u8>)>) -> Self {
        Self {
            people: reads.people().unwrap(),
            assignments: reads.all_assignments().unwrap(),
            devices: reads.devices().unwrap(),
            audit: audit_raw
                .iter()
                .map(|(_, bytes)| {
                    let entry: AuditEntry = serde_json::from_slice(bytes).unwrap();
                    (entry.action, entry.resident, entry.target)
                })
                .collect(),
        }
    }

    /// Without the instants a command takes from the clock (an assignment made by
    /// provisioning starts when it ran).
    fn undated(mut self) -> Self {
        for assignment in &mut self.assignments {
            assignment.from = Timestamp(0);
            assignment.until = assignment.until.map(|_| Timestamp(0));
        }
        self
    }
}

/// One site on each store: a redb data directory (`--data`) and a PostgreSQL cluster
/// (`--config`), each with its own broker files from the committed ACL header. Input files are
/// shared.
struct Sites {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// To read what PostgreSQL holds, as the gateway's readers do.
    reader: PgBlocking,
    runtime: tokio::runtime::Runtime,
    server: Postgres,
}

impl Sites {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        drop(Store::open_in_dir(&data).unwrap());
        for kind in [Kind::Redb, Kind::Postgres] {
            let site = site_dir(dir.path(), kind);
            std::fs::create_dir(&site).unwrap();
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/acl"),
                site.join("acl"),
            )
            .unwrap();
        }
        let server = Postgres::start().unwrap();
        let config = pg_config(dir.path(), &server);
        let runtime = runtime();
        let reader = PgBlocking::new(
            connect(&runtime, &server, "reader", Duration::from_secs(60)),
            runtime.handle().clone(),
        );
        Self {
            dir,
            config,
            reader,
            runtime,
            server,
        }
    }

    fn site(&self, kind: Kind) -> PathBuf {
        site_dir(self.dir.path(), kind)
    }

    /// A file both sites read.
    fn input(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    /// `args` for `kind`'s store, its broker files with `device`, `{site}` its own directory.
    fn args(&self, kind: Kind, args: &[&str]) -> Vec<String> {
        let site = self.site(kind).display().to_string();
        let mut full: Vec<String> = args.iter().map(|arg| arg.replace("{site}", &site)).collect();
        match kind {
            Kind::Redb => full.extend(["--data".to_owned(), self.dir.path().join("data").display().to_string()]),
            Kind::Postgres => full.extend(["--config".to_owned(), self.config.display().to_string()]),
        }
        if args.first() == Some(&"device") {
            full.extend([
                "--password-file".to_owned(),
                format!("{site}/passwd"),
                "--acl-file".to_owned(),
                format!("{site}/acl"),
            ]);
        }
        full
    }

    /// Runs the command on one store; its output or error with the site's directory shown as
    /// `{site}` and one-time passwords left out. On PostgreSQL the writer lease is free after.
    fn run(&self, kind: Kind, args: &[&str]) -> Result<String, String> {
        let site = self.site(kind).display().to_string();
        let shown = |text: String| {
            text.replace(&site, "{site}")
                .lines()
                .map(|line| match line.split_once("(shown once): ") {
                    Some((before, _password)) => format!("{before}(shown once): ..."),
                    None => line.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let result = tec_gateway(&self.args(kind, args)).map(shown).map_err(shown);
        if kind == Kind::Postgres {
            assert_lease_free(&self.server);
        }
        result
    }

    /// Runs the command on both stores: the same output, or the same refusal.
    fn both(&self, args: &[&str]) -> Result<String, String> {
        let on_redb = self.run(Kind::Redb, args);
        let on_postgres = self.run(Kind::Postgres, args);
        assert_eq!(on_postgres, on_redb, "{args:?}");
        on_postgres
    }

    fn contents(&self, kind: Kind) -> Contents {
        match kind {
            Kind::Redb => {
                // Closed again at once: the commands need it to themselves.
                let store = Store::open(&self.dir.path().join("data").join(STORE_FILE_NAME)).unwrap();
                Contents::read(&store, store.audit_raw().unwrap())
            }
            Kind::Postgres => Contents::read(&self.reader, self.reader.audit_raw().unwrap()),
        }
    }

    /// What both stores hold, which must be the same.
    fn same_contents(&self) -> Contents {
        let on_redb = self.contents(Kind::Redb);
        assert_eq!(self.contents(Kind::Postgres), on_redb);
        on_redb
    }

    /// Writes what no offline command writes (a resident, an assignment made through the
    /// API) on both stores; on PostgreSQL as a gateway would, under a lease then given back.
    fn fixture(&self, resident: Option<&Resident>, assignment: Option<&Assignment>) {
        let mut redb = Arc::new(Store::open(&self.dir.path().join("data").join(STORE_FILE_NAME)).unwrap());
        write_fixture(&mut redb, resident, assignment);
        drop(redb);
        let leader = leading_store(&self.runtime, &self.server, "gw-fixture", Duration::from_secs(60));
        let mut leader = PgBlocking::new(leader, self.runtime.handle().clone());
        write_fixture(&mut leader, resident, assignment);
        leader.release_lease().unwrap();
    }

    /// The broker file `name` of `kind`'s site.
    fn broker_file(&self, kind: Kind, name: &str) -> String {
        std::fs::read_to_string(self.site(kind).join(name)).unwrap_or_default()
    }

    /// The user names in `kind`'s password file.
    fn broker_users(&self, kind: Kind) -> Vec<String> {
        self.broker_file(kind, "passwd")
            .lines()
            .filter_map(|line| line.split_once(':').map(|(user, _)| user.to_owned()))
            .collect()
    }

    /// Both sites' broker files say the same (the password hashes aside).
    fn same_broker_files(&self) -> Vec<String> {
        assert_eq!(
            self.broker_file(Kind::Postgres, "acl"),
            self.broker_file(Kind::Redb, "acl")
        );
        let users = self.broker_users(Kind::Redb);
        assert_eq!(self.broker_users(Kind::Postgres), users);
        users
    }
}

fn site_dir(dir: &Path, kind: Kind) -> PathBuf {
    dir.join(match kind {
        Kind::Redb => "redb-site",
        Kind::Postgres => "pg-site",
    })
}

fn write_fixture(store: &mut impl WriteStore, resident: Option<&Resident>, assignment: Option<&Assignment>) {
    let mut txn = store.begin_txn().unwrap();
    if let Some(resident) = resident {
        txn.put_resident(resident).unwrap();
    }
    if let Some(assignment) = assignment {
        txn.assign(assignment).unwrap();
    }
    txn.commit().into_result().unwrap();
}

fn resident(id: &str) -> Resident {
    Resident {
        id: ResidentId::new(id).unwrap(),
        display_name: "Test Resident".into(),
        address: String::new(),
        access_notes: String::new(),
        responders: Vec::new(),
        care: CareProfile::default(),
    }
}

fn instant(text: &str) -> Timestamp {
    Timestamp::from_jiff(text.parse().unwrap())
}

fn lease_row(server: &Postgres) -> String {
    server
        .psql("SELECT holder, epoch, expires_at FROM tec_leader_lease")
        .unwrap()
}

#[test]
fn an_import_on_postgres_is_the_import_on_redb() {
    let sites = Sites::new();
    let people = sites.input("people.csv", PEOPLE);
    let assignments = sites.input("assignments.csv", ASSIGNMENTS);

    let out = sites.both(&["import", "people", &people]).unwrap();
    assert_eq!(out, "people: 3 new or changed records, 0 unchanged");
    // Under the command's own lease, at a new epoch.
    assert_eq!(
        sites.server.psql("SELECT holder, epoch FROM tec_leader_lease").unwrap(),
        format!("tec-gateway-cli-{}|1", std::process::id())
    );
    let out = sites.both(&["import", "people", &people]).unwrap();
    assert_eq!(out, "people: nothing changed (3 records already as in the file)");
    let later = sites.input(
        "people-later.csv",
        &PEOPLE.replace(
            "R-1,user,homecare,2021-04-01,",
            "R-1,user,homecare,2021-04-01,2022-03-31",
        ),
    );
    let out = sites.both(&["import", "people", &later]).unwrap();
    assert_eq!(out, "people: 1 new or changed records, 2 unchanged");

    let out = sites.both(&["import", "assignments", &assignments]).unwrap();
    assert_eq!(out, "assignments: 3 new or changed records, 0 unchanged");
    let before = sites.same_contents();
    // Idempotent: what an unknown commit outcome asks the administrator to rely on.
    let out = sites.both(&["import", "assignments", &assignments]).unwrap();
    assert_eq!(out, "assignments: nothing changed (3 records already as in the file)");
    let again = sites.same_contents();
    assert_eq!(
        (&again.people, &again.assignments),
        (&before.people, &before.assignments)
    );
    let ended = sites.input(
        "assignments-ended.csv",
        &ASSIGNMENTS.replace("R-2,dev-10,2021-09-01,", "R-2,dev-10,2021-09-01,2022-01-31"),
    );
    let out = sites.both(&["import", "assignments", &ended]).unwrap();
    assert_eq!(out, "assignments: 1 new or changed records, 2 unchanged");

    let contents = sites.same_contents();
    assert_eq!(contents.people.len(), 3);
    assert_eq!(
        contents.assignments[0],
        Assignment {
            device: DeviceId::new("dev-10").unwrap(),
            resident: ResidentId::new("R-1").unwrap(),
            from: instant("2021-03-31T23:00:00Z"),
            until: Some(instant("2021-08-31T23:00:00Z")),
        }
    );
    assert!(
        contents.devices.is_empty(),
        "the register names devices, it does not register them"
    );
    let imports: Vec<&str> = contents
        .audit
        .iter()
        .map(|(action, _, target)| {
            assert_eq!(action, "register_imported");
            target.as_deref().unwrap()
        })
        .collect();
    assert_eq!(
        imports,
        [
            "people: 3 lines",
            "people: 3 lines",
            "people: 3 lines",
            "assignments: 3 lines",
            "assignments: 3 lines",
            "assignments: 3 lines"
        ]
    );
}

/// Imports a file on both stores that must be refused alike with nothing written (the audit
/// log included); the refusal.
fn refused_import(sites: &Sites, what: &str, name: &str, contents: &str) -> String {
    let before = sites.same_contents();
    let file = sites.input(name, contents);
    let e = sites.both(&["import", what, &file]).unwrap_err();
    assert!(e.contains("nothing was imported"), "{e}");
    assert_eq!(sites.same_contents(), before, "{name}: something was written");
    e
}

#[test]
fn bad_files_are_refused_alike_and_write_nothing() {
    let sites = Sites::new();
    let e = refused_import(
        &sites,
        "people",
        "bad-people.csv",
        "person_id,role,service,start_date,end_date\nR-1,user,homecare,2021-04-01,\nR-2,neighbour,homecare,2021-04-01,\n",
    );
    assert!(e.contains("line 3: ") && e.contains("neighbour"), "{e}");
    let empty = sites.same_contents();
    assert!(empty.people.is_empty() && empty.audit.is_empty(), "{empty:?}");

    let people = sites.input("people.csv", PEOPLE);
    sites.both(&["import", "people", &people]).unwrap();
    let e = refused_import(
        &sites,
        "assignments",
        "unknown-person.csv",
        "person_id,device_id,from,to\nR-1,dev-10,2021-04-01,\nR-9,dev-11,2021-04-01,\n",
    );
    assert!(e.contains("line 3: unknown person R-9"), "{e}");

    // Refused by the store inside the transaction (the check on dates lets the line replace
    // an assignment the API started mid-morning; the store, on instants, refuses it): the
    // line is named, and neither the other line nor the audit entry is stored.
    sites.fixture(
        None,
        Some(&Assignment {
            device: DeviceId::new("dev-12").unwrap(),
            resident: ResidentId::new("R-2").unwrap(),
            from: instant("2021-06-01T09:30:00Z"),
            until: None,
        }),
    );
    let e = refused_import(
        &sites,
        "assignments",
        "clash.csv",
        "person_id,device_id,from,to\nR-1,dev-13,2021-06-01,\nR-1,dev-12,2021-06-01,\n",
    );
    assert!(e.contains("line 3: ") && e.contains("dev-12"), "{e}");

    let e = sites.both(&["import", "people", "/no/such/people.csv"]).unwrap_err();
    assert!(e.contains("cannot open /no/such/people.csv"), "{e}");
}

#[test]
fn devices_provisioned_on_postgres_are_as_on_redb() {
    let sites = Sites::new();
    sites.fixture(Some(&resident("R-1")), None);
    let before = sites.same_contents();

    // Bad input: refused alike, nothing written anywhere, and on PostgreSQL the lease
    // (taken for the checks) given back.
    let pend_1 = ["device", "provision", "pend-1", "--kind", "pendant"];
    let pend_1_with = |extra: &[&'static str]| [&pend_1[..], extra].concat();
    let e = sites.both(&pend_1_with(&["--resident", "R-404"])).unwrap_err();
    assert_eq!(e, "no resident R-404 in the register");
    let e = sites.both(&pend_1_with(&["--rotate"])).unwrap_err();
    assert!(e.contains("not provisioned"), "{e}");
    assert_eq!(sites.same_contents(), before);
    assert!(sites.same_broker_files().is_empty());

    let out = sites.both(&pend_1_with(&["--resident", "R-1"])).unwrap();
    assert_eq!(
        out,
        "device pend-1 provisioned; its password (shown once): ...\n\
         reload the broker to apply: systemctl reload mosquitto (or kill -HUP <mosquitto pid>)"
    );
    let e = sites.both(&pend_1).unwrap_err();
    assert!(e.contains("already provisioned") && e.contains("--rotate"), "{e}");
    sites.both(&pend_1_with(&["--resident", "R-1", "--rotate"])).unwrap();

    let delivery = sites.input(
        "delivery.csv",
        "device_id,kind,resident_id,serial\npend-2,pendant,,SN-2\nsmoke-3,smoke_detector,R-1,SN-3\n",
    );
    let out = sites
        .both(&[
            "device",
            "provision-batch",
            "--csv",
            &delivery,
            "--sheet",
            "{site}/sheet.html",
        ])
        .unwrap();
    assert!(
        out.starts_with("2 devices provisioned\nWARNING: {site}/sheet.html holds their passwords"),
        "{out}"
    );
    for kind in [Kind::Redb, Kind::Postgres] {
        let sheet = std::fs::read_to_string(sites.site(kind).join("sheet.html")).unwrap();
        assert!(sheet.contains("SN-3") && sheet.contains("smoke_detector"), "{kind:?}");
    }

    let out = sites.both(&["device", "revoke", "pend-2"]).unwrap();
    assert!(out.starts_with("device pend-2 revoked; its history is kept"), "{out}");
    let e = sites.both(&["device", "revoke", "pend-404"]).unwrap_err();
    assert_eq!(e, "no device pend-404 in the ACL file or the register");

    assert_eq!(sites.same_broker_files(), ["pend-1", "smoke-3"]);
    let on_redb = sites.contents(Kind::Redb).undated();
    let contents = sites.contents(Kind::Postgres).undated();
    assert_eq!(contents, on_redb);
    let registered: Vec<(&str, bool)> = contents
        .devices
        .iter()
        .map(|device| (device.id.as_str(), device.registered))
        .collect();
    assert_eq!(registered, [("pend-1", true), ("pend-2", false), ("smoke-3", true)]);
    // pend-1 rotated against the same resident: still one assignment.
    let assigned: Vec<(&str, &str)> = contents
        .assignments
        .iter()
        .map(|a| (a.device.as_str(), a.resident.as_str()))
        .collect();
    assert_eq!(assigned, [("pend-1", "R-1"), ("smoke-3", "R-1")]);
    let actions: Vec<(&str, Option<&str>)> = contents
        .audit
        .iter()
        .map(|(action, resident, _)| (action.as_str(), resident.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("device_provisioned", Some("R-1")),
            ("device_provisioned", Some("R-1")),
            ("device_provisioned", None),
            ("device_provisioned", Some("R-1")),
            ("device_revoked", None),
        ]
    );
}

#[test]
fn refused_while_a_gateway_leads() {
    let sites = Sites::new();
    let people = sites.input("people.csv", PEOPLE);
    let mut leader = connect(&sites.runtime, &sites.server, "gw-site-a", Duration::from_secs(60));
    let LeaseAttempt::Acquired(_) = sites.runtime.block_on(leader.acquire_lease()).unwrap() else {
        panic!("the gateway could not lead");
    };
    let lease = lease_row(&sites.server);
    let acl = sites.broker_file(Kind::Postgres, "acl");

    let e = tec_gateway(&sites.args(Kind::Postgres, &["import", "people", &people])).unwrap_err();
    assert!(
        e.contains("a gateway is running") && e.contains("gw-site-a") && e.contains("stop the gateways"),
        "{e}"
    );
    assert!(
        e.contains("POST /api/v1/register/people") && e.contains("nothing was changed"),
        "{e}"
    );
    for args in [
        &["device", "provision", "pend-1", "--kind", "pendant"][..],
        &["device", "revoke", "pend-1"],
    ] {
        let e = tec_gateway(&sites.args(Kind::Postgres, args)).unwrap_err();
        assert!(
            e.contains("gw-site-a") && e.contains("Stop the gateways first") && e.contains("nothing was changed"),
            "{e}"
        );
    }
    // Nothing written: not the store, not the broker files; the gateway's lease as it was.
    let contents = sites.contents(Kind::Postgres);
    assert!(contents.people.is_empty() && contents.devices.is_empty() && contents.audit.is_empty());
    assert_eq!(sites.broker_file(Kind::Postgres, "acl"), acl);
    assert!(!sites.site(Kind::Postgres).join("passwd").exists());
    assert_eq!(lease_row(&sites.server), lease);

    // Once the gateway has stopped (its lease given back), both go through.
    sites.runtime.block_on(leader.release_lease()).unwrap();
    tec_gateway(&sites.args(Kind::Postgres, &["import", "people", &people])).unwrap();
    assert_lease_free(&sites.server);
    tec_gateway(&sites.args(Kind::Postgres, &["device", "provision", "pend-1", "--kind", "pendant"])).unwrap();
    assert_lease_free(&sites.server);
    assert_eq!(
        sites.server.psql("SELECT epoch FROM tec_leader_lease").unwrap(),
        "3",
        "each command at a new epoch: anything the old leader still tries is fenced"
    );
    assert_eq!(sites.contents(Kind::Postgres).people.len(), 3);
}

#[test]
fn exactly_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let config = dir.path().join("gateway.toml").display().to_string();
    let store = ["--data", &data, "--config", &config];
    let broker = ["--password-file", "passwd", "--acl-file", "acl"];
    for command in [
        &["import", "people", "people.csv"][..],
        &["import", "assignments", "assignments.csv"],
        &["device", "provision", "pend-1", "--kind", "pendant"],
        &["device", "revoke", "pend-1"],
    ] {
        let extra: &[&str] = if command[0] == "device" { &broker } else { &[] };
        let both: Vec<String> = [command, &store, extra]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = tec_gateway(&both).unwrap_err();
        assert!(
            e.contains("--data") && e.contains("--config") && e.contains("cannot be used with"),
            "{e}"
        );
        let neither: Vec<String> = [command, extra].concat().iter().map(|s| s.to_string()).collect();
        let e = tec_gateway(&neither).unwrap_err();
        assert!(
            e.contains("required") && e.contains("--data") && e.contains("--config"),
            "{e}"
        );
    }
}
