//! Test support shared by the gateway's, the simulator's and the end-to-end tests: a private
//! Mosquitto per test (its own port, config, persistence, optional passwords, ACLs and TLS),
//! local port helpers, a private PostgreSQL cluster per test (with streaming replicas), and one
//! error type that says what went wrong and where.

pub mod broker;
pub mod error;
pub mod net;
pub mod postgres;

pub use broker::{AuthFiles, Broker, BrokerAuth, BrokerOptions, Credentials};
pub use error::{HarnessError, Result};
pub use postgres::{Postgres, PostgresOptions};
