//! The scripted hardware around the firmware's drivers: a LIS3DH on an I2C bus that plays a
//! recorded trace, a button pin pressed for a while, and the flash the alarm log lives in.

use core::convert::Infallible;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin};
use embedded_hal::i2c::{self, ErrorKind, I2c, NoAcknowledgeSource, Operation, SevenBitAddress};
use embedded_storage_async::nor_flash::{
    ErrorType as FlashErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash,
};

/// The fall the accelerometer plays: one 6-byte OUT_X_L..OUT_Z_H burst per 10 ms sample
/// (±8 g, 12-bit), made and checked by the firmware's `hw_fall` tests.
pub static FALL_TRACE: &[u8] = include_bytes!("../../../firmware/tests/data/fall_on_side.lis3dh");
/// Time between two samples of the trace (100 Hz).
pub const SAMPLE_MS: u64 = 10;

const ADDRESS: u8 = 0x18;
const WHO_AM_I: u8 = 0x0F;
const LIS3DH_ID: u8 = 0x33;
const CTRL_REG1: u8 = 0x20;
const CTRL_REG4: u8 = 0x23;
const STATUS_REG: u8 = 0x27;
/// OUT_X_L with the auto-increment bit: the driver's burst read.
const OUT_BURST: u8 = 0x28 | 0x80;
/// STATUS_REG's "new X, Y and Z data" bit.
const ZYXDA: u8 = 0x08;

/// A LIS3DH at 0x18 answering from [`FALL_TRACE`]: each burst read returns the next sample.
/// Register writes are kept so the scenario can check how the driver configured the chip.
#[derive(Debug)]
pub struct ScriptedLis3dh {
    trace: &'static [u8],
    next_sample: usize,
    pub ctrl_reg1: u8,
    pub ctrl_reg4: u8,
}

impl ScriptedLis3dh {
    pub fn new(trace: &'static [u8]) -> Self {
        Self {
            trace,
            next_sample: 0,
            ctrl_reg1: 0,
            ctrl_reg4: 0,
        }
    }

    pub fn samples(&self) -> usize {
        self.trace.len() / 6
    }

    fn read_register(&mut self, register: u8, into: &mut [u8]) -> Result<(), ErrorKind> {
        match (register, into) {
            (WHO_AM_I, [value]) => *value = LIS3DH_ID,
            (CTRL_REG1, [value]) => *value = self.ctrl_reg1,
            (CTRL_REG4, [value]) => *value = self.ctrl_reg4,
            (STATUS_REG, [value]) => *value = if self.next_sample < self.samples() { ZYXDA } else { 0 },
            (OUT_BURST, burst @ [_, _, _, _, _, _]) => {
                let start = self.next_sample.saturating_mul(6);
                // After the trace, the last sample stays in the output registers.
                let sample = self
                    .trace
                    .get(start..start + 6)
                    .or_else(|| self.trace.get(self.trace.len().saturating_sub(6)..))
                    .ok_or(ErrorKind::Other)?;
                burst.copy_from_slice(sample);
                self.next_sample = self.next_sample.saturating_add(1);
            }
            _ => return Err(ErrorKind::Other),
        }
        Ok(())
    }
}

impl i2c::ErrorType for ScriptedLis3dh {
    type Error = ErrorKind;
}

impl I2c<SevenBitAddress> for ScriptedLis3dh {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
        if address != ADDRESS {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        match operations {
            // A register write: sub-address, value.
            [Operation::Write([CTRL_REG1, value])] => self.ctrl_reg1 = *value,
            [Operation::Write([CTRL_REG4, value])] => self.ctrl_reg4 = *value,
            // A register read: sub-address, then the bytes from it.
            [Operation::Write([register]), Operation::Read(into)] => self.read_register(*register, into)?,
            _ => return Err(ErrorKind::Other),
        }
        Ok(())
    }
}

/// The pendant button's pin, wired active-low (pressed pulls it to ground), pressed during
/// `[from_ms, until_ms)` of the scenario clock, which the caller sets before each read.
#[derive(Debug)]
pub struct ScriptedButtonPin {
    pub now_ms: u64,
    from_ms: u64,
    until_ms: u64,
}

impl ScriptedButtonPin {
    pub fn new(from_ms: u64, until_ms: u64) -> Self {
        Self {
            now_ms: 0,
            from_ms,
            until_ms,
        }
    }

    fn pressed(&self) -> bool {
        (self.from_ms..self.until_ms).contains(&self.now_ms)
    }
}

impl PinErrorType for ScriptedButtonPin {
    type Error = Infallible;
}

impl InputPin for ScriptedButtonPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(!self.pressed())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(self.pressed())
    }
}

/// Bytes of flash given to the alarm log, and as much to the boot counter: two erase pages
/// each (the least they work with).
pub const ALARM_LOG_BYTES: usize = 2 * RamFlash::PAGE;

/// NOR flash for the alarm log or the boot counter, kept in RAM beside the scenario so that it
/// outlives the device across the simulated power cut (as the chip's flash would) without depending on
/// QEMU's emulation of the flash controller. NOR rules: erased bytes read 0xFF, programming
/// only clears bits, so a word may be programmed again (`MultiwriteNorFlash`).
#[derive(Debug)]
pub struct RamFlash {
    bytes: [u8; ALARM_LOG_BYTES],
}

impl RamFlash {
    /// Erase pages of 256 bytes (the LM3S6965's are 1 KiB): room for a page header and the
    /// largest record, and a small model (it lives on the stack, in the measured RAM).
    const PAGE: usize = 256;

    pub const fn erased() -> Self {
        Self {
            bytes: [0xFF; ALARM_LOG_BYTES],
        }
    }

    fn range(&mut self, offset: u32, len: usize, align: usize) -> Result<&mut [u8], NorFlashErrorKind> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        self.bytes
            .get_mut(start..start.saturating_add(len))
            .ok_or(NorFlashErrorKind::OutOfBounds)
    }
}

impl FlashErrorType for RamFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        bytes.copy_from_slice(self.range(offset, bytes.len(), 1)?);
        Ok(())
    }

    fn capacity(&self) -> usize {
        ALARM_LOG_BYTES
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = Self::PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        let len = to.checked_sub(from).ok_or(NorFlashErrorKind::OutOfBounds)? as usize;
        self.range(from, len, Self::PAGE)?.fill(0xFF);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        for (cell, new) in self.range(offset, bytes.len(), 4)?.iter_mut().zip(bytes) {
            *cell &= new;
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for RamFlash {}
