//! LIS3DH configuration values, readings and errors.

/// I2C address, chosen by the SA0 pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlaveAddr {
    /// SA0 tied to ground: 0x18.
    #[default]
    Sa0Low,
    /// SA0 tied to supply: 0x19.
    Sa0High,
}

impl SlaveAddr {
    /// The 7-bit bus address.
    pub const fn addr(self) -> u8 {
        match self {
            SlaveAddr::Sa0Low => 0x18,
            SlaveAddr::Sa0High => 0x19,
        }
    }
}

/// Output data rate (CTRL_REG1 ODR field). Rates above 400 Hz are not offered: fall detection
/// needs ~100 Hz and every doubling costs battery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Odr {
    PowerDown,
    Hz1,
    Hz10,
    Hz25,
    Hz50,
    #[default]
    Hz100,
    Hz200,
    Hz400,
}

impl Odr {
    /// The `ODR[3:0]` field value.
    pub const fn bits(self) -> u8 {
        match self {
            Odr::PowerDown => 0,
            Odr::Hz1 => 1,
            Odr::Hz10 => 2,
            Odr::Hz25 => 3,
            Odr::Hz50 => 4,
            Odr::Hz100 => 5,
            Odr::Hz200 => 6,
            Odr::Hz400 => 7,
        }
    }
}

/// Full-scale range (CTRL_REG4 FS field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullScale {
    G2,
    G4,
    /// ±8 g: a fall impact (3-6 g at the chest) fits without clipping.
    #[default]
    G8,
    G16,
}

impl FullScale {
    /// The `FS[1:0]` field value.
    pub const fn bits(self) -> u8 {
        match self {
            FullScale::G2 => 0,
            FullScale::G4 => 1,
            FullScale::G8 => 2,
            FullScale::G16 => 3,
        }
    }
}

/// Resolution mode, set by CTRL_REG1 LPen and CTRL_REG4 HR together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// 8-bit output, lowest current.
    LowPower,
    /// 10-bit output.
    Normal,
    /// 12-bit output.
    #[default]
    HighResolution,
}

impl Mode {
    /// Significant bits in the left-justified 16-bit output.
    pub const fn bits(self) -> u8 {
        match self {
            Mode::LowPower => 8,
            Mode::Normal => 10,
            Mode::HighResolution => 12,
        }
    }

    /// Milli-g per digit (datasheet table 4, "So").
    pub const fn sensitivity_mg(self, fs: FullScale) -> i16 {
        let hr = match fs {
            FullScale::G2 => 1,
            FullScale::G4 => 2,
            FullScale::G8 => 4,
            FullScale::G16 => 12,
        };
        match self {
            Mode::HighResolution => hr,
            Mode::Normal => hr * 4,
            Mode::LowPower => hr * 16,
        }
    }
}

/// Settings applied by `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    pub odr: Odr,
    pub full_scale: FullScale,
    pub mode: Mode,
}

/// Acceleration per axis in milli-g (1000 = one standard gravity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccelMg {
    pub x: i16,
    pub y: i16,
    pub z: i16,
}

/// Driver errors. The bus error is kept as is (it need not implement `Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The I2C transfer failed.
    #[error("I2C bus error")]
    Bus(E),
    /// WHO_AM_I did not read 0x33: wrong address, wrong part, or a broken bus.
    #[error("unexpected WHO_AM_I {found:#04x}, expected 0x33")]
    WrongDevice { found: u8 },
}
