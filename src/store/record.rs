//! The stored records and their versioned encoding.
//!
//! A stored value is one version byte followed by a JSON document: JSON because the route embeds
//! the optimizer's types, whose serde attributes (`skip_serializing_if`, flattening) only
//! round-trip through a self-describing format, and because an operator can read it with
//! `sled`-level tools. The version byte lets a later layout be read next to this one.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::optimize::{
    LineString, Location, OptimizationInfo, OptimizedStop, Preferences, Stop, TimeWindow,
};

/// First byte of every value this version writes.
pub const RECORD_V1: u8 = 1;

/// Where a route stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStatus {
    Planned,
    InProgress,
    Completed,
}

impl RouteStatus {
    pub const ALL: [RouteStatus; 3] = [
        RouteStatus::Planned,
        RouteStatus::InProgress,
        RouteStatus::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteStatus::Planned => "planned",
            RouteStatus::InProgress => "in_progress",
            RouteStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<RouteStatus> {
        RouteStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// One byte for index keys; stable on disk.
    pub fn tag(self) -> u8 {
        match self {
            RouteStatus::Planned => b'p',
            RouteStatus::InProgress => b'i',
            RouteStatus::Completed => b'c',
        }
    }

    pub fn from_tag(b: u8) -> Option<RouteStatus> {
        RouteStatus::ALL.into_iter().find(|r| r.tag() == b)
    }
}

/// Where one stop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopStatus {
    Pending,
    Arrived,
    Completed,
    Skipped,
    Failed,
}

impl StopStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StopStatus::Pending => "pending",
            StopStatus::Arrived => "arrived",
            StopStatus::Completed => "completed",
            StopStatus::Skipped => "skipped",
            StopStatus::Failed => "failed",
        }
    }

    /// Nothing follows a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StopStatus::Completed | StopStatus::Skipped | StopStatus::Failed
        )
    }
}

/// A GPS fix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
    pub timestamp: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
}

/// Fastest believable speed, km/h.
pub const MAX_SPEED_KMH: f64 = 1000.0;

impl Position {
    /// The first field outside its believable range and what the range is (the checks
    /// `POST …/positions` and the `positions` consumer both make); `None` when all are in it.
    pub fn out_of_range(&self) -> Option<(&'static str, &'static str)> {
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Some(("latitude", "must be between -90 and 90"));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Some(("longitude", "must be between -180 and 180"));
        }
        if self
            .speed_kmh
            .is_some_and(|s| !(0.0..=MAX_SPEED_KMH).contains(&s))
        {
            return Some(("speedKmh", "must be between 0 and 1000"));
        }
        if self
            .heading_deg
            .is_some_and(|h| !(0.0..=360.0).contains(&h))
        {
            return Some(("headingDeg", "must be between 0 and 360"));
        }
        None
    }

    pub fn location(&self) -> Location {
        Location {
            latitude: self.latitude,
            longitude: self.longitude,
        }
    }
}

/// One stop of a stored route: the optimizer's plan plus what happened since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStop {
    #[serde(flatten)]
    pub plan: OptimizedStop,
    pub status: StopStatus,
    /// Estimated arrival: the planned arrival shifted by the vehicle's current delay (pending
    /// and arrived stops only; filled in when the route is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrived_at: Option<DateTime<FixedOffset>>,
    /// When the stop reached a terminal status (completed, skipped, failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A route as clients see it (`route.optimized`, `GET /traffic/routes/{id}`, `route.updated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub route_id: String,
    pub vehicle_id: String,
    pub status: RouteStatus,
    /// Counts the route's states: 1 when planned, one more with every `route.updated`. A consumer
    /// holding version `n` applies the `route.updated` of version `n + 1`; any other number
    /// means it missed one and must read the route again (`GET /traffic/routes/{id}`). GPS fixes
    /// do not change it (they move ETAs, which `vehicle.position` announces). 0 in records
    /// written before versions existed.
    #[serde(default)]
    pub version: u64,
    pub optimized_stops: Vec<RouteStop>,
    pub total_distance_meters: f64,
    pub total_duration_seconds: f64,
    pub total_driving_seconds: f64,
    pub total_lateness_seconds: f64,
    pub departure_time: DateTime<FixedOffset>,
    pub finish_time: DateTime<FixedOffset>,
    pub geometry: LineString,
    pub optimization: OptimizationInfo,
    pub warnings: Vec<String>,
    /// The event that announced this state of the route.
    pub event_id: uuid::Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Seconds the vehicle runs behind its plan (negative: ahead), from its last fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_position: Option<Position>,
}

/// What the route was planned from, kept for re-planning (not shown to clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInput {
    pub stops: Vec<Stop>,
    pub start: Option<Location>,
    pub end: Option<Location>,
    pub round_trip: bool,
    pub preferences: Preferences,
}

impl PlanInput {
    pub fn stop(&self, id: &str) -> Option<&Stop> {
        self.stops.iter().find(|s| s.id == id)
    }

    pub fn window(&self, id: &str) -> Option<TimeWindow> {
        self.stop(id).and_then(|s| s.time_window)
    }
}

/// The value of the `routes` tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub route: Route,
    pub input: PlanInput,
}

/// The stop a vehicle drives to next, copied from its active route so that a GPS fix can
/// refresh the ETAs without reading the route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextStop {
    pub id: String,
    pub latitude: f64,
    pub longitude: f64,
    pub planned_arrival: DateTime<FixedOffset>,
}

/// The route a vehicle is driving and how late it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRoute {
    pub route_id: String,
    /// `None` once every stop was reached.
    pub next_stop: Option<NextStop>,
    pub delay_seconds: f64,
}

/// The value of the `vehicles` tree: small, because every GPS fix rewrites it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VehicleRecord {
    pub last_position: Option<Position>,
    pub active_route: Option<ActiveRoute>,
}

/// Why stored bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("malformed record: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_V1];
    serde_json::to_writer(&mut out, value).expect("serializing a record to JSON cannot fail");
    out
}

/// A [`RouteRecord`] from the JSON of its route and of its input, without re-serializing either
/// (the route's JSON is the event payload already made).
pub fn encode_route_record(route_json: &[u8], input_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(route_json.len() + input_json.len() + 24);
    out.push(RECORD_V1);
    out.extend_from_slice(br#"{"route":"#);
    out.extend_from_slice(route_json);
    out.extend_from_slice(br#","input":"#);
    out.extend_from_slice(input_json);
    out.push(b'}');
    out
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&RECORD_V1, body)) => Ok(serde_json::from_slice(body)?),
        Some((&v, _)) => Err(DecodeError::Version(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_carry_their_version_byte() {
        let v = VehicleRecord {
            last_position: Some(Position {
                latitude: 1.5,
                longitude: -2.0,
                timestamp: "2026-01-01T10:00:00+01:00".parse().unwrap(),
                speed_kmh: None,
                heading_deg: Some(90.0),
            }),
            active_route: None,
        };
        let bytes = encode(&v);
        assert_eq!(bytes[0], RECORD_V1);
        assert_eq!(decode::<VehicleRecord>(&bytes).unwrap(), v);
    }

    #[test]
    fn a_route_record_spliced_from_json_parts_equals_the_serialized_one() {
        let rec = RouteRecord {
            route: crate::store::testdata::route_with_stops(&["a", "b"]),
            input: PlanInput {
                stops: Vec::new(),
                start: None,
                end: None,
                round_trip: true,
                preferences: Preferences::default(),
            },
        };
        let spliced = encode_route_record(
            &serde_json::to_vec(&rec.route).unwrap(),
            &serde_json::to_vec(&rec.input).unwrap(),
        );
        assert_eq!(spliced, encode(&rec));
        assert_eq!(decode::<RouteRecord>(&spliced).unwrap(), rec);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused_not_misread() {
        assert!(matches!(
            decode::<VehicleRecord>(&[]),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            decode::<VehicleRecord>(&[9, b'{', b'}']),
            Err(DecodeError::Version(9))
        ));
        assert!(matches!(
            decode::<VehicleRecord>(&[RECORD_V1, b'{']),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn statuses_have_stable_names_and_tags() {
        for s in RouteStatus::ALL {
            assert_eq!(RouteStatus::parse(s.as_str()), Some(s));
            assert_eq!(RouteStatus::from_tag(s.tag()), Some(s));
        }
        assert_eq!(RouteStatus::parse("done"), None);
        assert!(StopStatus::Skipped.is_terminal() && !StopStatus::Arrived.is_terminal());
    }
}
