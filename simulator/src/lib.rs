//! Host simulator: the real firmware device core and MQTT session over TCP, with simulated
//! homes providing the inputs.
//!
//! * [`run`] simulates many homes (5 devices each) until a duration passes or a shutdown
//!   future resolves, and reports what happened.
//! * [`spawn_device`] / [`spawn_local_device`] start *one* device and return a
//!   [`DeviceHandle`] to press its button, change its sensors and watch its feedback, for
//!   end-to-end tests.
//! * Boot counter hooks, for testing SPEC.md "When a boot counter goes back":
//!   [`DeviceHandle::restart`] power-cycles a device (next boot from its counter, empty outbox);
//!   [`DeviceHandle::wipe_boot_counter_and_restart`] erases the counter first, so the device
//!   comes back as boot 1 and reuses `(boot, seq)` keys. Its `BootFloor` handling is the real
//!   firmware's: observe the move with `wait_for(.., |v| v.boot >= floor)`, the persisted value
//!   with [`DeviceView::stored_boot`] / [`DeviceHandle::stored_boot`], and the `Online { boot }`
//!   it publishes on the move. `DeviceSpec::stored_boot` starts a device from any counter value.
//!
//! rust-mqtt's client is not `Send`, so devices run on `LocalSet`s: one OS thread per core,
//! each with a current-thread runtime carrying thousands of device tasks.

pub mod clock;
pub mod device;
pub mod home;
pub mod io;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use firmware::Indication;
use firmware::session::DEFAULT_KEEP_ALIVE_S;
use protocol::DeviceId;
use tokio::sync::{oneshot, watch};

pub use clock::SimClock;
pub use device::{DeviceHandle, DeviceSpec, DeviceView, SimBootCounter, spawn_device, spawn_local_device};

/// One simulated device, as end-to-end tests drive it.
pub type SimulatedDevice = DeviceHandle;
pub use firmware::session::Event;
pub use home::{DeviceKind, HomeModel, HomeRates, device_id};

/// What went wrong in the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("device {0} is gone")]
    DeviceGone(String),
    #[error("timed out waiting for device {device} (last state {last:?})")]
    Timeout { device: String, last: Box<DeviceView> },
}

/// Each device's MQTT password.
#[derive(Clone)]
pub enum Password {
    /// The same password for every device (a test broker allowing anonymous or shared login).
    Shared(String),
    /// Per-device credentials, as provisioned in the broker's password file.
    PerDevice(Arc<dyn Fn(&DeviceId) -> String + Send + Sync>),
}

impl Password {
    pub fn for_device(&self, id: &DeviceId) -> String {
        match self {
            Password::Shared(password) => password.clone(),
            Password::PerDevice(derive) => derive(id),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Shared(_) => f.write_str("Password::Shared(..)"),
            Password::PerDevice(_) => f.write_str("Password::PerDevice(..)"),
        }
    }
}

/// A simulation run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub broker_host: String,
    pub broker_port: u16,
    pub homes: usize,
    /// Home numbers are `first_home..first_home + homes` (they name the devices).
    pub first_home: usize,
    /// Same seed, same simulated days.
    pub seed: u64,
    pub password: Password,
    /// Simulated seconds per real second for the residents' days (the home model).
    pub speed: f64,
    /// The same for the devices' own clocks: heartbeats, activity windows, retransmission,
    /// keep-alive and reconnect backoff. Keep it at 1 for load tests: compressing network
    /// timers makes devices retransmit and ping far more often per real second than real
    /// devices would (at 60x, a 5 s retransmission timeout is 83 ms).
    pub device_speed: f64,
    /// Real time to run; `None` runs until `shutdown` resolves.
    pub duration: Option<Duration>,
    /// Worker threads (each a `LocalSet`); 0 means one per available core.
    pub threads: usize,
    /// Simulated clock time at the start, minutes after midnight.
    pub start_minute_of_day: u16,
    pub rates: HomeRates,
    pub keep_alive_s: u16,
    /// Homes start spread over this much real time, so the broker is not hit by every
    /// connection at once.
    pub ramp_up: Duration,
    /// The first home's resident presses the pendant this long after the home starts (a
    /// demo's first alarm, on cue); `None`: only the rates decide.
    pub opening_press: Option<Duration>,
}

impl SimConfig {
    /// Defaults: shared empty password, real time (homes and devices), until shutdown, one thread per core,
    /// starting at 07:00, default rates, 60 s keep-alive, 5 s ramp-up.
    pub fn new(broker_host: impl Into<String>, broker_port: u16, homes: usize, seed: u64) -> Self {
        Self {
            broker_host: broker_host.into(),
            broker_port,
            homes,
            first_home: 1,
            seed,
            password: Password::Shared(String::new()),
            speed: 1.0,
            device_speed: 1.0,
            duration: None,
            threads: 0,
            start_minute_of_day: 7 * 60,
            rates: HomeRates::default(),
            keep_alive_s: DEFAULT_KEEP_ALIVE_S,
            ramp_up: Duration::from_secs(5),
            opening_press: None,
        }
    }
}

/// What a simulation run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    pub homes: usize,
    /// Devices that ran and stopped cleanly.
    pub devices: usize,
    pub threads: usize,
    pub real_elapsed: Duration,
    /// Simulated time that passed.
    pub simulated: Duration,
    pub presses: u64,
    pub cancels: u64,
    pub falls: u64,
    pub smoke_alarms: u64,
    pub sensor_events: u64,
    pub motion_reports: u64,
    pub battery_readings: u64,
    pub outages: u64,
    /// Successful MQTT connects over all devices.
    pub connects: u64,
    /// Events sent by all devices (sum of sequence numbers used).
    pub events: u64,
    /// Events still waiting for a receipt when the devices stopped.
    pub outbox_depth_at_end: u64,
    pub events_dropped: u64,
    pub alarms_lost: u64,
    /// How many devices showed each indication at the end.
    pub indications_at_end: Vec<(Indication, usize)>,
}

impl fmt::Display for SimReport {
    /// A few lines for a command-line summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} homes, {} devices on {} threads; {:.1?} real, {:.1?} simulated",
            self.homes, self.devices, self.threads, self.real_elapsed, self.simulated
        )?;
        writeln!(
            f,
            "residents: {} presses ({} cancelled), {} falls, {} smoke alarms, {} sensor changes, {} motion reports",
            self.presses, self.cancels, self.falls, self.smoke_alarms, self.sensor_events, self.motion_reports
        )?;
        writeln!(
            f,
            "devices: {} events, {} connects, {} outages, {} unreceipted at end, {} dropped, {} alarms lost",
            self.events, self.connects, self.outages, self.outbox_depth_at_end, self.events_dropped, self.alarms_lost
        )?;
        write!(f, "feedback at end:")?;
        for (indication, count) in &self.indications_at_end {
            write!(f, " {indication:?}={count}")?;
        }
        Ok(())
    }
}

/// Runs the simulation until `config.duration` passes or `shutdown` resolves, then stops
/// every device (each announces `Offline` and disconnects) and reports.
pub async fn run(config: SimConfig, shutdown: impl Future<Output = ()>) -> Result<SimReport, SimError> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = if config.threads == 0 { cores } else { config.threads }.clamp(1, config.homes.max(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(home::Stats::default());
    let clock = SimClock::new(config.speed);

    let mut workers = Vec::with_capacity(threads);
    for worker in 0..threads {
        let homes: Vec<usize> = (worker..config.homes).step_by(threads).collect();
        let (done_tx, done_rx) = oneshot::channel();
        let (config, stop, stats) = (config.clone(), stop_rx.clone(), stats.clone());
        std::thread::Builder::new()
            .name(format!("sim-worker-{worker}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(SimError::Io)
                    .and_then(|runtime| {
                        let local = tokio::task::LocalSet::new();
                        local.block_on(&runtime, run_worker(homes, config, clock, stop, stats))
                    });
                let _ = done_tx.send(result);
            })?;
        workers.push(done_rx);
    }

    let timer = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = timer => {}
    }
    let simulated_ms = clock.now_ms();
    let _ = stop_tx.send(true);

    let mut views = Vec::new();
    for worker in workers {
        match worker.await {
            Ok(Ok(mut worker_views)) => views.append(&mut worker_views),
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(SimError::Setup("a simulator worker thread died".into())),
        }
    }

    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut indications: Vec<(Indication, usize)> = Vec::new();
    for view in &views {
        match indications
            .iter_mut()
            .find(|(indication, _)| *indication == view.indication)
        {
            Some((_, count)) => *count += 1,
            None => indications.push((view.indication, 1)),
        }
    }
    Ok(SimReport {
        homes: config.homes,
        devices: views.len(),
        threads,
        real_elapsed: started.elapsed(),
        simulated: Duration::from_millis(simulated_ms),
        presses: load(&stats.presses),
        cancels: load(&stats.cancels),
        falls: load(&stats.falls),
        smoke_alarms: load(&stats.smoke_alarms),
        sensor_events: load(&stats.sensor_events),
        motion_reports: load(&stats.motion_reports),
        battery_readings: load(&stats.battery_readings),
        outages: load(&stats.outages),
        connects: views.iter().map(|v| u64::from(v.connects)).sum(),
        events: views.iter().map(|v| u64::from(v.next_seq)).sum(),
        outbox_depth_at_end: views.iter().map(|v| v.outbox_depth as u64).sum(),
        events_dropped: views.iter().map(|v| u64::from(v.events_dropped)).sum(),
        alarms_lost: views.iter().map(|v| u64::from(v.alarms_lost)).sum(),
        indications_at_end: indications,
    })
}

/// One worker thread's homes, on its `LocalSet`.
async fn run_worker(
    homes: Vec<usize>,
    config: SimConfig,
    clock: SimClock,
    stop: watch::Receiver<bool>,
    stats: Arc<home::Stats>,
) -> Result<Vec<DeviceView>, SimError> {
    let total = config.homes.max(1) as u32;
    let mut tasks = Vec::with_capacity(homes.len());
    for home in homes {
        let (config, mut stop, stats) = (config.clone(), stop.clone(), stats.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let delay = config.ramp_up.mul_f64(f64::from(home as u32) / f64::from(total));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stopped| *stopped) => return Ok(Vec::new()),
            }
            let number = config.first_home + home;
            let mut devices = Vec::with_capacity(DeviceKind::ALL.len());
            for kind in DeviceKind::ALL {
                let id = device_id(number, kind)?;
                let mut spec = DeviceSpec::new(
                    id,
                    config.password.for_device(&id),
                    config.broker_host.clone(),
                    config.broker_port,
                );
                spec.activity = kind.activity();
                spec.keep_alive_s = config.keep_alive_s;
                spec.speed = config.device_speed;
                spec.seed = config.seed;
                devices.push((kind, spawn_local_device(spec)?));
            }
            let mut model = HomeModel::new(number, config.seed, config.rates);
            if number == config.first_home
                && let Some(after) = config.opening_press
            {
                // In the home's simulated time, so that it comes `after` in real time.
                model = model.with_opening_press((after.as_secs_f64() * config.speed * 1_000.0) as u64);
            }
            let minute_of_day = ((u64::from(config.start_minute_of_day) + clock.now_ms() / 60_000) % 1_440) as u16;
            // Each home keeps its own minute grid from when it started.
            let home_clock = SimClock::new(config.speed);
            Ok::<_, SimError>(home::drive_home(model, devices, home_clock, minute_of_day, stop, stats).await)
        }));
    }
    let mut views = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(mut home_views)) => views.append(&mut home_views),
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(SimError::Setup(format!("home task failed: {error}"))),
        }
    }
    Ok(views)
}
