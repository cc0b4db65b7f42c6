//! The single writer thread: group commit of every mutation.
//!
//! One loop: block for a request, take every other request already waiting (up to a group
//! limit), *plan* them against the current state, *apply* the plan in one sled transaction (the
//! group's events as a few chunks: see [`super::log`]),
//! flush once if the durability mode asks for it, then answer every request and publish the
//! new events. Planning reads the trees outside the transaction; that is safe because this thread
//! is the only writer, and an overlay makes each request see the writes of earlier requests in
//! the same group. The transaction itself only replays the planned mutations, so sled may re-run
//! it without harm.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::codec;
use super::plan::Plan;
use super::{Error, Result, Shared, Write};
use crate::config::Durability;
use crate::events::Envelope;

/// A request to the writer.
pub(super) enum Request {
    Append {
        write: Write,
        reply: oneshot::Sender<Result<Vec<Arc<Envelope>>>>,
    },
    Update {
        update: super::Update,
        reply: oneshot::Sender<Result<Vec<Arc<Envelope>>>>,
    },
    Ack {
        seqs: Vec<u64>,
        reply: oneshot::Sender<Result<()>>,
    },
    Failed {
        seqs: Vec<u64>,
        reply: oneshot::Sender<Result<()>>,
    },
    DeadLetter {
        items: Vec<(u64, String)>,
        reply: oneshot::Sender<Result<()>>,
    },
    Requeue {
        seq: u64,
        reply: oneshot::Sender<Result<Arc<Envelope>>>,
    },
    Purge {
        seq: u64,
        reply: oneshot::Sender<Result<()>>,
    },
    Prune {
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Counters and cursors of the first format (separate `events` and `pending` trees), read only to
/// migrate such a store ([`super::migrate`]). Frozen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct MetaV1 {
    pub next_seq: u64,
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub log_events: u64,
    pub log_bytes: u64,
    pub dead_letters: u64,
    pub prune_floor: u64,
}

/// Counters and cursors, persisted in `meta` in the same transaction as the data. Frozen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct MetaV2 {
    pub next_seq: u64,
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub log_events: u64,
    pub log_bytes: u64,
    pub dead_letters: u64,
    /// Events below this were pruned from the log unless still pending.
    pub prune_floor: u64,
    /// Every event below this has left the outbox (acknowledged or dead-lettered); above it,
    /// the `done` tree names those that left out of order.
    pub outbox_floor: u64,
}

pub(super) const META_KEY: &[u8] = b"state";
pub(super) const META_V1: u8 = 1;
const META_V2: u8 = 2;
/// Requests per group: bounds the time readers wait on the transaction.
const GROUP_MAX: usize = 1024;
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// …and this soon after an append was refused for disk space (retention yields under pressure).
const PRUNE_SOON: Duration = Duration::from_millis(200);
/// How long a group waits for more requests once it sees concurrent writers.
const GATHER: Duration = Duration::from_micros(200);

/// Load the meta state and start the writer thread.
pub(super) fn start(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
) -> Result<std::thread::JoinHandle<()>> {
    let meta = super::reads::load_meta(&shared)?;
    shared.publish_counters(&meta);
    shared
        .counters
        .durable_seq
        .store(meta.next_seq.saturating_sub(1), Ordering::SeqCst);
    if shared.config.durability == Durability::Interval {
        start_interval_sync(&shared)?;
    }
    std::thread::Builder::new()
        .name("routegate-outbox-writer".into())
        .spawn(move || supervised(shared, rx, meta))
        .map_err(|e| Error::Storage(sled::Error::Io(e)))
}

/// Run the writer; if it panics, say so where readiness looks. Requests still queued are
/// answered `Closed` as the channel drops.
fn supervised(shared: Arc<Shared>, rx: mpsc::Receiver<Request>, meta: MetaV2) {
    let guarded = shared.clone();
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run(shared, rx, meta)));
    if let Err(panic) = outcome {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        guarded.fail(format!("the outbox writer thread panicked: {what}"));
        guarded.writer_alive.store(false, Ordering::SeqCst);
    }
}

/// `interval` durability: flush and sync every `flush_interval_ms` on a thread of its own. It
/// holds only a weak handle, so it never keeps a closed database open, and stops with the writer.
fn start_interval_sync(shared: &Arc<Shared>) -> Result<()> {
    let weak = Arc::downgrade(shared);
    let every = Duration::from_millis(shared.config.flush_interval_ms);
    std::thread::Builder::new()
        .name("routegate-outbox-sync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(shared) = weak.upgrade() else { break };
                if !shared.writer_alive.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = shared.make_stable() {
                    tracing::error!(cause = %e, "periodic outbox flush failed");
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::Storage(sled::Error::Io(e)))
}

pub(super) fn encode_meta(meta: &MetaV2) -> Vec<u8> {
    let body = bincode::serde::encode_to_vec(meta, bincode::config::standard())
        .expect("bincode encoding of plain structs cannot fail");
    let mut out = vec![META_V2];
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The state if `bytes` is a valid frame of `version`.
fn decode_meta_as<T: serde::de::DeserializeOwned>(bytes: &[u8], version: u8) -> Option<T> {
    let (&v, rest) = bytes.split_first()?;
    let (crc, body) = rest.split_at_checked(4)?;
    if v != version || crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    bincode::serde::decode_from_slice(body, bincode::config::standard())
        .ok()
        .map(|(m, _)| m)
}

pub(super) fn decode_meta(bytes: &[u8]) -> Option<MetaV2> {
    decode_meta_as(bytes, META_V2)
}

pub(super) fn decode_meta_v1(bytes: &[u8]) -> Option<MetaV1> {
    decode_meta_as(bytes, META_V1)
}

/// `[attempts u32 BE]`, the value of the `attempts` tree.
pub(super) fn attempts_value(attempts: u32) -> Vec<u8> {
    attempts.to_be_bytes().to_vec()
}

/// Attempts from an `attempts` value (a malformed one counts as none).
pub(super) fn parse_attempts(v: &[u8]) -> u32 {
    v.try_into().map(u32::from_be_bytes).unwrap_or(0)
}

/// `(attempts, stored bytes)` from a first-format `pending` value (a malformed one counts as
/// none).
pub(super) fn parse_pending_v1(v: &[u8]) -> (u32, u64) {
    match v {
        [a0, a1, a2, a3, b0, b1, b2, b3] => (
            u32::from_be_bytes([*a0, *a1, *a2, *a3]),
            u32::from_be_bytes([*b0, *b1, *b2, *b3]) as u64,
        ),
        _ => (0, 0),
    }
}

/// Key of the audit-trail index: route id, `0x00`, sequence number.
pub(super) fn route_index_key(route_id: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(route_id.len() + 9);
    k.extend_from_slice(route_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&codec::key(seq));
    k
}

fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>, mut meta: MetaV2) {
    let trees = shared.trees.all();
    let strict = shared.config.durability == Durability::Strict;
    let mut last_prune = std::time::Instant::now();
    let mut prune_soon = false;
    let mut stopping: Option<oneshot::Sender<()>> = None;
    while stopping.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        if let Err(e) = crate::faults::check("outbox-writer", &shared.path) {
            panic!("injected writer failure: {e}");
        }
        let mut group = vec![first];
        drain_into(&mut rx, &mut group);
        if strict && group.len() > 1 && group.len() < GROUP_MAX {
            // Others are writing too: a moment more lets their requests share this fsync.
            std::thread::sleep(GATHER);
            drain_into(&mut rx, &mut group);
        }
        let due = if prune_soon { PRUNE_SOON } else { PRUNE_EVERY };
        if last_prune.elapsed() >= due {
            last_prune = std::time::Instant::now();
            group.push(Request::Prune {
                reply: oneshot::channel().0,
            });
        }
        let mut plan = Plan::new(&shared, &trees, meta.clone());
        let mut answers = Vec::with_capacity(group.len());
        let failure = shared.failure.borrow().clone();
        for req in group {
            match req {
                Request::Shutdown { reply } if stopping.is_none() => stopping = Some(reply),
                req if stopping.is_some() => Answer::closed(req),
                req if failure.is_some() => Answer::refuse(req, failure.as_deref().unwrap_or("")),
                req => answers.push(plan.take(req)),
            }
        }
        prune_soon = plan.refused_for_space;
        match plan.commit() {
            Ok(committed) => {
                meta = committed.meta;
                shared.after_commit(&meta, &committed.events);
                if let Err(e) = crate::faults::check("outbox-before-answer", &shared.path) {
                    panic!("injected failure before answering: {e}");
                }
                answers.into_iter().for_each(|a| a.send(None, &shared));
            }
            Err(e) => {
                tracing::error!(cause = %e, "outbox write failed; nothing in this group was acknowledged");
                // sled 0.34 latches an I/O error (every later operation fails), and a failed
                // fsync leaves the page cache in an unknown state: only a reopen recovers.
                shared.fail(format!(
                    "storage failed: {e}; restart routegate to reopen the store"
                ));
                answers.into_iter().for_each(|a| a.send(Some(&e), &shared));
            }
        }
    }
    rx.close();
    while let Ok(req) = rx.try_recv() {
        Answer::closed(req);
    }
    if let Err(e) = shared.make_stable() {
        tracing::error!(cause = %e, "final outbox flush failed");
    }
    shared.writer_alive.store(false, Ordering::SeqCst);
    if let Some(done) = stopping {
        let _ = done.send(());
    }
}

/// Take every waiting request, up to the group limit.
fn drain_into(rx: &mut mpsc::Receiver<Request>, group: &mut Vec<Request>) {
    while group.len() < GROUP_MAX {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
}

fn pick_with<T>(r: Result<T>, failed: Option<&sled::Error>, shared: &Shared) -> Result<T> {
    match failed {
        Some(e) => Err(shared.group_error(e)),
        None => r,
    }
}

/// A request's outcome, waiting for the group to commit before it is sent.
pub(super) enum Answer {
    Events(
        oneshot::Sender<Result<Vec<Arc<Envelope>>>>,
        Result<Vec<Arc<Envelope>>>,
    ),
    One(
        oneshot::Sender<Result<Arc<Envelope>>>,
        Result<Arc<Envelope>>,
    ),
    Unit(oneshot::Sender<Result<()>>, Result<()>),
}

impl Answer {
    /// Send the outcome, or the storage failure that prevented the whole group.
    fn send(self, failed: Option<&sled::Error>, shared: &Shared) {
        match self {
            Answer::Events(tx, r) => drop(tx.send(pick_with(r, failed, shared))),
            Answer::One(tx, r) => drop(tx.send(pick_with(r, failed, shared))),
            Answer::Unit(tx, r) => drop(tx.send(pick_with(r, failed, shared))),
        }
    }

    fn closed(req: Request) {
        Answer::reject(req, || Error::Closed);
    }

    /// Storage failed for good: refuse without touching it.
    fn refuse(req: Request, reason: &str) {
        Answer::reject(req, || Error::Failed(reason.to_string()));
    }

    fn reject(req: Request, error: impl Fn() -> Error) {
        match req {
            Request::Append { reply, .. } | Request::Update { reply, .. } => {
                drop(reply.send(Err(error())))
            }
            Request::Requeue { reply, .. } => drop(reply.send(Err(error()))),
            Request::Ack { reply, .. }
            | Request::Failed { reply, .. }
            | Request::DeadLetter { reply, .. }
            | Request::Purge { reply, .. }
            | Request::Prune { reply } => drop(reply.send(Err(error()))),
            Request::Shutdown { reply } => drop(reply.send(())),
        }
    }
}
