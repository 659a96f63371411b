//! Simulator benchmark: how many devices (the real firmware core and MQTT session, five per
//! home) one simulator thread carries against a private Mosquitto and the real gateway (a
//! separate process, so this process's memory and CPU are the simulator's alone), and
//! whether two threads carry the whole fleet with every alarm receipted.
//!
//! ```text
//! cargo bench -p tec-tests --bench simulator
//! BENCH_SIM_HOMES=1000 BENCH_SIM_SECS=40 BENCH_SIM_SPEED=3600 cargo bench -p tec-tests --bench simulator
//! ```
//! Fails when Mosquitto is missing. Linux only (reads /proc/self).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::{Broker, GatewayOptions, GatewayProcess, Metrics};
use firmware::Indication;
use simulator::{HomeRates, SimConfig, SimReport};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Resident set size of this process, in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// User + system CPU time of this process (all threads), from /proc/self/stat.
fn process_cpu(ticks_per_second: u64) -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    Duration::from_secs_f64((utime + stime) as f64 / ticks_per_second as f64)
}

fn stored_total(gateway: SocketAddr) -> f64 {
    let response = e2e::http::get(gateway, "/metrics", Duration::from_secs(10)).unwrap();
    Metrics::parse(&response.body).get("tec_events_stored_total")
}

struct Phase {
    report: SimReport,
    rss_before_kib: u64,
    rss_fleet_kib: u64,
    rss_peak_kib: u64,
    cpu: Duration,
    window: Duration,
    stored_in_window: f64,
    stored_after: f64,
}

fn run_phase(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    gateway: SocketAddr,
    config: SimConfig,
    ticks: u64,
) -> Phase {
    let ramp_up = config.ramp_up;
    let rss_before_kib = vm_rss_kib();
    let cpu_before = process_cpu(ticks);
    let stored_before = stored_total(gateway);
    let done = Arc::new(AtomicBool::new(false));
    // Samples memory, and the gateway's stored count once the fleet is up.
    let monitor = {
        let done = done.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let settled = ramp_up + Duration::from_secs(3);
            let mut peak = 0;
            let mut at_settled: Option<(u64, f64, Instant)> = None;
            while !done.load(Ordering::Relaxed) {
                let rss = vm_rss_kib();
                peak = peak.max(rss);
                if at_settled.is_none() && started.elapsed() >= settled {
                    at_settled = Some((rss, stored_total(gateway), Instant::now()));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let ended = Instant::now();
            (peak, at_settled, ended)
        })
    };
    let report = runtime
        .block_on(simulator::run(config, std::future::pending()))
        .unwrap();
    let cpu = process_cpu(ticks).saturating_sub(cpu_before);
    done.store(true, Ordering::Relaxed);
    let stored_at_end = stored_total(gateway);
    let (rss_peak_kib, at_settled, ended) = monitor.join().unwrap();
    let (rss_fleet_kib, stored_at_settled, settled_at) = at_settled.expect("run shorter than the ramp-up");
    // Let the last receipted events commit.
    std::thread::sleep(Duration::from_secs(2));
    let _ = broker;
    Phase {
        report,
        rss_before_kib,
        rss_fleet_kib,
        rss_peak_kib,
        cpu,
        window: ended.saturating_duration_since(settled_at),
        stored_in_window: stored_at_end - stored_at_settled,
        stored_after: stored_total(gateway) - stored_before,
    }
}

fn print_phase(name: &str, phase: &Phase) {
    let r = &phase.report;
    let devices = r.devices.max(1) as f64;
    let elapsed = r.real_elapsed.as_secs_f64();
    let rate = phase.stored_in_window / phase.window.as_secs_f64().max(0.001);
    println!("== {name} ==");
    println!("{r}");
    println!(
        "devices carried: {} on {} thread(s); connects {}; events sent {} ({:.0}/s over the whole run)",
        r.devices,
        r.threads,
        r.connects,
        r.events,
        r.events as f64 / elapsed
    );
    println!(
        "uplinks stored by the gateway once the fleet was up: {:.0} in {:.1?} = {:.0} uplinks/s",
        phase.stored_in_window, phase.window, rate
    );
    println!(
        "memory: VmRSS {} KiB before, {} KiB with the fleet up (peak {} KiB): {:.1} KiB per device",
        phase.rss_before_kib,
        phase.rss_fleet_kib,
        phase.rss_peak_kib,
        phase.rss_fleet_kib.saturating_sub(phase.rss_before_kib) as f64 / devices
    );
    println!(
        "cpu: {:.2?} user+system over {:.1?} wall = {:.0}% of one core; {:.1} µs per uplink sent",
        phase.cpu,
        r.real_elapsed,
        100.0 * phase.cpu.as_secs_f64() / elapsed,
        phase.cpu.as_secs_f64() * 1e6 / (r.events.max(1) as f64)
    );
    println!(
        "stored by the gateway during the phase (incl. after stop): {:.0}",
        phase.stored_after
    );
}

fn main() {
    let homes: usize = env_or("BENCH_SIM_HOMES", 1_000);
    let secs: f64 = env_or("BENCH_SIM_SECS", 40.0);
    let speed: f64 = env_or("BENCH_SIM_SPEED", 3_600.0);
    let ramp_up = Duration::from_secs(env_or("BENCH_SIM_RAMP_SECS", 10));
    let ticks = clock_ticks_per_second();

    let broker = Broker::start().expect("mosquitto (Debian package mosquitto) must be installed");
    let data = tempfile::tempdir().unwrap();
    let mut gateway = GatewayProcess::start(GatewayOptions::new(
        env!("CARGO_BIN_EXE_gateway-under-test"),
        broker.url(),
        data.path().join("gateway"),
    ))
    .unwrap();
    let gateway_addr = gateway.http_addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // 1. One simulator thread: the residents' days at `speed`, devices' timers in real time.
    let mut one = SimConfig::new(broker.host(), broker.port(), homes, 1);
    one.threads = 1;
    one.speed = speed;
    one.ramp_up = ramp_up;
    one.duration = Some(ramp_up + Duration::from_secs_f64(secs));
    let phase_one = run_phase(&runtime, &broker, gateway_addr, one, ticks);
    print_phase(&format!("{homes} homes on ONE thread, speed {speed}"), &phase_one);

    // 2. Two threads, the same fleet size (other device ids, so nothing is a duplicate), with
    //    many alarms and no radio outages: every device connects, every alarm is receipted.
    let mut two = SimConfig::new(broker.host(), broker.port(), homes, 2);
    two.first_home = 50_001;
    two.threads = 2;
    two.speed = 60.0;
    two.ramp_up = ramp_up;
    two.duration = Some(ramp_up + Duration::from_secs(30));
    two.rates = HomeRates {
        presses_per_day: 24.0,
        cancel_fraction: 0.3,
        falls_per_day: 2.0,
        smoke_per_day: 0.5,
        outages_per_day: 0.0,
        low_battery_fraction: 0.05,
    };
    let phase_two = run_phase(&runtime, &broker, gateway_addr, two, ticks);
    print_phase(
        &format!("{homes} homes on TWO threads, speed 60, many alarms"),
        &phase_two,
    );
    let r = &phase_two.report;
    let sending = r
        .indications_at_end
        .iter()
        .find(|(indication, _)| *indication == Indication::Sending)
        .map_or(0, |(_, count)| *count);
    let receipted = r.events - r.outbox_depth_at_end;
    println!(
        "carried? devices {} of {}, connects {}, alarms raised {} (presses {}, falls {}, smoke {}), \
         alarms lost {}, devices still Sending an alarm at stop {}, unreceipted at stop {}, \
         receipted {}, sent {}, stored by the gateway {:.0}",
        r.devices,
        homes * 5,
        r.connects,
        r.presses + r.falls + r.smoke_alarms,
        r.presses,
        r.falls,
        r.smoke_alarms,
        r.alarms_lost,
        sending,
        r.outbox_depth_at_end,
        receipted,
        r.events,
        phase_two.stored_after
    );
    let carried = r.devices == homes * 5
        && r.connects >= r.devices as u64
        && r.alarms_lost == 0
        && r.events_dropped == 0
        // Alarms still showing Sending at the stop were sent within the last moments; they
        // count as carried only if the gateway stored them (it stored everything numbered).
        && phase_two.stored_after >= r.events as f64;
    println!("two-thread fleet carried: {}", if carried { "YES" } else { "NO" });

    let _ = gateway.terminate();
    assert!(carried, "the two-thread fleet was not carried; see above");
}
