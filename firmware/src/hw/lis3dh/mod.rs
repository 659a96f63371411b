//! ST LIS3DH 3-axis accelerometer over I2C: [`Lis3dh`] on blocking `embedded_hal::i2c::I2c`,
//! [`Lis3dhAsync`] on `embedded_hal_async::i2c::I2c` (same API, `async`). Register values and
//! scaling are shared pure functions, so both send identical bytes.
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

/// CTRL_REG1 for `config`: ODR, LPen for low-power mode, all three axes on.
pub const fn ctrl_reg1_value(config: Config) -> u8 {
    let lpen = if matches!(config.mode, Mode::LowPower) {
        ctrl_reg1::LPEN
    } else {
        0
    };
    (config.odr.bits() << ctrl_reg1::ODR_SHIFT) | lpen | ctrl_reg1::XYZ_EN
}

/// CTRL_REG4 for `config`: block data update always on, full scale, HR for 12-bit mode.
pub const fn ctrl_reg4_value(config: Config) -> u8 {
    let hr = if matches!(config.mode, Mode::HighResolution) {
        ctrl_reg4::HR
    } else {
        0
    };
    ctrl_reg4::BDU | (config.full_scale.bits() << ctrl_reg4::FS_SHIFT) | hr
}

/// Sub-address of the X/Y/Z burst read (OUT_X_L with auto-increment).
const BURST: u8 = Register::OutXL.addr() | AUTO_INCREMENT;

/// Splits the 6-byte burst (X, Y, Z; low byte first) into raw words.
const fn decode_raw(buf: [u8; 6]) -> [i16; 3] {
    let [xl, xh, yl, yh, zl, zh] = buf;
    [
        i16::from_le_bytes([xl, xh]),
        i16::from_le_bytes([yl, yh]),
        i16::from_le_bytes([zl, zh]),
    ]
}

/// Scales raw words for `config`.
const fn scale(raw: [i16; 3], config: Config) -> AccelMg {
    let [x, y, z] = raw;
    AccelMg {
        x: raw_to_mg(x, config.mode, config.full_scale),
        y: raw_to_mg(y, config.mode, config.full_scale),
        z: raw_to_mg(z, config.mode, config.full_scale),
    }
}

/// Converts one left-justified output word to milli-g: shift out the unused low bits
/// (arithmetic shift keeps the sign), then multiply by the sensitivity. Saturates, never
/// overflows (the largest product, 2047 × 12 at ±16 g HR, fits anyway).
pub const fn raw_to_mg(raw: i16, mode: Mode, fs: FullScale) -> i16 {
    let digits = raw >> (16 - mode.bits());
    digits.saturating_mul(mode.sensitivity_mg(fs))
}

/// LIS3DH driver on a blocking bus. Remembers the applied configuration to scale readings.
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
        self.write_register(Register::CtrlReg1, ctrl_reg1_value(config))?;
        self.write_register(Register::CtrlReg4, ctrl_reg4_value(config))?;
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
            .write_read(self.address, &[BURST], &mut buf)
            .map_err(Error::Bus)?;
        Ok(decode_raw(buf))
    }

    /// Reads the acceleration in milli-g, scaled for the configured mode and full scale.
    pub fn read_mg(&mut self) -> Result<AccelMg, Error<I2C::Error>> {
        Ok(scale(self.read_raw()?, self.config))
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

/// LIS3DH driver on an async bus (embassy and friends): the same operations as [`Lis3dh`].
#[derive(Debug)]
pub struct Lis3dhAsync<I2C> {
    i2c: I2C,
    address: u8,
    config: Config,
}

impl<I2C: embedded_hal_async::i2c::I2c> Lis3dhAsync<I2C> {
    pub fn new(i2c: I2C, address: SlaveAddr) -> Self {
        Self {
            i2c,
            address: address.addr(),
            config: Config::default(),
        }
    }

    /// See [`Lis3dh::init`].
    pub async fn init(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        let found = self.who_am_i().await?;
        if found != DEVICE_ID {
            return Err(Error::WrongDevice { found });
        }
        self.configure(config).await
    }

    /// See [`Lis3dh::configure`].
    pub async fn configure(&mut self, config: Config) -> Result<(), Error<I2C::Error>> {
        self.write_register(Register::CtrlReg1, ctrl_reg1_value(config)).await?;
        self.write_register(Register::CtrlReg4, ctrl_reg4_value(config)).await?;
        self.config = config;
        Ok(())
    }

    pub const fn config(&self) -> Config {
        self.config
    }

    pub async fn who_am_i(&mut self) -> Result<u8, Error<I2C::Error>> {
        self.read_register(Register::WhoAmI).await
    }

    pub async fn data_ready(&mut self) -> Result<bool, Error<I2C::Error>> {
        Ok(self.read_register(Register::StatusReg).await? & status_reg::ZYXDA != 0)
    }

    pub async fn read_raw(&mut self) -> Result<[i16; 3], Error<I2C::Error>> {
        let mut buf = [0u8; 6];
        self.i2c
            .write_read(self.address, &[BURST], &mut buf)
            .await
            .map_err(Error::Bus)?;
        Ok(decode_raw(buf))
    }

    pub async fn read_mg(&mut self) -> Result<AccelMg, Error<I2C::Error>> {
        Ok(scale(self.read_raw().await?, self.config))
    }

    pub fn release(self) -> I2C {
        self.i2c
    }

    async fn read_register(&mut self, reg: Register) -> Result<u8, Error<I2C::Error>> {
        let mut buf = [0u8; 1];
        self.i2c
            .write_read(self.address, &[reg.addr()], &mut buf)
            .await
            .map_err(Error::Bus)?;
        let [value] = buf;
        Ok(value)
    }

    async fn write_register(&mut self, reg: Register, value: u8) -> Result<(), Error<I2C::Error>> {
        self.i2c
            .write(self.address, &[reg.addr(), value])
            .await
            .map_err(Error::Bus)
    }
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

    #[test]
    fn default_config_register_values() {
        assert_eq!(ctrl_reg1_value(Config::default()), 0x57);
        assert_eq!(ctrl_reg4_value(Config::default()), 0xA8);
    }
}
