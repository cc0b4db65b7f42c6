//! What a consumed record does, per handler: pure functions from a record to an [`Effect`].
//!
//! * Records whose `ce_source` header is this gateway's own `kafka.event_source` are skipped,
//!   whatever the handler: what routegate produced never comes back as input (no loops).
//! * The vehicle of a record is its key (UTF-8) or, when it has none, the string field
//!   `vehicle_field` of its JSON value. With a `vehicles` filter, records of other vehicles are
//!   skipped.
//! * `forward`: a local `kafka.record` event carrying the record (topic, partition, offset,
//!   key, headers, timestamp, and the value as JSON when it parses, else as base64).
//! * `positions`: the value is one GPS fix as `POST /traffic/vehicles/{id}/positions` takes
//!   it; a record without a vehicle or with an invalid fix is dead-lettered with the reason.
//! * `routes`: the value is a `route.optimized` / `route.updated` CloudEvent in binary mode
//!   (`ce_type`, `ce_id`, `ce_time` headers) planned elsewhere. It is this depot's when its
//!   `ce_depotid` header is `depot.id` or its vehicle is in `vehicles` (records of other
//!   depots are skipped); it creates or changes the route ([`crate::store::imported`]) and is
//!   logged as a local event with the record's id, type and time.

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::{ConsumeConfig, ConsumeHandler};
use crate::events::NewEvent;
use crate::publisher::SourceRecord;
use crate::store::Position;
use crate::store::consumed::Effect;
use crate::store::imported::Incoming;

/// CloudEvents `type` of a forwarded record.
pub const KAFKA_RECORD: &str = "kafka.record";

/// The `kafka.record` payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Forwarded<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    vehicle_id: Option<&'a str>,
    key: Option<String>,
    headers: serde_json::Map<String, Value>,
    timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

/// Decides the effect of each record of one consumer.
#[derive(Debug, Clone)]
pub struct Handler {
    pub config: ConsumeConfig,
    /// This gateway's `kafka.event_source`.
    pub own_source: String,
    /// `depot.id` (empty: none).
    pub depot: String,
}

impl Handler {
    /// The effect of `record`, read from `partition` of the consumer's topic.
    pub fn effect(&self, partition: i32, record: &SourceRecord) -> Effect {
        let own = record
            .headers
            .get("ce_source")
            .is_some_and(|s| s == self.own_source.as_bytes());
        if own {
            return Effect::Skip;
        }
        let json: Option<Value> = record
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok());
        let vehicle = vehicle_of(record, json.as_ref(), &self.config.vehicle_field);
        if self.config.handler == ConsumeHandler::Routes {
            let ours = (!self.depot.is_empty()
                && header(record, "ce_depotid") == Some(self.depot.as_str()))
                || vehicle
                    .as_ref()
                    .is_some_and(|v| self.config.vehicles.contains(v));
            return if ours {
                route_effect(record, vehicle, "")
            } else {
                Effect::Skip
            };
        }
        if !self.config.vehicles.is_empty()
            && !vehicle
                .as_ref()
                .is_some_and(|v| self.config.vehicles.contains(v))
        {
            return Effect::Skip;
        }
        match self.config.handler {
            ConsumeHandler::Forward => {
                Effect::Event(self.forward(partition, record, vehicle.as_deref(), json))
            }
            ConsumeHandler::Positions => positions(record, vehicle),
            ConsumeHandler::Routes => unreachable!("routes records are handled above"),
        }
    }

    fn forward(
        &self,
        partition: i32,
        record: &SourceRecord,
        vehicle: Option<&str>,
        json: Option<Value>,
    ) -> NewEvent {
        let headers = record
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::String(String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect();
        let value_base64 = match (&json, &record.value) {
            (None, Some(raw)) => Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            _ => None,
        };
        let payload = Forwarded {
            topic: &self.config.topic,
            partition,
            offset: record.offset,
            vehicle_id: vehicle,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            timestamp: Utc
                .timestamp_millis_opt(record.timestamp_ms)
                .single()
                .unwrap_or_default(),
            value: json,
            value_base64,
        };
        let now = Utc::now();
        NewEvent {
            id: Uuid::now_v7(),
            kind: KAFKA_RECORD.to_string(),
            topic: String::new(),
            key: vehicle.unwrap_or_default().to_string(),
            route_id: None,
            created_at_us: now.timestamp_micros(),
            payload: serde_json::to_vec(&payload).expect("serializing a JSON value cannot fail"),
        }
    }
}

/// A header's value, if it is UTF-8.
pub fn header<'a>(record: &'a SourceRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The effect of a route event record: the route created or changed, and the event logged
/// under `topic` (empty: a local event) with the record's CloudEvents id, type and time.
pub fn route_effect(record: &SourceRecord, vehicle: Option<String>, topic: &str) -> Effect {
    let dead = |reason: String| Effect::Dead {
        reason,
        key: record.key.clone(),
        value: record.value.clone(),
    };
    let Some(kind) = header(record, "ce_type") else {
        return dead("no ce_type header: not a CloudEvent in binary mode".into());
    };
    let Some(payload) = record.value.as_deref() else {
        return dead("no value".into());
    };
    let incoming = match Incoming::parse(kind, payload) {
        Ok(i) => i,
        Err(reason) => return dead(reason),
    };
    let id = header(record, "ce_id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .unwrap_or_else(Uuid::now_v7);
    let created_at_us = header(record, "ce_time")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(record.timestamp_ms * 1000, |t| t.timestamp_micros());
    let event = NewEvent {
        id,
        kind: kind.to_string(),
        topic: topic.to_string(),
        key: vehicle.unwrap_or_else(|| incoming.vehicle_id().to_string()),
        route_id: Some(incoming.route_id().to_string()),
        created_at_us,
        payload: payload.to_vec(),
    };
    Effect::Route {
        incoming: Box::new(incoming),
        event,
    }
}

/// The record's vehicle: its key, else the string field `field` of its JSON value.
fn vehicle_of(record: &SourceRecord, json: Option<&Value>, field: &str) -> Option<String> {
    if let Some(key) = record.key.as_deref().filter(|k| !k.is_empty()) {
        return Some(String::from_utf8_lossy(key).into_owned());
    }
    json?
        .get(field)?
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn positions(record: &SourceRecord, vehicle: Option<String>) -> Effect {
    let dead = |reason: String| Effect::Dead {
        reason,
        key: record.key.clone(),
        value: record.value.clone(),
    };
    let Some(vehicle_id) = vehicle else {
        return dead("no vehicle: the record has no key and no vehicle field".into());
    };
    let Some(raw) = record.value.as_deref() else {
        return dead("no value".into());
    };
    let fix: Position = match serde_json::from_slice(raw) {
        Ok(f) => f,
        Err(e) => return dead(format!("not a GPS fix: {e}")),
    };
    if let Some((field, range)) = fix.out_of_range() {
        return dead(format!("{field} {range}"));
    }
    Effect::Fix { vehicle_id, fix }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsumeStart;
    use std::collections::BTreeMap;

    fn handler(kind: ConsumeHandler, vehicles: &[&str]) -> Handler {
        Handler {
            config: ConsumeConfig {
                topic: "telematics".into(),
                handler: kind,
                vehicles: vehicles.iter().map(|v| v.to_string()).collect(),
                vehicle_field: "vehicleId".into(),
                start: ConsumeStart::Earliest,
            },
            own_source: "urn:routegate:depot-1".into(),
            depot: "depot-1".into(),
        }
    }

    fn rec(key: Option<&str>, value: &[u8], headers: &[(&str, &str)]) -> SourceRecord {
        SourceRecord {
            offset: 7,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(value.to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>(),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    const FIX: &str = r#"{"latitude":43.73,"longitude":7.42,"timestamp":"2026-12-03T10:00:00Z"}"#;

    #[test]
    fn own_records_are_skipped_by_every_handler() {
        let own = rec(
            Some("v1"),
            FIX.as_bytes(),
            &[("ce_source", "urn:routegate:depot-1")],
        );
        for kind in [
            ConsumeHandler::Forward,
            ConsumeHandler::Positions,
            ConsumeHandler::Routes,
        ] {
            assert_eq!(handler(kind, &[]).effect(0, &own), Effect::Skip);
        }
        let other = rec(Some("v1"), FIX.as_bytes(), &[("ce_source", "urn:hq")]);
        assert!(matches!(
            handler(ConsumeHandler::Positions, &[]).effect(0, &other),
            Effect::Fix { .. }
        ));
    }

    #[test]
    fn the_vehicle_is_the_key_or_the_json_field_and_the_filter_uses_it() {
        let h = handler(ConsumeHandler::Positions, &["v2"]);
        assert_eq!(
            h.effect(0, &rec(Some("v1"), FIX.as_bytes(), &[])),
            Effect::Skip
        );
        let by_field = format!(r#"{{"vehicleId":"v2",{}"#, &FIX[1..]);
        match h.effect(0, &rec(None, by_field.as_bytes(), &[])) {
            Effect::Fix { vehicle_id, fix } => {
                assert_eq!(vehicle_id, "v2");
                assert_eq!(fix.latitude, 43.73);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unusable_fixes_are_dead_lettered_with_the_reason() {
        let h = handler(ConsumeHandler::Positions, &[]);
        let cases: [(Option<&str>, &[u8], &str); 3] = [
            (None, FIX.as_bytes(), "no vehicle"),
            (Some("v1"), b"{not json", "not a GPS fix"),
            (
                Some("v1"),
                br#"{"latitude":91,"longitude":7,"timestamp":"2026-12-03T10:00:00Z"}"#,
                "latitude must be between -90 and 90",
            ),
        ];
        for (key, value, why) in cases {
            match h.effect(0, &rec(key, value, &[])) {
                Effect::Dead { reason, .. } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn forwarded_records_are_local_events_with_json_or_base64_values() {
        let h = handler(ConsumeHandler::Forward, &[]);
        let Effect::Event(e) = h.effect(2, &rec(Some("v9"), br#"{"speed":3}"#, &[("h", "x")]))
        else {
            panic!("an event");
        };
        assert_eq!(
            (e.kind.as_str(), e.topic.as_str(), e.key.as_str()),
            (KAFKA_RECORD, "", "v9")
        );
        let p: Value = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(p["value"]["speed"], 3);
        assert_eq!(
            (p["partition"].as_i64(), p["offset"].as_i64()),
            (Some(2), Some(7))
        );
        assert_eq!(p["headers"]["h"], "x");
        let Effect::Event(e) = h.effect(0, &rec(None, &[0xff, 0x00], &[])) else {
            panic!("an event");
        };
        let p: Value = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(p["valueBase64"], "/wA=");
        assert!(p.get("value").is_none());
    }

    fn planned_route() -> Vec<u8> {
        serde_json::to_vec(&crate::store::testdata::route_with_stops(&["a", "b"])).unwrap()
    }

    #[test]
    fn routes_of_this_depot_or_its_vehicles_are_taken_with_their_cloudevent_identity() {
        let id = "0190f0d2-7a8b-7c3d-9e4f-0123456789ab";
        let headers = [
            ("ce_type", "route.optimized"),
            ("ce_id", id),
            ("ce_time", "2026-12-03T10:00:00.5Z"),
            ("ce_source", "urn:hq"),
            ("ce_depotid", "depot-1"),
        ];
        let ours = rec(Some("v1"), &planned_route(), &headers);
        let Effect::Route { incoming, event } =
            handler(ConsumeHandler::Routes, &[]).effect(0, &ours)
        else {
            panic!("a route of this depot is taken");
        };
        assert_eq!(incoming.vehicle_id(), "v1");
        assert_eq!(event.id.to_string(), id);
        assert_eq!(event.kind, "route.optimized");
        assert_eq!(event.topic, "", "a local event: not produced back");
        assert_eq!(event.created_at_us, 1_796_292_000_500_000);
        assert_eq!(event.route_id.as_deref(), Some(incoming.route_id()));

        let elsewhere = [("ce_type", "route.optimized"), ("ce_depotid", "depot-2")];
        let theirs = rec(Some("v1"), &planned_route(), &elsewhere);
        assert_eq!(
            handler(ConsumeHandler::Routes, &[]).effect(0, &theirs),
            Effect::Skip
        );
        assert!(
            matches!(
                handler(ConsumeHandler::Routes, &["v1"]).effect(0, &theirs),
                Effect::Route { .. }
            ),
            "a listed vehicle's route is taken whatever its depot"
        );

        let untyped = rec(Some("v1"), &planned_route(), &[("ce_depotid", "depot-1")]);
        let Effect::Dead { reason, .. } = handler(ConsumeHandler::Routes, &[]).effect(0, &untyped)
        else {
            panic!("a record without ce_type is dead-lettered");
        };
        assert!(reason.contains("ce_type"), "{reason}");
        let garbage = rec(Some("v1"), b"{}", &headers);
        assert!(matches!(
            handler(ConsumeHandler::Routes, &[]).effect(0, &garbage),
            Effect::Dead { .. }
        ));
    }
}
