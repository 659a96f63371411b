//! Console output through semihosting, without `core::fmt`: whole strings and decimal
//! numbers only, so the size figures are the firmware's and not a formatter's.

use core::cell::RefCell;

use cortex_m::interrupt::{self, Mutex};
use cortex_m_semihosting::hio::{self, HostStream};

/// The host's stdout, opened on first use (each open is a host file handle).
static STDOUT: Mutex<RefCell<Option<HostStream>>> = Mutex::new(RefCell::new(None));

/// Prints `text`. Output that the host refuses is dropped: the exit status still tells.
pub fn out(text: &str) {
    interrupt::free(|cs| {
        let mut stdout = STDOUT.borrow(cs).borrow_mut();
        if stdout.is_none() {
            *stdout = hio::hstdout().ok();
        }
        if let Some(stream) = stdout.as_mut() {
            let _ = stream.write_all(text.as_bytes());
        }
    });
}

/// Prints `text` and a newline.
pub fn line(text: &str) {
    out(text);
    out("\n");
}

/// Prints `value` in decimal.
pub fn out_u32(value: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            // `rest % 10` is below 10, so the cast cannot truncate.
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || start == 0 {
            break;
        }
    }
    let text = digits
        .get(start..)
        .and_then(|bytes| core::str::from_utf8(bytes).ok())
        .unwrap_or("?");
    out(text);
}
