//! Consumers: other systems' Kafka records applied at the depot, exactly once.
//!
//! Each `[[kafka.consume]]` entry reads every partition of its topic, one task per partition,
//! from a [`RecordSource`] (Kafka: [`crate::publisher::fetch::KafkaSource`]). A task loops:
//!
//! ```text
//!  stored position ──▶ fetch (deadline) ──▶ handler: effect per record ──▶ store.apply_consumed
//!        ▲               (no position yet: `start` = earliest | latest)    (effects + new position,
//!        └──────────────────────────────────────────────────────────────── one transaction)
//! ```
//!
//! # Invariants
//!
//! * **Exactly-once effect.** The effects of a batch and the partition's new position commit
//!   together, and only if the stored position is still the batch's start
//!   ([`crate::store::consumed`]). A crash, `kill -9` or power cut before the commit leaves the
//!   old position, so the batch is fetched and applied again from there; after it, the new
//!   position, so it is not.
//! * **Never in the way.** Consumers run on their own tasks; the outbox writer applies a batch
//!   as one group-committed request, like an HTTP write. Their events are local (never sent
//!   back to Kafka), so they never fill the outbox.
//! * **Same discipline as the drain.** Every Kafka call runs under a deadline; failures back off
//!   (capped exponential with jitter) and open a per-partition circuit breaker. A position
//!   outside what the partition still holds (retention) restarts at its earliest record, with a
//!   warning and the jump counted as skipped.
//! * **Poison flows past.** A record the handler cannot use is dead-lettered with the reason in
//!   the same transaction that moves past it.
//! * **Routes before their changes.** Whole routes and stop changes travel on different topics,
//!   so a `routes` partition may read a change before its route. It stops there and looks
//!   again every 200 ms for up to [`ROUTE_ORDER_GRACE`]; then the change is dead-lettered.
//!
//! The partition count is read when a consumer starts; partitions added later are read after a
//! restart.

pub mod handlers;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{ConsumeConfig, ConsumeStart, KafkaConfig};
use crate::metrics;
use crate::publisher::backoff::Backoff;
use crate::publisher::breaker::Breaker;
use crate::publisher::{RecordSource, SourceError};
use crate::store::Store;
use crate::store::consumed::{ApplyError, ConsumedBatch};
use handlers::Handler;

/// How long a `routes` partition holds a stop change whose route (or earlier version) has
/// not arrived from the other topic before it dead-letters it.
pub const ROUTE_ORDER_GRACE: Duration = Duration::from_secs(60);
/// How often it looks again meanwhile.
const ROUTE_ORDER_RETRY: Duration = Duration::from_millis(200);

/// What one partition's consumer is doing, for `kafka-health`, `queue stats` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub handler: String,
    /// The stored position: the offset of the next record to apply.
    pub next_offset: Option<i64>,
    pub high_watermark: Option<i64>,
    /// `high_watermark - next_offset`: records not applied yet.
    pub lag: Option<i64>,
    pub applied: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    /// `running`, or `retrying` after a failure (with `lastError`).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Every consumer's state; topics that could not start yet appear with partition `-1`.
#[derive(Debug, Default)]
pub struct Status {
    partitions: Mutex<BTreeMap<(String, i32), PartitionState>>,
}

impl Status {
    pub fn snapshot(&self) -> Vec<PartitionState> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, i32), PartitionState>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with(&self, topic: &str, partition: i32, f: impl FnOnce(&mut PartitionState)) {
        let mut map = self.lock();
        let entry = map
            .entry((topic.to_string(), partition))
            .or_insert_with(|| PartitionState {
                topic: topic.to_string(),
                partition,
                state: "starting",
                ..PartitionState::default()
            });
        f(entry);
    }

    fn failed(&self, topic: &str, partition: i32, handler: &str, e: &str) {
        self.with(topic, partition, |s| {
            s.handler = handler.to_string();
            s.state = "retrying";
            s.last_error = Some(e.to_string());
        });
    }
}

/// Backoff and breaker settings, the drain's own (`kafka.backoff_*`, `kafka.breaker_*`).
#[derive(Debug, Clone, Copy)]
pub struct Discipline {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl From<&KafkaConfig> for Discipline {
    fn from(k: &KafkaConfig) -> Self {
        Discipline {
            backoff_initial: Duration::from_millis(k.backoff_initial_ms),
            backoff_max: Duration::from_millis(k.backoff_max_ms),
            breaker_threshold: k.breaker_failure_threshold,
            breaker_cooldown: Duration::from_millis(k.breaker_cooldown_ms),
        }
    }
}

/// Start one consumer per entry of `configs`; they run until `cancel`. Returns their status
/// and the tasks to wait for at shutdown.
pub fn start<S: RecordSource>(
    configs: &[ConsumeConfig],
    own_source: &str,
    depot: &str,
    discipline: Discipline,
    source: Arc<S>,
    store: Store,
    cancel: CancellationToken,
) -> (Arc<Status>, tokio_util::task::TaskTracker) {
    let status = Arc::new(Status::default());
    let tasks = tokio_util::task::TaskTracker::new();
    for config in configs {
        let consumer = Consumer {
            handler: Arc::new(Handler {
                config: config.clone(),
                own_source: own_source.to_string(),
                depot: depot.to_string(),
            }),
            discipline,
            source: source.clone(),
            store: store.clone(),
            status: status.clone(),
            cancel: cancel.clone(),
        };
        tasks.spawn(consumer.run(tasks.clone()));
    }
    tasks.close();
    (status, tasks)
}

struct Consumer<S> {
    handler: Arc<Handler>,
    discipline: Discipline,
    source: Arc<S>,
    store: Store,
    status: Arc<Status>,
    cancel: CancellationToken,
}

impl<S> Clone for Consumer<S> {
    fn clone(&self) -> Self {
        Consumer {
            handler: self.handler.clone(),
            discipline: self.discipline,
            source: self.source.clone(),
            store: self.store.clone(),
            status: self.status.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

/// Why a step of a partition's loop failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl<S: RecordSource> Consumer<S> {
    fn topic(&self) -> &str {
        &self.handler.config.topic
    }

    fn handler_name(&self) -> &'static str {
        match self.handler.config.handler {
            crate::config::ConsumeHandler::Forward => "forward",
            crate::config::ConsumeHandler::Positions => "positions",
            crate::config::ConsumeHandler::Routes => "routes",
        }
    }

    /// Find the partitions (retrying until the topic exists), then read each on its own task.
    async fn run(self, tasks: tokio_util::task::TaskTracker) {
        let mut backoff =
            Backoff::new(self.discipline.backoff_initial, self.discipline.backoff_max);
        let partitions = loop {
            match self.source.partitions(self.topic()).await {
                Ok(n) => break n,
                Err(e) => {
                    self.status
                        .failed(self.topic(), -1, self.handler_name(), &e.to_string());
                    tracing::warn!(topic = self.topic(), error = %e, "cannot start consuming; retrying");
                    if !self.pause(backoff.next_delay()).await {
                        return;
                    }
                }
            }
        };
        self.status.lock().remove(&(self.topic().to_string(), -1));
        tracing::info!(
            topic = self.topic(),
            partitions,
            handler = self.handler_name(),
            "consuming"
        );
        for p in 0..partitions {
            tasks.spawn(self.clone().partition(p));
        }
    }

    /// Sleep `d` unless cancelled first; `false` when cancelled.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    async fn partition(self, p: i32) {
        let d = self.discipline;
        let mut backoff = Backoff::new(d.backoff_initial, d.backoff_max);
        let mut breaker = Breaker::new(d.breaker_threshold, d.breaker_cooldown);
        let mut stored: Option<Option<i64>> = None;
        let mut waiting: Option<Instant> = None;
        self.status
            .with(self.topic(), p, |s| s.handler = self.handler_name().into());
        while !self.cancel.is_cancelled() {
            if !breaker.permits(Instant::now()) {
                let wait = breaker.retry_at().map_or(d.breaker_cooldown, |at| {
                    at.saturating_duration_since(Instant::now())
                });
                if !self.pause(wait.max(Duration::from_millis(10))).await {
                    return;
                }
                continue;
            }
            let step = tokio::select! {
                () = self.cancel.cancelled() => return,
                r = self.step(p, &mut stored, &mut waiting) => r,
            };
            match step {
                Ok(()) => {
                    breaker.on_success();
                    backoff.reset();
                }
                Err(e) => {
                    stored = None;
                    if !matches!(e, StepError::Apply(ApplyError::Moved { .. })) {
                        breaker.on_failure(Instant::now());
                    }
                    let e = e.to_string();
                    self.status.failed(self.topic(), p, self.handler_name(), &e);
                    tracing::warn!(topic = self.topic(), partition = p, error = %e, "consumer step failed; retrying");
                    if !self.pause(backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    /// One fetch and its application. `stored` caches the stored position (`None`: read it).
    ///
    /// `waiting`: since when the partition waits for a route its next record changes.
    async fn step(
        &self,
        p: i32,
        stored: &mut Option<Option<i64>>,
        waiting: &mut Option<Instant>,
    ) -> Result<(), StepError> {
        let topic = self.topic();
        let cached = match *stored {
            Some(s) => s,
            None => {
                let s = self.store.consumer_position(topic, p).await?;
                *stored = Some(s);
                s
            }
        };
        let from = match cached {
            Some(o) => o,
            None => {
                let (earliest, latest) = self.source.bounds(topic, p).await?;
                let start = match self.handler.config.start {
                    ConsumeStart::Earliest => earliest,
                    ConsumeStart::Latest => latest,
                };
                // Stored before reading, so `latest` means the end when the consumer first
                // started, not wherever the partition has got to at the first record.
                self.jump(p, None, start, stored).await?;
                start
            }
        };
        let fetched = match self.source.fetch(topic, p, from).await {
            Err(SourceError::OutOfRange) => {
                let (earliest, latest) = self.source.bounds(topic, p).await?;
                let restart = if from < earliest { earliest } else { latest };
                tracing::warn!(
                    topic,
                    partition = p,
                    position = from,
                    restart,
                    "the stored position is outside what the partition holds (retention?): \
                     going on from its earliest record"
                );
                self.jump(p, Some(from), restart, stored).await?;
                metrics::consumer_records(topic, "skipped", (restart - from).unsigned_abs());
                return Ok(());
            }
            other => other?,
        };
        let from = Some(from);
        let hw = fetched.high_watermark;
        let Some(last) = fetched.records.last().map(|r| r.offset) else {
            self.observed(p, from, hw, Default::default());
            return Ok(());
        };
        let effects = fetched
            .records
            .iter()
            .map(|r| (r.offset, self.handler.effect(p, r)))
            .collect();
        let patient = waiting.is_none_or(|since| since.elapsed() < ROUTE_ORDER_GRACE);
        let batch = ConsumedBatch {
            topic: topic.to_string(),
            partition: p,
            from,
            next: last + 1,
            effects,
            wait_for_routes: patient,
        };
        let applied = self.store.apply_consumed(batch).await?;
        let next = applied.stopped_at.unwrap_or(last + 1);
        *stored = Some(Some(next));
        self.observed(p, Some(next), hw, applied);
        if applied.stopped_at.is_some() {
            // A stop change came before its route, which travels on another topic.
            waiting.get_or_insert_with(Instant::now);
            self.pause(ROUTE_ORDER_RETRY).await;
        } else {
            *waiting = None;
        }
        Ok(())
    }

    /// Store `to` as the partition's position without applying anything: the first position
    /// (`from` = `None`) or a restart after retention.
    async fn jump(
        &self,
        p: i32,
        from: Option<i64>,
        to: i64,
        stored: &mut Option<Option<i64>>,
    ) -> Result<(), StepError> {
        let batch = ConsumedBatch {
            topic: self.topic().to_string(),
            partition: p,
            from,
            next: to,
            effects: Vec::new(),
            wait_for_routes: false,
        };
        self.store.apply_consumed(batch).await?;
        *stored = Some(Some(to));
        self.status
            .with(self.topic(), p, |s| s.next_offset = Some(to));
        Ok(())
    }

    fn observed(
        &self,
        p: i32,
        next: Option<i64>,
        hw: i64,
        applied: crate::store::consumed::Applied,
    ) {
        let topic = self.topic();
        let lag = next.map(|n| (hw - n).max(0));
        metrics::consumer_lag(topic, p, lag.unwrap_or(hw));
        metrics::consumer_records(topic, "applied", applied.applied);
        metrics::consumer_records(topic, "skipped", applied.skipped);
        metrics::consumer_records(topic, "dead_lettered", applied.dead_lettered);
        self.status.with(topic, p, |s| {
            s.next_offset = next;
            s.high_watermark = Some(hw);
            s.lag = lag;
            s.applied += applied.applied;
            s.skipped += applied.skipped;
            s.dead_lettered += applied.dead_lettered;
            s.state = "running";
            s.last_error = None;
        });
    }
}
