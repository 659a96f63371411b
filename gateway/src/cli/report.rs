//! `tec-gateway report uptake|kpi --data DIR|--config FILE --from DATE --to DATE`: the
//! managers' reports from the store. On redb the gateway must be stopped (it holds the store
//! locked; a running gateway answers the same reports at `GET /api/v1/reports/...`); on
//! PostgreSQL they are read beside the running gateways. Printed by `reports::render`, the
//! code the API and the console use, so every output agrees.
//!
//! A table on a manager's terminal is as much an export as a CSV file: small counts are
//! suppressed in every format unless `--no-suppress` (internal use only, said on the output).

use std::io::Write;

use anyhow::Context;

use super::access::StoreLocation;
use crate::domain::{Clock, SystemClock, Timestamp};
use crate::reports::render::{By, Period, export_kpi, export_uptake, kpi_csv, kpi_table, uptake_csv, uptake_table};
use crate::reports::source::{kpi_from_store, uptake_from_store};
use crate::reports::suppress::SuppressionRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// RFC 4180 CSV (the uptake report's first line is a `#` comment with the suppression rule).
    Csv,
    /// One JSON object (the API's answer).
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: ReportCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReportCommand {
    /// The uptake of technology-enabled care (measure 4) for a period (docs/reports.md).
    Uptake(UptakeArgs),
    /// The monitoring KPIs of the alerts raised in a period (docs/reports.md).
    Kpi(KpiArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PeriodArgs {
    #[command(flatten)]
    pub store: StoreLocation,
    /// First day of the period, YYYY-MM-DD (a financial year starts 2020-04-01).
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Last day of the period (inclusive), YYYY-MM-DD (2021-03-31).
    #[arg(long, value_name = "DATE")]
    pub to: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UptakeArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// The snapshot's day (default: --to).
    #[arg(long, value_name = "DATE")]
    pub snapshot: Option<String>,
    /// Only this breakdown (default: the headline, every breakdown and the months).
    #[arg(long, value_enum)]
    pub by: Option<By>,
    /// The small counts to hide, MIN-MAX (default 1-7).
    #[arg(long, value_name = "MIN-MAX", conflicts_with = "no_suppress")]
    pub suppress: Option<String>,
    /// Show every count: for internal use only, never to be published.
    #[arg(long)]
    pub no_suppress: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct KpiArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
}

pub fn run(args: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.report {
        ReportCommand::Uptake(args) => run_uptake(args, out),
        ReportCommand::Kpi(args) => run_kpi_at(args, SystemClock.now(), out),
    }
}

/// `MIN-MAX`, `1 <= MIN <= MAX`.
pub fn parse_rule(text: &str) -> anyhow::Result<SuppressionRule> {
    let parse = || -> Option<SuppressionRule> {
        let (min, max) = text.trim().split_once('-')?;
        let rule = SuppressionRule {
            min: min.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        };
        (1 <= rule.min && rule.min <= rule.max).then_some(rule)
    };
    parse().with_context(|| format!("--suppress {text:?}: give MIN-MAX with 1 <= MIN <= MAX, e.g. 1-7"))
}

fn period(args: &PeriodArgs, snapshot: Option<&str>) -> anyhow::Result<Period> {
    Ok(Period::parse(Some(&args.from), Some(&args.to), snapshot)?)
}

pub fn run_uptake(args: &UptakeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let period = period(&args.period, args.snapshot.as_deref())?;
    let rule = match (&args.suppress, args.no_suppress) {
        (_, true) => None,
        (Some(text), false) => Some(parse_rule(text)?),
        (None, false) => Some(SuppressionRule::default()),
    };
    let report = args
        .period
        .store
        .read(|store| uptake_from_store(store, period.from, period.to, period.snapshot))?;
    let export = export_uptake(&report, rule, args.by);
    match args.period.format {
        ReportFormat::Table => out.write_all(uptake_table(&export).as_bytes())?,
        ReportFormat::Csv => out.write_all(uptake_csv(&export).as_bytes())?,
        ReportFormat::Json => write_json(out, &export)?,
    }
    Ok(())
}

/// The KPI report as known at `now` (calls still waiting are judged against it).
pub fn run_kpi_at(args: &KpiArgs, now: Timestamp, out: &mut dyn Write) -> anyhow::Result<()> {
    let period = period(&args.period, None)?;
    let report = args
        .period
        .store
        .read(|store| kpi_from_store(store, period.from, period.to, now))?;
    let export = export_kpi(report, period);
    match args.period.format {
        ReportFormat::Table => out.write_all(kpi_table(&export).as_bytes())?,
        ReportFormat::Csv => out.write_all(kpi_csv(&export).as_bytes())?,
        ReportFormat::Json => write_json(out, &export)?,
    }
    Ok(())
}

fn write_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}
