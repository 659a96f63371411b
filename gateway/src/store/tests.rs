//! Unit tests live in gateway/tests/store_*.rs; this holds the internal ones.
