//! TI TMP102 temperature sensor over I2C ([`Tmp102`] blocking, [`Tmp102Async`] async), and a
//! threshold monitor for room temperature alarms.

pub mod registers;

use embedded_hal::i2c::I2c;
use protocol::{AlarmKind, DeviceConfig, SensorState};

use crate::Input;
use registers::{CENTI_PER_DIGIT_X4, EXTENDED_FLAG, Register, config};

/// I2C address, chosen by where the ADD0 pin is tied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlaveAddr {
    /// ADD0 to ground: 0x48.
    #[default]
    Gnd,
    /// ADD0 to V+: 0x49.
    Vplus,
    /// ADD0 to SDA: 0x4A.
    Sda,
    /// ADD0 to SCL: 0x4B.
    Scl,
}

impl SlaveAddr {
    pub const fn addr(self) -> u8 {
        match self {
            SlaveAddr::Gnd => 0x48,
            SlaveAddr::Vplus => 0x49,
            SlaveAddr::Sda => 0x4A,
            SlaveAddr::Scl => 0x4B,
        }
    }
}

/// Driver errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The I2C transfer failed.
    #[error("I2C bus error")]
    Bus(E),
}

/// TMP102 driver. Stateless apart from the bus and address.
#[derive(Debug)]
pub struct Tmp102<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Tmp102<I2C> {
    pub fn new(i2c: I2C, address: SlaveAddr) -> Self {
        Self {
            i2c,
            address: address.addr(),
        }
    }

    /// The last conversion in hundredths of a degree Celsius (rounded towards zero).
    pub fn read_centi_celsius(&mut self) -> Result<i16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[Register::Temperature.addr()], &mut buf)
            .map_err(Error::Bus)?;
        Ok(raw_to_centi_celsius(buf))
    }

    /// Reads the 16-bit configuration register.
    pub fn read_config(&mut self) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[Register::Config.addr()], &mut buf)
            .map_err(Error::Bus)?;
        Ok(u16::from_be_bytes(buf))
    }

    /// Writes the 16-bit configuration register.
    pub fn write_config(&mut self, value: u16) -> Result<(), Error<I2C::Error>> {
        let [hi, lo] = value.to_be_bytes();
        self.i2c
            .write(self.address, &[Register::Config.addr(), hi, lo])
            .map_err(Error::Bus)
    }

    /// Enters or leaves shutdown mode (read-modify-write). A battery-powered unit sleeps the
    /// sensor and takes [`Tmp102::one_shot`] readings: room temperature changes slowly.
    pub fn set_shutdown(&mut self, shutdown: bool) -> Result<(), Error<I2C::Error>> {
        let c = self.read_config()?;
        let c = if shutdown { c | config::SD } else { c & !config::SD };
        self.write_config(c)
    }

    /// Starts one conversion while in shutdown mode (ready after ~26 ms).
    pub fn one_shot(&mut self) -> Result<(), Error<I2C::Error>> {
        let c = self.read_config()?;
        self.write_config(c | config::OS)
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

/// TMP102 driver on an async bus: the same operations as [`Tmp102`].
#[derive(Debug)]
pub struct Tmp102Async<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: embedded_hal_async::i2c::I2c> Tmp102Async<I2C> {
    pub fn new(i2c: I2C, address: SlaveAddr) -> Self {
        Self {
            i2c,
            address: address.addr(),
        }
    }

    /// See [`Tmp102::read_centi_celsius`].
    pub async fn read_centi_celsius(&mut self) -> Result<i16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[Register::Temperature.addr()], &mut buf)
            .await
            .map_err(Error::Bus)?;
        Ok(raw_to_centi_celsius(buf))
    }

    pub async fn read_config(&mut self) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[Register::Config.addr()], &mut buf)
            .await
            .map_err(Error::Bus)?;
        Ok(u16::from_be_bytes(buf))
    }

    pub async fn write_config(&mut self, value: u16) -> Result<(), Error<I2C::Error>> {
        let [hi, lo] = value.to_be_bytes();
        self.i2c
            .write(self.address, &[Register::Config.addr(), hi, lo])
            .await
            .map_err(Error::Bus)
    }

    /// See [`Tmp102::set_shutdown`].
    pub async fn set_shutdown(&mut self, shutdown: bool) -> Result<(), Error<I2C::Error>> {
        let c = self.read_config().await?;
        let c = if shutdown { c | config::SD } else { c & !config::SD };
        self.write_config(c).await
    }

    /// See [`Tmp102::one_shot`].
    pub async fn one_shot(&mut self) -> Result<(), Error<I2C::Error>> {
        let c = self.read_config().await?;
        self.write_config(c | config::OS).await
    }

    pub fn release(self) -> I2C {
        self.i2c
    }
}

/// Converts the temperature register (MSB first) to hundredths of a degree. The reading is
/// left-justified two's complement: 12 bits, or 13 when the extended-mode flag (bit 0) is set;
/// an arithmetic shift keeps the sign. 0.0625 °C per digit; the result fits i16 (±256 °C max).
pub const fn raw_to_centi_celsius(bytes: [u8; 2]) -> i16 {
    let [_, lsb] = bytes;
    let word = i16::from_be_bytes(bytes);
    let digits = if lsb & EXTENDED_FLAG != 0 { word >> 3 } else { word >> 4 };
    // |digits| ≤ 4096, times 25 / 4 ≤ 25 600: no overflow in i32 or i16.
    ((digits as i32 * CENTI_PER_DIGIT_X4) / 4) as i16
}

/// Where the temperature is relative to the alarm band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Band {
    Normal,
    High,
    Low,
}

/// Events from one reading: at most an alarm and a report.
pub type TemperatureEvents = heapless::Vec<Input, 2>;

/// Room temperature monitor: alarms once per excursion outside `[low, high]`, re-armed only when
/// the temperature is back inside the band by `hysteresis_centi` (so a reading hovering at the
/// threshold does not alarm every minute), and reports the temperature whenever it moved by at
/// least `report_step_centi` since the last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemperatureMonitor {
    /// The input number reports carry (`Input::Sensor { input, .. }`).
    input: u8,
    high_centi: i16,
    low_centi: i16,
    hysteresis_centi: i16,
    report_step_centi: i16,
    band: Band,
    last_reported: Option<i16>,
}

impl TemperatureMonitor {
    /// Default hysteresis: 0.5 °C.
    pub const DEFAULT_HYSTERESIS_CENTI: i16 = 50;
    /// Default reporting step: 0.5 °C.
    pub const DEFAULT_REPORT_STEP_CENTI: i16 = 50;

    /// A monitor with the band of `config` and the default hysteresis and step.
    pub fn new(input: u8, config: &DeviceConfig) -> Self {
        Self {
            input,
            high_centi: config.temperature_high_centi,
            low_centi: config.temperature_low_centi,
            hysteresis_centi: Self::DEFAULT_HYSTERESIS_CENTI,
            report_step_centi: Self::DEFAULT_REPORT_STEP_CENTI,
            band: Band::Normal,
            last_reported: None,
        }
    }

    /// Overrides hysteresis and reporting step (hundredths of a degree, negatives taken as 0).
    pub fn with_steps(mut self, hysteresis_centi: i16, report_step_centi: i16) -> Self {
        self.hysteresis_centi = hysteresis_centi.max(0);
        self.report_step_centi = report_step_centi.max(0);
        self
    }

    /// New band from the gateway. An ongoing excursion stays latched until the reading is back
    /// inside the new band by the hysteresis.
    pub fn apply_device_config(&mut self, config: &DeviceConfig) {
        self.high_centi = config.temperature_high_centi;
        self.low_centi = config.temperature_low_centi;
    }

    /// Feeds one reading; returns the alarm (first) and/or the report it causes.
    pub fn update(&mut self, centi_celsius: i16) -> TemperatureEvents {
        let mut out = TemperatureEvents::new();
        let t = centi_celsius;
        let next = match self.band {
            _ if t > self.high_centi => Band::High,
            _ if t < self.low_centi => Band::Low,
            Band::High if t > self.high_centi.saturating_sub(self.hysteresis_centi) => Band::High,
            Band::Low if t < self.low_centi.saturating_add(self.hysteresis_centi) => Band::Low,
            _ => Band::Normal,
        };
        if next != self.band && next != Band::Normal {
            // Capacity 2, at most two pushes: cannot fail.
            let _ = out.push(Input::Alarm(AlarmKind::TemperatureExtreme { centi_celsius: t }));
        }
        self.band = next;
        let moved = match self.last_reported {
            None => true,
            Some(last) => (i32::from(t) - i32::from(last)).abs() >= i32::from(self.report_step_centi),
        };
        if moved {
            self.last_reported = Some(t);
            let _ = out.push(Input::Sensor {
                input: self.input,
                state: SensorState::Temperature { centi_celsius: t },
            });
        }
        out
    }

    /// True while an excursion is latched.
    pub fn in_alarm(&self) -> bool {
        self.band != Band::Normal
    }

    /// Reads `sensor` and feeds the reading.
    pub fn poll<I2C: I2c>(&mut self, sensor: &mut Tmp102<I2C>) -> Result<TemperatureEvents, Error<I2C::Error>> {
        Ok(self.update(sensor.read_centi_celsius()?))
    }
}
