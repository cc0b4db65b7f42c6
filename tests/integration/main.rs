//! The one integration test binary.

mod harness;
mod kafka_harness;
