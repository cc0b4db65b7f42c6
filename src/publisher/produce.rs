//! One round's batch on the wire: sorted into dead letters and per-partition groups, then
//! produced, partitions concurrently, each in sequence order.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Drainer;
use crate::events::Envelope;
use crate::metrics;
use crate::publisher::{EventSink, SinkError, partition};
use crate::queue::Peeked;

/// The outcome of producing one partition's batch.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub acked: Vec<u64>,
    pub failed: Vec<u64>,
    pub dead: Vec<(u64, String)>,
    pub error: Option<String>,
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
    /// Sort the batch into dead letters and per-partition groups, then produce the groups.
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
