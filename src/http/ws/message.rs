//! The wire format: filters, the resume cursor, and the JSON text of every message.
//!
//! Pure functions over values. An event's text is built once (by the hub's router) and shared by
//! every connection it goes to as a [`Utf8Bytes`] (a reference-counted buffer): fan-out copies
//! no JSON and serializes nothing per connection.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::delivery::Connectivity;
use crate::events::Envelope;

/// Message type of the greeting sent first on every connection.
pub const HELLO: &str = "hello";
/// Message type telling the client that `since` cannot be replayed: reload over REST.
pub const RESET: &str = "reset";
/// Message type sent just before a connection that fell behind is closed.
pub const LAGGED: &str = "lagged";
/// Message type of a change in the gateway's Kafka connectivity.
pub const KAFKA_STATUS: &str = "kafka.status";

/// Which events a connection receives; a `None` field matches everything. Both set means both
/// must match (the vehicle's events on that route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub vehicle: Option<String>,
    pub route: Option<String>,
}

impl Filter {
    pub fn matches(&self, vehicle: &str, route: Option<&str>) -> bool {
        self.vehicle.as_deref().is_none_or(|v| v == vehicle)
            && self.route.as_deref().is_none_or(|r| Some(r) == route)
    }
}

/// A connection's resume point: every matching event with `seq <= position` was handed to the
/// socket (or deliberately not sent: a reset). Live and replayed events pass through
/// [`Cursor::admits`], so an event that reaches a connection twice at the replay/live seam is
/// sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor(u64);

impl Cursor {
    pub fn at(seq: u64) -> Cursor {
        Cursor(seq)
    }

    pub fn position(self) -> u64 {
        self.0
    }

    /// Whether an event with this seq is new to the connection.
    pub fn admits(self, seq: u64) -> bool {
        seq > self.0
    }

    /// Record that everything up to `seq` is covered; never moves back.
    pub fn advance(&mut self, seq: u64) {
        self.0 = self.0.max(seq);
    }
}

/// What a frame is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An event: goes to connections whose filter matches.
    Event {
        vehicle: Box<str>,
        route: Option<Box<str>>,
    },
    /// A gateway-wide notice (`kafka.status`): goes to every connection. Kept as data so that a
    /// connection whose cursor is already past `seq` can restate it with its own.
    Status {
        connectivity: Connectivity,
        at: DateTime<Utc>,
    },
}

/// A message ready to send, shared by every connection it goes to.
///
/// For an event `seq` is the event's; for a `kafka.status` notice it is the last event the router
/// had routed when the notice was made, which is a valid resume point: every matching event up to
/// it was queued to the connection before the notice.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub seq: u64,
    pub target: Target,
    pub text: Utf8Bytes,
}

impl Frame {
    /// The frame of an event, serialized once.
    pub fn event(env: &Envelope) -> Arc<Frame> {
        Arc::new(Frame {
            seq: env.seq,
            target: Target::Event {
                vehicle: env.key.as_str().into(),
                route: env.route_id.as_deref().map(Into::into),
            },
            text: event_text(env),
        })
    }

    /// The frame of a connectivity change, as of the last routed event `seq`.
    pub fn status(seq: u64, at: DateTime<Utc>, c: Connectivity) -> Arc<Frame> {
        Arc::new(Frame {
            seq,
            target: Target::Status {
                connectivity: c,
                at,
            },
            text: status_text(seq, at, c),
        })
    }

    /// Whether a connection with this filter wants the frame.
    pub fn is_for(&self, filter: &Filter) -> bool {
        match &self.target {
            Target::Event { vehicle, route } => filter.matches(vehicle, route.as_deref()),
            Target::Status { .. } => true,
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventHead<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
    event_id: uuid::Uuid,
    vehicle_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_id: Option<&'a str>,
    time: String,
}

/// `{type, seq, eventId, vehicleId, routeId?, time, data}`, with the stored payload spliced in as
/// `data` without re-parsing it into a tree (it is only validated; an invalid payload, which the
/// log's checksum makes very unlikely, becomes `null` rather than breaking the frame).
pub fn event_text(env: &Envelope) -> Utf8Bytes {
    let head = EventHead {
        kind: &env.kind,
        seq: env.seq,
        event_id: env.id,
        vehicle_id: &env.key,
        route_id: env.route_id.as_deref(),
        time: rfc3339(env.created_at()),
    };
    let mut out = serde_json::to_vec(&head).expect("serializing a struct of strings cannot fail");
    let payload: &[u8] = if is_json(&env.payload) {
        &env.payload
    } else {
        b"null"
    };
    out.pop(); // the closing brace
    out.reserve(payload.len() + 9);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(payload);
    out.push(b'}');
    let text = String::from_utf8(out).expect("serde_json writes UTF-8 and the payload is JSON");
    Utf8Bytes::from(text)
}

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notice<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
    time: String,
    data: D,
}

fn notice(kind: &str, seq: u64, at: DateTime<Utc>, data: impl Serialize) -> Utf8Bytes {
    let n = Notice {
        kind,
        seq,
        time: rfc3339(at),
        data,
    };
    serde_json::to_string(&n)
        .expect("serializing a notice cannot fail")
        .into()
}

/// `kafka.status`: `data` is `{circuit, reachable}`.
pub fn status_text(seq: u64, at: DateTime<Utc>, c: Connectivity) -> Utf8Bytes {
    notice(KAFKA_STATUS, seq, at, c)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HelloData {
    protocol: &'static str,
    head: u64,
    kafka: Connectivity,
}

/// `hello`: `seq` is where this stream starts (the `since` being replayed from, or the head when
/// there is nothing to replay), `data.head` the newest durable seq now.
pub fn hello_text(seq: u64, head: u64, kafka: Connectivity, at: DateTime<Utc>) -> Utf8Bytes {
    let data = HelloData {
        protocol: super::PROTOCOL,
        head,
        kafka,
    };
    notice(HELLO, seq, at, data)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetData {
    oldest_available: u64,
    reason: &'static str,
}

/// `reset`: the events after `since` cannot be replayed; reload over REST. `seq` is where the live
/// stream continues from.
pub fn reset_text(
    seq: u64,
    oldest_available: u64,
    reason: &'static str,
    at: DateTime<Utc>,
) -> Utf8Bytes {
    let data = ResetData {
        oldest_available,
        reason,
    };
    notice(RESET, seq, at, data)
}

#[derive(Serialize)]
struct LaggedData {
    reason: &'static str,
}

/// `lagged`: `seq` is the cursor, the `since` to reconnect with.
pub fn lagged_text(seq: u64, at: DateTime<Utc>) -> Utf8Bytes {
    let data = LaggedData {
        reason: "the connection fell behind; reconnect with since=seq",
    };
    notice(LAGGED, seq, at, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Circuit;
    use crate::events::{NewEvent, VEHICLE_POSITION};

    fn envelope(seq: u64, vehicle: &str, route: Option<&str>) -> Envelope {
        let payload = serde_json::json!({"vehicleId": vehicle, "latitude": 40.7});
        Envelope::sequenced(
            seq,
            NewEvent::now(VEHICLE_POSITION, "t", vehicle, route, &payload),
        )
    }

    fn json(text: &Utf8Bytes) -> serde_json::Value {
        serde_json::from_str(text.as_str()).expect("valid JSON")
    }

    #[test]
    fn an_empty_filter_matches_everything_and_both_fields_must_match_when_set() {
        let all = Filter::default();
        assert!(all.matches("v1", None));
        assert!(all.matches("v2", Some("r1")));
        let v1 = Filter {
            vehicle: Some("v1".into()),
            route: None,
        };
        assert!(v1.matches("v1", Some("r9")));
        assert!(!v1.matches("v2", Some("r9")));
        let r1 = Filter {
            vehicle: None,
            route: Some("r1".into()),
        };
        assert!(r1.matches("v7", Some("r1")));
        assert!(!r1.matches("v7", None));
        assert!(!r1.matches("v7", Some("r2")));
        let both = Filter {
            vehicle: Some("v1".into()),
            route: Some("r1".into()),
        };
        assert!(both.matches("v1", Some("r1")));
        assert!(!both.matches("v1", Some("r2")));
        assert!(!both.matches("v2", Some("r1")));
    }

    #[test]
    fn an_event_message_carries_the_envelope_fields_and_the_payload_as_data() {
        let env = envelope(42, "v1", Some("r1"));
        let v = json(&event_text(&env));
        assert_eq!(v["type"], "vehicle.position");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["eventId"], env.id.to_string());
        assert_eq!(v["vehicleId"], "v1");
        assert_eq!(v["routeId"], "r1");
        assert_eq!(v["data"], env.payload_json());
        let time = DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
        assert_eq!(time.timestamp_micros(), env.created_at_us);
    }

    #[test]
    fn an_event_without_a_route_has_no_route_id_and_bad_payloads_become_null() {
        let mut env = envelope(1, "v1", None);
        env.payload = b"{not json".to_vec();
        let v = json(&event_text(&env));
        assert!(v.get("routeId").is_none());
        assert_eq!(v["data"], serde_json::Value::Null);
    }

    #[test]
    fn frames_are_addressed_by_vehicle_and_route_and_notices_go_to_everyone() {
        let frame = Frame::event(&envelope(3, "v1", Some("r1")));
        let wants = |vehicle: Option<&str>, route: Option<&str>| {
            frame.is_for(&Filter {
                vehicle: vehicle.map(Into::into),
                route: route.map(Into::into),
            })
        };
        assert!(wants(None, None));
        assert!(wants(Some("v1"), None));
        assert!(wants(None, Some("r1")));
        assert!(!wants(Some("v2"), None));
        let status = Connectivity {
            circuit: Circuit::Open,
            reachable: false,
        };
        let notice = Frame::status(3, Utc::now(), status);
        assert!(notice.is_for(&Filter {
            vehicle: Some("v9".into()),
            route: None
        }));
        let v = json(&notice.text);
        assert_eq!(v["type"], "kafka.status");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["data"]["circuit"], "open");
        assert_eq!(v["data"]["reachable"], false);
    }

    #[test]
    fn the_cursor_admits_each_seq_once_and_never_moves_back() {
        let mut c = Cursor::at(5);
        assert!(!c.admits(4));
        assert!(!c.admits(5));
        assert!(c.admits(6));
        c.advance(8);
        assert!(
            !c.admits(6),
            "replayed and then live: the live copy is dropped"
        );
        c.advance(7);
        assert_eq!(c.position(), 8);
    }

    #[test]
    fn control_messages_name_their_type_and_resume_point() {
        let now = Utc::now();
        let kafka = Connectivity {
            circuit: Circuit::Closed,
            reachable: true,
        };
        let hello = json(&hello_text(7, 9, kafka, now));
        assert_eq!(
            (&hello["type"], &hello["seq"], &hello["data"]["head"]),
            (&"hello".into(), &7.into(), &9.into())
        );
        assert_eq!(hello["data"]["protocol"], "routegate.v1");
        assert_eq!(hello["data"]["kafka"]["reachable"], true);
        let reset = json(&reset_text(9, 4, "pruned", now));
        assert_eq!(
            (&reset["type"], &reset["seq"]),
            (&"reset".into(), &9.into())
        );
        assert_eq!(reset["data"]["oldestAvailable"], 4);
        let lagged = json(&lagged_text(6, now));
        assert_eq!(
            (&lagged["type"], &lagged["seq"]),
            (&"lagged".into(), &6.into())
        );
    }
}
