//! Delivery status: what the publisher knows about Kafka, for the health endpoint, metrics and
//! live clients.
//!
//! The publisher writes it and everyone else reads it; it lives outside both so that `http` and
//! `publisher` never import each other (they meet only through `queue` and here).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metrics;

/// The circuit breaker's externally visible state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            Circuit::Closed => 0.0,
            Circuit::HalfOpen => 1.0,
            Circuit::Open => 2.0,
        }
    }
}

/// A point-in-time copy of the publisher's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub circuit: Circuit,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub published_total: u64,
    pub retried_total: u64,
    pub dead_lettered_total: u64,
    /// Why the drain is not running right now (a storage error it is backing off from), or
    /// `None` while it runs.
    pub stalled: Option<String>,
    /// Times the drain restarted after an error or a panic.
    pub restarts: u64,
    /// Topics whose delivery is paused because Kafka refuses routegate a permission on them;
    /// their events wait in the outbox, in order.
    #[serde(default)]
    pub paused: Vec<PausedTopic>,
}

/// A topic whose delivery is paused: Kafka refused routegate's principal an operation on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausedTopic {
    pub topic: String,
    /// What Kafka refused, to whom, and its answer.
    pub denied: String,
    /// The `kafka-acls` command that grants what is missing.
    pub fix: String,
    /// When the pause began.
    pub since: DateTime<Utc>,
    /// Retries refused since the pause began.
    pub retries: u32,
    /// When the topic is tried again (`None` while a retry is under way).
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// The state live clients are told about when it changes (`kafka.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connectivity {
    pub circuit: Circuit,
    /// Whether the last attempt to reach Kafka succeeded.
    pub reachable: bool,
}

/// Shared, updated by the publisher, read by everyone else.
#[derive(Debug)]
pub struct Status {
    inner: Mutex<Snapshot>,
    changes: watch::Sender<Connectivity>,
}

impl Default for Status {
    fn default() -> Self {
        let snapshot = Snapshot {
            circuit: Circuit::Closed,
            last_success_at: None,
            last_failure_at: None,
            last_error: None,
            consecutive_failures: 0,
            published_total: 0,
            retried_total: 0,
            dead_lettered_total: 0,
            stalled: None,
            restarts: 0,
            paused: Vec::new(),
        };
        let (changes, _) = watch::channel(Connectivity {
            circuit: Circuit::Closed,
            reachable: false,
        });
        Status {
            inner: Mutex::new(snapshot),
            changes,
        }
    }
}

impl Status {
    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    /// Follow connectivity changes.
    pub fn watch(&self) -> watch::Receiver<Connectivity> {
        self.changes.subscribe()
    }

    pub fn success(&self, published: u64, circuit: Circuit) {
        let mut s = self.lock();
        s.last_success_at = Some(Utc::now());
        s.consecutive_failures = 0;
        s.published_total += published;
        self.set_circuit(&mut s, circuit, true);
    }

    /// A round failed for `retried` events; `published` others of it went through.
    pub fn failure(&self, error: &str, retried: u64, published: u64, circuit: Circuit) {
        let mut s = self.lock();
        s.published_total += published;
        s.last_failure_at = Some(Utc::now());
        s.last_error = Some(error.to_string());
        s.consecutive_failures += 1;
        s.retried_total += retried;
        self.set_circuit(&mut s, circuit, false);
    }

    /// The drain stopped on an error and restarts after a pause.
    pub fn stalled(&self, reason: &str) {
        let mut s = self.lock();
        s.stalled = Some(reason.to_string());
        s.restarts += 1;
        metrics::drain_restarted();
    }

    /// The drain completed a round again after a stall.
    pub fn unstalled(&self) {
        let mut s = self.lock();
        if s.stalled.take().is_some() {
            tracing::info!("the drain runs again");
        }
    }

    /// The topics whose delivery is paused now (replaces the previous list).
    pub fn paused(&self, topics: Vec<PausedTopic>) {
        self.lock().paused = topics;
    }

    pub fn dead_lettered(&self, n: u64) {
        self.lock().dead_lettered_total += n;
    }

    pub fn circuit(&self, circuit: Circuit) {
        let mut s = self.lock();
        let reachable = self.changes.borrow().reachable;
        self.set_circuit(&mut s, circuit, reachable);
    }

    fn set_circuit(&self, s: &mut Snapshot, circuit: Circuit, reachable: bool) {
        if s.circuit != circuit {
            tracing::info!(from = ?s.circuit, to = ?circuit, "kafka circuit changed");
            metrics::circuit_changed(circuit);
        }
        s.circuit = circuit;
        self.changes.send_if_modified(|c| {
            let next = Connectivity { circuit, reachable };
            let changed = *c != next;
            *c = next;
            changed
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
