//! Reads: everything but the writer looks at the trees through these.
//!
//! Reads never take the writer's path: sled readers are concurrent with its transaction. They are
//! blocking calls; async callers run them on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::codec::{self, CodecError};
use super::log::{self, Chunk};
use super::writer::{self, MetaV2};
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
    pub(super) fn publish_counters(&self, m: &MetaV2) {
        let c: &Counters = &self.counters;
        c.pending_events.store(m.pending_events, Ordering::SeqCst);
        c.pending_bytes.store(m.pending_bytes, Ordering::SeqCst);
        c.log_events.store(m.log_events, Ordering::SeqCst);
        c.log_bytes.store(m.log_bytes, Ordering::SeqCst);
        c.dead_letters.store(m.dead_letters, Ordering::SeqCst);
        c.prune_floor.store(m.prune_floor, Ordering::SeqCst);
        c.outbox_floor.store(m.outbox_floor, Ordering::SeqCst);
    }

    /// After a durable commit: counters, then the durable mark, then live subscribers, in that
    /// order, so a subscriber that reads the mark after subscribing misses nothing.
    pub(super) fn after_commit(&self, m: &MetaV2, events: &[Arc<Envelope>]) {
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

/// The persisted meta state (after migrating a store of the first format), or a recount of the
/// trees when it is missing or unreadable.
pub(super) fn load_meta(shared: &Shared) -> Result<MetaV2> {
    if let Some(meta) = super::migrate::from_v1(shared)? {
        return Ok(meta);
    }
    if let Some(raw) = shared.trees.meta.get(writer::META_KEY)? {
        if let Some(meta) = writer::decode_meta(&raw) {
            return Ok(meta);
        }
        tracing::warn!("outbox meta state unreadable; recounting the trees");
    }
    recount(shared)
}

/// Counters from the trees themselves. The outbox floor is lost with the meta state, so every
/// logged event not named in `done` counts as pending again: delivered events still in the log
/// are delivered once more (duplicates, never a loss).
fn recount(shared: &Shared) -> Result<MetaV2> {
    let t = &shared.trees;
    let mut m = MetaV2 {
        next_seq: 1,
        ..MetaV2::default()
    };
    let mut first = None;
    for chunk in log::chunks_from(&t.log, 0)? {
        let chunk = chunk?;
        first.get_or_insert(chunk.first);
        m.next_seq = m.next_seq.max(chunk.last() + 1);
        for (seq, frame) in chunk.events().unwrap_or_default() {
            m.log_events += 1;
            m.log_bytes += frame.len() as u64;
            if !t.done.contains_key(codec::key(seq))? {
                m.pending_events += 1;
                m.pending_bytes += frame.len() as u64;
            }
        }
    }
    for kv in t.dead.iter().chain(t.done.iter()) {
        if let Ok(seq) = codec::seq_of(&kv?.0) {
            m.next_seq = m.next_seq.max(seq + 1);
        }
    }
    m.dead_letters = t.dead.len() as u64;
    let floor = first.unwrap_or(m.next_seq);
    Ok(MetaV2 {
        prune_floor: floor,
        outbox_floor: floor,
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
        self.pending_after(after, max_records, max_bytes)
    }

    /// [`Outbox::peek_after`] without its fault point.
    fn pending_after(&self, after: u64, max_records: usize, max_bytes: u64) -> Result<Vec<Peeked>> {
        let t = &self.shared.trees;
        let floor = self.shared.counters.outbox_floor.load(Ordering::SeqCst);
        let check_done = !t.done.is_empty();
        let check_attempts = !t.attempts.is_empty();
        let mut seq = after.saturating_add(1).max(floor);
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let full = |out: &Vec<Peeked>, bytes: u64| {
            out.len() >= max_records || (bytes >= max_bytes && !out.is_empty())
        };
        'chunks: for chunk in log::chunks_from(&t.log, seq)? {
            let chunk = chunk?;
            // Sequence numbers below an existing chunk that no chunk holds were lost.
            while seq < chunk.first {
                if full(&out, bytes) {
                    break 'chunks;
                }
                if !(check_done && t.done.contains_key(codec::key(seq))?) {
                    out.push(Peeked::Corrupt {
                        seq,
                        reason: "pending event missing from the event log".into(),
                    });
                }
                seq += 1;
            }
            let frames = chunk.frames();
            for s in seq.max(chunk.first)..=chunk.last() {
                if full(&out, bytes) {
                    break 'chunks;
                }
                if check_done && t.done.contains_key(codec::key(s))? {
                    continue;
                }
                let attempts = match check_attempts {
                    true => t
                        .attempts
                        .get(codec::key(s))?
                        .map_or(0, |v| writer::parse_attempts(&v)),
                    false => 0,
                };
                let frame = match &frames {
                    Ok(frames) => frames.get((s - chunk.first) as usize).copied(),
                    Err(e) => {
                        out.push(Peeked::Corrupt {
                            seq: s,
                            reason: corrupt_reason(e),
                        });
                        continue;
                    }
                };
                let Some(frame) = frame else { continue };
                bytes += frame.len() as u64;
                out.push(match codec::decode_envelope(frame) {
                    Ok(env) if env.seq == s => Peeked::Event(Envelope { attempts, ..env }),
                    Ok(env) => Peeked::Corrupt {
                        seq: s,
                        reason: format!("the log holds event {} where {s} belongs", env.seq),
                    },
                    Err(e) => Peeked::Corrupt {
                        seq: s,
                        reason: corrupt_reason(&e),
                    },
                });
            }
            seq = seq.max(chunk.last() + 1);
        }
        // An ack may have raised the floor and removed the `done` entries below it while this
        // read ran; the writer raises the floor first, so reading it again drops those events.
        let floor = self.shared.counters.outbox_floor.load(Ordering::SeqCst);
        out.retain(|p| p.seq() >= floor);
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
        let oldest = self.pending_after(0, 1, 0).ok()?.into_iter().next()?;
        match oldest {
            Peeked::Event(e) => Some(e.created_at_us),
            Peeked::Corrupt { .. } => None,
        }
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
        'chunks: for chunk in log::chunks_from(&self.shared.trees.log, after + 1)? {
            let chunk = chunk?;
            let events = match chunk.events() {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(first = chunk.first, cause = %e, "skipping a damaged log chunk");
                    continue;
                }
            };
            for (seq, frame) in events {
                if seq <= after {
                    continue;
                }
                if seq > upto || out.len() >= limit {
                    break 'chunks;
                }
                match codec::decode_envelope(frame) {
                    Ok(env) => out.push(Arc::new(env)),
                    Err(e) => tracing::warn!(seq, cause = %e, "skipping corrupt log entry"),
                }
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
        let mut chunk: Option<Chunk> = None;
        for kv in t.route_events.scan_prefix(&prefix) {
            let (key, _) = kv?;
            if out.len() >= limit {
                break;
            }
            let Ok(seq) = codec::seq_of(&key[prefix.len()..]) else {
                continue;
            };
            if !chunk
                .as_ref()
                .is_some_and(|c| c.first <= seq && seq <= c.last())
            {
                chunk = log::chunk_at(&t.log, seq)?;
            }
            let Some(Ok(frame)) = chunk.as_ref().and_then(|c| c.frame(seq)) else {
                continue;
            };
            if let Ok(env) = codec::decode_envelope(frame) {
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
        damage_event(&self.shared.trees.log, seq, |raw| *raw = bytes.to_vec()).expect("overwrite");
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

/// Rewrite the stored bytes of event `seq` in place with `damage`, as disk corruption would: for
/// tests of what happens to a damaged record. `Ok(false)` when the log does not hold `seq`.
pub(super) fn damage_event(
    log: &sled::Tree,
    seq: u64,
    damage: impl FnOnce(&mut Vec<u8>),
) -> Result<bool> {
    let Some(chunk) = log::chunk_at(log, seq)? else {
        return Ok(false);
    };
    let mut frames: Vec<Vec<u8>> = chunk
        .frames()
        .map_err(|e| sled::Error::Unsupported(e.to_string()))?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    damage(&mut frames[(seq - chunk.first) as usize]);
    let raw = codec::encode_chunk(frames.iter().map(Vec::as_slice));
    log.insert(codec::key(chunk.first), raw)?;
    Ok(true)
}

fn corrupt_reason(e: &CodecError) -> String {
    format!("undecodable record: {e}")
}
