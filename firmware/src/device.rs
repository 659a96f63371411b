//! The device core: a pure state machine. It is fed [`Input`]s from the hardware layer,
//! downlinks from the session and the current time (milliseconds since power-on, injected:
//! there is no clock in here), and answers with uplinks to publish ([`Device::poll_transmit`])
//! and the feedback to show ([`Device::indication`]). The same code runs on the pendant and
//! in the host simulator.

use heapless::Vec;
use protocol::{
    ActivitySummary, AlarmKind, CommandResult, DeviceConfig, DeviceStatus, Downlink, DownlinkBody, FirmwareVersion,
    MAX_ACTIVITY_WINDOWS, MAX_UPLINK_LEN, SensorState, Uplink, UplinkBody, UplinkHeader, decode_downlink,
    device_time_accepted, encode_uplink,
};

use crate::boot::BootCounter;

use crate::hw::battery::{BatteryMonitor, BatteryReading};
use crate::hw::tmp102::TemperatureMonitor;
use crate::indication::Indication;
use crate::input::Input;
use crate::outbox::{Outbox, OutboxError, Queued};

/// Disconnected this long, the device tells the resident it has no connection.
pub const NO_CONNECTION_AFTER_MS: u64 = 60_000;
/// How long "received by centre" stays on without further news.
pub const RECEIVED_SHOW_MS: u64 = 10 * 60_000;
/// How long "help is on the way" stays on if no resolution arrives.
pub const HELP_SHOW_MS: u64 = 60 * 60_000;
/// How long "resolved" is shown.
pub const RESOLVED_SHOW_MS: u64 = 10_000;
/// Alarms held in the core while the outbox is full of unreceipted alarms (see
/// [`DeviceError::AlarmNotQueued`]).
pub const ALARM_BACKLOG: usize = 8;

/// Accepted ranges for [`DeviceConfig`] fields (shared with the gateway); anything else is
/// `Rejected`.
pub use protocol::config_limits as limits;

/// Whether `config` is within [`limits`] and self-consistent.
pub fn config_is_valid(config: &DeviceConfig) -> bool {
    limits::HEARTBEAT_INTERVAL_S.contains(&config.heartbeat_interval_s)
        && limits::CANCEL_GRACE_S.contains(&config.cancel_grace_s)
        && limits::TEMPERATURE_CENTI.contains(&config.temperature_low_centi)
        && limits::TEMPERATURE_CENTI.contains(&config.temperature_high_centi)
        && config.temperature_low_centi < config.temperature_high_centi
        && limits::LOW_BATTERY_PERCENT.contains(&config.low_battery_percent)
        && limits::FALL_FREE_FALL_MG.contains(&config.fall_free_fall_mg)
        && limits::FALL_IMPACT_MG.contains(&config.fall_impact_mg)
        && config.fall_free_fall_mg < config.fall_impact_mg
}

/// Motion summaries, for devices with a motion input (PIR, or a pendant's accelerometer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivitySetup {
    /// Length of one counting window.
    pub window_s: u16,
    /// Windows per [`UplinkBody::Activity`] message (1..=[`MAX_ACTIVITY_WINDOWS`]).
    pub windows_per_summary: u8,
}

impl Default for ActivitySetup {
    /// Five-minute windows, one summary an hour.
    fn default() -> Self {
        Self {
            window_s: 300,
            windows_per_summary: 12,
        }
    }
}

/// What the device is, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSetup {
    /// From [`crate::boot::BootCounter::load_and_increment`].
    pub boot: u32,
    pub firmware: FirmwareVersion,
    /// Settings until the gateway sends others (and only ever valid ones are applied).
    pub config: DeviceConfig,
    /// `Some` if the device has motion inputs and should send activity summaries.
    pub activity: Option<ActivitySetup>,
}

/// Something the core could not do; the caller should surface it (log, feedback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The outbox is full of unreceipted alarms *and* the core's backlog is full: this
    /// alarm could not be kept. Counted in [`Device::alarms_lost`].
    #[error("alarm seq {seq} could not be queued: {source}")]
    AlarmNotQueued { seq: u32, source: OutboxError },
    /// The event would not encode within the protocol's size limit (a bug, never data).
    #[error("event seq {seq} does not fit in an uplink")]
    TooLarge { seq: u32 },
    /// The boot counter could not store the gateway's boot floor: the device stays on its
    /// boot (its new events keep colliding, and the gateway keeps storing them as conflict
    /// copies and sends the floor again).
    #[error("boot floor {min_boot} could not be persisted")]
    BootFloorNotPersisted { min_boot: u32 },
}

/// One uplink to publish on the device's up topic, QoS 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub header: UplinkHeader,
    pub alarm: bool,
    pub payload: Vec<u8, MAX_UPLINK_LEN>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connected,
    Disconnected { since_ms: u64 },
}

/// News from the centre about the resident's alert, newest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlertNews {
    None,
    Received { at_ms: u64 },
    HelpOnTheWay { at_ms: u64 },
    Resolved { at_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Activity {
    setup: ActivitySetup,
    window_start_ms: u64,
    current: u16,
    counts: Vec<u16, MAX_ACTIVITY_WINDOWS>,
}

impl Activity {
    fn window_ms(&self) -> u64 {
        u64::from(self.setup.window_s.max(1)).saturating_mul(1_000)
    }

    fn window_end_ms(&self) -> u64 {
        self.window_start_ms.saturating_add(self.window_ms())
    }

    fn per_summary(&self) -> usize {
        usize::from(self.setup.windows_per_summary).clamp(1, MAX_ACTIVITY_WINDOWS)
    }
}

/// The device core. See the module docs.
#[derive(Debug, Clone)]
pub struct Device {
    boot: u32,
    next_seq: u32,
    firmware: FirmwareVersion,
    config: DeviceConfig,
    started_ms: u64,
    /// Unix ms minus uptime ms, once a `TimeSync` arrived.
    clock_offset_ms: Option<i64>,
    outbox: Outbox,
    /// Alarms that found the outbox full of alarms; queued first as receipts make room.
    backlog: Vec<Uplink, ALARM_BACKLOG>,
    alarms_lost: u32,
    link: Link,
    battery: Option<(u16, u8)>,
    /// Low-battery and temperature-band decisions, with their hysteresis: the hardware
    /// layer's monitors, so the rule exists once.
    battery_monitor: BatteryMonitor,
    rssi_dbm: i8,
    temperature_monitor: TemperatureMonitor,
    next_heartbeat_ms: u64,
    activity: Option<Activity>,
    /// The last alarm the resident may still cancel: (seq, raised at). Only kinds for which
    /// [`AlarmKind::resident_cancellable`] holds.
    cancellable: Option<(u32, u64)>,
    /// The button press in progress, until its hold (if any) is seen.
    press: Option<PressInProgress>,
    news: AlertNews,
    /// A `BootFloor` above `boot` not yet persisted: see [`Device::apply_boot_floor`].
    boot_floor: Option<u32>,
}

/// A pendant press whose hold, if it comes, may be a cancel gesture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PressInProgress {
    /// The alarm this press raised.
    own_seq: u32,
    started_ms: u64,
    /// The cancellable alarm before this press: (seq, raised at).
    earlier: Option<(u32, u64)>,
}

impl Device {
    /// A freshly booted device at uptime `now_ms`. The first heartbeat is due at once so the
    /// gateway learns the device's state on every boot.
    pub fn new(setup: DeviceSetup, now_ms: u64) -> Self {
        let config = if config_is_valid(&setup.config) {
            setup.config
        } else {
            DeviceConfig::default()
        };
        Self {
            boot: setup.boot,
            next_seq: 0,
            firmware: setup.firmware,
            config,
            started_ms: now_ms,
            clock_offset_ms: None,
            outbox: Outbox::new(),
            backlog: Vec::new(),
            alarms_lost: 0,
            link: Link::Disconnected { since_ms: now_ms },
            battery: None,
            battery_monitor: BatteryMonitor::from_device_config(&config),
            rssi_dbm: 0,
            temperature_monitor: TemperatureMonitor::new(0, &config),
            next_heartbeat_ms: now_ms,
            activity: setup.activity.map(|setup| Activity {
                setup,
                window_start_ms: now_ms,
                current: 0,
                counts: Vec::new(),
            }),
            cancellable: None,
            press: None,
            news: AlertNews::None,
            boot_floor: None,
        }
    }

    // ----- inputs -------------------------------------------------------------------

    /// Handles one input from the hardware layer.
    pub fn handle_input(&mut self, input: Input, now_ms: u64) -> Result<(), DeviceError> {
        match input {
            Input::ButtonPressed => {
                let earlier = self.cancellable;
                self.raise_cancellable(AlarmKind::PendantPress, now_ms)?;
                if let Some((own_seq, _)) = self.cancellable {
                    self.press = Some(PressInProgress {
                        own_seq,
                        started_ms: now_ms,
                        earlier,
                    });
                }
                Ok(())
            }
            Input::ButtonHeld => self.button_held(now_ms),
            Input::FallDetected => self.raise_cancellable(AlarmKind::Fall, now_ms),
            // Smoke, heat, CO, flood and the rest endanger others or were not raised by the
            // resident: they never become cancellable (SPEC.md, `AlarmCancelled`).
            Input::Alarm(kind) => self.raise_cancellable(kind, now_ms),
            Input::Sensor {
                state: SensorState::Motion,
                ..
            } if self.activity.is_some() => {
                // Motion is summarised, not sent one uplink per PIR trigger.
                self.record_motion(1, now_ms);
                Ok(())
            }
            Input::Sensor { input, state } => {
                self.queue(UplinkBody::SensorChange { input, state }, now_ms)?;
                if let SensorState::Temperature { centi_celsius } = state {
                    self.check_temperature(centi_celsius, now_ms)?;
                }
                Ok(())
            }
            Input::Battery { millivolts, percent } => self.battery_reading(millivolts, percent, now_ms),
        }
    }

    /// Adds `count` motion detections to the current activity window (devices without an
    /// [`ActivitySetup`] ignore it).
    pub fn record_motion(&mut self, count: u16, now_ms: u64) {
        // Close any windows that ended before this motion so it lands in the right one.
        let _ = self.roll_activity(now_ms);
        if let Some(activity) = &mut self.activity {
            activity.current = activity.current.saturating_add(count);
        }
    }

    /// The radio's latest signal strength, reported in heartbeats.
    pub fn set_rssi(&mut self, rssi_dbm: i8) {
        self.rssi_dbm = rssi_dbm;
    }

    /// The button reports a hold after the press that began it, and that press has already
    /// raised its own alarm (an alarm is never delayed to see whether a hold follows). So a
    /// hold cancels only if the press began within the grace window of an EARLIER alarm the
    /// resident may cancel (`AlarmKind::resident_cancellable`): then both that alarm and the
    /// press's own are cancelled. Otherwise the hold is just a long press, already sent. A
    /// hold with no press seen (another input driver) is a press.
    fn button_held(&mut self, now_ms: u64) -> Result<(), DeviceError> {
        let Some(press) = self.press.take() else {
            return self.raise_cancellable(AlarmKind::PendantPress, now_ms);
        };
        let grace_ms = u64::from(self.config.cancel_grace_s) * 1_000;
        match press.earlier {
            Some((earlier_seq, raised_ms)) if press.started_ms.saturating_sub(raised_ms) <= grace_ms => {
                self.cancellable = None;
                self.news = AlertNews::None;
                self.queue(UplinkBody::AlarmCancelled { alarm_seq: earlier_seq }, now_ms)?;
                self.queue(
                    UplinkBody::AlarmCancelled {
                        alarm_seq: press.own_seq,
                    },
                    now_ms,
                )?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Raises an alarm the resident may cancel within the grace window, if its kind allows
    /// that at all; any other kind is raised without becoming cancellable.
    fn raise_cancellable(&mut self, kind: AlarmKind, now_ms: u64) -> Result<(), DeviceError> {
        let seq = self.queue(UplinkBody::Alarm(kind), now_ms)?;
        if kind.resident_cancellable() {
            self.cancellable = Some((seq, now_ms));
        }
        Ok(())
    }

    fn battery_reading(&mut self, millivolts: u16, percent: u8, now_ms: u64) -> Result<(), DeviceError> {
        self.battery = Some((millivolts, percent));
        let events = self.battery_monitor.update(BatteryReading { millivolts, percent });
        self.queue_monitor_alarms(events, now_ms)
    }

    fn check_temperature(&mut self, centi_celsius: i16, now_ms: u64) -> Result<(), DeviceError> {
        let events = self.temperature_monitor.update(centi_celsius);
        self.queue_monitor_alarms(events, now_ms)
    }

    /// Queues the alarms a monitor decided on; its readings and reports are already handled.
    fn queue_monitor_alarms(
        &mut self,
        events: impl IntoIterator<Item = Input>,
        now_ms: u64,
    ) -> Result<(), DeviceError> {
        for event in events {
            if let Input::Alarm(kind) = event {
                self.queue(UplinkBody::Alarm(kind), now_ms)?;
            }
        }
        Ok(())
    }

    // ----- downlinks ----------------------------------------------------------------

    /// Decodes and handles a payload from the down topic.
    pub fn handle_downlink_payload(&mut self, payload: &[u8], now_ms: u64) -> Result<(), DownlinkError> {
        let downlink = decode_downlink(payload)?;
        self.handle_downlink(&downlink, now_ms)?;
        Ok(())
    }

    /// Handles one message from the gateway.
    pub fn handle_downlink(&mut self, downlink: &Downlink, now_ms: u64) -> Result<(), DeviceError> {
        match &downlink.body {
            DownlinkBody::Receipt { boot, seqs } => {
                self.receipt(*boot, seqs, now_ms);
                Ok(())
            }
            DownlinkBody::HelpOnTheWay { .. } => {
                self.news = AlertNews::HelpOnTheWay { at_ms: now_ms };
                Ok(())
            }
            DownlinkBody::AlertResolved { .. } => {
                self.news = AlertNews::Resolved { at_ms: now_ms };
                self.cancellable = None;
                self.press = None;
                Ok(())
            }
            DownlinkBody::Configure { command_id, config } => {
                let result = if config_is_valid(config) {
                    self.apply_config(*config, now_ms);
                    CommandResult::Applied
                } else {
                    CommandResult::Rejected
                };
                self.ack(*command_id, result, now_ms)
            }
            DownlinkBody::SelfTest { command_id } => self.ack(*command_id, CommandResult::SelfTestPassed, now_ms),
            DownlinkBody::TimeSync { unix_ms } => {
                // A time outside the accepted range is a broken clock upstream: keep ours
                // (or none) rather than stamp events with it.
                if device_time_accepted(*unix_ms) {
                    let offset = i128::from(*unix_ms) - i128::from(now_ms);
                    self.clock_offset_ms = i64::try_from(offset).ok();
                }
                Ok(())
            }
            DownlinkBody::BootFloor { min_boot } => {
                // Never backwards: a floor at or below the current boot changes nothing.
                if *min_boot > self.boot {
                    self.boot_floor = Some(self.boot_floor.map_or(*min_boot, |floor| floor.max(*min_boot)));
                }
                Ok(())
            }
        }
    }

    /// The boot the gateway asked this device to move to, not yet persisted.
    pub fn pending_boot_floor(&self) -> Option<u32> {
        self.boot_floor
    }

    /// Moves to a pending boot floor: persists it through `counter` first (so a restart can
    /// never come back below it), then numbers every NEW event with the stored boot, from
    /// seq 0. Returns the new boot if the device moved.
    ///
    /// Events already in the outbox (and the alarm backlog) keep their old `(boot, seq)`:
    /// they may already be stored, so re-keying them could store one event twice, and
    /// retransmissions must stay byte-identical. The gateway receipts them under their old
    /// keys (as conflict copies where a key was reused). An alarm of the old boot can no
    /// longer be cancelled ("a device cannot cancel an alarm of an earlier boot"): it stays
    /// for an operator, the cautious side.
    ///
    /// If the counter fails, the request is dropped (not retried on every wake-up, which
    /// would wear the flash) and reported; the gateway sends the floor again at the next
    /// reused key or `Online`.
    pub fn apply_boot_floor<B: BootCounter>(
        &mut self,
        counter: &mut B,
        now_ms: u64,
    ) -> Result<Option<u32>, DeviceError> {
        let Some(min_boot) = self.boot_floor.take() else {
            return Ok(None);
        };
        if min_boot <= self.boot {
            return Ok(None);
        }
        let stored = counter
            .raise_to(min_boot)
            .map_err(|_| DeviceError::BootFloorNotPersisted { min_boot })?;
        if stored < min_boot {
            // A counter that did not store what was asked: do not move onto an unpersisted boot.
            return Err(DeviceError::BootFloorNotPersisted { min_boot });
        }
        self.boot = stored;
        self.next_seq = 0;
        self.cancellable = None;
        self.press = None;
        // As on a real boot: the first event of the new boot is a heartbeat, so the gateway
        // sees the new boot in use at once.
        self.next_heartbeat_ms = now_ms;
        Ok(Some(stored))
    }

    fn ack(&mut self, command_id: u32, result: CommandResult, now_ms: u64) -> Result<(), DeviceError> {
        self.queue(UplinkBody::CommandAck { command_id, result }, now_ms)
            .map(|_| ())
    }

    fn apply_config(&mut self, config: DeviceConfig, now_ms: u64) {
        if config.heartbeat_interval_s != self.config.heartbeat_interval_s {
            self.next_heartbeat_ms = now_ms.saturating_add(u64::from(config.heartbeat_interval_s) * 1_000);
        }
        self.battery_monitor.apply_device_config(&config);
        self.temperature_monitor.apply_device_config(&config);
        self.config = config;
    }

    fn receipt(&mut self, boot: u32, seqs: &[u32], now_ms: u64) {
        let mut alarm_received = false;
        let mut cancel_received = false;
        self.outbox.receipt(boot, seqs, |uplink| match uplink.body {
            UplinkBody::AlarmCancelled { .. } => cancel_received = true,
            ref body if shows_feedback(body) => alarm_received = true,
            _ => {}
        });
        if cancel_received {
            self.news = AlertNews::Resolved { at_ms: now_ms };
        } else if alarm_received && !matches!(self.news, AlertNews::HelpOnTheWay { .. }) {
            self.news = AlertNews::Received { at_ms: now_ms };
        }
        self.flush_backlog();
    }

    // ----- connection and time ------------------------------------------------------

    /// The session is connected (and subscribed): everything unreceipted goes out again.
    pub fn connection_up(&mut self, _now_ms: u64) {
        self.link = Link::Connected;
        self.outbox.requeue_all();
    }

    /// The session lost its connection.
    pub fn connection_down(&mut self, now_ms: u64) {
        if self.link == Link::Connected {
            self.link = Link::Disconnected { since_ms: now_ms };
        }
    }

    pub fn is_connected(&self) -> bool {
        self.link == Link::Connected
    }

    /// Unix time in ms at uptime `now_ms`, if a `TimeSync` has set the clock and the time
    /// is within the protocol's accepted range (an event never carries a time outside it:
    /// without one it carries none).
    pub fn device_time_ms(&self, now_ms: u64) -> Option<u64> {
        self.clock_offset_ms
            .and_then(|offset| now_ms.checked_add_signed(offset))
            .filter(|unix_ms| device_time_accepted(*unix_ms))
    }

    /// Periodic work: heartbeats and activity summaries. Call at least at
    /// [`Device::next_wakeup_ms`].
    pub fn tick(&mut self, now_ms: u64) -> Result<(), DeviceError> {
        if now_ms >= self.next_heartbeat_ms {
            self.next_heartbeat_ms = now_ms.saturating_add(u64::from(self.config.heartbeat_interval_s) * 1_000);
            let status = self.status(now_ms);
            self.queue(UplinkBody::Heartbeat(status), now_ms)?;
        }
        self.roll_activity(now_ms)
    }

    fn roll_activity(&mut self, now_ms: u64) -> Result<(), DeviceError> {
        loop {
            let Some(activity) = &mut self.activity else {
                return Ok(());
            };
            if now_ms < activity.window_end_ms() {
                return Ok(());
            }
            // A long sleep closes many windows; keep only the most recent ones that fit.
            if activity.counts.is_full() {
                activity.counts.remove(0);
            }
            let _ = activity.counts.push(activity.current);
            activity.current = 0;
            activity.window_start_ms = activity.window_end_ms();
            if activity.counts.len() >= activity.per_summary() {
                let summary = ActivitySummary {
                    window_s: activity.setup.window_s,
                    motion_counts: core::mem::take(&mut activity.counts),
                };
                self.queue(UplinkBody::Activity(summary), now_ms)?;
            }
        }
    }

    /// The status a heartbeat would carry now.
    pub fn status(&self, now_ms: u64) -> DeviceStatus {
        let (battery_mv, battery_percent) = self.battery.unwrap_or((0, 0));
        DeviceStatus {
            battery_mv,
            battery_percent,
            rssi_dbm: self.rssi_dbm,
            uptime_s: u32::try_from(now_ms.saturating_sub(self.started_ms) / 1_000).unwrap_or(u32::MAX),
            firmware: self.firmware,
            heartbeat_interval_s: self.config.heartbeat_interval_s,
            outbox_depth: u16::try_from(self.outbox_depth()).unwrap_or(u16::MAX),
            events_dropped: self.outbox.events_dropped().saturating_add(self.alarms_lost),
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next uplink to publish now, if connected and one is due (alarms first). It stays
    /// in the outbox until its receipt; if no receipt comes it is due again later.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        if !self.is_connected() {
            return None;
        }
        let uplink = self.outbox.take_due(now_ms)?;
        let mut buf = [0u8; MAX_UPLINK_LEN];
        // Sizes were checked when the event was queued, so this does not fail.
        let bytes = encode_uplink(uplink, &mut buf).ok()?;
        let payload = Vec::from_slice(bytes).ok()?;
        Some(Transmit {
            header: uplink.header,
            alarm: uplink.body.is_alarm(),
            payload,
        })
    }

    /// What the resident should see now.
    pub fn indication(&self, now_ms: u64) -> Indication {
        let no_connection = match self.link {
            Link::Connected => false,
            Link::Disconnected { since_ms } => now_ms.saturating_sub(since_ms) >= NO_CONNECTION_AFTER_MS,
        };
        let waiting = !self.backlog.is_empty() || self.outbox.any(shows_feedback);
        if waiting {
            return if no_connection {
                Indication::NoConnection
            } else {
                Indication::Sending
            };
        }
        let within = |at_ms: u64, show_ms: u64| now_ms.saturating_sub(at_ms) < show_ms;
        match self.news {
            AlertNews::HelpOnTheWay { at_ms } if within(at_ms, HELP_SHOW_MS) => return Indication::HelpOnTheWay,
            AlertNews::Received { at_ms } if within(at_ms, RECEIVED_SHOW_MS) => return Indication::ReceivedByCentre,
            AlertNews::Resolved { at_ms } if within(at_ms, RESOLVED_SHOW_MS) => return Indication::Resolved,
            _ => {}
        }
        if no_connection {
            Indication::NoConnection
        } else if self.battery_monitor.is_low() {
            Indication::LowBattery
        } else {
            Indication::Idle
        }
    }

    /// The latest time the caller should call [`Device::tick`] / [`Device::poll_transmit`] /
    /// [`Device::indication`] again if nothing else happens (never earlier than `now_ms`).
    pub fn next_wakeup_ms(&self, now_ms: u64) -> u64 {
        let mut next = self.next_heartbeat_ms;
        if let Some(activity) = &self.activity {
            next = next.min(activity.window_end_ms());
        }
        if self.is_connected()
            && let Some(deadline) = self.outbox.next_deadline_ms()
        {
            next = next.min(deadline);
        }
        if let Link::Disconnected { since_ms } = self.link {
            let at = since_ms.saturating_add(NO_CONNECTION_AFTER_MS);
            if at > now_ms {
                next = next.min(at);
            }
        }
        let news_end = match self.news {
            AlertNews::None => None,
            AlertNews::Received { at_ms } => Some(at_ms.saturating_add(RECEIVED_SHOW_MS)),
            AlertNews::HelpOnTheWay { at_ms } => Some(at_ms.saturating_add(HELP_SHOW_MS)),
            AlertNews::Resolved { at_ms } => Some(at_ms.saturating_add(RESOLVED_SHOW_MS)),
        };
        if let Some(end) = news_end.filter(|end| *end > now_ms) {
            next = next.min(end);
        }
        next.max(now_ms)
    }

    // ----- queueing -----------------------------------------------------------------

    /// Numbers, stamps and queues a new event; returns its sequence number.
    fn queue(&mut self, body: UplinkBody, now_ms: u64) -> Result<u32, DeviceError> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let uplink = Uplink::new(
            UplinkHeader {
                boot: self.boot,
                seq,
                device_time_ms: self.device_time_ms(now_ms),
            },
            body,
        );
        let mut scratch = [0u8; MAX_UPLINK_LEN];
        if encode_uplink(&uplink, &mut scratch).is_err() {
            return Err(DeviceError::TooLarge { seq });
        }
        self.keep(uplink).map(|()| seq)
    }

    /// Puts an unreceipted event kept in flash from an earlier boot back into the outbox,
    /// unchanged (same `(boot, seq)`, same bytes on the wire: the gateway deduplicates it if it
    /// already has it, and receipts it either way). Call at start, before the first
    /// [`Device::tick`], in the order the events were stored. See [`crate::persist`].
    pub fn restore(&mut self, uplink: Uplink) -> Result<(), DeviceError> {
        self.keep(uplink)
    }

    /// Puts a numbered event into the outbox, or an alarm the outbox has no room for into the
    /// backlog.
    fn keep(&mut self, uplink: Uplink) -> Result<(), DeviceError> {
        let seq = uplink.header.seq;
        let alarm = uplink.body.is_alarm();
        // Alarms keep their order: while older ones wait in the backlog, so do new ones.
        let result = if alarm && !self.backlog.is_empty() {
            Err((OutboxError::FullOfAlarms, uplink))
        } else {
            match self.outbox.push(uplink.clone()) {
                Ok(Queued::Stored | Queued::DroppedOldest { .. } | Queued::DroppedNew) => Ok(()),
                Err(error) => Err((error, uplink)),
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err((source, uplink)) => match self.backlog.push(uplink) {
                Ok(()) => Ok(()),
                Err(_) => {
                    self.alarms_lost = self.alarms_lost.saturating_add(1);
                    Err(DeviceError::AlarmNotQueued { seq, source })
                }
            },
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(first) = self.backlog.first() {
            if self.outbox.push(first.clone()).is_err() {
                return;
            }
            self.backlog.remove(0);
        }
    }

    // ----- observation --------------------------------------------------------------

    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Alarms waiting for room in the outbox (it is full of unreceipted alarms), oldest first.
    pub fn alarm_backlog(&self) -> &[Uplink] {
        &self.backlog
    }

    /// Events waiting for a receipt (outbox plus alarm backlog).
    pub fn outbox_depth(&self) -> usize {
        self.outbox.len().saturating_add(self.backlog.len())
    }

    /// Telemetry dropped since boot because the outbox was full.
    pub fn events_dropped(&self) -> u32 {
        self.outbox.events_dropped()
    }

    /// Alarms that could not be kept at all (outbox and backlog full of alarms).
    pub fn alarms_lost(&self) -> u32 {
        self.alarms_lost
    }
}

/// Why a downlink payload was not handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DownlinkError {
    #[error("undecodable downlink: {0}")]
    Decode(#[from] protocol::DecodeError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Alarms whose progress the resident sees (sending, received, cancelled). Automatic
/// technical alarms (low battery, power restored) do not light the "sending" pattern.
fn shows_feedback(body: &UplinkBody) -> bool {
    match body {
        UplinkBody::Alarm(AlarmKind::LowBattery { .. } | AlarmKind::MainsPowerRestored) => false,
        UplinkBody::Alarm(_) | UplinkBody::AlarmCancelled { .. } => true,
        _ => false,
    }
}
