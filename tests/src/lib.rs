//! Helpers for end-to-end tests: a private Mosquitto per test, device publishers.
