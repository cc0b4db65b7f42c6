//! Opening a store of the first format: one `events` entry and one `pending` entry per event.
//!
//! [`from_v1`] rewrites such a store into chunks once, at open, before the writer starts:
//!
//! 1. clear `log`, `done` and `attempts` (what an interrupted migration left);
//! 2. copy the events into chunks (consecutive sequence numbers, [`log::CHUNK_MAX_BYTES`]);
//!    the outbox floor is the first pending event, and every event above it that is not pending
//!    any more gets a `done` entry; failed attempts move to `attempts`;
//! 3. write the new meta state (format 2) and make everything stable;
//! 4. drop the old trees.
//!
//! A crash before step 3 leaves the old format in charge (the next open starts over); after it,
//! the new one (the next open only drops the leftovers). Nothing is acknowledged meanwhile.

use super::codec;
use super::log;
use super::writer::{self, MetaV1, MetaV2};
use super::{Result, Shared};

const OLD_EVENTS: &str = "events";
const OLD_PENDING: &str = "pending";

/// Migrate a first-format store; the new meta state when there was one to migrate.
pub(super) fn from_v1(shared: &Shared) -> Result<Option<MetaV2>> {
    let db = &shared.db;
    let names = db.tree_names();
    let has = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
    if !has(OLD_EVENTS) && !has(OLD_PENDING) {
        return Ok(None);
    }
    let t = &shared.trees;
    let stored = t.meta.get(writer::META_KEY)?;
    if stored.as_deref().and_then(writer::decode_meta).is_some() {
        drop_old(shared)?;
        return Ok(None);
    }
    let events = db.open_tree(OLD_EVENTS)?;
    let pending = db.open_tree(OLD_PENDING)?;
    let old = stored.as_deref().and_then(writer::decode_meta_v1);
    if events.is_empty() && pending.is_empty() && old.is_none() {
        drop_old(shared)?;
        return Ok(None);
    }
    tracing::info!(
        events = events.len(),
        pending = pending.len(),
        "migrating the outbox to chunked storage"
    );
    for tree in [&t.log, &t.done, &t.attempts] {
        tree.clear()?;
    }
    let next_seq = old.as_ref().map_or(1, |m| m.next_seq);
    let floor = match pending.first()? {
        Some((k, _)) => codec::seq_of(&k).unwrap_or(next_seq),
        None => next_seq,
    };
    let counts = copy_events(shared, &events, &pending, floor)?;
    for kv in pending.iter() {
        let (k, v) = kv?;
        let (attempts, _) = writer::parse_pending_v1(&v);
        if attempts > 0 {
            t.attempts.insert(k, writer::attempts_value(attempts))?;
        }
    }
    let old = old.unwrap_or_default();
    let meta = MetaV2 {
        next_seq: old.next_seq.max(counts.next_seq).max(1),
        pending_events: counts.pending_events,
        pending_bytes: counts.pending_bytes,
        log_events: counts.log_events,
        log_bytes: counts.log_bytes,
        dead_letters: t.dead.len() as u64,
        prune_floor: old.prune_floor,
        outbox_floor: floor,
    };
    t.meta
        .insert(writer::META_KEY, writer::encode_meta(&meta))?;
    shared.make_stable()?;
    drop_old(shared)?;
    Ok(Some(meta))
}

/// Copy the old log into chunks, with `done` entries for delivered events above `floor`.
fn copy_events(
    shared: &Shared,
    events: &sled::Tree,
    pending: &sled::Tree,
    floor: u64,
) -> Result<MetaV1> {
    let t = &shared.trees;
    let mut counts = MetaV1::default();
    let mut run: Vec<(u64, Vec<u8>)> = Vec::new();
    let flush = |run: &mut Vec<(u64, Vec<u8>)>| -> Result<()> {
        for (first, chunk) in log::into_chunks(run) {
            t.log.insert(codec::key(first), chunk)?;
        }
        run.clear();
        Ok(())
    };
    for kv in events.iter() {
        let (k, v) = kv?;
        let Ok(seq) = codec::seq_of(&k) else { continue };
        if run.last().is_some_and(|(last, _)| *last + 1 != seq) || run.len() >= 4096 {
            flush(&mut run)?;
        }
        let len = v.len() as u64;
        counts.log_events += 1;
        counts.log_bytes += len;
        counts.next_seq = counts.next_seq.max(seq + 1);
        if pending.contains_key(&k)? {
            counts.pending_events += 1;
            counts.pending_bytes += len;
        } else if seq >= floor {
            t.done.insert(&k, &[])?;
        }
        run.push((seq, v.to_vec()));
    }
    flush(&mut run)?;
    Ok(counts)
}

fn drop_old(shared: &Shared) -> Result<()> {
    shared.db.drop_tree(OLD_EVENTS)?;
    shared.db.drop_tree(OLD_PENDING)?;
    shared.make_stable()?;
    Ok(())
}
