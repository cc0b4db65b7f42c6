//! What the route events carry: the whole route when the plan changes, only the change otherwise.
//!
//! | event                                            | payload                                       |
//! |--------------------------------------------------|-----------------------------------------------|
//! | `route.optimized`                                | the route as `GET /traffic/routes/{id}` shows it |
//! | `route.updated`, `change.type = "reoptimized"`   | the whole re-planned route plus `change` (`Replanned`): every pending stop may have moved |
//! | `route.updated`, `change.type = "stop_status"`   | only the change (`StopChanged`)               |
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
use serde::Serialize;
use uuid::Uuid;

use super::reads::{etas, live};
use super::record::{Position, Route, RouteStatus, StopStatus, VehicleRecord};

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

/// `route.updated` of a re-plan: the whole route as clients see it, and the change.
#[derive(Debug, Serialize)]
pub(super) struct Replanned<'a> {
    #[serde(flatten)]
    pub route: &'a Route,
    pub change: Change<'a>,
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
pub(super) fn replanned(shown: &Route, remaining_stops: usize) -> Vec<u8> {
    let payload = Replanned {
        route: shown,
        change: Change::Reoptimized { remaining_stops },
    };
    serde_json::to_vec(&payload).expect("serializing a route cannot fail")
}
