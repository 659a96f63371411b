//! Device logic for TEC pendants and home sensors. `no_std`, no allocator.
#![no_std]

pub mod input;

pub use input::Input;
