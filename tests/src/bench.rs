//! Small helpers the benchmarks share: the machine they ran on, a process's memory from /proc,
//! and percentiles of a sample.

use std::time::Duration;

/// CPU model, cores, memory, kernel and Mosquitto version, for the figures' context.
pub fn machine_info() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mosquitto = std::process::Command::new(crate::broker::MOSQUITTO)
        .arg("-h")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    format!("{model}, {cores} cores, {mem}, kernel {}, {mosquitto}", kernel.trim())
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM` from /proc), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// `None` if the process is gone or /proc is unreadable.
pub fn process_memory(pid: u32) -> Option<ProcessMemory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some(ProcessMemory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// The `q` quantile (0..=1) of `samples` by nearest rank; `None` if empty.
pub fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let last = sorted.len().checked_sub(1)?;
    let rank = ((q.clamp(0.0, 1.0) * last as f64).round() as usize).min(last);
    sorted.get(rank).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(quantile(&samples, 0.5), Some(ms(51)));
        assert_eq!(quantile(&samples, 0.99), Some(ms(99)));
        assert_eq!(quantile(&samples, 1.0), Some(ms(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_our_own_memory() {
        let memory = process_memory(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
    }
}
