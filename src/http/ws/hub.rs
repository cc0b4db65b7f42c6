//! The hub: one router task between the outbox and every connection.
//!
//! The router follows [`Outbox::subscribe`], serializes each event once ([`Frame::event`]) and
//! offers it to the connections whose filter matches, found through an index (by vehicle, by
//! route, or "everything"), with a non-blocking `try_send` into each connection's bounded queue.
//! An event therefore wakes only the connections that want it, and a full queue never makes the
//! router (let alone the outbox writer) wait: that connection is told it lagged and is dropped
//! from the index.
//!
//! A full queue whose session is blocked on its socket (or still replaying) means the client does
//! not keep up: it lags. A full queue whose session is runnable means the gateway is short of CPU (a burst: one
//! position batch can be hundreds of events): the router waits for room, up to [`ROOM_WAIT`] per
//! event, and only then lags the connection. The router may then fall behind the outbox; it reads
//! what it missed from the log (below), so the ingest path never waits either way.
//!
//! `routed` is the last seq the router has offered, updated under the same lock as the index, so
//! a connection that registers learns exactly which events it will get live (`seq > routed`) and
//! which it must read from the log (`seq <= routed`, all durable). When the router itself falls
//! behind the outbox's channel, it reads the missed events from the log, in order, before going
//! on; if retention already removed them, every connection is told it lagged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::{Filter, Frame};
use super::registry::{Bucket, Link, Registry, Waiting};
use crate::config::WebSocketConfig;
use crate::delivery::{self, Connectivity};
use crate::events::Envelope;
use crate::metrics;
use crate::queue::{Outbox, Replay};

/// Events read from the log per blocking call when the router fills a gap.
const GAP_PAGE: usize = 512;
/// Longest the router waits, per event, for connections that are behind but not lagging.
pub const ROOM_WAIT: Duration = Duration::from_millis(250);
/// How often a wait for room re-checks whether the connection's socket is blocked.
const RECHECK: Duration = Duration::from_millis(10);

/// A cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    outbox: Outbox,
    delivery: Arc<delivery::Status>,
    config: WebSocketConfig,
    /// Longest `vehicleId` / `routeId` filter accepted.
    max_id_len: usize,
    registry: Mutex<Registry>,
    /// Open connections (admitted upgrades), for the limit and the gauge.
    open: AtomicUsize,
    /// Cancelled at shutdown: the router stops and every session closes with 1001.
    shutdown: CancellationToken,
    /// The router and every session, so shutdown can wait for them.
    tracker: TaskTracker,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Subscribe to the outbox and start the router. `shutdown` closes every connection.
    pub fn start(
        outbox: Outbox,
        delivery: Arc<delivery::Status>,
        config: &WebSocketConfig,
        max_id_len: usize,
        shutdown: CancellationToken,
    ) -> Hub {
        let live = outbox.subscribe();
        let mut registry = Registry::default();
        registry.routed = outbox.durable_seq();
        let status = delivery.watch();
        let hub = Hub {
            inner: Arc::new(Inner {
                outbox,
                delivery,
                config: config.clone(),
                max_id_len,
                registry: Mutex::new(registry),
                open: AtomicUsize::new(0),
                shutdown,
                tracker: TaskTracker::new(),
            }),
        };
        hub.inner.tracker.spawn(hub.clone().route(live, status));
        hub
    }

    pub fn connections(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Close every connection with 1001 and wait up to `deadline` for them to finish. Returns
    /// `false` if some were still closing at the deadline.
    pub async fn close(&self, deadline: Duration) -> bool {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        tokio::time::timeout(deadline, self.inner.tracker.wait())
            .await
            .is_ok()
    }

    /// Take a connection slot, or `None` at `websocket.max_connections`.
    pub(super) fn admit(&self) -> Option<Slot> {
        let max = self.inner.config.max_connections as usize;
        let before = self
            .inner
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        metrics::ws_connections(before + 1);
        Some(Slot {
            hub: self.inner.clone(),
        })
    }

    /// Start following live events. Returns the guard that unregisters, the connection's queue
    /// and `routed`: every matching event after it will arrive on the queue.
    pub(super) fn register(
        &self,
        filter: &Filter,
        link: Arc<Link>,
    ) -> (Registration, mpsc::Receiver<Arc<Frame>>, u64) {
        let (tx, rx) = mpsc::channel(self.inner.config.buffer_messages as usize);
        let mut reg = self.registry();
        let (id, bucket) = reg.insert(filter, tx, link);
        let routed = reg.routed;
        let guard = Registration {
            hub: self.inner.clone(),
            id,
            bucket,
        };
        (guard, rx, routed)
    }

    pub(super) fn spawn(&self, session: impl Future<Output = ()> + Send + 'static) {
        self.inner.tracker.spawn(session);
    }

    pub(super) fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    pub(super) fn config(&self) -> &WebSocketConfig {
        &self.inner.config
    }

    pub(super) fn max_id_len(&self) -> usize {
        self.inner.max_id_len
    }

    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Kafka connectivity now (for `hello`).
    pub(super) fn kafka(&self) -> Connectivity {
        *self.inner.delivery.watch().borrow()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The router task: live events and connectivity changes, until shutdown.
    async fn route(
        self,
        mut live: broadcast::Receiver<Arc<Envelope>>,
        mut status: watch::Receiver<Connectivity>,
    ) {
        let mut status_open = true;
        loop {
            tokio::select! {
                biased;
                () = self.inner.shutdown.cancelled() => break,
                event = live.recv() => match event {
                    Ok(env) => self.on_event(&env).await,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "websocket router fell behind; reading the log");
                    }
                    Err(RecvError::Closed) => break,
                },
                changed = status.changed(), if status_open => match changed {
                    Ok(()) => {
                        let c = *status.borrow_and_update();
                        self.on_status(c).await;
                    }
                    Err(_) => status_open = false,
                },
            }
        }
    }

    async fn on_event(&self, env: &Arc<Envelope>) {
        let routed = {
            let mut reg = self.registry();
            if reg.is_empty() {
                // Nobody listens: skip the serialization (ingest may run at thousands/s).
                reg.routed = reg.routed.max(env.seq);
                return;
            }
            reg.routed
        };
        if env.seq <= routed {
            return;
        }
        if env.seq > routed + 1 {
            self.fill_gap(env.seq - 1).await;
        }
        self.offer(&Frame::event(env)).await;
    }

    async fn on_status(&self, c: Connectivity) {
        let routed = self.registry().routed;
        self.offer(&Frame::status(routed, Utc::now(), c)).await;
    }

    async fn offer(&self, frame: &Arc<Frame>) {
        let waiting = self.registry().offer(frame);
        if !waiting.is_empty() {
            wait_for_room(frame, waiting).await;
        }
    }

    /// Offer the logged events after `routed` up to `upto`, in order.
    async fn fill_gap(&self, upto: u64) {
        loop {
            let after = self.registry().routed;
            if after >= upto {
                return;
            }
            let outbox = self.inner.outbox.clone();
            let page = tokio::task::spawn_blocking(move || outbox.replay(after, upto, GAP_PAGE))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match page {
                Ok(Replay::Events(events)) if !events.is_empty() => {
                    for env in &events {
                        self.offer(&Frame::event(env)).await;
                    }
                }
                Ok(Replay::Events(_)) => {
                    // Nothing logged in the rest of the range: sequence numbers never used.
                    self.registry().routed = upto;
                }
                Ok(Replay::Reset { oldest_available }) => {
                    tracing::warn!(oldest_available, "events the router missed were pruned");
                    self.registry().lag_everyone(upto);
                }
                Err(cause) => {
                    tracing::error!(%cause, "cannot read the event log to fill a gap");
                    self.registry().lag_everyone(upto);
                }
            }
        }
    }
}

/// Queue `frame` for connections that were full without lagging, as soon as each has room. A
/// connection whose socket blocks meanwhile, or that has no room when `ROOM_WAIT` has passed,
/// lags. The frame goes to each before the router offers the next one, so order is kept.
async fn wait_for_room(frame: &Arc<Frame>, waiting: Vec<Waiting>) {
    let deadline = Instant::now() + ROOM_WAIT;
    for w in waiting {
        loop {
            if w.link.has_lagged() {
                break;
            }
            if !w.link.is_draining() {
                w.link.lag();
                break;
            }
            let step = (Instant::now() + RECHECK).min(deadline);
            match tokio::time::timeout_at(step, w.tx.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(frame.clone());
                    break;
                }
                Ok(Err(_closed)) => break,
                Err(_) if Instant::now() >= deadline => {
                    w.link.lag();
                    break;
                }
                Err(_) => {}
            }
        }
    }
}

/// An admitted connection; dropping it frees the slot.
pub(super) struct Slot {
    hub: Arc<Inner>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.hub.open.fetch_sub(1, Ordering::SeqCst);
        metrics::ws_connections(before.saturating_sub(1));
    }
}

/// A connection's place in the index; dropping it unregisters.
pub(super) struct Registration {
    hub: Arc<Inner>,
    id: u64,
    bucket: Bucket,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut reg = self.hub.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.remove(self.id, &self.bucket);
    }
}

#[cfg(test)]
mod tests;
