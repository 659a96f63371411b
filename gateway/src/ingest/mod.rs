//! The MQTT edge of ingest: the connection and its poller (`mqtt`), and the pure check that
//! turns one publish into an event, a presence or a quarantine record (`classify`). What
//! happens next (the durable commit, then acks and receipts) is the writer's job.

pub mod classify;
pub mod mqtt;

pub use classify::{Classified, Reject, classify};
