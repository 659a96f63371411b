//! The embedded MQTT 5 broker of `tec-gateway demo`: rmqtt, in process, on the gateway's tokio
//! runtime, so the demo needs nothing installed.
//!
//! **Demo only.** It is anonymous (no passwords, no ACLs, no TLS), keeps everything in memory
//! (sessions, queued messages and retained presence die with the process) and listens on
//! loopback only, by design: nothing off this machine can reach it. Mosquitto, with per-device
//! credentials, ACLs, TLS and on-disk persistence, stays the production broker (see
//! `docs/deployment.md`). README's "Embedded broker (demo only)" says why rmqtt was chosen.
//!
//! What it must carry, and the end-to-end tests prove against it as against Mosquitto: the
//! firmware's rust-mqtt MQTT 5 client with its `Offline` last will and retained `Online`
//! presence; the gateway's persistent session (clean start off, a session expiry) with manual
//! acknowledgements, so QoS 1 uplinks it had not acknowledged (not yet committed) are delivered
//! again when it reconnects, and uplinks published while it was away are queued for it.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use rmqtt::codec::v5::DisconnectReasonCode;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{Disconnect, From as Sender, Publish};
use tokio::task::JoinHandle;

/// The plugin that stores retained messages: rmqtt's core no longer keeps them itself.
const RETAINER: &str = "rmqtt-retainer";

/// Retained messages in RAM, unlimited in number (one presence per device).
const RETAINER_CONFIG: &str = r#"
storage.type = "ram"
max_retained_messages = 0
max_payload_size = "1MB"
"#;

/// Log directives that keep the broker's own logs (rmqtt logs through `log`, bridged into
/// `tracing`) at warn. A program that builds its default filter adds these; RUST_LOG, when
/// set, replaces the whole filter and so can ask for more.
pub const QUIET_LOG_DIRECTIVES: &str =
    "rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn,rmqtt_retainer=warn,rmqtt_utils=warn";

/// Outgoing QoS 1 messages in flight per client. The gateway acknowledges only after commit, so
/// this caps its commit batches (Mosquitto's tests run unlimited); the client's own MQTT 5
/// receive maximum lowers it further.
const MAX_INFLIGHT: NonZeroU16 = NonZeroU16::MAX;

/// Messages queued per client while it is offline or its in-flight window is full. rmqtt's
/// default (1,000) would drop uplinks during a gateway restart in a few hundred busy homes.
const MAX_QUEUED_PER_CLIENT: usize = 1_000_000;

/// How long a queued message waits for its subscriber when the publisher set no expiry.
/// rmqtt's default is 5 minutes; Mosquitto never expires them. A demo runs for hours at most.
const QUEUED_MESSAGE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A failure to start the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The demo broker is anonymous: it refuses any address other machines could reach.
    #[error("the embedded broker listens on loopback only, not on {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the broker's retained-message store")]
    Retainer(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A running embedded broker. [`EmbeddedBroker::shutdown`] stops it and closes every client
/// connection; dropping it stops only the accept loop (open connections last until the
/// runtime ends).
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    scx: ServerContext,
    server: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts the broker on `listen` (a loopback address; port 0 picks a free port, see
    /// [`EmbeddedBroker::addr`]) on the current tokio runtime. It accepts connections as soon as
    /// this returns.
    pub async fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        if !listen.ip().is_loopback() {
            return Err(BrokerError::NotLoopback(listen));
        }
        let scx = ServerContext::new()
            .plugins_config_map_add(RETAINER, RETAINER_CONFIG)
            .build()
            .await;
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| BrokerError::Retainer(e.into()))?;
        let hooks = scx.extends.hook_mgr().register();
        hooks
            .add(Type::ClientDisconnected, Box::new(WillOnRequest { scx: scx.clone() }))
            .await;
        hooks.start().await;
        let listener = Builder::new()
            .name("tec-demo")
            .laddr(listen)
            .nodelay(true)
            .allow_anonymous(true)
            .max_inflight(MAX_INFLIGHT)
            .max_mqueue_len(MAX_QUEUED_PER_CLIENT)
            .message_expiry_interval(QUEUED_MESSAGE_LIFETIME)
            .bind()
            .and_then(|listener| listener.tcp())
            .map_err(|e| BrokerError::Bind {
                addr: listen,
                source: e.into(),
            })?;
        let addr = listener.local_addr().map_err(|e| BrokerError::Bind {
            addr: listen,
            source: e.into(),
        })?;
        // The listener id must be unique per server; with port 0 the port cannot serve as one.
        let server = MqttServer::new(scx.clone()).listener_by_id(listener, 1).build();
        let server = tokio::spawn(async move {
            if let Err(error) = server.run().await {
                tracing::error!(%error, "embedded MQTT broker stopped");
            }
        });
        tracing::info!(%addr, "embedded MQTT broker listening (demo only: anonymous, loopback)");
        Ok(EmbeddedBroker { addr, scx, server })
    }

    /// The address it listens on, with the real port when it was started on port 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://HOST:PORT`, the form the gateway's broker setting takes.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Stops accepting connections, then closes every client's connection (their last wills
    /// are published to whoever is still subscribed; nothing is persisted). Stop the gateway
    /// first so that it commits and acknowledges what it holds.
    pub async fn shutdown(mut self) {
        self.server.abort();
        // The aborted accept loop drops the listening socket.
        let _ = (&mut self.server).await;
        let senders: Vec<_> = {
            let shared = self.scx.extends.shared().await;
            shared.iter().filter_map(|entry| entry.tx()).collect()
        };
        for tx in senders {
            let _ = tx.unbounded_send(rmqtt::types::Message::Closed(rmqtt::types::Reason::from_static(
                "embedded broker shutting down",
            )));
        }
        tracing::info!(addr = %self.addr, "embedded MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Publishes a client's last will when it disconnects with reason 0x04 "Disconnect with Will
/// Message". MQTT 5 (3.14.2.1) requires the server to publish the will then; rmqtt 0.24 treats
/// every DISCONNECT as normal and drops the will. The firmware sends 0x04 when its radio link
/// goes, so that the gateway hears `Offline` at once: without this, a pendant whose link drops
/// would look online in the demo until its keep-alive ran out. (A link that drops without any
/// DISCONNECT gets its will from rmqtt itself.)
struct WillOnRequest {
    scx: ServerContext,
}

#[async_trait::async_trait]
impl Handler for WillOnRequest {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::ClientDisconnected(session, _) = param
            && let Ok(Some(Disconnect::V5(disconnect))) = session.disconnect().await
            && disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage
            && let Ok(connect) = session.connect_info().await
            && let Some(will) = connect.last_will()
        {
            let client = session.id.client_id.to_string();
            match Publish::try_from(will) {
                Ok(publish) => {
                    let sender = Sender::from_lastwill(session.id.clone());
                    let expiry = Some(QUEUED_MESSAGE_LIFETIME);
                    if let Err(error) = SessionState::forwards(&self.scx, sender, publish, false, expiry).await {
                        tracing::warn!(%client, %error, "embedded broker: last will not published");
                    }
                }
                Err(error) => tracing::warn!(%client, %error, "embedded broker: unreadable last will"),
            }
        }
        (true, acc)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    fn client(broker: &EmbeddedBroker, id: &str) -> (AsyncClient, EventLoop) {
        let options = MqttOptions::new(id, broker.addr().ip().to_string(), broker.addr().port());
        AsyncClient::new(options, 10)
    }

    async fn next_publish(eventloop: &mut EventLoop) -> rumqttc::v5::mqttbytes::v5::Publish {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Event::Incoming(Packet::Publish(publish)) = eventloop.poll().await.unwrap() {
                    return publish;
                }
            }
        })
        .await
        .expect("a publish within 10 s")
    }

    #[tokio::test]
    async fn refuses_an_address_other_machines_could_reach() {
        let error = EmbeddedBroker::start("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(matches!(error, BrokerError::NotLoopback(_)), "{error}");
    }

    #[tokio::test]
    async fn port_zero_gets_a_real_port_replays_retained_messages_and_shutdown_closes_everything() {
        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(broker.addr().port(), 0);
        assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.addr().port()));

        let (publisher, mut publisher_loop) = client(&broker, "publisher");
        publisher
            .publish("tec/v1/dev/d1/status", QoS::AtLeastOnce, true, "online")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(publisher_loop.poll().await.unwrap(), Event::Incoming(Packet::PubAck(_))) {}
        })
        .await
        .unwrap();

        // A subscriber that comes later still gets it: the retainer plugin holds it.
        let (subscriber, mut subscriber_loop) = client(&broker, "subscriber");
        subscriber
            .subscribe("tec/v1/dev/+/status", QoS::AtLeastOnce)
            .await
            .unwrap();
        let publish = next_publish(&mut subscriber_loop).await;
        assert!(publish.retain);
        assert_eq!(&publish.payload[..], b"online");

        let addr = broker.addr();
        broker.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening");
        // Open connections are closed too, not left to the runtime's end.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while subscriber_loop.poll().await.is_ok() {}
        })
        .await;
        assert!(closed.is_ok(), "the subscriber's connection outlived the shutdown");
    }
}
