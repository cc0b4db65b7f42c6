//! The durable outbox and event log (sled lives here and in `store/`, nowhere else).
//!
//! Every event routegate produces is appended here, flushed to disk before the caller hears
//! "done", and removed from the outbox only after Kafka acknowledged it. Delivered events stay in
//! the event log for a while (WebSocket resume, the route audit trail).
//!
//! # Trees and on-disk format
//!
//! All values are [`codec`] frames (version byte, CRC-32, bincode body) or chunks of them; keys
//! are big-endian `u64` sequence numbers unless noted.
//!
//! | tree           | key                      | value                                          |
//! |----------------|--------------------------|------------------------------------------------|
//! | `log`          | seq of the chunk's first | a chunk ([`codec::encode_chunk`]): consecutive events, immutable |
//! | `done`         | seq                      | empty: left the outbox above the floor         |
//! | `attempts`     | seq                      | `[attempts u32 BE]`, only after a failure      |
//! | `dead_letters` | seq                      | [`codec::DeadLetterV1`] with the raw event      |
//! | `route_events` | route id, `0x00`, seq    | empty: the audit-trail index                    |
//! | `meta`         | `state`                  | counters and cursors (`writer::MetaV2`)         |
//! | domain trees   | chosen by `store/`       | route records, written atomically with events   |
//!
//! A group's events are written as one chunk (split at a few KiB, module `log`): one sled insert for
//! many events. **The outbox needs no entry per event**: an event is pending when its sequence
//! number is at or above the *outbox floor* (in `meta`), below `next_seq`, and not in `done`.
//! Acks in order only move the floor; an ack out of order (or a dead letter) adds a `done` entry,
//! which goes once the floor passes it. Readers run beside the writer, so the writer publishes a
//! raised floor *before* it commits the removal of the `done` entries below it, and a read checks
//! the floor again when it ends: it never hands out an event that left before it began. A chunk is deleted whole, by retention, once none of its
//! events is pending. A store of the first format (an `events` entry and a `pending` entry per
//! event) is rewritten into this one at open (`migrate`).
//!
//! # Invariants
//!
//! * **One writer.** A single thread (`writer`) performs every mutation: appends, acks, retries,
//!   dead-lettering, pruning. It takes all requests waiting in its channel, plans them against the
//!   current state, applies them in **one sled transaction**, and — in `strict` durability —
//!   **flushes once** before answering any of them (group commit: 64 concurrent appends cost one
//!   fsync). Because it is the only writer, sequence numbers are assigned without gaps and the
//!   counters in `meta` are exact; they are written in the same transaction as the data, so they
//!   agree with it after any crash.
//! * **Durable before acknowledged.** In `strict` mode [`Outbox::append`] returns only after the
//!   group's flush *and* an `fdatasync` of what sled wrote (log file, new blob files, changed
//!   directories: the `stable` submodule), so an acknowledged event survives a killed process, an OS crash
//!   and a power cut. sled's `flush()` alone is not enough: it ends in `sync_file_range`, which
//!   survives only a killed process. In `interval` mode an append returns after the commit and a
//!   thread flushes and syncs every `storage.flush_interval_ms`; any crash, even of the process
//!   alone, loses the appends of that window.
//! * **Atomic with domain records.** A [`Write`] carries events and record changes; they commit
//!   together or not at all, with optional compare-and-set preconditions ([`Expect`]).
//! * **Bounded, never lossy.** When the pending events or bytes would pass the quota, the append
//!   fails with [`Error::QuotaExceeded`]; nothing queued is ever dropped to make room.
//! * **Removed only after Kafka acks.** [`Outbox::ack`] removes exactly the sequence numbers the
//!   publisher names. Records that cannot be decoded are moved to `dead_letters` with the reason.
//! * **Retention never touches pending events.** The log is pruned from the front by age and size
//!   up to the `prune_floor`, a chunk at a time; a chunk holding a pending event is kept (with its
//!   delivered neighbours) and deleted when its last pending event leaves the outbox.
//! * **A lost `meta` is recounted, never guessed down.** The outbox floor lives only there: a
//!   recount counts every logged event not in `done` as pending, so delivered events still in
//!   the log are sent again (duplicates, not a loss).
//!
//! # Lifecycle
//!
//! [`Outbox::open`] opens sled, loads `meta` (or recounts when it is missing) and starts the writer
//! thread. [`Outbox::shutdown`] lets the writer finish what is queued, flush and stop; later
//! appends fail with [`Error::Closed`].

pub mod codec;
mod log;
mod migrate;
mod plan;
mod reads;
mod space;
mod stable;
mod writer;

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

use crate::config::StorageConfig;
use crate::events::{Envelope, NewEvent};

pub use reads::{DeadLetter, Peeked, Replay, Stats};

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The quota is reached; nothing was written. Retry once the publisher has drained.
    #[error(
        "outbox is full: {pending_events} events / {pending_bytes} bytes wait for Kafka \
         (quota {max_events} events / {max_bytes} bytes)"
    )]
    QuotaExceeded {
        pending_events: u64,
        pending_bytes: u64,
        max_events: u64,
        max_bytes: u64,
    },
    /// The data directory's filesystem is down to its reserve; nothing was written. Retry once
    /// the publisher has drained (or someone made room).
    #[error(
        "the disk holding the outbox is full: {available_bytes} bytes free, {reserve_bytes} kept \
         in reserve for deliveries"
    )]
    DiskFull {
        available_bytes: u64,
        reserve_bytes: u64,
    },
    /// An [`Update`]'s closure declined (or panicked); nothing of it was written.
    #[error("the update was aborted")]
    Aborted,
    /// A precondition of the write did not hold; nothing was written.
    #[error("{tree} record changed concurrently")]
    Conflict { tree: String },
    /// The outbox is shutting down or its writer stopped.
    #[error("outbox is closed")]
    Closed,
    /// Storage failed earlier and only a reopen recovers ([`Outbox::failure`]); nothing was
    /// written.
    #[error("{0}")]
    Failed(String),
    #[error("cannot open storage at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("storage failure: {0}")]
    Storage(#[from] sled::Error),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
    /// No dead letter with that sequence number.
    #[error("no dead letter {0}")]
    NoDeadLetter(u64),
    /// The dead letter's raw bytes cannot be decoded, so it cannot be requeued.
    #[error("dead letter {seq} cannot be requeued: {reason}")]
    Unrequeueable { seq: u64, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Events and record changes that commit together.
#[derive(Debug, Clone, Default)]
pub struct Write {
    pub events: Vec<NewEvent>,
    pub records: Vec<RecordOp>,
}

/// A read-modify-write of domain records: the writer runs `apply` with the current values of
/// `reads` (including the writes planned before it in the same group) and commits what it
/// returns atomically, like an [`Outbox::append`]. No compare-and-set and no retry are needed,
/// since the writer is the only writer; a hot record (a vehicle sending fixes) never conflicts.
/// A consumer uses it to check its stored position and apply the effect of a batch of records
/// in one transaction.
pub struct Update {
    /// The records the closure reads, as (tree, key): trees named at [`Outbox::open`].
    pub reads: Vec<(&'static str, Vec<u8>)>,
    /// Runs on the writer thread, so it must be quick and do no I/O. `None` aborts this request
    /// alone with [`Error::Aborted`]; the closure reports why through what it captured. A panic
    /// inside it aborts the request too, not the writer.
    pub apply: UpdateFn,
}

/// The closure of an [`Update`]: the current values of its `reads`, in order, in; the write to
/// commit out.
pub type UpdateFn = Box<dyn FnOnce(&[Option<&[u8]>]) -> Option<Write> + Send>;

impl Update {
    /// An update of the one record `key` of `tree`.
    pub fn one(
        tree: &'static str,
        key: Vec<u8>,
        apply: impl FnOnce(Option<&[u8]>) -> Option<Write> + Send + 'static,
    ) -> Update {
        Update {
            reads: vec![(tree, key)],
            apply: Box::new(move |current| apply(current.first().copied().flatten())),
        }
    }
}

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update")
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

/// A change to a domain record.
#[derive(Debug, Clone)]
pub struct RecordOp {
    /// One of the domain trees named at [`Outbox::open`].
    pub tree: &'static str,
    pub key: Vec<u8>,
    /// `None` deletes.
    pub value: Option<Vec<u8>>,
    pub expect: Expect,
}

/// A compare-and-set precondition on a record's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Any,
    Absent,
    Equals(Vec<u8>),
}

/// A cloneable handle to the outbox.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<writer::Request>,
    /// Bytes of appends waiting for the writer ([`BACKLOG_BYTES`]).
    backlog: Arc<tokio::sync::Semaphore>,
    shared: Arc<Shared>,
    /// Joined by [`Outbox::shutdown`], so that the database is closed once the handles are gone.
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// State shared by the writer thread and every handle.
struct Shared {
    path: PathBuf,
    db: sled::Db,
    trees: Trees,
    config: StorageConfig,
    /// Exact copies of the writer's counters, refreshed after every commit.
    counters: Counters,
    /// Woken after appends commit, so the publisher does not poll.
    appended: Notify,
    /// Every durable event, in sequence order, for live subscribers.
    live: broadcast::Sender<Arc<Envelope>>,
    writer_alive: AtomicBool,
    /// Why the outbox can no longer write (a dead writer thread, a storage error sled latched),
    /// or `None` while it can. Set once, never cleared: only a reopen recovers.
    failure: watch::Sender<Option<String>>,
    space: space::Space,
    /// Own descriptors on sled's files, synced after each flush (sled's own flush is not an
    /// fsync: see [`stable`]).
    stable: Mutex<stable::Stable>,
}

impl Shared {
    /// Record why the outbox can no longer write; the first reason stays.
    fn fail(&self, reason: String) {
        self.failure.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            tracing::error!(reason = %reason, "the outbox can no longer write");
            *current = Some(reason);
            true
        });
    }

    /// The error a request of a group that failed with `e` gets.
    fn group_error(&self, e: &sled::Error) -> Error {
        match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::StorageFull
                    || io.raw_os_error() == Some(ENOSPC) =>
            {
                Error::DiskFull {
                    available_bytes: self.space.available(),
                    reserve_bytes: self.space.reserve(),
                }
            }
            other => Error::Storage(other.clone()),
        }
    }

    /// Flush sled and make the flushed bytes stable: after this returns, every committed write
    /// survives a power cut.
    fn make_stable(&self) -> sled::Result<()> {
        self.db.flush()?;
        self.stable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .sync()
            .map_err(sled::Error::Io)?;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Trees {
    log: sled::Tree,
    done: sled::Tree,
    attempts: sled::Tree,
    dead: sled::Tree,
    route_events: sled::Tree,
    meta: sled::Tree,
    /// In the order given to [`Outbox::open`]; the writer's transaction indexes them by position.
    domain: Vec<(&'static str, sled::Tree)>,
}

impl Trees {
    /// Every tree, in the writer's fixed order (`plan::LOG`…`plan::META`), then the domain trees.
    fn all(&self) -> Vec<sled::Tree> {
        let fixed = [
            &self.log,
            &self.done,
            &self.attempts,
            &self.dead,
            &self.route_events,
            &self.meta,
        ];
        let all: Vec<_> = fixed
            .into_iter()
            .chain(self.domain.iter().map(|(_, t)| t))
            .cloned()
            .collect();
        debug_assert_eq!(all.len(), plan::FIXED_TREES + self.domain.len());
        all
    }
}

#[derive(Default)]
struct Counters {
    pending_events: AtomicU64,
    pending_bytes: AtomicU64,
    log_events: AtomicU64,
    log_bytes: AtomicU64,
    dead_letters: AtomicU64,
    /// Highest sequence number that is durable (flushed in `strict` mode).
    durable_seq: AtomicU64,
    /// Events below this were pruned from the log unless still pending.
    prune_floor: AtomicU64,
    /// Events below this have left the outbox.
    outbox_floor: AtomicU64,
    /// Group-commit flushes since start: with many writers, far fewer than appends.
    flushes: AtomicU64,
}

const ENOSPC: i32 = 28;

/// Capacity of the live-event channel; a subscriber further behind than this is told it lagged.
const LIVE_CAPACITY: usize = 8192;
/// Requests that may wait for the writer before `append` waits too (backpressure).
const REQUEST_CAPACITY: usize = 16_384;
/// Bytes of appends (payloads and records) that may wait for the writer at once; an append
/// beyond waits until earlier ones are written. With `REQUEST_CAPACITY` this bounds the memory
/// queued in front of the writer however many requests are in flight.
const BACKLOG_BYTES: usize = 64 * 1024 * 1024;

/// What an [`Update`] holds of [`BACKLOG_BYTES`]: its result is not known before it runs.
const UPDATE_COST: u32 = 4096;

/// What an append holds of [`BACKLOG_BYTES`]: its bytes, at least 1, at most all of it (a
/// single write larger than the bound goes alone).
fn backlog_cost(write: &Write) -> u32 {
    let events: usize = write
        .events
        .iter()
        .map(|e| e.payload.len() + e.key.len() + e.topic.len())
        .sum();
    let records: usize = write
        .records
        .iter()
        .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
        .sum();
    (events + records).clamp(1, BACKLOG_BYTES) as u32
}

/// Rewrite the stored bytes of event `seq` in the store at `path` (not open elsewhere) with
/// `damage`, as disk corruption would: for tests of what routegate does with a damaged record.
/// `Ok(false)` when the log does not hold `seq`.
#[doc(hidden)]
pub fn damage_stored_event(
    path: &Path,
    seq: u64,
    damage: impl FnOnce(&mut Vec<u8>),
) -> Result<bool> {
    let db = sled::open(path)?;
    let damaged = reads::damage_event(&db.open_tree("log")?, seq, damage)?;
    db.flush()?;
    Ok(damaged)
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Error {
        Error::Task(e.to_string())
    }
}

/// How long [`open_db`] waits for a previous instance's file lock in this process.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Open sled, waiting a little for the database's file lock. The data directory's own lock
/// already keeps other processes out, so a busy sled lock can only be a previous `Outbox` of this
/// process whose sled background threads still hold the file for a moment after it shut down
/// (a restart within one process, as tests and the CLI do).
fn open_db(path: &Path, config: &StorageConfig) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let result = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity_bytes)
            // sled's own periodic flusher syncs only the log file; `interval` mode runs
            // `Shared::make_stable` on its own timer instead (see `writer::start_interval_sync`).
            .flush_every_ms(None)
            .open();
        match result {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Outbox {
    /// Open (or create) the store at `path` with the given domain trees and start the writer.
    pub fn open(path: &Path, config: &StorageConfig, domain: &[&'static str]) -> Result<Outbox> {
        let db = open_db(path, config).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let tree = |name: &str| db.open_tree(name);
        let trees = Trees {
            log: tree("log")?,
            done: tree("done")?,
            attempts: tree("attempts")?,
            dead: tree("dead_letters")?,
            route_events: tree("route_events")?,
            meta: tree("meta")?,
            domain: domain
                .iter()
                .map(|&name| Ok((name, tree(name)?)))
                .collect::<Result<_>>()?,
        };
        let io_err = |e| Error::Open {
            path: path.to_path_buf(),
            source: sled::Error::Io(e),
        };
        let stable = stable::Stable::open(path).map_err(io_err)?;
        let space = space::Space::new(path, config.min_free_bytes).map_err(io_err)?;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            db,
            trees,
            config: config.clone(),
            counters: Counters::default(),
            appended: Notify::new(),
            live,
            writer_alive: AtomicBool::new(true),
            failure: watch::channel(None).0,
            space,
            stable: Mutex::new(stable),
        });
        let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
        let writer = writer::start(shared.clone(), rx)?;
        Ok(Outbox {
            tx,
            backlog: Arc::new(tokio::sync::Semaphore::new(BACKLOG_BYTES)),
            shared,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Append events and record changes atomically; returns the sequenced events once durable.
    pub async fn append(&self, write: Write) -> Result<Vec<Arc<Envelope>>> {
        if write.events.is_empty() && write.records.is_empty() {
            return Ok(Vec::new());
        }
        let _queued = self
            .backlog
            .acquire_many(backlog_cost(&write))
            .await
            .map_err(|_| Error::Closed)?;
        self.request(|reply| writer::Request::Append { write, reply })
            .await?
    }

    /// Read-modify-write one record on the writer thread and append what the closure returns;
    /// returns the sequenced events once durable.
    pub async fn update(&self, update: Update) -> Result<Vec<Arc<Envelope>>> {
        let _queued = self
            .backlog
            .acquire_many(UPDATE_COST)
            .await
            .map_err(|_| Error::Closed)?;
        self.request(|reply| writer::Request::Update { update, reply })
            .await?
    }

    /// Kafka acknowledged these events: remove them from the outbox.
    pub async fn ack(&self, seqs: Vec<u64>) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.request(|reply| writer::Request::Ack { seqs, reply })
            .await?
    }

    /// A publish attempt for these events failed: count it.
    pub async fn record_failure(&self, seqs: Vec<u64>) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.request(|reply| writer::Request::Failed { seqs, reply })
            .await?
    }

    /// Move events out of the outbox into the dead-letter tree, each with its reason.
    pub async fn dead_letter(&self, items: Vec<(u64, String)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.request(|reply| writer::Request::DeadLetter { items, reply })
            .await?
    }

    /// Put a dead letter back into the outbox as a new event (same id, new sequence number).
    pub async fn requeue(&self, seq: u64) -> Result<Arc<Envelope>> {
        self.request(|reply| writer::Request::Requeue { seq, reply })
            .await?
    }

    /// Delete a dead letter for good.
    pub async fn purge(&self, seq: u64) -> Result<()> {
        self.request(|reply| writer::Request::Purge { seq, reply })
            .await?
    }

    /// Prune the event log now (the writer also does it periodically).
    pub async fn prune(&self) -> Result<()> {
        self.request(|reply| writer::Request::Prune { reply })
            .await?
    }

    /// Finish queued requests, flush and stop the writer. Idempotent.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .tx
            .send(writer::Request::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        let handle = self.writer.lock().expect("writer handle lock").take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// Resolves after the next append commits (or immediately if one committed since the last
    /// call): lets the publisher sleep instead of polling.
    pub async fn appended(&self) {
        self.shared.appended.notified().await;
    }

    /// Live, durable events in sequence order, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.shared.live.subscribe()
    }

    /// Whether the outbox can write (for readiness).
    /// Bytes the data directory's filesystem has left for unprivileged writers (`statvfs`).
    pub fn disk_available_bytes(&self) -> Option<u64> {
        Some(self.shared.space.available()).filter(|&b| b != u64::MAX)
    }

    pub fn is_healthy(&self) -> bool {
        self.failure().is_none()
    }

    /// Why the outbox can no longer write: its writer thread died, or storage failed in a way
    /// only a reopen (a restart) recovers from. `None` while healthy.
    pub fn failure(&self) -> Option<String> {
        if let Some(reason) = self.shared.failure.borrow().clone() {
            return Some(reason);
        }
        (!self.shared.writer_alive.load(Ordering::SeqCst))
            .then(|| "the outbox writer stopped".to_string())
    }

    /// Follow [`Outbox::failure`]: changes once, from `None` to the reason.
    pub fn watch_failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.failure.subscribe()
    }

    /// A domain tree, for the store's reads. Writes must go through [`Outbox::append`].
    pub fn domain_tree(&self, name: &str) -> Option<sled::Tree> {
        self.shared
            .trees
            .domain
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> writer::Request,
    ) -> Result<Result<T>> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Closed)?;
        match answer.await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.writer_gone().await;
                Err(Error::Closed)
            }
        }
    }

    /// The writer dropped a request unanswered: it is stopping or it panicked. Wait (briefly)
    /// until it is gone, so that whoever hears `Closed` then also sees [`Outbox::failure`]: the
    /// writer's supervisor records a panic only after the unwinding dropped the replies.
    async fn writer_gone(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.shared.writer_alive.load(Ordering::SeqCst)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
