//! Planning one group of writer requests, and committing it in one sled transaction.
//!
//! A [`Plan`] reads the committed trees plus an overlay of the writes planned so far in the same
//! group, so each request sees its predecessors' effects; it records mutations instead of
//! applying them. [`Plan::commit`] then replays the mutations and the new meta state in one
//! transaction (safe to re-run: it only writes what was planned) and flushes in `strict` mode.
//!
//! The group's new events are held as frames and written at commit as chunks ([`log`]); until
//! then reads of them are answered from the frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::codec::{self, DeadLetterV1};
use super::log::{self, Chunk};
use super::writer::{
    Answer, META_KEY, MetaV2, Request, attempts_value, encode_meta, parse_attempts, route_index_key,
};
use super::{Error, Expect, Result, Shared, Update, Write, space};
use crate::config::Durability;
use crate::events::{Envelope, NewEvent};

/// Chunks one prune request may look at: bounds its transaction.
const PRUNE_MAX: usize = 4096;

/// Index of each fixed tree in the transaction's tree list; domain trees follow.
pub(super) const LOG: usize = 0;
pub(super) const DONE: usize = 1;
pub(super) const ATTEMPTS: usize = 2;
pub(super) const DEAD: usize = 3;
pub(super) const ROUTE_EVENTS: usize = 4;
pub(super) const META: usize = 5;
pub(super) const FIXED_TREES: usize = 6;

/// What a committed group changed.
pub(super) struct Committed {
    pub(super) meta: MetaV2,
    pub(super) events: Vec<Arc<Envelope>>,
}

/// The mutations of one group, planned against the committed state plus an overlay of the
/// group's own earlier writes.
pub(super) struct Plan<'a> {
    shared: &'a Shared,
    trees: &'a [sled::Tree],
    meta: MetaV2,
    /// The state before this group: when neither it nor any tree changes, nothing is written.
    before: MetaV2,
    overlay: HashMap<(usize, Vec<u8>), Option<Vec<u8>>>,
    mutations: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    events: Vec<Arc<Envelope>>,
    /// This group's new events, `(seq, frame)` from `first_new` on, written as chunks at commit.
    frames: Vec<(u64, Vec<u8>)>,
    first_new: u64,
    /// The chunk read last: acks and pruning walk chunks in order.
    chunk: Option<Chunk>,
    /// Whether `done` / `attempts` may hold entries: when not, no lookup is needed.
    done_possible: bool,
    attempts_possible: bool,
    /// Chunks below the prune floor whose events left the outbox in this group: deleted at
    /// commit if none of their events is pending any more.
    below_floor: Vec<u64>,
    /// A read failed: the group is not committed and every request gets this error.
    failed: Option<sled::Error>,
    now_us: i64,
    /// The disk as measured for this group ([`space`]), and the disk bytes this group's record
    /// writes are estimated to take (events count through `meta.log_bytes`).
    disk: space::Measured,
    planned_records: u64,
    /// An append was refused for space: the writer prunes at once.
    pub(super) refused_for_space: bool,
    acks: bool,
}

impl<'a> Plan<'a> {
    pub(super) fn new(shared: &'a Shared, trees: &'a [sled::Tree], meta: MetaV2) -> Plan<'a> {
        Plan {
            shared,
            trees,
            first_new: meta.next_seq,
            before: meta.clone(),
            meta,
            overlay: HashMap::new(),
            mutations: Vec::new(),
            events: Vec::new(),
            frames: Vec::new(),
            chunk: None,
            done_possible: !trees[DONE].is_empty(),
            attempts_possible: !trees[ATTEMPTS].is_empty(),
            below_floor: Vec::new(),
            failed: None,
            now_us: chrono::Utc::now().timestamp_micros(),
            disk: shared
                .space
                .measure(|| shared.db.size_on_disk().unwrap_or(0)),
            planned_records: 0,
            refused_for_space: false,
            acks: false,
        }
    }

    /// Plan one request and keep its outcome for after the commit.
    pub(super) fn take(&mut self, req: Request) -> Answer {
        match req {
            Request::Append { write, reply } => {
                let r = self.append(write);
                Answer::Events(reply, r)
            }
            Request::Update { update, reply } => {
                let r = self.update(update);
                Answer::Events(reply, r)
            }
            Request::Requeue { seq, reply } => {
                let r = self.requeue(seq);
                Answer::One(reply, r)
            }
            Request::Ack { seqs, reply } => {
                let r = self.ack(&seqs);
                Answer::Unit(reply, r)
            }
            Request::Failed { seqs, reply } => {
                let r = self.failed(&seqs);
                Answer::Unit(reply, r)
            }
            Request::DeadLetter { items, reply } => {
                let r = self.dead_letter(items);
                Answer::Unit(reply, r)
            }
            Request::Purge { seq, reply } => {
                let r = self.purge(seq);
                Answer::Unit(reply, r)
            }
            Request::Prune { reply } => {
                let r = self.prune();
                Answer::Unit(reply, r)
            }
            Request::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    fn read(&mut self, tree: usize, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.overlay.get(&(tree, key.to_vec())) {
            return v.clone();
        }
        match self.trees[tree].get(key) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                self.failed.get_or_insert(e);
                None
            }
        }
    }

    fn write(&mut self, tree: usize, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.overlay.insert((tree, key.clone()), value.clone());
        self.mutations.push((tree, key, value));
    }

    fn domain_index(&self, name: &str) -> Option<usize> {
        self.shared
            .trees
            .domain
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| FIXED_TREES + i)
    }

    fn append(&mut self, write: Write) -> Result<Vec<Arc<Envelope>>> {
        let mut records = Vec::with_capacity(write.records.len());
        for r in write.records {
            let tree = self.domain_index(r.tree).ok_or_else(|| {
                Error::Storage(sled::Error::Unsupported(format!("unknown tree {}", r.tree)))
            })?;
            let current = self.read(tree, &r.key);
            let holds = match &r.expect {
                Expect::Any => true,
                Expect::Absent => current.is_none(),
                Expect::Equals(v) => current.as_deref() == Some(v.as_slice()),
            };
            if !holds {
                return Err(Error::Conflict {
                    tree: r.tree.to_string(),
                });
            }
            records.push((tree, r.key, r.value));
        }
        let first = self.meta.next_seq;
        let encoded = sequence(first, write.events);
        let bytes: u64 = encoded.iter().map(|(_, raw)| raw.len() as u64).sum();
        let (outgoing, outgoing_bytes) = encoded
            .iter()
            .filter(|(env, _)| !env.is_local())
            .fold((0, 0), |(n, b), (_, raw)| (n + 1, b + raw.len() as u64));
        self.check_quota(outgoing, outgoing_bytes)?;
        let record_bytes: u64 = records
            .iter()
            .map(|(_, k, v): &(usize, Vec<u8>, Option<Vec<u8>>)| {
                (k.len() + v.as_ref().map_or(0, Vec::len)) as u64
            })
            .sum();
        self.check_space(bytes, record_bytes)?;
        for (tree, key, value) in records {
            self.write(tree, key, value);
        }
        let mut out = Vec::with_capacity(encoded.len());
        for (env, raw) in encoded {
            let local = env.is_local().then_some(raw.len() as u64);
            self.add_event(&env, raw);
            if let Some(len) = local {
                // Logged for live clients and the audit trail, never sent: out at once.
                self.mark_out(env.seq);
                self.meta.pending_events -= 1;
                self.meta.pending_bytes -= len;
            }
            let env = Arc::new(env);
            self.events.push(env.clone());
            out.push(env);
        }
        Ok(out)
    }

    /// Run an update's closure against the records as this group sees them, then append its
    /// write.
    fn update(&mut self, u: Update) -> Result<Vec<Arc<Envelope>>> {
        let mut current = Vec::with_capacity(u.reads.len());
        for (name, key) in &u.reads {
            let tree = self.domain_index(name).ok_or_else(|| {
                Error::Storage(sled::Error::Unsupported(format!("unknown tree {name}")))
            })?;
            current.push(self.read(tree, key));
        }
        let apply = u.apply;
        let write = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let values: Vec<Option<&[u8]>> = current.iter().map(Option::as_deref).collect();
            apply(&values)
        }))
        .map_err(|_| {
            tracing::error!(reads = ?u.reads, "an outbox update panicked; it was aborted");
            Error::Aborted
        })?
        .ok_or(Error::Aborted)?;
        self.append(write)
    }

    fn check_quota(&self, events: u64, bytes: u64) -> Result<()> {
        let (m, c) = (&self.meta, &self.shared.config);
        if events > 0
            && (m.pending_events + events > c.max_queue_events
                || m.pending_bytes + bytes > c.max_queue_bytes)
        {
            return Err(Error::QuotaExceeded {
                pending_events: m.pending_events,
                pending_bytes: m.pending_bytes,
                max_events: c.max_queue_events,
                max_bytes: c.max_queue_bytes,
            });
        }
        Ok(())
    }

    /// Refuse a write that would take sled past its disk budget, into the reserve kept for
    /// deliveries ([`space`]).
    fn check_space(&mut self, event_bytes: u64, record_bytes: u64) -> Result<()> {
        let amp = space::AMPLIFICATION;
        let used = (self.meta.log_bytes.saturating_mul(amp)).saturating_add(self.planned_records);
        let need = event_bytes.saturating_add(record_bytes).saturating_mul(amp);
        if used.saturating_add(need) > self.disk.budget {
            self.refused_for_space = true;
            return Err(Error::DiskFull {
                available_bytes: self.disk.available,
                reserve_bytes: self.shared.space.reserve(),
            });
        }
        self.planned_records += record_bytes.saturating_mul(amp);
        Ok(())
    }

    /// Put a sequenced event into the log (as a frame of this group's chunk) and the audit-trail
    /// index; it is pending from now on.
    fn add_event(&mut self, env: &Envelope, raw: Vec<u8>) {
        let len = raw.len() as u64;
        if let Some(route) = &env.route_id {
            self.write(
                ROUTE_EVENTS,
                route_index_key(route, env.seq),
                Some(Vec::new()),
            );
        }
        debug_assert_eq!(env.seq, self.first_new + self.frames.len() as u64);
        self.frames.push((env.seq, raw));
        let m = &mut self.meta;
        m.next_seq = env.seq + 1;
        m.pending_events += 1;
        m.pending_bytes += len;
        m.log_events += 1;
        m.log_bytes += len;
    }

    /// The committed chunk holding `seq`, unless this group deleted it.
    fn chunk_at(&mut self, seq: u64) -> Option<Chunk> {
        if let Some(c) = &self.chunk
            && c.first <= seq
            && seq <= c.last()
        {
            return Some(c.clone());
        }
        let found = match log::chunk_at(&self.trees[LOG], seq) {
            Ok(found) => found,
            Err(e) => {
                self.failed.get_or_insert(e);
                None
            }
        }?;
        if let Some(None) = self.overlay.get(&(LOG, codec::key(found.first).to_vec())) {
            return None;
        }
        self.chunk = Some(found.clone());
        Some(found)
    }

    /// `read` of the stored bytes of event `seq` (empty when its chunk's table is damaged:
    /// unreadable, its bytes unknown), without copying them; `None` when the log does not hold
    /// it.
    fn with_event<T>(&mut self, seq: u64, read: impl FnOnce(&[u8]) -> T) -> Option<T> {
        if seq >= self.first_new {
            let i = usize::try_from(seq - self.first_new).ok()?;
            return self.frames.get(i).map(|(_, f)| read(f));
        }
        let chunk = self.chunk_at(seq)?;
        match chunk.frame(seq)? {
            Ok(frame) => Some(read(frame)),
            Err(_) => Some(read(&[])),
        }
    }

    fn is_done(&mut self, seq: u64) -> bool {
        self.done_possible && self.read(DONE, &codec::key(seq)).is_some()
    }

    /// Whether `seq` waits for Kafka.
    fn is_pending(&mut self, seq: u64) -> bool {
        seq >= self.meta.outbox_floor && seq < self.meta.next_seq && !self.is_done(seq)
    }

    /// `seq` (pending) leaves the outbox: the floor moves past it and past every event above
    /// that already left, or `done` names it.
    fn mark_out(&mut self, seq: u64) {
        if seq != self.meta.outbox_floor {
            self.write(DONE, codec::key(seq).to_vec(), Some(Vec::new()));
            self.done_possible = true;
            return;
        }
        self.meta.outbox_floor += 1;
        while self.meta.outbox_floor < self.meta.next_seq && self.is_done(self.meta.outbox_floor) {
            self.write(DONE, codec::key(self.meta.outbox_floor).to_vec(), None);
            self.meta.outbox_floor += 1;
        }
    }

    /// Remove from the outbox; returns `(attempts, bytes)` if it was pending.
    fn unpend(&mut self, seq: u64) -> Option<(u32, u64)> {
        if !self.is_pending(seq) {
            return None;
        }
        let bytes = self.with_event(seq, |raw| raw.len() as u64).unwrap_or(0);
        let key = codec::key(seq).to_vec();
        let attempts = if self.attempts_possible {
            let attempts = self.read(ATTEMPTS, &key).map_or(0, |v| parse_attempts(&v));
            if attempts > 0 {
                self.write(ATTEMPTS, key, None);
            }
            attempts
        } else {
            0
        };
        self.mark_out(seq);
        self.meta.pending_events = self.meta.pending_events.saturating_sub(1);
        self.meta.pending_bytes = self.meta.pending_bytes.saturating_sub(bytes);
        if seq < self.meta.prune_floor {
            self.below_floor.push(seq);
        }
        Some((attempts, bytes))
    }

    fn ack(&mut self, seqs: &[u64]) -> Result<()> {
        self.acks = true;
        let mut seqs = seqs.to_vec();
        // In order, each ack moves the floor and none needs a `done` entry.
        seqs.sort_unstable();
        for seq in seqs {
            self.unpend(seq);
        }
        Ok(())
    }

    fn failed(&mut self, seqs: &[u64]) -> Result<()> {
        for &seq in seqs {
            if !self.is_pending(seq) {
                continue;
            }
            let key = codec::key(seq).to_vec();
            let attempts = match self.attempts_possible {
                true => self.read(ATTEMPTS, &key).map_or(0, |v| parse_attempts(&v)),
                false => 0,
            };
            self.write(
                ATTEMPTS,
                key,
                Some(attempts_value(attempts.saturating_add(1))),
            );
            self.attempts_possible = true;
        }
        Ok(())
    }

    fn dead_letter(&mut self, items: Vec<(u64, String)>) -> Result<()> {
        for (seq, reason) in items {
            // The stored bytes, possibly corrupt, go into the dead letter as they are.
            let raw = self.with_event(seq, <[u8]>::to_vec).unwrap_or_default();
            let Some((attempts, _)) = self.unpend(seq) else {
                continue;
            };
            let letter = DeadLetterV1 {
                seq,
                reason,
                dead_at_us: self.now_us,
                attempts,
                raw,
            };
            self.write(
                DEAD,
                codec::key(seq).to_vec(),
                Some(codec::encode_dead_letter(&letter)),
            );
            self.meta.dead_letters += 1;
        }
        Ok(())
    }

    fn requeue(&mut self, seq: u64) -> Result<Arc<Envelope>> {
        let key = codec::key(seq).to_vec();
        let raw = self.read(DEAD, &key).ok_or(Error::NoDeadLetter(seq))?;
        let unrequeueable = |reason: String| Error::Unrequeueable { seq, reason };
        let letter = codec::decode_dead_letter(&raw).map_err(|e| unrequeueable(e.to_string()))?;
        let old = codec::decode_envelope(&letter.raw).map_err(|e| unrequeueable(e.to_string()))?;
        let new = NewEvent {
            id: old.id,
            kind: old.kind,
            topic: old.topic,
            key: old.key,
            route_id: old.route_id,
            created_at_us: old.created_at_us,
            payload: old.payload,
        };
        let mut env = self.append(Write {
            events: vec![new],
            records: Vec::new(),
        })?;
        self.write(DEAD, key, None);
        self.meta.dead_letters = self.meta.dead_letters.saturating_sub(1);
        Ok(env.remove(0))
    }

    fn purge(&mut self, seq: u64) -> Result<()> {
        let key = codec::key(seq).to_vec();
        self.read(DEAD, &key).ok_or(Error::NoDeadLetter(seq))?;
        self.write(DEAD, key, None);
        self.meta.dead_letters = self.meta.dead_letters.saturating_sub(1);
        Ok(())
    }

    /// Delete delivered events from the front of the log while it is over its age or size limit,
    /// a chunk at a time (a chunk is pruned once its newest event is; one that still holds a
    /// pending event stays until that event leaves the outbox).
    fn prune(&mut self) -> Result<()> {
        let cfg = &self.shared.config;
        let amp = space::AMPLIFICATION;
        // Under disk pressure retention yields: delivered events are already in Kafka.
        let pressure = self.meta.log_bytes.saturating_mul(amp) > self.disk.budget / 2;
        let max_bytes = if pressure {
            let target = (self.disk.budget / 4 / amp).saturating_sub(self.meta.pending_bytes);
            cfg.log_retention_bytes.min(target)
        } else {
            cfg.log_retention_bytes
        };
        let max_age_us = (cfg.log_retention_ms as i64).saturating_mul(1000);
        let chunks = match log::chunks_from(&self.trees[LOG], self.meta.prune_floor) {
            Ok(chunks) => chunks,
            Err(e) => {
                self.failed.get_or_insert(e);
                return Ok(());
            }
        };
        let mut floor = self.meta.prune_floor;
        for chunk in chunks.take(PRUNE_MAX) {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    self.failed.get_or_insert(e);
                    break;
                }
            };
            let delivered_bytes = self.meta.log_bytes.saturating_sub(self.meta.pending_bytes);
            let newest_us = chunk
                .events()
                .ok()
                .and_then(|events| events.last().map(|(_, f)| codec::decode_envelope(f)))
                .and_then(|e| e.ok())
                .map_or(i64::MIN, |e| e.created_at_us);
            let age_us = self.now_us.saturating_sub(newest_us);
            if delivered_bytes <= max_bytes && age_us <= max_age_us {
                break;
            }
            floor = floor.max(chunk.last() + 1);
            self.delete_if_delivered(chunk);
        }
        self.meta.prune_floor = floor;
        Ok(())
    }

    /// Delete a chunk (with its audit-trail entries) if none of its events is pending.
    fn delete_if_delivered(&mut self, chunk: Chunk) {
        let key = codec::key(chunk.first).to_vec();
        if let Some(None) = self.overlay.get(&(LOG, key.clone())) {
            return;
        }
        if (chunk.first..=chunk.last()).any(|seq| self.is_pending(seq)) {
            return;
        }
        let events = chunk.events().unwrap_or_default();
        let (count, bytes) = match events.is_empty() {
            // A damaged table: count the chunk as its claimed events and its whole size.
            true => (chunk.last() - chunk.first + 1, chunk.stored as u64),
            false => (
                events.len() as u64,
                events.iter().map(|(_, f)| f.len() as u64).sum(),
            ),
        };
        for (seq, frame) in &events {
            if let Ok(env) = codec::decode_envelope(frame)
                && let Some(route) = &env.route_id
            {
                self.write(ROUTE_EVENTS, route_index_key(route, *seq), None);
            }
        }
        for seq in chunk.first..=chunk.last() {
            if self.is_done(seq) {
                self.write(DONE, codec::key(seq).to_vec(), None);
            }
        }
        self.write(LOG, key, None);
        self.chunk = None;
        self.meta.log_events = self.meta.log_events.saturating_sub(count);
        self.meta.log_bytes = self.meta.log_bytes.saturating_sub(bytes);
    }

    /// Chunks below the prune floor whose last pending events left in this group go now.
    fn delete_emptied_chunks(&mut self) {
        for seq in std::mem::take(&mut self.below_floor) {
            if let Some(chunk) = self.chunk_at(seq) {
                self.delete_if_delivered(chunk);
            }
        }
    }

    /// Apply the planned mutations and the new meta state in one transaction, then flush if the
    /// durability mode asks for it.
    pub(super) fn commit(mut self) -> std::result::Result<Committed, sled::Error> {
        self.delete_emptied_chunks();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        for (first, chunk) in log::into_chunks(&self.frames) {
            self.mutations
                .push((LOG, codec::key(first).to_vec(), Some(chunk)));
        }
        if self.mutations.is_empty() && self.meta == self.before {
            return Ok(Committed {
                meta: self.meta,
                events: self.events,
            });
        }
        self.mutations
            .push((META, META_KEY.to_vec(), Some(encode_meta(&self.meta))));
        let scope = self.shared.path.as_path();
        crate::faults::check("outbox-commit", scope)?;
        // The floor goes up before the `done` entries below it go: a reader that finds an
        // entry gone then reads the new floor ([`super::reads`]). Should the commit fail, the
        // store refuses all work until reopened, which recounts the floor from disk.
        self.shared
            .counters
            .outbox_floor
            .fetch_max(self.meta.outbox_floor, Ordering::SeqCst);
        let mutations = &self.mutations;
        let result: std::result::Result<(), TransactionError<()>> = self.trees.transaction(|tx| {
            for (tree, key, value) in mutations {
                match value {
                    Some(v) => tx[*tree].insert(key.as_slice(), v.as_slice())?,
                    None => tx[*tree].remove(key.as_slice())?,
                };
            }
            Ok::<_, ConflictableTransactionError<()>>(())
        });
        result.map_err(|e| match e {
            TransactionError::Storage(e) => e,
            TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
        })?;
        crate::faults::check("outbox-after-commit", scope)?;
        if self.acks {
            crate::faults::check("outbox-ack-committed", scope)?;
        }
        if self.shared.config.durability == Durability::Strict {
            self.shared.make_stable()?;
        }
        crate::faults::check("outbox-after-flush", scope)?;
        Ok(Committed {
            meta: self.meta,
            events: self.events,
        })
    }
}

/// Assign sequence numbers from `first` and encode.
fn sequence(first: u64, events: Vec<NewEvent>) -> Vec<(Envelope, Vec<u8>)> {
    events
        .into_iter()
        .zip(first..)
        .map(|(e, seq)| {
            let env = Envelope::sequenced(seq, e);
            let raw = codec::encode_envelope(&env);
            (env, raw)
        })
        .collect()
}
