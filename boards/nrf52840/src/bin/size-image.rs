//! Build-only: the pendant firmware with a link that can open, for the flash and RAM figures
//! (scripts/firmware-size). Never flashed.
//!
//! The shipped binary's modem ([`tec_board_nrf52840::modem::NotIntegrated`]) never opens a
//! socket, so the optimiser drops the part of the MQTT session that runs on a connection and
//! its size would flatter the firmware. Here the modem's UART itself is the byte stream to the
//! broker (the shape of a serial-to-TCP module in transparent mode, whose own configuration is
//! not modelled), so everything a real modem driver would reach is linked; what an
//! integrator's AT-command driver adds comes on top.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_nrf::buffered_uarte::{self, BufferedUarte};
use embassy_nrf::{bind_interrupts, peripherals, uarte};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::mutex::Mutex;
use embedded_io_async::{ErrorType, Read, Write};
use tec_board_nrf52840::modem::{BrokerAddress, Modem};

bind_interrupts!(struct Irqs {
    UARTE0 => buffered_uarte::InterruptHandler<peripherals::UARTE0>;
});

/// The UART as the broker link: every open hands out the same stream.
struct UartModem<'m, 'd> {
    uart: &'m Mutex<NoopRawMutex, BufferedUarte<'d>>,
}

/// One connection's view of the UART.
struct UartLink<'m, 'd> {
    uart: &'m Mutex<NoopRawMutex, BufferedUarte<'d>>,
}

impl<'m, 'd> Modem for UartModem<'m, 'd> {
    type Socket = UartLink<'m, 'd>;
    type Error = buffered_uarte::Error;

    async fn open(&mut self, _broker: BrokerAddress) -> Result<Self::Socket, Self::Error> {
        Ok(UartLink { uart: self.uart })
    }
}

impl ErrorType for UartLink<'_, '_> {
    type Error = buffered_uarte::Error;
}

impl Read for UartLink<'_, '_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.uart.lock().await.read(buf).await
    }
}

impl Write for UartLink<'_, '_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.uart.lock().await.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.uart.lock().await.flush().await
    }
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let (pendant, m) = tec_board_nrf52840::split(embassy_nrf::init(Default::default()));
    // An MQTT packet's worth each way.
    let mut rx_buffer = [0u8; 512];
    let mut tx_buffer = [0u8; 512];
    let uart = Mutex::new(BufferedUarte::new(
        m.uarte,
        m.timer,
        m.ppi_ch1,
        m.ppi_ch2,
        m.ppi_group,
        m.rxd,
        m.txd,
        Irqs,
        uarte::Config::default(),
        &mut rx_buffer,
        &mut tx_buffer,
    ));
    tec_board_nrf52840::run(pendant, UartModem { uart: &uart }).await
}
