//! `tec-gateway simulate`: runs the device simulator (the real firmware core, five devices
//! per home) against a broker, for demos and load tests, and prints what happened.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::config::{BrokerUrl, LogConfig};

/// How long to wait for the broker to accept a TCP connection before giving up.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Broker URL, mqtt://host[:port] (the simulated devices speak plain MQTT only).
    #[arg(long, value_name = "URL")]
    pub broker: String,
    /// Homes to simulate; each has a pendant, a door sensor, a bed sensor, a PIR and a smoke alarm.
    #[arg(long, value_name = "N")]
    pub homes: usize,
    /// Same seed, same simulated days.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// MQTT password every device uses (its id is its username).
    #[arg(
        long,
        value_name = "P",
        env = "TEC_SIM_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// Per-device passwords instead: `{id}` is replaced by each device's id (e.g. `pw-{id}`).
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "password")]
    pub password_template: Option<String>,
    /// Real seconds to run; without it, runs until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Simulated seconds per real second for the residents' days (device timers stay real time).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,
    /// Worker threads (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

/// Why the simulation could not start or ran badly.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("bad broker URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--homes must be at least 1")]
    NoHomes,
    #[error("--password-template must contain {{id}}")]
    BadTemplate,
    #[error("--speed must be a positive number, not {0}")]
    BadSpeed(f64),
    #[error("--duration must be a positive number of seconds, not {0}")]
    BadDuration(f64),
    #[error("cannot reach the broker at {host}:{port}: {reason}")]
    Unreachable { host: String, port: u16, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("simulation failed: {0}")]
    Simulator(#[from] simulator::SimError),
    #[error("no device managed to connect to the broker (check the URL and the credentials)")]
    NothingConnected,
}

impl SimulateError {
    fn exit_code(&self) -> ExitCode {
        match self {
            SimulateError::BadUrl { .. }
            | SimulateError::NoHomes
            | SimulateError::BadTemplate
            | SimulateError::BadSpeed(_)
            | SimulateError::BadDuration(_) => ExitCode::from(EXIT_CONFIG),
            _ => ExitCode::from(EXIT_RUNTIME),
        }
    }
}

/// Checks the arguments and turns them into a simulator run.
pub fn sim_config(args: &SimulateArgs) -> Result<simulator::SimConfig, SimulateError> {
    let bad_url = |reason: String| SimulateError::BadUrl {
        url: args.broker.clone(),
        reason,
    };
    let url = BrokerUrl::parse(&args.broker).map_err(|e| bad_url(e.to_string()))?;
    if url.tls {
        return Err(bad_url("the simulator speaks plain mqtt:// only".into()));
    }
    if args.homes == 0 {
        return Err(SimulateError::NoHomes);
    }
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(SimulateError::BadSpeed(args.speed));
    }
    let duration = match args.duration {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => return Err(SimulateError::BadDuration(secs)),
    };
    let mut config = simulator::SimConfig::new(url.host, url.port, args.homes, args.seed);
    config.password = match &args.password_template {
        Some(template) if template.contains("{id}") => {
            let template = template.clone();
            simulator::Password::PerDevice(std::sync::Arc::new(move |id: &protocol::DeviceId| {
                template.replace("{id}", id.as_str())
            }))
        }
        Some(_) => return Err(SimulateError::BadTemplate),
        None => simulator::Password::Shared(args.password.clone()),
    };
    config.speed = args.speed;
    config.duration = duration;
    if let Some(duration) = duration {
        // Every home must start well before a short run ends.
        config.ramp_up = config.ramp_up.min(duration / 4);
    }
    config.threads = args.threads;
    Ok(config)
}

/// Fails fast (instead of devices retrying forever) when nothing listens at the address.
pub(super) async fn probe_broker(host: &str, port: u16) -> Result<(), SimulateError> {
    let unreachable = |reason: String| SimulateError::Unreachable {
        host: host.to_owned(),
        port,
        reason,
    };
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .collect();
    let mut last_error = String::from("the name resolves to no address");
    for addr in addrs {
        match tokio::time::timeout(BROKER_PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no answer within {BROKER_PROBE_TIMEOUT:?}"),
        }
    }
    Err(unreachable(last_error))
}

async fn simulate(args: &SimulateArgs) -> Result<simulator::SimReport, SimulateError> {
    let config = sim_config(args)?;
    probe_broker(&config.broker_host, config.broker_port).await?;
    tracing::info!(
        homes = config.homes,
        seed = config.seed,
        speed = config.speed,
        "simulation starting"
    );
    let report = simulator::run(config, shutdown_signal()).await?;
    if report.connects == 0 {
        return Err(SimulateError::NothingConnected);
    }
    Ok(report)
}

/// Runs the simulation and prints its report; errors go to stderr with a non-zero exit code.
pub fn run(args: &SimulateArgs) -> ExitCode {
    super::init_logging(&LogConfig {
        level: "warn".into(),
        ..LogConfig::default()
    });
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimulateError::Runtime)
        .and_then(|runtime| runtime.block_on(simulate(args)));
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tec-gateway simulate: {e}");
            e.exit_code()
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No way to hear a signal: run until --duration ends.
        std::future::pending::<()>().await;
    }
}
