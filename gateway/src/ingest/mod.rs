//! Durable MQTT ingest: the MQTT task forwards publishes, the committer group-commits them
//! to the store, then acks and receipts them (ARCHITECTURE.md, contracts 1 and 2).

pub mod classify;
pub mod committer;
pub mod core;
pub mod mqtt;

pub use self::core::{Committed, Core, OperatorError};
pub use classify::{Classified, Reject, classify};
