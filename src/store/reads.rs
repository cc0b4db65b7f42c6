//! Reads: a route with its live ETAs, route lists, the audit trail.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use super::record::{Position, Route, RouteRecord, RouteStatus, StopStatus, VehicleRecord};
use super::{Error, Result, Store, Trees, keys, lifecycle, read_record};
use super::{ROUTES, VEHICLES};
use crate::events::Envelope;
use crate::queue;

/// Index entries a list request may look at before it returns a shorter page (with a cursor).
const SCAN_BUDGET: usize = 10_000;

/// `GET /traffic/routes` filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub vehicle_id: Option<String>,
    pub status: Option<RouteStatus>,
    pub limit: usize,
    /// Route id after which (older than which) to continue.
    pub after: Option<String>,
}

/// One entry of a route list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSummary {
    pub route_id: String,
    pub vehicle_id: String,
    pub status: RouteStatus,
    pub stop_count: usize,
    pub stops_done: usize,
    pub total_distance_meters: f64,
    pub total_duration_seconds: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of routes, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub routes: Vec<RouteSummary>,
    /// Pass back as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

impl RouteSummary {
    fn of(r: &Route) -> RouteSummary {
        RouteSummary {
            route_id: r.route_id.clone(),
            vehicle_id: r.vehicle_id.clone(),
            status: r.status,
            stop_count: r.optimized_stops.len(),
            stops_done: r
                .optimized_stops
                .iter()
                .filter(|s| s.status.is_terminal())
                .count(),
            total_distance_meters: r.total_distance_meters,
            total_duration_seconds: r.total_duration_seconds,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl Store {
    /// A route with ETAs from its vehicle's last fix.
    pub async fn route(&self, route_id: &str) -> Result<Route> {
        let id = route_id.to_string();
        self.blocking(move |t| {
            let (_, rec) = load_route(t, &id)?;
            let vehicle = load_vehicle(t, &rec.route.vehicle_id)?.map(|(_, v)| v);
            Ok(view(rec.route, vehicle.as_ref()))
        })
        .await
    }

    /// Routes, newest first, filtered by vehicle and/or status.
    pub async fn list(&self, q: ListQuery) -> Result<Page> {
        self.blocking(move |t| list(t, &q)).await
    }

    /// The route's logged events, oldest first; 404 when the route does not exist.
    pub async fn route_events(&self, route_id: &str, limit: usize) -> Result<Vec<Envelope>> {
        let (id, outbox) = (route_id.to_string(), self.outbox.clone());
        self.blocking(move |t| {
            load_route(t, &id)?;
            Ok(outbox.route_events(&id, limit)?)
        })
        .await
    }
}

pub(super) fn load_route(t: &Trees, route_id: &str) -> Result<(Vec<u8>, RouteRecord)> {
    read_record(&t.routes, ROUTES, &keys::route(route_id))?
        .ok_or_else(|| Error::NotFound(format!("no route {route_id:?}")))
}

pub(super) fn load_vehicle(
    t: &Trees,
    vehicle_id: &str,
) -> Result<Option<(Vec<u8>, VehicleRecord)>> {
    read_record(&t.vehicles, VEHICLES, &keys::vehicle(vehicle_id))
}

/// The route as clients see it: ETAs and position when it is its vehicle's active route.
pub(super) fn view(mut route: Route, vehicle: Option<&VehicleRecord>) -> Route {
    let (delay, position) = live(&route, vehicle);
    let etas: Vec<_> = etas(&route, delay).collect();
    for (stop, eta) in route.optimized_stops.iter_mut().zip(etas) {
        stop.eta = eta;
    }
    route.delay_seconds = delay;
    route.last_position = position;
    debug_assert!(
        route
            .optimized_stops
            .iter()
            .all(|s| s.eta.is_none() || s.status == StopStatus::Pending)
    );
    route
}

/// The delay and the position [`view`] shows with `route`: its vehicle's while it is the
/// vehicle's active route; otherwise no delay and the position stored with the route.
pub(super) fn live(
    route: &Route,
    vehicle: Option<&VehicleRecord>,
) -> (Option<f64>, Option<Position>) {
    let active = vehicle.and_then(|v| {
        v.active_route
            .as_ref()
            .filter(|a| a.route_id == route.route_id)
            .map(|a| (a.delay_seconds, v.last_position))
    });
    match active {
        Some((delay, position)) => (Some(delay), position),
        None => (None, route.last_position),
    }
}

/// The ETA [`view`] shows for each stop, in driving order: none on a completed route.
pub(super) fn etas(
    route: &Route,
    delay: Option<f64>,
) -> impl Iterator<Item = Option<DateTime<FixedOffset>>> + '_ {
    let completed = route.status == RouteStatus::Completed;
    route
        .optimized_stops
        .iter()
        .map(move |s| lifecycle::eta(s, delay).filter(|_| !completed))
}

fn list(t: &Trees, q: &ListQuery) -> Result<Page> {
    let limit = q.limit.max(1);
    let mut ids: Vec<String> = Vec::with_capacity(limit);
    let mut last_seen: Option<String> = None;
    let mut exhausted = true;
    let (tree, prefix): (&sled::Tree, Vec<u8>) = match (&q.vehicle_id, q.status) {
        (Some(v), _) => (&t.by_vehicle, keys::vehicle_prefix(v)),
        (None, Some(s)) => (&t.by_status, vec![s.tag()]),
        (None, None) => (&t.routes, Vec::new()),
    };
    let upper = match &q.after {
        Some(after) => [prefix.as_slice(), after.as_bytes()].concat(),
        None => upper_bound(&prefix),
    };
    let range = tree.range(prefix.clone()..upper).rev();
    for (scanned, item) in range.enumerate() {
        let (key, value) = item.map_err(queue::Error::from)?;
        if ids.len() >= limit || scanned >= SCAN_BUDGET {
            exhausted = false;
            break;
        }
        let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        last_seen = Some(id.clone());
        let wanted = match (q.vehicle_id.is_some(), q.status) {
            (true, Some(s)) => value.first() == Some(&s.tag()),
            _ => true,
        };
        if wanted {
            ids.push(id);
        }
    }
    let mut routes = Vec::with_capacity(ids.len());
    for id in &ids {
        // An index entry may be a moment ahead of a concurrent read; skip what vanished.
        if let Some((_, rec)) = read_record::<RouteRecord>(&t.routes, ROUTES, &keys::route(id))? {
            routes.push(RouteSummary::of(&rec.route));
        }
    }
    let next_cursor = if exhausted {
        None
    } else {
        last_seen.map(|id| keys::encode_cursor(&id))
    };
    Ok(Page {
        routes,
        next_cursor,
    })
}

/// The smallest key greater than every key starting with `prefix` (unbounded as a long max key).
fn upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&[0xff; 64]);
    k
}
