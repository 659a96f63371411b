//! The `tec-gateway` command line, in the library so the end-to-end tests can build the
//! very same binary (`fn main() -> ExitCode { gateway::cli::main_entry() }`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::app;
use crate::config::{Config, ENV_VARS, LogConfig, LogFormat, Overrides};
use crate::domain::SystemClock;

pub mod access;
pub mod api_client;
pub mod backup;
pub mod demo;
pub mod demo_data;
pub mod device;
pub mod import;
pub mod inspect;
pub mod progress;
pub mod purge;
pub mod report;
pub mod simulate;
pub mod store;

/// Exit code for a configuration or usage error (bad file, bad value, bad flag).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure at run time (store, HTTP bind, unclean shutdown).
pub const EXIT_RUNTIME: u8 = 1;
/// Another gateway took the PostgreSQL writer lease: this one stopped without acking
/// anything uncommitted. A supervisor restarts it, and it stands by.
pub const EXIT_LEAD_LOST: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "tec-gateway",
    version,
    about = "TEC gateway: durable MQTT ingest, event store, alert engine",
    after_help = env_help()
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Run the gateway until SIGTERM or Ctrl-C, then shut down gracefully.
    Run(RunArgs),
    /// Load and validate the configuration (file, environment, flags), print the result
    /// (password redacted) and exit.
    CheckConfig(RunArgs),
    /// List stored events (--data: the gateway stopped; --api: a running gateway).
    Events(inspect::EventsArgs),
    /// List alerts with their history (--data or --api).
    Alerts(inspect::AlertsArgs),
    /// List quarantined payloads, newest first (--data or --api).
    Quarantine(inspect::QuarantineArgs),
    /// Manage API users (offline: stop the gateway first).
    User(access::UserArgs),
    /// Check the audit log (offline).
    Audit(access::AuditArgs),
    /// Import the care register from CSV (offline: stop the gateway first).
    Import(import::ImportArgs),
    /// The managers' reports: uptake of technology-enabled care and the monitoring KPIs
    /// (offline: stop the gateway first).
    Report(report::ReportArgs),
    /// Simulate homes of devices (the real firmware core) against a broker.
    Simulate(simulate::SimulateArgs),
    /// Fill an empty data directory with a demo borough: register, devices, events, alerts
    /// (offline: the gateway stopped).
    DemoData(demo_data::DemoDataArgs),
    /// Try it: the gateway, its console and simulated homes raising alarms, on a fresh data
    /// directory with a user per role, until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Remove what the retention policy no longer keeps (offline: stop the gateway first;
    /// --dry-run counts and removes nothing).
    Purge(purge::PurgeArgs),
    /// Write a verified, consistent snapshot of the store to a file: from a running gateway
    /// (--api, an administrator's token) or a stopped one (--data-dir).
    Backup(backup::BackupArgs),
    /// Restore a backup file into a new or empty data directory (the gateway stopped).
    Restore(backup::RestoreArgs),
    /// Provision devices with their own broker credentials, or revoke them (Mosquitto password
    /// and ACL files; offline: stop the gateway first). See docs/deployment.md.
    Device(device::DeviceArgs),
    /// Move a stopped gateway's redb store into an empty PostgreSQL store (`store export`).
    Store(store::StoreArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// TOML configuration file; every field is optional.
    #[arg(long, value_name = "FILE", env = "TEC_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Broker URL, mqtt://host[:port] or mqtts://host[:port] (overrides mqtt.broker).
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// Data directory holding the store (overrides data_dir).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// HTTP listen address for /healthz and /metrics (overrides http).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

fn env_help() -> String {
    let mut text = String::from("Environment (overrides the config file; flags override both):\n");
    for (var, what) in ENV_VARS {
        text.push_str(&format!("  {var:<28} {what}\n"));
    }
    text.push_str("  RUST_LOG                     log filter (wins over log.level)\n");
    text.push_str("\nExit codes: 0 ok, 1 runtime failure, 2 configuration or usage error.");
    text
}

/// The whole command line: parses arguments, runs, and maps failures to exit codes
/// (never a panic on bad input).
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        CliCommand::Run(args) => run(args),
        CliCommand::CheckConfig(args) => match load_config(&args) {
            Ok(config) => {
                println!("{config:#?}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        CliCommand::Events(args) => inspection(|out| inspect::run_events(&args, out)),
        CliCommand::Alerts(args) => inspection(|out| inspect::run_alerts(&args, out)),
        CliCommand::Quarantine(args) => inspection(|out| inspect::run_quarantine(&args, out)),
        CliCommand::User(args) => inspection(|out| access::run_user(&args, out)),
        CliCommand::Audit(args) => inspection(|out| access::run_audit(&args, out)),
        CliCommand::Import(args) => inspection(|out| import::run_import(&args, out)),
        CliCommand::Report(args) => inspection(|out| report::run(&args, out)),
        CliCommand::Simulate(args) => simulate::run(&args),
        CliCommand::DemoData(args) => inspection(|out| demo_data::run(&args, out)),
        CliCommand::Demo(args) => demo::run(&args),
        CliCommand::Purge(args) => inspection(|out| purge::run_command(&args, out)),
        CliCommand::Backup(args) => inspection(|out| backup::run_backup(&args, out)),
        CliCommand::Restore(args) => inspection(|out| backup::run_restore(&args, out)),
        CliCommand::Device(args) => inspection(|out| device::run(&args, out)),
        CliCommand::Store(args) => inspection(|out| store::run(&args, out)),
    }
}

/// Runs an inspection command with stdout; failures go to stderr with exit code 1.
fn inspection(run: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()>) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(&mut out).and_then(|()| out.flush().map_err(anyhow::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tec-gateway: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn load_config(args: &RunArgs) -> Result<Config, ExitCode> {
    let overrides = Overrides {
        broker: args.broker.clone(),
        data_dir: args.data.clone(),
        http: args.http.clone(),
    };
    let env = |var: &str| std::env::var(var).ok();
    Config::load(args.config.as_deref(), &env, &overrides).map_err(|e| {
        eprintln!("tec-gateway: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn run(args: RunArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tec-gateway: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        // Listen before starting: a SIGTERM that arrives as soon as /healthz says ok must
        // still mean a graceful shutdown, not the default (immediate) death.
        let mut stop = ShutdownSignals::install();
        // On PostgreSQL a standby waits inside `spawn` until it leads; a signal ends the wait.
        let started = tokio::select! {
            started = app::spawn(config, Arc::new(SystemClock)) => started,
            () = stop.wait() => return ExitCode::SUCCESS,
        };
        let handle = match started {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(error = %e, "gateway did not start");
                eprintln!("tec-gateway: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let mut code = ExitCode::SUCCESS;
        tokio::select! {
            () = stop.wait() => {}
            () = handle.lead_lost() => {
                eprintln!("tec-gateway: another gateway took the writer lease; stopping (restart me to stand by)");
                code = ExitCode::from(EXIT_LEAD_LOST);
            }
        }
        match handle.shutdown().await {
            Ok(()) => code,
            Err(e) => {
                tracing::error!(error = %e, "unclean shutdown");
                eprintln!("tec-gateway: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

/// SIGTERM and SIGINT listeners, registered as soon as this is created (a signal that
/// arrives before [`ShutdownSignals::wait`] is kept, not lost).
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listener) => Some(listener),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            Self {
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        {
            async fn next(listener: &mut Option<tokio::signal::unix::Signal>) {
                match listener {
                    Some(listener) => {
                        listener.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.terminate) => tracing::info!("SIGTERM received"),
                _ = next(&mut self.interrupt) => tracing::info!("SIGINT received"),
            }
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
        }
    }
}

/// Logs to stderr; RUST_LOG wins over the configured level. A second call is a no-op.
pub fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .or_else(|| EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already initialised (tests, or an embedding program): keep theirs.
    drop(result);
}
