//! Shared by the simulator end-to-end tests and the simulator benchmark: the real gateway in
//! process against a private broker (Mosquitto or the embedded one), homes registered with a
//! resident, simulated devices (the real firmware core) with the broker's credentials.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{Broker, BrokerEndpoint};
use gateway::app::GatewayHandle;
use gateway::config::{BrokerUrl, Config};
use gateway::domain::{
    Alert, AlertChange, Assignment, DeviceKind as GatewayKind, DeviceRecord, Resident, ResidentId, SystemClock,
    Timestamp,
};
use gateway::store::EventFilter;
use protocol::{DeviceId, TopicKind};
use simulator::{DeviceKind as SimKind, DeviceSpec};
use tokio::sync::broadcast;

pub fn gateway_config(broker: &impl BrokerEndpoint, data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.mqtt.broker = BrokerUrl::parse(&broker.url()).unwrap();
    config.mqtt.client_id = "e2e.gateway".into();
    if let Some(auth) = broker.auth() {
        config.mqtt.username = Some(auth.gateway.username.clone());
        config.mqtt.password = Some(auth.gateway.password.clone());
    }
    config
}

/// The real gateway, in process, connected and subscribed.
pub async fn start_gateway(broker: &impl BrokerEndpoint, data_dir: &Path) -> GatewayHandle {
    let handle = gateway::app::spawn(gateway_config(broker, data_dir), Arc::new(SystemClock))
        .await
        .unwrap();
    let started = Instant::now();
    while !handle.mqtt_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not connect to the broker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle
}

pub fn gateway_kind(kind: SimKind) -> GatewayKind {
    match kind {
        SimKind::Pendant => GatewayKind::Pendant,
        SimKind::Door => GatewayKind::DoorSensor,
        SimKind::Bed => GatewayKind::BedSensor,
        SimKind::Pir => GatewayKind::MotionSensor,
        SimKind::Smoke => GatewayKind::SmokeDetector,
    }
}

/// A resident with these devices assigned (open-ended, from the epoch).
pub async fn register_home(gateway: &GatewayHandle, resident: &str, devices: &[(DeviceId, SimKind)]) -> ResidentId {
    let resident_id = ResidentId::new(resident).unwrap();
    gateway
        .put_resident(Resident {
            id: resident_id.clone(),
            display_name: format!("Resident {resident}"),
            address: "1 Test Street".into(),
            access_notes: String::new(),
            responders: Vec::new(),
            care: Default::default(),
        })
        .await
        .unwrap();
    for (id, kind) in devices {
        let assignment = Assignment {
            device: *id,
            resident: resident_id.clone(),
            from: Timestamp::from_millis(0),
            until: None,
        };
        gateway
            .register_device(DeviceRecord::new(*id, gateway_kind(*kind), true), Some(assignment))
            .await
            .unwrap();
    }
    resident_id
}

/// A device spec with the broker's credentials for `id` (if it authenticates).
pub fn device_spec(broker: &impl BrokerEndpoint, id: DeviceId) -> DeviceSpec {
    let password = broker
        .device_credentials(id.as_str())
        .map(|c| c.password)
        .unwrap_or_default();
    DeviceSpec::new(id, password, broker.host(), broker.port())
}

/// The next alert change on the live stream that satisfies `predicate`.
pub async fn next_alert(
    alerts: &mut broadcast::Receiver<AlertChange>,
    what: &str,
    timeout: Duration,
    mut predicate: impl FnMut(&Alert) -> bool,
) -> Alert {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, alerts.recv()).await {
            Ok(Ok(change)) if predicate(&change.alert) => return change.alert,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => eprintln!("alert stream lagged by {n}"),
            Ok(Err(e)) => panic!("alert stream ended waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Every stored event of one device, in receive order.
pub fn device_events(gateway: &GatewayHandle, id: DeviceId) -> Vec<gateway::domain::StoredEvent> {
    gateway
        .store()
        .unwrap()
        .events(&EventFilter {
            device: Some(id),
            ..EventFilter::default()
        })
        .unwrap()
        .into_events()
}

/// Logs to the test's output when RUST_LOG is set (e.g. `RUST_LOG=simulator=debug,tec_firmware=debug`).
pub fn init_tracing() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// A broker (Mosquitto, or either kind as [`e2e::TestBroker`]) that prints its log when
/// dropped during a panic (a failing test).
pub struct LoggedBroker<B: BrokerEndpoint = Broker>(pub B);

impl<B: BrokerEndpoint> std::ops::Deref for LoggedBroker<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.0
    }
}

impl<B: BrokerEndpoint> std::ops::DerefMut for LoggedBroker<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.0
    }
}

impl<B: BrokerEndpoint> BrokerEndpoint for LoggedBroker<B> {
    fn host(&self) -> &str {
        self.0.host()
    }
    fn port(&self) -> u16 {
        self.0.port()
    }
    fn url(&self) -> String {
        self.0.url()
    }
    fn auth(&self) -> Option<&e2e::BrokerAuth> {
        self.0.auth()
    }
    fn log_tail(&self, lines: usize) -> String {
        self.0.log_tail(lines)
    }
}

impl<B: BrokerEndpoint> Drop for LoggedBroker<B> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- broker log (tail) ---\n{}", self.0.log_tail(80));
        }
    }
}

/// One uplink as a passive subscriber saw it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenUplink {
    pub device: DeviceId,
    pub boot: u32,
    pub seq: u32,
    pub alarm: bool,
}

/// A passive subscriber to every uplink with a persistent session (it survives a broker
/// restart), recording the order in which the broker delivered them.
pub struct WireObserver {
    seen: Arc<std::sync::Mutex<Vec<SeenUplink>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WireObserver {
    pub async fn start(broker: &impl BrokerEndpoint, client_id: &str) -> Self {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};

        let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3_600));
        options.set_keep_alive(Duration::from_secs(5));
        if let Some(admin) = broker.admin() {
            options.set_credentials(admin.username, admin.password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1_000);
        // Both uplink lanes on one session: the broker delivers them in the order it took them.
        let filters = [protocol::ALL_UPLINKS_FILTER, protocol::ALL_ALARMS_FILTER]
            .map(|filter| rumqttc::v5::mqttbytes::v5::Filter::new(filter, QoS::AtLeastOnce));
        client.subscribe_many(filters).await.unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let _client = client;
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = subscribed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                            let device = protocol::Topic::parse(&topic)
                                .ok()
                                .filter(|topic| matches!(topic.kind, TopicKind::Up | TopicKind::Alarm))
                                .map(|topic| topic.device_id);
                            if let (Some(device), Ok(uplink)) = (device, protocol::decode_uplink(&publish.payload)) {
                                seen.lock().unwrap().push(SeenUplink {
                                    device,
                                    boot: uplink.header.boot,
                                    seq: uplink.header.seq,
                                    alarm: uplink.body.is_alarm(),
                                });
                            }
                        }
                        Ok(_) => {}
                        // Broker gone: rumqttc reconnects on the next poll.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("observer subscription timed out")
            .unwrap();
        Self { seen, task }
    }

    /// First deliveries of one device's uplinks, in delivery order (redeliveries dropped).
    pub fn first_deliveries(&self, device: DeviceId) -> Vec<SeenUplink> {
        let seen = self.seen.lock().unwrap();
        let mut firsts: Vec<SeenUplink> = Vec::new();
        for uplink in seen.iter().filter(|u| u.device == device) {
            if !firsts.iter().any(|f| f.boot == uplink.boot && f.seq == uplink.seq) {
                firsts.push(*uplink);
            }
        }
        firsts
    }
}

impl Drop for WireObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything published on one device's up (decoded) and down (decoded) topics, as the
/// broker's admin sees it: what the device really sent, retransmissions included, in order.
pub struct DeviceWire {
    uplinks: tokio::sync::mpsc::UnboundedReceiver<protocol::Uplink>,
    downlinks: tokio::sync::mpsc::UnboundedReceiver<protocol::DownlinkBody>,
}

impl DeviceWire {
    pub async fn watch(broker: &impl BrokerEndpoint, id: DeviceId) -> Self {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};

        let mut options = MqttOptions::new(format!("wire-{id}"), broker.host(), broker.port());
        if let Some(admin) = broker.admin() {
            options.set_credentials(admin.username, admin.password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let filters = [
            protocol::Topic::up(id),
            protocol::Topic::alarm(id),
            protocol::Topic::down(id),
        ]
        .map(|topic| Filter::new(topic.to_string(), QoS::AtLeastOnce));
        client.subscribe_many(filters).await.unwrap();
        let (up_tx, uplinks) = tokio::sync::mpsc::unbounded_channel();
        let (down_tx, downlinks) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let down_topic = protocol::Topic::down(id).to_string();
        tokio::spawn(async move {
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(publish)) => {
                        if publish.topic == down_topic.as_bytes() {
                            if let Ok(downlink) = protocol::decode_downlink(&publish.payload) {
                                let _ = down_tx.send(downlink.body);
                            }
                        } else if let Ok(uplink) = protocol::decode_uplink(&publish.payload) {
                            let _ = up_tx.send(uplink);
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), subscribed_rx)
            .await
            .expect("the wire watcher subscribed in time")
            .unwrap();
        Self { uplinks, downlinks }
    }

    /// Every uplink seen so far, retransmissions included.
    pub fn take_uplinks(&mut self) -> Vec<protocol::Uplink> {
        let mut seen = Vec::new();
        while let Ok(uplink) = self.uplinks.try_recv() {
            seen.push(uplink);
        }
        seen
    }

    pub async fn next_downlink(
        &mut self,
        what: &str,
        wanted: impl Fn(&protocol::DownlinkBody) -> bool,
    ) -> protocol::DownlinkBody {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.downlinks.recv()).await {
                Ok(Some(body)) if wanted(&body) => return body,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the wire watcher stopped waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}
