//! What the route events carry: the whole route when the plan changes, only the change otherwise.
//!
//! | event                                            | payload                                       |
//! |--------------------------------------------------|-----------------------------------------------|
//! | `route.optimized`                                | the route as `GET /traffic/routes/{id}` shows it, plus `plan` |
//! | `route.updated`, `change.type = "reoptimized"`   | the whole re-planned route plus `plan` and `change` (`Replanned`): every pending stop may have moved |
//! | `route.updated`, `change.type = "stop_status"`   | only the change (`StopChanged`)               |
//!
//! `plan` ([`PlanExtras`]) is what the route was planned from and does not show: start, end,
//! round trip, preferences, and the stops' time windows (and service times where the route's
//! arrival, waiting and departure do not give them). With it, another routegate that imports
//! the route ([`super::imported`]: a `routes` consumer, `restore --from-kafka`) re-plans it as
//! this one would. It holds nothing per stop that the route already carries, so a 2,000-stop
//! route's event stays within `kafka.max_record_bytes`.
//!
//! # Why a stop change is a delta
//!
//! A route of 1,500 stops is about 670 KB of JSON. Announcing every stop change with the whole
//! route made each event that large, and a long route's event could pass
//! `kafka.max_record_bytes` and be dead-lettered after the client was answered. A
//! `StopChanged` carries the route's new `version`, `status`, `eventId` and `updatedAt`, the
//! stop's new state, the ETAs that changed (normally only the changed stop's, which goes away),
//! and the delay and position shown with the route: its size does not depend on the stop count.
//!
//! # Applying one
//!
//! A consumer that holds version `n` of the route (from `route.optimized`, a re-plan, or
//! `GET /traffic/routes/{id}`) and receives the stop change of version `n + 1` sets the stop's
//! `status`, `arrivedAt`, `finishedAt` and `note` (`null`: absent) from `stop`, each stop's `eta`
//! from `etas` (`null`: absent), and the route's `version`, `status`, `eventId`, `updatedAt`,
//! `delaySeconds` and `lastPosition` (`null`: absent); the result is the route `GET` returns at
//! version `n + 1`. A version at or below `n` is old news; a version above `n + 1` means an event
//! was missed, and the consumer reads the route again over REST. GPS fixes move ETAs without a
//! new version: `vehicle.position` carries the delay, and a pending stop's ETA is its planned
//! `arrivalTime` plus `delaySeconds`.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reads::{etas, live};
use super::record::{PlanInput, Position, Route, RouteStatus, StopStatus, VehicleRecord};
use crate::optimize::{Location, OptimizedStop, Preferences, Stop, TimeWindow};

/// What happened, in every `route.updated`.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub(super) enum Change<'a> {
    StopStatus {
        stop_id: &'a str,
        from: StopStatus,
        to: StopStatus,
        at: DateTime<FixedOffset>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'a str>,
    },
    Reoptimized {
        remaining_stops: usize,
    },
}

/// `route.updated` of a re-plan: the whole route as clients see it, its plan, and the change.
#[derive(Debug, Serialize)]
pub(super) struct Replanned<'a> {
    #[serde(flatten)]
    pub route: &'a Route,
    pub plan: PlanExtras,
    pub change: Change<'a>,
}

/// The `plan` of a whole-route event: the [`PlanInput`] less what the route shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanExtras {
    pub start: Option<Location>,
    pub end: Option<Location>,
    pub round_trip: bool,
    pub preferences: Preferences,
    /// Stops with a time window, or a service time the route does not give.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stops: Vec<StopExtras>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopExtras {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
}

/// Minutes spent at `stop` as the route shows it: departure less arrival less waiting.
pub fn shown_service_minutes(stop: &OptimizedStop) -> f64 {
    let span = (stop.departure_time - stop.arrival_time).num_milliseconds() as f64 / 1000.0;
    ((span - stop.waiting_seconds) / 60.0).max(0.0)
}

impl PlanExtras {
    /// What `route` does not show of `input`.
    pub fn of(input: &PlanInput, route: &Route) -> PlanExtras {
        let shown: BTreeMap<&str, f64> = route
            .optimized_stops
            .iter()
            .map(|s| (s.plan.id.as_str(), shown_service_minutes(&s.plan)))
            .collect();
        let stops = input
            .stops
            .iter()
            .filter_map(|s| {
                let service = s.service_minutes.unwrap_or(0.0);
                let derivable = shown
                    .get(s.id.as_str())
                    .is_some_and(|m| (m - service).abs() < 1e-3);
                let service_minutes = (!derivable).then_some(service);
                (service_minutes.is_some() || s.time_window.is_some()).then(|| StopExtras {
                    id: s.id.clone(),
                    service_minutes,
                    time_window: s.time_window,
                })
            })
            .collect();
        PlanExtras {
            start: input.start,
            end: input.end,
            round_trip: input.round_trip,
            preferences: input.preferences.clone(),
            stops,
        }
    }

    /// The input `route` was planned from: its stops, completed by these extras.
    pub fn input(self, route: &Route) -> PlanInput {
        let mut extras: BTreeMap<String, StopExtras> =
            self.stops.into_iter().map(|s| (s.id.clone(), s)).collect();
        let stops = route
            .optimized_stops
            .iter()
            .map(|s| {
                let p = &s.plan;
                let extra = extras.remove(&p.id);
                let service = extra
                    .as_ref()
                    .and_then(|e| e.service_minutes)
                    .unwrap_or_else(|| shown_service_minutes(p));
                Stop {
                    id: p.id.clone(),
                    latitude: p.latitude,
                    longitude: p.longitude,
                    address: p.address.clone(),
                    service_minutes: (service > 0.0).then_some(service),
                    time_window: extra.and_then(|e| e.time_window),
                }
            })
            .collect();
        PlanInput {
            stops,
            start: self.start,
            end: self.end,
            round_trip: self.round_trip,
            preferences: self.preferences,
        }
    }

    /// What a route shows when its event carries no `plan`: nothing beyond its stops.
    pub fn unknown(route: &Route) -> PlanExtras {
        PlanExtras {
            start: None,
            end: None,
            round_trip: false,
            preferences: Preferences {
                optimize_for: route.optimization.objective,
                ..Preferences::default()
            },
            stops: Vec::new(),
        }
    }
}

/// `route.updated` of a stop change: what changed, and the version it leads to.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StopChanged<'a> {
    route_id: &'a str,
    vehicle_id: &'a str,
    /// The route's version after this change; it applies to version `version - 1`.
    version: u64,
    status: RouteStatus,
    event_id: Uuid,
    updated_at: DateTime<Utc>,
    change: Change<'a>,
    stop: StopState<'a>,
    /// Stops whose ETA this change moved, with their new ETA (`null`: none any more).
    etas: BTreeMap<&'a str, Option<DateTime<FixedOffset>>>,
    delay_seconds: Option<f64>,
    last_position: Option<Position>,
}

/// The changed stop's fields after the change (`null`: not set).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StopState<'a> {
    id: &'a str,
    status: StopStatus,
    arrived_at: Option<DateTime<FixedOffset>>,
    finished_at: Option<DateTime<FixedOffset>>,
    note: Option<&'a str>,
}

/// The ETAs a consumer holds for `route` with `vehicle`, in driving order: taken before a stop
/// change, to tell which ones it moved.
pub(super) fn etas_before(
    route: &Route,
    vehicle: &VehicleRecord,
) -> Vec<Option<DateTime<FixedOffset>>> {
    let (delay, _) = live(route, Some(vehicle));
    etas(route, delay).collect()
}

/// The `route.updated` payload of the change `change` of stop `stop_id`: `route` is the stored
/// route after it (version and event already stamped), `vehicle` its vehicle's record after it,
/// `before` the ETAs from [`etas_before`].
pub(super) fn stop_changed(
    route: &Route,
    vehicle: &VehicleRecord,
    before: &[Option<DateTime<FixedOffset>>],
    stop_id: &str,
    change: Change<'_>,
) -> Vec<u8> {
    let (delay, position) = live(route, Some(vehicle));
    let moved = route
        .optimized_stops
        .iter()
        .zip(etas(route, delay))
        .zip(before)
        .filter(|((_, after), before)| after != *before)
        .map(|((s, after), _)| (s.plan.id.as_str(), after))
        .collect();
    let stop = route
        .optimized_stops
        .iter()
        .find(|s| s.plan.id == stop_id)
        .expect("the changed stop is on the route");
    let payload = StopChanged {
        route_id: &route.route_id,
        vehicle_id: &route.vehicle_id,
        version: route.version,
        status: route.status,
        event_id: route.event_id,
        updated_at: route.updated_at,
        change,
        stop: StopState {
            id: &stop.plan.id,
            status: stop.status,
            arrived_at: stop.arrived_at,
            finished_at: stop.finished_at,
            note: stop.note.as_deref(),
        },
        etas: moved,
        delay_seconds: delay,
        last_position: position,
    };
    serde_json::to_vec(&payload).expect("serializing a route change cannot fail")
}

/// The `route.updated` payload of a re-plan: `shown` is the route as clients see it.
pub(super) fn replanned(shown: &Route, input: &PlanInput, remaining_stops: usize) -> Vec<u8> {
    let payload = Replanned {
        route: shown,
        plan: PlanExtras::of(input, shown),
        change: Change::Reoptimized { remaining_stops },
    };
    serde_json::to_vec(&payload).expect("serializing a route cannot fail")
}

/// The `route.optimized` payload: the route's JSON (an object) with `plan` added, so that the
/// route's bytes are serialized once for the event and the record.
pub(super) fn with_plan(route_json: &[u8], route: &Route, input: &PlanInput) -> Vec<u8> {
    let plan_json =
        serde_json::to_vec(&PlanExtras::of(input, route)).expect("serializing a plan cannot fail");
    let body = route_json
        .strip_suffix(b"}")
        .expect("a route serializes to a JSON object");
    let mut out = Vec::with_capacity(route_json.len() + plan_json.len() + 10);
    out.extend_from_slice(body);
    out.extend_from_slice(br#","plan":"#);
    out.extend_from_slice(&plan_json);
    out.push(b'}');
    out
}
