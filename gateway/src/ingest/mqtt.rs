//! The MQTT edge: connection options, the task that polls rumqttc's event loop, and the
//! task that sends acks and downlinks.
//!
//! The poller never awaits `publish()`/`ack()` (that deadlocks once the request channel is
//! full); it only forwards publishes. Acks and downlinks go through [`Outbound`], a FIFO
//! that its own task drains, so the committer never blocks on the request channel either.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protocol::{DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, Topic, encode_downlink};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};

use crate::config::{ConfigError, MqttConfig};
use crate::domain::{Clock, Timestamp};
use crate::metrics::Metrics;

/// One publish as it left the MQTT task.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub publish: Publish,
    /// Gateway time of arrival: the events' `received_at`.
    pub received_at: Timestamp,
    /// For the receive-to-commit histogram.
    pub arrived: Instant,
    /// Which connection it came on; an ack is only valid on the same connection.
    pub connection: u64,
}

/// Connection state shared with /healthz and the committer.
#[derive(Debug, Default)]
pub struct MqttState {
    /// Bumped on every CONNACK.
    pub connection: AtomicU64,
    pub connected: AtomicBool,
    pub subscribed: AtomicBool,
}

impl MqttState {
    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }
}

/// rumqttc options from our configuration. Reads the TLS files, so a missing CA file is
/// a startup error rather than a reconnect loop.
pub fn mqtt_options(config: &MqttConfig) -> Result<MqttOptions, ConfigError> {
    let broker = &config.broker;
    let mut options = MqttOptions::new(config.client_id.clone(), broker.host.clone(), broker.port);
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(config.session_expiry_s))
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(config.keep_alive_s.max(5)))
        .set_max_packet_size(Some(config.max_packet_bytes))
        .set_receive_maximum(Some(config.receive_maximum))
        .set_request_channel_capacity(config.request_channel_capacity)
        .set_connection_timeout(config.connect_timeout_s);
    if let Some(username) = &config.username {
        options.set_credentials(username.clone(), config.password.clone().unwrap_or_default());
    }
    if broker.tls {
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

/// Handle to the outbound FIFO. Unbounded on purpose: its length is bounded by what the
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

    pub fn send(&self, item: OutboundItem) {
        if self.tx.send(item).is_err() {
            tracing::warn!("outbound MQTT task has stopped; ack or downlink not sent");
        }
    }
}

/// Starts the outbound task. It ends (and disconnects cleanly) once every [`Outbound`]
/// handle is dropped and the queue is drained.
pub fn spawn_outbound(
    client: AsyncClient,
    state: Arc<MqttState>,
    metrics: Arc<Metrics>,
) -> (Outbound, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<OutboundItem>();
    let task = tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            match item {
                OutboundItem::Ack { publish, connection } => {
                    if connection != state.connection.load(Ordering::Acquire) {
                        // The broker resends it on the new connection; that copy is acked.
                        tracing::debug!(pkid = publish.pkid, "ack for an earlier connection skipped");
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
    (Outbound { tx }, task)
}

/// Polls the event loop: forwards publishes to the committer until `stop` turns true,
/// then keeps polling (so acks and the disconnect go out) until the disconnect is sent.
pub async fn run_poller(
    mut eventloop: EventLoop,
    client: AsyncClient,
    forward: mpsc::Sender<Incoming>,
    mut stop: watch::Receiver<bool>,
    state: Arc<MqttState>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) {
    let mut forward = Some(forward);
    let mut backoff = Duration::from_millis(100);
    loop {
        if forward.is_some() && *stop.borrow() {
            tracing::info!("MQTT intake stopped; finishing acks before disconnect");
            forward = None;
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
                let incoming = Incoming {
                    publish,
                    received_at: clock.now(),
                    arrived: Instant::now(),
                    connection: state.connection.load(Ordering::Acquire),
                };
                // Waiting here is back-pressure on the socket; the committer never waits
                // on us, so this cannot deadlock.
                if tx.send(incoming).await.is_err() {
                    tracing::warn!("committer has stopped; intake stopped");
                    forward = None;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff = Duration::from_millis(100);
                state.connection.fetch_add(1, Ordering::AcqRel);
                state.connected.store(true, Ordering::Release);
                tracing::info!(session_present = connack.session_present, "connected to the broker");
                if connack.session_present {
                    // The broker kept our subscriptions with the session.
                    state.subscribed.store(true, Ordering::Release);
                    metrics.set_mqtt_connected(true);
                } else {
                    state.subscribed.store(false, Ordering::Release);
                    subscribe(client.clone());
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let granted = suback
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, SubscribeReasonCode::Success(_)));
                if granted {
                    tracing::info!("subscribed to uplink and status topics");
                    state.subscribed.store(true, Ordering::Release);
                    metrics.set_mqtt_connected(true);
                } else {
                    tracing::error!(codes = ?suback.return_codes, "broker refused a subscription (check its ACL)");
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(disconnect))) => {
                tracing::warn!(reason = ?disconnect.reason_code, "broker sent DISCONNECT");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!("disconnected from the broker");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = state.connected.swap(false, Ordering::AcqRel);
                state.subscribed.store(false, Ordering::Release);
                metrics.set_mqtt_connected(false);
                if forward.is_none() {
                    tracing::info!(error = %e, "connection ended while stopping");
                    break;
                }
                if was_connected {
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot connect to the broker");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    state.connected.store(false, Ordering::Release);
    state.subscribed.store(false, Ordering::Release);
    metrics.set_mqtt_connected(false);
}

/// Subscribes from a separate task: the poller must not await the request channel.
fn subscribe(client: AsyncClient) {
    tokio::spawn(async move {
        let filters = [protocol::ALL_UPLINKS_FILTER, protocol::ALL_STATUS_FILTER]
            .map(|filter| Filter::new(filter, QoS::AtLeastOnce));
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
        let options = mqtt_options(&config).unwrap();
        assert_eq!(options.broker_address(), ("127.0.0.1".to_owned(), 1883));
        assert!(!options.clean_start());
        assert!(options.manual_acks());
        assert_eq!(options.session_expiry_interval(), Some(86_400));
        assert_eq!(options.max_packet_size(), Some(256 * 1024));
        assert!(matches!(options.transport(), Transport::Tcp));
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
        let options = mqtt_options(&config).unwrap();
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
        assert!(matches!(mqtt_options(&config).unwrap().transport(), Transport::Tls(_)));
    }

    #[test]
    fn missing_or_bad_ca_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MqttConfig {
            broker: BrokerUrl::parse("mqtts://broker.example").unwrap(),
            ca_file: Some(dir.path().join("missing.pem")),
            ..MqttConfig::default()
        };
        assert!(matches!(mqtt_options(&config), Err(ConfigError::Read { .. })));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a cert").unwrap();
        config.ca_file = Some(junk);
        assert!(matches!(mqtt_options(&config), Err(ConfigError::Invalid { .. })));
    }
}
