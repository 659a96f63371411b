//! The board's [`Platform`]: a virtual clock, the drivers polled on it, and the script.
//!
//! Every 10 ms of virtual time (while the script runs) it reads one accelerometer sample
//! through the real [`Lis3dh`] driver into the real [`FallDetector`], and samples the button
//! pin through the real [`Button`] debouncer; what they report becomes the session's events.
//! Between samples, and after the script, the clock jumps straight to the session's next
//! deadline. It switches the device off ([`Event::Stop`]) once the broker has receipted every
//! expected uplink and the device's outbox is empty, or, failing that, at [`TIME_LIMIT_MS`].
//!
//! It also owns the flash: whenever the session asks ([`Platform::persist`], before it
//! publishes) it syncs the alarm log with the device ([`OutboxMirror::sync`]), and once the
//! press alarm is in flash and the broker has not receipted it, it cuts the power: `wait`
//! never returns again, and `main` drops the session mid-flight and boots a new device, which
//! restores the log.

use core::cell::{Cell, RefCell};
use core::task::Poll;

use firmware::Input;
use firmware::device::{Device, DeviceError};
use firmware::hw::button::{ActiveLevel, Button};
use firmware::hw::fall::FallDetector;
use firmware::hw::lis3dh::{Config, Lis3dh, SlaveAddr, ctrl_reg1_value, ctrl_reg4_value};
use firmware::persist::{FlashAlarmLog, OutboxMirror};
use firmware::session::{Event, Platform, SessionState};
use heapless::Deque;

use crate::broker::Broker;
use crate::console::{line, out, out_u32};
use crate::world::{FALL_TRACE, RamFlash, SAMPLE_MS, ScriptedButtonPin, ScriptedLis3dh};

/// The button goes down here (after the fall's alarm) and is released 200 ms later.
const PRESS_FROM_MS: u64 = 6_000;
const PRESS_UNTIL_MS: u64 = 6_200;
/// Virtual time by which everything must have happened.
pub const TIME_LIMIT_MS: u64 = 120_000;
/// Calls to `wait` by which everything must have happened: a loop that stops advancing the
/// clock fails the run instead of hanging it.
const WAIT_LIMIT: u32 = 100_000;

#[derive(Debug)]
pub struct Scenario<'b> {
    broker: &'b RefCell<Broker>,
    now_ms: u64,
    next_sample_ms: u64,
    script_end_ms: u64,
    /// `None` once [`Scenario::check`] has taken the bus back.
    accelerometer: Option<Lis3dh<ScriptedLis3dh>>,
    accelerometer_ready: bool,
    fall: FallDetector,
    button: Button,
    pin: ScriptedButtonPin,
    pending: Deque<Event, 4>,
    falls: u8,
    presses: u8,
    waits: u32,
    stop_sent: bool,
    out_of_time: bool,
    device_errors: u8,
    driver_errors: u8,
    /// From the last `show`: the device's outbox depth.
    outbox_depth: usize,
    /// False from the power cut until the next boot.
    power: &'b Cell<bool>,
    power_cuts: u8,
    log: FlashAlarmLog<RamFlash>,
    mirror: OutboxMirror,
    restored_alarms: u16,
    flash_errors: u8,
}

impl<'b> Scenario<'b> {
    pub fn new(broker: &'b RefCell<Broker>, power: &'b Cell<bool>, log: FlashAlarmLog<RamFlash>) -> Self {
        let bus = ScriptedLis3dh::new(FALL_TRACE);
        let trace_end_ms = bus.samples() as u64 * SAMPLE_MS;
        let mut accelerometer = Lis3dh::new(bus, SlaveAddr::Sa0Low);
        let accelerometer_ready = accelerometer.init(Config::default()).is_ok();
        if accelerometer_ready {
            line("LIS3DH: WHO_AM_I ok, configured 100 Hz, +-8 g, 12-bit");
        } else {
            line("LIS3DH: init failed");
        }
        Self {
            broker,
            now_ms: 0,
            next_sample_ms: 0,
            script_end_ms: trace_end_ms.max(PRESS_UNTIL_MS + 100),
            accelerometer: Some(accelerometer),
            accelerometer_ready,
            fall: FallDetector::default(),
            button: Button::default(),
            pin: ScriptedButtonPin::new(PRESS_FROM_MS, PRESS_UNTIL_MS),
            pending: Deque::new(),
            falls: 0,
            presses: 0,
            waits: 0,
            stop_sent: false,
            out_of_time: false,
            device_errors: 0,
            driver_errors: 0,
            outbox_depth: usize::MAX,
            power,
            power_cuts: 0,
            log,
            mirror: OutboxMirror::default(),
            restored_alarms: 0,
            flash_errors: 0,
        }
    }

    /// Powers up a freshly booted `device`: puts the alarms in flash back into it.
    pub async fn power_up(&mut self, device: &mut Device) {
        self.power.set(true);
        match OutboxMirror::restore(&mut self.log, device).await {
            Ok((mirror, restored)) => {
                self.mirror = mirror;
                self.restored_alarms = self.restored_alarms.saturating_add(restored.alarms);
                out("flash: ");
                out_u32(u32::from(restored.alarms));
                line(" unreceipted alarm(s) restored into the outbox");
            }
            Err(_) => {
                line("flash: the alarm log could not be read");
                self.flash_errors = self.flash_errors.saturating_add(1);
            }
        }
    }

    /// Prints the verdict on the scripted inputs; true if all is as expected.
    pub fn check(&mut self) -> bool {
        // The driver is done: take the bus back to see how it configured the chip.
        let configured = self.accelerometer.take().is_some_and(|driver| {
            let chip = driver.release();
            chip.ctrl_reg1 == ctrl_reg1_value(Config::default()) && chip.ctrl_reg4 == ctrl_reg4_value(Config::default())
        });
        let checks = [
            (
                self.accelerometer_ready && configured,
                "LIS3DH identified and configured by the driver",
            ),
            (self.driver_errors == 0, "no I2C or pin errors"),
            (self.falls == 1, "the fall trace raised exactly one fall"),
            (self.presses == 1, "the button raised exactly one press"),
            (self.device_errors == 0, "no device core errors"),
            (
                self.power_cuts == 1,
                "one power cut, with the press alarm in flash and unreceipted",
            ),
            (
                self.restored_alarms == 1,
                "the rebooted device restored that alarm from flash",
            ),
            (
                self.mirror.stored().is_empty(),
                "the alarm log is empty at the end (all receipted)",
            ),
            (self.flash_errors == 0, "no flash errors"),
            (!self.out_of_time, "finished within the time limit"),
        ];
        let mut ok = true;
        for (passed, what) in checks {
            out(if passed { "ok: " } else { "FAIL: " });
            line(what);
            ok &= passed;
        }
        ok
    }

    /// Reads the sensors due at `now_ms` and queues what they report.
    fn sample(&mut self) {
        let now = self.now_ms;
        if let Some(accelerometer) = self.accelerometer.as_mut().filter(|_| self.accelerometer_ready) {
            match accelerometer.read_mg() {
                Ok(a) => {
                    if let Some(input) = self.fall.update(now, a.x, a.y, a.z) {
                        out("t=");
                        out_u32(now as u32);
                        out(" ms  fall detector: ");
                        line(if input == Input::FallDetected {
                            "FallDetected"
                        } else {
                            "other input"
                        });
                        self.falls = self.falls.saturating_add(u8::from(input == Input::FallDetected));
                        let _ = self.pending.push_back(Event::Input(input));
                    }
                }
                Err(_) => self.driver_errors = self.driver_errors.saturating_add(1),
            }
        }
        self.pin.now_ms = now;
        match self.button.poll(now, &mut self.pin, ActiveLevel::Low) {
            Ok(Some(input)) => {
                out("t=");
                out_u32(now as u32);
                out(" ms  button: ");
                line(if input == Input::ButtonPressed {
                    "ButtonPressed"
                } else {
                    "ButtonHeld"
                });
                self.presses = self.presses.saturating_add(u8::from(input == Input::ButtonPressed));
                let _ = self.pending.push_back(Event::Input(input));
            }
            Ok(None) => {}
            Err(never) => match never {},
        }
    }

    fn done(&self) -> bool {
        let broker = self.broker.borrow();
        self.now_ms >= self.script_end_ms
            && broker.all_receipted()
            && broker.is_open()
            && self.outbox_depth == 0
            && self.mirror.stored().is_empty()
    }

    fn stop(&mut self, reason: &str) -> Option<Event> {
        self.stop_sent = true;
        out("t=");
        out_u32(self.now_ms as u32);
        out(" ms  switch off: ");
        line(reason);
        Some(Event::Stop)
    }
}

impl Platform for Scenario<'_> {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    async fn wait(&mut self, deadline_ms: u64) -> Option<Event> {
        if !self.power.get() {
            // Nothing runs without power: main sees this and drops the session.
            return core::future::poll_fn(|_| Poll::Pending).await;
        }
        self.waits = self.waits.saturating_add(1);
        if let Some(event) = self.pending.pop_front() {
            return Some(event);
        }
        if self.stop_sent {
            return Some(Event::Stop);
        }
        if self.done() {
            return self.stop("every uplink receipted");
        }
        if self.waits > WAIT_LIMIT || self.now_ms > TIME_LIMIT_MS {
            self.out_of_time = true;
            return self.stop("time limit");
        }
        while self.next_sample_ms < self.script_end_ms && self.next_sample_ms <= deadline_ms {
            self.now_ms = self.now_ms.max(self.next_sample_ms);
            self.next_sample_ms += SAMPLE_MS;
            self.sample();
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
        }
        self.now_ms = self.now_ms.max(deadline_ms.min(TIME_LIMIT_MS + 1));
        None
    }

    async fn persist(&mut self, device: &Device) {
        match self.mirror.sync(&mut self.log, device).await {
            Ok(synced) if synced.stored > 0 || synced.removed > 0 => {
                out("flash: stored ");
                out_u32(u32::from(synced.stored));
                out(", removed ");
                out_u32(u32::from(synced.removed));
                out(" alarm(s); ");
                out_u32(self.mirror.stored().len() as u32);
                line(" unreceipted in flash");
            }
            Ok(_) => {}
            Err(_) => {
                line("flash: the alarm log could not be updated");
                self.flash_errors = self.flash_errors.saturating_add(1);
            }
        }
    }

    fn show(&mut self, device: &Device, _session: &SessionState, now_ms: u64) {
        self.outbox_depth = device.outbox_depth();
        if self.power_cuts == 0 && self.broker.borrow().press_withheld() && !self.mirror.stored().is_empty() {
            self.power_cuts = 1;
            self.power.set(false);
            out("t=");
            out_u32(now_ms as u32);
            line(" ms  POWER CUT: the device loses its RAM, the press alarm is only in flash");
        }
    }

    fn device_error(&mut self, error: DeviceError) {
        out("device core error: ");
        line(match error {
            DeviceError::AlarmNotQueued { .. } => "alarm not queued",
            DeviceError::TooLarge { .. } => "event too large",
            DeviceError::BootFloorNotPersisted { .. } => "boot floor not persisted",
        });
        self.device_errors = self.device_errors.saturating_add(1);
    }
}
