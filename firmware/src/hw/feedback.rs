//! Feedback to the resident through an LED and a buzzer: what the pendant says after a press
//! ("sending", "received", "help is on the way", ...). Each [`Pattern`] is a fixed on/off
//! sequence; [`Pattern::level_at`] is pure, [`Feedback`] drives two `OutputPin`s from it.
//!
//! The patterns differ in rhythm *and* sound so that residents with poor sight or hearing can
//! still tell them apart.

use embedded_hal::digital::OutputPin;

use crate::indication::Indication;

/// One segment of a pattern: both outputs held for `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    ms: u32,
    led: bool,
    buzzer: bool,
}

const fn step(ms: u32, led: bool, buzzer: bool) -> Step {
    Step { ms, led, buzzer }
}

/// After the last step: start over from a step, or hold a final level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    RepeatFrom(usize),
    Hold { led: bool, buzzer: bool },
}

const ON: bool = true;
const OFF: bool = false;

/// A beep with the light, then fast blinking until the centre's receipt arrives.
const SENDING: &[Step] = &[
    step(100, ON, ON),
    step(100, OFF, OFF),
    step(100, ON, OFF),
    step(100, OFF, OFF),
];
/// Three beeps with the light, then dark.
const RECEIVED: &[Step] = &[
    step(150, ON, ON),
    step(150, OFF, OFF),
    step(150, ON, ON),
    step(150, OFF, OFF),
    step(150, ON, ON),
];
/// Steady light for 30 s with two long beeps at the start: unmistakable, then off to save the
/// battery (the operator is also talking to the resident by then).
const HELP: &[Step] = &[
    step(800, ON, ON),
    step(400, ON, OFF),
    step(800, ON, ON),
    step(28_000, ON, OFF),
];
/// One short beep, light off.
const RESOLVED: &[Step] = &[step(100, OFF, ON)];
/// A chirp every minute, no light (a light would drain the battery further).
const LOW_BATTERY: &[Step] = &[step(30, OFF, ON), step(59_970, OFF, OFF)];
/// Slow blink, silent: 1 s on, 1 s off.
const NO_CONNECTION: &[Step] = &[step(1_000, ON, OFF), step(1_000, OFF, OFF)];

/// What the device is telling the resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pattern {
    /// An alarm is on its way to the centre: a beep, then fast blinking.
    Sending,
    /// The gateway's receipt arrived: three beeps.
    ReceivedByCentre,
    /// An operator took the call: two long beeps and a steady light for 30 s.
    HelpOnTheWay,
    /// The alert was resolved: one short beep, light off.
    Resolved,
    /// Battery low: a chirp every minute.
    LowBattery,
    /// No connection to the gateway: slow blink.
    NoConnection,
    /// Nothing to say: both off.
    #[default]
    Idle,
}

impl Pattern {
    fn program(self) -> (&'static [Step], End) {
        let dark = End::Hold { led: OFF, buzzer: OFF };
        match self {
            Pattern::Sending => (SENDING, End::RepeatFrom(2)),
            Pattern::ReceivedByCentre => (RECEIVED, dark),
            Pattern::HelpOnTheWay => (HELP, dark),
            Pattern::Resolved => (RESOLVED, dark),
            Pattern::LowBattery => (LOW_BATTERY, End::RepeatFrom(0)),
            Pattern::NoConnection => (NO_CONNECTION, End::RepeatFrom(0)),
            Pattern::Idle => (&[], dark),
        }
    }

    /// `(led, buzzer)` at `elapsed_ms` after the pattern started.
    pub fn level_at(self, elapsed_ms: u64) -> (bool, bool) {
        let (steps, end) = self.program();
        let total: u64 = steps.iter().map(|s| u64::from(s.ms)).sum();
        let (skip, t) = if elapsed_ms < total {
            (0, elapsed_ms)
        } else {
            match end {
                End::Hold { led, buzzer } => return (led, buzzer),
                End::RepeatFrom(from) => {
                    let looped: u64 = steps.iter().skip(from).map(|s| u64::from(s.ms)).sum();
                    if looped == 0 {
                        return (OFF, OFF);
                    }
                    (from, (elapsed_ms - total) % looped)
                }
            }
        };
        let mut t = t;
        for s in steps.iter().skip(skip) {
            if t < u64::from(s.ms) {
                return (s.led, s.buzzer);
            }
            t -= u64::from(s.ms);
        }
        (OFF, OFF)
    }

    /// True when the pattern ends in a steady state (it does not repeat).
    pub fn is_finite(self) -> bool {
        matches!(self.program().1, End::Hold { .. })
    }
}

/// The core decides what to show ([`Indication`]); this is how it looks and sounds.
impl From<Indication> for Pattern {
    fn from(indication: Indication) -> Self {
        match indication {
            Indication::Idle => Pattern::Idle,
            Indication::Sending => Pattern::Sending,
            Indication::ReceivedByCentre => Pattern::ReceivedByCentre,
            Indication::HelpOnTheWay => Pattern::HelpOnTheWay,
            Indication::Resolved => Pattern::Resolved,
            Indication::LowBattery => Pattern::LowBattery,
            Indication::NoConnection => Pattern::NoConnection,
        }
    }
}

/// A pattern and when it started: `level_at(now_ms)` is all a driver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatternPlayer {
    pattern: Pattern,
    started_ms: u64,
}

impl PatternPlayer {
    pub const fn new(pattern: Pattern, now_ms: u64) -> Self {
        Self {
            pattern,
            started_ms: now_ms,
        }
    }

    pub const fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// `(led, buzzer)` at `now_ms` (times before the start count as the start).
    pub fn level_at(&self, now_ms: u64) -> (bool, bool) {
        self.pattern.level_at(now_ms.saturating_sub(self.started_ms))
    }
}

/// A pin write failed. The failed pin is written again on the next update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError<L, B> {
    #[error("LED pin error")]
    Led(L),
    #[error("buzzer pin error")]
    Buzzer(B),
}

/// Drives an LED and a buzzer (both active high) from a [`PatternPlayer`]. Pins are written only
/// when their level changes, so `update` can be called every tick cheaply.
#[derive(Debug)]
pub struct Feedback<Led, Buzzer> {
    led: Led,
    buzzer: Buzzer,
    player: PatternPlayer,
    /// Levels last written successfully; `None` forces a write.
    led_level: Option<bool>,
    buzzer_level: Option<bool>,
}

impl<Led: OutputPin, Buzzer: OutputPin> Feedback<Led, Buzzer> {
    /// Takes the pins; they are driven on the first `show` or `update`.
    pub fn new(led: Led, buzzer: Buzzer) -> Self {
        Self {
            led,
            buzzer,
            player: PatternPlayer::default(),
            led_level: None,
            buzzer_level: None,
        }
    }

    /// Starts `pattern` now (restarting it if it is already showing) and sets the pins.
    pub fn show(&mut self, pattern: Pattern, now_ms: u64) -> Result<(), FeedbackError<Led::Error, Buzzer::Error>> {
        self.player = PatternPlayer::new(pattern, now_ms);
        self.update(now_ms)
    }

    /// Shows `pattern` unless it is already showing (then it just updates), so a main loop can
    /// pass the core's current indication every tick without restarting the pattern.
    pub fn follow(&mut self, pattern: Pattern, now_ms: u64) -> Result<(), FeedbackError<Led::Error, Buzzer::Error>> {
        if pattern != self.player.pattern() {
            self.player = PatternPlayer::new(pattern, now_ms);
        }
        self.update(now_ms)
    }

    /// The pattern showing.
    pub fn pattern(&self) -> Pattern {
        self.player.pattern()
    }

    /// Sets the pins for `now_ms`. Both pins are attempted even if the first fails; the LED's
    /// error is reported first.
    pub fn update(&mut self, now_ms: u64) -> Result<(), FeedbackError<Led::Error, Buzzer::Error>> {
        let (led, buzzer) = self.player.level_at(now_ms);
        let led_result = drive(&mut self.led, &mut self.led_level, led);
        let buzzer_result = drive(&mut self.buzzer, &mut self.buzzer_level, buzzer);
        led_result.map_err(FeedbackError::Led)?;
        buzzer_result.map_err(FeedbackError::Buzzer)
    }

    /// Gives the pins back.
    pub fn release(self) -> (Led, Buzzer) {
        (self.led, self.buzzer)
    }
}

fn drive<P: OutputPin>(pin: &mut P, last: &mut Option<bool>, level: bool) -> Result<(), P::Error> {
    if *last == Some(level) {
        return Ok(());
    }
    *last = None;
    if level { pin.set_high() } else { pin.set_low() }?;
    *last = Some(level);
    Ok(())
}
