//! The drain loop: rounds of peek → produce → ack, with backoff and the circuit breaker.
//! The invariants it keeps are stated in the [module docs](super).

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::breaker::{Breaker, Circuit};
use super::pause::{Pauses, Refusal};
use super::{DrainConfig, Error, EventSink, Round};
use crate::delivery::Status;
use crate::metrics;
use crate::queue::{self, Outbox, Peeked};

use self::produce::Outcome;

#[path = "produce.rs"]
mod produce;
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
    /// Topics Kafka refuses routegate a permission on: skipped, retried on their own backoff.
    pauses: Pauses,
}

/// A round reads up to this many requests' worth of events, so that every partition can get a
/// full request even when a round's events spread over several partitions.
const ROUND_REQUESTS: usize = 4;

impl<S: EventSink> Drainer<S> {
    pub fn new(outbox: Outbox, sink: Arc<S>, cfg: DrainConfig, status: Arc<Status>) -> Self {
        Drainer {
            breaker: Breaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            pauses: Pauses::new(cfg.backoff_initial, cfg.backoff_max),
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
                Round::Idle => {
                    let probe = self.cfg.idle_probe.saturating_sub(last_contact.elapsed());
                    let retry = self
                        .pauses
                        .next_retry_at()
                        .map(|t| t.saturating_duration_since(Instant::now()));
                    retry.map_or(probe, |r| r.min(probe))
                }
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
        self.pauses.rescan();
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
        if let Some(from) = self.pauses.start_retry(Instant::now(), self.cursor) {
            self.cursor = from;
            self.report_pauses();
        }
        let mut batch = self.peek().await?;
        // Linger only when not even one request is full; a larger batch goes out at once.
        if !batch.is_empty() && batch.len() < self.cfg.max_records && !self.cfg.linger.is_zero() {
            tokio::time::sleep(self.cfg.linger).await;
            batch = self.peek().await?;
        }
        if batch.is_empty() {
            for topic in self.pauses.drained() {
                tracing::info!(
                    topic,
                    "no events of the paused topic are left; its pause ends"
                );
                metrics::topic_paused(&topic, false);
            }
            self.report_pauses();
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
        let paused = self.settle_pauses(&outcome);
        // A round that only skipped paused topics' events never reached Kafka.
        let skipped_only = published == 0 && dead == 0 && outcome.refused.is_empty();
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
            self.pauses.rescan();
            self.breaker.on_failure(Instant::now());
            let circuit = self.breaker.state(Instant::now());
            self.status
                .failure(&error, retried as u64, published as u64, circuit);
            metrics::publish_failed(retried as u64);
            tracing::warn!(error = %error, retried, published, ?circuit, "publish round failed");
            return Ok(Round::Failed { error, retried });
        }
        self.cursor = self.pauses.next_cursor(top);
        // Refusals do not count as failures: the broker answered (see the module docs).
        if !skipped_only {
            self.breaker.on_success();
            self.backoff.reset();
            self.status.success(published as u64, Circuit::Closed);
        }
        Ok(Round::Delivered {
            published,
            dead,
            paused,
        })
    }

    /// Record what the round showed about paused topics: refusals pause (or keep paused) a
    /// topic, a delivery ends its pause. Returns the events left pending for pauses.
    fn settle_pauses(&mut self, outcome: &Outcome) -> usize {
        let now = Instant::now();
        for (topic, denied) in &outcome.refused {
            metrics::authorization_denied(topic);
            let first = outcome.paused.get(topic).map_or(u64::MAX, |p| p.0);
            match self.pauses.refused(topic, denied.clone(), first, now) {
                Refusal::Paused => {
                    metrics::topic_paused(topic, true);
                    tracing::error!(
                        topic, denied = %denied, fix = %denied.fix(),
                        "Kafka refused routegate a permission: delivery to the topic is paused, \
                         its events stay queued and it is retried until the ACL is granted"
                    );
                }
                Refusal::StillPaused => {
                    tracing::warn!(topic, denied = %denied, "the paused topic is still refused")
                }
            }
        }
        for (topic, (seq, _)) in &outcome.paused {
            if !outcome.refused.contains_key(topic) {
                self.pauses.left_pending(topic, *seq);
            }
        }
        for topic in &outcome.delivered {
            if !outcome.refused.contains_key(topic) && self.pauses.delivered(topic) {
                metrics::topic_paused(topic, false);
                tracing::info!(topic, "Kafka accepts the topic again: delivery resumed");
            }
        }
        self.report_pauses();
        outcome.paused.values().map(|p| p.1).sum()
    }

    fn report_pauses(&mut self) {
        if let Some(list) = self.pauses.report(Instant::now()) {
            self.status.paused(list);
        }
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
}
