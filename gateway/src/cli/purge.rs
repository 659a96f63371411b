//! `tec-gateway purge [--dry-run]`: the retention purge on a stopped gateway's store, with
//! the periods of the configuration's `[retention]` section (`docs/retention.md`).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::access::open_store;
use crate::config::Config;
use crate::domain::{Clock, SystemClock};
use crate::retention::{PurgeCounts, purge_offline};

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// TOML configuration file (its `[retention]` section sets the periods).
    #[arg(long, value_name = "FILE", env = "TEC_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory holding the store (overrides data_dir).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Count what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the purge against `config`'s store at `clock`'s now, printing the counts after each
/// batch and at the end.
pub fn run(config: &Config, dry_run: bool, clock: &dyn Clock, out: &mut dyn Write) -> anyhow::Result<PurgeCounts> {
    let store = open_store(&config.data_dir, false)?;
    let mut batch_error = None;
    // Its size is known only at the end: a spinner with the running counts (terminal only).
    let spinner = super::progress::spinner("purging");
    let mut progress = |counts: &PurgeCounts| {
        spinner.set_message(format!("purging: {counts}"));
        if let Err(e) = writeln!(out, "batch {}: {counts}", counts.batches) {
            batch_error.get_or_insert(e);
        }
    };
    let purged = purge_offline(&store, &config.retention, clock.now(), dry_run, &mut progress);
    spinner.finish_and_clear();
    let counts = purged?;
    if let Some(e) = batch_error {
        return Err(e.into());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    writeln!(out, "retention purge {verb}: {counts}")?;
    Ok(counts)
}

/// Loads the configuration (file, environment, `--data`) and runs with the system clock.
pub fn run_command(args: &PurgeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let overrides = crate::config::Overrides {
        data_dir: args.data.clone(),
        ..Default::default()
    };
    let env = |var: &str| std::env::var(var).ok();
    let config = Config::load(args.config.as_deref(), &env, &overrides)
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    run(&config, args.dry_run, &SystemClock, out)?;
    Ok(())
}
