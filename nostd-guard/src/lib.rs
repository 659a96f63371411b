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

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
