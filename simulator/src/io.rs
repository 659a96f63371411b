//! Tokio TCP as the firmware's transport: an `embedded-io-async` adapter and a
//! [`Connector`] that can be told the radio is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use firmware::session::Connector;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

use crate::clock::SimClock;

/// A `TcpStream` seen through `embedded-io-async`. Writes are buffered until `flush`:
/// rust-mqtt writes a packet in many small pieces and flushes after each packet.
#[derive(Debug)]
pub struct TokioIo {
    stream: BufWriter<TcpStream>,
}

impl TokioIo {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream: BufWriter::new(stream),
        }
    }
}

fn kind(error: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::ConnectionRefused => ErrorKind::ConnectionRefused,
        K::ConnectionReset => ErrorKind::ConnectionReset,
        K::ConnectionAborted => ErrorKind::ConnectionAborted,
        K::NotConnected => ErrorKind::NotConnected,
        K::BrokenPipe => ErrorKind::BrokenPipe,
        K::TimedOut => ErrorKind::TimedOut,
        K::Interrupted => ErrorKind::Interrupted,
        K::WriteZero => ErrorKind::WriteZero,
        _ => ErrorKind::Other,
    }
}

impl ErrorType for TokioIo {
    type Error = ErrorKind;
}

impl Read for TokioIo {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.stream.read(buf).await.map_err(|e| kind(&e))
    }
}

impl Write for TokioIo {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.stream.write(buf).await.map_err(|e| kind(&e))
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.stream.flush().await.map_err(|e| kind(&e))
    }
}

/// Why a simulated device could not open a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("simulated radio outage")]
    Offline,
    #[error("connect timed out")]
    TimedOut,
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens TCP connections to the broker, except while a simulated outage lasts.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    pub host: String,
    pub port: u16,
    pub clock: SimClock,
    /// Simulated time (ms) until which the radio is down.
    pub offline_until_ms: Arc<AtomicU64>,
    pub timeout: Duration,
}

impl Connector for TcpConnector {
    type Connection = TokioIo;
    type Error = ConnectError;

    async fn connect(&mut self) -> Result<TokioIo, ConnectError> {
        if self.clock.now_ms() < self.offline_until_ms.load(Ordering::Relaxed) {
            return Err(ConnectError::Offline);
        }
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| ConnectError::TimedOut)??;
        stream.set_nodelay(true)?;
        Ok(TokioIo::new(stream))
    }
}
