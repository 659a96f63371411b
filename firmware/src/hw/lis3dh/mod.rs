//! ST LIS3DH 3-axis accelerometer over I2C (blocking `embedded_hal::i2c::I2c`).
//!
//! ```ignore
//! let mut acc = Lis3dh::new(i2c, SlaveAddr::Sa0Low);
//! acc.init(Config::default())?; // 100 Hz, ±8 g, 12-bit, block data update
//! let a = acc.read_mg()?;
//! ```

pub mod registers;
pub mod types;

use embedded_hal::i2c::I2c;

use registers::{AUTO_INCREMENT, DEVICE_ID, Register, ctrl_reg1, ctrl_reg4, status_reg};
pub use types::{AccelMg, Config, Error, FullScale, Mode, Odr, SlaveAddr};

/// LIS3DH driver. Remembers the applied full scale and mode to scale readings.
#[derive(Debug)]
pub struct Lis3dh<I2C> {
    i2c: I2C,
    address: u8,
    config: Config,
}

impl<I2C: I2c> Lis3dh<I2C> {
    /// A driver for the device at `address`. Nothing is sent until [`Lis3dh::init`].
    pub fn new(i2c: I2C, address: SlaveAddr) -> Self {
        Self {
            i2c,
            address: address.addr(),
            config: Config::default(),
        }
    }

    /// Checks the device identity, then applies `config` with block data update on.
    pub fn init(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        let found = self.who_am_i()?;
        if found != DEVICE_ID {
            return Err(Error::WrongDevice { found });
        }
        self.configure(config)
    }

    /// Writes CTRL_REG1 and CTRL_REG4 for `config`. Readings are scaled by it from now on.
    pub fn configure(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        let lpen = if config.mode == Mode::LowPower {
            ctrl_reg1::LPEN
        } else {
            0
        };
        let reg1 = (config.odr.bits() << ctrl_reg1::ODR_SHIFT) | lpen | ctrl_reg1::XYZ_EN;
        let hr = if config.mode == Mode::HighResolution {
            ctrl_reg4::HR
        } else {
            0
        };
        let reg4 = ctrl_reg4::BDU | (config.full_scale.bits() << ctrl_reg4::FS_SHIFT) | hr;
        self.write_register(Register::CtrlReg1, reg1)?;
        self.write_register(Register::CtrlReg4, reg4)?;
        self.config = config;
        Ok(())
    }

    /// The configuration readings are scaled with.
    pub const fn config(&self) -> Config {
        self.config
    }

    /// Reads WHO_AM_I (0x33 on a LIS3DH).
    pub fn who_am_i(&mut self) -> Result<u8, Error<I2C::Error>> {
        self.read_register(Register::WhoAmI)
    }

    /// True when a new X/Y/Z sample is ready (STATUS_REG ZYXDA).
    pub fn data_ready(&mut self) -> Result<bool, Error<I2C::Error>> {
        Ok(self.read_register(Register::StatusReg)? & status_reg::ZYXDA != 0)
    }

    /// Reads the raw left-justified 16-bit output of the three axes in one burst.
    pub fn read_raw(&mut self) -> Result<[i16; 3], Error<I2C::Error>> {
        let mut buf = [0u8; 6];
        self.i2c
            .write_read(self.address, &[Register::OutXL.addr() | AUTO_INCREMENT], &mut buf)
            .map_err(Error::Bus)?;
        let [xl, xh, yl, yh, zl, zh] = buf;
        Ok([
            i16::from_le_bytes([xl, xh]),
            i16::from_le_bytes([yl, yh]),
            i16::from_le_bytes([zl, zh]),
        ])
    }

    /// Reads the acceleration in milli-g, scaled for the configured mode and full scale.
    pub fn read_mg(&mut self) -> Result<AccelMg, Error<I2C::Error>> {
        let [x, y, z] = self.read_raw()?;
        let c = self.config;
        Ok(AccelMg {
            x: raw_to_mg(x, c.mode, c.full_scale),
            y: raw_to_mg(y, c.mode, c.full_scale),
            z: raw_to_mg(z, c.mode, c.full_scale),
        })
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }

    fn read_register(&mut self, reg: Register) -> Result<u8, Error<I2C::Error>> {
        let mut buf = [0u8; 1];
        self.i2c
            .write_read(self.address, &[reg.addr()], &mut buf)
            .map_err(Error::Bus)?;
        let [value] = buf;
        Ok(value)
    }

    fn write_register(&mut self, reg: Register, value: u8) -> Result<(), Error<I2C::Error>> {
        self.i2c.write(self.address, &[reg.addr(), value]).map_err(Error::Bus)
    }
}

/// Converts one left-justified output word to milli-g: shift out the unused low bits
/// (arithmetic shift keeps the sign), then multiply by the sensitivity. Saturates, never
/// overflows (the largest product, 2047 × 12 at ±16 g HR, fits anyway).
pub const fn raw_to_mg(raw: i16, mode: Mode, fs: FullScale) -> i16 {
    let digits = raw >> (16 - mode.bits());
    digits.saturating_mul(mode.sensitivity_mg(fs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_per_full_scale() {
        // +1 g at ±2 g HR: 1000 digits left-justified.
        assert_eq!(raw_to_mg(1000 << 4, Mode::HighResolution, FullScale::G2), 1000);
        assert_eq!(raw_to_mg(250 << 4, Mode::HighResolution, FullScale::G8), 1000);
        assert_eq!(raw_to_mg(-250 << 4, Mode::HighResolution, FullScale::G8), -1000);
        assert_eq!(raw_to_mg(i16::MAX, Mode::HighResolution, FullScale::G16), 2047 * 12);
        assert_eq!(raw_to_mg(i16::MIN, Mode::HighResolution, FullScale::G16), -2048 * 12);
        assert_eq!(raw_to_mg(64 << 8, Mode::LowPower, FullScale::G2), 1024);
        assert_eq!(raw_to_mg(125 << 6, Mode::Normal, FullScale::G4), 1000);
        // The unused low bits are ignored.
        assert_eq!(raw_to_mg((250 << 4) | 0xF, Mode::HighResolution, FullScale::G8), 1000);
    }
}
