//! Events: what routegate announces, as the outbox stores it and Kafka and WebSocket clients see it.
//!
//! An event is created by a handler as a [`NewEvent`] (its id and time are fixed there, so the
//! domain record written with it can name it), and becomes an [`Envelope`] when the outbox assigns
//! its sequence number inside the atomic write. The payload is opaque JSON bytes: changes to the
//! business payload never touch the storage format.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// CloudEvents `type` of a route that was just planned.
pub const ROUTE_OPTIMIZED: &str = "route.optimized";
/// CloudEvents `type` of a change to a route (a stop status, a re-plan).
pub const ROUTE_UPDATED: &str = "route.updated";
/// CloudEvents `type` of a GPS fix.
pub const VEHICLE_POSITION: &str = "vehicle.position";

/// An event before the outbox has sequenced it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// UUIDv7: time-ordered, unique, the CloudEvents `id` consumers deduplicate on.
    pub id: Uuid,
    /// CloudEvents `type`, e.g. [`ROUTE_OPTIMIZED`].
    pub kind: String,
    /// Kafka topic; empty for a local event (see [`Envelope::is_local`]).
    pub topic: String,
    /// Kafka record key (the vehicle id): picks the partition, so a vehicle's events stay in order.
    pub key: String,
    /// The route this event belongs to, for the audit trail and WebSocket filters.
    pub route_id: Option<String>,
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// The JSON document (Kafka record value, WebSocket `data`).
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// A new event stamped with a fresh UUIDv7 and the current time.
    pub fn now(
        kind: &str,
        topic: &str,
        key: &str,
        route_id: Option<&str>,
        payload: &impl Serialize,
    ) -> NewEvent {
        let now = Utc::now();
        NewEvent {
            id: Uuid::now_v7(),
            kind: kind.to_string(),
            topic: topic.to_string(),
            key: key.to_string(),
            route_id: route_id.map(str::to_string),
            created_at_us: now.timestamp_micros(),
            payload: serde_json::to_vec(payload).expect("serializing a JSON value cannot fail"),
        }
    }

    /// Bytes of the Kafka record this event becomes (see [`record_size`]).
    pub fn record_size(&self, origin: &Origin) -> usize {
        let headers = record_headers(
            self.id,
            &self.kind,
            self.route_id.as_deref(),
            self.created_at_us,
            origin,
        );
        record_size(&self.key, &self.payload, &headers)
    }
}

/// Who stamps the records: `kafka.event_source` (the `ce_source` header) and `depot.id` (the
/// `ce_depotid` extension header, when set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub source: String,
    pub depot: String,
}

impl Origin {
    pub fn new(source: &str, depot: &str) -> Origin {
        Origin {
            source: source.to_string(),
            depot: depot.to_string(),
        }
    }
}

/// The headers of an event's Kafka record: the CloudEvents Kafka protocol binding in binary
/// mode (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_subject` when the
/// event belongs to a route, `ce_depotid` when `depot.id` is set, `content-type`). One definition for the sink that writes them and
/// for the store that checks, before acknowledging, that the record will fit.
pub fn record_headers(
    id: Uuid,
    kind: &str,
    route_id: Option<&str>,
    created_at_us: i64,
    origin: &Origin,
) -> Vec<(&'static str, String)> {
    let time = Utc
        .timestamp_micros(created_at_us)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut h = vec![
        ("ce_specversion", "1.0".to_string()),
        ("ce_id", id.to_string()),
        ("ce_type", kind.to_string()),
        ("ce_source", origin.source.clone()),
        ("ce_time", time),
    ];
    if let Some(route) = route_id {
        h.push(("ce_subject", route.to_string()));
    }
    if !origin.depot.is_empty() {
        h.push(("ce_depotid", origin.depot.clone()));
    }
    h.push(("content-type", "application/json".to_string()));
    h
}

/// Bytes a Kafka record occupies as the drain counts them against `kafka.max_record_bytes`:
/// key, value, and every header's name and value (what rskafka's `approximate_size` counts).
pub fn record_size(key: &str, payload: &[u8], headers: &[(&'static str, String)]) -> usize {
    let headers: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    key.len() + payload.len() + headers
}

/// Most bytes a Kafka record occupies inside a v2 record batch, encoding included: the
/// length, attribute, timestamp and offset deltas and every length as the varints Kafka
/// writes, each counted at its widest where the value is not known before the batch is built
/// (the deltas). The drain sizes produce requests with it, so that a request never passes the
/// broker's `max.message.bytes`; [`record_size`] alone undercounts by 20–40 bytes a record.
pub fn record_wire_size(key: &str, payload: &[u8], headers: &[(&'static str, String)]) -> usize {
    /// A zig-zag varint's length for a non-negative `n`.
    fn varint(n: usize) -> usize {
        let mut v = (n as u64) << 1;
        let mut len = 1;
        while v >= 0x80 {
            v >>= 7;
            len += 1;
        }
        len
    }
    /// The timestamp delta (an i64) and the offset delta (an i32) at their widest.
    const DELTAS: usize = 10 + 5;
    let headers: usize = headers
        .iter()
        .map(|(k, v)| varint(k.len()) + k.len() + varint(v.len()) + v.len())
        .sum::<usize>()
        + varint(headers.len());
    let body = 1
        + DELTAS
        + varint(key.len())
        + key.len()
        + varint(payload.len())
        + payload.len()
        + headers;
    varint(body) + body
}

/// A sequenced event, as stored in the outbox and the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Gap-free, strictly increasing across restarts; the order of the log.
    pub seq: u64,
    pub id: Uuid,
    pub kind: String,
    pub topic: String,
    pub key: String,
    pub route_id: Option<String>,
    pub created_at_us: i64,
    pub payload: Vec<u8>,
    /// Failed publish attempts so far (kept in the outbox index, not in the immutable log).
    pub attempts: u32,
}

impl Envelope {
    /// Sequence a new event.
    pub fn sequenced(seq: u64, e: NewEvent) -> Envelope {
        Envelope {
            seq,
            id: e.id,
            kind: e.kind,
            topic: e.topic,
            key: e.key,
            route_id: e.route_id,
            created_at_us: e.created_at_us,
            payload: e.payload,
            attempts: 0,
        }
    }

    /// A local event: kept in the event log for live clients, `since` and the audit trail, but
    /// never sent to Kafka (it has no topic). Consumed records become local events, so what
    /// came from Kafka is not produced back.
    pub fn is_local(&self) -> bool {
        self.topic.is_empty()
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.created_at_us)
            .single()
            .unwrap_or_default()
    }

    /// The payload as JSON (`null` if a corrupt payload slipped past the checksum).
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    /// The headers of this event's Kafka record ([`record_headers`]).
    pub fn record_headers(&self, origin: &Origin) -> Vec<(&'static str, String)> {
        record_headers(
            self.id,
            &self.kind,
            self.route_id.as_deref(),
            self.created_at_us,
            origin,
        )
    }

    /// Bytes of this event's Kafka record ([`record_size`]).
    pub fn record_size(&self, origin: &Origin) -> usize {
        record_size(&self.key, &self.payload, &self.record_headers(origin))
    }

    /// Most bytes this event's record occupies inside a record batch ([`record_wire_size`]).
    pub fn wire_size(&self, origin: &Origin) -> usize {
        record_wire_size(&self.key, &self.payload, &self.record_headers(origin))
    }

    /// Bytes this event occupies in the queue quota.
    pub fn stored_len(&self) -> u64 {
        (self.payload.len() + self.kind.len() + self.topic.len() + self.key.len() + 64) as u64
    }
}

/// The JSON view of an event for operators (admin API, CLI, exports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    pub seq: u64,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub topic: String,
    pub key: String,
    pub route_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub payload: serde_json::Value,
}

impl From<&Envelope> for EventJson {
    fn from(e: &Envelope) -> Self {
        EventJson {
            seq: e.seq,
            id: e.id,
            kind: e.kind.clone(),
            topic: e.topic.clone(),
            key: e.key.clone(),
            route_id: e.route_id.clone(),
            created_at: e.created_at(),
            attempts: e.attempts,
            payload: e.payload_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_get_time_ordered_ids_and_json_payloads() {
        let a = NewEvent::now(
            VEHICLE_POSITION,
            "t",
            "v1",
            None,
            &serde_json::json!({"x": 1}),
        );
        let b = NewEvent::now(
            VEHICLE_POSITION,
            "t",
            "v1",
            None,
            &serde_json::json!({"x": 2}),
        );
        assert!(a.id < b.id, "UUIDv7 sorts by creation time");
        assert_eq!(a.id.get_version_num(), 7);
        let env = Envelope::sequenced(5, a);
        assert_eq!(env.seq, 5);
        assert_eq!(env.payload_json()["x"], 1);
        assert!((Utc::now() - env.created_at()).num_seconds().abs() < 60);
    }

    #[test]
    fn an_event_has_the_same_record_size_before_and_after_it_is_sequenced() {
        for route in [Some("r-1"), None] {
            let e = NewEvent::now(ROUTE_UPDATED, "t", "veh-1", route, &serde_json::json!({}));
            let origin = Origin::new("urn:x", "depot-9");
            let size = e.record_size(&origin);
            let env = Envelope::sequenced(7, e);
            assert_eq!(env.record_size(&origin), size);
            let headers: usize = env
                .record_headers(&origin)
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum();
            assert_eq!(size, "veh-1".len() + env.payload.len() + headers);
        }
    }
}
