//! Simulated devices that behave as the firmware will: each keeps every uplink in an outbox until
//! the gateway's receipt for its (boot, seq) arrives on its down topic, and retransmits the same
//! bytes until then, across broker restarts and gateway crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::{
    DeviceId, DeviceStatus, DownlinkBody, FirmwareVersion, MAX_STATUS_LEN, MAX_UPLINK_LEN, Presence, SensorState,
    StatusMessage, Topic, Uplink, UplinkBody, UplinkHeader, decode_downlink, encode_status, encode_uplink,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::task::JoinHandle;

use crate::broker::Credentials;
use crate::error::{HarnessError, Result};

/// One uplink as the devices sent it: what the store must hold exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SentKey {
    pub device: DeviceId,
    pub boot: u32,
    pub seq: u32,
}

/// How to reach the broker and how a device behaves.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    pub host: String,
    pub port: u16,
    /// `None` for an anonymous broker.
    pub credentials: Option<Credentials>,
    pub boot: u32,
    /// Retransmit an unreceipted uplink after this long.
    pub resend_after: Duration,
    /// Publish `Online` (retained) on connect and register `Offline` as the last will.
    pub presence: bool,
    pub keep_alive: Duration,
}

impl DeviceOptions {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            credentials: None,
            boot: 1,
            resend_after: Duration::from_secs(3),
            presence: true,
            keep_alive: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Outgoing {
    payload: Vec<u8>,
    /// `None`: due now (never sent on this connection).
    last_sent: Option<Instant>,
}

#[derive(Debug, Default)]
struct DeviceState {
    boot: u32,
    next_seq: u32,
    outbox: BTreeMap<(u32, u32), Outgoing>,
    sent: Vec<(u32, u32)>,
    receipted: BTreeSet<(u32, u32)>,
    connected: bool,
    connections: u64,
    retransmits: u64,
    receipts: u64,
    /// Receipts naming an uplink already receipted (allowed: duplicates get receipts too).
    repeat_receipts: u64,
    /// Receipts naming an uplink this device never sent: a gateway bug.
    unknown_receipts: u64,
    other_downlinks: Vec<DownlinkBody>,
    last_error: Option<String>,
}

/// Counters of one device or a whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetProgress {
    pub devices: usize,
    pub connected: usize,
    pub published: u64,
    pub receipted: u64,
    pub outstanding: u64,
    pub retransmits: u64,
    pub receipts: u64,
    pub repeat_receipts: u64,
    pub unknown_receipts: u64,
    pub connections: u64,
}

impl FleetProgress {
    pub fn all_receipted(&self) -> bool {
        self.outstanding == 0 && self.receipted == self.published
    }

    fn add(&mut self, other: &FleetProgress) {
        self.devices += other.devices;
        self.connected += other.connected;
        self.published += other.published;
        self.receipted += other.receipted;
        self.outstanding += other.outstanding;
        self.retransmits += other.retransmits;
        self.receipts += other.receipts;
        self.repeat_receipts += other.repeat_receipts;
        self.unknown_receipts += other.unknown_receipts;
        self.connections += other.connections;
    }
}

/// One simulated device with its own MQTT connection.
#[derive(Debug)]
pub struct DeviceSim {
    id: DeviceId,
    client: AsyncClient,
    state: Arc<Mutex<DeviceState>>,
    tasks: Vec<JoinHandle<()>>,
}

fn lock(state: &Mutex<DeviceState>) -> MutexGuard<'_, DeviceState> {
    // A panic while holding the lock leaves plain data behind: keep going with it.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DeviceSim {
    /// Connects (in the background; it keeps reconnecting) and starts the retransmit timer.
    pub fn start(id: DeviceId, options: DeviceOptions) -> Result<Self> {
        let mut mqtt = MqttOptions::new(id.as_str(), options.host.clone(), options.port);
        mqtt.set_keep_alive(options.keep_alive);
        mqtt.set_clean_start(true);
        if let Some(credentials) = &options.credentials {
            mqtt.set_credentials(credentials.username.clone(), credentials.password.clone());
        }
        if options.presence {
            let mut buf = [0u8; MAX_STATUS_LEN];
            let offline = encode_status(&StatusMessage::new(Presence::Offline), &mut buf)?.to_vec();
            mqtt.set_last_will(LastWill::new(
                Topic::status(id).to_string(),
                offline,
                QoS::AtLeastOnce,
                true,
                None,
            ));
        }
        let (client, eventloop) = AsyncClient::new(mqtt, 4096);
        let state = Arc::new(Mutex::new(DeviceState {
            boot: options.boot,
            ..DeviceState::default()
        }));
        let poller = tokio::spawn(poll_loop(
            id,
            options.boot,
            options.presence,
            client.clone(),
            eventloop,
            state.clone(),
        ));
        let resender = tokio::spawn(resend_loop(id, client.clone(), state.clone(), options.resend_after));
        Ok(Self {
            id,
            client,
            state,
            tasks: vec![poller, resender],
        })
    }

    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// Puts an uplink in the outbox and publishes it; returns its key.
    pub async fn send(&self, body: UplinkBody) -> Result<SentKey> {
        let (key, payload) = {
            let mut state = lock(&self.state);
            let boot = state.boot;
            let seq = state.next_seq;
            state.next_seq = state.next_seq.wrapping_add(1);
            let device_time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let uplink = Uplink::new(
                UplinkHeader {
                    boot,
                    seq,
                    device_time_ms,
                },
                body,
            );
            let mut buf = [0u8; MAX_UPLINK_LEN];
            let payload = encode_uplink(&uplink, &mut buf)?.to_vec();
            state.outbox.insert(
                (boot, seq),
                Outgoing {
                    payload: payload.clone(),
                    last_sent: Some(Instant::now()),
                },
            );
            state.sent.push((boot, seq));
            (
                SentKey {
                    device: self.id,
                    boot,
                    seq,
                },
                payload,
            )
        };
        self.client
            .publish(Topic::up(self.id).to_string(), QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(key)
    }

    /// Starts a new boot: sequence numbers restart at 0; unreceipted uplinks of older boots stay
    /// in the outbox (as the firmware keeps its outbox across a reboot).
    pub fn reboot(&self, boot: u32) {
        let mut state = lock(&self.state);
        state.boot = boot;
        state.next_seq = 0;
    }

    pub fn progress(&self) -> FleetProgress {
        let state = lock(&self.state);
        FleetProgress {
            devices: 1,
            connected: usize::from(state.connected),
            published: state.sent.len() as u64,
            receipted: state.receipted.len() as u64,
            outstanding: state.outbox.len() as u64,
            retransmits: state.retransmits,
            receipts: state.receipts,
            repeat_receipts: state.repeat_receipts,
            unknown_receipts: state.unknown_receipts,
            connections: state.connections,
        }
    }

    pub fn is_connected(&self) -> bool {
        lock(&self.state).connected
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.state).last_error.clone()
    }

    pub fn sent(&self) -> Vec<SentKey> {
        lock(&self.state)
            .sent
            .iter()
            .map(|&(boot, seq)| SentKey {
                device: self.id,
                boot,
                seq,
            })
            .collect()
    }

    pub fn is_receipted(&self, key: &SentKey) -> bool {
        lock(&self.state).receipted.contains(&(key.boot, key.seq))
    }

    /// Downlinks other than receipts (help on the way, configuration, ...), in arrival order.
    pub fn other_downlinks(&self) -> Vec<DownlinkBody> {
        lock(&self.state).other_downlinks.clone()
    }

    /// Disconnects and stops its tasks. Unreceipted uplinks are simply forgotten.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for DeviceSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Owns the event loop: connection state, subscriptions after each connect, receipts. Never
/// awaits the client (that deadlocks once the request channel is full): it spawns instead.
async fn poll_loop(
    id: DeviceId,
    boot: u32,
    presence: bool,
    client: AsyncClient,
    mut eventloop: EventLoop,
    state: Arc<Mutex<DeviceState>>,
) {
    let down = Topic::down(id).to_string();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                {
                    let mut state = lock(&state);
                    state.connected = true;
                    state.connections += 1;
                    // A clean session dropped whatever was in flight: everything unreceipted is due.
                    for outgoing in state.outbox.values_mut() {
                        outgoing.last_sent = None;
                    }
                }
                let client = client.clone();
                let down = down.clone();
                tokio::spawn(async move {
                    let _ = client.subscribe(down, QoS::AtLeastOnce).await;
                    if presence {
                        let mut buf = [0u8; MAX_STATUS_LEN];
                        if let Ok(online) = encode_status(&StatusMessage::new(Presence::Online { boot }), &mut buf) {
                            let online = online.to_vec();
                            let _ = client
                                .publish(Topic::status(id).to_string(), QoS::AtLeastOnce, true, online)
                                .await;
                        }
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic.as_ref() == down.as_bytes() {
                    handle_downlink(&state, &publish.payload);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(_))) => lock(&state).connected = false,
            Ok(_) => {}
            Err(err) => {
                {
                    let mut state = lock(&state);
                    state.connected = false;
                    state.last_error = Some(err.to_string());
                }
                tracing::debug!(device = %id, error = %err, "device connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn handle_downlink(state: &Mutex<DeviceState>, payload: &[u8]) {
    let Ok(downlink) = decode_downlink(payload) else {
        return;
    };
    let mut state = lock(state);
    match downlink.body {
        DownlinkBody::Receipt { boot, seqs } => {
            state.receipts += 1;
            for seq in seqs {
                if state.outbox.remove(&(boot, seq)).is_some() {
                    state.receipted.insert((boot, seq));
                } else if state.receipted.contains(&(boot, seq)) {
                    state.repeat_receipts += 1;
                } else {
                    state.unknown_receipts += 1;
                }
            }
        }
        other => state.other_downlinks.push(other),
    }
}

/// Retransmits, byte for byte, every uplink not receipted within `resend_after`, and at once
/// after a reconnect.
async fn resend_loop(id: DeviceId, client: AsyncClient, state: Arc<Mutex<DeviceState>>, resend_after: Duration) {
    let up = Topic::up(id).to_string();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due: Vec<Vec<u8>> = {
            let mut state = lock(&state);
            if !state.connected {
                continue;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            let mut resent = 0;
            for outgoing in state.outbox.values_mut() {
                let is_due = outgoing
                    .last_sent
                    .is_none_or(|at| now.duration_since(at) >= resend_after);
                if is_due {
                    outgoing.last_sent = Some(now);
                    due.push(outgoing.payload.clone());
                    resent += 1;
                }
            }
            state.retransmits += resent;
            due
        };
        for payload in due {
            if client
                .publish(up.clone(), QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// What a fleet does.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub host: String,
    pub port: u16,
    pub device_ids: Vec<DeviceId>,
    /// Log in as `Credentials::for_device(id)` (for a broker with [`crate::BrokerAuth`]).
    pub authenticate: bool,
    pub boot: u32,
    pub events_per_device: u32,
    /// Pause between two uplinks of one device.
    pub interval: Duration,
    pub resend_after: Duration,
    /// Every n-th uplink of a device is a pendant press (None: no alarms).
    pub alarm_every: Option<u32>,
    pub presence: bool,
}

impl FleetOptions {
    /// `count` devices named `{prefix}-0000`, ...
    pub fn new(host: impl Into<String>, port: u16, prefix: &str, count: usize) -> Result<Self> {
        Ok(Self::for_devices(
            host,
            port,
            crate::scenario::device_ids(prefix, count)?,
        ))
    }

    pub fn for_devices(host: impl Into<String>, port: u16, device_ids: Vec<DeviceId>) -> Self {
        Self {
            host: host.into(),
            port,
            device_ids,
            authenticate: false,
            boot: 1,
            events_per_device: 10,
            interval: Duration::from_millis(10),
            resend_after: Duration::from_secs(3),
            alarm_every: None,
            presence: true,
        }
    }
}

/// The uplink a fleet device sends as its `seq`-th message: mostly telemetry, in a fixed pattern.
pub fn body_for(seq: u32, alarm_every: Option<u32>) -> UplinkBody {
    if alarm_every.is_some_and(|n| n > 0 && seq % n == n - 1) {
        return UplinkBody::Alarm(protocol::AlarmKind::PendantPress);
    }
    match seq % 5 {
        0 => UplinkBody::Heartbeat(DeviceStatus {
            battery_mv: 3_900,
            battery_percent: 87,
            rssi_dbm: -61,
            uptime_s: seq,
            firmware: FirmwareVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
            heartbeat_interval_s: 300,
            outbox_depth: 0,
            events_dropped: 0,
        }),
        1 => UplinkBody::SensorChange {
            input: 0,
            state: SensorState::DoorOpen,
        },
        2 => UplinkBody::SensorChange {
            input: 0,
            state: SensorState::DoorClosed,
        },
        3 => UplinkBody::SensorChange {
            input: 1,
            state: SensorState::Motion,
        },
        _ => UplinkBody::SensorChange {
            input: 2,
            state: SensorState::Temperature { centi_celsius: 2_050 },
        },
    }
}

/// Many devices publishing a paced stream of uplinks.
#[derive(Debug)]
pub struct Fleet {
    devices: Arc<Vec<DeviceSim>>,
    options: FleetOptions,
    load: Vec<JoinHandle<Result<()>>>,
    started: Instant,
}

impl Fleet {
    /// Starts every device and waits until all are connected.
    pub async fn connect(options: FleetOptions) -> Result<Self> {
        let mut devices = Vec::with_capacity(options.device_ids.len());
        for &id in &options.device_ids {
            let mut device = DeviceOptions::new(options.host.clone(), options.port);
            device.credentials = options.authenticate.then(|| Credentials::for_device(id.as_str()));
            device.boot = options.boot;
            device.resend_after = options.resend_after;
            device.presence = options.presence;
            devices.push(DeviceSim::start(id, device)?);
        }
        let fleet = Self {
            devices: Arc::new(devices),
            options,
            load: Vec::new(),
            started: Instant::now(),
        };
        fleet.wait_connected(Duration::from_secs(20)).await?;
        Ok(fleet)
    }

    pub fn devices(&self) -> &[DeviceSim] {
        &self.devices
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let progress = self.progress();
            if progress.connected == progress.devices {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let error = self.devices.iter().find_map(DeviceSim::last_error);
                return Err(HarnessError::Timeout {
                    what: format!("{} devices to connect", progress.devices),
                    waited: timeout,
                    detail: Some(format!("{} connected; last error {error:?}", progress.connected)),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts every device's stream of `events_per_device` uplinks, `interval` apart, with
    /// staggered starts so the fleet does not publish in lockstep.
    pub fn start_load(&mut self) {
        let count = self.devices.len().max(1) as u32;
        for index in 0..self.devices.len() {
            let devices = self.devices.clone();
            let events = self.options.events_per_device;
            let interval = self.options.interval;
            let alarm_every = self.options.alarm_every;
            let offset = interval
                .checked_div(count)
                .unwrap_or_default()
                .saturating_mul(index as u32);
            self.load.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut tick = tokio::time::interval(interval.max(Duration::from_micros(1)));
                for seq in 0..events {
                    tick.tick().await;
                    if let Some(device) = devices.get(index) {
                        device.send(body_for(seq, alarm_every)).await?;
                    }
                }
                Ok(())
            }));
        }
        self.started = Instant::now();
    }

    /// Waits until every device has published its whole stream.
    pub async fn wait_published(&mut self) -> Result<()> {
        for task in self.load.drain(..) {
            task.await
                .map_err(|e| HarnessError::Other(format!("load task failed: {e}")))??;
        }
        Ok(())
    }

    pub fn progress(&self) -> FleetProgress {
        let mut total = FleetProgress::default();
        for device in self.devices.iter() {
            total.add(&device.progress());
        }
        total
    }

    /// Every key sent so far, across all devices.
    pub fn sent(&self) -> BTreeSet<SentKey> {
        self.devices.iter().flat_map(DeviceSim::sent).collect()
    }

    /// Waits for the load to finish and every uplink to be receipted.
    pub async fn wait_all_receipted(&mut self, timeout: Duration) -> Result<FleetProgress> {
        let started = Instant::now();
        tokio::time::timeout(timeout, self.wait_published())
            .await
            .map_err(|_| HarnessError::Timeout {
                what: "devices to publish their streams".into(),
                waited: timeout,
                detail: None,
            })??;
        loop {
            let progress = self.progress();
            if progress.all_receipted() {
                return Ok(progress);
            }
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: "every uplink to be receipted".into(),
                    waited: timeout,
                    detail: Some(format!("{progress:?}")),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the fleet's progress satisfies `predicate`: e.g. a third of the stream is
    /// out, so a disruption lands mid-stream however fast or slow the machine is.
    pub async fn wait_progress(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&FleetProgress) -> bool,
    ) -> Result<FleetProgress> {
        let started = Instant::now();
        loop {
            let progress = self.progress();
            if predicate(&progress) {
                return Ok(progress);
            }
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: what.to_owned(),
                    waited: timeout,
                    detail: Some(format!("{progress:?}")),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn elapsed_since_load(&self) -> Duration {
        self.started.elapsed()
    }

    /// Disconnects every device.
    pub async fn stop(mut self) {
        for task in self.load.drain(..) {
            task.abort();
        }
        if let Ok(devices) = Arc::try_unwrap(std::mem::take(&mut self.devices)) {
            for device in devices {
                device.stop().await;
            }
        }
    }
}

/// A bare MQTT client for injecting arbitrary payloads on arbitrary topics (junk, spoofing),
/// and for bulk publishing in benchmarks. Counts PUBACKs.
#[derive(Debug)]
pub struct RawClient {
    client: AsyncClient,
    pubacks: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
    connection_losses: Arc<AtomicU64>,
    /// Connected now (a CONNACK since the last loss).
    up: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl RawClient {
    /// Connects with a clean session; `inflight` bounds unacknowledged publishes.
    pub async fn connect(
        client_id: &str,
        host: &str,
        port: u16,
        credentials: Option<&Credentials>,
        inflight: u16,
    ) -> Result<Self> {
        let mut mqtt = MqttOptions::new(client_id, host, port);
        mqtt.set_keep_alive(Duration::from_secs(30));
        mqtt.set_outgoing_inflight_upper_limit(inflight);
        if let Some(credentials) = credentials {
            mqtt.set_credentials(credentials.username.clone(), credentials.password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, 10_000);
        let pubacks = Arc::new(AtomicU64::new(0));
        let connected = Arc::new(AtomicU64::new(0));
        let connection_losses = Arc::new(AtomicU64::new(0));
        let up = Arc::new(AtomicBool::new(false));
        let (acks, connects, losses, link) = (
            pubacks.clone(),
            connected.clone(),
            connection_losses.clone(),
            up.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connects.fetch_add(1, Ordering::Relaxed);
                        link.store(true, Ordering::Release);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        link.store(false, Ordering::Release);
                        losses.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let raw = Self {
            client,
            pubacks,
            connected,
            connection_losses,
            up,
            task,
        };
        let started = Instant::now();
        while raw.connected.load(Ordering::Relaxed) == 0 {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(HarnessError::Timeout {
                    what: format!("raw client {client_id} to connect"),
                    waited: Duration::from_secs(10),
                    detail: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(raw)
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
        Ok(())
    }

    /// PUBACKs received, whatever their reason code (a refused publish is acknowledged too).
    pub fn pubacks(&self) -> u64 {
        self.pubacks.load(Ordering::Relaxed)
    }

    /// Times the connection failed (dropped, or a reconnect attempt failed).
    pub fn connection_losses(&self) -> u64 {
        self.connection_losses.load(Ordering::Relaxed)
    }

    /// Publishes and waits for the broker's PUBACK, whatever its reason code: after it, the
    /// broker has done whatever it does with the publish (forwarded it to subscribers, or
    /// refused it). With Mosquitto 2.0 and rumqttc 0.25 the connection drops after each
    /// publish the ACL refused, and a publish made while it is down, or in flight when it
    /// drops, is lost when rumqttc reconnects with a clean session: so this publishes only
    /// while connected, and publishes again if the connection is lost before the answer.
    pub async fn publish_answered(&self, topic: &str, payload: Vec<u8>, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let timed_out = || HarnessError::Timeout {
            what: format!("the broker to acknowledge a publish on {topic}"),
            waited: timeout,
            detail: Some(format!("{} connection losses so far", self.connection_losses())),
        };
        loop {
            while !self.up.load(Ordering::Acquire) {
                if started.elapsed() > timeout {
                    return Err(timed_out());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let before = self.pubacks();
            let losses = self.connection_losses();
            self.publish(topic, payload.clone()).await?;
            loop {
                if self.pubacks() != before {
                    return Ok(());
                }
                if self.connection_losses() != losses {
                    break;
                }
                if started.elapsed() > timeout {
                    return Err(timed_out());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Waits until `count` PUBACKs arrived in total.
    pub async fn wait_pubacks(&self, count: u64, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        while self.pubacks() < count {
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: format!("{count} PUBACKs"),
                    waited: timeout,
                    detail: Some(format!("{} so far", self.pubacks())),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    pub async fn disconnect(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Encodes one uplink (for tests that craft payloads by hand).
pub fn encode(boot: u32, seq: u32, body: UplinkBody) -> Result<Vec<u8>> {
    let mut buf = [0u8; MAX_UPLINK_LEN];
    let uplink = Uplink::new(
        UplinkHeader {
            boot,
            seq,
            device_time_ms: None,
        },
        body,
    );
    Ok(encode_uplink(&uplink, &mut buf)?.to_vec())
}
