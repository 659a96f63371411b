//! What the hardware layer tells the device core. Drivers and detectors (button,
//! accelerometer fall detector, digital sensor inputs, thermometer, battery) turn pin
//! levels and register reads into these; the core turns them into uplinks and feedback.

use protocol::{AlarmKind, SensorState};

/// One thing that happened on the device, already debounced and interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The pendant button was pressed (debounced). Reported as soon as the press is
    /// confirmed, so an alarm is never delayed to see whether a hold follows.
    ButtonPressed,
    /// The same press is still held after the hold time. If that press began within the
    /// grace window of an earlier alarm the resident may cancel (a pendant press or a fall,
    /// never smoke, heat, CO, flood or any other kind), it is the resident's cancel gesture;
    /// otherwise it is just a long press, already reported.
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
