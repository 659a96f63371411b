//! A private Mosquitto per test: its own port, config, persistence directory and (optionally)
//! password file and ACLs, restartable on the same port.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::net::{accepts_connections, free_port, wait_until};

/// Where the Debian package installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

/// A broker username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// A device's credentials: its id is its username (the ACL pattern `%u` relies on it).
    pub fn for_device(id: &str) -> Self {
        Self::new(id, format!("pw-{id}"))
    }
}

/// Password authentication with the production ACL: each device may write only its own up,
/// alarm and status topics and read only its own down topic; the gateway reads every up/status
/// topic, its alarm session (user `{gateway}-alarms`, the gateway's password, as the gateway's
/// configuration defaults to) every alarm topic, and both write every down topic.
#[derive(Debug, Clone)]
pub struct BrokerAuth {
    pub gateway: Credentials,
    pub devices: Vec<Credentials>,
    /// A user allowed to publish and subscribe anywhere, for injecting junk in tests.
    pub admin: Option<Credentials>,
}

impl BrokerAuth {
    /// The gateway's alarm-session user, as the gateway derives it from its own.
    pub fn gateway_alarms(&self) -> Credentials {
        Credentials::new(
            format!("{}-alarms", self.gateway.username),
            self.gateway.password.clone(),
        )
    }

    /// Credentials for the gateway user `gateway`, `admin`, and one per device id.
    pub fn for_devices<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            gateway: Credentials::new("gateway", "pw-gateway"),
            devices: ids.into_iter().map(Credentials::for_device).collect(),
            admin: Some(Credentials::new("admin", "pw-admin")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// `None`: anonymous access to everything.
    pub auth: Option<BrokerAuth>,
    /// Outgoing QoS 1 messages in flight per client (0 = no limit: each client's MQTT 5 receive
    /// maximum decides). Mosquitto's default of 20 would cap the gateway's commit batches, since it
    /// acknowledges only after commit.
    pub max_inflight_messages: u32,
    /// Seconds between saves of the in-memory database (0: only at shutdown).
    pub autosave_interval_s: u32,
    /// Files written into the broker's own directory before it starts (e.g. TLS certificates),
    /// as (file name, contents).
    pub extra_files: Vec<(String, String)>,
    /// Largest publish payload the broker accepts (`message_size_limit`; 0: no limit, Mosquitto's
    /// default). Production sets it so an oversize publish is refused at the publisher instead of
    /// being silently dropped on the way to a gateway whose maximum packet size it exceeds.
    pub message_size_limit: u32,
    /// A password file and ACL file written by someone else (e.g. `tec-gateway device
    /// provision`), used as they are instead of `auth`'s generated ones.
    pub auth_files: Option<AuthFiles>,
    /// Lines appended to the listener's config; `{dir}` stands for the broker's directory
    /// (e.g. `cafile {dir}/ca.pem` for a TLS listener).
    pub extra_config: String,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            auth: None,
            max_inflight_messages: 0,
            autosave_interval_s: 60,
            extra_files: Vec::new(),
            message_size_limit: 0,
            auth_files: None,
            extra_config: String::new(),
        }
    }
}

/// Paths of a password file and an ACL file for [`BrokerOptions::auth_files`].
#[derive(Debug, Clone)]
pub struct AuthFiles {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
}

/// A running (or stopped) Mosquitto. Killed on drop.
#[derive(Debug)]
pub struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    options: BrokerOptions,
    child: Option<Child>,
}

impl Broker {
    /// Anonymous broker with persistence.
    pub fn start() -> Result<Self> {
        Self::start_with(BrokerOptions::default())
    }

    pub fn start_with(options: BrokerOptions) -> Result<Self> {
        if !Path::new(MOSQUITTO).exists() {
            return Err(HarnessError::MosquittoMissing {
                path: MOSQUITTO.to_string(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("tec-mosquitto-")
            .tempdir()
            .map_err(HarnessError::io("creating the broker's temp dir"))?;
        let port = free_port()?;
        let mut broker = Self {
            dir,
            port,
            options,
            child: None,
        };
        broker.write_config()?;
        broker.spawn()?;
        Ok(broker)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `mqtt://127.0.0.1:PORT`, the form the gateway's `--broker` takes.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn auth(&self) -> Option<&BrokerAuth> {
        self.options.auth.as_ref()
    }

    /// Credentials for a device id, if the broker authenticates.
    pub fn device_credentials(&self, id: &str) -> Option<Credentials> {
        self.auth().map(|_| Credentials::for_device(id))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path(), lines)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Graceful stop (SIGTERM): Mosquitto writes its persistence file on the way out.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM")?;
            wait_for_exit(&mut child, Duration::from_secs(10), "mosquitto")?;
        }
        Ok(())
    }

    /// Hard stop (SIGKILL): whatever was not yet saved is gone.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(HarnessError::io("killing mosquitto"))?;
            child.wait().map_err(HarnessError::io("reaping mosquitto"))?;
        }
        Ok(())
    }

    /// SIGHUP: Mosquitto rereads its password and ACL files.
    pub fn reload(&self) -> Result<()> {
        match &self.child {
            Some(child) => signal(child.id(), "HUP"),
            None => Err(HarnessError::Other("mosquitto is not running".into())),
        }
    }

    /// Graceful stop, then start again on the same port with the same persistence file.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Starts it again after [`Broker::stop`] or [`Broker::kill`].
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn write_config(&self) -> Result<()> {
        let dir = self.dir.path();
        let mut conf = String::new();
        let o = &self.options;
        let _ = writeln!(conf, "listener {} 127.0.0.1", self.port);
        // Running as root, Mosquitto would otherwise drop to user `mosquitto`, who cannot write
        // our temp dir. Ignored when not root.
        let _ = writeln!(conf, "user {}", current_user());
        let _ = writeln!(conf, "persistence true");
        let _ = writeln!(conf, "persistence_location {}/", dir.display());
        let _ = writeln!(conf, "autosave_interval {}", o.autosave_interval_s);
        let _ = writeln!(conf, "max_queued_messages 0");
        let _ = writeln!(conf, "max_queued_bytes 0");
        let _ = writeln!(conf, "max_inflight_messages {}", o.max_inflight_messages);
        let _ = writeln!(conf, "set_tcp_nodelay true");
        if o.message_size_limit > 0 {
            let _ = writeln!(conf, "message_size_limit {}", o.message_size_limit);
        }
        let _ = writeln!(conf, "log_dest file {}", self.log_path().display());
        let _ = writeln!(
            conf,
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information"
        );
        let _ = writeln!(conf, "connection_messages true");
        let _ = writeln!(conf, "log_timestamp_format %H:%M:%S");
        match (&o.auth, &o.auth_files) {
            (_, Some(files)) => {
                let _ = writeln!(conf, "allow_anonymous false");
                let _ = writeln!(conf, "password_file {}", files.password_file.display());
                let _ = writeln!(conf, "acl_file {}", files.acl_file.display());
            }
            (None, None) => {
                let _ = writeln!(conf, "allow_anonymous true");
            }
            (Some(auth), None) => {
                let passwords = dir.join("passwd");
                let acl = dir.join("acl");
                write_password_file(&passwords, auth)?;
                fs::write(&acl, acl_text(auth)).map_err(HarnessError::io("writing the ACL file"))?;
                let _ = writeln!(conf, "allow_anonymous false");
                let _ = writeln!(conf, "password_file {}", passwords.display());
                let _ = writeln!(conf, "acl_file {}", acl.display());
            }
        }
        for (name, contents) in &o.extra_files {
            fs::write(dir.join(name), contents).map_err(HarnessError::io(format!("writing {name}")))?;
        }
        let _ = writeln!(conf, "{}", o.extra_config.replace("{dir}", &dir.display().to_string()));
        fs::write(self.config_path(), conf).map_err(HarnessError::io("writing mosquitto.conf"))
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(HarnessError::io("starting mosquitto"))?;
        self.child = Some(child);
        let addr = self.addr();
        let ready = wait_until("mosquitto to accept connections", Duration::from_secs(10), || {
            accepts_connections(addr)
        });
        if let Err(err) = ready {
            let log = self.log_tail(30);
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(HarnessError::ExitedEarly {
                    program: "mosquitto".into(),
                    status: status.to_string(),
                    log_tail: log,
                });
            }
            return Err(HarnessError::Timeout {
                what: format!("mosquitto on port {}", self.port),
                waited: Duration::from_secs(10),
                detail: Some(format!("{err}; log:\n{log}")),
            });
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn acl_text(auth: &BrokerAuth) -> String {
    let mut acl = String::new();
    let _ = writeln!(acl, "user {}", auth.gateway.username);
    let _ = writeln!(acl, "topic read tec/v1/dev/+/up");
    let _ = writeln!(acl, "topic read tec/v1/dev/+/status");
    let _ = writeln!(acl, "topic write tec/v1/dev/+/down");
    let _ = writeln!(acl, "\nuser {}", auth.gateway_alarms().username);
    let _ = writeln!(acl, "topic read tec/v1/dev/+/alarm");
    let _ = writeln!(acl, "topic write tec/v1/dev/+/down");
    if let Some(admin) = &auth.admin {
        let _ = writeln!(acl, "\nuser {}", admin.username);
        let _ = writeln!(acl, "topic readwrite #");
    }
    // Patterns apply to every user; `%u` is the authenticated username, i.e. the device id.
    let _ = writeln!(acl, "\npattern write tec/v1/dev/%u/up");
    let _ = writeln!(acl, "pattern write tec/v1/dev/%u/alarm");
    let _ = writeln!(acl, "pattern write tec/v1/dev/%u/status");
    let _ = writeln!(acl, "pattern read tec/v1/dev/%u/down");
    acl
}

/// Writes `user:password` lines, then hashes them all in one `mosquitto_passwd -U` call.
fn write_password_file(path: &Path, auth: &BrokerAuth) -> Result<()> {
    let mut plain = String::new();
    let gateway_alarms = auth.gateway_alarms();
    let users = [&auth.gateway, &gateway_alarms]
        .into_iter()
        .chain(auth.admin.iter())
        .chain(auth.devices.iter());
    for user in users {
        let _ = writeln!(plain, "{}:{}", user.username, user.password);
    }
    fs::write(path, plain).map_err(HarnessError::io("writing the password file"))?;
    let output = Command::new(MOSQUITTO_PASSWD)
        .arg("-U")
        .arg(path)
        .output()
        .map_err(HarnessError::io("running mosquitto_passwd (package mosquitto)"))?;
    if !output.status.success() {
        return Err(HarnessError::Other(format!(
            "mosquitto_passwd -U failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "mosquitto".to_string())
}

/// Sends a signal by name with `kill(1)`: the workspace forbids `unsafe`, so no libc here.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(HarnessError::io("running kill"))?;
    if status.success() {
        Ok(())
    } else {
        Err(HarnessError::Other(format!("kill -{name} {pid} failed: {status}")))
    }
}

/// Waits for `child` to exit; kills it if it has not after `timeout`.
pub fn wait_for_exit(child: &mut Child, timeout: Duration, program: &str) -> Result<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(HarnessError::io(format!("waiting for {program}")))?
        {
            return Ok(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Timeout {
                what: format!("{program} to exit"),
                waited: timeout,
                detail: Some("killed it".into()),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a text file, or a note that it could not be read.
pub fn tail_of_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all.get(start..).unwrap_or_default().join("\n")
        }
        Err(err) => format!("(no log at {}: {err})", path.display()),
    }
}
