//! The TEC gateway.
