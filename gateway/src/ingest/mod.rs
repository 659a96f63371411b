//! Durable MQTT ingest: the MQTT task forwards publishes, the committer group-commits them
//! to the store, then acks and receipts them (ARCHITECTURE.md, contracts 1 and 2).

pub mod classify;
