//! Device logic for TEC pendants and home sensors. `no_std`, no allocator.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod hw;
pub mod input;
pub mod outbox;

pub use input::Input;
