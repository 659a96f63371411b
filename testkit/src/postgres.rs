//! A private PostgreSQL cluster per test: its own data directory, port, socket directory and
//! configuration, built with the binaries of the Debian `postgresql` package and stopped on
//! drop. A cluster can make a streaming replica of itself, synchronous or not, and a replica
//! can be promoted: what the store's failover tests need.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI does), every server-side
//! program (`initdb`, `postgres`, `pg_basebackup`) runs as the `postgres` system user the
//! Debian package creates, in a temp dir handed to that user; otherwise as the current user.
//! Clients (`psql`, `pg_isready`, the gateway) connect over TCP on 127.0.0.1 with `trust`
//! authentication as the database user `postgres`.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::broker::{signal, tail_of_file, wait_for_exit};
use crate::error::{HarnessError, Result};
use crate::net::{free_port, wait_until};

/// Where the Debian packages put each major version's binaries (`<root>/<version>/bin`).
pub const POSTGRES_ROOT: &str = "/usr/lib/postgresql";
/// The database user every cluster is created with (and the one clients connect as).
pub const SUPERUSER: &str = "postgres";
/// How long a server may take to start, stop or catch up before the harness gives up.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// How to configure one server.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// `synchronous_standby_names`: with a standby's `application_name` here, every commit on
    /// this server waits until that standby has the commit's WAL (`None`: asynchronous).
    pub synchronous_standby_names: Option<String>,
    /// Lines appended to the server's configuration after the harness's own (later lines win).
    pub extra_config: String,
    /// TLS for clients that ask for it (`ssl = on`) with this certificate and key (PEM).
    pub tls: Option<ServerTls>,
}

/// The server's certificate (PEM, chain first) and its private key (PEM).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Which part a server plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// A streaming replica of the primary on `primary_port`, known to it as `application_name`.
    Standby {
        application_name: String,
        primary_port: u16,
    },
}

/// One running (or stopped) PostgreSQL server in its own temp dir. Shut down on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// The uid and gid the server runs as, when the tests run as root.
    run_as: Option<(u32, u32)>,
    role: Role,
    child: Option<Child>,
}

impl Postgres {
    /// A standalone primary with the harness's default configuration.
    pub fn start() -> Result<Self> {
        Self::start_with(PostgresOptions::default())
    }

    /// Creates a new cluster (`initdb`) with `options` and starts it.
    pub fn start_with(options: PostgresOptions) -> Result<Self> {
        let bin = find_binaries()?;
        let run_as = server_user()?;
        let mut server = Self::in_new_dir(bin, run_as, Role::Primary)?;
        let initdb = server
            .server_command("initdb")
            .arg("--pgdata")
            .arg(server.data_dir())
            .args(["--username", SUPERUSER, "--auth", "trust", "--encoding", "UTF8"])
            // No fsync of the new cluster's files: a test's cluster dies with its temp dir
            // anyway. The server itself fsyncs every commit as in production.
            .args(["--locale", "C", "--no-instructions", "--no-sync"])
            .output()
            .map_err(HarnessError::io("running initdb"))?;
        check_output("initdb", &initdb)?;
        if let Some(tls) = &options.tls {
            server.write_server_file("server.crt", &tls.cert_pem)?;
            // PostgreSQL refuses a key others can read.
            server.write_server_file("server.key", &tls.key_pem)?;
        }
        server.append_config(&options, None)?;
        server.spawn()?;
        Ok(server)
    }

    /// Makes a streaming replica of this (running) server with `pg_basebackup`, known to it as
    /// `application_name` (name it in this server's `synchronous_standby_names` to make it
    /// synchronous), configured by `options`, and starts it. The replica does not inherit this
    /// server's `synchronous_standby_names`: promoted, it waits for a standby only if
    /// `options` names one. Returns once the replica accepts read-only connections; call
    /// [`Postgres::wait_for_standby`] on this server to know it is streaming.
    pub fn start_replica(&self, application_name: &str, options: PostgresOptions) -> Result<Postgres> {
        let role = Role::Standby {
            application_name: application_name.to_string(),
            primary_port: self.port,
        };
        let mut replica = Self::in_new_dir(self.bin.clone(), self.run_as, role)?;
        let backup = replica
            .server_command("pg_basebackup")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--pgdata"])
            .arg(replica.data_dir())
            // A fast checkpoint: the default waits for the next scheduled one (minutes).
            .args(["--wal-method", "stream", "--checkpoint", "fast", "--no-sync"])
            .output()
            .map_err(HarnessError::io("running pg_basebackup"))?;
        check_output("pg_basebackup", &backup)?;
        fs::write(replica.data_dir().join("standby.signal"), "").map_err(HarnessError::io("writing standby.signal"))?;
        replica.chown_to_server_user(&replica.data_dir().join("standby.signal"))?;
        let conninfo = format!(
            "host=127.0.0.1 port={} user={SUPERUSER} application_name={application_name}",
            self.port
        );
        replica.append_config(&options, Some(&conninfo))?;
        replica.spawn()?;
        Ok(replica)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// A libpq-style connection string for `dbname` (`tokio_postgres::Config` parses it).
    pub fn connection_string(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname}", self.port)
    }

    /// The server's log (its stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path(), lines)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Runs `sql` with `psql` on database `postgres` and returns its unaligned, tuples-only
    /// output (one row a line, columns separated by `|`), trimmed. Fails on any SQL error.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["--no-psqlrc", "--no-align", "--tuples-only", "--quiet"])
            .args(["--set", "ON_ERROR_STOP=1"])
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--dbname", "postgres", "--command", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(HarnessError::io("running psql"))?;
        check_output("psql", &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Waits until this server streams to the standby `application_name` and, if the standby
    /// is named in `synchronous_standby_names`, counts it as synchronous.
    pub fn wait_for_standby(&self, application_name: &str) -> Result<()> {
        let query = format!(
            "SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = '{}'",
            application_name.replace('\'', "''")
        );
        let mut last = String::new();
        let caught_up = wait_until("the standby to stream", SERVER_TIMEOUT, || match self.psql(&query) {
            Ok(state) => {
                last = state;
                last == "streaming sync" || (last == "streaming async" && !self.expects_sync(application_name))
            }
            Err(_) => false,
        });
        caught_up.map_err(|_| HarnessError::Timeout {
            what: format!("standby {application_name} streaming from port {}", self.port),
            waited: SERVER_TIMEOUT,
            detail: Some(format!("last state {last:?}; log:\n{}", self.log_tail(20))),
        })
    }

    fn expects_sync(&self, application_name: &str) -> bool {
        self.psql("SHOW synchronous_standby_names")
            .is_ok_and(|names| names.split([',', ' ', '(', ')']).any(|name| name == application_name))
    }

    /// Promotes this standby to a primary and waits until it accepts writes.
    pub fn promote(&mut self) -> Result<()> {
        let output = self
            .server_command("pg_ctl")
            .args(["promote", "--wait", "--pgdata"])
            .arg(self.data_dir())
            .output()
            .map_err(HarnessError::io("running pg_ctl promote"))?;
        check_output("pg_ctl promote", &output)?;
        wait_until("the promoted server to accept writes", SERVER_TIMEOUT, || {
            self.psql("SELECT pg_is_in_recovery()")
                .is_ok_and(|answer| answer == "f")
        })?;
        if let Role::Standby { .. } = self.role {
            self.role = Role::Primary;
        }
        Ok(())
    }

    /// Fast shutdown (SIGINT): sessions are ended, everything committed is kept.
    pub fn stop(&mut self) -> Result<()> {
        self.shut_down("INT")
    }

    /// Immediate shutdown (SIGQUIT), as after a crash: the next start replays the WAL.
    pub fn stop_immediately(&mut self) -> Result<()> {
        self.shut_down("QUIT")
    }

    /// Starts it again after a stop, on the same port with the same data.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    fn in_new_dir(bin: PathBuf, run_as: Option<(u32, u32)>, role: Role) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tec-postgres-")
            .tempdir()
            .map_err(HarnessError::io("creating the server's temp dir"))?;
        let server = Self {
            dir,
            port: free_port()?,
            bin,
            run_as,
            role,
            child: None,
        };
        server.chown_to_server_user(server.dir.path())?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for a server-side program, run as the server's user.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null()).env("LC_ALL", "C");
        command
    }

    /// Writes `name` into the data directory, readable by the server's user only.
    fn write_server_file(&self, name: &str, contents: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.data_dir().join(name);
        fs::write(&path, contents).map_err(HarnessError::io(format!("writing {name}")))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(HarnessError::io(format!("restricting {name}")))?;
        self.chown_to_server_user(&path)
    }

    fn chown_to_server_user(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(HarnessError::io(format!(
                "handing {} to the postgres user",
                path.display()
            )))?;
        }
        Ok(())
    }

    /// Appends the harness's settings to `postgresql.conf` (a replica's copy starts with its
    /// primary's, so each setting here overrides the copied one).
    fn append_config(&self, options: &PostgresOptions, primary_conninfo: Option<&str>) -> Result<()> {
        let mut conf = String::from("\n# tec testkit\n");
        let _ = writeln!(conf, "listen_addresses = '127.0.0.1'");
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(conf, "unix_socket_directories = '{}'", self.dir.path().display());
        let _ = writeln!(conf, "max_connections = 40");
        let _ = writeln!(conf, "shared_buffers = 32MB");
        let _ = writeln!(conf, "logging_collector = off");
        let _ = writeln!(conf, "lc_messages = 'C'");
        let _ = writeln!(conf, "log_line_prefix = '%m [%p] '");
        // Standbys answer queries while they replay (the console reads from one).
        let _ = writeln!(conf, "hot_standby = on");
        let sync_names = options.synchronous_standby_names.as_deref().unwrap_or("");
        let _ = writeln!(conf, "synchronous_standby_names = '{}'", sync_names.replace('\'', "''"));
        if options.tls.is_some() {
            let _ = writeln!(conf, "ssl = on");
            let _ = writeln!(conf, "ssl_cert_file = 'server.crt'");
            let _ = writeln!(conf, "ssl_key_file = 'server.key'");
        }
        if let Some(conninfo) = primary_conninfo {
            let _ = writeln!(conf, "primary_conninfo = '{}'", conninfo.replace('\'', "''"));
        }
        conf.push_str(&options.extra_config);
        conf.push('\n');
        let path = self.data_dir().join("postgresql.conf");
        let mut existing = fs::read_to_string(&path).map_err(HarnessError::io("reading postgresql.conf"))?;
        existing.push_str(&conf);
        fs::write(&path, existing).map_err(HarnessError::io("writing postgresql.conf"))
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(HarnessError::io("opening the server log"))?;
        let child = self
            .server_command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(HarnessError::io("starting postgres"))?;
        self.child = Some(child);
        let ready = wait_until("postgres to accept connections", SERVER_TIMEOUT, || {
            self.accepts_queries()
        });
        if let Err(err) = ready {
            let log = self.log_tail(30);
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(HarnessError::ExitedEarly {
                    program: "postgres".into(),
                    status: status.to_string(),
                    log_tail: log,
                });
            }
            return Err(HarnessError::Timeout {
                what: format!("postgres on port {}", self.port),
                waited: SERVER_TIMEOUT,
                detail: Some(format!("{err}; log:\n{log}")),
            });
        }
        Ok(())
    }

    /// `pg_isready`: the server accepts connections (a hot standby: read-only ones).
    fn accepts_queries(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--username", SUPERUSER, "--dbname", "postgres", "--timeout", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn shut_down(&mut self, signal_name: &str) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), signal_name)?;
            wait_for_exit(&mut child, SERVER_TIMEOUT, "postgres")?;
        }
        Ok(())
    }
}

/// One cluster for the whole test process, started on first use, and the watchdog that
/// stops it when the process ends.
#[derive(Debug)]
struct ProcessCluster {
    server: Postgres,
    /// Never written nor dropped: the watchdog sees end of file on it only when the process
    /// has ended, however it ended (statics are never dropped, so no `Drop` can stop the
    /// cluster; the pipe is closed by the kernel).
    _watchdog: ChildStdin,
}

static PROCESS_CLUSTER: OnceLock<std::result::Result<ProcessCluster, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// The connections a shared cluster accepts: every test of a binary may run a gateway on it
/// at once, and a gateway holds a few connections.
const PROCESS_CLUSTER_CONNECTIONS: u32 = 200;

impl Postgres {
    /// A cluster shared by every caller in this process, started (`initdb`, 1-2 s) on the
    /// first call; give each test its own database on it ([`Postgres::create_database`]).
    /// It runs until the process ends: a watchdog process (`sh`, reading a pipe only this
    /// process holds) then shuts it down and removes its directory. A start that failed
    /// fails every later call the same way.
    pub fn for_this_process() -> Result<&'static Postgres> {
        let cluster = PROCESS_CLUSTER.get_or_init(|| start_process_cluster().map_err(|err| err.to_string()));
        match cluster {
            Ok(cluster) => Ok(&cluster.server),
            Err(err) => Err(HarnessError::Other(format!(
                "the shared PostgreSQL cluster did not start: {err}"
            ))),
        }
    }

    /// Creates a new, empty database with a name unique in this process, and returns the
    /// name (for [`Postgres::connection_string`]).
    pub fn create_database(&self) -> Result<String> {
        let name = format!("tec_test_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }
}

fn start_process_cluster() -> Result<ProcessCluster> {
    let server = Postgres::start_with(PostgresOptions {
        extra_config: format!("max_connections = {PROCESS_CLUSTER_CONNECTIONS}\n"),
        ..PostgresOptions::default()
    })?;
    let postmaster = server
        .child
        .as_ref()
        .map(Child::id)
        .ok_or_else(|| HarnessError::Other("the shared cluster has no server process".into()))?;
    // `read` returns at end of file: when this process has ended. Then an immediate
    // shutdown (the postmaster ends its backends), and the directory goes once it has.
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(
            r#"read -r _; kill -QUIT "$1" 2>/dev/null; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; rm -rf "$2""#,
        )
        .arg("tec-postgres-watchdog")
        .arg(postmaster.to_string())
        .arg(server.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A process group of its own: a signal to the test run's group (a timeout, Ctrl-C)
        // ends the tests and the server, and the watchdog still removes the directory.
        .process_group(0)
        .spawn()
        .map_err(HarnessError::io("starting the shared cluster's watchdog"))?;
    let pipe = watchdog
        .stdin
        .take()
        .ok_or_else(|| HarnessError::Other("the watchdog has no stdin".into()))?;
    Ok(ProcessCluster {
        server,
        _watchdog: pipe,
    })
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster ends its backends too (a SIGKILL would leave them
        // to notice on their own). The data is thrown away with the temp dir.
        if let Some(mut child) = self.child.take()
            && (signal(child.id(), "QUIT").is_err() || wait_for_exit(&mut child, SERVER_TIMEOUT, "postgres").is_err())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `bin` directory of the newest PostgreSQL installed under [`POSTGRES_ROOT`].
pub fn find_binaries() -> Result<PathBuf> {
    find_binaries_in(Path::new(POSTGRES_ROOT))
}

/// The `bin` directory of the newest `<root>/<major version>/bin/postgres`.
fn find_binaries_in(root: &Path) -> Result<PathBuf> {
    let missing = || HarnessError::PostgresMissing {
        looked_in: root.display().to_string(),
    };
    let entries = fs::read_dir(root).map_err(|_| missing())?;
    let newest = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(missing)
}

/// As root: the `postgres` system user's uid and gid. Otherwise `None` (run as ourselves).
fn server_user() -> Result<Option<(u32, u32)>> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    let user_missing = |_| {
        HarnessError::Other(format!(
            "running as root, PostgreSQL needs a non-root system user `{SUPERUSER}` (the Debian package \
         `postgresql` creates it); none found"
        ))
    };
    let uid = id(&["-u", SUPERUSER]).map_err(user_missing)?;
    let gid = id(&["-g", SUPERUSER]).map_err(user_missing)?;
    Ok(Some((uid, gid)))
}

/// `id ARGS` as a number (the workspace forbids `unsafe`, so no libc here).
fn id(args: &[&str]) -> Result<u32> {
    let output = Command::new("id")
        .args(args)
        .output()
        .map_err(HarnessError::io("running id"))?;
    check_output("id", &output)?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .map_err(|_| HarnessError::Other(format!("id {}: unexpected output {text:?}", args.join(" "))))
}

fn check_output(program: &str, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(HarnessError::Other(format!(
        "{program} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_installed_version_is_found_and_none_is_a_clear_error() -> Result<()> {
        let root = tempfile::tempdir().map_err(HarnessError::io("temp dir"))?;
        let missing = find_binaries_in(root.path()).map(|_| ()).unwrap_err().to_string();
        assert!(missing.contains("apt-get install postgresql"), "{missing}");
        for version in ["13", "15", "9"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).map_err(HarnessError::io("bin dir"))?;
            fs::write(bin.join("postgres"), "").map_err(HarnessError::io("postgres"))?;
        }
        // Not a version, or no server in it: ignored.
        fs::create_dir_all(root.path().join("common/bin")).map_err(HarnessError::io("common"))?;
        fs::create_dir_all(root.path().join("17/bin")).map_err(HarnessError::io("17"))?;
        assert_eq!(find_binaries_in(root.path())?, root.path().join("15/bin"));
        Ok(())
    }

    #[test]
    fn a_cluster_starts_answers_and_keeps_data_across_a_restart() -> Result<()> {
        let mut server = Postgres::start()?;
        server.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")?;
        server.stop()?;
        assert!(!server.is_running());
        server.start_again()?;
        assert_eq!(server.psql("SELECT n FROM kept")?, "7");
        Ok(())
    }

    #[test]
    fn a_synchronous_replica_streams_and_can_be_promoted() -> Result<()> {
        let primary = Postgres::start_with(PostgresOptions {
            synchronous_standby_names: Some("tec_replica".into()),
            ..PostgresOptions::default()
        })?;
        let mut replica = primary.start_replica("tec_replica", PostgresOptions::default())?;
        primary.wait_for_standby("tec_replica")?;
        // A synchronous commit returns only once the standby has it; a hot standby shows it
        // once replayed.
        primary.psql("CREATE TABLE replicated (n int); INSERT INTO replicated VALUES (42)")?;
        wait_until("the row on the replica", SERVER_TIMEOUT, || {
            replica
                .psql("SELECT n FROM replicated")
                .is_ok_and(|found| found == "42")
        })?;
        assert_eq!(replica.psql("SELECT pg_is_in_recovery()")?, "t");
        replica.promote()?;
        replica.psql("INSERT INTO replicated VALUES (43)")?;
        assert_eq!(replica.psql("SELECT count(*) FROM replicated")?, "2");
        assert_eq!(replica.role(), &Role::Primary);
        Ok(())
    }

    #[test]
    fn the_process_cluster_is_shared_and_gives_each_caller_a_fresh_database() -> Result<()> {
        let first = Postgres::for_this_process()?;
        let second = Postgres::for_this_process()?;
        assert_eq!(first.port(), second.port());
        let one = first.create_database()?;
        let other = second.create_database()?;
        assert_ne!(one, other);
        let listed = first.psql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname IN ('{one}', '{other}')"
        ))?;
        assert_eq!(listed, "2");
        Ok(())
    }
}
