//! LIS3DH register map and bit fields (ST datasheet DocID17530, section 8).

/// Register sub-addresses used by this driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Register {
    /// Device identification, reads [`DEVICE_ID`].
    WhoAmI = 0x0F,
    /// Output data rate, low-power enable, axis enables.
    CtrlReg1 = 0x20,
    /// High-pass filter.
    CtrlReg2 = 0x21,
    /// Interrupt 1 routing.
    CtrlReg3 = 0x22,
    /// Block data update, full scale, high resolution.
    CtrlReg4 = 0x23,
    /// Reboot, FIFO, latching.
    CtrlReg5 = 0x24,
    /// Data-ready and overrun flags.
    StatusReg = 0x27,
    /// X low byte; Y and Z follow up to 0x2D.
    OutXL = 0x28,
}

impl Register {
    /// The sub-address byte.
    pub const fn addr(self) -> u8 {
        self as u8
    }
}

/// What `WHO_AM_I` reads on a LIS3DH.
pub const DEVICE_ID: u8 = 0x33;

/// Set on the sub-address to make the device auto-increment it during a multi-byte access.
pub const AUTO_INCREMENT: u8 = 0x80;

/// CTRL_REG1 bits.
pub mod ctrl_reg1 {
    /// Shift of the 4-bit output data rate field `ODR[3:0]`.
    pub const ODR_SHIFT: u8 = 4;
    /// Low-power mode enable.
    pub const LPEN: u8 = 1 << 3;
    pub const ZEN: u8 = 1 << 2;
    pub const YEN: u8 = 1 << 1;
    pub const XEN: u8 = 1 << 0;
    /// All three axes on.
    pub const XYZ_EN: u8 = XEN | YEN | ZEN;
}

/// CTRL_REG4 bits.
pub mod ctrl_reg4 {
    /// Block data update: output registers hold until both bytes of an axis are read, so a
    /// reading never mixes the high byte of one sample with the low byte of the next.
    pub const BDU: u8 = 1 << 7;
    /// Shift of the 2-bit full-scale field `FS[1:0]`.
    pub const FS_SHIFT: u8 = 4;
    /// High-resolution (12-bit) output.
    pub const HR: u8 = 1 << 3;
}

/// STATUS_REG bits.
pub mod status_reg {
    /// New X, Y and Z data available.
    pub const ZYXDA: u8 = 1 << 3;
    /// X, Y, Z data overrun: a sample was overwritten before it was read.
    pub const ZYXOR: u8 = 1 << 7;
}
