//! Durable event ingest through the store seam (`WriteStore`/`WriteTxn`), redb against
//! PostgreSQL in the same run: the redb store in a temp dir, a private PostgreSQL cluster, and
//! a second cluster whose every commit waits for a synchronous streaming standby.
//!
//! Each store takes the same fresh events (sensor changes and heartbeats over many devices,
//! every `(device, boot, seq)` unique) in batches of each size, one durable commit per batch,
//! then a redelivery of already stored events (the duplicates path). Each batch size starts on
//! stores of the same size (emptied, then filled without timing), so a row does not depend on
//! how much the rows before it stored; the three stores take turns (eight a batch size), so a
//! drift in the disk's latency touches all three alike. Prints events/s, the latency of the
//! commit alone and of the whole batch (begin, insert, commit), p50/p99/max, and PostgreSQL's
//! rate as a ratio of redb's for each batch size.
//!
//! `cargo bench -p tec-tests --bench store`. Knobs: STORE_BENCH_EVENTS (262_144: events per
//! batch size), STORE_BENCH_MAX_COMMITS (1_000: fewer events for the small batches, so batch
//! size 1 does not take minutes), STORE_BENCH_BATCHES (1,64,1024,8192), STORE_BENCH_DEVICES
//! (10_000), STORE_BENCH_PREFILL (262_144: events in each store before the timed ones),
//! STORE_BENCH_DUPLICATES (65_536: events redelivered) at STORE_BENCH_DUPLICATE_BATCH (1_024).
//! Fails if PostgreSQL is not installed. Figures go into BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::bench::{machine_info, quantile};
use gateway::domain::{EventBody, EventKey, ResidentId, StoredEvent, Timestamp};
use gateway::store::postgres::{LeaseAttempt, PgStore, PgStoreOptions};
use gateway::store::{CommitOutcome, InsertOutcome, NewEvent, PgBlocking, Store, WriteStore, WriteTxn};
use protocol::{DeviceId, DeviceStatus, FirmwareVersion, PROTOCOL_VERSION, SensorState, UplinkBody};
use testkit::{Postgres, PostgresOptions};

/// How many turns the stores take at each batch size (see [`Stores::ingest_each`]).
const ROUNDS: usize = 8;
/// Batch size of the untimed prefill.
const PREFILL_BATCH: usize = 8_192;
/// The standby's name in the primary's `synchronous_standby_names`.
const STANDBY_NAME: &str = "tec_bench_standby";
/// Long enough that the lease never needs renewing during the run (renewals are commits of
/// their own, which would muddle the figures).
const LEASE: Duration = Duration::from_secs(3_600);
/// Receive time of event 0; event `i` arrives `i * 10` ms later.
const FIRST_RECEIVED_MS: i64 = 1_800_000_000_000;
/// A redelivery arrives this much later than the original (an hour-long outage).
const REDELIVERY_DELAY_MS: i64 = 3_600_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    events: usize,
    max_commits: usize,
    batches: Vec<usize>,
    devices: u32,
    prefill: usize,
    duplicates: usize,
    duplicate_batch: usize,
}

impl Knobs {
    fn from_env() -> Self {
        let batches = std::env::var("STORE_BENCH_BATCHES").map_or_else(
            |_| vec![1, 64, 1_024, 8_192],
            |list| {
                list.split(',')
                    .map(|size| {
                        size.trim()
                            .replace('_', "")
                            .parse()
                            .expect("STORE_BENCH_BATCHES: sizes like 1,64,1024")
                    })
                    .filter(|&size| size > 0)
                    .collect()
            },
        );
        Self {
            events: env_or("STORE_BENCH_EVENTS", 262_144),
            max_commits: env_or("STORE_BENCH_MAX_COMMITS", 1_000).max(1),
            batches,
            devices: env_or("STORE_BENCH_DEVICES", 10_000).max(1),
            prefill: env_or("STORE_BENCH_PREFILL", 262_144),
            duplicates: env_or("STORE_BENCH_DUPLICATES", 65_536),
            duplicate_batch: env_or("STORE_BENCH_DUPLICATE_BATCH", 1_024).max(1),
        }
    }

    /// The events one batch size stores: `events`, cut to `max_commits` batches, whole batches.
    fn events_at(&self, batch: usize) -> usize {
        let commits = (self.events / batch).clamp(1, self.max_commits);
        commits * batch
    }
}

/// The fleet the events come from: event `i` is device `i % devices`'s event number
/// `i / devices` (so every `(device, boot, seq)` is unique, and consecutive events come from
/// different devices, as a batch from a busy broker does). One in four is a heartbeat, the
/// rest door, bed, motion and temperature changes; every device is lent to a resident.
struct Fleet {
    devices: Vec<DeviceId>,
    residents: Vec<ResidentId>,
}

impl Fleet {
    fn new(devices: u32) -> Self {
        Self {
            devices: (0..devices)
                .map(|n| DeviceId::new(&format!("bench-{n:06}")).unwrap())
                .collect(),
            residents: (0..devices)
                .map(|n| ResidentId::new(format!("res-{n:06}")).unwrap())
                .collect(),
        }
    }

    /// Event `i` as received (a redelivery: the same event an hour later).
    fn event(&self, i: u64, redelivery: bool) -> NewEvent {
        let fleet = self.devices.len() as u64;
        let device = (i % fleet) as usize;
        let nth = i / fleet;
        let body = if nth.is_multiple_of(4) {
            heartbeat(nth as u32)
        } else {
            sensor_change(nth)
        };
        let sent_ms = FIRST_RECEIVED_MS + i as i64 * 10;
        let received_ms = sent_ms + 40 + if redelivery { REDELIVERY_DELAY_MS } else { 0 };
        NewEvent::from_event(StoredEvent {
            key: EventKey {
                device: self.devices[device],
                boot: 1,
                seq: nth as u32 + 1,
            },
            resident: Some(self.residents[device].clone()),
            received_at: Timestamp(received_ms),
            device_time: Some(Timestamp(sent_ms)),
            protocol_version: PROTOCOL_VERSION,
            body: EventBody::Uplink(body),
        })
        .unwrap()
    }

    /// Events `range` cut into batches of `size`.
    fn batches(&self, range: std::ops::Range<u64>, size: usize, redelivery: bool) -> Vec<Vec<NewEvent>> {
        let events: Vec<NewEvent> = range.map(|i| self.event(i, redelivery)).collect();
        events.chunks(size).map(<[NewEvent]>::to_vec).collect()
    }
}

fn heartbeat(uptime_s: u32) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 3_900,
        battery_percent: 87,
        rssi_dbm: -61,
        uptime_s: uptime_s.wrapping_mul(300),
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}

fn sensor_change(nth: u64) -> UplinkBody {
    let state = match nth % 6 {
        1 => SensorState::DoorOpen,
        2 => SensorState::DoorClosed,
        3 => SensorState::BedEmpty,
        4 => SensorState::Motion,
        _ => SensorState::Temperature {
            centi_celsius: 1_900 + (nth % 300) as i16,
        },
    };
    UplinkBody::SensorChange { input: 0, state }
}

/// One store's run at one batch size.
#[derive(Default)]
struct Run {
    events: usize,
    elapsed: Duration,
    /// `commit()` alone, one per batch.
    commits: Vec<Duration>,
    /// `begin_txn` + `insert_events` + `commit()`, one per batch.
    batches: Vec<Duration>,
}

impl Run {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, other: Run) {
        self.events += other.events;
        self.elapsed += other.elapsed;
        self.commits.extend(other.commits);
        self.batches.extend(other.batches);
    }
}

/// Stores every batch in a transaction of its own, committed durably, and checks each event's
/// outcome is `expected` and each commit `Committed` (anything else ends the benchmark).
fn ingest<S: WriteStore>(store: &mut S, batches: &[Vec<NewEvent>], expected: InsertOutcome) -> Run {
    let mut commits = Vec::with_capacity(batches.len());
    let mut batch_times = Vec::with_capacity(batches.len());
    let mut events = 0;
    let started = Instant::now();
    for batch in batches {
        let began = Instant::now();
        let mut txn = store.begin_txn().unwrap();
        let outcomes = txn.insert_events(batch).unwrap();
        let committing = Instant::now();
        let outcome = txn.commit();
        let done = Instant::now();
        if let Some((n, wrong)) = outcomes.iter().enumerate().find(|(_, outcome)| **outcome != expected) {
            panic!("event {} of a batch: {wrong:?}, expected {expected:?}", n);
        }
        match outcome {
            CommitOutcome::Committed => {}
            other => panic!("commit: {other:?}"),
        }
        commits.push(done - committing);
        batch_times.push(done - began);
        events += batch.len();
    }
    Run {
        events,
        elapsed: started.elapsed(),
        commits,
        batches: batch_times,
    }
}

/// The stores, in the order they run at each batch size.
struct Stores {
    redb: Arc<Store>,
    /// Where the redb file is; deleted when replaced.
    redb_dir: tempfile::TempDir,
    postgres: PgBlocking,
    synchronous: PgBlocking,
}

const STORE_NAMES: [&str; 3] = ["redb", "postgres", "postgres+sync"];

impl Stores {
    /// Every store takes `batches`, in [`ROUNDS`] turns: each store a share of the batches in
    /// turn, the first store of each turn rotating. The disk's latency on a shared machine
    /// drifts over seconds; taking turns spreads the drift over the three stores alike.
    fn ingest_each(&mut self, batches: &[Vec<NewEvent>], expected: InsertOutcome) -> [Run; 3] {
        let mut runs: [Run; 3] = std::array::from_fn(|_| Run::default());
        let share = batches.len().div_ceil(ROUNDS).max(1);
        for (round, turn) in batches.chunks(share).enumerate() {
            for n in (0..3).map(|n| (n + round) % 3) {
                let run = match n {
                    0 => ingest(&mut self.redb, turn, expected),
                    1 => ingest(&mut self.postgres, turn, expected),
                    _ => ingest(&mut self.synchronous, turn, expected),
                };
                runs[n].add(run);
            }
        }
        runs
    }

    /// Empties every store: a new redb file, PostgreSQL's events truncated (`servers`: the
    /// clusters of `postgres` and `synchronous`).
    fn empty(&mut self, servers: [&Postgres; 2]) {
        let redb_dir = tempfile::tempdir().unwrap();
        self.redb = Arc::new(Store::open_in_dir(redb_dir.path()).unwrap());
        self.redb_dir = redb_dir;
        for server in servers {
            server.psql("TRUNCATE events").unwrap();
        }
    }

    fn event_counts(&self) -> [u64; 3] {
        let pg = |store: &PgBlocking| store.block_on(store.store().event_count()).unwrap();
        [
            self.redb.event_count().unwrap(),
            pg(&self.postgres),
            pg(&self.synchronous),
        ]
    }

    fn redb_bytes(&self) -> u64 {
        std::fs::metadata(self.redb_dir.path().join(gateway::store::STORE_FILE_NAME))
            .unwrap()
            .len()
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1e3)
}

fn percentiles(samples: &[Duration]) -> String {
    let at = |q| quantile(samples, q).map_or_else(|| "-".into(), ms);
    format!("{:>8} {:>8} {:>8}", at(0.5), at(0.99), at(1.0))
}

fn print_header() {
    println!(
        "{:<14} {:>6} {:>7} {:>8} {:>10} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}",
        "store", "batch", "commits", "events", "events/s", "commit50", "p99", "max", "batch50", "p99", "max"
    );
}

fn print_run(store: &str, size: usize, run: &Run) {
    println!(
        "{store:<14} {size:>6} {:>7} {:>8} {:>10.0} | {} | {}",
        run.commits.len(),
        run.events,
        run.events_per_s(),
        percentiles(&run.commits),
        percentiles(&run.batches)
    );
}

/// A multi-threaded runtime: its workers drive the PostgreSQL connections while the
/// benchmark's own thread waits in `PgBlocking`, as the committer's core does on tokio's
/// blocking pool.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A store on `server` holding the writer lease, as the leading gateway's.
fn leading_store(runtime: &tokio::runtime::Runtime, server: &Postgres) -> PgBlocking {
    let config: tokio_postgres::Config = server.connection_string("postgres").parse().unwrap();
    let mut store = runtime
        .block_on(PgStore::connect(&config, PgStoreOptions::new("store-bench", LEASE)))
        .unwrap();
    match runtime.block_on(store.acquire_lease()).unwrap() {
        LeaseAttempt::Acquired(_) => PgBlocking::new(store, runtime.handle().clone()),
        held => panic!("the lease of a new cluster is held: {held:?}"),
    }
}

/// The events table with its indexes, in bytes.
fn events_bytes(server: &Postgres) -> u64 {
    server
        .psql("SELECT pg_total_relation_size('events')")
        .unwrap()
        .parse()
        .unwrap()
}

/// PostgreSQL's own default (the test harness sets 32MB, so that many clusters fit at once).
const SHARED_BUFFERS: &str = "shared_buffers = '128MB'\n";

fn settings(server: &Postgres) -> String {
    server
        .psql(
            "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings \
             WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', \
             'shared_buffers', 'synchronous_standby_names', 'max_wal_size')",
        )
        .unwrap()
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`): was anything else running?
fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The file system `path` is on (`/proc/mounts`: the longest mount point above it).
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [device, mount, kind, ..] if path.starts_with(mount) => {
                    Some((mount.len(), format!("{kind} on {device}")))
                }
                _ => None,
            }
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown file system".into(), |(_, described)| described)
}

fn main() {
    let knobs = Knobs::from_env();
    println!("machine: {}", machine_info());
    println!("load average before: {}", load_average());

    let runtime = runtime();
    let alone = Postgres::start_with(PostgresOptions {
        extra_config: SHARED_BUFFERS.into(),
        ..PostgresOptions::default()
    })
    .unwrap();
    let primary = Postgres::start_with(PostgresOptions {
        synchronous_standby_names: Some(STANDBY_NAME.into()),
        extra_config: format!("{SHARED_BUFFERS}synchronous_commit = on\n"),
        ..PostgresOptions::default()
    })
    .unwrap();
    let standby = primary
        .start_replica(
            STANDBY_NAME,
            PostgresOptions {
                extra_config: SHARED_BUFFERS.into(),
                ..PostgresOptions::default()
            },
        )
        .unwrap();
    primary.wait_for_standby(STANDBY_NAME).unwrap();
    let replication = primary
        .psql(&format!(
            "SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
        ))
        .unwrap();
    println!("postgres: {}", alone.psql("SELECT version()").unwrap());
    println!("postgres (alone): {}", settings(&alone));
    println!("postgres+sync (primary): {}", settings(&primary));
    println!("postgres+sync: standby {STANDBY_NAME} {replication}, a second cluster on the same machine and disk");

    println!(
        "redb and the clusters' data: {} ({})",
        std::env::temp_dir().display(),
        filesystem_of(&std::env::temp_dir())
    );
    let redb_dir = tempfile::tempdir().unwrap();
    let mut stores = Stores {
        redb: Arc::new(Store::open_in_dir(redb_dir.path()).unwrap()),
        redb_dir,
        postgres: leading_store(&runtime, &alone),
        synchronous: leading_store(&runtime, &primary),
    };

    let fleet = Fleet::new(knobs.devices);
    let sample = fleet.event(0, false).payload.len() + fleet.event(1, false).payload.len();
    println!(
        "events: {} devices, 1 in 4 a heartbeat, the rest sensor changes; payloads ~{} bytes; each store \
         takes every batch in a transaction of its own (begin_txn, insert_events, commit)",
        knobs.devices,
        sample / 2
    );
    println!(
        "each batch size starts on emptied stores (a new redb file; PostgreSQL's events truncated) \
         filled with {} events in batches of {PREFILL_BATCH} and checkpointed, not timed; then the \
         three stores take {ROUNDS} turns at the timed batches",
        knobs.prefill
    );
    println!("latencies in ms: commit = commit() alone; batch = begin_txn + insert_events + commit");
    println!();
    println!("fresh events (every key new: Inserted)");
    print_header();
    let prefill = knobs.prefill as u64;
    let mut stored = 0;
    let mut rates: Vec<(usize, [f64; 3])> = Vec::new();
    let mut sizes: Vec<(usize, [u64; 3])> = Vec::new();
    for &size in &knobs.batches {
        stores.empty([&alone, &primary]);
        stores.ingest_each(
            &fleet.batches(0..prefill, PREFILL_BATCH, false),
            InsertOutcome::Inserted,
        );
        // The prefill's dirty pages written out now, not by a checkpoint in the timed part.
        for server in [&alone, &primary] {
            server.psql("CHECKPOINT").unwrap();
        }
        let count = knobs.events_at(size) as u64;
        let batches = fleet.batches(prefill..prefill + count, size, false);
        let runs = stores.ingest_each(&batches, InsertOutcome::Inserted);
        for (name, run) in STORE_NAMES.iter().zip(&runs) {
            print_run(name, size, run);
        }
        rates.push((size, runs.each_ref().map(Run::events_per_s)));
        stored = prefill + count;
        // Every store holds exactly the events sent, once each.
        assert_eq!(
            stores.event_counts(),
            [stored; 3],
            "a store holds other than the {stored} events sent"
        );
        sizes.push((
            size,
            [stores.redb_bytes(), events_bytes(&alone), events_bytes(&primary)],
        ));
    }

    let duplicates = (knobs.duplicates as u64).min(stored);
    let duplicate_rates = (duplicates > 0).then(|| {
        println!();
        println!("redelivered events (the first {duplicates} the last stores hold, an hour later: Duplicate)");
        print_header();
        let batches = fleet.batches(0..duplicates, knobs.duplicate_batch, true);
        let runs = stores.ingest_each(&batches, InsertOutcome::Duplicate);
        for (name, run) in STORE_NAMES.iter().zip(&runs) {
            print_run(name, knobs.duplicate_batch, run);
        }
        runs.each_ref().map(Run::events_per_s)
    });
    assert_eq!(stores.event_counts(), [stored; 3], "a redelivery was stored");

    println!();
    println!("PostgreSQL's events/s as a ratio of redb's (same run)");
    println!("{:>12} {:>10} {:>14}", "batch", "postgres", "postgres+sync");
    let ratio = |rates: &[f64; 3], n: usize| rates[n] / rates[0].max(1e-9);
    for (size, rates) in &rates {
        println!("{size:>12} {:>10.3} {:>14.3}", ratio(rates, 1), ratio(rates, 2));
    }
    if let Some(rates) = &duplicate_rates {
        let label = format!("dup {}", knobs.duplicate_batch);
        println!("{label:>12} {:>10.3} {:>14.3}", ratio(rates, 1), ratio(rates, 2));
    }

    println!();
    println!(
        "on disk after each batch size, MiB: the redb file (events with their time, resident and \
         device-day indexes); PostgreSQL's events table with its indexes"
    );
    println!(
        "{:>12} {:>8} {:>10} {:>14}",
        "batch", "redb", "postgres", "postgres+sync"
    );
    let mib = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    for (size, [redb, pg, sync]) in &sizes {
        println!("{size:>12} {:>8.0} {:>10.0} {:>14.0}", mib(*redb), mib(*pg), mib(*sync));
    }

    // The standby has replayed every event (a synchronous commit waits for its flush, not its
    // replay).
    let expected = stored.to_string();
    testkit::net::wait_until("the standby to replay every event", Duration::from_secs(60), || {
        standby
            .psql("SELECT count(*) FROM events")
            .is_ok_and(|count| count == expected)
    })
    .unwrap();
    println!();
    println!("each store holds the last {stored} events sent, once each; so does the standby");
    println!("load average after: {}", load_average());
}
