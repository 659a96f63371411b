//! What the device should show the resident. The hardware layer's feedback player
//! (`hw::feedback::Pattern`) has one pattern per variant and is wired to this later; the
//! core only decides *which* one.

/// The feedback the resident should see/hear now. Same meanings as `hw::feedback::Pattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Indication {
    /// Nothing to show.
    #[default]
    Idle,
    /// An alarm (or cancel) is waiting for the monitoring centre's receipt.
    Sending,
    /// The centre has the alarm (its receipt arrived).
    ReceivedByCentre,
    /// An operator accepted the alert: help is on the way.
    HelpOnTheWay,
    /// The alert was resolved (or the resident's cancel confirmed).
    Resolved,
    /// The battery is below the configured threshold.
    LowBattery,
    /// No connection for a while: the resident should use another way to call for help.
    NoConnection,
}
