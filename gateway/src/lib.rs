//! The TEC gateway: MQTT ingest with durable group commit, the redb event store, the
//! alert engine, and the command line that inspects them.

pub mod access;
pub mod alerts;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod demo_run;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod provision;
pub mod reports;
pub mod retention;
pub mod store;
pub mod tls;
pub mod writer;
