//! The MQTT edge: connection options, the task that polls rumqttc's event loop, and the
//! task that sends acks and downlinks.
//!
//! The gateway keeps two MQTT sessions, each with its own client id, queue at the broker,
//! in-flight budget, poller and outbound task ([`Lane`]): telemetry (`up` and `status`) and
//! alarms (`alarm`). The broker queues each session's messages apart, so after an outage the
//! alarms arrive at once instead of behind the whole telemetry backlog (SPEC 2.1).
//!
//! The poller never awaits `publish()`/`ack()` (that deadlocks once the request channel is
//! full); it only forwards publishes. Acks and downlinks go through [`Outbound`], a FIFO
//! that its own task drains, so the committer never blocks on the request channel either.
//!
//! Memory under hostile load is bounded in bytes, not only in messages: the broker never sends
//! us a packet above `mqtt.max_packet_bytes` (MQTT 5 Maximum Packet Size), and the poller takes
//! each publish's bytes from the in-flight budget ([`MqttState::in_flight_available`]) before
//! forwarding it; the bytes come back when the committer lets go of the publish, after its
//! commit and ack ([`InFlightCharge`]). While the budget is spent the poller does not read, so
//! the socket fills and TCP slows the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protocol::{DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, Topic, encode_downlink};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::config::{ConfigError, MqttConfig};
use crate::domain::{Clock, Timestamp};
use crate::metrics::Metrics;

/// One publish as it left the MQTT task. It holds its bytes of the in-flight budget until the
/// last copy of it is dropped: the committer drops a batch after committing and acking it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// `publish.retain` is true only for a retained message the broker replayed because we
    /// (re)subscribed: old news, not a sign of life.
    pub publish: Publish,
    /// Gateway time of arrival: the events' `received_at`.
    pub received_at: Timestamp,
    /// For the receive-to-commit histogram.
    pub arrived: Instant,
    /// Which session it came on: its ack goes back on that session.
    pub lane: Lane,
    /// Which connection of that session it came on; an ack is only valid on the same
    /// connection.
    pub connection: u64,
    /// Its share of the in-flight byte budget ([`InFlightCharge::none`] outside the MQTT task).
    pub in_flight: InFlightCharge,
}

/// Which of the gateway's two MQTT sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Everything but alarms: `tec/v1/dev/+/up` and `tec/v1/dev/+/status`.
    Telemetry,
    /// `tec/v1/dev/+/alarm`: alarms and their cancels, committed before telemetry.
    Alarms,
}

impl Lane {
    /// What the session subscribes to.
    pub fn filters(self) -> &'static [&'static str] {
        match self {
            Lane::Telemetry => &[protocol::ALL_UPLINKS_FILTER, protocol::ALL_STATUS_FILTER],
            Lane::Alarms => &[protocol::ALL_ALARMS_FILTER],
        }
    }

    /// For logs and health messages.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Telemetry => "telemetry session",
            Lane::Alarms => "alarm session",
        }
    }
}

/// One value per session.
#[derive(Debug, Clone, Default)]
pub struct PerLane<T> {
    pub telemetry: T,
    pub alarms: T,
}

impl<T> PerLane<T> {
    pub fn get(&self, lane: Lane) -> &T {
        match lane {
            Lane::Telemetry => &self.telemetry,
            Lane::Alarms => &self.alarms,
        }
    }
}

impl<T: Clone> PerLane<T> {
    /// The same value (e.g. one detached outbound queue) for both sessions.
    pub fn both(value: T) -> Self {
        Self {
            telemetry: value.clone(),
            alarms: value,
        }
    }
}

/// Both sessions' connection states.
pub type MqttSessions = PerLane<Arc<MqttState>>;

impl MqttSessions {
    /// Both sessions with `in_flight_budget_bytes` each (see `mqtt.inflight_budget_bytes`):
    /// a flood on one lane cannot take the other's budget.
    pub fn new(in_flight_budget_bytes: usize) -> Self {
        Self {
            telemetry: Arc::new(MqttState::new(Lane::Telemetry, in_flight_budget_bytes)),
            alarms: Arc::new(MqttState::new(Lane::Alarms, in_flight_budget_bytes)),
        }
    }

    /// Both sessions connected and subscribed: telemetry and alarms both flow in.
    pub fn ready(&self) -> bool {
        self.telemetry.ready() && self.alarms.ready()
    }

    /// `None` when both sessions are connected and subscribed; else what is missing, by session.
    pub fn not_ready_reason(&self) -> Option<String> {
        let reasons: Vec<String> = [&self.telemetry, &self.alarms]
            .into_iter()
            .filter_map(|state| {
                state
                    .not_ready_reason()
                    .map(|why| format!("{}: {why}", state.lane.name()))
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// Bytes of the in-flight budget one forwarded publish holds; given back when the last clone is
/// dropped.
#[derive(Debug, Clone, Default)]
pub struct InFlightCharge(Option<Arc<OwnedSemaphorePermit>>);

impl InFlightCharge {
    /// No charge: for publishes made up by tests and tools.
    pub fn none() -> Self {
        Self(None)
    }

    /// Bytes held (0 for none).
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |permit| permit.num_permits())
    }
}

/// One session's connection state, shared with /healthz, its poller and its outbound task.
#[derive(Debug)]
pub struct MqttState {
    pub lane: Lane,
    /// Bumped on every CONNACK.
    pub connection: AtomicU64,
    pub connected: AtomicBool,
    pub subscribed: AtomicBool,
    /// How the last connection attempt ended (an [`Attempt`]), for the telemetry session's
    /// wait on the alarm session.
    last_attempt: AtomicU8,
    /// Woken each time the session becomes ready or an attempt fails.
    status_changed: Notify,
    /// Bytes of publishes forwarded and not yet let go of by the committer: the poller takes,
    /// [`InFlightCharge`] gives back. One permit is one byte.
    in_flight: Arc<Semaphore>,
    in_flight_capacity: usize,
}

/// How a session's last connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Attempt {
    NotYet = 0,
    Connected = 1,
    /// The broker could not be reached or the connection dropped.
    Unreachable = 2,
    /// The broker answered and said no (credentials, TLS, an unexpected packet).
    Refused = 3,
}

impl Attempt {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Connected,
            2 => Self::Unreachable,
            3 => Self::Refused,
            _ => Self::NotYet,
        }
    }

    fn of(error: &ConnectionError) -> Self {
        match error {
            ConnectionError::ConnectionRefused(_) | ConnectionError::NotConnAck(_) | ConnectionError::Tls(_) => {
                Self::Refused
            }
            _ => Self::Unreachable,
        }
    }
}

/// Why the telemetry session stopped waiting for the alarm session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStart {
    Ready,
    Refused,
    NotSubscribed,
    GaveUp,
}

/// What a publish is charged against the in-flight budget besides its topic and payload: the
/// `Incoming` and what the committer builds from it (event, record, step).
const PUBLISH_OVERHEAD_BYTES: usize = 512;

impl MqttState {
    /// `in_flight_budget_bytes`: see `mqtt.inflight_budget_bytes`.
    pub fn new(lane: Lane, in_flight_budget_bytes: usize) -> Self {
        let capacity = in_flight_budget_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            lane,
            connection: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            last_attempt: AtomicU8::new(Attempt::NotYet as u8),
            status_changed: Notify::new(),
            in_flight: Arc::new(Semaphore::new(capacity)),
            in_flight_capacity: capacity,
        }
    }

    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    fn mark_ready(&self, metrics: &Metrics) {
        self.subscribed.store(true, Ordering::Release);
        self.set_connected_metric(metrics, true);
        self.status_changed.notify_waiters();
    }

    fn last_attempt(&self) -> Attempt {
        Attempt::from_u8(self.last_attempt.load(Ordering::Acquire))
    }

    fn record_attempt(&self, attempt: Attempt) {
        self.last_attempt.store(attempt as u8, Ordering::Release);
        self.status_changed.notify_waiters();
    }

    /// Waits before the telemetry session (re)connects until this (the alarm) session is ready,
    /// so after any outage the broker hands over the queued alarms before the telemetry backlog.
    /// Waits as long as the broker cannot be reached (telemetry could not connect either), but
    /// not for a session the broker refuses or does not subscribe within `grace`, and never
    /// longer than `cap` in all: telemetry must not stop because the alarm session did.
    pub async fn head_start(&self, grace: Duration, cap: Duration) -> HeadStart {
        let waited = tokio::time::Instant::now();
        let mut connected_since: Option<tokio::time::Instant> = None;
        loop {
            let changed = self.status_changed.notified();
            if self.ready() {
                return HeadStart::Ready;
            }
            let mut left = cap.saturating_sub(waited.elapsed());
            match self.last_attempt() {
                Attempt::Refused => return HeadStart::Refused,
                Attempt::Connected => {
                    let since = *connected_since.get_or_insert_with(tokio::time::Instant::now);
                    left = left.min(grace.saturating_sub(since.elapsed()));
                    if left.is_zero() {
                        return HeadStart::NotSubscribed;
                    }
                }
                Attempt::NotYet | Attempt::Unreachable => connected_since = None,
            }
            if left.is_zero() {
                return HeadStart::GaveUp;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(left) => {}
            }
        }
    }

    fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.connected.load(Ordering::Acquire) {
            Some("not connected to the MQTT broker")
        } else if !self.subscribed.load(Ordering::Acquire) {
            Some("connected but not yet subscribed")
        } else {
            None
        }
    }

    fn set_connected_metric(&self, metrics: &Metrics, connected: bool) {
        match self.lane {
            Lane::Telemetry => metrics.set_mqtt_connected(connected),
            Lane::Alarms => metrics.set_alarm_session_connected(connected),
        }
    }

    /// Bytes of the in-flight budget not taken now.
    pub fn in_flight_available(&self) -> usize {
        self.in_flight.available_permits()
    }

    /// What `publish` costs against the budget; never more than the whole budget, so the
    /// largest packet can always be taken (it waits for everything else to be acked).
    fn in_flight_cost(&self, publish: &Publish) -> usize {
        (publish.topic.len() + publish.payload.len() + PUBLISH_OVERHEAD_BYTES).min(self.in_flight_capacity)
    }

    /// Waits until `bytes` of budget are free and takes them.
    async fn take_in_flight(&self, bytes: usize) -> InFlightCharge {
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        match self.in_flight.clone().acquire_many_owned(permits).await {
            Ok(permit) => InFlightCharge(Some(Arc::new(permit))),
            // Never closed; if it were, going on unbounded beats stopping intake.
            Err(_) => {
                tracing::error!("in-flight budget closed");
                InFlightCharge::none()
            }
        }
    }
}

/// rumqttc options for one session from our configuration. Reads the TLS files, so a missing
/// CA file is a startup error rather than a reconnect loop.
pub fn mqtt_options(config: &MqttConfig, lane: Lane) -> Result<MqttOptions, ConfigError> {
    let broker = &config.broker;
    let client_id = match lane {
        Lane::Telemetry => config.client_id.clone(),
        Lane::Alarms => config.alarm_client_id(),
    };
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(config.session_expiry_s))
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(config.keep_alive_s.max(5)))
        .set_max_packet_size(Some(config.max_packet_bytes))
        .set_receive_maximum(Some(config.receive_maximum))
        .set_request_channel_capacity(config.request_channel_capacity)
        .set_connection_timeout(config.connect_timeout_s);
    // An alarm is one small packet and so is its ack: without TCP_NODELAY, Nagle's algorithm
    // holds the ack back until the broker's delayed ACK (tens of milliseconds per round trip).
    let mut network = options.network_options();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let credentials = match lane {
        Lane::Telemetry => config
            .username
            .clone()
            .map(|username| (username, config.password.clone().unwrap_or_default())),
        Lane::Alarms => config.alarm_credentials(),
    };
    if let Some((username, password)) = credentials {
        options.set_credentials(username, password);
    }
    if broker.tls {
        // rumqttc builds its rustls client from the process default provider.
        crate::tls::install_crypto_provider();
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let transport = match &config.ca_file {
            Some(ca_file) => {
                let ca = read(ca_file)?;
                if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ConfigError::Invalid {
                        field: "mqtt.ca_file",
                        message: format!("{} holds no PEM certificate", ca_file.display()),
                    });
                }
                let client_auth = match (&config.client_cert_file, &config.client_key_file) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                };
                Transport::tls_with_config(TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth,
                })
            }
            None => Transport::tls_with_default_config(),
        };
        options.set_transport(transport);
    }
    Ok(options)
}

/// What the outbound task sends, in order.
#[derive(Debug)]
pub enum OutboundItem {
    /// PUBACK for a committed (or quarantined) publish, if still on its connection.
    Ack {
        publish: Publish,
        connection: u64,
    },
    Downlink {
        device: DeviceId,
        body: DownlinkBody,
    },
}

/// Handle to one session's outbound FIFO. Unbounded on purpose: its length is bounded by what the
/// broker may have in flight to us (receive maximum) plus the downlinks for it, and a
/// bounded queue here could deadlock the committer against the poller.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<OutboundItem>,
}

impl Outbound {
    /// An outbound queue read by the caller instead of an MQTT client (tests, tools).
    pub fn detached() -> (Self, mpsc::UnboundedReceiver<OutboundItem>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Queues an ack or downlink. An ack leaves its publish's topic and payload behind (it
    /// needs only the packet id), so acks waiting for the wire hold no payloads, which the
    /// in-flight budget no longer counts.
    pub fn send(&self, item: OutboundItem) {
        let item = match item {
            OutboundItem::Ack {
                mut publish,
                connection,
            } => {
                publish.topic = Default::default();
                publish.payload = Default::default();
                publish.properties = None;
                OutboundItem::Ack { publish, connection }
            }
            item => item,
        };
        if self.tx.send(item).is_err() {
            tracing::warn!("outbound MQTT task has stopped; ack or downlink not sent");
        }
    }
}

/// Starts a session's outbound task. It ends (and disconnects cleanly) once every [`Outbound`]
/// handle is dropped and the queue is drained.
pub fn spawn_outbound(
    client: AsyncClient,
    state: Arc<MqttState>,
    metrics: Arc<Metrics>,
) -> (Outbound, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<OutboundItem>();
    let outbound = Outbound { tx };
    let task = tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            match item {
                OutboundItem::Ack { publish, connection } => {
                    if connection != state.connection.load(Ordering::Acquire) {
                        // The broker resends it on the new connection; that copy is acked.
                        tracing::debug!(
                            pkid = publish.pkid,
                            session = state.lane.name(),
                            "ack for an earlier connection skipped"
                        );
                        continue;
                    }
                    if let Err(e) = client.ack(&publish).await {
                        tracing::warn!(error = %e, "could not queue an MQTT ack");
                    }
                }
                OutboundItem::Downlink { device, body } => {
                    let is_receipt = matches!(body, DownlinkBody::Receipt { .. });
                    let mut buf = [0u8; MAX_DOWNLINK_LEN];
                    let payload = match encode_downlink(&Downlink::new(body), &mut buf) {
                        Ok(bytes) => bytes.to_vec(),
                        Err(e) => {
                            tracing::error!(%device, error = %e, "downlink did not encode");
                            continue;
                        }
                    };
                    let topic = Topic::down(device).to_string();
                    match client.publish(topic, QoS::AtLeastOnce, false, payload).await {
                        Ok(()) if is_receipt => metrics.receipts_sent(1),
                        Ok(()) => {}
                        Err(e) => tracing::warn!(%device, error = %e, "could not queue a downlink"),
                    }
                }
            }
        }
        if let Err(e) = client.disconnect().await {
            tracing::debug!(error = %e, "disconnect request not queued");
        }
    });
    (outbound, task)
}

/// How long the telemetry session waits for a connected alarm session to be subscribed.
const ALARM_SUBSCRIBE_GRACE: Duration = Duration::from_secs(2);
/// The longest the telemetry session waits for the alarm session before connecting anyway.
const ALARM_HEAD_START_CAP: Duration = Duration::from_secs(30);

/// The longest pause between connection attempts. The alarm session retries every second at
/// most: each second it is away is a second every queued alarm waits.
fn max_backoff(lane: Lane) -> Duration {
    match lane {
        Lane::Alarms => Duration::from_secs(1),
        Lane::Telemetry => Duration::from_secs(5),
    }
}

/// Polls the event loop: forwards publishes to the committer until `stop` turns true,
/// then keeps polling (so acks and the disconnect go out) until the disconnect is sent.
/// With `after`, every (re)connect first waits for that session ([`MqttState::head_start`]).
#[allow(clippy::too_many_arguments)]
pub async fn run_poller(
    mut eventloop: EventLoop,
    client: AsyncClient,
    forward: mpsc::Sender<Incoming>,
    mut stop: watch::Receiver<bool>,
    state: Arc<MqttState>,
    after: Option<Arc<MqttState>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) {
    let mut forward = Some(forward);
    let mut backoff = Duration::from_millis(100);
    let mut connecting = true;
    loop {
        if forward.is_some() && *stop.borrow() {
            tracing::info!("MQTT intake stopped; finishing acks before disconnect");
            forward = None;
        }
        if let (true, Some(first), Some(_)) = (connecting, after.as_ref(), forward.as_ref()) {
            connecting = false;
            let verdict = tokio::select! {
                verdict = first.head_start(ALARM_SUBSCRIBE_GRACE, ALARM_HEAD_START_CAP) => Some(verdict),
                _ = stop.changed() => None,
            };
            match verdict {
                Some(HeadStart::Ready) => {}
                Some(verdict) => tracing::warn!(
                    ?verdict,
                    session = state.lane.name(),
                    waiting_for = first.lane.name(),
                    "that session is not ready; connecting anyway"
                ),
                None => continue,
            }
        }
        let event = tokio::select! {
            changed = stop.changed(), if forward.is_some() => {
                if changed.is_err() {
                    forward = None;
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some(tx) = forward.as_ref() else {
                    // Stopping: not acked, so the broker redelivers it to the next run.
                    continue;
                };
                metrics.received(1);
                let received_at = clock.now();
                let arrived = Instant::now();
                let publish = detach(publish);
                let cost = state.in_flight_cost(&publish);
                // Waiting for budget (or for room in the channel) is back-pressure on the
                // socket; the committer gives budget back without waiting on us, so this
                // cannot deadlock.
                if state.in_flight.available_permits() < cost {
                    tracing::debug!(
                        cost,
                        "in-flight byte budget spent; pausing reads until a batch is acked"
                    );
                }
                let mut stop_gone = false;
                let taken = tokio::select! {
                    charge = state.take_in_flight(cost) => Some(charge),
                    changed = stop.changed() => {
                        stop_gone = changed.is_err();
                        None
                    }
                };
                let Some(in_flight) = taken else {
                    // Stopping: not forwarded, not acked; the broker redelivers it.
                    if stop_gone {
                        forward = None;
                    }
                    continue;
                };
                let incoming = Incoming {
                    publish,
                    received_at,
                    arrived,
                    lane: state.lane,
                    connection: state.connection.load(Ordering::Acquire),
                    in_flight,
                };
                if tx.send(incoming).await.is_err() {
                    tracing::warn!("committer has stopped; intake stopped");
                    forward = None;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff = Duration::from_millis(100);
                state.connection.fetch_add(1, Ordering::AcqRel);
                state.connected.store(true, Ordering::Release);
                state.record_attempt(Attempt::Connected);
                tracing::info!(
                    session_present = connack.session_present,
                    session = state.lane.name(),
                    "connected to the broker"
                );
                if connack.session_present {
                    // The broker kept our subscriptions with the session.
                    state.mark_ready(&metrics);
                } else {
                    state.subscribed.store(false, Ordering::Release);
                    subscribe(client.clone(), state.lane);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let granted = suback
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, SubscribeReasonCode::Success(_)));
                if granted {
                    tracing::info!(session = state.lane.name(), filters = ?state.lane.filters(), "subscribed");
                    state.mark_ready(&metrics);
                } else {
                    // Not ready until it is: /readyz and /healthz name the session.
                    tracing::error!(session = state.lane.name(), filters = ?state.lane.filters(), codes = ?suback.return_codes, "broker refused a subscription (check its ACL)");
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(disconnect))) => {
                tracing::warn!(reason = ?disconnect.reason_code, session = state.lane.name(), "broker sent DISCONNECT");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!(session = state.lane.name(), "disconnected from the broker");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = state.connected.swap(false, Ordering::AcqRel);
                state.subscribed.store(false, Ordering::Release);
                state.set_connected_metric(&metrics, false);
                state.record_attempt(Attempt::of(&e));
                connecting = true;
                let session = state.lane.name();
                if forward.is_none() {
                    tracing::info!(error = %e, session, "connection ended while stopping");
                    break;
                }
                if was_connected {
                    tracing::warn!(error = %e, session, "MQTT connection lost; reconnecting");
                } else {
                    tracing::warn!(error = %e, session, retry_in_ms = backoff.as_millis() as u64, "cannot connect to the broker");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(max_backoff(state.lane));
            }
        }
    }
    state.connected.store(false, Ordering::Release);
    state.subscribed.store(false, Ordering::Release);
    state.set_connected_metric(&metrics, false);
}

/// The publish with its own copies of topic and payload, and without MQTT properties (the
/// gateway uses none). rumqttc's come as slices of its read buffer, and one small publish
/// kept for a commit would keep that whole buffer alive, beyond what the budget counts.
fn detach(publish: Publish) -> Publish {
    Publish {
        topic: publish.topic.to_vec().into(),
        payload: publish.payload.to_vec().into(),
        properties: None,
        ..publish
    }
}

/// Subscribes from a separate task: the poller must not await the request channel.
fn subscribe(client: AsyncClient, lane: Lane) {
    tokio::spawn(async move {
        let filters = lane
            .filters()
            .iter()
            .map(|filter| Filter::new(*filter, QoS::AtLeastOnce));
        if let Err(e) = client.subscribe_many(filters).await {
            tracing::error!(error = %e, "could not queue the subscription");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerUrl;

    #[test]
    fn plain_options() {
        let config = MqttConfig::default();
        let options = mqtt_options(&config, Lane::Telemetry).unwrap();
        assert_eq!(options.client_id(), "tec.gateway");
        assert_eq!(options.broker_address(), ("127.0.0.1".to_owned(), 1883));
        assert!(!options.clean_start());
        assert!(options.manual_acks());
        assert_eq!(options.session_expiry_interval(), Some(86_400));
        assert_eq!(options.max_packet_size(), Some(4096));
        assert!(matches!(options.transport(), Transport::Tcp));
        // The alarm session: the same broker and session settings, its own client id.
        let alarms = mqtt_options(&config, Lane::Alarms).unwrap();
        assert_eq!(alarms.client_id(), "tec.gateway-alarms");
        assert!(!alarms.clean_start());
        assert!(alarms.manual_acks());
        assert_eq!(alarms.session_expiry_interval(), Some(86_400));
    }

    #[test]
    fn each_session_reports_its_own_readiness() {
        let sessions = MqttSessions::new(4096);
        assert!(!sessions.ready());
        for state in [&sessions.telemetry, &sessions.alarms] {
            state.connected.store(true, Ordering::Release);
        }
        sessions.telemetry.subscribed.store(true, Ordering::Release);
        assert!(!sessions.ready());
        assert_eq!(
            sessions.not_ready_reason().as_deref(),
            Some("alarm session: connected but not yet subscribed")
        );
        sessions.alarms.subscribed.store(true, Ordering::Release);
        assert!(sessions.ready());
        assert_eq!(sessions.not_ready_reason(), None);
        assert_eq!(Lane::Alarms.filters(), ["tec/v1/dev/+/alarm"]);
        assert_eq!(Lane::Telemetry.filters(), ["tec/v1/dev/+/up", "tec/v1/dev/+/status"]);
    }

    fn publish(topic: &str, payload_len: usize) -> Publish {
        Publish::new(topic, QoS::AtLeastOnce, vec![7u8; payload_len], None)
    }
    fn refused() -> ConnectionError {
        ConnectionError::ConnectionRefused(rumqttc::v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized)
    }

    fn unreachable() -> ConnectionError {
        ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    const GRACE: Duration = Duration::from_secs(2);
    const CAP: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn telemetry_waits_for_the_alarm_session_while_the_broker_is_unreachable() {
        let alarms = Arc::new(MqttState::new(Lane::Alarms, 4096));
        alarms.record_attempt(Attempt::of(&unreachable()));
        let waiter = tokio::spawn({
            let alarms = alarms.clone();
            async move { alarms.head_start(GRACE, CAP).await }
        });
        // Past the grace: an unreachable broker is waited out, not timed out.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!waiter.is_finished());
        alarms.record_attempt(Attempt::of(&unreachable()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        alarms.connected.store(true, Ordering::Release);
        alarms.record_attempt(Attempt::Connected);
        alarms.mark_ready(&Metrics::new());
        assert_eq!(waiter.await.unwrap(), HeadStart::Ready);
        // Already ready: at once.
        assert_eq!(alarms.head_start(GRACE, CAP).await, HeadStart::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn telemetry_does_not_wait_for_an_alarm_session_the_broker_refuses() {
        let alarms = Arc::new(MqttState::new(Lane::Alarms, 4096));
        let waiter = tokio::spawn({
            let alarms = alarms.clone();
            async move { alarms.head_start(GRACE, CAP).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "the alarm session has not tried yet");
        alarms.record_attempt(Attempt::of(&refused()));
        assert_eq!(waiter.await.unwrap(), HeadStart::Refused);
    }

    #[tokio::test(start_paused = true)]
    async fn telemetry_waits_only_a_grace_for_an_alarm_subscription() {
        let alarms = MqttState::new(Lane::Alarms, 4096);
        alarms.connected.store(true, Ordering::Release);
        alarms.record_attempt(Attempt::Connected);
        let started = tokio::time::Instant::now();
        assert_eq!(alarms.head_start(GRACE, CAP).await, HeadStart::NotSubscribed);
        assert_eq!(started.elapsed(), GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn telemetry_connects_anyway_after_the_cap() {
        let alarms = MqttState::new(Lane::Alarms, 4096);
        alarms.record_attempt(Attempt::of(&unreachable()));
        let started = tokio::time::Instant::now();
        assert_eq!(alarms.head_start(GRACE, CAP).await, HeadStart::GaveUp);
        assert_eq!(started.elapsed(), CAP);
    }

    #[tokio::test]
    async fn the_budget_is_held_until_the_last_copy_of_a_publish_is_dropped() {
        let state = Arc::new(MqttState::new(Lane::Telemetry, 10_000));
        let big = detach(publish("tec/v1/dev/abc/up", 3_000));
        let cost = state.in_flight_cost(&big);
        assert_eq!(cost, 3_000 + "tec/v1/dev/abc/up".len() + PUBLISH_OVERHEAD_BYTES);
        let incoming = |in_flight| Incoming {
            publish: big.clone(),
            received_at: Timestamp(1),
            arrived: Instant::now(),
            lane: Lane::Telemetry,
            connection: 1,
            in_flight,
        };
        let first = incoming(state.take_in_flight(cost).await);
        let second = incoming(state.take_in_flight(cost).await);
        assert_eq!(
            (first.in_flight.bytes(), state.in_flight_available()),
            (cost, 10_000 - 2 * cost)
        );
        // A third does not fit until one is let go of, and a copy (the batch the committer
        // shares with its blocking task) holds it too.
        assert!(state.in_flight.try_acquire_many(cost as u32).is_err());
        let copy = first.clone();
        drop(first);
        assert_eq!(state.in_flight_available(), 10_000 - 2 * cost);
        drop(copy);
        assert_eq!(state.in_flight_available(), 10_000 - cost);
        let third = incoming(state.take_in_flight(cost).await);
        drop((second, third));
        assert_eq!(state.in_flight_available(), 10_000);
    }

    #[tokio::test]
    async fn queued_acks_keep_the_packet_id_not_the_bytes() {
        let (outbound, mut rx) = Outbound::detached();
        let mut big = publish("tec/v1/dev/abc/up", 3_000);
        big.pkid = 42;
        outbound.send(OutboundItem::Ack {
            publish: big,
            connection: 7,
        });
        match rx.recv().await.unwrap() {
            OutboundItem::Ack { publish, connection } => {
                assert_eq!((publish.pkid, publish.qos, connection), (42, QoS::AtLeastOnce, 7));
                assert!(publish.payload.is_empty() && publish.topic.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_publish_costs_more_than_the_whole_budget() {
        let state = MqttState::new(Lane::Telemetry, 4096);
        assert_eq!(state.in_flight_cost(&publish("t", 4_000)), 4096);
    }

    #[test]
    fn detached_publishes_own_their_bytes_and_drop_properties() {
        let mut original = publish("tec/v1/dev/abc/up", 10);
        original.retain = true;
        original.properties = Some(rumqttc::v5::mqttbytes::v5::PublishProperties {
            user_properties: vec![("k".into(), "v".repeat(1000))],
            ..Default::default()
        });
        let copy = detach(original.clone());
        assert!(copy.properties.is_none());
        assert!(copy.retain);
        assert_eq!(
            (copy.topic.clone(), copy.payload.clone()),
            (original.topic.clone(), original.payload.clone())
        );
        assert_ne!(copy.payload.as_ptr(), original.payload.as_ptr());
    }

    #[test]
    fn mqtts_builds_a_tls_transport() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let config = MqttConfig {
            broker: BrokerUrl::parse("mqtts://broker.example").unwrap(),
            ca_file: Some(ca),
            ..MqttConfig::default()
        };
        let options = mqtt_options(&config, Lane::Telemetry).unwrap();
        assert_eq!(options.broker_address().1, 8883);
        assert!(matches!(
            options.transport(),
            Transport::Tls(TlsConfiguration::Simple { .. })
        ));
        // Without a CA file: system roots.
        let config = MqttConfig {
            broker: BrokerUrl::parse("mqtts://broker.example:9999").unwrap(),
            ..MqttConfig::default()
        };
        assert!(matches!(
            mqtt_options(&config, Lane::Telemetry).unwrap().transport(),
            Transport::Tls(_)
        ));
    }

    #[test]
    fn missing_or_bad_ca_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MqttConfig {
            broker: BrokerUrl::parse("mqtts://broker.example").unwrap(),
            ca_file: Some(dir.path().join("missing.pem")),
            ..MqttConfig::default()
        };
        assert!(matches!(
            mqtt_options(&config, Lane::Telemetry),
            Err(ConfigError::Read { .. })
        ));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a cert").unwrap();
        config.ca_file = Some(junk);
        assert!(matches!(
            mqtt_options(&config, Lane::Telemetry),
            Err(ConfigError::Invalid { .. })
        ));
    }
}
