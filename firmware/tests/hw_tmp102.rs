#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! TMP102 driver against a mocked I2C bus, and the temperature threshold monitor.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as T};
use firmware::Input;
use firmware::hw::tmp102::{Error, SlaveAddr, TemperatureMonitor, Tmp102, raw_to_centi_celsius};
use protocol::{AlarmKind, DeviceConfig, SensorState};

const ADDR: u8 = 0x48;

/// The datasheet's 12-bit examples (table 7-1): digital output → °C × 100 (rounded to zero).
const DATASHEET: [(u16, i16); 12] = [
    (0x7FF, 12793),
    (0x640, 10000),
    (0x500, 8000),
    (0x4B0, 7500),
    (0x320, 5000),
    (0x190, 2500),
    (0x004, 25),
    (0x001, 6),
    (0x000, 0),
    (0xFFF, -6),
    (0xE70, -2500),
    (0xC90, -5500),
];

#[test]
fn datasheet_values_convert() {
    for (digits, centi) in DATASHEET {
        let word = digits << 4;
        assert_eq!(raw_to_centi_celsius(word.to_be_bytes()), centi, "{digits:#05x}");
    }
}

#[test]
fn extended_mode_13_bit_values_convert() {
    // 150 °C = 0x960 in 13-bit; bit 0 of the low byte flags extended mode.
    assert_eq!(raw_to_centi_celsius(((0x0960u16 << 3) | 1).to_be_bytes()), 15000);
    assert_eq!(raw_to_centi_celsius(((0x1E70u16 << 3) | 1).to_be_bytes()), -2500);
}

#[test]
fn reads_over_i2c_including_negative() {
    let reads = [(0x190u16, 2500i16), (0xE70, -2500), (0xFFF, -6), (0xF38, -1250)];
    let expectations: Vec<T> = reads
        .iter()
        .map(|(d, _)| T::write_read(ADDR, vec![0x00], (d << 4).to_be_bytes().to_vec()))
        .collect();
    let mut i2c = I2cMock::new(&expectations);
    let mut t = Tmp102::new(i2c.clone(), SlaveAddr::Gnd);
    for (_, centi) in reads {
        assert_eq!(t.read_centi_celsius().unwrap(), centi);
    }
    i2c.done();
}

#[test]
fn addresses_follow_add0() {
    assert_eq!(SlaveAddr::Gnd.addr(), 0x48);
    assert_eq!(SlaveAddr::Vplus.addr(), 0x49);
    assert_eq!(SlaveAddr::Sda.addr(), 0x4A);
    assert_eq!(SlaveAddr::Scl.addr(), 0x4B);
}

#[test]
fn shutdown_and_one_shot_read_modify_write_config() {
    let mut i2c = I2cMock::new(&[
        T::write_read(0x4B, vec![0x01], vec![0x60, 0xA0]),
        T::write(0x4B, vec![0x01, 0x61, 0xA0]),
        T::write_read(0x4B, vec![0x01], vec![0x61, 0xA0]),
        T::write(0x4B, vec![0x01, 0xE1, 0xA0]),
    ]);
    let mut t = Tmp102::new(i2c.clone(), SlaveAddr::Scl);
    t.set_shutdown(true).unwrap();
    t.one_shot().unwrap();
    i2c.done();
}

#[test]
fn bus_error_is_typed() {
    let mut i2c = I2cMock::new(&[T::write_read(ADDR, vec![0x00], vec![0, 0]).with_error(ErrorKind::Other)]);
    let mut t = Tmp102::new(i2c.clone(), SlaveAddr::Gnd);
    assert_eq!(t.read_centi_celsius(), Err(Error::Bus(ErrorKind::Other)));
    i2c.done();
}

fn alarms(events: &[Input]) -> Vec<i16> {
    events
        .iter()
        .filter_map(|e| match e {
            Input::Alarm(AlarmKind::TemperatureExtreme { centi_celsius }) => Some(*centi_celsius),
            _ => None,
        })
        .collect()
}

fn reports(events: &[Input]) -> Vec<i16> {
    events
        .iter()
        .filter_map(|e| match e {
            Input::Sensor {
                input: 7,
                state: SensorState::Temperature { centi_celsius },
            } => Some(*centi_celsius),
            _ => None,
        })
        .collect()
}

fn feed(m: &mut TemperatureMonitor, readings: &[i16]) -> Vec<Input> {
    readings.iter().flat_map(|&r| m.update(r)).collect()
}

#[test]
fn cold_excursion_alarms_once_with_hysteresis() {
    // Default band 10.00..35.00 °C, hysteresis 0.5 °C.
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    let ev = feed(&mut m, &[1_500, 1_100, 990, 1_005, 980, 1_040, 995, 1_060, 950]);
    // 9.90 alarms; hovering 9.80..10.40 does not re-alarm; back to 10.60 re-arms; 9.50 alarms.
    assert_eq!(alarms(&ev), vec![990, 950]);
    assert!(m.in_alarm());
}

#[test]
fn freezing_negative_temperatures_alarm_and_report() {
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    let ev = feed(&mut m, &[500, -150, -1_250, -1_220]);
    assert_eq!(alarms(&ev), vec![500]);
    assert_eq!(reports(&ev), vec![500, -150, -1_250]);
}

#[test]
fn alarm_comes_before_its_report() {
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    let ev: Vec<Input> = m.update(3_600).into_iter().collect();
    assert_eq!(
        ev,
        vec![
            Input::Alarm(AlarmKind::TemperatureExtreme { centi_celsius: 3_600 }),
            Input::Sensor {
                input: 7,
                state: SensorState::Temperature { centi_celsius: 3_600 }
            },
        ]
    );
}

#[test]
fn hot_then_straight_to_cold_alarms_both() {
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    let ev = feed(&mut m, &[3_600, 3_700, 3_480, 3_440, 3_600, 900]);
    assert_eq!(alarms(&ev), vec![3_600, 3_600, 900]);
}

#[test]
fn reports_only_when_moved_by_the_step() {
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    let ev = feed(&mut m, &[2_000, 2_010, 2_049, 2_050, 2_020, 2_001, 1_999, 2_100]);
    assert_eq!(reports(&ev), vec![2_000, 2_050, 1_999, 2_100]);
    assert!(alarms(&ev).is_empty());
}

#[test]
fn new_band_from_the_gateway() {
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    assert!(alarms(&feed(&mut m, &[3_000])).is_empty());
    m.apply_device_config(&DeviceConfig {
        temperature_high_centi: 2_800,
        ..DeviceConfig::default()
    });
    assert_eq!(alarms(&feed(&mut m, &[3_000])), vec![3_000]);
}

#[test]
fn poll_reads_the_sensor() {
    let mut i2c = I2cMock::new(&[T::write_read(ADDR, vec![0x00], (0xF38u16 << 4).to_be_bytes().to_vec())]);
    let mut t = Tmp102::new(i2c.clone(), SlaveAddr::Gnd);
    let mut m = TemperatureMonitor::new(7, &DeviceConfig::default());
    let ev = m.poll(&mut t).unwrap();
    assert_eq!(alarms(&ev), vec![-1_250]);
    i2c.done();
}

/// Polls a future that never waits (the mock answers at once) without an executor.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn async_driver_reads_and_configures() {
    use firmware::hw::tmp102::Tmp102Async;
    let mut i2c = I2cMock::new(&[
        T::write_read(0x49, vec![0x00], (0xE70u16 << 4).to_be_bytes().to_vec()),
        T::write_read(0x49, vec![0x01], vec![0x61, 0xA0]),
        T::write(0x49, vec![0x01, 0x60, 0xA0]),
        T::write_read(0x49, vec![0x00], vec![0, 0]).with_error(ErrorKind::Other),
    ]);
    let mut t = Tmp102Async::new(i2c.clone(), SlaveAddr::Vplus);
    block_on(async {
        assert_eq!(t.read_centi_celsius().await.unwrap(), -2500);
        t.set_shutdown(false).await.unwrap();
        assert_eq!(t.read_centi_celsius().await, Err(Error::Bus(ErrorKind::Other)));
    });
    i2c.done();
}
