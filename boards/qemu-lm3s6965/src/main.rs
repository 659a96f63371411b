//! The TEC pendant firmware on a Cortex-M3 (QEMU's lm3s6965evb): the real device core
//! ([`firmware::Device`]), button and fall drivers, and MQTT session ([`firmware::session`]),
//! in a scripted world:
//!
//! * a LIS3DH on a scripted I2C bus that answers the driver's register reads with a recorded
//!   fall (`firmware/tests/data/fall_on_side.lis3dh`, 100 Hz bursts),
//! * a button pin pressed once, after the fall,
//! * an in-memory transport whose peer is a scripted MQTT 5 broker ([`broker`]) that acks
//!   and receipts every uplink, except that it drops the link under the fall alarm, and
//!   receipts nothing for the press alarm until the device has been through a power cut,
//! * the alarm log and the boot counter ([`firmware::persist`]) on a flash that outlives the
//!   power cut, from which the rebooted device (boot 2) restores the unreceipted press alarm.
//!
//! It prints what the device sends through semihosting and exits with status 0 only if
//! every expected uplink was published and receipted, each repeat byte-identical, the alarm
//! log ends empty and the device's outbox too; otherwise 1. Then it prints the stack
//! high-water mark ([`stack`]) for the RAM budget.
//!
//! Time is virtual: the scenario advances a clock from one sensor sample or session
//! deadline to the next, so the run takes a fraction of a second and is the same every time.
#![no_std]
#![no_main]

mod broker;
mod console;
mod scenario;
mod stack;
mod world;

use core::cell::{Cell, RefCell};

use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::debug;
use embassy_futures::select::{Either, select};
use firmware::boot::BootCounter;
use firmware::device::{Device, DeviceSetup};
use firmware::persist::{FlashAlarmLog, FlashBootCounter};
use firmware::session::{self, Backoff, SessionConfig, SessionState};
use protocol::{DeviceConfig, DeviceId, FirmwareVersion};

use crate::broker::{Broker, MemoryConnector};
use crate::console::{line, out, out_u32};
use crate::scenario::Scenario;
use crate::world::{ALARM_LOG_BYTES, RamFlash};

/// The id the scripted broker knows the device by.
const DEVICE_ID: &str = "qemu-pendant-1";
const FIRMWARE: FirmwareVersion = FirmwareVersion {
    major: 0,
    minor: 1,
    patch: 0,
};
/// Boots in one run: the first, and the one after the power cut (a third means a second cut).
const MAX_BOOTS: u32 = 2;

#[entry]
fn main() -> ! {
    // SAFETY: called once, first thing, before anything below the current frame is used.
    unsafe { stack::paint() };
    let passed = run();
    let high_water = stack::high_water_bytes();
    out("stack high-water: ");
    out_u32(u32::try_from(high_water).unwrap_or(u32::MAX));
    line(" bytes");
    if passed {
        line("RESULT: PASS");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        line("RESULT: FAIL");
        debug::exit(debug::EXIT_FAILURE);
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Runs the scenario; true if every check passed.
fn run() -> bool {
    let Ok(device_id) = DeviceId::new(DEVICE_ID) else {
        line("invalid device id");
        return false;
    };
    let Ok(log) = FlashAlarmLog::new(RamFlash::erased(), 0..ALARM_LOG_BYTES as u32) else {
        line("alarm log range refused");
        return false;
    };
    let broker = RefCell::new(Broker::new(device_id));
    let power = Cell::new(true);
    let mut connector = MemoryConnector::new(&broker);
    let mut scenario = Scenario::new(&broker, &power, log);
    // In flash too (a range of its own): it survives the power cut.
    let Ok(mut boot_counter) = FlashBootCounter::new(RamFlash::erased(), 0..ALARM_LOG_BYTES as u32) else {
        line("boot counter range refused");
        return false;
    };
    let config = SessionConfig {
        device_id,
        password: b"qemu",
        keep_alive_s: session::DEFAULT_KEEP_ALIVE_S,
    };
    loop {
        let Ok(boot) = boot_counter.load_and_increment() else {
            line("boot counter exhausted");
            return false;
        };
        if boot > MAX_BOOTS {
            line("FAIL: more boots than the scenario has power cuts");
            return false;
        }
        let now = firmware::session::Platform::now_ms(&scenario);
        let mut device = Device::new(
            DeviceSetup {
                boot,
                firmware: FIRMWARE,
                config: DeviceConfig::default(),
                activity: None,
            },
            now,
        );
        out("boot ");
        out_u32(boot);
        line(": device core, LIS3DH over scripted I2C, button, MQTT session over an in-memory link");
        embassy_futures::block_on(scenario.power_up(&mut device));
        let mut state = SessionState::new(Backoff::default(), session::DEFAULT_KEEP_ALIVE_S, u64::from(boot), now);
        // The session runs until it is switched off, or until the power goes: then it is
        // dropped wherever it is, with whatever it had in RAM.
        let power_cut = core::future::poll_fn(|_| {
            if power.get() {
                core::task::Poll::Pending
            } else {
                core::task::Poll::Ready(())
            }
        });
        let session = session::run(
            &mut device,
            &mut state,
            &config,
            &mut connector,
            &mut scenario,
            &mut boot_counter,
        );
        match embassy_futures::block_on(select(session, power_cut)) {
            Either::First(Ok(())) => {}
            Either::First(Err(_)) => {
                line("FAIL: the session did not start");
                return false;
            }
            Either::Second(()) => continue,
        }
        let scenario_ok = scenario.check();
        let broker_ok = broker.borrow().check();
        let device_ok = device.outbox_depth() == 0 && device.alarms_lost() == 0;
        out(if device_ok { "ok: " } else { "FAIL: " });
        out("the device's outbox is empty (");
        out_u32(u32::try_from(device.outbox_depth()).unwrap_or(u32::MAX));
        out(" left) and no alarm was lost (");
        out_u32(device.alarms_lost());
        line(")");
        return scenario_ok && broker_ok && device_ok;
    }
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    line("hard fault");
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The message is not formatted: that would link core::fmt's machinery into every build.
    line("panic");
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
