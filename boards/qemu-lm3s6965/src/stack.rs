//! The stack high-water mark, measured: the unused stack is painted with a pattern at
//! start, and at the end the lowest word no longer holding it shows how deep the stack went.
//! Together with the static RAM (.data + .bss, from the ELF) it gives the RAM the firmware
//! needs.

use core::ptr::addr_of;

/// A word the program is unlikely to leave on the stack by chance.
const PAINT: u32 = 0xACE5_C0DE;
/// Bytes below the current stack pointer left unpainted: the painting loop's own use.
const MARGIN: usize = 64;

unsafe extern "C" {
    /// Top of the stack (cortex-m-rt's link.x: the end of RAM).
    static _stack_start: u32;
    /// Bottom of the stack: the end of the statics (cortex-m-rt's link.x).
    static _stack_end: u32;
}

/// Only the symbols' addresses are taken, never their contents.
fn top() -> usize {
    addr_of!(_stack_start) as usize
}

fn bottom() -> usize {
    addr_of!(_stack_end) as usize
}

/// Paints the free stack, from its bottom up to just below the current stack pointer.
///
/// # Safety
///
/// Call once, at the start of `main`, with nothing alive below the current frame.
pub unsafe fn paint() {
    let limit = (cortex_m::register::msp::read() as usize).saturating_sub(MARGIN);
    let mut at = bottom();
    while at + 4 <= limit {
        // SAFETY: [bottom, limit) is RAM between the statics and the live stack, unused now
        // (the caller's promise), and word-aligned (link.x asserts `_stack_end % 4 == 0`).
        unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// The deepest the stack has been since [`paint`], in bytes from its top.
pub fn high_water_bytes() -> usize {
    let mut at = bottom();
    let top = top();
    while at < top {
        // SAFETY: word-aligned addresses within RAM between the statics and the stack top.
        let word = unsafe { core::ptr::read_volatile(at as *const u32) };
        if word != PAINT {
            break;
        }
        at += 4;
    }
    top - at
}
