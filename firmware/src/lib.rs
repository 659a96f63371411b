//! Device logic for TEC pendants and home sensors. `no_std`, no allocator.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod boot;
pub mod device;
pub mod hw;
pub mod indication;
pub mod input;
pub mod outbox;
pub mod persist;
pub mod rng;
pub mod session;

pub use device::{Device, DeviceSetup};
pub use indication::Indication;
pub use input::Input;
