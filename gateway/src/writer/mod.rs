//! The gateway's single writer. Everything that changes the store goes through it, one
//! transaction at a time, so the alert engine has exactly one owner and a committed alarm
//! never lacks its alert (docs/architecture.md, contracts 1 and 2):
//!
//! - [`core`]: the synchronous core. A batch of publishes, a timer tick or an operator action
//!   becomes one store write transaction plus the engine's reaction to it.
//! - [`committer`]: the async shell around it. Group commit of what the MQTT edge forwards,
//!   engine timers, operator commands; acks, receipts, downlinks and the live stream only
//!   after the commit.
//! - [`store_slot`]: the store shared with readers, reopened by the committer after a fault.
//! - [`leadership`]: on PostgreSQL, when to renew the writer lease or try to take it.
//! - [`backend`]: what the committer needs of its store: redb, or PostgreSQL under the lease.

pub mod backend;
pub mod committer;
pub mod core;
pub mod leadership;
pub mod store_slot;

pub use self::core::{Committed, Core, OperatorError, Received};
pub use self::store_slot::{SharedStore, StoreUnavailable};
