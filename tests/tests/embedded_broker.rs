//! The end-to-end delivery and device cases against the embedded demo broker
//! (`gateway::broker::EmbeddedBroker`, what `tec-gateway demo` runs), exactly as they run
//! against Mosquitto in `delivery.rs` and `device_e2e.rs`: the firmware's rust-mqtt client, the
//! gateway's persistent session with manual acknowledgements, last wills, retained presence.
//!
//! Mosquitto-only, and why (the embedded broker is anonymous, in memory, and lives and dies with
//! the demo process): in `delivery.rs` the broker restarts (graceful and SIGKILL), the queue kept
//! across a broker restart, `/healthz` following a stopped broker; `harness.rs` (broker restart,
//! ACL refusals); `hostile.rs` (password and ACL refusals); `partition.rs` (broker restart);
//! `gateway/tests/ingest_tls.rs` (TLS).

mod delivery_cases;
mod device_cases;
mod sim_support;

mod delivery {
    super::delivery_cases::delivery_tests!(e2e::BrokerKind::Embedded);
}

mod device {
    super::device_cases::device_tests!(e2e::BrokerKind::Embedded);
}
