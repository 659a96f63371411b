//! Device provisioning for a Mosquitto broker: a fresh random credential per device (ETSI
//! EN 303 645 provision 5.1: no universal default passwords), the broker's password and ACL
//! entries, batch deliveries from CSV and the installers' credential sheet. Pure parts here;
//! the command (`tec-gateway device ...`) is in `cli/device.rs`, docs in docs/deployment.md.

pub mod batch;
pub mod credential;
pub mod mosquitto;
pub mod sheet;
