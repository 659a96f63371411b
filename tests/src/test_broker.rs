//! The broker an end-to-end test runs against: a private Mosquitto (the production broker) or
//! the gateway's embedded demo broker, behind one interface so the same test body proves both.
//!
//! The embedded broker is anonymous by design: tests that need passwords, ACLs, TLS or a broker
//! restart with on-disk persistence stay Mosquitto-only, and [`TestBroker`]'s restart family
//! refuses, with an error that says so, rather than pretend.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use gateway::broker::EmbeddedBroker;

use crate::broker::{Broker, BrokerAuth, BrokerOptions, Credentials};
use crate::error::{HarnessError, Result};

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerKind {
    /// A private Mosquitto with per-device passwords and the production ACL.
    #[default]
    Mosquitto,
    /// `gateway::broker::EmbeddedBroker`, anonymous, as `tec-gateway demo` runs it.
    Embedded,
}

/// What a test needs to reach a broker: address, and credentials if it authenticates.
pub trait BrokerEndpoint {
    fn host(&self) -> &str;
    fn port(&self) -> u16;
    /// `mqtt://HOST:PORT`, the form the gateway's `--broker` takes.
    fn url(&self) -> String;
    /// `None`: anonymous.
    fn auth(&self) -> Option<&BrokerAuth>;
    /// The broker's log tail, for a failure message.
    fn log_tail(&self, lines: usize) -> String;

    /// Credentials for a device id, if the broker authenticates.
    fn device_credentials(&self, id: &str) -> Option<Credentials> {
        self.auth().map(|_| Credentials::for_device(id))
    }

    /// The admin user (publish and subscribe anywhere), if the broker authenticates.
    fn admin(&self) -> Option<Credentials> {
        self.auth().and_then(|auth| auth.admin.clone())
    }
}

impl BrokerEndpoint for Broker {
    fn host(&self) -> &str {
        Broker::host(self)
    }
    fn port(&self) -> u16 {
        Broker::port(self)
    }
    fn url(&self) -> String {
        Broker::url(self)
    }
    fn auth(&self) -> Option<&BrokerAuth> {
        Broker::auth(self)
    }
    fn log_tail(&self, lines: usize) -> String {
        Broker::log_tail(self, lines)
    }
}

/// A running broker of either kind.
#[derive(Debug)]
pub enum TestBroker {
    /// Boxed: a Mosquitto handle (its options and config) is far larger than the embedded one's.
    Mosquitto(Box<Broker>),
    Embedded(EmbeddedTestBroker),
}

impl TestBroker {
    /// Starts a broker of `kind`. Mosquitto gets `auth` (passwords and the production ACL); the
    /// embedded broker is anonymous and ignores it.
    pub fn start(kind: BrokerKind, auth: Option<BrokerAuth>) -> Result<Self> {
        match kind {
            BrokerKind::Mosquitto => Ok(Self::Mosquitto(Box::new(Broker::start_with(BrokerOptions {
                auth,
                ..BrokerOptions::default()
            })?))),
            BrokerKind::Embedded => Ok(Self::Embedded(EmbeddedTestBroker::start()?)),
        }
    }

    pub fn kind(&self) -> BrokerKind {
        match self {
            Self::Mosquitto(_) => BrokerKind::Mosquitto,
            Self::Embedded(_) => BrokerKind::Embedded,
        }
    }

    /// Graceful restart (Mosquitto only: the embedded broker lives and dies with the demo).
    pub fn restart(&mut self) -> Result<()> {
        self.mosquitto("restart")?.restart()
    }

    /// Graceful stop (Mosquitto only).
    pub fn stop(&mut self) -> Result<()> {
        self.mosquitto("stop")?.stop()
    }

    /// SIGKILL (Mosquitto only).
    pub fn kill(&mut self) -> Result<()> {
        self.mosquitto("kill")?.kill()
    }

    /// Starts it again after a stop or kill (Mosquitto only).
    pub fn start_again(&mut self) -> Result<()> {
        self.mosquitto("start_again")?.start_again()
    }

    fn mosquitto(&mut self, operation: &str) -> Result<&mut Broker> {
        match self {
            Self::Mosquitto(broker) => Ok(broker),
            Self::Embedded(_) => Err(HarnessError::Other(format!(
                "{operation}: the embedded broker cannot be stopped and started again; \
                 this test is Mosquitto-only"
            ))),
        }
    }
}

impl From<Broker> for TestBroker {
    fn from(broker: Broker) -> Self {
        Self::Mosquitto(Box::new(broker))
    }
}

/// Inherent, so callers need not import [`BrokerEndpoint`].
impl TestBroker {
    pub fn host(&self) -> &str {
        match self {
            Self::Mosquitto(broker) => Broker::host(broker),
            Self::Embedded(broker) => broker.host(),
        }
    }
    pub fn port(&self) -> u16 {
        match self {
            Self::Mosquitto(broker) => Broker::port(broker),
            Self::Embedded(broker) => broker.addr.port(),
        }
    }
    pub fn url(&self) -> String {
        match self {
            Self::Mosquitto(broker) => Broker::url(broker),
            Self::Embedded(broker) => format!("mqtt://{}", broker.addr),
        }
    }
    pub fn auth(&self) -> Option<&BrokerAuth> {
        match self {
            Self::Mosquitto(broker) => Broker::auth(broker),
            Self::Embedded(_) => None,
        }
    }
    /// The broker's log tail, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        match self {
            Self::Mosquitto(broker) => Broker::log_tail(broker, lines),
            Self::Embedded(_) => "(the embedded broker logs through tracing: run with RUST_LOG=rmqtt=debug)".into(),
        }
    }

    /// Credentials for a device id, if the broker authenticates.
    pub fn device_credentials(&self, id: &str) -> Option<Credentials> {
        <Self as BrokerEndpoint>::device_credentials(self, id)
    }

    /// The admin user (publish and subscribe anywhere), if the broker authenticates.
    pub fn admin(&self) -> Option<Credentials> {
        <Self as BrokerEndpoint>::admin(self)
    }
}

impl BrokerEndpoint for TestBroker {
    fn host(&self) -> &str {
        TestBroker::host(self)
    }
    fn port(&self) -> u16 {
        TestBroker::port(self)
    }
    fn url(&self) -> String {
        TestBroker::url(self)
    }
    fn auth(&self) -> Option<&BrokerAuth> {
        TestBroker::auth(self)
    }
    fn log_tail(&self, lines: usize) -> String {
        TestBroker::log_tail(self, lines)
    }
}

/// The embedded broker on a runtime of its own (one thread), so that synchronous setup code can
/// start it and it outlives no test: dropped, it shuts down and the thread is joined.
#[derive(Debug)]
pub struct EmbeddedTestBroker {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedTestBroker {
    pub fn start() -> Result<Self> {
        let (started_tx, started_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("building its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
                    match EmbeddedBroker::start(listen).await {
                        Ok(broker) => {
                            let _ = started_tx.send(Ok(broker.addr()));
                            let _ = stop_rx.await;
                            broker.shutdown().await;
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(format!("{e}: {:?}", std::error::Error::source(&e))));
                        }
                    }
                });
            })
            .map_err(HarnessError::io("starting the embedded broker's thread"))?;
        let addr = started_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| HarnessError::Other(format!("the embedded broker did not start: {e}")))?
            .map_err(|e| HarnessError::Other(format!("the embedded broker did not start: {e}")))?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EmbeddedTestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
