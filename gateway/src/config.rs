//! Gateway configuration: a TOML file (every field optional), then environment variables,
//! then command-line flags, each overriding the one before. Validated once at start so a
//! bad value is a clear message at startup rather than a surprise at 3 a.m.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::postgres::{PgStoreOptions, PgTls};

/// Default broker: a Mosquitto on the same machine.
pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default HTTP listen address (health and metrics).
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Default MQTT client id. The dot makes it something no device id can be (device ids are
/// `[a-z0-9_-]`), so no device can take over the gateway's session by connecting with it.
pub const DEFAULT_CLIENT_ID: &str = "tec.gateway";
/// Default largest packet: the protocol's largest message is 128 bytes
/// ([`protocol::MAX_UPLINK_LEN`]); 4 KiB leaves room for protocol growth and long topics.
pub const DEFAULT_MAX_PACKET_BYTES: u32 = 4 * 1024;
/// Smallest `max_packet_bytes` allowed: the largest protocol message with a long topic and
/// MQTT headers must always get through.
pub const MIN_MAX_PACKET_BYTES: usize = 1024;
/// Default in-flight byte budget: room for tens of thousands of real publishes (a group
/// commit's worth), but only 4,096 maximum-size ones.
pub const DEFAULT_INFLIGHT_BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// Every environment variable the gateway reads, with what it overrides (for `--help` and
/// the README).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("TEC_GATEWAY_CONFIG", "path of the TOML config file (same as --config)"),
    ("TEC_GATEWAY_BROKER", "mqtt.broker"),
    ("TEC_GATEWAY_DATA", "data_dir"),
    ("TEC_GATEWAY_HTTP", "http"),
    ("TEC_GATEWAY_MQTT_CLIENT_ID", "mqtt.client_id"),
    ("TEC_GATEWAY_MQTT_USERNAME", "mqtt.username"),
    ("TEC_GATEWAY_MQTT_PASSWORD", "mqtt.password"),
    ("TEC_GATEWAY_MQTT_CA_FILE", "mqtt.ca_file"),
    ("TEC_GATEWAY_STORE_POSTGRES_CA_FILE", "store.postgres_ca_file"),
    ("TEC_GATEWAY_MAX_BATCH", "ingest.max_batch"),
    ("TEC_GATEWAY_LOG_LEVEL", "log.level (RUST_LOG, if set, wins)"),
    ("TEC_GATEWAY_LOG_FORMAT", "log.format (text or json)"),
];

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// A validated broker address: `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("broker URL must start with mqtt:// or mqtts://")]
    Scheme,
    #[error("broker URL has no host")]
    MissingHost,
    #[error("broker URL port is not a number from 1 to 65535")]
    BadPort,
    #[error("broker URL must be scheme://host[:port], without user, path or query")]
    Extra,
}

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<Self, BrokerUrlError> {
        let text = text.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(BrokerUrlError::Scheme);
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
            return Err(BrokerUrlError::Extra);
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            // IPv6 literal: [::1] or [::1]:1883
            let (host, after) = bracketed.split_once(']').ok_or(BrokerUrlError::MissingHost)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(BrokerUrlError::Extra)?),
            };
            (host, port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['[', ']']) || (host.contains(':') && !rest.starts_with('[')) {
            return Err(if host.is_empty() {
                BrokerUrlError::MissingHost
            } else {
                BrokerUrlError::Extra
            });
        }
        let port = match port {
            None => default_port,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(BrokerUrlError::BadPort),
            },
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

impl Default for BrokerUrl {
    fn default() -> Self {
        Self {
            tls: false,
            host: "127.0.0.1".into(),
            port: 1883,
        }
    }
}

impl TryFrom<String> for BrokerUrl {
    type Error = BrokerUrlError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The whole configuration. `Default` is a working setup against a local broker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the redb store lives (created if missing).
    pub data_dir: PathBuf,
    /// HTTP listen address for /healthz and /metrics; port 0 picks a free port.
    pub http: SocketAddr,
    pub mqtt: MqttConfig,
    pub ingest: IngestConfig,
    pub log: LogConfig,
    pub alerts: AlertsConfig,
    pub access: AccessConfig,
    /// How long each class of data is kept (`docs/retention.md`).
    pub retention: crate::retention::RetentionPolicy,
    pub store: StoreConfig,
}

/// Access control for the `/api/v1` API (`docs/access.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// How long a login token is valid.
    pub token_lifetime_s: u64,
    /// Failed logins (per username, and per client address) allowed within the window.
    pub login_max_failures: u32,
    pub login_failure_window_s: u64,
    /// Mark the console's cookies `Secure` (set when a TLS proxy serves the console).
    pub secure_cookies: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        let settings = crate::access::AccessSettings::default();
        Self {
            token_lifetime_s: u64::try_from(settings.token_lifetime_ms / 1000).unwrap_or(43_200),
            login_max_failures: settings.max_login_failures,
            login_failure_window_s: u64::try_from(settings.login_failure_window_ms / 1000).unwrap_or(900),
            secure_cookies: settings.secure_cookies,
        }
    }
}

/// Longest token lifetime accepted: a week (a stolen token must not live for ever).
const MAX_TOKEN_LIFETIME_S: u64 = 7 * 24 * 3600;

impl AccessConfig {
    pub fn settings(&self) -> crate::access::AccessSettings {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        crate::access::AccessSettings {
            token_lifetime_ms: ms(self.token_lifetime_s),
            max_login_failures: self.login_max_failures,
            login_failure_window_ms: ms(self.login_failure_window_s),
            secure_cookies: self.secure_cookies,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.token_lifetime_s < 60 || self.token_lifetime_s > MAX_TOKEN_LIFETIME_S {
            return Err(invalid(
                "access.token_lifetime_s",
                format!("must be from 60 to {MAX_TOKEN_LIFETIME_S} seconds"),
            ));
        }
        if self.login_max_failures == 0 {
            return Err(invalid("access.login_max_failures", "must be at least 1"));
        }
        if self.login_failure_window_s == 0 || self.login_failure_window_s > 86_400 {
            return Err(invalid(
                "access.login_failure_window_s",
                "must be from 1 to 86400 seconds",
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            mqtt: MqttConfig::default(),
            ingest: IngestConfig::default(),
            log: LogConfig::default(),
            alerts: AlertsConfig::default(),
            access: AccessConfig::default(),
            retention: crate::retention::RetentionPolicy::default(),
            store: StoreConfig::default(),
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub broker: BrokerUrl,
    /// Stable across restarts: the broker keeps our session (and unacked messages) under it.
    /// Never a valid device id (validation refuses one): a device connecting with the gateway's
    /// client id would take over its session.
    pub client_id: String,
    pub username: Option<String>,
    #[serde(serialize_with = "serialize_redacted")]
    pub password: Option<String>,
    /// The alarm session's broker user (SPEC 2.1). It needs its own: under Mosquitto's
    /// `use_username_as_clientid` two sessions of one user would take each other over.
    /// Default: `{username}-alarms` when `username` is set.
    pub alarm_username: Option<String>,
    /// Default: `password`.
    #[serde(serialize_with = "serialize_redacted")]
    pub alarm_password: Option<String>,
    /// PEM file with the CA certificate(s) that signed the broker's certificate (mqtts);
    /// without it the system roots are used.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS (both or neither).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub keep_alive_s: u64,
    /// How long the broker keeps our session while we are away (messages queue for us).
    pub session_expiry_s: u32,
    /// Largest packet we accept, announced to the broker (MQTT 5 Maximum Packet Size), which
    /// then never sends us a bigger one. Above the protocol's largest message so a payload that
    /// is too long for the protocol still reaches us and is quarantined (and counted), yet
    /// small, because it bounds what one publish can cost us.
    pub max_packet_bytes: u32,
    /// Bytes of publishes received but not yet committed and acked. When spent, the MQTT task
    /// stops reading from the broker (TCP back-pressure) until the committer acks a batch, so
    /// a flood of junk costs at most this much memory. At least `max_packet_bytes`.
    pub inflight_budget_bytes: usize,
    /// How many unacknowledged publishes the broker may have in flight to us; group commit
    /// needs many.
    pub receive_maximum: u16,
    /// Capacity of rumqttc's request channel (acks and receipts queue here).
    pub request_channel_capacity: usize,
    /// Seconds to wait for the TCP/TLS connection and CONNACK.
    pub connect_timeout_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: BrokerUrl::default(),
            client_id: DEFAULT_CLIENT_ID.into(),
            username: None,
            password: None,
            alarm_username: None,
            alarm_password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            keep_alive_s: 30,
            session_expiry_s: 86_400,
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            inflight_budget_bytes: DEFAULT_INFLIGHT_BUDGET_BYTES,
            // The MQTT 5 maximum: the broker keeps sending while a commit is in flight, so the
            // next batch is ready when the commit ends.
            receive_maximum: u16::MAX,
            request_channel_capacity: 65_536,
            connect_timeout_s: 5,
        }
    }
}

impl MqttConfig {
    /// The alarm session's client id: the gateway's own with `-alarms`, so the broker keeps
    /// a second queue, of alarms only, while the gateway is away.
    pub fn alarm_client_id(&self) -> String {
        format!("{}-alarms", self.client_id)
    }

    /// The alarm session's user name and password, if the broker wants credentials.
    pub fn alarm_credentials(&self) -> Option<(String, String)> {
        let username = self
            .alarm_username
            .clone()
            .or_else(|| self.username.as_ref().map(|username| format!("{username}-alarms")))?;
        let password = self
            .alarm_password
            .clone()
            .or_else(|| self.password.clone())
            .unwrap_or_default();
        Some((username, password))
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("MqttConfig")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("alarm_username", &self.alarm_username)
            .field("alarm_password", &self.alarm_password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("session_expiry_s", &self.session_expiry_s)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("inflight_budget_bytes", &self.inflight_budget_bytes)
            .field("receive_maximum", &self.receive_maximum)
            .field("request_channel_capacity", &self.request_channel_capacity)
            .field("connect_timeout_s", &self.connect_timeout_s)
            .finish()
    }
}

/// Which store the gateway writes to (`docs/postgres.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// One redb file in `data_dir`: the embedded default.
    #[default]
    Redb,
    /// A shared PostgreSQL database: one leader gateway writes under a lease, others stand by.
    Postgres,
}

/// Default writer lease on PostgreSQL: a standby takes over at the earliest this long after
/// the leader's last renewal, and the leader renews at a third of it. 8 s puts a dead leader's
/// replacement at 5.3-8.4 s plus the broker reconnect: alarms reach a human within 10 s.
pub const DEFAULT_LEASE_S: u64 = 8;
/// Shortest lease accepted: the leader renews at a third of it between batches, and a batch
/// commit must fit comfortably inside one renewal period.
pub const MIN_LEASE_S: u64 = 3;
/// Longest lease accepted: a dead leader's alarms wait this long for a standby.
pub const MAX_LEASE_S: u64 = 300;

/// The store: redb (default) or PostgreSQL with a writer lease.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// libpq connection string (`postgres://user:password@host:5432/db` or
    /// `host=... user=... password=...`); needed with `kind = "postgres"`. Its password is
    /// never printed.
    #[serde(serialize_with = "serialize_postgres_url")]
    pub postgres_url: Option<String>,
    /// The writer lease's length in seconds (PostgreSQL).
    pub lease_s: u64,
    /// This gateway's name in the writer lease; unique per running process. Default:
    /// the host name and the process id.
    pub holder: Option<String>,
    /// PEM file of the certificate authority that signed the PostgreSQL server's certificate.
    /// Set, every connection to PostgreSQL is TLS (whatever the URL's `sslmode`), and the
    /// server must show a certificate from it for the URL's host name: the database may be on
    /// another site, and the connection carries residents' records.
    pub postgres_ca_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Redb,
            postgres_url: None,
            lease_s: DEFAULT_LEASE_S,
            holder: None,
            postgres_ca_file: None,
        }
    }
}

impl StoreConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_s)
    }

    /// The configured holder, or `{host name}-{process id}`: unique per running process, so
    /// a restarted gateway takes the lease anew (at a new epoch) rather than inheriting it.
    pub fn holder(&self) -> String {
        self.holder
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()))
    }

    /// The parsed connection settings (`kind = "postgres"` only; validated at start).
    pub fn postgres_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let url = self
            .postgres_url
            .as_deref()
            .ok_or_else(|| invalid("store.postgres_url", "is needed with store.kind = \"postgres\""))?;
        // The parser's message never quotes the text, so it cannot leak the password.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| invalid("store.postgres_url", format!("not a PostgreSQL connection string: {e}")))?;
        match (&self.postgres_ca_file, config.get_ssl_mode()) {
            // Never `prefer`: a server (or someone in between) refusing TLS must not get
            // the connection in the clear.
            (Some(_), _) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
            (None, tokio_postgres::config::SslMode::Require) => {
                return Err(invalid(
                    "store.postgres_ca_file",
                    "is needed with sslmode=require: the server's certificate is always checked, \
                     against this certificate authority",
                ));
            }
            (None, _) => {
                // Without a certificate authority to check the server against, no TLS.
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            }
        }
        Ok(config)
    }

    /// The connection options of a PostgreSQL store held by `holder`: the lease's length and,
    /// with `postgres_ca_file`, the TLS connector (its certificate authority read now).
    pub fn postgres_options(&self, holder: impl Into<String>) -> Result<PgStoreOptions, ConfigError> {
        let mut options = PgStoreOptions::new(holder, self.lease());
        if let Some(path) = &self.postgres_ca_file {
            let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            options.tls = Some(
                PgTls::with_authority(&pem)
                    .map_err(|message| invalid("store.postgres_ca_file", format!("{}: {message}", path.display())))?,
            );
        }
        Ok(options)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_LEASE_S..=MAX_LEASE_S).contains(&self.lease_s) {
            return Err(invalid(
                "store.lease_s",
                format!("must be from {MIN_LEASE_S} to {MAX_LEASE_S} seconds"),
            ));
        }
        if let Some(holder) = &self.holder
            && (holder.trim().is_empty() || holder.len() > 200)
        {
            return Err(invalid("store.holder", "must be 1-200 characters, not only spaces"));
        }
        match self.kind {
            StoreKind::Postgres => {
                self.postgres_config()?;
                self.postgres_options("validation")?;
            }
            StoreKind::Redb => {
                if self.postgres_url.is_some() {
                    return Err(invalid(
                        "store.postgres_url",
                        "is set but store.kind is \"redb\"; set store.kind = \"postgres\" to use it",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("postgres_url", &self.postgres_url.as_deref().map(redact_postgres_url))
            .field("lease_s", &self.lease_s)
            .field("holder", &self.holder)
            .field("postgres_ca_file", &self.postgres_ca_file)
            .finish()
    }
}

/// The machine's name for the default lease holder (Linux; `gateway` where it is unknown).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gateway".to_owned())
}

const REDACTED: &str = "<redacted>";

/// The connection string with its password replaced, in either form libpq accepts: a URL's
/// `user:password@` and `password=` query parameter, or a key-value string's `password=...`
/// (quoted or not). If the password still shows afterwards (a form this does not know), the
/// whole string is withheld.
pub fn redact_postgres_url(url: &str) -> String {
    let redacted = if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(end) => rest.split_at(end),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}@{hosts}"),
                None => format!("{userinfo}@{hosts}"),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some(("password", _)) => format!("password={REDACTED}"),
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_owned(),
        };
        format!("{scheme}://{authority}{tail}")
    } else {
        redact_key_value_password(url)
    };
    let password = url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|config| config.get_password().map(<[u8]>::to_vec));
    match password {
        Some(password) if !password.is_empty() && contains_bytes(redacted.as_bytes(), &password) => REDACTED.to_owned(),
        _ => redacted,
    }
}

/// `password=value` or `password = 'quoted value'` in a key-value connection string.
fn redact_key_value_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("password") {
        let (before, from_key) = rest.split_at(start);
        out.push_str(before);
        let after_key = &from_key["password".len()..];
        let trimmed = after_key.trim_start();
        let preceded_by_boundary = before.is_empty() || before.ends_with(char::is_whitespace);
        match trimmed.strip_prefix('=') {
            Some(value) if preceded_by_boundary => {
                let value = value.trim_start();
                let end = if let Some(quoted) = value.strip_prefix('\'') {
                    let mut escaped = false;
                    let mut end = value.len();
                    for (index, c) in quoted.char_indices() {
                        match c {
                            _ if escaped => escaped = false,
                            '\\' => escaped = true,
                            '\'' => {
                                end = index + 2;
                                break;
                            }
                            _ => {}
                        }
                    }
                    end
                } else {
                    value.find(char::is_whitespace).unwrap_or(value.len())
                };
                out.push_str("password=");
                out.push_str(REDACTED);
                rest = value.get(end..).unwrap_or("");
            }
            _ => {
                out.push_str("password");
                rest = after_key;
            }
        }
    }
    out.push_str(rest);
    out
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// A connection string serialises with its password redacted.
fn serialize_postgres_url<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact_postgres_url(url)),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most publishes committed in one transaction.
    pub max_batch: usize,
    /// Publishes buffered between the MQTT task and the committer.
    pub queue_capacity: usize,
    /// Rejected payloads kept for inspection (oldest evicted first).
    pub quarantine_capacity: usize,
    /// Wait before retrying after a failed commit.
    pub commit_retry_ms: u64,
    /// Longest a graceful shutdown may take before giving up on a clean disconnect.
    pub shutdown_timeout_s: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            // Group commit: a batch is whatever arrived during the previous commit, so it only
            // grows this large when the committer is behind; big batches share the fixed
            // per-commit cost (fsync, rewritten B-tree pages) among many events.
            max_batch: 16_384,
            queue_capacity: 65_536,
            quarantine_capacity: 10_000,
            commit_retry_ms: 500,
            shutdown_timeout_s: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format must be text or json, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `tec_gateway=debug,info`); RUST_LOG wins if set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Alert-engine settings; anything left out keeps the engine's default
/// ([`crate::alerts::EngineConfig::default`]).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub offline_missed_heartbeats: Option<u32>,
    pub default_heartbeat_interval_s: Option<u32>,
    pub last_will_grace_s: Option<u32>,
    pub cancel_grace_s: Option<u32>,
    pub low_battery_percent: Option<u8>,
    pub battery_recovered_percent: Option<u8>,
    pub late_threshold_ms: Option<i64>,
    /// IANA name, e.g. "Europe/London": the residents' local time for night and daily rules.
    pub time_zone: Option<String>,
    /// Local times "HH:MM".
    pub night_start: Option<String>,
    pub night_end: Option<String>,
    pub day_start: Option<String>,
    pub escalation: Option<EscalationConfig>,
    /// Devices offline within `flood_window_s` that make one infrastructure incident
    /// (0 switches grouping off).
    pub flood_threshold: Option<u32>,
    pub flood_window_s: Option<u32>,
    pub flood_settle_s: Option<u32>,
}

/// Acknowledgement targets in seconds after raising, ascending, per priority.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    pub life_safety_s: Vec<u32>,
    pub wellbeing_s: Vec<u32>,
    pub technical_s: Vec<u32>,
}

impl AlertsConfig {
    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> Result<crate::alerts::EngineConfig, ConfigError> {
        let mut engine = crate::alerts::EngineConfig::default();
        if let Some(v) = self.offline_missed_heartbeats {
            if v == 0 {
                return Err(invalid("alerts.offline_missed_heartbeats", "must be at least 1"));
            }
            engine.offline_missed_heartbeats = v;
        }
        if let Some(v) = self.default_heartbeat_interval_s {
            if v == 0 {
                return Err(invalid("alerts.default_heartbeat_interval_s", "must be at least 1"));
            }
            engine.default_heartbeat_interval_s = v;
        }
        if let Some(v) = self.last_will_grace_s {
            engine.last_will_grace_s = v;
        }
        if let Some(v) = self.cancel_grace_s {
            engine.cancel_grace_s = v;
        }
        if let Some(v) = self.low_battery_percent {
            engine.low_battery_percent = v;
        }
        if let Some(v) = self.battery_recovered_percent {
            engine.battery_recovered_percent = v;
        }
        if engine.low_battery_percent > 100 || engine.battery_recovered_percent > 100 {
            return Err(invalid("alerts.low_battery_percent", "percentages must be 0-100"));
        }
        if engine.battery_recovered_percent < engine.low_battery_percent {
            return Err(invalid(
                "alerts.battery_recovered_percent",
                "must not be below low_battery_percent",
            ));
        }
        if let Some(v) = self.late_threshold_ms {
            if v < 0 {
                return Err(invalid("alerts.late_threshold_ms", "must not be negative"));
            }
            engine.late_threshold_ms = v;
        }
        if let Some(name) = &self.time_zone {
            engine.time_zone = jiff::tz::TimeZone::get(name)
                .map_err(|e| invalid("alerts.time_zone", format!("unknown time zone {name:?}: {e}")))?;
        }
        let time = |field: &'static str, text: &Option<String>| -> Result<Option<jiff::civil::Time>, ConfigError> {
            text.as_deref()
                .map(|t| {
                    t.parse::<jiff::civil::Time>()
                        .map_err(|e| invalid(field, format!("not a time of day (HH:MM): {t:?}: {e}")))
                })
                .transpose()
        };
        let start = time("alerts.night_start", &self.night_start)?;
        let end = time("alerts.night_end", &self.night_end)?;
        engine.night = (start.unwrap_or(engine.night.0), end.unwrap_or(engine.night.1));
        if let Some(day_start) = time("alerts.day_start", &self.day_start)? {
            engine.day_start = day_start;
        }
        if let Some(escalation) = &self.escalation {
            for (field, targets) in [
                ("alerts.escalation.life_safety_s", &escalation.life_safety_s),
                ("alerts.escalation.wellbeing_s", &escalation.wellbeing_s),
                ("alerts.escalation.technical_s", &escalation.technical_s),
            ] {
                if targets.windows(2).any(|pair| pair.first() >= pair.get(1)) {
                    return Err(invalid(field, "targets must be strictly ascending"));
                }
            }
            engine.escalation = crate::alerts::EscalationPolicy {
                life_safety_s: escalation.life_safety_s.clone(),
                wellbeing_s: escalation.wellbeing_s.clone(),
                technical_s: escalation.technical_s.clone(),
            };
        }
        if let Some(v) = self.flood_threshold {
            if v == 1 {
                // One device going quiet must always alert on its own.
                return Err(invalid("alerts.flood_threshold", "must be 0 (off) or at least 2"));
            }
            engine.flood_threshold = v;
        }
        if let Some(v) = self.flood_window_s {
            if v == 0 {
                return Err(invalid("alerts.flood_window_s", "must be at least 1"));
            }
            engine.flood_window_s = v;
        }
        if let Some(v) = self.flood_settle_s {
            engine.flood_settle_s = v;
        }
        Ok(engine)
    }
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub broker: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub http: Option<String>,
}

impl Config {
    /// Parses TOML text (no environment, no flags) and validates it.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// File (if any), then environment (read through `env`), then flags.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
                config
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.apply_overrides(overrides)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |var: &str| env(var).filter(|v| !v.is_empty());
        if let Some(v) = get("TEC_GATEWAY_BROKER") {
            self.mqtt.broker = BrokerUrl::parse(&v).map_err(|e| ConfigError::Env {
                var: "TEC_GATEWAY_BROKER",
                message: e.to_string(),
            })?;
        }
        if let Some(v) = get("TEC_GATEWAY_DATA") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("TEC_GATEWAY_HTTP") {
            self.http = v.parse().map_err(|e| ConfigError::Env {
                var: "TEC_GATEWAY_HTTP",
                message: format!("not a socket address (host:port): {e}"),
            })?;
        }
        if let Some(v) = get("TEC_GATEWAY_MQTT_CLIENT_ID") {
            self.mqtt.client_id = v;
        }
        if let Some(v) = get("TEC_GATEWAY_MQTT_USERNAME") {
            self.mqtt.username = Some(v);
        }
        if let Some(v) = get("TEC_GATEWAY_MQTT_PASSWORD") {
            self.mqtt.password = Some(v);
        }
        if let Some(v) = get("TEC_GATEWAY_MQTT_CA_FILE") {
            self.mqtt.ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("TEC_GATEWAY_STORE_POSTGRES_CA_FILE") {
            self.store.postgres_ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("TEC_GATEWAY_MAX_BATCH") {
            self.ingest.max_batch = v.parse().map_err(|e| ConfigError::Env {
                var: "TEC_GATEWAY_MAX_BATCH",
                message: format!("not a number: {e}"),
            })?;
        }
        if let Some(v) = get("TEC_GATEWAY_LOG_LEVEL") {
            self.log.level = v;
        }
        if let Some(v) = get("TEC_GATEWAY_LOG_FORMAT") {
            self.log.format = v.parse().map_err(|message| ConfigError::Env {
                var: "TEC_GATEWAY_LOG_FORMAT",
                message,
            })?;
        }
        Ok(())
    }

    fn apply_overrides(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        if let Some(broker) = &overrides.broker {
            self.mqtt.broker = BrokerUrl::parse(broker).map_err(|e| invalid("--broker", e.to_string()))?;
        }
        if let Some(dir) = &overrides.data_dir {
            self.data_dir.clone_from(dir);
        }
        if let Some(http) = &overrides.http {
            self.http = http
                .parse()
                .map_err(|e| invalid("--http", format!("not a socket address (host:port): {e}")))?;
        }
        Ok(())
    }

    /// Checks the values that serde cannot (ranges, combinations).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mqtt = &self.mqtt;
        if mqtt.client_id.is_empty() || mqtt.client_id.starts_with(' ') || mqtt.client_id.len() > 128 {
            return Err(invalid(
                "mqtt.client_id",
                "must be 1-128 characters and not start with a space",
            ));
        }
        if protocol::DeviceId::new(&mqtt.client_id).is_ok() {
            return Err(invalid(
                "mqtt.client_id",
                format!(
                    "{:?} is also a valid device id, so a device could connect with it and take over \
                     the gateway's session; use a character devices cannot have, e.g. {DEFAULT_CLIENT_ID:?}",
                    mqtt.client_id
                ),
            ));
        }
        if protocol::DeviceId::new(&mqtt.alarm_client_id()).is_ok() {
            return Err(invalid(
                "mqtt.client_id",
                format!(
                    "the alarm session's client id {:?} is a valid device id, so a device could take \
                     over that session; use a character devices cannot have, e.g. {DEFAULT_CLIENT_ID:?}",
                    mqtt.alarm_client_id()
                ),
            ));
        }
        if let (Some(alarm), Some(main)) = (mqtt.alarm_credentials(), &mqtt.username)
            && &alarm.0 == main
        {
            return Err(invalid(
                "mqtt.alarm_username",
                "must differ from mqtt.username: a broker that takes the client id from the user name \
                 would let the two sessions take each other over",
            ));
        }
        if mqtt.keep_alive_s < 5 || mqtt.keep_alive_s > 65_535 {
            return Err(invalid("mqtt.keep_alive_s", "must be from 5 to 65535 seconds"));
        }
        if (mqtt.max_packet_bytes as usize) < MIN_MAX_PACKET_BYTES {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                format!("must be at least {MIN_MAX_PACKET_BYTES} (the protocol's largest message plus headers)"),
            ));
        }
        if mqtt.inflight_budget_bytes < mqtt.max_packet_bytes as usize {
            return Err(invalid(
                "mqtt.inflight_budget_bytes",
                format!(
                    "must be at least mqtt.max_packet_bytes ({}), or one largest publish could never be taken",
                    mqtt.max_packet_bytes
                ),
            ));
        }
        if mqtt.receive_maximum == 0 {
            return Err(invalid("mqtt.receive_maximum", "must be at least 1"));
        }
        if mqtt.request_channel_capacity == 0 {
            return Err(invalid("mqtt.request_channel_capacity", "must be at least 1"));
        }
        if mqtt.connect_timeout_s == 0 {
            return Err(invalid("mqtt.connect_timeout_s", "must be at least 1"));
        }
        if mqtt.password.is_some() && mqtt.username.is_none() {
            return Err(invalid("mqtt.password", "a password needs a username"));
        }
        if mqtt.client_cert_file.is_some() != mqtt.client_key_file.is_some() {
            return Err(invalid(
                "mqtt.client_cert_file",
                "client_cert_file and client_key_file go together",
            ));
        }
        if !mqtt.broker.tls && (mqtt.ca_file.is_some() || mqtt.client_cert_file.is_some()) {
            return Err(invalid(
                "mqtt.ca_file",
                "TLS files are set but the broker URL is mqtt://; use mqtts://",
            ));
        }
        let ingest = &self.ingest;
        if ingest.max_batch == 0 || ingest.max_batch > 65_536 {
            return Err(invalid("ingest.max_batch", "must be from 1 to 65536"));
        }
        if ingest.queue_capacity == 0 {
            return Err(invalid("ingest.queue_capacity", "must be at least 1"));
        }
        if ingest.quarantine_capacity == 0 {
            return Err(invalid("ingest.quarantine_capacity", "must be at least 1"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", format!("not a log filter: {:?}", self.log.level)));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.alerts.engine_config()?;
        self.access.validate()?;
        self.retention.validate().map_err(|e| invalid(e.field, e.message))?;
        self.store.validate()?;
        Ok(())
    }

    pub fn commit_retry(&self) -> Duration {
        Duration::from_millis(self.ingest.commit_retry_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.ingest.shutdown_timeout_s)
    }
}

/// One row of the configuration reference in `gateway/README.md`: a field's TOML path and
/// what it means, in one line. The table's other columns (environment variable, default)
/// come from [`ENV_VARS`] and [`Config::documented_defaults`], and
/// `gateway/tests/config_docs.rs` fails when a field has no entry here or the README differs
/// from the code, so the reference cannot drift from what the gateway does.
#[derive(Debug, Clone, Copy)]
pub struct FieldDoc {
    /// Dotted TOML path, e.g. `ingest.max_batch`.
    pub path: &'static str,
    pub meaning: &'static str,
}

/// Every configuration field, in one line each. A new field needs an entry here (the
/// `config_docs` test names the missing ones).
pub const FIELD_DOCS: &[FieldDoc] = &[
    FieldDoc {
        path: "data_dir",
        meaning: "directory of the redb store (created if missing)",
    },
    FieldDoc {
        path: "http",
        meaning: "listen address for /healthz and /metrics; port 0 picks a free port",
    },
    FieldDoc {
        path: "mqtt.broker",
        meaning: "`mqtt://host[:port]` (port 1883) or `mqtts://host[:port]` (TLS, port 8883)",
    },
    FieldDoc {
        path: "mqtt.client_id",
        meaning: "keep it stable: the broker keeps our session and unacknowledged messages under it",
    },
    FieldDoc {
        path: "mqtt.username",
        meaning: "broker user name",
    },
    FieldDoc {
        path: "mqtt.password",
        meaning: "broker password (needs a username; never printed)",
    },
    FieldDoc {
        path: "mqtt.alarm_username",
        meaning: "broker user of the alarm session (client id `{client_id}-alarms`, reads tec/v1/dev/+/alarm); default `{username}-alarms` when username is set; must differ from username",
    },
    FieldDoc {
        path: "mqtt.alarm_password",
        meaning: "the alarm session's broker password (default: mqtt.password; never printed)",
    },
    FieldDoc {
        path: "mqtt.ca_file",
        meaning: "mqtts: PEM CA that signed the broker's certificate (without it: the system roots)",
    },
    FieldDoc {
        path: "mqtt.client_cert_file",
        meaning: "mqtts: PEM client certificate for mutual TLS (together with the key)",
    },
    FieldDoc {
        path: "mqtt.client_key_file",
        meaning: "mqtts: PEM client key for mutual TLS (together with the certificate)",
    },
    FieldDoc {
        path: "mqtt.keep_alive_s",
        meaning: "MQTT keep-alive, 5 to 65535 seconds",
    },
    FieldDoc {
        path: "mqtt.session_expiry_s",
        meaning: "how long the broker keeps our session (and queues for us) while we are away",
    },
    FieldDoc {
        path: "mqtt.max_packet_bytes",
        meaning: "largest packet the broker may send us (MQTT 5); larger payloads below it are quarantined (at least 1024)",
    },
    FieldDoc {
        path: "mqtt.inflight_budget_bytes",
        meaning: "bytes of publishes held between receipt and commit; when spent the gateway stops reading (at least max_packet_bytes)",
    },
    FieldDoc {
        path: "mqtt.receive_maximum",
        meaning: "unacknowledged publishes the broker may have in flight to us (group commit needs many)",
    },
    FieldDoc {
        path: "mqtt.request_channel_capacity",
        meaning: "capacity of rumqttc's request channel (acks and downlinks queue here)",
    },
    FieldDoc {
        path: "mqtt.connect_timeout_s",
        meaning: "TCP/TLS connect and CONNACK timeout",
    },
    FieldDoc {
        path: "ingest.max_batch",
        meaning: "most publishes per commit, 1 to 65536 (a batch is what arrived during the previous commit)",
    },
    FieldDoc {
        path: "ingest.queue_capacity",
        meaning: "publishes buffered between the MQTT task and the committer",
    },
    FieldDoc {
        path: "ingest.quarantine_capacity",
        meaning: "rejected payloads kept for inspection (oldest evicted first)",
    },
    FieldDoc {
        path: "ingest.commit_retry_ms",
        meaning: "first wait before retrying a failed commit (doubles, at most 5 s)",
    },
    FieldDoc {
        path: "ingest.shutdown_timeout_s",
        meaning: "longest a graceful shutdown may take",
    },
    FieldDoc {
        path: "log.level",
        meaning: "tracing filter (`info`, `tec_gateway=debug,info`); `RUST_LOG` wins if set",
    },
    FieldDoc {
        path: "log.format",
        meaning: "`text` or `json`, to stderr",
    },
    FieldDoc {
        path: "alerts.offline_missed_heartbeats",
        meaning: "heartbeat intervals of silence before \"device offline\"",
    },
    FieldDoc {
        path: "alerts.default_heartbeat_interval_s",
        meaning: "heartbeat interval assumed until a device's heartbeat announces its own",
    },
    FieldDoc {
        path: "alerts.last_will_grace_s",
        meaning: "delay from the broker's last will for a device to its offline alert",
    },
    FieldDoc {
        path: "alerts.cancel_grace_s",
        meaning: "a resident's cancel this soon after the alarm resolves it (not for environmental hazards)",
    },
    FieldDoc {
        path: "alerts.low_battery_percent",
        meaning: "heartbeat battery below this raises the low-battery alert",
    },
    FieldDoc {
        path: "alerts.battery_recovered_percent",
        meaning: "the low-battery latch clears only above this",
    },
    FieldDoc {
        path: "alerts.late_threshold_ms",
        meaning: "events that raise their alert later than this after their device time (delivery, or a wait for the store) mark it as late",
    },
    FieldDoc {
        path: "alerts.time_zone",
        meaning: "the residents' local time (IANA name) for night and daily rules",
    },
    FieldDoc {
        path: "alerts.night_start",
        meaning: "local start of the night period (HH:MM)",
    },
    FieldDoc {
        path: "alerts.night_end",
        meaning: "local end of the night period (HH:MM); equal to the start means no night",
    },
    FieldDoc {
        path: "alerts.day_start",
        meaning: "local start of a resident's day for \"no movement by\" rules (HH:MM)",
    },
    FieldDoc {
        path: "alerts.escalation.life_safety_s",
        meaning: "acknowledgement targets for life-safety alerts, seconds after raising, ascending",
    },
    FieldDoc {
        path: "alerts.escalation.wellbeing_s",
        meaning: "acknowledgement targets for wellbeing alerts, seconds after raising, ascending",
    },
    FieldDoc {
        path: "alerts.escalation.technical_s",
        meaning: "acknowledgement targets for technical alerts, seconds after raising, ascending",
    },
    FieldDoc {
        path: "alerts.flood_threshold",
        meaning: "devices going offline within the window that make one infrastructure incident (0 = off, else at least 2)",
    },
    FieldDoc {
        path: "alerts.flood_window_s",
        meaning: "the window the flood threshold counts in (one default heartbeat interval)",
    },
    FieldDoc {
        path: "alerts.flood_settle_s",
        meaning: "once fewer than the threshold are still silent, the incident ends after this long without change",
    },
    FieldDoc {
        path: "access.token_lifetime_s",
        meaning: "how long an API login token is valid (default: a 12-hour shift; 60 s to 7 days)",
    },
    FieldDoc {
        path: "access.login_max_failures",
        meaning: "failed API logins per username, and per client address, before further attempts get 429",
    },
    FieldDoc {
        path: "access.login_failure_window_s",
        meaning: "the window the failed logins count in (kept in memory: a restart clears it)",
    },
    FieldDoc {
        path: "access.secure_cookies",
        meaning: "mark the console's session cookie `Secure`: set it when the console is served over HTTPS through a TLS proxy (a request with `X-Forwarded-Proto: https` gets it anyway)",
    },
    FieldDoc {
        path: "retention.enabled",
        meaning: "run the retention purge daily inside the gateway (`docs/retention.md`; `tec-gateway purge` works either way)",
    },
    FieldDoc {
        path: "retention.run_at",
        meaning: "Europe/London time of the daily purge (HH:MM)",
    },
    FieldDoc {
        path: "retention.telemetry_days",
        meaning: "raw heartbeats and sensor telemetry are removed after this many days; the per-device day summaries stay",
    },
    FieldDoc {
        path: "retention.alert_years",
        meaning: "alarm events, alerts and their history are removed this many years after the alert was resolved (open alerts never)",
    },
    FieldDoc {
        path: "retention.audit_years",
        meaning: "audit entries are removed this many years after they were written (at least alert_years and erase_after_care_years)",
    },
    FieldDoc {
        path: "retention.erase_after_care_years",
        meaning: "a person in the care register is erased this many years after their care and device loans ended",
    },
    FieldDoc {
        path: "retention.quarantine_days",
        meaning: "quarantined (unreadable) payloads are removed after this many days",
    },
    FieldDoc {
        path: "retention.batch_size",
        meaning: "keys per purge transaction: the longest an alarm commit waits behind the purge (100 to 100000)",
    },
    FieldDoc {
        path: "store.kind",
        meaning: "redb (one file in data_dir) or postgres (a shared database: one leader writes, others stand by)",
    },
    FieldDoc {
        path: "store.postgres_url",
        meaning: "PostgreSQL connection string, needed with kind = postgres (its password is never printed)",
    },
    FieldDoc {
        path: "store.lease_s",
        meaning: "PostgreSQL writer lease in seconds (3 to 300): a standby takes over this long after the leader's last renewal",
    },
    FieldDoc {
        path: "store.postgres_ca_file",
        meaning: "PEM certificate authority of the PostgreSQL server: set, every connection is TLS and the server's certificate is checked",
    },
    FieldDoc {
        path: "store.holder",
        meaning: "this gateway's name in the writer lease, unique per process (default: host name and process id)",
    },
];

impl Config {
    /// The defaults as an operator meets them: [`Config::default`] with the alert settings
    /// filled in from the engine's defaults (left out, they mean exactly these values).
    pub fn documented_defaults() -> Self {
        Self {
            alerts: AlertsConfig::from_engine(&crate::alerts::EngineConfig::default()),
            ..Self::default()
        }
    }
}

impl AlertsConfig {
    /// Settings that describe `engine` (the inverse of [`AlertsConfig::engine_config`]).
    // A field added to `AlertsConfig` but not here stays `None`, and the `config_docs` test
    // names it (rather than breaking the build of every branch that adds one).
    #[allow(clippy::needless_update)]
    pub fn from_engine(engine: &crate::alerts::EngineConfig) -> Self {
        let time = |t: jiff::civil::Time| t.strftime("%H:%M").to_string();
        Self {
            offline_missed_heartbeats: Some(engine.offline_missed_heartbeats),
            default_heartbeat_interval_s: Some(engine.default_heartbeat_interval_s),
            last_will_grace_s: Some(engine.last_will_grace_s),
            cancel_grace_s: Some(engine.cancel_grace_s),
            low_battery_percent: Some(engine.low_battery_percent),
            battery_recovered_percent: Some(engine.battery_recovered_percent),
            late_threshold_ms: Some(engine.late_threshold_ms),
            time_zone: engine.time_zone.iana_name().map(str::to_owned),
            night_start: Some(time(engine.night.0)),
            night_end: Some(time(engine.night.1)),
            day_start: Some(time(engine.day_start)),
            escalation: Some(EscalationConfig {
                life_safety_s: engine.escalation.life_safety_s.clone(),
                wellbeing_s: engine.escalation.wellbeing_s.clone(),
                technical_s: engine.escalation.technical_s.clone(),
            }),
            flood_threshold: Some(engine.flood_threshold),
            flood_window_s: Some(engine.flood_window_s),
            flood_settle_s: Some(engine.flood_settle_s),
        }
    }
}

/// A broker URL serialises as the text it parses from.
impl Serialize for BrokerUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Secrets never leave the process in a serialised configuration.
fn serialize_redacted<S: serde::Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let ok = |s: &str| BrokerUrl::parse(s).unwrap();
        assert_eq!(ok("mqtt://127.0.0.1").port, 1883);
        assert_eq!(ok("mqtts://broker.example").port, 8883);
        assert!(ok("mqtts://broker.example").tls);
        assert_eq!(ok("mqtt://localhost:1999/").port, 1999);
        let v6 = ok("mqtt://[::1]:1884");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1884));
        assert_eq!(ok("mqtt://[::1]").port, 1883);
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
        assert_eq!(BrokerUrl::parse("tcp://x"), Err(BrokerUrlError::Scheme));
        assert_eq!(BrokerUrl::parse("127.0.0.1:1883"), Err(BrokerUrlError::Scheme));
        assert_eq!(BrokerUrl::parse("mqtt://"), Err(BrokerUrlError::MissingHost));
        assert_eq!(BrokerUrl::parse("mqtt://:1883"), Err(BrokerUrlError::MissingHost));
        assert_eq!(BrokerUrl::parse("mqtt://h:0"), Err(BrokerUrlError::BadPort));
        assert_eq!(BrokerUrl::parse("mqtt://h:99999"), Err(BrokerUrlError::BadPort));
        assert_eq!(BrokerUrl::parse("mqtt://h:x"), Err(BrokerUrlError::BadPort));
        assert_eq!(BrokerUrl::parse("mqtt://u@h"), Err(BrokerUrlError::Extra));
        assert_eq!(BrokerUrl::parse("mqtt://h/path"), Err(BrokerUrlError::Extra));
        assert_eq!(BrokerUrl::parse("mqtt://::1"), Err(BrokerUrlError::Extra));
        assert_eq!(BrokerUrl::parse(""), Err(BrokerUrlError::Scheme));
    }

    #[test]
    fn default_is_valid_and_password_is_redacted() {
        let mut config = Config::default();
        assert!(config.validate().is_ok());
        config.mqtt.username = Some("gw".into());
        config.mqtt.password = Some("hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn client_id_that_is_a_device_id_is_refused() {
        assert!(protocol::DeviceId::new(DEFAULT_CLIENT_ID).is_err());
        // "gw" is not a device id (too short), but its alarm session's "gw-alarms" is.
        for taken in ["tec-gateway", "gw-test", "pnd-0001", "abc", "a_b-c", "gw"] {
            let mut config = Config::default();
            config.mqtt.client_id = taken.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.contains("mqtt.client_id") && err.contains("valid device id"),
                "{taken}: {err}"
            );
        }
        for fine in ["tec.gateway", "Gateway", "tec-gateway.site-2", "tec gateway"] {
            let mut config = Config::default();
            config.mqtt.client_id = fine.into();
            assert!(config.validate().is_ok(), "{fine}");
        }
    }

    #[test]
    fn the_alarm_session_has_its_own_client_id_and_user() {
        let mut config = Config::default();
        assert_eq!(config.mqtt.alarm_client_id(), "tec.gateway-alarms");
        assert_eq!(config.mqtt.alarm_credentials(), None);
        config.mqtt.username = Some("gateway".into());
        config.mqtt.password = Some("s3cret".into());
        assert_eq!(
            config.mqtt.alarm_credentials(),
            Some(("gateway-alarms".into(), "s3cret".into()))
        );
        config.mqtt.alarm_username = Some("alarm-reader".into());
        config.mqtt.alarm_password = Some("other".into());
        assert_eq!(
            config.mqtt.alarm_credentials(),
            Some(("alarm-reader".into(), "other".into()))
        );
        assert!(config.validate().is_ok());
        config.mqtt.alarm_username = Some("gateway".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.alarm_username"), "{err}");
        assert!(
            !format!("{:?}", config.mqtt).contains("other"),
            "alarm password printed"
        );
    }

    #[test]
    fn in_flight_budget_must_hold_the_largest_packet() {
        let mut config = Config::default();
        assert_eq!(config.mqtt.max_packet_bytes, 4096);
        assert!(config.mqtt.inflight_budget_bytes >= config.mqtt.max_packet_bytes as usize);
        config.mqtt.inflight_budget_bytes = 4095;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.inflight_budget_bytes"), "{err}");
        config.mqtt.inflight_budget_bytes = 4096;
        assert!(config.validate().is_ok());
        config.mqtt.max_packet_bytes = 512;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.max_packet_bytes"), "{err}");
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    fn postgres(url: &str) -> Config {
        let mut config = Config::default();
        config.store.kind = StoreKind::Postgres;
        config.store.postgres_url = Some(url.into());
        config
    }

    #[test]
    fn the_default_store_is_redb_and_postgres_needs_a_url() {
        let config = Config::default();
        assert_eq!(config.store.kind, StoreKind::Redb);
        assert_eq!(config.store.lease(), Duration::from_secs(DEFAULT_LEASE_S));
        let mut no_url = Config::default();
        no_url.store.kind = StoreKind::Postgres;
        let error = no_url.validate().unwrap_err().to_string();
        assert!(
            error.contains("store.postgres_url") && error.contains("needed"),
            "{error}"
        );
        assert!(postgres("postgres://gw:pw@127.0.0.1:5432/tec").validate().is_ok());
        assert!(
            postgres("host=127.0.0.1 port=5432 user=gw password=pw dbname=tec")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn bad_store_settings_are_refused_with_their_field() {
        let error = postgres("postgres://gw@127.0.0.1:notaport/tec")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("store.postgres_url"), "{error}");
        let mut unused_url = Config::default();
        unused_url.store.postgres_url = Some("postgres://127.0.0.1/tec".into());
        let error = unused_url.validate().unwrap_err().to_string();
        assert!(
            error.contains("store.postgres_url") && error.contains("redb"),
            "{error}"
        );
        for lease_s in [0, 2, 301] {
            let mut config = postgres("postgres://127.0.0.1/tec");
            config.store.lease_s = lease_s;
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("store.lease_s"), "{lease_s}: {error}");
        }
        let mut blank_holder = postgres("postgres://127.0.0.1/tec");
        blank_holder.store.holder = Some("  ".into());
        let error = blank_holder.validate().unwrap_err().to_string();
        assert!(error.contains("store.holder"), "{error}");
        let parsed: Result<Config, _> = toml::from_str("[store]\nkind = \"sqlite\"\n");
        assert!(parsed.is_err());
    }

    #[test]
    fn the_holder_defaults_to_host_and_process() {
        let store = StoreConfig::default();
        assert!(
            store.holder().ends_with(&format!("-{}", std::process::id())),
            "{}",
            store.holder()
        );
        let named = StoreConfig {
            holder: Some("site-a".into()),
            ..StoreConfig::default()
        };
        assert_eq!(named.holder(), "site-a");
    }

    #[test]
    fn the_postgres_password_is_never_printed_or_serialised() {
        for (url, kept) in [
            (
                "postgres://gw:hunter2@db.example:5432/tec",
                "postgres://gw:<redacted>@db.example:5432/tec",
            ),
            (
                "postgresql://gw:hunter2@db.example",
                "postgresql://gw:<redacted>@db.example",
            ),
            (
                "postgres://gw@db.example/tec?password=hunter2&sslmode=disable",
                "postgres://gw@db.example/tec?password=<redacted>&sslmode=disable",
            ),
            (
                "host=db.example user=gw password=hunter2 dbname=tec",
                "host=db.example user=gw password=<redacted> dbname=tec",
            ),
            (
                "host=db.example password = 'hunter2 \\' x' dbname=tec",
                "host=db.example password=<redacted> dbname=tec",
            ),
            ("postgres://gw@db.example/tec", "postgres://gw@db.example/tec"),
        ] {
            assert_eq!(redact_postgres_url(url), kept, "{url}");
            let config = postgres(url);
            assert!(config.validate().is_ok(), "{url}");
            assert!(!format!("{config:?}").contains("hunter2"), "{url}");
            let serialised = toml::to_string(&config).unwrap();
            assert!(!serialised.contains("hunter2"), "{url}: {serialised}");
        }
    }
}

#[cfg(test)]
mod alerts_tests {
    use super::*;

    #[test]
    fn flood_settings_reach_the_engine_and_bad_ones_are_refused() {
        let alerts = AlertsConfig {
            flood_threshold: Some(25),
            flood_window_s: Some(600),
            flood_settle_s: Some(0),
            ..AlertsConfig::default()
        };
        let engine = alerts.engine_config().unwrap();
        assert_eq!(
            (engine.flood_threshold, engine.flood_window_s, engine.flood_settle_s),
            (25, 600, 0)
        );
        let off = AlertsConfig {
            flood_threshold: Some(0),
            ..AlertsConfig::default()
        };
        assert_eq!(off.engine_config().unwrap().flood_threshold, 0);
        for (alerts, field) in [
            (
                AlertsConfig {
                    flood_threshold: Some(1),
                    ..AlertsConfig::default()
                },
                "alerts.flood_threshold",
            ),
            (
                AlertsConfig {
                    flood_window_s: Some(0),
                    ..AlertsConfig::default()
                },
                "alerts.flood_window_s",
            ),
        ] {
            let error = alerts.engine_config().unwrap_err().to_string();
            assert!(error.contains(field), "{error}");
        }
    }
}
