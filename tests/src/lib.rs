//! Helpers for end-to-end tests: a private Mosquitto (or the embedded demo broker) per test, the gateway as a real process,
//! and simulated devices that behave as the firmware does (outbox, receipts, retransmission).
//!
//! Reused by the firmware end-to-end tests, the load and fault campaign, and the demo.

/// The broker, error and port helpers live in `testkit`, shared with the other crates' tests.
pub use testkit::{broker, error, net};

pub mod bench;
pub mod check;
pub mod devices;
pub mod fleet_drive;
pub mod gateway_process;
pub mod http;
pub mod metrics;
pub mod plain;
pub mod scenario;
pub mod test_broker;

pub use broker::{Broker, BrokerAuth, BrokerOptions, Credentials};
pub use devices::{DeviceSim, Fleet, FleetOptions, FleetProgress, SentKey};
pub use error::HarnessError;
pub use gateway_process::{GatewayOptions, GatewayProcess};
pub use metrics::Metrics;
pub use scenario::{Scenario, ScenarioSetup, device_ids};
pub use test_broker::{BrokerEndpoint, BrokerKind, TestBroker};
