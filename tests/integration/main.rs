//! The one integration test binary: every test that needs a socket, a child process, a browser
//! or a real Kafka broker lives here, sharing one broker (see `harness::kafka`).

mod harness;

mod acl;
mod api;
mod consume;
mod crash;
mod dashboard;
mod delivery;
mod disk_full;
mod gateway;
mod hostile;
mod kafka_harness;
mod operator;
mod power_cut;
mod restore;
mod roads;
mod safe_defaults;
mod secrets;
mod ws;
