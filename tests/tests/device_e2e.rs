//! The real firmware core (simulated pendant) and the real gateway (in process) through a
//! private Mosquitto with per-device passwords and the production ACL. The cases live in
//! `device_cases` and run against the embedded demo broker too (`embedded_broker.rs`).
//! Fails, never skips, when Mosquitto is not installed.

mod device_cases;
mod sim_support;

use e2e::BrokerKind;

device_cases::device_tests!(BrokerKind::Mosquitto);
