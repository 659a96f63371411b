//! Local ports: pick a free one, wait until something listens on it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// A port that was free a moment ago on 127.0.0.1. Racy by nature; the window is tiny.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("binding an ephemeral port"))?;
    let port = listener
        .local_addr()
        .map_err(HarnessError::io("reading the ephemeral port"))?
        .port();
    Ok(port)
}

/// True once a TCP connection to `addr` succeeds.
pub fn accepts_connections(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `probe` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if probe() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(HarnessError::Timeout {
        what: what.to_string(),
        waited: timeout,
        detail: None,
    })
}
