//! The pendant's hardware as the session's [`Platform`]: the clock (embassy-time), the button
//! and the LIS3DH sampled at 100 Hz through the firmware's debouncer and fall detector, the
//! LED and buzzer driven from the device core's indication, and the alarm log in flash.
//!
//! Known limit: the NVMC stalls the CPU while it erases a 4 KiB page (up to 85 ms on the
//! nRF52840), which the alarm log does when it wraps to a new page; a button press shorter
//! than that plus the 30 ms debounce, made exactly then, is not seen. Presses on a pendant
//! last longer, and the alarm log erases rarely (a page holds dozens of alarms).

use embassy_nrf::gpio::{Input, Output};
use embassy_nrf::twim::Twim;
use embassy_time::{Duration, Instant, Timer, with_timeout};
use firmware::device::Device;
use firmware::hw::button::{ActiveLevel, Button};
use firmware::hw::fall::FallDetector;
use firmware::hw::feedback::{Feedback, FeedbackError, Pattern};
use firmware::hw::lis3dh::Lis3dhAsync;
use firmware::persist::{AlarmLog, OutboxMirror};
use firmware::session::{Event, Platform, SessionState};
use heapless::Deque;

/// Button and accelerometer sampling period: the fall detector's 100 Hz, and well inside the
/// button's 30 ms debounce.
const SAMPLE_MS: u64 = 10;
/// Events found by one sample and not yet handed to the session (a button press and a fall
/// in the same 10 ms at most; room to spare).
const PENDING: usize = 8;
/// One LIS3DH burst read takes about 0.2 ms at 400 kHz; a bus held low by a stuck device must
/// not stop the sampling (the button shares the loop), so a read is abandoned after this.
const I2C_TIMEOUT: Duration = Duration::from_millis(5);

/// The pendant's inputs, outputs and alarm log.
pub struct Pendant<'d, L: AlarmLog> {
    button_pin: Input<'d>,
    button: Button,
    /// `None` if the LIS3DH did not answer at start: the button still works.
    accelerometer: Option<Lis3dhAsync<Twim<'d>>>,
    fall: FallDetector,
    feedback: Feedback<Output<'d>, Output<'d>>,
    /// Cancel safety: an input is queued here before `wait` returns it, so a `wait` dropped
    /// by the session (its connect or read won the race) loses nothing.
    pending: Deque<Event, PENDING>,
    next_sample_ms: u64,
    log: L,
    mirror: OutboxMirror,
}

impl<L: AlarmLog> core::fmt::Debug for Pendant<'_, L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pendant")
            .field("accelerometer", &self.accelerometer.is_some())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'d, L: AlarmLog> Pendant<'d, L> {
    /// `mirror` is what [`OutboxMirror::restore`] found in `log` at start.
    pub fn new(
        button_pin: Input<'d>,
        accelerometer: Option<Lis3dhAsync<Twim<'d>>>,
        feedback: Feedback<Output<'d>, Output<'d>>,
        log: L,
        mirror: OutboxMirror,
    ) -> Self {
        Self {
            button_pin,
            button: Button::default(),
            accelerometer,
            fall: FallDetector::default(),
            feedback,
            pending: Deque::new(),
            next_sample_ms: 0,
            log,
            mirror,
        }
    }

    /// Samples the button and the accelerometer once and queues what they report.
    async fn sample(&mut self, now_ms: u64) {
        match self.button.poll(now_ms, &mut self.button_pin, ActiveLevel::Low) {
            Ok(Some(input)) => self.queue(Event::Input(input)),
            Ok(None) => {}
            Err(never) => match never {},
        }
        if let Some(accelerometer) = self.accelerometer.as_mut()
            // A failed or abandoned read skips one sample; the detector tolerates gaps.
            && let Ok(Ok(a)) = with_timeout(I2C_TIMEOUT, accelerometer.read_mg()).await
            && let Some(input) = self.fall.update(now_ms, a.x, a.y, a.z)
        {
            self.queue(Event::Input(input));
        }
        // Patterns step in tens of milliseconds: keep them moving between session steps.
        drive_feedback(self.feedback.update(now_ms));
    }

    fn queue(&mut self, event: Event) {
        // Two inputs per sample at most, handed out before the next sample: never full.
        let _ = self.pending.push_back(event);
    }
}

impl<L: AlarmLog> Platform for Pendant<'_, L> {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    async fn wait(&mut self, deadline_ms: u64) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let now = self.now_ms();
            if now >= self.next_sample_ms {
                self.next_sample_ms = now.saturating_add(SAMPLE_MS);
                self.sample(now).await;
                continue;
            }
            if now >= deadline_ms {
                return None;
            }
            Timer::at(Instant::from_millis(self.next_sample_ms.min(deadline_ms))).await;
        }
    }

    fn show(&mut self, device: &Device, _session: &SessionState, now_ms: u64) {
        // Thresholds the gateway sent (the core applies only valid ones).
        self.fall.apply_device_config(device.config());
        drive_feedback(self.feedback.follow(Pattern::from(device.indication(now_ms)), now_ms));
    }

    async fn persist(&mut self, device: &Device) {
        // On a flash error the alarm is still in the device's outbox in RAM and is sent; the
        // mirror still lacks it, so the next sync stores it again.
        let _ = self.mirror.sync(&mut self.log, device).await;
    }
}

/// The nRF's GPIO outputs cannot fail.
fn drive_feedback(result: Result<(), FeedbackError<core::convert::Infallible, core::convert::Infallible>>) {
    if let Err(FeedbackError::Led(never) | FeedbackError::Buzzer(never)) = result {
        match never {}
    }
}
