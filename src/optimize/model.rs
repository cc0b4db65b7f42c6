//! Request and result types, shaped like the HTTP API's JSON (camelCase).
//!
//! The HTTP layer deserializes a request body straight into [`Problem`] and embeds a
//! [`Solution`] in its response, so the field names here *are* the wire format. Unknown JSON
//! members are ignored (clients send extras such as `vehicleId`); types are strict and ranges are
//! checked by [`Problem::validate`](super::validate) before anything is solved.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::geo::LineString;

/// A routing request: which stops to visit, from where, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Stops to visit, 1 to `Params::max_stops`. Without `start` the first one is visited first.
    pub stops: Vec<Stop>,
    /// Where the vehicle is now (depot or current position). Not part of `stops` in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Location>,
    /// Where the route must finish. Mutually exclusive with `round_trip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Location>,
    /// Finish where the route started (at `start`, or at the first stop without one).
    #[serde(default)]
    pub round_trip: bool,
    /// When the vehicle leaves. `None` means "now", which the caller supplies in
    /// [`Params::now`](super::Params::now) so this module never reads the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departure_time: Option<DateTime<FixedOffset>>,
    /// Objective and limits.
    #[serde(default)]
    pub preferences: Preferences,
}

/// A place to visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// Caller's identifier, unique within the request.
    pub id: String,
    /// Degrees, -90..=90.
    pub latitude: f64,
    /// Degrees, -180..=180.
    pub longitude: f64,
    /// Free text, echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Time spent at the stop, 0..=1440 minutes; none means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_minutes: Option<f64>,
    /// When service may start; arriving early means waiting, starting after `end` is late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
}

/// A point on the globe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Degrees, -90..=90.
    pub latitude: f64,
    /// Degrees, -180..=180.
    pub longitude: f64,
}

/// The interval in which service at a stop should start (RFC 3339 instants).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Earliest service start.
    pub start: DateTime<FixedOffset>,
    /// Latest service start; later is reported as lateness.
    pub end: DateTime<FixedOffset>,
}

/// What to optimise and how long to try.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Accepted but not honoured without a road network; the result says so in `warnings`.
    #[serde(default)]
    pub avoid_tolls: bool,
    /// Accepted but not honoured without a road network; the result says so in `warnings`.
    #[serde(default)]
    pub avoid_highways: bool,
    /// Minimise driving time (default) or distance.
    #[serde(default)]
    pub optimize_for: OptimizeFor,
    /// Per-request wall-clock cap, 1..=[`MAX_COMPUTE_MILLIS`](super::MAX_COMPUTE_MILLIS);
    /// overrides `Params::max_compute_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_compute_millis: Option<u64>,
}

/// The travel cost the search minimises (after lateness, when there are time windows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizeFor {
    /// Driving seconds.
    #[default]
    Time,
    /// Metres.
    Distance,
}

/// The optimised route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solution {
    /// The caller's stops in driving order (never the start or end point).
    pub optimized_stops: Vec<OptimizedStop>,
    /// Metres driven, including the legs from `start` and to `end` / back home.
    pub total_distance_meters: f64,
    /// Seconds from departure until the route ends: driving, waiting and service.
    pub total_duration_seconds: f64,
    /// Seconds spent driving only.
    pub total_driving_seconds: f64,
    /// Sum of all stops' lateness; 0 when every time window is met.
    pub total_lateness_seconds: f64,
    /// When the vehicle leaves its start (or begins at the first stop).
    pub departure_time: DateTime<FixedOffset>,
    /// When the route ends: arrival at `end` / home, or departure from the last stop.
    pub finish_time: DateTime<FixedOffset>,
    /// The driven polyline, start and end points included.
    pub geometry: LineString,
    /// How the route was found.
    pub optimization: OptimizationInfo,
    /// Things the caller should know, e.g. preferences that could not be honoured.
    pub warnings: Vec<String>,
}

/// One stop of the result, in driving order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptimizedStop {
    /// The caller's id.
    pub id: String,
    /// 1-based position in the route.
    pub sequence: usize,
    /// Echoed from the request.
    pub latitude: f64,
    /// Echoed from the request.
    pub longitude: f64,
    /// Echoed from the request (`null` when absent).
    pub address: Option<String>,
    /// When the vehicle gets there.
    pub arrival_time: DateTime<FixedOffset>,
    /// When it leaves: after waiting for the window to open and after service.
    pub departure_time: DateTime<FixedOffset>,
    /// Metres from the previous point (the start, or the previous stop); 0 for a first stop
    /// without `start`.
    pub distance_from_previous_meters: f64,
    /// Driving seconds from the previous point.
    pub duration_from_previous_seconds: f64,
    /// Seconds spent waiting for the time window to open.
    pub waiting_seconds: f64,
    /// True when service starts inside the window, or when the stop has no window.
    pub time_window_met: bool,
    /// How many seconds after the window's end service starts; 0 when met.
    pub lateness_seconds: f64,
    /// Metres from the stop to where it joins the road network (road cost model only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snap_distance_meters: Option<f64>,
}

/// What travel costs are based on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CostModel {
    /// Great-circle distance × detour factor at a constant speed.
    #[default]
    GreatCircle,
    /// Shortest or fastest paths on the road network of an OpenStreetMap extract.
    Road {
        /// The extract's file name.
        extract: String,
        /// The extract's timestamp (RFC 3339), when it carries one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<String>,
    },
}

/// Provenance of a solution, for dashboards and benchmarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptimizationInfo {
    /// Which algorithm produced the route (`held-karp`, `iterated-local-search`, ...).
    pub algorithm: String,
    /// True only when an exact method proved that no better route exists.
    pub provably_optimal: bool,
    /// What was minimised: `time` (driving seconds) or `distance` (metres).
    pub objective: OptimizeFor,
    /// Objective value of the stops in the order given.
    pub initial_cost: f64,
    /// Objective value of the returned route.
    pub optimized_cost: f64,
    /// `100 * (initial - optimized) / initial`, 0 when the initial cost is 0.
    pub improvement_percent: f64,
    /// Total lateness of the order given, in seconds (0 without time windows).
    pub initial_lateness_seconds: f64,
    /// Search steps: perturbations for local search, DP states for exact methods.
    pub iterations: u64,
    /// Wall-clock milliseconds spent building the matrix and searching.
    pub compute_millis: u64,
    /// True when the wall-clock cap stopped the search before its deterministic budget ended.
    pub time_limit_reached: bool,
    /// What the costs are based on (`greatCircle` for routes stored before road costs).
    #[serde(default)]
    pub cost_model: CostModel,
}
