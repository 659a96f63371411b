//! `tec-gateway demo`: the gateway, its web console and a few hundred simulated homes (the
//! real firmware core) in one process, on a fresh data directory with the demo borough's
//! register and residents and one user per role, until Ctrl-C or SIGTERM. Calls for help come
//! `--tempo` times as often as in life, so the queue shows an alarm within seconds.
//!
//! With nothing installed it runs its own MQTT 5 broker in the process (`crate::broker`:
//! anonymous, in memory, loopback only); `--broker URL` runs against an existing one instead.
//! [`demo_with_broker`] runs everything against the broker at an address, whichever it is.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{EXIT_CONFIG, EXIT_RUNTIME, ShutdownSignals};
use crate::app::{self, GatewayHandle};
use crate::config::{BrokerUrl, Config, LogConfig, MqttConfig};
use crate::demo_run::{Login, demo_rates, prepare_store};
use crate::domain::{Clock as _, SystemClock, Timestamp};
use crate::store::{REPORT_TIMEZONE, Store};

/// When the first simulated resident presses the pendant after the homes start.
const OPENING_PRESS_AFTER: Duration = Duration::from_secs(3);
/// How long the gateway may take to connect and subscribe before the demo gives up.
const GATEWAY_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the broker keeps the demo gateway's session after it stops: short, because every
/// demo run has its own client id and nothing comes back for an old one.
const DEMO_SESSION_EXPIRY_S: u32 = 60;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// An existing MQTT broker to run against, mqtt://host[:port], instead of the embedded one.
    /// Use a test broker, never a production one: the simulated devices publish on it as real
    /// devices would.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Where the web console listens (port 0 picks a free one; the URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Simulated homes, each with a pendant, a door sensor, a bed sensor, a PIR and a smoke alarm.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub homes: usize,
    /// Calls for help (presses, falls, smoke) this many times as often as real residents make
    /// them, 1 to 5000. At 300, 200 homes raise an alarm every six or seven seconds.
    #[arg(long, value_name = "X", default_value_t = 300.0)]
    pub tempo: f64,
    /// Same seed, same borough and same simulated days.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Keep the demo's data here (a new or empty directory) instead of a temporary directory
    /// removed at exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Why the demo did not run, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DemoCliError {
    #[error("bad broker URL {url:?}: {reason}")]
    BadBrokerUrl { url: String, reason: String },
    #[error("cannot start the embedded MQTT broker: {0}")]
    EmbeddedBroker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Setup(#[from] crate::demo_run::DemoRunError),
    #[error("--data-dir {0} is not empty: the demo starts from an empty data directory")]
    DataDirNotEmpty(PathBuf),
    #[error("--data-dir {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make a temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Unreachable(super::simulate::SimulateError),
    #[error("cannot write the demo store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the gateway did not start: {0}")]
    Start(#[from] app::StartError),
    #[error("the gateway did not connect to the broker within {0:?}")]
    NotReady(Duration),
    #[error("the simulation failed: {0}")]
    Simulator(#[from] simulator::SimError),
    #[error("the gateway did not stop cleanly: {0}")]
    Shutdown(#[from] app::ShutdownError),
    #[error("startup task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl DemoCliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            DemoCliError::BadBrokerUrl { .. }
            | DemoCliError::DataDirNotEmpty(_)
            | DemoCliError::Setup(
                crate::demo_run::DemoRunError::BadTempo(_)
                | crate::demo_run::DemoRunError::NoHomes
                | crate::demo_run::DemoRunError::TooManyHomes { .. },
            ) => ExitCode::from(EXIT_CONFIG),
            _ => ExitCode::from(EXIT_RUNTIME),
        }
    }
}

/// The demo's data directory: a temporary one (removed when this is closed) or the user's.
#[derive(Debug)]
enum DataDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl DataDir {
    /// `--data-dir` must be new or empty: the demo never mixes its made-up residents into
    /// someone's data.
    fn open(requested: Option<&Path>) -> Result<Self, DemoCliError> {
        let Some(dir) = requested else {
            return tempfile::Builder::new()
                .prefix("tec-demo-")
                .tempdir()
                .map(DataDir::Temporary)
                .map_err(DemoCliError::TempDir);
        };
        let io = |source| DemoCliError::DataDir {
            dir: dir.to_owned(),
            source,
        };
        if dir.exists() {
            if std::fs::read_dir(dir).map_err(io)?.next().is_some() {
                return Err(DemoCliError::DataDirNotEmpty(dir.to_owned()));
            }
        } else {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        Ok(DataDir::Kept(dir.to_owned()))
    }

    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(dir) => dir.path(),
            DataDir::Kept(dir) => dir,
        }
    }

    /// Removes a temporary directory (reporting a failure); keeps a requested one.
    fn close(self) -> Result<(), DemoCliError> {
        match self {
            DataDir::Temporary(dir) => {
                let path = dir.path().to_owned();
                dir.close()
                    .map_err(|source| DemoCliError::DataDir { dir: path, source })
            }
            DataDir::Kept(_) => Ok(()),
        }
    }
}

/// Runs the demo until Ctrl-C or SIGTERM; errors go to stderr with a non-zero exit code.
pub fn run(args: &DemoArgs) -> ExitCode {
    super::init_logging(&LogConfig {
        level: format!("warn,{}", crate::broker::QUIET_LOG_DIRECTIVES),
        ..LogConfig::default()
    });
    match demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tec-gateway demo: {e}");
            e.exit_code()
        }
    }
}

fn demo(args: &DemoArgs) -> Result<(), DemoCliError> {
    let external_broker = args.broker.as_deref().map(plain_broker_url).transpose()?;
    // Checked before anything is made, so bad input leaves nothing behind.
    demo_rates(args.tempo)?;
    if args.homes == 0 {
        return Err(crate::demo_run::DemoRunError::NoHomes.into());
    }
    let data_dir = DataDir::open(args.data_dir.as_deref())?;
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DemoCliError::Runtime)
        .and_then(|runtime| runtime.block_on(demo_on(args, external_broker.as_ref(), data_dir.path())));
    // The runtime is gone (the store closed with the gateway): the directory can go.
    let closed = data_dir.close();
    outcome.and(closed)
}

/// Runs the demo against `external` or, without one, against an embedded broker on a free
/// loopback port, stopped after the gateway so that the gateway commits and acknowledges what
/// it holds first.
async fn demo_on(args: &DemoArgs, external: Option<&BrokerUrl>, data_dir: &Path) -> Result<(), DemoCliError> {
    if let Some(broker) = external {
        return demo_with_broker(args, broker, data_dir).await;
    }
    let embedded = crate::broker::EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = BrokerUrl {
        tls: false,
        host: embedded.addr().ip().to_string(),
        port: embedded.addr().port(),
    };
    let outcome = demo_with_broker(args, &url, data_dir).await;
    embedded.shutdown().await;
    outcome
}

/// The simulated devices speak plain MQTT only.
fn plain_broker_url(url: &str) -> Result<BrokerUrl, DemoCliError> {
    let bad = |reason: String| DemoCliError::BadBrokerUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = BrokerUrl::parse(url).map_err(|e| bad(e.to_string()))?;
    if parsed.tls {
        return Err(bad("the simulated devices speak plain mqtt:// only".into()));
    }
    Ok(parsed)
}

/// Everything but the broker: fills the store, starts the gateway and the console on it,
/// prints the logins, runs the homes against `broker` until a signal, then stops the homes
/// and the gateway, in that order.
async fn demo_with_broker(args: &DemoArgs, broker: &BrokerUrl, data_dir: &Path) -> Result<(), DemoCliError> {
    // Listen first: a Ctrl-C during start-up must still mean a clean stop.
    let mut signals = ShutdownSignals::install();
    let stop = signals.wait();
    tokio::pin!(stop);
    let rates = demo_rates(args.tempo)?;
    super::simulate::probe_broker(&broker.host, broker.port)
        .await
        .map_err(DemoCliError::Unreachable)?;

    let (seed, homes, dir) = (args.seed, args.homes, data_dir.to_owned());
    let now = SystemClock.now();
    let logins = tokio::task::spawn_blocking(move || -> Result<Vec<Login>, DemoCliError> {
        let store = Store::open_in_dir(&dir)?;
        Ok(prepare_store(&store, seed, homes, london_today(now), now)?)
    })
    .await??;

    let handle = app::spawn(gateway_config(args.http, broker, data_dir), Arc::new(SystemClock)).await?;
    tokio::select! {
        subscribed = wait_until_subscribed(&handle) => if !subscribed {
            handle.shutdown().await?;
            return Err(DemoCliError::NotReady(GATEWAY_READY_TIMEOUT));
        },
        // Stopped before the homes started: nothing more to do.
        () = &mut stop => {
            handle.shutdown().await?;
            return Ok(());
        }
    }
    print_welcome(args, broker, handle.http_addr(), data_dir, &logins);
    tracing::info!(homes, tempo = args.tempo, "demo homes starting");

    let mut homes_config = simulator::SimConfig::new(broker.host.clone(), broker.port, homes, seed);
    homes_config.rates = rates;
    // The first home calls for help at once, so the queue shows an alarm within seconds.
    homes_config.opening_press = Some(OPENING_PRESS_AFTER);
    let simulated = simulator::run(homes_config, stop).await;
    // The homes have stopped (each device said goodbye); now the gateway commits what it has.
    let stopped = handle.shutdown().await;
    let report = simulated?;
    stopped?;
    println!(
        "demo stopped: {} presses, {} falls, {} smoke alarms in {:.0?}",
        report.presses, report.falls, report.smoke_alarms, report.real_elapsed
    );
    Ok(())
}

/// The gateway's settings for the demo: the console on `http`, the store in `data_dir`, and a
/// client id of its own so that pointing the demo at a shared broker never takes over another
/// gateway's session.
fn gateway_config(http: SocketAddr, broker: &BrokerUrl, data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_owned(),
        http,
        mqtt: MqttConfig {
            broker: broker.clone(),
            client_id: format!("tec.demo.{:08x}", rand::random::<u32>()),
            session_expiry_s: DEMO_SESSION_EXPIRY_S,
            ..MqttConfig::default()
        },
        ..Config::default()
    }
}

/// Connected and subscribed (so the first alarm is not published to nobody), or timed out.
async fn wait_until_subscribed(handle: &GatewayHandle) -> bool {
    let subscribed = async {
        while !handle.mqtt_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(GATEWAY_READY_TIMEOUT, subscribed).await.is_ok()
}

/// Today in London, where the register's dates are.
fn london_today(now: Timestamp) -> jiff::civil::Date {
    let instant = now.to_jiff().unwrap_or_else(jiff::Timestamp::now);
    let zone = jiff::tz::TimeZone::get(REPORT_TIMEZONE).unwrap_or(jiff::tz::TimeZone::UTC);
    instant.to_zoned(zone).date()
}

fn print_welcome(args: &DemoArgs, broker: &BrokerUrl, http: SocketAddr, data_dir: &Path, logins: &[Login]) {
    let which = if args.broker.is_some() {
        "the broker"
    } else {
        "the embedded broker"
    };
    let mut text = format!(
        "TEC demo: {} simulated homes ({} devices) at tempo {} on {which} {broker}\n\
         console: http://{http}/\n\
         one-time logins (each must set a new password at first login):\n",
        args.homes,
        args.homes * simulator::DeviceKind::ALL.len(),
        args.tempo,
    );
    for login in logins {
        text.push_str(&format!(
            "  login: {:<12} role: {:<12} one-time password: {}\n",
            login.username,
            login.role.to_string(),
            login.one_time_password
        ));
    }
    let kept = if args.data_dir.is_some() {
        "kept at exit"
    } else {
        "removed at exit"
    };
    text.push_str(&format!(
        "data directory: {} ({kept})\nCtrl-C stops the demo.\n",
        data_dir.display()
    ));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Nobody to tell if stdout is closed: the demo runs on regardless.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_plain_mqtt_urls_are_taken() {
        let url = plain_broker_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 1884));
        assert!(matches!(
            plain_broker_url("mqtts://127.0.0.1"),
            Err(DemoCliError::BadBrokerUrl { .. })
        ));
        assert!(matches!(
            plain_broker_url("http://127.0.0.1"),
            Err(DemoCliError::BadBrokerUrl { .. })
        ));
    }

    #[test]
    fn a_requested_data_dir_must_be_new_or_empty_and_is_kept() {
        let parent = tempfile::tempdir().unwrap();
        let fresh = parent.path().join("new");
        let dir = DataDir::open(Some(&fresh)).unwrap();
        assert!(fresh.is_dir());
        dir.close().unwrap();
        assert!(fresh.is_dir(), "a requested directory is kept");

        std::fs::write(fresh.join("something"), b"x").unwrap();
        assert!(matches!(
            DataDir::open(Some(&fresh)),
            Err(DemoCliError::DataDirNotEmpty(_))
        ));
    }

    #[test]
    fn a_temporary_data_dir_is_removed_at_close() {
        let dir = DataDir::open(None).unwrap();
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        dir.close().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn each_demo_gateway_has_its_own_client_id() {
        let broker = plain_broker_url("mqtt://127.0.0.1").unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], 0));
        let one = gateway_config(http, &broker, Path::new("/tmp/x"));
        let two = gateway_config(http, &broker, Path::new("/tmp/x"));
        assert_ne!(one.mqtt.client_id, two.mqtt.client_id);
        assert_ne!(one.mqtt.client_id, crate::config::DEFAULT_CLIENT_ID);
        one.validate().unwrap();
    }
}
