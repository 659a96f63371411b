//! `tec-gateway demo-data`: writes a realistic borough (register, devices, events, alerts)
//! into an empty data directory, with the gateway stopped (see `crate::demo`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use jiff::civil::Date;

use super::progress;
use crate::demo::{DemoConfig, Progress, write_demo};
use crate::domain::Timestamp;
use crate::store::{REPORT_TIMEZONE, Store};

#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// The data directory to fill (created if missing; must hold no events, register or alerts).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Random seed: the same seed (and settings) gives the same borough.
    #[arg(long, default_value_t = 2020)]
    pub seed: u64,
    /// Share of people lent a pendant, 0 to 1.
    #[arg(long, default_value_t = 0.25)]
    pub tec_share: f64,
    /// Last day of history, YYYY-MM-DD (default: today, London).
    #[arg(long, value_name = "DATE")]
    pub until: Option<Date>,
    /// Multiplies every head count (1.0 gives the strategy's 2020-21 figures exactly).
    #[arg(long, default_value_t = 1.0)]
    pub people_scale: f64,
}

pub fn run(args: &DemoDataArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let tz = jiff::tz::TimeZone::get(REPORT_TIMEZONE).context("the Europe/London time zone")?;
    let now = jiff::Timestamp::now();
    let today = now.to_zoned(tz.clone()).date();
    let until = args.until.unwrap_or(today);
    // A history that reaches today stops at the present; an earlier one runs to its last day.
    let end_of_until = until
        .tomorrow()
        .ok()
        .and_then(|day| day.to_zoned(tz).ok())
        .map_or(now, |zoned| zoned.timestamp());
    let cutoff = Timestamp::from_jiff(end_of_until.min(now));
    let mut config = DemoConfig::new(args.seed, until, cutoff);
    config.tec_share = args.tec_share;
    config.people_scale = args.people_scale;

    let store = Store::open_in_dir(&args.data)
        .with_context(|| format!("opening the store in {} (is the gateway stopped?)", args.data.display()))?;
    let bar = progress::bar("demo borough", 0, progress::Unit::Items);
    let summary = write_demo(&store, &config, &mut |progress: &Progress| {
        bar.set_length(u64::from(progress.days_total));
        bar.set_position(u64::from(progress.days_done));
        bar.set_message(format!(
            "{}: {} events, {} alerts; days",
            progress.day, progress.events, progress.alerts
        ));
    });
    bar.finish_and_clear();
    let summary = summary?;
    writeln!(
        out,
        "demo borough written to {}: {} register records, {} residents with {} devices, {} events, {} alerts \
         (seed {}, history 2020-04-01 to {until})",
        store.path().display(),
        summary.people_records,
        summary.residents,
        summary.devices,
        summary.events,
        summary.alerts,
        args.seed,
    )?;
    Ok(())
}
