//! Metrics as named events: one function per thing that happens, called where it happens.
//!
//! Names follow Prometheus conventions (`_total` counters, base units, `routegate_` prefix). The
//! `metrics` facade is a no-op until [`install`] sets the Prometheus recorder, so library code
//! and tests can emit freely. Gauges that mirror state (queue depth, circuit) are set when the
//! state changes or, for the outbox, just before each scrape from its exact counters.
//!
//! Every series routegate writes has a `# HELP` line (`describe`), and those a dashboard or an
//! alert compares against (the circuit, publish results, refusals) exist with their start value
//! from the first scrape on ([`started`]), not only after the first time they change. Process
//! series (resident memory, open descriptors, uptime) and the data directory's free bytes are
//! read just before each scrape ([`process_observed`]).

use std::time::Duration;

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::delivery::Circuit;
use crate::queue::Stats;

/// Latency buckets (seconds) for Kafka publishes and HTTP requests.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Install the Prometheus recorder (once per process) and return the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests); ours then just renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// `# HELP` text of every series.
fn describe() {
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    describe_histogram!(
        "routegate_kafka_publish_duration_seconds",
        "Time one produce request to Kafka took, in seconds."
    );
    describe_histogram!(
        "routegate_http_request_duration_seconds",
        "Time from a request's arrival to its answer, in seconds, per route."
    );
}

const GAUGES: &[(&str, &str)] = &[
    (
        "routegate_consumer_lag_records",
        "Records of a consumed partition not applied yet: its high watermark minus the stored position.",
    ),
    (
        "routegate_build_info",
        "Always 1; the version label names the running build.",
    ),
    (
        "routegate_uptime_seconds",
        "Seconds since this process started serving.",
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory of the process, in bytes.",
    ),
    ("process_open_fds", "Open file descriptors of the process."),
    (
        "routegate_data_dir_free_bytes",
        "Bytes left for unprivileged writers on the data directory's filesystem.",
    ),
    (
        "routegate_outbox_events",
        "Events in the outbox, not yet acknowledged by Kafka.",
    ),
    (
        "routegate_outbox_bytes",
        "Bytes of the events in the outbox.",
    ),
    (
        "routegate_outbox_dead_letters",
        "Events set aside after too many failed deliveries.",
    ),
    (
        "routegate_event_log_events",
        "Events kept in the local event log (for audit and WebSocket resume).",
    ),
    ("routegate_event_log_bytes", "Bytes of the local event log."),
    (
        "routegate_outbox_last_seq",
        "Sequence number of the newest durable event.",
    ),
    (
        "routegate_outbox_oldest_event_age_seconds",
        "Age of the oldest event waiting for Kafka, in seconds (0 when none waits).",
    ),
    (
        "routegate_kafka_topic_paused",
        "1 while delivery to the topic is paused for a missing permission.",
    ),
    (
        "routegate_circuit_state",
        "Kafka circuit breaker: 0 closed, 1 half-open, 2 open.",
    ),
    (
        "routegate_http_connections",
        "Open API connections (WebSocket sessions are counted apart).",
    ),
    ("routegate_ws_connections", "Open WebSocket sessions."),
];

const COUNTERS: &[(&str, &str)] = &[
    (
        "routegate_consumer_records_total",
        "Consumed Kafka records by topic and outcome: applied, skipped (own or filtered out) or dead_lettered.",
    ),
    (
        "routegate_outbox_fsyncs_total",
        "fsyncs that made appended events durable.",
    ),
    (
        "routegate_outbox_enqueued_total",
        "Events appended to the outbox, per event type.",
    ),
    (
        "routegate_outbox_rejected_total",
        "Appends refused: quota (configured limits), disk (free-space reserve), failed (storage failed).",
    ),
    (
        "routegate_drain_restarts_total",
        "Times the drain stopped on an error and was restarted.",
    ),
    (
        "routegate_kafka_publish_total",
        "Events per delivery outcome: ok, retry, dead_letter.",
    ),
    (
        "routegate_kafka_produce_splits_total",
        "Produce requests the broker rejected whole and that were split to isolate the cause.",
    ),
    (
        "routegate_kafka_authorization_denied_total",
        "Requests Kafka refused for a missing permission, per topic.",
    ),
    (
        "routegate_http_requests_total",
        "Answered API requests, per route and status.",
    ),
    (
        "routegate_http_connections_refused_total",
        "Connections past http.max_connections: probes_only or closed.",
    ),
    (
        "routegate_ws_catch_ups_total",
        "WebSocket clients that fell behind and were caught up from the event log.",
    ),
    (
        "routegate_ws_disconnects_total",
        "WebSocket sessions ended by the gateway, per reason.",
    ),
];

/// When serving started, for the uptime series.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Gives the series that alerts compare against their start values: called once the gateway
/// serves, with the circuit it starts in.
pub fn started(circuit: Circuit) {
    STARTED.get_or_init(Instant::now);
    gauge!("routegate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    circuit_changed(circuit);
    for result in ["ok", "retry", "dead_letter"] {
        counter!("routegate_kafka_publish_total", "result" => result).increment(0);
    }
    for reason in ["quota", "disk", "failed"] {
        counter!("routegate_outbox_rejected_total", "reason" => reason).increment(0);
    }
    counter!("routegate_drain_restarts_total").increment(0);
    counter!("routegate_kafka_produce_splits_total").increment(0);
    counter!("routegate_ws_catch_ups_total").increment(0);
    gauge!("routegate_http_connections").increment(0.0);
    gauge!("routegate_ws_connections").increment(0.0);
}

/// Process series and the data directory's free bytes (called before a scrape; Linux `/proc`).
pub fn process_observed(disk_free_bytes: Option<u64>) {
    if let Some(started) = STARTED.get() {
        gauge!("routegate_uptime_seconds").set(started.elapsed().as_secs_f64());
    }
    if let Some(free) = disk_free_bytes {
        gauge!("routegate_data_dir_free_bytes").set(free as f64);
    }
    if let Some(kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| resident_kib(&s))
    {
        gauge!("process_resident_memory_bytes").set(kib as f64 * 1024.0);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
fn resident_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Mirror the outbox's exact counters into gauges (called before a scrape).
pub fn outbox_observed(s: &Stats, now_us: i64) {
    gauge!("routegate_outbox_events").set(s.pending_events as f64);
    gauge!("routegate_outbox_bytes").set(s.pending_bytes as f64);
    gauge!("routegate_outbox_dead_letters").set(s.dead_letters as f64);
    gauge!("routegate_event_log_events").set(s.log_events as f64);
    gauge!("routegate_event_log_bytes").set(s.log_bytes as f64);
    gauge!("routegate_outbox_last_seq").set(s.durable_seq as f64);
    let age = s
        .oldest_pending_us
        .map(|t| ((now_us - t).max(0) as f64) / 1e6)
        .unwrap_or(0.0);
    gauge!("routegate_outbox_oldest_event_age_seconds").set(age);
    counter!("routegate_outbox_fsyncs_total").absolute(s.flushes);
}

pub fn events_enqueued(kind: &str, n: u64) {
    counter!("routegate_outbox_enqueued_total", "type" => kind.to_string()).increment(n);
}

/// An append refused: `quota` (the configured limits), `disk` (the free-space reserve) or
/// `failed` (storage failed and waits for a restart).
pub fn outbox_rejected(reason: &'static str) {
    counter!("routegate_outbox_rejected_total", "reason" => reason).increment(1);
}

/// The drain stopped on an error (or a panic) and was restarted after a pause.
pub fn drain_restarted() {
    counter!("routegate_drain_restarts_total").increment(1);
}

pub fn published(n: u64, took: Duration) {
    counter!("routegate_kafka_publish_total", "result" => "ok").increment(n);
    histogram!("routegate_kafka_publish_duration_seconds").record(took.as_secs_f64());
}

/// The broker rejected a produce request as a whole (too large, an invalid record, ...); it is
/// split in two to isolate the cause. Steady growth means `kafka.batch_max_bytes` is above the
/// topic's `max.message.bytes`.
pub fn produce_split() {
    counter!("routegate_kafka_produce_splits_total").increment(1);
}

pub fn publish_failed(n: u64) {
    counter!("routegate_kafka_publish_total", "result" => "retry").increment(n);
}

pub fn dead_lettered(n: u64) {
    counter!("routegate_kafka_publish_total", "result" => "dead_letter").increment(n);
}

/// Kafka refused routegate's principal a permission on `topic` (one refused request).
pub fn authorization_denied(topic: &str) {
    counter!("routegate_kafka_authorization_denied_total", "topic" => topic.to_string())
        .increment(1);
}

/// Delivery to `topic` paused (1) for a missing permission, or resumed (0).
pub fn topic_paused(topic: &str, paused: bool) {
    gauge!("routegate_kafka_topic_paused", "topic" => topic.to_string()).set(if paused {
        1.0
    } else {
        0.0
    });
}

pub fn circuit_changed(c: Circuit) {
    gauge!("routegate_circuit_state").set(c.gauge());
}

pub fn http_request(route: &'static str, status: u16, took: Duration) {
    counter!("routegate_http_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
    histogram!("routegate_http_request_duration_seconds", "route" => route)
        .record(took.as_secs_f64());
}

/// An API connection was accepted: `routegate_http_connections` counts the open ones
/// (WebSocket sessions are counted apart, once upgraded).
pub fn http_connection_opened() {
    gauge!("routegate_http_connections").increment(1.0);
}

/// …and one ended.
pub fn http_connection_closed() {
    gauge!("routegate_http_connections").decrement(1.0);
}

/// A connection past `http.max_connections`: `probes_only` (served `/health/*` only) or `closed`.
pub fn http_connection_refused(how: &'static str) {
    counter!("routegate_http_connections_refused_total", "how" => how).increment(1);
}

pub fn ws_connections(n: usize) {
    gauge!("routegate_ws_connections").set(n as f64);
}

/// A WebSocket client that fell behind was caught up from the event log on its connection.
pub fn ws_caught_up() {
    counter!("routegate_ws_catch_ups_total").increment(1);
}

pub fn ws_dropped(reason: &'static str) {
    counter!("routegate_ws_disconnects_total", "reason" => reason).increment(1);
}

pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!("routegate_consumer_lag_records", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

pub fn consumer_records(topic: &str, outcome: &'static str, n: u64) {
    if n > 0 {
        counter!("routegate_consumer_records_total", "topic" => topic.to_string(), "outcome" => outcome)
            .increment(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_vmrss_line() {
        let status = "Name:\trouteg\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nThreads:\t7\n";
        assert_eq!(resident_kib(status), Some(4242));
        assert_eq!(resident_kib("Name:\tx\n"), None);
    }
}
