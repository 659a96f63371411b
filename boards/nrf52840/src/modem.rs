//! The network, left to the board integrator: the pendant reaches the broker through a
//! cellular (LTE-M / NB-IoT) or Wi-Fi module, usually over UART with AT commands, and which
//! module that is depends on the product. [`Modem`] is what the firmware needs from it;
//! [`ModemConnector`] turns it into the session's [`Connector`].
//!
//! This crate ships no modem driver. [`NotIntegrated`] is the integration point: it makes the
//! image build and link, and refuses every connect, so an image built from this crate as is
//! never reaches a broker (the device then keeps its alarms in flash and shows "no connection").
//! An integrator replaces it in `main` with a driver for the fitted module.

use core::fmt::Debug;
use core::future::Future;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use firmware::session::Connector;

/// Where the broker listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name (the modem resolves it) or address.
    pub host: &'static str,
    pub port: u16,
}

/// A network module that opens a byte stream to the broker. The stream carries MQTT as is,
/// so it must be the TLS stream when the broker requires TLS (cellular modules offer TLS
/// sockets; otherwise a TLS client goes between the socket and the session).
///
/// The session drops a pending `read` whenever an input or a deadline comes first, and reads
/// again later: a socket's `read` must lose no bytes when its future is dropped (one that
/// copies out of a receive buffer only when it completes, like embassy-nrf's `BufferedUarte`,
/// does not).
pub trait Modem {
    type Socket: Read + Write;
    type Error: Debug;
    /// Attaches to the network if needed and opens a fresh connection to `broker`. Called for
    /// every (re)connect; a previous socket has been dropped by then.
    fn open(&mut self, broker: BrokerAddress) -> impl Future<Output = Result<Self::Socket, Self::Error>>;
}

/// The session's [`Connector`] over a [`Modem`]: every connect opens a new socket to the broker.
#[derive(Debug)]
pub struct ModemConnector<M> {
    modem: M,
    broker: BrokerAddress,
}

impl<M: Modem> ModemConnector<M> {
    pub const fn new(modem: M, broker: BrokerAddress) -> Self {
        Self { modem, broker }
    }
}

impl<M: Modem> Connector for ModemConnector<M> {
    type Connection = M::Socket;
    type Error = M::Error;

    fn connect(&mut self) -> impl Future<Output = Result<Self::Connection, Self::Error>> {
        self.modem.open(self.broker)
    }
}

/// No modem driver: the integration point. Every [`Modem::open`] fails with [`NoModemDriver`],
/// so the session stays offline and retries with its backoff.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotIntegrated;

/// Why [`NotIntegrated`] opened nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoModemDriver;

impl Modem for NotIntegrated {
    type Socket = NoSocket;
    type Error = NoModemDriver;

    async fn open(&mut self, _broker: BrokerAddress) -> Result<Self::Socket, Self::Error> {
        Err(NoModemDriver)
    }
}

/// The socket [`NotIntegrated`] never opens: it has no values.
#[derive(Debug)]
pub enum NoSocket {}

impl ErrorType for NoSocket {
    type Error = ErrorKind;
}

impl Read for NoSocket {
    async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, Self::Error> {
        match *self {}
    }
}

impl Write for NoSocket {
    async fn write(&mut self, _buf: &[u8]) -> Result<usize, Self::Error> {
        match *self {}
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        match *self {}
    }
}
