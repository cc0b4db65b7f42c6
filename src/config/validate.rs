//! Range and consistency checks of [`Settings`] that serde's types cannot express: each names
//! the key and what is allowed; [`super::layers::load`] adds the value and where it came from.

use std::net::SocketAddr;

use super::*;

/// A failed range check: which key, and what is allowed.
struct Violation(&'static str, String);

impl Settings {
    /// Range and consistency checks that serde's types cannot express.
    ///
    /// Returns the first violation as `(key, allowed)`; [`layers::load`] adds value and origin.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.violations()
            .map_err(|Violation(key, allowed)| (key.to_string(), allowed))
    }

    fn violations(&self) -> Result<(), Violation> {
        let check = |ok: bool, key: &'static str, allowed: &str| {
            if ok {
                Ok(())
            } else {
                Err(Violation(key, allowed.to_string()))
            }
        };
        let (h, s, k, o, w) = (
            &self.http,
            &self.storage,
            &self.kafka,
            &self.optimize,
            &self.websocket,
        );
        check(
            h.bind.parse::<SocketAddr>().is_ok(),
            "http.bind",
            "expected an IP socket address such as 127.0.0.1:4000 or 0.0.0.0:4000",
        )?;
        check(
            h.max_body_bytes >= 1024,
            "http.max_body_bytes",
            "expected at least 1024",
        )?;
        check(
            (1..=1_000_000).contains(&h.max_in_flight),
            "http.max_in_flight",
            "expected 1 to 1000000",
        )?;
        check(
            h.request_timeout_ms >= 100,
            "http.request_timeout_ms",
            "expected at least 100",
        )?;
        check(
            h.header_timeout_ms >= 100,
            "http.header_timeout_ms",
            "expected at least 100",
        )?;
        check(
            h.body_timeout_ms >= 100,
            "http.body_timeout_ms",
            "expected at least 100",
        )?;
        check(
            h.max_timestamp_age_ms <= 100 * 365 * 24 * 3600 * 1000,
            "http.max_timestamp_age_ms",
            "expected at most 100 years",
        )?;
        check(
            h.max_timestamp_lead_ms <= 365 * 24 * 3600 * 1000,
            "http.max_timestamp_lead_ms",
            "expected at most a year",
        )?;
        check(
            h.max_connections == 0 || h.max_connections >= 16,
            "http.max_connections",
            "expected 0 (derived from the file-descriptor limit) or at least 16",
        )?;
        check(
            h.api_tokens.iter().all(|t| is_usable_token(t)),
            "http.api_tokens",
            TOKEN_RULE,
        )?;
        check(
            !s.data_dir.as_os_str().is_empty(),
            "storage.data_dir",
            "expected a directory path",
        )?;
        check(
            (1..=60_000).contains(&s.flush_interval_ms),
            "storage.flush_interval_ms",
            "expected 1 to 60000",
        )?;
        check(
            s.max_queue_bytes >= MIB,
            "storage.max_queue_bytes",
            "expected at least 1048576",
        )?;
        check(
            s.max_queue_events >= 1,
            "storage.max_queue_events",
            "expected at least 1",
        )?;
        check(
            s.cache_capacity_bytes >= MIB,
            "storage.cache_capacity_bytes",
            "expected at least 1048576",
        )?;
        check(
            !k.brokers.is_empty() && k.brokers.iter().all(|b| is_host_port(b)),
            "kafka.brokers",
            "expected a comma-separated list of host:port",
        )?;
        check(
            !k.client_id.is_empty(),
            "kafka.client_id",
            "expected a non-empty string",
        )?;
        check(
            !k.event_source.is_empty(),
            "kafka.event_source",
            "expected a non-empty URI reference",
        )?;
        check(
            (1..=10_000).contains(&k.topic_partitions),
            "kafka.topic_partitions",
            "expected 1 to 10000",
        )?;
        check(
            (1..=32).contains(&k.replication_factor),
            "kafka.replication_factor",
            "expected 1 to 32",
        )?;
        check(
            (1..=100_000).contains(&k.batch_max_records),
            "kafka.batch_max_records",
            "expected 1 to 100000",
        )?;
        check(
            (1024..=64 * MIB).contains(&k.batch_max_bytes),
            "kafka.batch_max_bytes",
            "expected 1024 to 67108864",
        )?;
        check(
            k.linger_ms <= 60_000,
            "kafka.linger_ms",
            "expected 0 to 60000",
        )?;
        check(
            k.max_record_bytes >= 1024 && k.max_record_bytes <= k.batch_max_bytes,
            "kafka.max_record_bytes",
            "expected at least 1024 and at most kafka.batch_max_bytes",
        )?;
        check(
            (100..=600_000).contains(&k.request_timeout_ms),
            "kafka.request_timeout_ms",
            "expected 100 to 600000",
        )?;
        check(
            k.backoff_initial_ms >= 1 && k.backoff_initial_ms <= k.backoff_max_ms,
            "kafka.backoff_initial_ms",
            "expected at least 1 and at most kafka.backoff_max_ms",
        )?;
        check(
            k.breaker_failure_threshold >= 1,
            "kafka.breaker_failure_threshold",
            "expected at least 1",
        )?;
        for (key, topic) in [
            ("kafka.topics.route_optimized", &k.topics.route_optimized),
            ("kafka.topics.route_updated", &k.topics.route_updated),
            ("kafka.topics.vehicle_position", &k.topics.vehicle_position),
        ] {
            check(
                is_topic_name(topic),
                key,
                "expected a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -",
            )?;
        }
        check(
            k.fetch_max_wait_ms <= 60_000,
            "kafka.fetch_max_wait_ms",
            "expected 0 to 60000",
        )?;
        check(
            (1024..=64 * MIB as u32).contains(&k.fetch_max_bytes),
            "kafka.fetch_max_bytes",
            "expected 1024 to 67108864",
        )?;
        for (i, c) in k.consume.iter().enumerate() {
            check(
                is_topic_name(&c.topic),
                "kafka.consume.topic",
                "expected a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -",
            )?;
            check(
                !k.consume[..i].iter().any(|d| d.topic == c.topic),
                "kafka.consume.topic",
                "expected each topic in one [[kafka.consume]] entry only",
            )?;
            check(
                !c.vehicle_field.is_empty(),
                "kafka.consume.vehicle_field",
                "expected a JSON field name",
            )?;
            check(
                c.handler != ConsumeHandler::Routes
                    || !self.depot.id.is_empty()
                    || !c.vehicles.is_empty(),
                "kafka.consume.handler",
                "expected depot.id or the consumer's vehicles with handler = \"routes\": \
                 they say which routes are this depot's",
            )?;
        }
        let sasl = &k.sasl;
        check(
            sasl.mechanism == SaslMechanism::None || !sasl.username.is_empty(),
            "kafka.sasl.username",
            "expected a user name when kafka.sasl.mechanism is set",
        )?;
        check(
            (1..=100_000).contains(&o.max_stops),
            "optimize.max_stops",
            "expected 1 to 100000",
        )?;
        check(
            (1.0..=5.0).contains(&o.detour_factor),
            "optimize.detour_factor",
            "expected 1.0 to 5.0",
        )?;
        check(
            o.average_speed_kmh > 0.0 && o.average_speed_kmh <= 300.0,
            "optimize.average_speed_kmh",
            "expected more than 0 and at most 300",
        )?;
        check(
            (1..=10_000).contains(&o.max_queued_solves),
            "optimize.max_queued_solves",
            "expected 1 to 10000",
        )?;
        check(
            (1..=600_000).contains(&o.max_compute_ms),
            "optimize.max_compute_ms",
            "expected 1 to 600000",
        )?;
        let r = &self.routing;
        check(
            r.max_snap_meters > 0.0 && r.max_snap_meters <= 100_000.0,
            "routing.max_snap_meters",
            "expected more than 0 and at most 100000",
        )?;
        check(
            w.max_connections >= 1,
            "websocket.max_connections",
            "expected at least 1",
        )?;
        check(
            (1..=1_000_000).contains(&w.buffer_messages),
            "websocket.buffer_messages",
            "expected 1 to 1000000",
        )?;
        check(
            w.ping_interval_ms >= 100,
            "websocket.ping_interval_ms",
            "expected at least 100",
        )
    }
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// Kafka's own rule (`org.apache.kafka.common.internals.Topic.validate`).
pub fn is_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}
