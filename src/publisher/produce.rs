//! One round's batch on the wire: sorted into dead letters, paused topics and per-partition
//! groups, then produced, partitions concurrently, each in sequence order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Drainer;
use crate::events::Envelope;
use crate::metrics;
use crate::publisher::{Denied, EventSink, SinkError, partition};
use crate::queue::Peeked;

/// Bytes of a v2 record batch before its first record (base offset through record count).
const RECORD_BATCH_HEADER: u64 = 61;

/// The outcome of producing one partition's batch.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub acked: Vec<u64>,
    pub failed: Vec<u64>,
    pub dead: Vec<(u64, String)>,
    pub error: Option<String>,
    /// Topics Kafka accepted a produce to.
    pub delivered: BTreeSet<String>,
    /// Per topic left pending for a pause (or a refusal): the lowest seq and the count.
    pub paused: BTreeMap<String, (u64, usize)>,
    /// Topics Kafka refused a permission on, this round.
    pub refused: BTreeMap<String, Denied>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.acked.extend(other.acked);
        self.failed.extend(other.failed);
        self.dead.extend(other.dead);
        if self.error.is_none() {
            self.error = other.error;
        }
        self.delivered.extend(other.delivered);
        for (topic, (seq, n)) in other.paused {
            self.pause(&topic, seq, n);
        }
        for (topic, denied) in other.refused {
            self.refused.entry(topic).or_insert(denied);
        }
    }

    /// `n` events of `topic` stay pending for a pause, the lowest being `seq`.
    fn pause(&mut self, topic: &str, seq: u64, n: usize) {
        let entry = self.paused.entry(topic.to_string()).or_insert((seq, 0));
        entry.0 = entry.0.min(seq);
        entry.1 += n;
    }
}

impl<S: EventSink> Drainer<S> {
    /// Sort the batch into dead letters, events of paused topics (left pending) and
    /// per-partition groups, then produce the groups.
    pub(super) async fn deliver(&self, batch: Vec<Peeked>) -> Outcome {
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
            if e.is_local() {
                // Only a recount after a lost `meta` can make a local event pending: it leaves
                // without going to Kafka.
                out.acked.push(e.seq);
                continue;
            }
            let size = self.sink.record_size(&e) as u64;
            if size > self.cfg.max_record_bytes {
                let reason = format!(
                    "record of {size} bytes exceeds kafka.max_record_bytes ({})",
                    self.cfg.max_record_bytes
                );
                out.dead.push((e.seq, reason));
                continue;
            }
            if self.pauses.skips(&e.topic) {
                out.pause(&e.topic, e.seq, 1);
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
                SinkError::Unauthorized(denied) => {
                    out.refused.insert(e.topic.clone(), denied.clone());
                    out.pause(&e.topic, e.seq, 1);
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

    /// Split one partition's events into requests of at most `max_records` records and a
    /// record batch of at most `max_bytes` as encoded (batch header included), in order. A
    /// single record larger than that still gets a request of its own.
    fn requests(&self, events: Vec<Envelope>) -> Vec<Vec<Envelope>> {
        let mut out: Vec<Vec<Envelope>> = Vec::new();
        let mut bytes = 0u64;
        for e in events {
            let size = self.sink.wire_size(&e) as u64;
            let start_new = match out.last() {
                None => true,
                Some(last) => {
                    last.len() >= self.cfg.max_records || bytes + size > self.cfg.max_bytes
                }
            };
            if start_new {
                out.push(Vec::new());
                bytes = RECORD_BATCH_HEADER;
            }
            bytes += size;
            out.last_mut().expect("just pushed").push(e);
        }
        out
    }

    /// Produce one partition's events; on a rejection, split to isolate the culprits. Once a
    /// part fails retriably or is refused, the parts after it are not sent (they would
    /// overtake it).
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
            if !out.refused.is_empty() {
                out.pause(&topic, part[0].seq, part.len());
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
                    out.delivered.insert(topic.clone());
                }
                Err(SinkError::Unauthorized(denied)) => {
                    out.pause(&topic, part[0].seq, part.len());
                    out.refused.insert(topic.clone(), denied);
                }
                Err(SinkError::Retriable(e)) => {
                    out.failed.extend(part.iter().map(|e| e.seq));
                    out.error = Some(e);
                }
                Err(SinkError::Rejected(reason)) if part.len() == 1 => {
                    out.dead.push((part[0].seq, reason));
                }
                Err(SinkError::Rejected(_)) => {
                    metrics::produce_split();
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
