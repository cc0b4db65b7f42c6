//! The drain: moves events from the outbox to Kafka, deleting exactly what Kafka acknowledged.
//!
//! ```text
//!            ┌──────────── one round ────────────┐
//!  outbox ──▶│ peek (seq order, after cursor)    │
//!            │ dead-letter corrupt / oversize    │
//!            │ group by (topic, murmur2 partition)│──▶ EventSink::produce, one request per
//!            │                                    │    partition, partitions concurrently
//!            └────────────────────────────────────┘
//!  acked seqs ──▶ outbox.ack, before the next produce     failed ──▶ backoff, breaker, cursor = 0
//!  (the next round's peek is read while this round is on the wire)
//!  not authorized ──▶ that topic pauses: its events stay pending, skipped; retried on a backoff
//! ```
//!
//! # Invariants
//!
//! * **Delete only what was acknowledged.** Sequence numbers go to
//!   [`Outbox::ack`](crate::queue::Outbox::ack) only after the sink returned `Ok` for their batch,
//!   and a round's ack is durable before the next round is produced. A crash between Kafka's ack
//!   and ours re-sends that one round: delivery is at-least-once, duplicates per crash are bounded
//!   by one round (at most `ROUND_REQUESTS` × `batch_max_records` events), and consumers
//!   deduplicate on the CloudEvents `ce_id`.
//! * **Order per key.** A key always maps to the same partition; each partition has at most one
//!   produce in flight, and its events are sent in sequence order. When a partition's batch
//!   fails, the next round starts again from the oldest pending event, so a later event of that
//!   partition can never overtake an earlier one.
//! * **Nothing blocks forever.** Every sink call runs under `request_timeout`; a timed-out or
//!   failed round backs off (capped exponential, jittered) and counts towards the circuit
//!   breaker, which stops calls while open and lets one probe through after the cool-down.
//! * **Never silently stopped.** A round that fails on the outbox is logged, counted
//!   (`routegate_drain_restarts_total`), reported as a stall in the delivery status (so
//!   `kafka-health` says why) and retried after a backoff; the app restarts a drain that
//!   panicked the same way ([`supervise`]).
//! * **Poison never blocks the queue.** Undecodable records, records over `max_record_bytes` and
//!   records the broker rejects as non-retriable go to the dead-letter tree with the reason. A
//!   rejected batch is bisected to isolate the records at fault.
//! * **A missing permission pauses a topic; it never poisons it.** When Kafka refuses routegate's
//!   principal an operation on a topic (`TOPIC_AUTHORIZATION_FAILED`,
//!   `CLUSTER_AUTHORIZATION_FAILED`: [`SinkError::Unauthorized`]), the events are not at fault,
//!   so nothing is dead-lettered: that topic's events stay pending, in order, and the drain scans
//!   past them so other topics keep flowing. The pause is reported (`kafka-health` names the
//!   topic, what is missing and the `kafka-acls` command that grants it;
//!   `routegate_kafka_topic_paused{topic}` is 1) and retried on its own backoff (the drain's
//!   `backoff_initial`..`backoff_max`), oldest event first, so delivery resumes by itself once
//!   the ACL is fixed. A refusal does not count towards the circuit breaker: the broker answered,
//!   so it is reachable, and opening the breaker would stop the topics that may write. How the
//!   cursor moves past paused events and back is described in `publisher/pause.rs`.
//!
//! The sink is a trait so the loop can be tested against an in-memory sink; the real one is
//! [`kafka::KafkaSink`].

pub mod backoff;
pub mod breaker;
mod drain;
pub mod fetch;
pub mod kafka;
pub mod partition;
mod pause;

use std::future::Future;
use std::time::Duration;

use crate::config::KafkaConfig;
use crate::events::Envelope;
use crate::queue;

pub use self::drain::Drainer;

/// Run drains until `cancel`: a drain that panics is reported, counted and replaced by a new
/// one from `make` after a pause (its state is only a cursor; the outbox holds the rest).
pub async fn supervise<S: EventSink>(
    make: impl Fn() -> Drainer<S>,
    status: std::sync::Arc<crate::delivery::Status>,
    cancel: tokio_util::sync::CancellationToken,
) {
    const PAUSE: Duration = Duration::from_secs(1);
    loop {
        let run = tokio::spawn(make().run(cancel.clone()));
        match run.await {
            Ok(()) => return,
            Err(e) => {
                let reason = format!("the drain panicked: {e}; restarting");
                tracing::error!(cause = %e, "drain task failed; restarting it");
                status.stalled(&reason);
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PAUSE) => {}
        }
    }
}

/// A record read from Kafka, as the consumers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: std::collections::BTreeMap<String, Vec<u8>>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// What one fetch of one partition returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// Records at or after the requested offset, in offset order.
    pub records: Vec<SourceRecord>,
    /// The partition's high watermark: the offset the next produced record will get.
    pub high_watermark: i64,
}

/// Why a source call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Try again later (connection, timeout, leader moved, topic not there yet, …).
    #[error("{0}")]
    Retriable(String),
    /// The offset is outside what the partition holds (retention deleted it, or the topic was
    /// recreated): the consumer must pick a new position.
    #[error("offset out of range")]
    OutOfRange,
    /// The broker refused routegate's principal a permission (`READ` or `DESCRIBE`).
    #[error("{0}")]
    Unauthorized(String),
}

/// Where consumers read records from: Kafka ([`fetch::KafkaSource`]) or, in tests, memory.
pub trait RecordSource: Send + Sync + 'static {
    /// The topic's partition count; `Retriable` while the topic does not exist.
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<i32, SourceError>> + Send;
    /// The partition's (earliest, latest) offsets.
    fn bounds(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<(i64, i64), SourceError>> + Send;
    /// Records from `offset` on, waiting up to the configured fetch wait when there are none.
    fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<Fetched, SourceError>> + Send;
}

/// Why a sink call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try again later (connection, timeout, leader moved, topic missing, …).
    #[error("{0}")]
    Retriable(String),
    /// These records will never be accepted (too large, invalid topic).
    #[error("{0}")]
    Rejected(String),
    /// The broker refused routegate's principal a permission: the records are fine, an ACL is
    /// missing. The topic pauses until a retry is allowed.
    #[error("{0}")]
    Unauthorized(Denied),
}

/// Kafka refused routegate's principal an operation: what is missing, and on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The missing ACL operation as `kafka-acls --operation` spells it (`WRITE`, `CREATE`,
    /// `DESCRIBE`, …).
    pub operation: &'static str,
    /// The topic it is missing on, or `None` for the cluster resource.
    pub topic: Option<String>,
    /// Who was refused, as Kafka names principals (`User:routegate`).
    pub principal: String,
    /// The request and the broker's answer.
    pub error: String,
}

impl Denied {
    /// The `kafka-acls` command that grants what is missing, in one go: on a topic routegate
    /// needs `WRITE` anyway (it includes `DESCRIBE`), and `CREATE` too when it was refused
    /// creating a topic it cannot see.
    pub fn fix(&self) -> String {
        let (operations, resource) = match (&self.topic, self.operation) {
            (None, operation) => (vec![operation], "--cluster".to_string()),
            (Some(topic), "CREATE") => (vec!["WRITE", "CREATE"], format!("--topic '{topic}'")),
            (Some(topic), _) => (vec!["WRITE"], format!("--topic '{topic}'")),
        };
        let operations: Vec<String> = operations
            .iter()
            .map(|o| format!("--operation {o}"))
            .collect();
        format!(
            "kafka-acls.sh --bootstrap-server <broker> --add --allow-principal '{}' {} {resource}",
            self.principal,
            operations.join(" ")
        )
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = match &self.topic {
            Some(topic) => format!("topic {topic:?}"),
            None => "the cluster".into(),
        };
        write!(
            f,
            "Kafka refused {} {} on {on} ({})",
            self.principal, self.operation, self.error
        )
    }
}

/// Where the drain sends events. Implementations enforce their own deadlines too.
pub trait EventSink: Send + Sync + 'static {
    /// Number of partitions of `topic`, creating the topic first if it does not exist.
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<i32, SinkError>> + Send;
    /// Write `events` to one partition, in order; `Ok` means the broker acknowledged all of them.
    fn produce(
        &self,
        topic: &str,
        partition: i32,
        events: &[Envelope],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// A cheap round-trip that tells whether Kafka is reachable (used while idle).
    fn probe(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Bytes this event occupies as a record (key, value, headers).
    fn record_size(&self, event: &Envelope) -> usize;
    /// Most bytes this event's record occupies on the wire, inside a record batch: what a
    /// produce request's size is counted in.
    fn wire_size(&self, event: &Envelope) -> usize;
}

/// Why a drain round failed (the drain itself backs off and goes on).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Queue(#[from] queue::Error),
}

/// The drain's knobs, from `[kafka]`.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    pub max_records: usize,
    pub max_bytes: u64,
    pub linger: Duration,
    pub max_record_bytes: u64,
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// While idle, Kafka is probed this often so health reflects reality.
    pub idle_probe: Duration,
    /// How long the last pass at shutdown may take.
    pub shutdown_deadline: Duration,
}

impl From<&KafkaConfig> for DrainConfig {
    fn from(k: &KafkaConfig) -> Self {
        let ms = Duration::from_millis;
        DrainConfig {
            max_records: k.batch_max_records as usize,
            max_bytes: k.batch_max_bytes,
            linger: ms(k.linger_ms),
            max_record_bytes: k.max_record_bytes,
            request_timeout: ms(k.request_timeout_ms),
            backoff_initial: ms(k.backoff_initial_ms),
            backoff_max: ms(k.backoff_max_ms),
            breaker_threshold: k.breaker_failure_threshold,
            breaker_cooldown: ms(k.breaker_cooldown_ms),
            idle_probe: Duration::from_secs(15),
            shutdown_deadline: Duration::from_secs(5),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Nothing was pending.
    Idle,
    /// Everything sent was acknowledged (`published`) or dead-lettered (`dead`); `paused`
    /// events were left pending because Kafka refuses their topic (see [`Denied`]).
    Delivered {
        published: usize,
        dead: usize,
        paused: usize,
    },
    /// Some events could not be sent; they stay pending.
    Failed { error: String, retried: usize },
    /// The breaker is open; nothing was tried.
    CircuitOpen,
}
