//! What the hardware layer tells the device core. Drivers and detectors (button,
//! accelerometer fall detector, digital sensor inputs, thermometer, battery) turn pin
//! levels and register reads into these; the core turns them into uplinks and feedback.

use protocol::{AlarmKind, SensorState};

/// One thing that happened on the device, already debounced and interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The pendant button was pressed (debounced, released before the hold time).
    ButtonPressed,
    /// The pendant button was held for the hold time: cancels the last alarm if still
    /// within the grace window, otherwise counts as a press.
    ButtonHeld,
    /// The fall detector saw free fall, impact, then lying still.
    FallDetected,
    /// An alarm-type input fired (smoke, CO, flood, heat, tamper, mains power...).
    Alarm(AlarmKind),
    /// A home sensor input changed state (door, bed, chair, motion, temperature).
    Sensor { input: u8, state: SensorState },
    /// A fresh battery reading.
    Battery { millivolts: u16, percent: u8 },
}
