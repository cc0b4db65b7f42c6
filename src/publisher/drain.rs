//! The drain loop: rounds of peek → produce → ack, with backoff and the circuit breaker.
//! The invariants it keeps are stated in the [module docs](super).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::breaker::{Breaker, Circuit};
use super::{DrainConfig, Error, EventSink, Round, SinkError, partition};
use crate::delivery::Status;
use crate::events::Envelope;
use crate::metrics;
use crate::queue::{self, Outbox, Peeked};

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

/// The drain loop and its state.
#[derive(Debug)]
pub struct Drainer<S> {
    outbox: Outbox,
    sink: Arc<S>,
    cfg: DrainConfig,
    breaker: Breaker,
    backoff: Backoff,
    status: Arc<Status>,
    /// Highest sequence number already sent in a successful round; the next peek starts above.
    cursor: u64,
    /// The next round's peek (events after `.0`), read while this round's produce is in flight.
    prefetch: Option<(u64, JoinHandle<queue::Result<Vec<Peeked>>>)>,
}

/// A round reads up to this many requests' worth of events, so that every partition can get a
/// full request even when a round's events spread over several partitions.
const ROUND_REQUESTS: usize = 4;

/// The outcome of producing one partition's batch.
#[derive(Debug, Default)]
struct Outcome {
    acked: Vec<u64>,
    failed: Vec<u64>,
    dead: Vec<(u64, String)>,
    error: Option<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.acked.extend(other.acked);
        self.failed.extend(other.failed);
        self.dead.extend(other.dead);
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

impl<S: EventSink> Drainer<S> {
    pub fn new(outbox: Outbox, sink: Arc<S>, cfg: DrainConfig, status: Arc<Status>) -> Self {
        Drainer {
            breaker: Breaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            outbox,
            sink,
            cfg,
            status,
            cursor: 0,
            prefetch: None,
        }
    }

    /// Drain until cancelled, then make a last pass under `shutdown_deadline` if Kafka looked
    /// healthy. Cancellation interrupts a round at once: nothing is acked that Kafka did not
    /// acknowledge, so an interrupted produce at worst sends a batch twice. A round that fails
    /// on the outbox (storage) is reported as a stall, backed off and retried: the drain never
    /// ends before cancellation.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut last_contact = Instant::now() - self.cfg.idle_probe;
        let mut healthy = true;
        loop {
            let round = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                r = self.round() => r,
            };
            let round = match round {
                Ok(round) => {
                    self.status.unstalled();
                    round
                }
                Err(e) => {
                    let wait = self.stalled(&e);
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            healthy = matches!(round, Round::Delivered { .. } | Round::Idle);
            let wait = match round {
                Round::Delivered { .. } => {
                    last_contact = Instant::now();
                    continue;
                }
                Round::Idle if last_contact.elapsed() >= self.cfg.idle_probe => {
                    last_contact = Instant::now();
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = self.probe() => {}
                    }
                    continue;
                }
                Round::Idle => self.cfg.idle_probe.saturating_sub(last_contact.elapsed()),
                Round::Failed { .. } => self.backoff.next_delay(),
                Round::CircuitOpen => self
                    .breaker
                    .retry_at()
                    .map_or(self.cfg.breaker_cooldown, |t| {
                        t.saturating_duration_since(Instant::now())
                    }),
            };
            let idle = matches!(round, Round::Idle);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.outbox.appended(), if idle => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if healthy && self.breaker.state(Instant::now()) == Circuit::Closed {
            self.last_pass().await;
        }
    }

    /// A round failed on the outbox: report, forget what was read ahead, and say how long to
    /// wait before the next try.
    fn stalled(&mut self, e: &Error) -> std::time::Duration {
        let reason = format!("the drain failed on the outbox: {e}; retrying");
        tracing::error!(cause = %e, "drain round failed; retrying after a pause");
        self.status.stalled(&reason);
        self.cursor = 0;
        self.prefetch = None;
        self.backoff.next_delay()
    }

    /// At shutdown: deliver what is possible within the deadline; the rest stays on disk.
    async fn last_pass(&mut self) {
        let deadline = self.cfg.shutdown_deadline;
        let pass = async { while let Ok(Round::Delivered { .. }) = self.round().await {} };
        if tokio::time::timeout(deadline, pass).await.is_err() {
            tracing::info!("last drain pass stopped at its deadline; the rest stays queued");
        }
    }

    /// One round: peek, produce, ack. Public so tests can drive the drain step by step.
    pub async fn round(&mut self) -> Result<Round, Error> {
        let permitted = self.breaker.permits(Instant::now());
        self.status.circuit(self.breaker.state(Instant::now()));
        if !permitted {
            return Ok(Round::CircuitOpen);
        }
        let mut batch = self.peek().await?;
        // Linger only when not even one request is full; a larger batch goes out at once.
        if !batch.is_empty() && batch.len() < self.cfg.max_records && !self.cfg.linger.is_zero() {
            tokio::time::sleep(self.cfg.linger).await;
            batch = self.peek().await?;
        }
        if batch.is_empty() {
            if self.breaker.state(Instant::now()) == Circuit::HalfOpen {
                self.probe().await;
            }
            return Ok(Round::Idle);
        }
        let top = batch.last().map(Peeked::seq).unwrap_or(self.cursor);
        if batch.len() >= self.cfg.max_records {
            // Likely more behind: read it while this round is on the wire.
            self.prefetch = Some((top, self.spawn_peek(top)));
        }
        let (started, n) = (Instant::now(), batch.len());
        let outcome = self.deliver(batch).await;
        tracing::debug!(
            events = n,
            took_ms = started.elapsed().as_millis() as u64,
            "round"
        );
        let (published, dead) = (outcome.acked.len(), outcome.dead.len());
        self.status.dead_lettered(dead as u64);
        metrics::dead_lettered(dead as u64);
        if let Some((seq, reason)) = outcome.dead.first() {
            tracing::warn!(seq, reason = %reason, count = dead, "events dead-lettered");
        }
        // Ack before the next produce: at most one round is ever in Kafka but not yet removed
        // here, which bounds the duplicates a crash can cause to that one round.
        self.outbox.dead_letter(outcome.dead).await?;
        self.outbox.ack(outcome.acked).await?;
        if !outcome.failed.is_empty() {
            let error = outcome.error.unwrap_or_else(|| "unknown failure".into());
            let retried = outcome.failed.len();
            self.outbox.record_failure(outcome.failed).await?;
            self.cursor = 0;
            self.prefetch = None;
            self.breaker.on_failure(Instant::now());
            let circuit = self.breaker.state(Instant::now());
            self.status
                .failure(&error, retried as u64, published as u64, circuit);
            metrics::publish_failed(retried as u64);
            tracing::warn!(error = %error, retried, published, ?circuit, "publish round failed");
            return Ok(Round::Failed { error, retried });
        }
        self.cursor = top;
        self.breaker.on_success();
        self.backoff.reset();
        self.status.success(published as u64, Circuit::Closed);
        Ok(Round::Delivered { published, dead })
    }

    /// Events after the cursor: the prefetched ones if they start there, else a fresh read.
    async fn peek(&mut self) -> Result<Vec<Peeked>, Error> {
        let handle = match self.prefetch.take() {
            Some((after, handle)) if after == self.cursor => handle,
            _ => self.spawn_peek(self.cursor),
        };
        let peeked = handle.await.map_err(queue::Error::from)??;
        Ok(peeked)
    }

    fn spawn_peek(&self, after: u64) -> JoinHandle<queue::Result<Vec<Peeked>>> {
        let outbox = self.outbox.clone();
        let records = self.cfg.max_records * ROUND_REQUESTS;
        let bytes = self.cfg.max_bytes * ROUND_REQUESTS as u64;
        tokio::task::spawn_blocking(move || outbox.peek_after(after, records, bytes))
    }

    async fn probe(&mut self) {
        match tokio::time::timeout(self.cfg.request_timeout, self.sink.probe()).await {
            Ok(Ok(())) => {
                self.breaker.on_success();
                self.status.success(0, Circuit::Closed);
            }
            Ok(Err(e)) => self.probe_failed(&e.to_string()),
            Err(_) => self.probe_failed("probe timed out"),
        }
    }

    fn probe_failed(&mut self, error: &str) {
        self.breaker.on_failure(Instant::now());
        let circuit = self.breaker.state(Instant::now());
        self.status.failure(error, 0, 0, circuit);
        tracing::debug!(error, "kafka probe failed");
    }

    /// Sort the batch into dead letters and per-partition groups, then produce the groups.
    async fn deliver(&self, batch: Vec<Peeked>) -> Outcome {
        let mut out = Outcome::default();
        let mut groups: BTreeMap<(String, i32), Vec<Envelope>> = BTreeMap::new();
        let mut broken_topics: BTreeMap<String, SinkError> = BTreeMap::new();
        for p in batch {
            let e = match p {
                Peeked::Corrupt { seq, reason } => {
                    out.dead.push((seq, reason));
                    continue;
                }
                Peeked::Event(e) => e,
            };
            let size = self.sink.record_size(&e) as u64;
            if size > self.cfg.max_record_bytes {
                let reason = format!(
                    "record of {size} bytes exceeds kafka.max_record_bytes ({})",
                    self.cfg.max_record_bytes
                );
                out.dead.push((e.seq, reason));
                continue;
            }
            if !broken_topics.contains_key(&e.topic) {
                match self.partitions(&e.topic).await {
                    Ok(n) => {
                        let p = partition::partition_for_key(e.key.as_bytes(), n);
                        groups.entry((e.topic.clone(), p)).or_default().push(e);
                        continue;
                    }
                    Err(err) => {
                        broken_topics.insert(e.topic.clone(), err);
                    }
                }
            }
            match &broken_topics[&e.topic] {
                SinkError::Rejected(r) => out.dead.push((e.seq, r.clone())),
                SinkError::Retriable(r) => {
                    out.failed.push(e.seq);
                    out.error.get_or_insert_with(|| r.clone());
                }
            }
        }
        let sends = groups
            .into_iter()
            .map(|((topic, p), events)| self.produce_bisecting(topic, p, events));
        for o in futures_util::future::join_all(sends).await {
            out.merge(o);
        }
        out
    }

    async fn partitions(&self, topic: &str) -> Result<i32, SinkError> {
        match tokio::time::timeout(self.cfg.request_timeout, self.sink.partitions(topic)).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::Retriable(format!(
                "metadata for {topic} timed out"
            ))),
        }
    }

    /// Split one partition's events into requests of at most `max_records` and about
    /// `max_bytes`, in order.
    fn requests(&self, events: Vec<Envelope>) -> Vec<Vec<Envelope>> {
        let mut out: Vec<Vec<Envelope>> = Vec::new();
        let mut bytes = 0u64;
        for e in events {
            let size = self.sink.record_size(&e) as u64;
            let start_new = match out.last() {
                None => true,
                Some(last) => {
                    last.len() >= self.cfg.max_records || bytes + size > self.cfg.max_bytes
                }
            };
            if start_new {
                out.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            out.last_mut().expect("just pushed").push(e);
        }
        out
    }

    /// Produce one partition's events; on a rejection, split to isolate the culprits. Once a
    /// part fails retriably, the parts after it are not sent (they would overtake it).
    async fn produce_bisecting(
        &self,
        topic: String,
        partition: i32,
        events: Vec<Envelope>,
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut work = self.requests(events);
        work.reverse();
        while let Some(part) = work.pop() {
            if out.error.is_some() {
                out.failed.extend(part.iter().map(|e| e.seq));
                continue;
            }
            let started = Instant::now();
            let sent = tokio::time::timeout(
                self.cfg.request_timeout,
                self.sink.produce(&topic, partition, &part),
            )
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Retriable(format!(
                    "produce to {topic}/{partition} timed out"
                )))
            });
            match sent {
                Ok(()) => {
                    metrics::published(part.len() as u64, started.elapsed());
                    out.acked.extend(part.iter().map(|e| e.seq));
                }
                Err(SinkError::Retriable(e)) => {
                    out.failed.extend(part.iter().map(|e| e.seq));
                    out.error = Some(e);
                }
                Err(SinkError::Rejected(reason)) if part.len() == 1 => {
                    out.dead.push((part[0].seq, reason));
                }
                Err(SinkError::Rejected(_)) => {
                    let mut part = part;
                    let second = part.split_off(part.len() / 2);
                    work.push(second);
                    work.push(part);
                }
            }
        }
        out
    }
}
