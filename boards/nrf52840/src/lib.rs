//! The TEC pendant firmware on a Nordic nRF52840 (Cortex-M4F), on embassy: the real device
//! core ([`firmware::device::Device`]) and MQTT session ([`firmware::session::run`]) with
//!
//! * the button on a GPIO input (pull-up, pressed = low) through the firmware's debouncer,
//! * a LIS3DH on TWIM0 (I2C, 400 kHz) through the firmware's driver (embedded-hal-async 1.0)
//!   and fall detector, both sampled at 100 Hz ([`pendant`]),
//! * the LED and the buzzer on GPIO outputs (active high) following the core's indication,
//! * the alarm log and the boot counter in the chip's own flash through the NVMC
//!   ([`firmware::persist`]; where: `memory.x`),
//! * the network behind [`modem::Modem`], which the board integrator supplies.
//!
//! [`run`] is the whole firmware for any [`modem::Modem`]; [`split`] hands the peripherals a
//! modem driver needs ([`ModemParts`]) to the integrator. The `tec-board-nrf52840` binary runs
//! it with [`modem::NotIntegrated`] (it never connects: the integration point); the
//! build-only `size-image` binary with the UART as the link, to measure the firmware's size
//! with a session that can connect.
//!
//! Pin map (the pendant PCB's, not a development kit's): button P0.11, LED P0.13, buzzer
//! P0.14, LIS3DH SDA P0.26 / SCL P0.27 with SA0 to ground. P0.06/P0.08 are left for the
//! modem's UART.
//!
//! Start-up order matters for the contracts: the boot counter is incremented in flash before
//! the device core exists (no `(boot, seq)` is ever reused), and the unreceipted alarms of
//! the previous boot are restored from flash into the outbox before the first event.
#![no_std]

pub mod modem;
mod pendant;

use core::cell::RefCell;

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_nrf::gpio::{Input, Level, Output, OutputDrive, Pull};
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::{Peri, Peripherals, bind_interrupts, peripherals, twim};
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use firmware::boot::BootCounter;
use firmware::device::{Device, DeviceSetup};
use firmware::hw::feedback::Feedback;
use firmware::hw::lis3dh::{Config as Lis3dhConfig, Lis3dhAsync, SlaveAddr};
use firmware::persist::{FlashAlarmLog, FlashBootCounter, OutboxMirror};
use firmware::session::{self, Backoff, Platform, SessionConfig, SessionState};
use protocol::{DeviceConfig, DeviceId, FirmwareVersion};

use crate::modem::{BrokerAddress, Modem, ModemConnector};
use crate::pendant::Pendant;

/// Provisioning: the device's identity and broker credentials, written per device at
/// manufacture (an integrator reads them from UICR or a provisioning page instead).
const DEVICE_ID: &str = "nrf52840-unprovisioned";
const PASSWORD: &[u8] = b"";
const BROKER: BrokerAddress = BrokerAddress {
    host: "broker.invalid",
    port: 8883,
};
const FIRMWARE: FirmwareVersion = FirmwareVersion {
    major: 0,
    minor: 1,
    patch: 0,
};

/// The flash above the image (memory.x): 6 erase pages of alarm log, then 2 of boot counter.
const STORAGE_START: u32 = 0x000F_8000;
const ALARM_LOG_BYTES: u32 = 6 * 4096;
const BOOT_COUNTER_BYTES: u32 = 2 * 4096;
const _: () = assert!(STORAGE_START + ALARM_LOG_BYTES + BOOT_COUNTER_BYTES == 1024 * 1024);

bind_interrupts!(struct Irqs {
    TWISPI0 => twim::InterruptHandler<peripherals::TWISPI0>;
});

/// The peripherals the pendant itself uses ([`run`]).
#[derive(Debug)]
pub struct PendantParts {
    nvmc: Peri<'static, peripherals::NVMC>,
    rng: Peri<'static, peripherals::RNG>,
    button: Peri<'static, peripherals::P0_11>,
    led: Peri<'static, peripherals::P0_13>,
    buzzer: Peri<'static, peripherals::P0_14>,
    twim: Peri<'static, peripherals::TWISPI0>,
    sda: Peri<'static, peripherals::P0_26>,
    scl: Peri<'static, peripherals::P0_27>,
}

/// The peripherals left for the modem driver: a UARTE with what `BufferedUarte` needs (a
/// timer, two PPI channels and a PPI group) and its pins (RXD P0.08, TXD P0.06). Everything
/// else in [`Peripherals`] the pendant does not use either.
#[derive(Debug)]
pub struct ModemParts {
    pub uarte: Peri<'static, peripherals::UARTE0>,
    pub timer: Peri<'static, peripherals::TIMER1>,
    pub ppi_ch1: Peri<'static, peripherals::PPI_CH0>,
    pub ppi_ch2: Peri<'static, peripherals::PPI_CH1>,
    pub ppi_group: Peri<'static, peripherals::PPI_GROUP0>,
    pub rxd: Peri<'static, peripherals::P0_08>,
    pub txd: Peri<'static, peripherals::P0_06>,
}

/// Divides the chip's peripherals between the pendant and the modem.
pub fn split(p: Peripherals) -> (PendantParts, ModemParts) {
    (
        PendantParts {
            nvmc: p.NVMC,
            rng: p.RNG,
            button: p.P0_11,
            led: p.P0_13,
            buzzer: p.P0_14,
            twim: p.TWISPI0,
            sda: p.P0_26,
            scl: p.P0_27,
        },
        ModemParts {
            uarte: p.UARTE0,
            timer: p.TIMER1,
            ppi_ch1: p.PPI_CH0,
            ppi_ch2: p.PPI_CH1,
            ppi_group: p.PPI_GROUP0,
            rxd: p.P0_08,
            txd: p.P0_06,
        },
    )
}

/// The pendant firmware with `modem` as its network. Never returns: on the end of the session
/// the chip restarts, on a fault a restart cannot fix it stops ([`park`]).
pub async fn run<M: Modem>(p: PendantParts, modem: M) -> ! {
    // One NVMC, two partitions: the log and the counter cannot write into each other.
    let flash = Mutex::<NoopRawMutex, _>::new(RefCell::new(Nvmc::new(p.nvmc)));
    let log_flash = BlockingAsync::new(BlockingPartition::new(&flash, STORAGE_START, ALARM_LOG_BYTES));
    let boot_flash = BlockingAsync::new(BlockingPartition::new(
        &flash,
        STORAGE_START + ALARM_LOG_BYTES,
        BOOT_COUNTER_BYTES,
    ));
    // The ranges are constants that fit their partitions: a refusal is a build mistake.
    let Ok(mut log) = FlashAlarmLog::new(log_flash, 0..ALARM_LOG_BYTES) else {
        park()
    };
    let Ok(mut boot_counter) = FlashBootCounter::new(boot_flash, 0..BOOT_COUNTER_BYTES) else {
        park()
    };
    // Never run with a boot number that is not durable: the gateway would drop new events
    // as duplicates of old ones.
    let Ok(boot) = boot_counter.load_and_increment() else {
        park()
    };
    let Ok(device_id) = DeviceId::new(DEVICE_ID) else {
        park()
    };

    let button_pin = Input::new(p.button, Pull::Up);
    let feedback = Feedback::new(
        Output::new(p.led, Level::Low, OutputDrive::Standard),
        Output::new(p.buzzer, Level::Low, OutputDrive::Standard),
    );
    let mut twim_config = twim::Config::default();
    twim_config.frequency = twim::Frequency::K400;
    // EasyDMA reads only RAM: register addresses the driver writes from flash are copied here.
    let mut twim_tx = [0u8; 8];
    let twim = twim::Twim::new(p.twim, Irqs, p.sda, p.scl, twim_config, &mut twim_tx);
    let mut lis3dh = Lis3dhAsync::new(twim, SlaveAddr::Sa0Low);
    // The driver's defaults are what the fall detector expects: 100 Hz, ±8 g (impacts
    // reach several g), high resolution.
    let accelerometer = lis3dh.init(Lis3dhConfig::default()).await.ok().map(|()| lis3dh);

    let mut device = Device::new(
        DeviceSetup {
            boot,
            firmware: FIRMWARE,
            config: DeviceConfig::default(),
            activity: None,
        },
        embassy_time::Instant::now().as_millis(),
    );
    // Unreceipted alarms of the previous boot go out again (same keys: the gateway
    // deduplicates). An unreadable log leaves the device running with what it has.
    let mirror = match OutboxMirror::restore(&mut log, &mut device).await {
        Ok((mirror, _restored)) => mirror,
        Err(_) => OutboxMirror::default(),
    };
    let mut pendant = Pendant::new(button_pin, accelerometer, feedback, log, mirror);

    // The reconnect jitter's seed from the chip's true random generator: pendants that lose
    // the broker together (an outage) must not all come back at the same instants.
    let jitter_seed = embassy_nrf::rng::Rng::new_blocking(p.rng).blocking_next_u64();
    let config = SessionConfig {
        device_id,
        password: PASSWORD,
        keep_alive_s: session::DEFAULT_KEEP_ALIVE_S,
    };
    let mut state = SessionState::new(
        Backoff::default(),
        session::DEFAULT_KEEP_ALIVE_S,
        jitter_seed,
        pendant.now_ms(),
    );
    let mut connector = ModemConnector::new(modem, BROKER);
    let ended = session::run(
        &mut device,
        &mut state,
        &config,
        &mut connector,
        &mut pendant,
        &mut boot_counter,
    )
    .await;
    match ended {
        // Only on `Event::Stop`, which this pendant never raises (it has no off switch).
        Ok(()) => restart(),
        // The provisioned identity or password is not valid MQTT: a restart cannot fix it.
        Err(_) => park(),
    }
}

/// Stops for good, for faults a restart cannot fix (bad provisioning, a flash that cannot hold
/// the boot counter): a reset loop would only wear the flash. The manufacturing test of a
/// pendant (first boot, then a press receipted) finds such a unit before it ships.
fn park() -> ! {
    loop {
        cortex_m::asm::wfe();
    }
}

/// Restarts the chip: start-up runs again (boot counter, alarms restored from flash).
fn restart() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // A pendant must come back: restart, and the unreceipted alarms come back from flash.
    restart()
}
