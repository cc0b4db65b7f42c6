//! `GET /traffic/routes/kafka-health` and `GET /metrics`.
//!
//! Kafka's health is reported here, apart from `/health/*`, because the gateway keeps working
//! while Kafka is away: this endpoint says how delivery is doing, not whether to send traffic.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::{self, Response};
use warp::{Filter, Rejection, Reply};

use crate::delivery::{Circuit, PausedTopic, Snapshot, Status};
use crate::metrics;
use crate::queue::{Outbox, Stats};

/// Queued events older than this make delivery "degraded" even without errors.
const STUCK_AFTER_SECS: f64 = 60.0;

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaHealth {
    pub status: Health,
    pub message: String,
    pub circuit: Circuit,
    pub queue_depth: u64,
    pub queue_bytes: u64,
    pub oldest_event_age_seconds: f64,
    pub dead_letters: u64,
    pub last_published_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Topics Kafka refuses routegate a permission on: their events wait, in order.
    pub paused_topics: Vec<PausedTopic>,
    /// Each consumed partition: position, lag, counts, and why it retries if it does. Consumers
    /// do not change `status`: the outbox's delivery does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<crate::consume::PartitionState>,
}

/// Judge delivery from the publisher's snapshot and the queue's figures.
pub fn assess(d: &Snapshot, q: &Stats, now: DateTime<Utc>) -> KafkaHealth {
    let age = q
        .oldest_pending_us
        .map(|t| ((now.timestamp_micros() - t).max(0) as f64) / 1e6)
        .unwrap_or(0.0);
    let failing = match (d.last_failure_at, d.last_success_at) {
        (Some(f), Some(s)) => f > s,
        (Some(_), None) => true,
        _ => false,
    };
    let err = d.last_error.clone().unwrap_or_default();
    let (status, message) = match (&q.failure, &d.stalled) {
        (Some(failure), _) => (Health::Unhealthy, failure.clone()),
        (None, Some(stall)) => (Health::Unhealthy, stall.clone()),
        (None, None) if d.circuit != Circuit::Open && !d.paused.is_empty() => {
            (Health::Degraded, paused_message(&d.paused))
        }
        (None, None) => judge_circuit(d, failing, &err, age),
    };
    KafkaHealth {
        status,
        message,
        circuit: d.circuit,
        queue_depth: q.pending_events,
        queue_bytes: q.pending_bytes,
        oldest_event_age_seconds: age,
        dead_letters: q.dead_letters,
        last_published_at: d.last_success_at,
        last_error: d.last_error.clone(),
        last_error_at: d.last_failure_at,
        paused_topics: d.paused.clone(),
        consumers: Vec::new(),
    }
}

/// Delivery to some topics is paused for a missing permission: name them, what Kafka refused,
/// and what to do (the details of each are in `pausedTopics`).
fn paused_message(paused: &[PausedTopic]) -> String {
    let what: Vec<String> = paused
        .iter()
        .map(|p| {
            format!(
                "topic {:?}: {}; grant it with: {}",
                p.topic, p.denied, p.fix
            )
        })
        .collect();
    format!(
        "delivery paused, not authorized: {}. The events of {} wait in order and nothing is \
         dead-lettered; delivery resumes by itself once the ACL is granted",
        what.join(" | "),
        if paused.len() == 1 {
            "that topic"
        } else {
            "these topics"
        },
    )
}

fn judge_circuit(d: &Snapshot, failing: bool, err: &str, age: f64) -> (Health, String) {
    match d.circuit {
        Circuit::Open => (
            Health::Unhealthy,
            format!(
                "circuit open after {} consecutive failures ({err}); events wait on disk",
                d.consecutive_failures
            ),
        ),
        Circuit::HalfOpen => (Health::Degraded, "probing Kafka after failures".into()),
        Circuit::Closed if failing => (
            Health::Degraded,
            format!("last attempt failed, retrying: {err}"),
        ),
        Circuit::Closed if d.last_success_at.is_none() => {
            (Health::Degraded, "not yet connected to Kafka".into())
        }
        Circuit::Closed if age > STUCK_AFTER_SECS => (
            Health::Degraded,
            format!("oldest queued event is {age:.0} s old"),
        ),
        Circuit::Closed => (Health::Healthy, "events are flowing".into()),
    }
}

/// `GET /traffic/routes/kafka-health`: 200 when healthy, 503 otherwise.
pub fn kafka_health(
    outbox: Outbox,
    delivery: Arc<Status>,
    consumers: Arc<crate::consume::Status>,
    guard: impl Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / "kafka-health")
        .and(crate::http::openapi::read())
        .and(guard)
        .then(move || {
            let (outbox, delivery, consumers) =
                (outbox.clone(), delivery.clone(), consumers.clone());
            async move {
                // `stats` reads sled (the oldest pending event): off the async workers.
                let stats = tokio::task::spawn_blocking(move || outbox.stats()).await;
                let Ok(stats) = stats else {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                };
                let mut h = assess(&delivery.snapshot(), &stats, Utc::now());
                h.consumers = consumers.snapshot();
                let code = if h.status == Health::Healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                reply::with_status(reply::json(&h), code).into_response()
            }
        })
}

/// `GET /metrics`: Prometheus text format.
pub fn metrics(
    outbox: Outbox,
    handle: PrometheusHandle,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(crate::http::openapi::read())
        .then(move || {
            let (outbox, handle) = (outbox.clone(), handle.clone());
            async move {
                // `stats` reads sled and rendering walks every series: off the async workers.
                let body = tokio::task::spawn_blocking(move || {
                    metrics::outbox_observed(&outbox.stats(), Utc::now().timestamp_micros());
                    metrics::process_observed(outbox.disk_available_bytes());
                    handle.render()
                })
                .await
                .unwrap_or_default();
                reply::with_header(body, "content-type", "text/plain; version=0.0.4")
                    .into_response()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(circuit: Circuit) -> Snapshot {
        Snapshot {
            circuit,
            last_success_at: Some(Utc::now()),
            last_failure_at: None,
            last_error: None,
            consecutive_failures: 0,
            published_total: 1,
            retried_total: 0,
            dead_lettered_total: 0,
            stalled: None,
            restarts: 0,
            paused: Vec::new(),
        }
    }

    #[test]
    fn health_follows_circuit_errors_and_queue_age() {
        let now = Utc::now();
        let q = Stats::default();
        assert_eq!(
            assess(&snapshot(Circuit::Closed), &q, now).status,
            Health::Healthy
        );
        assert_eq!(
            assess(&snapshot(Circuit::Open), &q, now).status,
            Health::Unhealthy
        );
        assert_eq!(
            assess(&snapshot(Circuit::HalfOpen), &q, now).status,
            Health::Degraded
        );
        let mut failing = snapshot(Circuit::Closed);
        failing.last_failure_at = Some(now + chrono::Duration::seconds(1));
        failing.last_error = Some("timeout".into());
        let h = assess(&failing, &q, now);
        assert_eq!(h.status, Health::Degraded);
        assert!(h.message.contains("timeout"));
        let old = Stats {
            pending_events: 3,
            oldest_pending_us: Some((now - chrono::Duration::seconds(120)).timestamp_micros()),
            ..Stats::default()
        };
        let h = assess(&snapshot(Circuit::Closed), &old, now);
        assert_eq!(h.status, Health::Degraded);
        assert!((h.oldest_event_age_seconds - 120.0).abs() < 1.0);
        let mut fresh = snapshot(Circuit::Closed);
        fresh.last_success_at = None;
        assert_eq!(assess(&fresh, &q, now).status, Health::Degraded);
    }

    #[test]
    fn a_stalled_drain_or_failed_storage_is_unhealthy_with_its_reason() {
        let now = Utc::now();
        let mut stalled = snapshot(Circuit::Closed);
        stalled.stalled = Some("the drain failed on the outbox: eio; retrying".into());
        let h = assess(&stalled, &Stats::default(), now);
        assert_eq!(h.status, Health::Unhealthy);
        assert!(h.message.contains("the drain failed"), "{}", h.message);
        let broken = Stats {
            failure: Some("storage failed: eio; restart routegate".into()),
            ..Stats::default()
        };
        let h = assess(&snapshot(Circuit::Closed), &broken, now);
        assert_eq!(h.status, Health::Unhealthy);
        assert!(h.message.starts_with("storage failed"), "{}", h.message);
    }

    #[test]
    fn a_paused_topic_degrades_health_naming_the_topic_the_permission_and_the_fix() {
        let now = Utc::now();
        let mut paused = snapshot(Circuit::Closed);
        paused.paused = vec![PausedTopic {
            topic: "positions".into(),
            denied: "Kafka refused User:routegate WRITE on topic \"positions\" (produce: …)".into(),
            fix: "kafka-acls.sh … --operation WRITE --topic 'positions'".into(),
            since: now,
            retries: 2,
            next_retry_at: Some(now),
        }];
        let h = assess(&paused, &Stats::default(), now);
        assert_eq!(h.status, Health::Degraded);
        for part in ["positions", "WRITE", "kafka-acls.sh", "resumes by itself"] {
            assert!(h.message.contains(part), "{part}: {}", h.message);
        }
        assert_eq!(h.paused_topics, paused.paused);
        paused.circuit = Circuit::Open;
        let h = assess(&paused, &Stats::default(), now);
        assert!(h.message.starts_with("circuit open"), "{}", h.message);
        assert_eq!(h.paused_topics.len(), 1, "still listed");
    }
}
