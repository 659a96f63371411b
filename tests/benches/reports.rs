//! Report speed: one year of history for the demo borough (about 5,000 people, everyone with a
//! pendant and a motion sensor, ~50 million events), then the uptake report for the year and
//! the KPI report over the year's alerts, timed over several runs. Prints the generation rate,
//! the store's size on disk and bytes per event. Targets: each report under a second.
//!
//! `cargo bench -p tec-tests --bench reports`. Knobs: REPORTS_BENCH_EVENTS (50_000_000: the
//! events to aim for; the sensors' summaries a day are set to reach it), REPORTS_BENCH_SCALE
//! (1.0: the people scale; 1.0 is the strategy's borough, ~5,000 people in the year),
//! REPORTS_BENCH_RUNS (7), REPORTS_BENCH_DIR (where the store goes; default the temp dir; it
//! is deleted afterwards). Figures go into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use e2e::bench::{machine_info, quantile};
use gateway::demo::register::{YEAR_END, YEAR_START, borough};
use gateway::demo::{DemoConfig, write_demo};
use gateway::domain::Timestamp;
use gateway::reports::source::{kpi_from_store, uptake_from_store};
use gateway::store::{Store, day_number};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Min and median of `runs` timings of `report`.
fn time(runs: usize, mut report: impl FnMut()) -> (Duration, Duration, Vec<Duration>) {
    let samples: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            report();
            started.elapsed()
        })
        .collect();
    let min = samples.iter().min().copied().unwrap_or_default();
    (min, quantile(&samples, 0.5).unwrap_or_default(), samples)
}

fn main() {
    let target_events: u64 = env_or("REPORTS_BENCH_EVENTS", 50_000_000);
    let scale: f64 = env_or("REPORTS_BENCH_SCALE", 1.0);
    let runs: usize = env_or("REPORTS_BENCH_RUNS", 7);
    let parent = std::env::var_os("REPORTS_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);

    let mut config = DemoConfig::new(2020, YEAR_END, Timestamp(i64::MAX));
    config.people_scale = scale;
    config.tec_share = 1.0;
    config.sensor_share = 1.0;
    // Device-days with reports in the year, to set the sensors' rate for the target.
    let plan = borough(&config, &mut StdRng::seed_from_u64(config.seed)).unwrap();
    let device_days: i64 = plan
        .tec
        .iter()
        .filter(|p| !p.silent)
        .map(|p| {
            let first = p.from.max(YEAR_START);
            let last = p.to.map_or(YEAR_END, |to| to.min(YEAR_END));
            i64::from((day_number(last) - day_number(first) + 1).max(0))
        })
        .sum();
    let per_day = (target_events as f64 / device_days.max(1) as f64 - 1.0 - 1.0 / 30.0).round();
    config.activity_per_day = per_day.clamp(1.0, 96.0) as u32;
    let people: std::collections::BTreeSet<_> = plan.people.iter().map(|p| &p.id).collect();
    println!("machine: {}", machine_info());
    println!(
        "borough: {} people ({} register records), {} with a pendant and a sensor; {} device-days; \
         {} sensor summaries a day per home; aiming at {target_events} events",
        people.len(),
        plan.people.len(),
        plan.tec.len(),
        device_days,
        config.activity_per_day
    );

    let dir = tempfile::tempdir_in(&parent).unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    let summary = write_demo(&store, &config, &mut |progress| {
        let elapsed = started.elapsed().as_secs_f64();
        let _ = write!(
            stderr,
            "\rgenerating {} {:>5.1}%  {} events  {:.0} events/s  {:.0} s ",
            progress.day,
            f64::from(progress.days_done) * 100.0 / f64::from(progress.days_total.max(1)),
            progress.events,
            progress.events as f64 / elapsed.max(1e-9),
            elapsed
        );
        let _ = stderr.flush();
    })
    .unwrap();
    eprintln!();
    let generation = started.elapsed();
    drop(store);
    let path = dir.path().join(gateway::store::STORE_FILE_NAME);
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {} events and {} alerts in {:.1} s ({:.0} events/s); store {:.2} GiB on disk, {:.0} bytes per event",
        summary.events,
        summary.alerts,
        generation.as_secs_f64(),
        summary.events as f64 / generation.as_secs_f64(),
        bytes as f64 / (1u64 << 30) as f64,
        bytes as f64 / summary.events.max(1) as f64
    );

    // Reopened, as a report on a stopped gateway's store would be.
    let opened = Instant::now();
    let store = Store::open(&path).unwrap();
    println!("store opened in {:.2} s", opened.elapsed().as_secs_f64());
    let mut people_in_year = 0;
    let (min, median, samples) = time(runs, || {
        let report = uptake_from_store(&store, YEAR_START, YEAR_END, YEAR_END).unwrap();
        people_in_year = report.in_year.people;
    });
    println!(
        "uptake 2020-04-01..2021-03-31 ({people_in_year} people): min {:.3} s, median {:.3} s, first {:.3} s ({runs} runs)",
        min.as_secs_f64(),
        median.as_secs_f64(),
        samples.first().copied().unwrap_or_default().as_secs_f64()
    );
    let mut alerts = 0;
    let (min, median, samples) = time(runs, || {
        let report = kpi_from_store(&store, YEAR_START, YEAR_END, Timestamp(i64::MAX)).unwrap();
        alerts = report.alerts;
    });
    println!(
        "kpi 2020-04-01..2021-03-31 ({alerts} alerts): min {:.3} s, median {:.3} s, first {:.3} s ({runs} runs)",
        min.as_secs_f64(),
        median.as_secs_f64(),
        samples.first().copied().unwrap_or_default().as_secs_f64()
    );
}
