//! The pendant button: a debouncer with a hold timer.
//!
//! # When events fire (and why)
//!
//! [`Input::ButtonPressed`] is emitted as soon as the press is *confirmed* (the contact has read
//! pressed continuously for the debounce time), not on release. Waiting for the release to tell a
//! short press from a hold would delay every alarm by up to the hold time, and a resident who
//! presses and keeps pressing (as people in distress do) would send nothing until they let go.
//!
//! [`Input::ButtonHeld`] is emitted once, additionally, when the same press has lasted the hold
//! time (measured from the first pressed sample of the confirmed press). So a hold is always
//! preceded by the `ButtonPressed` of the same press: the core sees `ButtonPressed` (which raises
//! or joins an alarm), then `ButtonHeld`. A core that cancels on `ButtonHeld` within the grace
//! window must therefore only cancel an alarm raised *before* this press began; otherwise holding
//! the button in distress would cancel the very alarm it raised.
//!
//! Releases produce no event. Bounce and glitches shorter than the debounce time produce nothing.

use embedded_hal::digital::InputPin;

use super::Debouncer;
use crate::Input;

/// Button timing. The defaults suit a tactile dome switch on a pendant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonConfig {
    /// The contact must read the same level this long before a change is accepted.
    pub debounce_ms: u32,
    /// A press lasting this long (from its first pressed sample) also emits `ButtonHeld`.
    pub hold_ms: u32,
}

impl Default for ButtonConfig {
    fn default() -> Self {
        Self {
            debounce_ms: 30,
            hold_ms: 2_000,
        }
    }
}

/// Which pin level means "pressed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveLevel {
    /// Pressed pulls the pin low (button to ground with a pull-up: the usual wiring).
    Low,
    /// Pressed drives the pin high.
    High,
}

/// Debounced pendant button. Pure: feed it `(now_ms, pressed)` samples at a steady rate
/// (every 5-10 ms) or on pin-change interrupts plus a periodic sample while pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Button {
    hold_ms: u32,
    debouncer: Debouncer,
    held_sent: bool,
}

impl Button {
    pub const fn new(config: ButtonConfig) -> Self {
        Self {
            hold_ms: config.hold_ms,
            debouncer: Debouncer::new(config.debounce_ms, false),
            held_sent: false,
        }
    }

    /// Feeds one raw sample (`pressed` already corrected for the wiring's active level).
    pub fn update(&mut self, now_ms: u64, pressed: bool) -> Option<Input> {
        match self.debouncer.update(now_ms, pressed) {
            Some(true) => {
                self.held_sent = false;
                return Some(Input::ButtonPressed);
            }
            Some(false) => {
                self.held_sent = false;
                return None;
            }
            None => {}
        }
        // The raw sample must still read pressed: a release being debounced is not a hold.
        if pressed
            && self.debouncer.level()
            && !self.held_sent
            && now_ms.saturating_sub(self.debouncer.since_ms()) >= u64::from(self.hold_ms)
        {
            self.held_sent = true;
            return Some(Input::ButtonHeld);
        }
        None
    }

    /// Reads `pin` and feeds the sample. Errors leave the state untouched.
    pub fn poll<P: InputPin>(
        &mut self,
        now_ms: u64,
        pin: &mut P,
        active: ActiveLevel,
    ) -> Result<Option<Input>, P::Error> {
        let pressed = match active {
            ActiveLevel::Low => pin.is_low()?,
            ActiveLevel::High => pin.is_high()?,
        };
        Ok(self.update(now_ms, pressed))
    }

    /// The debounced state.
    pub const fn is_pressed(&self) -> bool {
        self.debouncer.level()
    }

    /// When the current press began (its first pressed sample), while pressed. Lets the caller
    /// tell, on `ButtonHeld`, alarms raised before this press from the one the press raised.
    pub const fn pressed_since_ms(&self) -> Option<u64> {
        if self.debouncer.level() {
            Some(self.debouncer.since_ms())
        } else {
            None
        }
    }
}

impl Default for Button {
    fn default() -> Self {
        Self::new(ButtonConfig::default())
    }
}
