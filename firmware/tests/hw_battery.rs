#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Battery curves and the low-battery monitor.

use firmware::Input;
use firmware::hw::battery::{
    BatteryGauge, BatteryMonitor, BatteryReading, alkaline_percent, lipo_percent, percent_from_curve,
};
use protocol::{AlarmKind, DeviceConfig};

#[test]
fn lipo_curve_interpolates_and_clamps() {
    assert_eq!(lipo_percent(4_250), 100);
    assert_eq!(lipo_percent(4_200), 100);
    assert_eq!(lipo_percent(4_110), 90);
    assert_eq!(lipo_percent(3_840), 50);
    assert_eq!(lipo_percent(3_710), 15);
    assert_eq!(lipo_percent(3_300), 0);
    assert_eq!(lipo_percent(0), 0);
    let mut last = 0;
    for mv in (3_000..4_400).step_by(5) {
        let p = lipo_percent(mv);
        assert!(p >= last, "monotonic at {mv}");
        last = p;
    }
}

#[test]
fn alkaline_curve_per_cell() {
    assert_eq!(alkaline_percent(3_100, 2), 100);
    assert_eq!(alkaline_percent(2_560, 2), 50);
    assert_eq!(alkaline_percent(1_990, 2), 0);
    assert_eq!(alkaline_percent(1_280, 0), 50, "0 cells taken as 1");
    assert_eq!(percent_from_curve(&[], 3_000), 0);
}

fn low_alarms(ev: &[Input]) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Input::Alarm(AlarmKind::LowBattery { .. })))
        .count()
}

fn reading(percent: u8) -> BatteryReading {
    BatteryReading {
        millivolts: 3_300 + u16::from(percent) * 9,
        percent,
    }
}

#[test]
fn every_reading_is_reported_and_low_fires_once_per_crossing() {
    let mut m = BatteryMonitor::from_device_config(&DeviceConfig::default()); // 20 %
    let mut all = Vec::new();
    for p in [40u8, 25, 21, 19, 18, 21, 19, 22, 24, 25, 22, 19, 10] {
        all.extend(m.update(reading(p)));
    }
    let battery = all.iter().filter(|e| matches!(e, Input::Battery { .. })).count();
    assert_eq!(battery, 13);
    // Fires at 19; wobbling 18..24 does not re-fire; 25 (threshold + 5) re-arms; 19 fires again.
    assert_eq!(low_alarms(&all), 2);
    assert!(m.is_low());
}

#[test]
fn alarm_carries_the_reading_after_the_battery_report() {
    let mut m = BatteryMonitor::new(20);
    let ev: Vec<Input> = m
        .update(BatteryReading {
            millivolts: 3_650,
            percent: 8,
        })
        .into_iter()
        .collect();
    assert_eq!(
        ev,
        vec![
            Input::Battery {
                millivolts: 3_650,
                percent: 8
            },
            Input::Alarm(AlarmKind::LowBattery {
                millivolts: 3_650,
                percent: 8
            }),
        ]
    );
}

#[test]
fn custom_hysteresis_and_new_threshold() {
    let mut m = BatteryMonitor::new(20).with_hysteresis(0);
    assert_eq!(low_alarms(&m.update(reading(19))), 1);
    assert_eq!(low_alarms(&m.update(reading(20))), 0);
    assert_eq!(low_alarms(&m.update(reading(19))), 1);
    m.apply_device_config(&DeviceConfig {
        low_battery_percent: 10,
        ..DeviceConfig::default()
    });
    assert_eq!(low_alarms(&m.update(reading(15))), 0);
}

/// A gauge on an ADC: volts through the LiPo curve; fails once.
struct FakeAdc {
    mv: u16,
    fail: bool,
}

impl BatteryGauge for FakeAdc {
    type Error = &'static str;
    fn read(&mut self) -> Result<BatteryReading, Self::Error> {
        if std::mem::take(&mut self.fail) {
            return Err("adc timeout");
        }
        Ok(BatteryReading {
            millivolts: self.mv,
            percent: lipo_percent(self.mv),
        })
    }
}

#[test]
fn poll_reads_the_gauge_and_passes_errors() {
    let mut adc = FakeAdc { mv: 3_700, fail: true };
    let mut m = BatteryMonitor::new(20);
    assert_eq!(m.poll(&mut adc), Err("adc timeout"));
    let ev = m.poll(&mut adc).unwrap();
    assert_eq!(
        ev[0],
        Input::Battery {
            millivolts: 3_700,
            percent: 12
        }
    );
    assert_eq!(low_alarms(&ev), 1);
}
