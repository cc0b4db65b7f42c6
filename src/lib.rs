//! routegate: an edge gateway for route optimization with a durable outbox to Apache Kafka.
//!
//! Depot servers run one routegate. It answers route-optimization requests over HTTP, pushes live
//! route and vehicle updates over WebSocket, and writes every event it produces to an on-disk
//! outbox that a background task drains to Apache Kafka. No acknowledged event is ever lost, and
//! the HTTP side never fails or hangs because Kafka does.
//!
//! # Module map
//!
//! ```text
//! main ─▶ cli ─▶ app ─▶ http ─▶ store ─▶ queue ─▶ events
//!                  │             └─▶ optimize (pure)
//!                  ├──▶ publisher ─▶ queue
//!                  └──▶ config   (every module reads its own section)
//! ```
//!
//! * [`app`] is the composition root; only it knows every module.
//! * [`config`] holds the typed settings and their layers (defaults, file, `.env`, env, flags).
//! * [`datadir`] owns the runtime directory and its lock.
//! * [`http`] is the warp API; [`http::error`] is where errors become responses.
//! * [`store`] keeps routes and vehicles, written atomically with their events through [`queue`].
//! * [`optimize`] is the pure route solver.
//! * [`telemetry`] sets up `tracing`.

pub mod app;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod delivery;
pub mod events;
pub mod http;
pub mod metrics;
pub mod optimize;
pub mod publisher;
pub mod queue;
pub mod store;
pub mod telemetry;
