//! The scripted hardware around the firmware's drivers: a LIS3DH on an I2C bus that plays a
//! recorded trace, and a button pin pressed for a while.

use core::convert::Infallible;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin};
use embedded_hal::i2c::{self, ErrorKind, I2c, NoAcknowledgeSource, Operation, SevenBitAddress};

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
