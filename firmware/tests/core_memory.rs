#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The whole device state must fit the pendant's RAM budget: device core (with outbox),
//! session state, and the session future, which holds the rust-mqtt client, its receive
//! buffer and every other buffer the connection needs.

use core::convert::Infallible;

use firmware::boot::MemoryBootCounter;
use firmware::device::{Device, DeviceSetup};
use firmware::session::{self, Backoff, Connector, Event, MqttClient, Platform, SessionConfig, SessionState};
use protocol::{DeviceConfig, DeviceId, FirmwareVersion};

const BUDGET: usize = 16 * 1024;

/// A transport the size of a typical embedded socket handle.
#[derive(Debug)]
struct Socket {
    _handle: [usize; 2],
}

impl embedded_io_async::ErrorType for Socket {
    type Error = Infallible;
}

impl embedded_io_async::Read for Socket {
    async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(0)
    }
}

impl embedded_io_async::Write for Socket {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

struct Net;

impl Connector for Net {
    type Connection = Socket;
    type Error = Infallible;
    async fn connect(&mut self) -> Result<Socket, Infallible> {
        Ok(Socket { _handle: [0; 2] })
    }
}

struct Board;

impl Platform for Board {
    fn now_ms(&self) -> u64 {
        0
    }
    async fn wait(&mut self, _deadline_ms: u64) -> Option<Event> {
        Some(Event::Stop)
    }
    fn show(&mut self, _device: &Device, _session: &SessionState, _now_ms: u64) {}
}

#[test]
fn whole_device_state_fits_in_16_kib() {
    let mut device = Device::new(
        DeviceSetup {
            boot: 1,
            firmware: FirmwareVersion {
                major: 0,
                minor: 1,
                patch: 0,
            },
            config: DeviceConfig::default(),
            activity: Some(Default::default()),
        },
        0,
    );
    let mut state = SessionState::new(Backoff::default(), 60, 0, 0);
    let config = SessionConfig {
        device_id: DeviceId::new("sim-h00001-pendant").unwrap(),
        password: b"secret",
        keep_alive_s: 60,
    };
    let (mut net, mut board) = (Net, Board);
    let mut boot_counter = MemoryBootCounter::new(1);
    let device_size = size_of::<Device>();
    let session_size = size_of::<SessionState>();
    let future = session::run(
        &mut device,
        &mut state,
        &config,
        &mut net,
        &mut board,
        &mut boot_counter,
    );
    let future_size = size_of_val(&future);
    drop(future);
    let client_size = size_of::<MqttClient<'static, Socket>>();
    // The boot counter is the platform's (a flash cell), not RAM the session adds.
    let total = device_size + session_size + future_size;
    println!(
        "device core {device_size} B (outbox included), session state {session_size} B, \
         session future {future_size} B (MQTT client {client_size} B + {} B rx buffer + topics, payloads), \
         total {total} B of {BUDGET} B",
        session::MQTT_RX_BUFFER_LEN
    );
    assert!(future_size >= client_size + session::MQTT_RX_BUFFER_LEN);
    assert!(total <= BUDGET, "{total} B exceeds the {BUDGET} B budget");
}
