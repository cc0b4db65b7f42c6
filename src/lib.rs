//! routegate: an edge gateway for route optimization with a durable outbox to Apache Kafka.
//!
//! Depot servers run one routegate. It answers route-optimization requests over HTTP, pushes live
//! route and vehicle updates over WebSocket, and writes every event it produces to an on-disk
//! outbox that a background task drains to Apache Kafka. No acknowledged event is ever lost, and
//! the HTTP side never fails or hangs because Kafka does.
//!
//! # Data flow
//!
//! ```text
//!  HTTP request ──▶ http ──▶ store ──▶ optimize (pure, on a blocking thread)
//!                             │
//!                             ▼  one sled transaction: route record + event, fsync (group commit)
//!                           queue ── events log ──▶ http::ws hub ──▶ WebSocket clients (resume by seq)
//!                             │
//!                             ▼  peek in seq order
//!                         publisher ──▶ rskafka ──▶ Kafka (acks=all)
//!                             │
//!                             └── ack: removed from the outbox only now ── delivery status ──▶ kafka-health
//! ```
//!
//! # Module map
//!
//! ```text
//! main ─▶ cli ─▶ app ─▶ http ─▶ store ─▶ queue ─▶ events
//!                  │     │       └─▶ optimize (pure)
//!                  │     └─▶ delivery (read)
//!                  ├──▶ publisher ─▶ queue, delivery (write)
//!                  ├──▶ consume ─▶ publisher (RecordSource), store (apply_consumed)
//!                  └──▶ config   (every module reads its own section)
//! ```
//!
//! `http` and `publisher` never import each other; they meet through [`queue`] and [`delivery`].
//! Each external crate sits behind one boundary: warp in [`http`], sled in [`queue`] and
//! [`store`], rskafka in [`publisher::kafka`] and [`publisher::fetch`]; [`optimize`] and [`events`] do no I/O. `.ci/run`
//! checks these boundaries.
//!
//! * [`app`] is the composition root; only it knows every module, and it owns the shutdown order.
//! * [`cli`] parses the command line: `serve`, `config` and the operator commands.
//! * [`config`] holds the typed settings and their layers (defaults, file, `.env`, env, flags).
//! * [`datadir`] owns the runtime directory and its lock.
//! * [`queue`] is the durable outbox and event log; [`events`] the event envelope.
//! * [`publisher`] drains the outbox to Kafka; [`delivery`] is what it knows about Kafka.
//! * [`consume`] applies other producers' Kafka records (`[[kafka.consume]]`) exactly once.
//! * [`store`] keeps routes and vehicles, written atomically with their events through [`queue`].
//! * [`optimize`] is the pure route solver.
//! * [`http`] is the warp API, WebSocket hub and dashboard; [`http::error`] is where errors
//!   become responses.
//! * [`faults`] holds the fault injection points that tests switch on (inert in release builds).
//! * [`metrics`] names every metric; [`telemetry`] sets up `tracing`.

pub mod app;
pub mod cli;
pub mod config;
pub mod consume;
pub mod datadir;
pub mod delivery;
pub mod events;
pub mod faults;
pub mod http;
pub mod metrics;
pub mod optimize;
pub mod publisher;
pub mod queue;
pub mod roads;
pub mod store;
pub mod telemetry;
