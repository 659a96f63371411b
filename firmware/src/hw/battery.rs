//! Battery: a gauge seam, voltage-to-charge curves, and a monitor that reports every reading and
//! raises the low-battery alarm once per downward crossing.

use protocol::{AlarmKind, DeviceConfig};

use crate::Input;

/// One battery measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryReading {
    pub millivolts: u16,
    /// 0..=100.
    pub percent: u8,
}

/// Anything that can measure the battery: an ADC channel with a divider and a curve, a fuel
/// gauge IC, or a test double.
pub trait BatteryGauge {
    type Error;
    fn read(&mut self) -> Result<BatteryReading, Self::Error>;
}

/// Open-circuit-ish voltage of a single LiPo cell at light load (pendant current), mV → %.
/// Flat between 3.7 and 3.9 V, so percentages there are rough by nature.
pub const LIPO_CURVE: [(u16, u8); 11] = [
    (3_300, 0),
    (3_610, 5),
    (3_690, 10),
    (3_730, 20),
    (3_770, 30),
    (3_800, 40),
    (3_840, 50),
    (3_870, 60),
    (3_950, 70),
    (4_020, 80),
    (4_200, 100),
];

/// One alkaline cell (AA/AAA) at light load, mV per cell → %.
pub const ALKALINE_CELL_CURVE: [(u16, u8); 7] = [
    (1_000, 0),
    (1_100, 10),
    (1_200, 30),
    (1_280, 50),
    (1_350, 70),
    (1_450, 90),
    (1_550, 100),
];

/// Interpolates `curve` (ascending millivolts) at `millivolts`, clamping at both ends.
pub fn percent_from_curve(curve: &[(u16, u8)], millivolts: u16) -> u8 {
    let mut below: Option<(u16, u8)> = None;
    for &(mv, pc) in curve {
        if millivolts <= mv {
            let Some((mv0, pc0)) = below else {
                return pc;
            };
            let span = u32::from(mv.saturating_sub(mv0)).max(1);
            let into = u32::from(millivolts.saturating_sub(mv0));
            let rise = u32::from(pc.saturating_sub(pc0));
            let p = u32::from(pc0) + rise * into / span;
            return u8::try_from(p.min(100)).unwrap_or(100);
        }
        below = Some((mv, pc));
    }
    below.map_or(0, |(_, pc)| pc)
}

/// A single LiPo cell, mV → %.
pub fn lipo_percent(millivolts: u16) -> u8 {
    percent_from_curve(&LIPO_CURVE, millivolts)
}

/// `cells` alkaline cells in series, total mV → %.
pub fn alkaline_percent(millivolts: u16, cells: u8) -> u8 {
    percent_from_curve(&ALKALINE_CELL_CURVE, millivolts / u16::from(cells.max(1)))
}

/// Events from one reading: the reading, and the alarm if it crossed the threshold.
pub type BatteryEvents = heapless::Vec<Input, 2>;

/// Emits [`Input::Battery`] for every reading and `AlarmKind::LowBattery` once when the charge
/// falls below the threshold; re-armed only when it has recovered to threshold + hysteresis, so a
/// reading wobbling around the threshold (load, temperature) does not alarm repeatedly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryMonitor {
    threshold_percent: u8,
    hysteresis_percent: u8,
    low: bool,
}

impl BatteryMonitor {
    pub const DEFAULT_HYSTERESIS_PERCENT: u8 = 5;

    pub const fn new(threshold_percent: u8) -> Self {
        Self {
            threshold_percent,
            hysteresis_percent: Self::DEFAULT_HYSTERESIS_PERCENT,
            low: false,
        }
    }

    pub fn from_device_config(config: &DeviceConfig) -> Self {
        Self::new(config.low_battery_percent)
    }

    pub fn with_hysteresis(mut self, percent: u8) -> Self {
        self.hysteresis_percent = percent;
        self
    }

    pub fn apply_device_config(&mut self, config: &DeviceConfig) {
        self.threshold_percent = config.low_battery_percent;
    }

    /// True after an alarm until the battery has recovered.
    pub const fn is_low(&self) -> bool {
        self.low
    }

    pub fn update(&mut self, reading: BatteryReading) -> BatteryEvents {
        let mut out = BatteryEvents::new();
        // Capacity 2, at most two pushes: cannot fail.
        let _ = out.push(Input::Battery {
            millivolts: reading.millivolts,
            percent: reading.percent,
        });
        if !self.low && reading.percent < self.threshold_percent {
            self.low = true;
            let _ = out.push(Input::Alarm(AlarmKind::LowBattery {
                millivolts: reading.millivolts,
                percent: reading.percent,
            }));
        } else if self.low && reading.percent >= self.threshold_percent.saturating_add(self.hysteresis_percent) {
            self.low = false;
        }
        out
    }

    /// Reads `gauge` and feeds the reading.
    pub fn poll<G: BatteryGauge>(&mut self, gauge: &mut G) -> Result<BatteryEvents, G::Error> {
        Ok(self.update(gauge.read()?))
    }
}
