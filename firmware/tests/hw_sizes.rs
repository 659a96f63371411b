#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The device's whole state budget is 16 KiB: each hardware-layer struct must stay small.

use core::mem::size_of;

use embedded_hal_mock::eh1::digital::Mock as PinMock;
use embedded_hal_mock::eh1::i2c::Mock as I2cMock;
use firmware::hw::Debouncer;
use firmware::hw::battery::BatteryMonitor;
use firmware::hw::button::Button;
use firmware::hw::fall::FallDetector;
use firmware::hw::feedback::{Feedback, PatternPlayer};
use firmware::hw::lis3dh::Lis3dh;
use firmware::hw::sensors::{ActivityCounter, SensorInputs};
use firmware::hw::tmp102::{TemperatureMonitor, Tmp102};

#[test]
fn structs_fit_the_budget() {
    // Drivers are measured with a zero-sized stand-in for the bus/pins so that only our own
    // fields count (the mocks are large host-side objects).
    struct NoBus;
    let sizes = [
        ("Debouncer", size_of::<Debouncer>(), 32),
        ("Button", size_of::<Button>(), 48),
        ("FallDetector", size_of::<FallDetector>(), 256),
        ("Lis3dh<_>", size_of::<Lis3dh<NoBus>>(), 16),
        ("Tmp102<_>", size_of::<Tmp102<NoBus>>(), 8),
        ("TemperatureMonitor", size_of::<TemperatureMonitor>(), 32),
        ("SensorInputs<8>", size_of::<SensorInputs<8>>(), 512),
        ("ActivityCounter", size_of::<ActivityCounter>(), 64),
        ("BatteryMonitor", size_of::<BatteryMonitor>(), 8),
        ("PatternPlayer", size_of::<PatternPlayer>(), 24),
        ("Feedback<_, _>", size_of::<Feedback<NoBus, NoBus>>(), 32),
    ];
    for (name, size, max) in sizes {
        println!("{name:>20}: {size:4} bytes (max {max})");
        assert!(size <= max, "{name} is {size} bytes, budget {max}");
    }
    // The real drivers only add the bus handle.
    println!(
        "{:>20}: {:4} bytes (with host mock)",
        "Lis3dh<I2cMock>",
        size_of::<Lis3dh<I2cMock>>()
    );
    println!(
        "{:>20}: {:4} bytes (with host mocks)",
        "Feedback<Pin, Pin>",
        size_of::<Feedback<PinMock, PinMock>>()
    );
}
