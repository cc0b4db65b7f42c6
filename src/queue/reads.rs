//! Reads: everything but the writer looks at the trees through these.
//!
//! Reads never take the writer's path: sled readers are concurrent with its transaction. They are
//! blocking calls; async callers run them on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::codec::{self, CodecError};
use super::writer::{self, MetaV1};
use super::{Counters, Outbox, Result, Shared};
use crate::events::Envelope;

/// An outbox entry as the publisher sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Peeked {
    Event(Envelope),
    /// The stored bytes cannot be decoded; the publisher dead-letters it with this reason.
    Corrupt {
        seq: u64,
        reason: String,
    },
}

impl Peeked {
    pub fn seq(&self) -> u64 {
        match self {
            Peeked::Event(e) => e.seq,
            Peeked::Corrupt { seq, .. } => *seq,
        }
    }
}

/// A page of the event log, or the news that the requested start was pruned.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    Events(Vec<Arc<Envelope>>),
    /// Events after the requested sequence number were pruned; reload state another way.
    Reset {
        oldest_available: u64,
    },
}

/// Queue figures for health, metrics and the operator CLI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub log_events: u64,
    pub log_bytes: u64,
    pub dead_letters: u64,
    /// Highest durable sequence number (0 before the first event).
    pub durable_seq: u64,
    /// Creation time of the oldest event still waiting for Kafka, in µs since the epoch.
    pub oldest_pending_us: Option<i64>,
    /// Flushes (fsyncs) since start.
    pub flushes: u64,
    /// Why the outbox can no longer write ([`Outbox::failure`]), `None` while it can.
    pub failure: Option<String>,
}

/// A dead letter with its event decoded when possible.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub seq: u64,
    pub reason: String,
    pub dead_at_us: i64,
    pub attempts: u32,
    /// `None` when the raw bytes are not a decodable event (the reason says why).
    pub event: Option<Envelope>,
    pub raw_len: usize,
}

impl Shared {
    pub(super) fn publish_counters(&self, m: &MetaV1) {
        let c: &Counters = &self.counters;
        c.pending_events.store(m.pending_events, Ordering::SeqCst);
        c.pending_bytes.store(m.pending_bytes, Ordering::SeqCst);
        c.log_events.store(m.log_events, Ordering::SeqCst);
        c.log_bytes.store(m.log_bytes, Ordering::SeqCst);
        c.dead_letters.store(m.dead_letters, Ordering::SeqCst);
        c.prune_floor.store(m.prune_floor, Ordering::SeqCst);
    }

    /// After a durable commit: counters, then the durable mark, then live subscribers, in that
    /// order, so a subscriber that reads the mark after subscribing misses nothing.
    pub(super) fn after_commit(&self, m: &MetaV1, events: &[Arc<Envelope>]) {
        self.publish_counters(m);
        self.counters
            .durable_seq
            .store(m.next_seq.saturating_sub(1), Ordering::SeqCst);
        for e in events {
            crate::metrics::events_enqueued(&e.kind, 1);
            let _no_subscribers = self.live.send(e.clone());
        }
        if !events.is_empty() {
            self.appended.notify_one();
        }
    }
}

/// The persisted meta state, or a recount of the trees when it is missing or unreadable.
pub(super) fn load_meta(shared: &Shared) -> Result<MetaV1> {
    if let Some(raw) = shared.trees.meta.get(b"state")? {
        if let Some(meta) = writer::decode_meta(&raw) {
            return Ok(meta);
        }
        tracing::warn!("outbox meta state unreadable; recounting the trees");
    }
    recount(shared)
}

fn recount(shared: &Shared) -> Result<MetaV1> {
    let t = &shared.trees;
    let mut m = MetaV1 {
        next_seq: 1,
        ..MetaV1::default()
    };
    let mut bump = |key: &[u8]| {
        if let Ok(seq) = codec::seq_of(key) {
            m.next_seq = m.next_seq.max(seq + 1);
        }
    };
    let (mut log_events, mut log_bytes, mut pending_events, mut pending_bytes, mut dead) =
        (0, 0, 0, 0, 0);
    for kv in t.events.iter() {
        let (k, v) = kv?;
        bump(&k);
        log_events += 1;
        log_bytes += v.len() as u64;
    }
    for kv in t.pending.iter() {
        let (k, v) = kv?;
        bump(&k);
        pending_events += 1;
        pending_bytes += writer::parse_pending(&v).1;
    }
    for kv in t.dead.iter() {
        bump(&kv?.0);
        dead += 1;
    }
    let floor = match t.events.first()? {
        Some((k, _)) => codec::seq_of(&k).unwrap_or(1),
        None => m.next_seq,
    };
    Ok(MetaV1 {
        log_events,
        log_bytes,
        pending_events,
        pending_bytes,
        dead_letters: dead,
        prune_floor: floor,
        ..m
    })
}

impl Outbox {
    /// The oldest pending events, in sequence order, up to `max_records` or about `max_bytes`
    /// (at least one).
    pub fn peek(&self, max_records: usize, max_bytes: u64) -> Result<Vec<Peeked>> {
        self.peek_after(0, max_records, max_bytes)
    }

    /// Like [`Outbox::peek`], for pending events with `seq > after`.
    pub fn peek_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Vec<Peeked>> {
        crate::faults::check("outbox-peek", &self.shared.path).map_err(sled::Error::Io)?;
        let t = &self.shared.trees;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for kv in t.pending.range(codec::key(after.saturating_add(1))..) {
            let (key, value) = kv?;
            if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            let (attempts, len) = writer::parse_pending(&value);
            bytes += len;
            let seq = codec::seq_of(&key).unwrap_or_default();
            out.push(match t.events.get(&key)? {
                None => Peeked::Corrupt {
                    seq,
                    reason: "pending event missing from the event log".into(),
                },
                Some(raw) => match codec::decode_envelope(&raw) {
                    Ok(env) => Peeked::Event(Envelope { attempts, ..env }),
                    Err(e) => Peeked::Corrupt {
                        seq,
                        reason: corrupt_reason(&e),
                    },
                },
            });
        }
        Ok(out)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            pending_events: c.pending_events.load(Ordering::SeqCst),
            pending_bytes: c.pending_bytes.load(Ordering::SeqCst),
            log_events: c.log_events.load(Ordering::SeqCst),
            log_bytes: c.log_bytes.load(Ordering::SeqCst),
            dead_letters: c.dead_letters.load(Ordering::SeqCst),
            durable_seq: c.durable_seq.load(Ordering::SeqCst),
            oldest_pending_us: self.oldest_pending_us(),
            flushes: c.flushes.load(Ordering::Relaxed),
            failure: self.failure(),
        }
    }

    fn oldest_pending_us(&self) -> Option<i64> {
        let t = &self.shared.trees;
        let (key, _) = t.pending.first().ok()??;
        let raw = t.events.get(key).ok()??;
        codec::decode_envelope(&raw).ok().map(|e| e.created_at_us)
    }

    /// Bytes sled occupies on disk (it never shrinks; see the README).
    pub fn disk_bytes(&self) -> u64 {
        self.shared.db.size_on_disk().unwrap_or(0)
    }

    /// Highest sequence number that is durable; replay up to here, then follow [`Outbox::subscribe`].
    pub fn durable_seq(&self) -> u64 {
        self.shared.counters.durable_seq.load(Ordering::SeqCst)
    }

    /// Up to `limit` logged events with `after < seq <= upto`, or [`Replay::Reset`] if some of
    /// them were pruned. Corrupt log entries are skipped (and logged).
    pub fn replay(&self, after: u64, upto: u64, limit: usize) -> Result<Replay> {
        let floor = self.shared.counters.prune_floor.load(Ordering::SeqCst);
        if after.saturating_add(1) < floor {
            return Ok(Replay::Reset {
                oldest_available: floor,
            });
        }
        let mut out = Vec::new();
        if after >= upto {
            return Ok(Replay::Events(out));
        }
        let range = codec::key(after + 1)..=codec::key(upto);
        for kv in self.shared.trees.events.range(range).take(limit) {
            let (key, raw) = kv?;
            match codec::decode_envelope(&raw) {
                Ok(env) => out.push(Arc::new(env)),
                Err(e) => tracing::warn!(key = ?key, cause = %e, "skipping corrupt log entry"),
            }
        }
        Ok(Replay::Events(out))
    }

    /// The logged events of one route, oldest first (as far as retention kept them).
    pub fn route_events(&self, route_id: &str, limit: usize) -> Result<Vec<Envelope>> {
        let mut prefix = route_id.as_bytes().to_vec();
        prefix.push(0);
        let t = &self.shared.trees;
        let mut out = Vec::new();
        for kv in t.route_events.scan_prefix(&prefix) {
            let (key, _) = kv?;
            if out.len() >= limit {
                break;
            }
            let Some(raw) = t.events.get(&key[prefix.len()..])? else {
                continue;
            };
            if let Ok(env) = codec::decode_envelope(&raw) {
                out.push(env);
            }
        }
        Ok(out)
    }

    /// Dead letters with `seq > after`, oldest first.
    pub fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>> {
        self.dead_letters_page(after, limit, u64::MAX)
    }

    /// Dead letters with `seq > after`, oldest first, stopping once their stored bytes reach
    /// `max_bytes` (at least one is returned): page on with the last `seq`.
    pub fn dead_letters_page(
        &self,
        after: u64,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let start = codec::key(after.saturating_add(1));
        for kv in self.shared.trees.dead.range(start..).take(limit) {
            if bytes >= max_bytes && !out.is_empty() {
                break;
            }
            let (key, raw) = kv?;
            bytes += raw.len() as u64;
            out.push(dead_letter(codec::seq_of(&key).unwrap_or_default(), &raw));
        }
        Ok(out)
    }

    pub fn dead_letter_by_seq(&self, seq: u64) -> Result<Option<DeadLetter>> {
        let raw = self.shared.trees.dead.get(codec::key(seq))?;
        Ok(raw.map(|raw| dead_letter(seq, &raw)))
    }
}

#[cfg(test)]
impl Outbox {
    /// Replace a stored event's bytes, as disk corruption would.
    pub(crate) fn overwrite_event_for_test(&self, seq: u64, bytes: &[u8]) {
        self.shared
            .trees
            .events
            .insert(codec::key(seq), bytes)
            .expect("overwrite");
    }
}

fn dead_letter(seq: u64, raw: &[u8]) -> DeadLetter {
    match codec::decode_dead_letter(raw) {
        Ok(d) => DeadLetter {
            seq: d.seq,
            event: codec::decode_envelope(&d.raw).ok(),
            raw_len: d.raw.len(),
            reason: d.reason,
            dead_at_us: d.dead_at_us,
            attempts: d.attempts,
        },
        Err(e) => DeadLetter {
            seq,
            reason: format!("dead letter itself unreadable: {e}"),
            dead_at_us: 0,
            attempts: 0,
            event: None,
            raw_len: raw.len(),
        },
    }
}

fn corrupt_reason(e: &CodecError) -> String {
    format!("undecodable record: {e}")
}
