//! The device's MQTT 5 session over rust-mqtt: connect with per-device credentials and an
//! `Offline` last will, announce `Online{boot}`, subscribe to the down topic, publish the
//! device core's uplinks (QoS 1: alarms and their cancels on the alarm topic, everything else
//! on the up topic, SPEC 2.1), feed downlinks back into it, ping to keep the connection
//! alive, and reconnect with exponential backoff and jitter.
//!
//! Everything that does not need the connection lives in [`SessionState`] and [`Backoff`]
//! (pure, tested); [`run`] is the thin async loop around them. The transport is anything
//! `embedded-io-async` `Read + Write`, opened by a [`Connector`]; time, inputs and feedback
//! come from a [`Platform`].
//!
//! # Clean start
//!
//! The device connects with *clean start* and no session expiry. The outbox, not the
//! broker, is the source of truth for uplinks: after every (re)connect everything
//! unreceipted is published again and the gateway deduplicates by `(device, boot, seq)` and
//! re-sends receipts for duplicates. A persistent session would add broker-side state the
//! device must reconcile (rust-mqtt leaves in-flight QoS 1 packet ids to the caller to
//! republish) for no gain on the uplink side. The cost: downlinks published while the
//! device is offline are not queued by the broker. Receipts recover by themselves
//! (retransmission); state-like downlinks (help on the way, resolved, configuration, time)
//! must be re-sent by the gateway when it sees `Online{boot}` on the status topic, which the
//! device publishes (retained) on every connect.
//!
//! # Boot floor
//!
//! A `BootFloor` downlink (the gateway saw this device reuse keys) is persisted through the
//! [`BootCounter`] right after the downlink is handled (`Device::apply_boot_floor`); once the
//! device has moved, it announces `Online{new boot}` at once, so the gateway sees the move.
//!
//! # Liveness
//!
//! The TCP connect and MQTT handshake run alongside the device core (inputs keep being
//! queued) and are abandoned after [`CONNECT_TIMEOUT_MS`]. Once connected, a PINGREQ goes
//! out every half keep-alive and an unanswered one for a whole keep-alive drops the
//! connection (with the will published). Known limit: a publish or ping `write` that blocks
//! because the peer stopped reading (full TCP send window) is not bounded; uplinks are far
//! below any send window, so in practice only a dead link does this, and then the
//! transport's own error ends it.
//!
//! # Alarms in flash
//!
//! Whenever the device core may have queued something, and before anything is published,
//! the session calls [`Platform::persist`]: a board with an alarm log
//! ([`crate::persist`]) stores new unreceipted alarms there, so a power cut after that point
//! loses none, and drops receipted ones.
//!
//! # Receive buffer
//!
//! rust-mqtt keeps received packet contents in a [`BumpBuffer`] of [`MQTT_RX_BUFFER_LEN`]
//! bytes, emptied after every packet (`reset_rx`, the one `unsafe` call: see its comment).

use core::fmt::Debug;
use core::future::Future;
use core::num::NonZero;
use core::pin::pin;

use embedded_io_async::{Read, Write};
use futures_util::future::{Either, select};
use heapless::{String, Vec};
use protocol::{
    DeviceId, MAX_DOWNLINK_LEN, MAX_STATUS_LEN, MAX_TOPIC_LEN, Presence, StatusMessage, Topic, encode_status,
};
use rust_mqtt::Bytes;
use rust_mqtt::buffer::BumpBuffer;
use rust_mqtt::client::event::Event as MqttEvent;
use rust_mqtt::client::options::{
    ConnectOptions, DisconnectOptions, PublicationOptions, SubscriptionOptions, TopicReference, WillOptions,
};
use rust_mqtt::client::{Client, MqttError};
use rust_mqtt::config::KeepAlive;
use rust_mqtt::header::FixedHeader;
use rust_mqtt::types::{MqttBinary, MqttString, TopicFilter, TopicName};

use crate::boot::BootCounter;
use crate::device::{Device, DeviceError};
use crate::input::Input;
use crate::rng::SplitMix64;

/// Bytes for the variable parts of one received packet (topic, payload, properties). The
/// buffer is emptied after every packet, so the largest downlink plus its topic must fit.
pub const MQTT_RX_BUFFER_LEN: usize = 512;
/// Largest packet the device accepts; the broker drops larger ones instead of sending them.
pub const MQTT_MAX_PACKET: u32 = MQTT_RX_BUFFER_LEN as u32;
/// Unacknowledged QoS 1 publishes in flight at once (MQTT flow control).
pub const SEND_MAXIMUM: usize = 4;
/// Unacknowledged QoS 1 publishes the broker may have in flight to the device.
pub const RECEIVE_MAXIMUM: usize = 4;
/// Default keep-alive: the broker declares the device gone (and publishes its last will)
/// after 1.5 × this without a packet.
pub const DEFAULT_KEEP_ALIVE_S: u16 = 60;
/// A connection that lasted this long counts as good: the next failure starts the backoff
/// from the beginning. Shorter ones keep backing off, so a broker that accepts and then
/// drops connections is not hammered.
pub const STABLE_CONNECTION_MS: u64 = 60_000;
/// A connection attempt (TCP and MQTT handshake) that takes longer is abandoned.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// While flow control blocks publishing, look again at least this often.
const QUOTA_RECHECK_MS: u64 = 1_000;

/// The rust-mqtt client as the device configures it: one subscription, [`RECEIVE_MAXIMUM`]
/// and [`SEND_MAXIMUM`], no subscription identifiers, one user property, no topic aliases.
pub type MqttClient<'c, N> = Client<'static, 'c, N, BumpBuffer<'c>, 1, RECEIVE_MAXIMUM, SEND_MAXIMUM, 0, 1, 0, 0>;

// ----- pure parts ---------------------------------------------------------------------

/// Reconnect delays: exponential, capped, with "equal jitter" (half fixed, half random) so
/// a fleet reconnecting after a broker restart spreads out but no device waits near zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for Backoff {
    /// 1 s, doubling up to 5 minutes.
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The upper bound after `failures` consecutive failures (0 for the first retry).
    pub fn ceiling_ms(&self, failures: u32) -> u64 {
        let factor = 1u64 << failures.min(40);
        self.initial_ms.saturating_mul(factor).min(self.max_ms)
    }

    /// The delay before the next attempt: in `ceiling/2 ..= ceiling`.
    pub fn delay_ms(&self, failures: u32, rng: &mut SplitMix64) -> u64 {
        let ceiling = self.ceiling_ms(failures);
        let half = ceiling / 2;
        half.saturating_add(rng.up_to(ceiling.saturating_sub(half)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Offline {
        retry_at_ms: u64,
    },
    Online {
        since_ms: u64,
        last_ping_ms: u64,
        ping_outstanding_since: Option<u64>,
    },
}

/// The connection-independent session state: when to (re)connect, when to ping, when the
/// broker has gone silent. Pure: every method takes the time.
#[derive(Debug, Clone)]
pub struct SessionState {
    backoff: Backoff,
    rng: SplitMix64,
    keep_alive_ms: u64,
    failures: u32,
    link: Link,
    connects: u32,
}

impl SessionState {
    /// A session that will connect at once. `seed` makes the jitter reproducible (use the
    /// device id hash and boot counter on hardware, the simulation seed on the host).
    pub fn new(backoff: Backoff, keep_alive_s: u16, seed: u64, now_ms: u64) -> Self {
        Self {
            backoff,
            rng: SplitMix64::new(seed),
            keep_alive_ms: u64::from(keep_alive_s.max(1)) * 1_000,
            failures: 0,
            link: Link::Offline { retry_at_ms: now_ms },
            connects: 0,
        }
    }

    pub fn keep_alive_s(&self) -> u16 {
        u16::try_from(self.keep_alive_ms / 1_000).unwrap_or(u16::MAX)
    }

    pub fn is_online(&self) -> bool {
        matches!(self.link, Link::Online { .. })
    }

    /// Consecutive failed attempts (or short-lived connections).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Successful connects so far.
    pub fn connects(&self) -> u32 {
        self.connects
    }

    /// Whether it is time to try connecting.
    pub fn connect_due(&self, now_ms: u64) -> bool {
        matches!(self.link, Link::Offline { retry_at_ms } if now_ms >= retry_at_ms)
    }

    /// CONNACK received (and subscription sent).
    pub fn on_connected(&mut self, now_ms: u64) {
        self.connects = self.connects.saturating_add(1);
        self.link = Link::Online {
            since_ms: now_ms,
            last_ping_ms: now_ms,
            ping_outstanding_since: None,
        };
    }

    /// A connection attempt failed, or an established connection was lost. Returns when
    /// to try again.
    pub fn on_disconnected(&mut self, now_ms: u64) -> u64 {
        if let Link::Online { since_ms, .. } = self.link
            && now_ms.saturating_sub(since_ms) >= STABLE_CONNECTION_MS
        {
            self.failures = 0;
        }
        let delay = self.backoff.delay_ms(self.failures, &mut self.rng);
        self.failures = self.failures.saturating_add(1);
        let retry_at_ms = now_ms.saturating_add(delay);
        self.link = Link::Offline { retry_at_ms };
        retry_at_ms
    }

    /// Whether a PINGREQ should go out now: half a keep-alive after the last one, and not
    /// while one is unanswered.
    pub fn ping_due(&self, now_ms: u64) -> bool {
        match self.link {
            Link::Online {
                last_ping_ms,
                ping_outstanding_since: None,
                ..
            } => now_ms >= last_ping_ms.saturating_add(self.keep_alive_ms / 2),
            _ => false,
        }
    }

    pub fn on_ping_sent(&mut self, now_ms: u64) {
        if let Link::Online {
            last_ping_ms,
            ping_outstanding_since,
            ..
        } = &mut self.link
        {
            *last_ping_ms = now_ms;
            *ping_outstanding_since = Some(now_ms);
        }
    }

    pub fn on_pingresp(&mut self) {
        if let Link::Online {
            ping_outstanding_since, ..
        } = &mut self.link
        {
            *ping_outstanding_since = None;
        }
    }

    /// A ping has gone unanswered for a whole keep-alive: the connection is dead even if
    /// the TCP socket does not know it yet.
    pub fn keep_alive_expired(&self, now_ms: u64) -> bool {
        match self.link {
            Link::Online {
                ping_outstanding_since: Some(sent),
                ..
            } => now_ms >= sent.saturating_add(self.keep_alive_ms),
            _ => false,
        }
    }

    /// The next time this state wants attention (connect, ping, or ping timeout).
    pub fn next_deadline_ms(&self) -> u64 {
        match self.link {
            Link::Offline { retry_at_ms } => retry_at_ms,
            Link::Online {
                ping_outstanding_since: Some(sent),
                ..
            } => sent.saturating_add(self.keep_alive_ms),
            Link::Online { last_ping_ms, .. } => last_ping_ms.saturating_add(self.keep_alive_ms / 2),
        }
    }
}

// ----- the seams to the platform --------------------------------------------------------

/// Opens a fresh transport (TCP, TLS...) to the broker for every (re)connect.
pub trait Connector {
    type Connection: Read + Write;
    type Error: Debug;
    fn connect(&mut self) -> impl Future<Output = Result<Self::Connection, Self::Error>>;
}

/// Something for the device to handle while the session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// From the hardware layer.
    Input(Input),
    /// Motion detections since the last report (devices with activity summaries).
    Motion(u16),
    /// The radio's signal strength.
    Rssi(i8),
    /// The radio link went away: drop the connection now (the broker publishes the will).
    LinkLost,
    /// Switch off: announce `Offline`, disconnect, return from [`run`].
    Stop,
}

/// Time, events and feedback: everything the session needs from the board (or simulator).
pub trait Platform {
    /// Milliseconds since power-on (monotonic).
    fn now_ms(&self) -> u64;
    /// Waits for the next [`Event`], or until `deadline_ms` (then `None`). Must be
    /// cancel-safe: an event is never lost when the wait is dropped.
    fn wait(&mut self, deadline_ms: u64) -> impl Future<Output = Option<Event>>;
    /// Called after every step: show [`Device::indication`] (and, on a host, observe).
    fn show(&mut self, device: &Device, session: &SessionState, now_ms: u64);
    /// Called whenever the device core may have queued or cleared something (an input, a
    /// receipt, a tick), before anything is published: a board that keeps unreceipted alarms
    /// in flash stores them here ([`crate::persist::OutboxMirror::sync`]), so that an alarm is
    /// durable before it goes out. The default keeps nothing.
    fn persist(&mut self, device: &Device) -> impl Future<Output = ()> {
        let _ = device;
        core::future::ready(())
    }
    /// The device core could not do something (e.g. keep an alarm); log or signal it.
    fn device_error(&mut self, error: DeviceError) {
        let _ = error;
    }
}

/// Who the device is to the broker.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig<'a> {
    /// Also the MQTT client id and user name.
    pub device_id: DeviceId,
    pub password: &'a [u8],
    pub keep_alive_s: u16,
}

/// Why [`run`] could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("device id or topic is not a valid MQTT string")]
    InvalidTopic,
    #[error("password is too long for MQTT")]
    InvalidPassword,
    #[error("presence message does not encode")]
    Encode,
}

/// The device's topics, as fixed-capacity strings.
#[derive(Debug, Clone)]
struct Topics {
    up: String<MAX_TOPIC_LEN>,
    alarm: String<MAX_TOPIC_LEN>,
    down: String<MAX_TOPIC_LEN>,
    status: String<MAX_TOPIC_LEN>,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Lost or failed; `Some(needs_abort)` if `client.connect` ran (the client must be reset).
    Lost {
        needs_abort: Option<bool>,
    },
    Stopped,
}

fn lost<const M: usize, A>(error: &MqttError<'_, M, A>) -> Ended {
    Ended::Lost {
        needs_abort: Some(!error.is_recoverable()),
    }
}

/// Empties the receive buffer between packets.
#[allow(unsafe_code)]
fn reset_rx<N: Read + Write>(client: &mut MqttClient<'_, N>) {
    // SAFETY: `BumpBuffer::reset` requires that nothing borrowed from the buffer is alive.
    // Everything the client returns that borrows it (events, errors, CONNACK info) is
    // consumed within the statement or block that received it, and only owned data (the
    // downlink payload copied into a `heapless::Vec`, plain flags) leaves those blocks; this
    // function is only called after such a block.
    unsafe { client.buffer_mut().reset() }
}

fn apply(device: &mut Device, event: Event, now_ms: u64) -> Result<(), DeviceError> {
    match event {
        Event::Input(input) => device.handle_input(input, now_ms),
        Event::Motion(count) => {
            device.record_motion(count, now_ms);
            Ok(())
        }
        Event::Rssi(dbm) => {
            device.set_rssi(dbm);
            Ok(())
        }
        Event::LinkLost | Event::Stop => Ok(()),
    }
}

/// Runs the device's session until an [`Event::Stop`]: connects, serves the connection,
/// reconnects with backoff when it is lost, and keeps the device core running (inputs,
/// heartbeats, feedback) while offline. `boot_counter` is the one the device booted from:
/// a `BootFloor` from the gateway is persisted through it.
pub async fn run<C: Connector, P: Platform, B: BootCounter>(
    device: &mut Device,
    state: &mut SessionState,
    config: &SessionConfig<'_>,
    connector: &mut C,
    platform: &mut P,
    boot_counter: &mut B,
) -> Result<(), SessionError> {
    let id = config.device_id;
    let topics = Topics {
        up: Topic::up(id).to_heapless(),
        alarm: Topic::alarm(id).to_heapless(),
        down: Topic::down(id).to_heapless(),
        status: Topic::status(id).to_heapless(),
    };
    let mut offline_buf = [0u8; MAX_STATUS_LEN];
    let offline =
        encode_status(&StatusMessage::new(Presence::Offline), &mut offline_buf).map_err(|_| SessionError::Encode)?;
    // Checked once here so that encoding it later (with whatever boot) cannot fail.
    let mut online_buf = [0u8; MAX_STATUS_LEN];
    encode_status(
        &StatusMessage::new(Presence::Online { boot: u32::MAX }),
        &mut online_buf,
    )
    .map_err(|_| SessionError::Encode)?;

    let client_id = MqttString::from_str(id.as_str()).map_err(|_| SessionError::InvalidTopic)?;
    let status_topic = TopicName::new(MqttString::from_str(&topics.status).map_err(|_| SessionError::InvalidTopic)?)
        .ok_or(SessionError::InvalidTopic)?;
    let will = WillOptions::new(
        status_topic.clone(),
        MqttBinary::from_slice(offline).map_err(|_| SessionError::Encode)?,
    )
    .at_least_once()
    .retain();
    let keep_alive = NonZero::new(config.keep_alive_s.max(1)).ok_or(SessionError::InvalidTopic)?;
    let max_packet = NonZero::new(MQTT_MAX_PACKET).ok_or(SessionError::InvalidTopic)?;
    let options = ConnectOptions::new()
        .clean_start()
        .keep_alive(KeepAlive::Seconds(keep_alive))
        .maximum_packet_size(max_packet)
        .user_name(client_id.clone())
        .password(MqttBinary::from_slice(config.password).map_err(|_| SessionError::InvalidPassword)?)
        .will(will);
    let up_topic = TopicName::new(MqttString::from_str(&topics.up).map_err(|_| SessionError::InvalidTopic)?)
        .ok_or(SessionError::InvalidTopic)?;
    let alarm_topic = TopicName::new(MqttString::from_str(&topics.alarm).map_err(|_| SessionError::InvalidTopic)?)
        .ok_or(SessionError::InvalidTopic)?;
    let down_filter = TopicFilter::new(MqttString::from_str(&topics.down).map_err(|_| SessionError::InvalidTopic)?)
        .ok_or(SessionError::InvalidTopic)?;
    let names = Names {
        client_id: &client_id,
        status: &status_topic,
        up: &up_topic,
        alarm: &alarm_topic,
        down: &down_filter,
        offline,
    };

    let mut rx = [0u8; MQTT_RX_BUFFER_LEN];
    let mut bump = BumpBuffer::new(&mut rx);
    let mut client: MqttClient<'_, C::Connection> = Client::new(&mut bump);

    loop {
        // Offline: keep the device running until it is time to try again.
        let now = platform.now_ms();
        device.connection_down(now);
        loop {
            let now = platform.now_ms();
            if state.connect_due(now) {
                break;
            }
            if let Err(error) = device.tick(now) {
                platform.device_error(error);
            }
            platform.persist(device).await;
            platform.show(device, state, now);
            let deadline = state.next_deadline_ms().min(device.next_wakeup_ms(now));
            match platform.wait(deadline).await {
                Some(Event::Stop) => return Ok(()),
                Some(event) => {
                    if let Err(error) = apply(device, event, platform.now_ms()) {
                        platform.device_error(error);
                    }
                }
                None => {}
            }
        }

        let ended = serve(
            &mut client,
            &options,
            &names,
            device,
            state,
            connector,
            platform,
            boot_counter,
        )
        .await;
        let (stopped, needs_abort) = match ended {
            Ended::Stopped => (true, None),
            Ended::Lost { needs_abort } => (false, needs_abort),
        };
        match needs_abort {
            Some(true) => {
                let _ = client.abort().await;
            }
            Some(false) => {
                // The connection still works (we are the ones dropping it): tell the broker
                // to publish the will, so the gateway learns we are gone at once.
                if let Err(error) = client.disconnect(&DisconnectOptions::new().publish_will()).await
                    && !error.is_recoverable()
                {
                    let _ = client.abort().await;
                }
            }
            None => {}
        }
        reset_rx(&mut client);
        let now = platform.now_ms();
        device.connection_down(now);
        if stopped {
            return Ok(());
        }
        state.on_disconnected(now);
    }
}

/// Borrowed MQTT names and payloads for one connection.
struct Names<'n> {
    client_id: &'n MqttString<'n>,
    status: &'n TopicName<'n>,
    up: &'n TopicName<'n>,
    /// Alarms and their cancels (first copies and retransmissions alike): the gateway reads
    /// this topic on a session of its own, so an alarm never waits behind telemetry queued
    /// for the gateway, and a cancel never overtakes its alarm.
    alarm: &'n TopicName<'n>,
    down: &'n TopicFilter<'n>,
    offline: &'n [u8],
}

enum Step {
    Header(Option<FixedHeader>),
    Waited(Option<Event>),
}

/// Publishes `Online { boot }` (retained) on the status topic.
async fn announce_online<N: Read + Write>(
    client: &mut MqttClient<'_, N>,
    names: &Names<'_>,
    boot: u32,
) -> Result<(), Ended> {
    let mut buf = [0u8; MAX_STATUS_LEN];
    // `run` checked that the largest Online fits this buffer.
    let online = encode_status(&StatusMessage::new(Presence::Online { boot }), &mut buf).map_err(|_| Ended::Lost {
        needs_abort: Some(false),
    })?;
    let options = PublicationOptions::new(TopicReference::Name(names.status.as_borrowed()))
        .at_least_once()
        .retain();
    client
        .publish(&options, Bytes::from(online))
        .await
        .map_err(|error| lost(&error))?;
    Ok(())
}

/// One connection, from CONNECT until it is lost or the device stops.
#[allow(clippy::too_many_arguments)]
async fn serve<C: Connector, P: Platform, B: BootCounter>(
    client: &mut MqttClient<'_, C::Connection>,
    options: &ConnectOptions<'_>,
    names: &Names<'_>,
    device: &mut Device,
    state: &mut SessionState,
    connector: &mut C,
    platform: &mut P,
    boot_counter: &mut B,
) -> Ended {
    // The handshake (TCP, then CONNECT/CONNACK) runs alongside the device: a press during
    // a slow or silent broker's handshake is queued at once, and the attempt gives up after
    // CONNECT_TIMEOUT_MS instead of hanging.
    let connect_deadline = platform.now_ms().saturating_add(CONNECT_TIMEOUT_MS);
    let client_id = names.client_id.as_borrowed();
    // Whether `client.connect` has taken the transport: an abandoned handshake must then be
    // closed (`disconnect`) before the next `connect` may install a new one.
    let mqtt_started = core::cell::Cell::new(false);
    let handshake_result = {
        let mut handshake = pin!(async {
            let Ok(connection) = connector.connect().await else {
                return Err(Ended::Lost { needs_abort: None });
            };
            mqtt_started.set(true);
            match client.connect(connection, options, Some(client_id)).await {
                Ok(_) => Ok(()),
                // A failed or refused CONNECT leaves the client needing `abort` whatever the error.
                Err(_) => Err(Ended::Lost {
                    needs_abort: Some(true),
                }),
            }
        });
        loop {
            let now = platform.now_ms();
            if now >= connect_deadline {
                break Err(Ended::Lost {
                    needs_abort: mqtt_started.get().then_some(false),
                });
            }
            if let Err(error) = device.tick(now) {
                platform.device_error(error);
            }
            platform.persist(device).await;
            platform.show(device, state, now);
            let deadline = connect_deadline.min(device.next_wakeup_ms(now));
            let step = {
                let waited = pin!(platform.wait(deadline));
                match select(handshake.as_mut(), waited).await {
                    Either::Left((result, _)) => Either::Left(result),
                    Either::Right((event, _)) => Either::Right(event),
                }
            };
            match step {
                Either::Left(result) => break result,
                Either::Right(Some(Event::Stop)) => break Err(Ended::Stopped),
                Either::Right(Some(event)) => {
                    if let Err(error) = apply(device, event, platform.now_ms()) {
                        platform.device_error(error);
                    }
                }
                Either::Right(None) => {}
            }
        }
    };
    reset_rx(client);
    if let Err(ended) = handshake_result {
        return ended;
    }

    if let Err(ended) = announce_online(client, names, device.boot()).await {
        return ended;
    }
    let subscription = SubscriptionOptions::new().at_least_once();
    if let Err(error) = client.subscribe(names.down.as_borrowed(), &subscription).await {
        return lost(&error);
    }
    let now = platform.now_ms();
    state.on_connected(now);
    device.connection_up(now);

    loop {
        let now = platform.now_ms();
        if let Err(error) = device.tick(now) {
            platform.device_error(error);
        }
        // Stored before it is sent: a power cut from here on cannot lose a queued alarm.
        platform.persist(device).await;
        // Publish what is due, within MQTT flow control (the Online presence counts too).
        let quota = u16::try_from(SEND_MAXIMUM)
            .unwrap_or(u16::MAX)
            .min(client.server_config().receive_maximum.get());
        let mut blocked = false;
        loop {
            if client.session().active_outbound_publishes() >= quota {
                blocked = true;
                break;
            }
            let Some(transmit) = device.poll_transmit(now) else {
                break;
            };
            let topic = if transmit.alarm { names.alarm } else { names.up };
            let publication = PublicationOptions::new(TopicReference::Name(topic.as_borrowed())).at_least_once();
            if let Err(error) = client
                .publish(&publication, Bytes::from(transmit.payload.as_slice()))
                .await
            {
                return lost(&error);
            }
        }
        if state.keep_alive_expired(now) {
            return Ended::Lost {
                needs_abort: Some(false),
            };
        }
        if state.ping_due(now) {
            if let Err(error) = client.ping().await {
                return lost(&error);
            }
            state.on_ping_sent(now);
        }
        platform.show(device, state, now);

        let mut device_deadline = device.next_wakeup_ms(now);
        if blocked {
            device_deadline = device_deadline.max(now.saturating_add(QUOTA_RECHECK_MS));
        }
        let deadline = device_deadline.min(state.next_deadline_ms());
        let step = {
            let header = pin!(client.poll_header());
            let waited = pin!(platform.wait(deadline));
            match select(header, waited).await {
                Either::Left((header, _)) => Step::Header(header.ok()),
                Either::Right((event, _)) => Step::Waited(event),
            }
        };
        match step {
            Step::Header(None) => {
                return Ended::Lost {
                    needs_abort: Some(true),
                };
            }
            Step::Header(Some(header)) => {
                let received: Result<Option<Vec<u8, MAX_DOWNLINK_LEN>>, Ended> = match client.poll_body(header).await {
                    Ok(MqttEvent::Publish(publish)) | Ok(MqttEvent::Duplicate(publish)) => {
                        // Only our down topic is subscribed; an oversize payload is not ours.
                        Ok(Vec::from_slice(publish.message.as_bytes()).ok())
                    }
                    Ok(MqttEvent::Pingresp) => {
                        state.on_pingresp();
                        Ok(None)
                    }
                    Ok(_) => Ok(None),
                    Err(error) => Err(lost(&error)),
                };
                reset_rx(client);
                match received {
                    Ok(Some(payload)) => {
                        // An undecodable downlink is ignored: the gateway re-sends what matters.
                        if let Err(crate::device::DownlinkError::Device(error)) =
                            device.handle_downlink_payload(&payload, platform.now_ms())
                        {
                            platform.device_error(error);
                        }
                        match device.apply_boot_floor(boot_counter, platform.now_ms()) {
                            Ok(Some(boot)) => {
                                if let Err(ended) = announce_online(client, names, boot).await {
                                    return ended;
                                }
                            }
                            Ok(None) => {}
                            Err(error) => platform.device_error(error),
                        }
                    }
                    Ok(None) => {}
                    Err(ended) => return ended,
                }
            }
            Step::Waited(Some(Event::Stop)) => {
                let offline = PublicationOptions::new(TopicReference::Name(names.status.as_borrowed()))
                    .at_least_once()
                    .retain();
                let _ = client.publish(&offline, Bytes::from(names.offline)).await;
                return match client.disconnect(&DisconnectOptions::new()).await {
                    Ok(_) => Ended::Stopped,
                    Err(error) if !error.is_recoverable() => {
                        let _ = client.abort().await;
                        Ended::Stopped
                    }
                    Err(_) => Ended::Stopped,
                };
            }
            Step::Waited(Some(Event::LinkLost)) => {
                return Ended::Lost {
                    needs_abort: Some(false),
                };
            }
            Step::Waited(Some(event)) => {
                if let Err(error) = apply(device, event, platform.now_ms()) {
                    platform.device_error(error);
                }
            }
            Step::Waited(None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_to_the_cap_with_bounded_jitter() {
        let backoff = Backoff {
            initial_ms: 1_000,
            max_ms: 60_000,
        };
        let ceilings: std::vec::Vec<u64> = (0..8).map(|n| backoff.ceiling_ms(n)).collect();
        assert_eq!(ceilings, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
        assert_eq!(backoff.ceiling_ms(u32::MAX), 60_000);
        let mut rng = SplitMix64::new(1);
        for failures in 0..10 {
            let ceiling = backoff.ceiling_ms(failures);
            for _ in 0..100 {
                let delay = backoff.delay_ms(failures, &mut rng);
                assert!((ceiling / 2..=ceiling).contains(&delay), "{failures}: {delay}");
            }
        }
    }

    #[test]
    fn jitter_is_reproducible_per_seed_and_differs_between_seeds() {
        let delays = |seed| {
            let mut state = SessionState::new(Backoff::default(), 60, seed, 0);
            (0..6)
                .map(|i| state.on_disconnected(i * 1_000_000))
                .collect::<std::vec::Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
    }

    #[test]
    fn reconnect_schedule_and_stability_reset() {
        let mut state = SessionState::new(Backoff::default(), 60, 3, 0);
        assert!(state.connect_due(0), "first attempt at once");
        let retry = state.on_disconnected(0);
        assert!((500..=1_000).contains(&retry));
        assert!(!state.connect_due(retry - 1));
        assert!(state.connect_due(retry));
        let retry = state.on_disconnected(retry);
        assert_eq!(state.failures(), 2);
        // A connection that drops quickly keeps backing off...
        state.on_connected(retry);
        state.on_disconnected(retry + 1_000);
        assert_eq!(state.failures(), 3);
        // ...one that lasted starts over.
        state.on_connected(100_000);
        assert!(state.is_online());
        let again = state.on_disconnected(100_000 + STABLE_CONNECTION_MS);
        assert!(again - (100_000 + STABLE_CONNECTION_MS) <= 1_000);
        assert_eq!(state.failures(), 1);
        assert_eq!(state.connects(), 2);
    }

    #[test]
    fn pings_every_half_keep_alive_and_detects_a_silent_broker() {
        let mut state = SessionState::new(Backoff::default(), 60, 0, 0);
        assert!(!state.ping_due(0), "not while offline");
        state.on_connected(1_000);
        assert!(!state.ping_due(30_999));
        assert_eq!(state.next_deadline_ms(), 31_000);
        assert!(state.ping_due(31_000));
        state.on_ping_sent(31_000);
        assert!(!state.ping_due(62_000), "one ping at a time");
        state.on_pingresp();
        assert!(state.ping_due(61_000));
        state.on_ping_sent(61_000);
        assert_eq!(state.next_deadline_ms(), 121_000);
        assert!(!state.keep_alive_expired(120_999));
        assert!(state.keep_alive_expired(121_000));
    }
}
