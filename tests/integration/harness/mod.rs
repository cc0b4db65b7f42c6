//! Test infrastructure shared by the integration tests.
#![allow(
    dead_code,
    reason = "the harness offers helpers that only some test modules use"
)]

pub mod kafka;
