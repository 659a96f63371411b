//! TMP102 register map and bit fields (TI datasheet SBOS397, section 7.5).

/// Register pointer values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Register {
    /// Last conversion, 12-bit (13-bit in extended mode) left-justified two's complement.
    Temperature = 0x00,
    /// Configuration, 16 bits, MSB first.
    Config = 0x01,
    /// Alert low limit.
    TLow = 0x02,
    /// Alert high limit.
    THigh = 0x03,
}

impl Register {
    pub const fn addr(self) -> u8 {
        self as u8
    }
}

/// Configuration register bits (as one big-endian 16-bit word).
pub mod config {
    /// One-shot: in shutdown mode, writing 1 starts a single conversion.
    pub const OS: u16 = 1 << 15;
    /// Shutdown mode: the device sleeps between one-shot conversions (~1 µA).
    pub const SD: u16 = 1 << 8;
    /// Extended mode: 13-bit temperatures, range up to 150 °C.
    pub const EM: u16 = 1 << 4;
}

/// In the temperature register's low byte: set when the reading is 13-bit (extended mode).
pub const EXTENDED_FLAG: u8 = 0x01;

/// Hundredths of a degree per digit, times 4 (0.0625 °C = 6.25 centi = 25/4).
pub const CENTI_PER_DIGIT_X4: i32 = 25;
