//! The firmware as a board links it, for the flash budget only: the device core, the button
//! and fall drivers, the LIS3DH driver and the MQTT session (rust-mqtt), on a polling
//! executor, and with the `alarm-log` feature also the alarm log and the boot counter in flash
//! (`persist`, sequential-storage); without the QEMU scenario's scripted world (broker, trace, console),
//! which is test equipment and not firmware. It is built, never run.
//!
//! The board's peripherals are reduced to one register access each (LM3S6965 addresses):
//! the transport to UART0's data register (a cellular modem in transparent mode would sit
//! there), the accelerometer's bus to I2C0's data register, the button to a GPIO pin, the
//! clock to SysTick's counter; the flash to its controller's address, data and command
//! registers. Their real drivers are small next to the firmware (they are what the headroom
//! under the budget is for); everything the firmware itself contributes is here, with the
//! same optimisation settings as the QEMU image.
#![no_std]
#![no_main]

use core::convert::Infallible;

use cortex_m_rt::entry;
use embedded_hal::digital::{ErrorType as PinErrorType, InputPin};
use embedded_hal::i2c::{self, I2c, Operation};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use firmware::boot::BootCounter;
use firmware::device::{Device, DeviceSetup};
use firmware::hw::button::{ActiveLevel, Button};
use firmware::hw::fall::FallDetector;
use firmware::hw::lis3dh::{Config, Lis3dh, SlaveAddr};
#[cfg(feature = "alarm-log")]
use firmware::persist::{FlashAlarmLog, FlashBootCounter, OutboxMirror};
use firmware::session::{self, Backoff, Connector, Event, Platform, SessionConfig, SessionState};
use protocol::{DeviceConfig, DeviceId, FirmwareVersion};

/// UART0 data register.
const UART0_DR: usize = 0x4000_C000;
/// I2C0 master data register.
const I2C0_MDR: usize = 0x4002_0008;
/// GPIO port F data register, pin 1 (the evaluation board's select button).
const GPIOF_PIN1: usize = 0x4002_5000 + (0b10 << 2);
/// SysTick current value register.
const SYST_CVR: usize = 0xE000_E018;

fn read_register(address: usize) -> u32 {
    // SAFETY: a memory-mapped peripheral register of the LM3S6965, always readable.
    unsafe { core::ptr::read_volatile(address as *const u32) }
}

fn write_register(address: usize, value: u32) {
    // SAFETY: as in `read_register`; the writes go to data and command registers that act
    // only on their own peripheral.
    unsafe { core::ptr::write_volatile(address as *mut u32, value) }
}

#[derive(Debug)]
struct Uart;

impl ErrorType for Uart {
    type Error = ErrorKind;
}

impl Read for Uart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let Some(first) = buf.first_mut() else {
            return Ok(0);
        };
        *first = read_register(UART0_DR) as u8;
        Ok(1)
    }
}

impl Write for Uart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        for byte in buf {
            write_register(UART0_DR, u32::from(*byte));
        }
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

#[derive(Debug)]
struct Modem;

impl Connector for Modem {
    type Connection = Uart;
    type Error = Infallible;

    async fn connect(&mut self) -> Result<Uart, Infallible> {
        Ok(Uart)
    }
}

#[derive(Debug)]
struct I2c0;

impl i2c::ErrorType for I2c0 {
    type Error = i2c::ErrorKind;
}

impl I2c for I2c0 {
    fn transaction(&mut self, _address: u8, operations: &mut [Operation<'_>]) -> Result<(), i2c::ErrorKind> {
        for operation in operations {
            match operation {
                Operation::Read(bytes) => bytes.iter_mut().for_each(|byte| *byte = read_register(I2C0_MDR) as u8),
                Operation::Write(bytes) => bytes.iter().for_each(|byte| write_register(I2C0_MDR, u32::from(*byte))),
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SelectButton;

impl PinErrorType for SelectButton {
    type Error = Infallible;
}

impl InputPin for SelectButton {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(read_register(GPIOF_PIN1) != 0)
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(read_register(GPIOF_PIN1) == 0)
    }
}

/// The on-chip flash, for the alarm log.
#[cfg(feature = "alarm-log")]
mod flash {
    use embedded_storage_async::nor_flash::{
        ErrorType as FlashErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash,
    };

    use super::{read_register, write_register};

    /// Flash controller: address, data, and command (with its write key) registers.
    const FLASH_FMA: usize = 0x400F_D000;
    const FLASH_FMD: usize = 0x400F_D004;
    const FLASH_FMC: usize = 0x400F_D008;
    const FMC_WRITE_KEY: u32 = 0xA442_0000;
    const FMC_WRITE: u32 = 1 << 0;
    const FMC_ERASE: u32 = 1 << 1;
    /// The last 8 KiB of the 256 KiB flash hold the alarm log, the 8 KiB before the boot
    /// counter.
    pub const ALARM_LOG: core::ops::Range<u32> = 0x3_E000..0x4_0000;
    pub const BOOT_COUNTER: core::ops::Range<u32> = 0x3_C000..0x3_E000;

    /// Memory-mapped reads, word programs and page erases through the controller (1 KiB
    /// pages).
    #[derive(Debug)]
    pub struct OnChipFlash;

    impl OnChipFlash {
        fn command(address: u32, data: u32, command: u32) {
            write_register(FLASH_FMA, address);
            write_register(FLASH_FMD, data);
            write_register(FLASH_FMC, FMC_WRITE_KEY | command);
            while read_register(FLASH_FMC) & command != 0 {}
        }
    }

    impl FlashErrorType for OnChipFlash {
        type Error = NorFlashErrorKind;
    }

    impl ReadNorFlash for OnChipFlash {
        const READ_SIZE: usize = 1;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
            for (index, byte) in bytes.iter_mut().enumerate() {
                *byte = read_register(offset as usize + index) as u8;
            }
            Ok(())
        }

        fn capacity(&self) -> usize {
            256 * 1024
        }
    }

    impl NorFlash for OnChipFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 1024;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
            for page in (from..to).step_by(Self::ERASE_SIZE) {
                Self::command(page, 0, FMC_ERASE);
            }
            Ok(())
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
            let (words, []) = bytes.as_chunks::<4>() else {
                return Err(NorFlashErrorKind::NotAligned);
            };
            for (address, word) in (offset..).step_by(4).zip(words) {
                Self::command(address, u32::from_le_bytes(*word), FMC_WRITE);
            }
            Ok(())
        }
    }

    impl MultiwriteNorFlash for OnChipFlash {}
}

#[derive(Debug)]
struct Board {
    accelerometer: Lis3dh<I2c0>,
    fall: FallDetector,
    button: Button,
    pin: SelectButton,
    #[cfg(feature = "alarm-log")]
    log: FlashAlarmLog<flash::OnChipFlash>,
    #[cfg(feature = "alarm-log")]
    mirror: OutboxMirror,
}

impl Platform for Board {
    fn now_ms(&self) -> u64 {
        u64::from(read_register(SYST_CVR))
    }

    async fn wait(&mut self, _deadline_ms: u64) -> Option<Event> {
        let now = self.now_ms();
        if let Ok(a) = self.accelerometer.read_mg()
            && let Some(input) = self.fall.update(now, a.x, a.y, a.z)
        {
            return Some(Event::Input(input));
        }
        match self.button.poll(now, &mut self.pin, ActiveLevel::Low) {
            Ok(input) => input.map(Event::Input),
            Err(never) => match never {},
        }
    }

    fn show(&mut self, _device: &Device, _session: &SessionState, _now_ms: u64) {}

    #[cfg(feature = "alarm-log")]
    async fn persist(&mut self, device: &Device) {
        let _ = self.mirror.sync(&mut self.log, device).await;
    }
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "alarm-log")]
    let Ok(log) = FlashAlarmLog::new(flash::OnChipFlash, flash::ALARM_LOG) else {
        halt()
    };
    if let Ok(device_id) = DeviceId::new("size-image") {
        // Without the alarm-log feature, a RAM counter stands in for the flash one.
        #[cfg(not(feature = "alarm-log"))]
        let mut boot_counter = firmware::boot::MemoryBootCounter::new(0);
        #[cfg(feature = "alarm-log")]
        let Ok(mut boot_counter) = FlashBootCounter::new(flash::OnChipFlash, flash::BOOT_COUNTER) else {
            halt()
        };
        let boot = boot_counter.load_and_increment().unwrap_or(1);
        let mut accelerometer = Lis3dh::new(I2c0, SlaveAddr::Sa0Low);
        let _ = accelerometer.init(Config::default());
        let mut board = Board {
            accelerometer,
            fall: FallDetector::default(),
            button: Button::default(),
            pin: SelectButton,
            #[cfg(feature = "alarm-log")]
            log,
            #[cfg(feature = "alarm-log")]
            mirror: OutboxMirror::default(),
        };
        let setup = DeviceSetup {
            boot,
            firmware: FirmwareVersion {
                major: 0,
                minor: 1,
                patch: 0,
            },
            config: DeviceConfig::default(),
            activity: None,
        };
        let mut device = Device::new(setup, 0);
        #[cfg(feature = "alarm-log")]
        if let Ok((mirror, _)) = embassy_futures::block_on(OutboxMirror::restore(&mut board.log, &mut device)) {
            board.mirror = mirror;
        }
        let mut state = SessionState::new(Backoff::default(), session::DEFAULT_KEEP_ALIVE_S, u64::from(boot), 0);
        let config = SessionConfig {
            device_id,
            password: b"size-image",
            keep_alive_s: session::DEFAULT_KEEP_ALIVE_S,
        };
        let _ = embassy_futures::block_on(session::run(
            &mut device,
            &mut state,
            &config,
            &mut Modem,
            &mut board,
            &mut boot_counter,
        ));
    }
    halt()
}

fn halt() -> ! {
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    #[allow(clippy::empty_loop)]
    loop {}
}
