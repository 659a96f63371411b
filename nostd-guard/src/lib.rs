//! A `no_std`, allocator-free static library that links the device-side crates. It exists
//! only to fail the build if `protocol` or `firmware` ever depends on std or alloc.
#![no_std]

use protocol::{AlarmKind, MAX_UPLINK_LEN, Uplink, UplinkBody, UplinkHeader};

/// Encodes a pendant alarm into `out` and returns its length (0 on error), so the
/// encoder and the firmware's types are really linked, not optimised away.
#[unsafe(no_mangle)]
pub extern "C" fn nostd_guard_encode_pendant_press(boot: u32, seq: u32, out: *mut u8, capacity: usize) -> usize {
    let message = Uplink::new(
        UplinkHeader { boot, seq, device_time_ms: None },
        UplinkBody::Alarm(AlarmKind::PendantPress),
    );
    let mut buf = [0u8; MAX_UPLINK_LEN];
    let Ok(bytes) = protocol::encode_uplink(&message, &mut buf) else {
        return 0;
    };
    if out.is_null() || capacity < bytes.len() {
        return 0;
    }
    // SAFETY: the caller promises `out` points to `capacity` writable bytes; checked above.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    bytes.len()
}

/// Size of the firmware's input type, so `firmware` is linked too.
#[unsafe(no_mangle)]
pub extern "C" fn nostd_guard_firmware_input_size() -> usize {
    core::mem::size_of::<firmware::Input>()
}

/// Moves a device core to a gateway's boot floor through the in-memory boot counter and
/// returns the boot it is on (0 on error), so the boot-floor path is linked too.
#[unsafe(no_mangle)]
pub extern "C" fn nostd_guard_boot_floor(stored_boot: u32, min_boot: u32) -> u32 {
    use firmware::boot::{BootCounter, MemoryBootCounter};
    use firmware::device::{Device, DeviceSetup};
    use protocol::{DeviceConfig, Downlink, DownlinkBody, FirmwareVersion};

    let mut counter = MemoryBootCounter::new(stored_boot);
    let Ok(boot) = counter.load_and_increment() else {
        return 0;
    };
    let setup = DeviceSetup {
        boot,
        firmware: FirmwareVersion { major: 0, minor: 0, patch: 0 },
        config: DeviceConfig::default(),
        activity: None,
    };
    let mut device = Device::new(setup, 0);
    if device.handle_downlink(&Downlink::new(DownlinkBody::BootFloor { min_boot }), 0).is_err() {
        return 0;
    }
    match device.apply_boot_floor(&mut counter, 0) {
        Ok(_) => device.boot(),
        Err(_) => 0,
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
