//! The pendant firmware as built from this crate: [`tec_board_nrf52840::run`] with
//! [`NotIntegrated`] as the modem, so it never connects. This is the integration point: a
//! board integrator replaces `NotIntegrated` with a driver for the fitted module, built from
//! the [`tec_board_nrf52840::ModemParts`] `split` sets aside for it.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use tec_board_nrf52840::modem::NotIntegrated;

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let (pendant, _modem_parts) = tec_board_nrf52840::split(embassy_nrf::init(Default::default()));
    tec_board_nrf52840::run(pendant, NotIntegrated).await
}
