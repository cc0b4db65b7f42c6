//! Test infrastructure shared by the integration tests.
#![allow(
    dead_code,
    reason = "the harness offers helpers that only some test modules use"
)]

pub mod browser;
pub mod fixes;
#[allow(
    unsafe_code,
    reason = "signals and PR_SET_PDEATHSIG for child processes"
)]
pub mod gateway;
pub mod kafka;
pub mod lazyfs;
