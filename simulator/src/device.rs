//! One simulated device: the real firmware [`Device`] core and MQTT session over TCP, with
//! inputs injected through a [`DeviceHandle`] and its state observable through it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use firmware::boot::{BootCounter, BootCounterError, MemoryBootCounter};
use firmware::device::{ActivitySetup, Device, DeviceError, DeviceSetup};
use firmware::rng::seed_from;
use firmware::session::{self, Backoff, DEFAULT_KEEP_ALIVE_S, Event, Platform, SessionConfig, SessionState};
use firmware::{Indication, Input};
use protocol::{AlarmKind, DeviceConfig, DeviceId, FirmwareVersion, SensorState};
use tokio::sync::{mpsc, oneshot, watch};

use crate::SimError;
use crate::clock::SimClock;
use crate::io::TcpConnector;

/// The firmware version simulated devices report.
pub const SIM_FIRMWARE: FirmwareVersion = FirmwareVersion {
    major: 0,
    minor: 1,
    patch: 0,
};

/// A simulated device's boot counter: its flash cell, shared between the device and its
/// [`DeviceHandle`] so that a test can read it ([`DeviceHandle::stored_boot`]) or wipe it
/// ([`DeviceHandle::wipe_boot_counter_and_restart`]). It survives the device's restarts,
/// as flash would.
#[derive(Debug, Clone, Default)]
pub struct SimBootCounter(Arc<Mutex<MemoryBootCounter>>);

impl SimBootCounter {
    /// A counter whose next boot will be `stored + 1`.
    pub fn new(stored: u32) -> Self {
        Self(Arc::new(Mutex::new(MemoryBootCounter::new(stored))))
    }

    /// The value last stored.
    pub fn stored(&self) -> u32 {
        self.lock().stored()
    }

    /// Erases the cell, as a flash wipe or a replacement board would: the next start boots
    /// as 1 and reuses keys the gateway already has.
    pub fn wipe(&self) {
        *self.lock() = MemoryBootCounter::new(0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryBootCounter> {
        // The guarded value is a plain number, valid even if a holder panicked.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BootCounter for SimBootCounter {
    type Error = BootCounterError;

    fn load_and_increment(&mut self) -> Result<u32, Self::Error> {
        self.lock().load_and_increment()
    }

    fn raise_to(&mut self, floor: u32) -> Result<u32, Self::Error> {
        self.lock().raise_to(floor)
    }
}

/// Everything needed to start one simulated device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub device_id: DeviceId,
    pub password: String,
    pub broker_host: String,
    pub broker_port: u16,
    /// The boot counter's stored value; the device boots as `stored_boot + 1`.
    pub stored_boot: u32,
    pub config: DeviceConfig,
    /// `Some` for devices with motion inputs (activity summaries).
    pub activity: Option<ActivitySetup>,
    pub keep_alive_s: u16,
    pub backoff: Backoff,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Seeds the reconnect jitter (mixed with the device id).
    pub seed: u64,
    /// Real-time limit for opening a TCP connection.
    pub connect_timeout: Duration,
}

impl DeviceSpec {
    /// Defaults: real time, default config, no activity, 60 s keep-alive, default backoff.
    pub fn new(device_id: DeviceId, password: impl Into<String>, broker_host: impl Into<String>, port: u16) -> Self {
        Self {
            device_id,
            password: password.into(),
            broker_host: broker_host.into(),
            broker_port: port,
            stored_boot: 0,
            config: DeviceConfig::default(),
            activity: None,
            keep_alive_s: DEFAULT_KEEP_ALIVE_S,
            backoff: Backoff::default(),
            speed: 1.0,
            seed: 0,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A snapshot of a simulated device, updated after every step of its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceView {
    pub indication: Indication,
    /// Events waiting for a receipt.
    pub outbox_depth: usize,
    /// The MQTT session is up (CONNACK received, subscribed).
    pub connected: bool,
    /// Successful connects so far.
    pub connects: u32,
    pub boot: u32,
    /// The sequence number the next event gets.
    pub next_seq: u32,
    pub events_dropped: u32,
    pub alarms_lost: u32,
    /// The boot counter's stored value (the boot the device is on, once it has started or
    /// moved to a gateway's boot floor).
    pub stored_boot: u32,
    /// Restarts through [`DeviceHandle::restart`] or a wipe.
    pub restarts: u32,
    /// The device's uptime (simulated ms) at the snapshot.
    pub now_ms: u64,
    /// The device has finished (stopped).
    pub stopped: bool,
}

struct HostPlatform {
    clock: SimClock,
    events: mpsc::UnboundedReceiver<Event>,
    view: watch::Sender<DeviceView>,
    device_id: DeviceId,
    boot_counter: SimBootCounter,
    restarts: u32,
}

impl Platform for HostPlatform {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    async fn wait(&mut self, deadline_ms: u64) -> Option<Event> {
        let until = self.clock.instant_at(deadline_ms);
        tokio::select! {
            biased;
            // A dropped handle switches the device off.
            event = self.events.recv() => Some(event.unwrap_or(Event::Stop)),
            () = tokio::time::sleep_until(until) => None,
        }
    }

    fn show(&mut self, device: &Device, session: &SessionState, now_ms: u64) {
        let view = self.snapshot(device, session, now_ms, false);
        self.view.send_if_modified(|current| {
            // `now_ms` alone changing is not news worth waking observers for.
            let mut previous = *current;
            previous.now_ms = view.now_ms;
            *current = view;
            previous != view
        });
    }

    fn device_error(&mut self, error: DeviceError) {
        tracing::warn!(device = %self.device_id, %error, "device core error");
    }
}

impl HostPlatform {
    fn snapshot(&self, device: &Device, session: &SessionState, now_ms: u64, stopped: bool) -> DeviceView {
        DeviceView {
            indication: device.indication(now_ms),
            outbox_depth: device.outbox_depth(),
            connected: device.is_connected(),
            connects: session.connects(),
            boot: device.boot(),
            next_seq: device.next_seq(),
            events_dropped: device.events_dropped(),
            alarms_lost: device.alarms_lost(),
            stored_boot: self.boot_counter.stored(),
            restarts: self.restarts,
            now_ms,
            stopped,
        }
    }
}

/// Controls and observes one running simulated device. Dropping it switches the device off.
#[derive(Debug)]
pub struct DeviceHandle {
    device_id: DeviceId,
    events: mpsc::UnboundedSender<Event>,
    view: watch::Receiver<DeviceView>,
    offline_until_ms: Arc<AtomicU64>,
    clock: SimClock,
    boot_counter: SimBootCounter,
    restart_requested: Arc<AtomicBool>,
    done: Option<oneshot::Receiver<Result<DeviceView, SimError>>>,
}

impl DeviceHandle {
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// Sends any event to the device's loop.
    pub fn send(&self, event: Event) {
        // A device that has stopped ignores further events.
        let _ = self.events.send(event);
    }

    pub fn input(&self, input: Input) {
        self.send(Event::Input(input));
    }

    /// A short press of the pendant button.
    pub fn press(&self) {
        self.input(Input::ButtonPressed);
    }

    /// Press-and-hold, reported as the button driver does (press, then hold): cancels an
    /// earlier alarm still within the grace window; otherwise it is one call for help.
    pub fn hold(&self) {
        self.input(Input::ButtonPressed);
        self.input(Input::ButtonHeld);
    }

    pub fn fall(&self) {
        self.input(Input::FallDetected);
    }

    pub fn alarm(&self, kind: AlarmKind) {
        self.input(Input::Alarm(kind));
    }

    pub fn sensor(&self, input: u8, state: SensorState) {
        self.input(Input::Sensor { input, state });
    }

    pub fn battery(&self, millivolts: u16, percent: u8) {
        self.input(Input::Battery { millivolts, percent });
    }

    pub fn motion(&self, count: u16) {
        self.send(Event::Motion(count));
    }

    /// Simulates a radio outage of `for_ms` simulated ms: the connection drops now (the
    /// broker publishes the last will) and reconnecting fails until the outage ends.
    pub fn go_offline(&self, for_ms: u64) {
        let until = self.clock.now_ms().saturating_add(for_ms);
        self.offline_until_ms.store(until, Ordering::Relaxed);
        self.send(Event::LinkLost);
    }

    /// [`DeviceHandle::go_offline`] for a real-time duration (converted to the device's clock).
    pub fn go_offline_real(&self, duration: Duration) {
        let device_ms = duration.as_secs_f64() * 1_000.0 * self.clock.speed();
        self.go_offline(device_ms as u64);
    }

    /// Power-cycles the device: it announces `Offline` and disconnects, then starts again
    /// as a fresh boot from its boot counter (stored + 1), with an empty outbox (the
    /// reference firmware keeps its outbox in RAM) and a clock without time. The handle stays
    /// valid; [`DeviceView::restarts`] counts the restarts.
    pub fn restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
        self.send(Event::Stop);
    }

    /// Wipes the boot counter (as erased flash or a replacement board under the same id
    /// would) and restarts: the device comes back as boot 1, so its new events reuse
    /// `(boot, seq)` keys the gateway already holds. A gateway that implements SPEC.md "When a
    /// boot counter goes back" answers with a `BootFloor`; the device then persists the floor
    /// and moves to it: wait for `view.boot >= floor` (and `view.stored_boot`).
    pub fn wipe_boot_counter_and_restart(&self) {
        self.boot_counter.wipe();
        self.restart();
    }

    /// The boot counter's stored value now (not waiting for a snapshot).
    pub fn stored_boot(&self) -> u32 {
        self.boot_counter.stored()
    }

    /// The latest snapshot.
    pub fn view(&self) -> DeviceView {
        *self.view.borrow()
    }

    pub fn indication(&self) -> Indication {
        self.view().indication
    }

    pub fn outbox_depth(&self) -> usize {
        self.view().outbox_depth
    }

    /// Waits (real time) until the snapshot satisfies `predicate`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut predicate: impl FnMut(&DeviceView) -> bool,
    ) -> Result<DeviceView, SimError> {
        let waited = tokio::time::timeout(timeout, self.view.wait_for(|v| predicate(v)))
            .await
            .map(|seen| seen.map(|view| *view));
        match waited {
            Ok(Ok(view)) => Ok(view),
            Ok(Err(_)) => Err(SimError::DeviceGone(self.device_id.to_string())),
            Err(_) => Err(SimError::Timeout {
                device: self.device_id.to_string(),
                last: Box::new(self.view()),
            }),
        }
    }

    /// Switches the device off (it announces `Offline` and disconnects) and returns its
    /// final state.
    pub async fn stop(mut self) -> Result<DeviceView, SimError> {
        self.send(Event::Stop);
        match self.done.take() {
            Some(done) => done
                .await
                .map_err(|_| SimError::DeviceGone(self.device_id.to_string()))?,
            None => Ok(self.view()),
        }
    }
}

/// Starts a device on the current `LocalSet` (the MQTT client is not `Send`). Use this to
/// run thousands of devices on one thread; see [`spawn_device`] for a self-contained one.
/// Must be called from within a `LocalSet`.
pub fn spawn_local_device(spec: DeviceSpec) -> Result<DeviceHandle, SimError> {
    let device_id = spec.device_id;
    let clock = SimClock::new(spec.speed);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (view_tx, view_rx) = watch::channel(DeviceView::default());
    let (done_tx, done_rx) = oneshot::channel();
    let offline_until_ms = Arc::new(AtomicU64::new(0));
    let boot_counter = SimBootCounter::new(spec.stored_boot);
    let restart_requested = Arc::new(AtomicBool::new(false));
    let connector = TcpConnector {
        host: spec.broker_host.clone(),
        port: spec.broker_port,
        clock,
        offline_until_ms: offline_until_ms.clone(),
        timeout: spec.connect_timeout,
    };
    let platform = HostPlatform {
        clock,
        events: events_rx,
        view: view_tx,
        device_id,
        boot_counter: boot_counter.clone(),
        restarts: 0,
    };
    let restart = restart_requested.clone();
    // Boot once here so that an exhausted counter is a setup error the caller sees.
    let boot = boot_counter
        .clone()
        .load_and_increment()
        .map_err(|e| SimError::Setup(e.to_string()))?;
    tokio::task::spawn_local(async move {
        let result = run_device(spec, boot, restart, connector, platform).await;
        let _ = done_tx.send(result);
    });
    Ok(DeviceHandle {
        device_id,
        events: events_tx,
        view: view_rx,
        offline_until_ms,
        clock,
        boot_counter,
        restart_requested,
        done: Some(done_rx),
    })
}

/// Starts a device on a thread of its own (current-thread runtime and `LocalSet`), so it
/// can be driven from any async context, e.g. a `#[tokio::test]`.
pub fn spawn_device(spec: DeviceSpec) -> Result<DeviceHandle, SimError> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let name = format!("sim-{}", spec.device_id);
    std::thread::Builder::new().name(name).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = handle_tx.send(Err(SimError::Io(error)));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let spawned = spawn_local_device(spec);
            let _ = handle_tx.send(spawned);
        });
        // Run until the device task (and anything it spawned) has finished.
        runtime.block_on(local);
    })?;
    handle_rx
        .recv()
        .map_err(|_| SimError::Setup("device thread ended before starting".into()))?
}

/// Runs the device from `boot` until it stops; a requested restart boots it again from its
/// counter.
async fn run_device(
    spec: DeviceSpec,
    mut boot: u32,
    restart_requested: Arc<AtomicBool>,
    mut connector: TcpConnector,
    mut platform: HostPlatform,
) -> Result<DeviceView, SimError> {
    let config = SessionConfig {
        device_id: spec.device_id,
        password: spec.password.as_bytes(),
        keep_alive_s: spec.keep_alive_s,
    };
    let mut boot_counter = platform.boot_counter.clone();
    loop {
        let now = platform.now_ms();
        let mut device = Device::new(
            DeviceSetup {
                boot,
                firmware: SIM_FIRMWARE,
                config: spec.config,
                activity: spec.activity,
            },
            now,
        );
        let seed = spec.seed ^ seed_from(spec.device_id.as_str().as_bytes()) ^ u64::from(boot);
        let mut state = SessionState::new(spec.backoff, spec.keep_alive_s, seed, now);
        let result = session::run(
            &mut device,
            &mut state,
            &config,
            &mut connector,
            &mut platform,
            &mut boot_counter,
        )
        .await;
        let now = platform.now_ms();
        if result.is_ok() && restart_requested.swap(false, Ordering::SeqCst) {
            boot = boot_counter
                .load_and_increment()
                .map_err(|e| SimError::Setup(e.to_string()))?;
            platform.restarts = platform.restarts.saturating_add(1);
            tracing::info!(device = %spec.device_id, boot, "simulated device restarted");
            continue;
        }
        let view = platform.snapshot(&device, &state, now, true);
        platform.view.send_replace(view);
        result.map_err(|e| SimError::Setup(e.to_string()))?;
        return Ok(view);
    }
}
