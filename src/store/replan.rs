//! From solver output to stored routes: a new route, and a re-plan of the stops still pending.
//!
//! Re-planning keeps every stop that is no longer pending where it was (in driving order, at the
//! front) and appends the pending ones in the solver's new order, driven from the vehicle's last
//! fix (else from the last stop reached, else from the route's original start).

use chrono::{DateTime, Utc};

use super::record::{Position, Route, RouteRecord, RouteStatus, RouteStop, StopStatus};
use super::{Error, Result};
use crate::optimize::{LineString, Location, Problem, Solution, Stop};

/// A freshly planned route: every stop pending.
pub fn new_route(
    route_id: String,
    vehicle_id: String,
    solution: Solution,
    now: DateTime<Utc>,
) -> Route {
    Route {
        route_id,
        vehicle_id,
        status: RouteStatus::Planned,
        version: 1,
        optimized_stops: solution.optimized_stops.into_iter().map(pending).collect(),
        total_distance_meters: solution.total_distance_meters,
        total_duration_seconds: solution.total_duration_seconds,
        total_driving_seconds: solution.total_driving_seconds,
        total_lateness_seconds: solution.total_lateness_seconds,
        departure_time: solution.departure_time,
        finish_time: solution.finish_time,
        geometry: solution.geometry,
        optimization: solution.optimization,
        warnings: solution.warnings,
        event_id: uuid::Uuid::nil(),
        created_at: now,
        updated_at: now,
        delay_seconds: None,
        last_position: None,
    }
}

fn pending(plan: crate::optimize::OptimizedStop) -> RouteStop {
    RouteStop {
        plan,
        status: StopStatus::Pending,
        eta: None,
        arrived_at: None,
        finished_at: None,
        note: None,
    }
}

fn location(s: &RouteStop) -> Location {
    Location {
        latitude: s.plan.latitude,
        longitude: s.plan.longitude,
    }
}

/// The problem of driving the pending stops from where the vehicle is, leaving now.
pub fn remaining_problem(rec: &RouteRecord, fix: Option<&Position>) -> Result<Problem> {
    let route = &rec.route;
    if route.status == RouteStatus::Completed {
        return Err(Error::Conflict(format!(
            "route {:?} is completed; nothing to re-plan",
            route.route_id
        )));
    }
    let stops: Vec<Stop> = route
        .optimized_stops
        .iter()
        .filter(|s| s.status == StopStatus::Pending)
        .map(|s| {
            rec.input.stop(&s.plan.id).cloned().unwrap_or_else(|| Stop {
                id: s.plan.id.clone(),
                latitude: s.plan.latitude,
                longitude: s.plan.longitude,
                address: s.plan.address.clone(),
                service_minutes: None,
                time_window: None,
            })
        })
        .collect();
    if stops.is_empty() {
        return Err(Error::Conflict(format!(
            "route {:?} has no pending stops to re-plan",
            route.route_id
        )));
    }
    let last_reached = route
        .optimized_stops
        .iter()
        .rev()
        .find(|s| matches!(s.status, StopStatus::Arrived | StopStatus::Completed))
        .map(location);
    let start = fix
        .map(Position::location)
        .or(last_reached)
        .or(rec.input.start);
    let origin = rec
        .input
        .start
        .or_else(|| route.optimized_stops.first().map(location));
    let end = if rec.input.round_trip {
        origin
    } else {
        rec.input.end
    };
    Ok(Problem {
        stops,
        start,
        end,
        round_trip: false,
        departure_time: None,
        preferences: rec.input.preferences.clone(),
    })
}

/// Put the re-planned pending stops behind the stops already dealt with.
pub fn merge(rec: &mut RouteRecord, solution: Solution) {
    let route = &mut rec.route;
    let mut stops: Vec<RouteStop> = route
        .optimized_stops
        .drain(..)
        .filter(|s| s.status != StopStatus::Pending)
        .collect();
    let sum = |f: fn(&RouteStop) -> f64| stops.iter().map(f).sum::<f64>();
    let done_distance = sum(|s| s.plan.distance_from_previous_meters);
    let done_driving = sum(|s| s.plan.duration_from_previous_seconds);
    let done_lateness = sum(|s| s.plan.lateness_seconds);
    let mut coordinates: Vec<[f64; 2]> = rec
        .input
        .start
        .into_iter()
        .chain(stops.iter().map(location))
        .map(|p| [p.longitude, p.latitude])
        .collect();
    coordinates.extend(solution.geometry.coordinates);
    stops.extend(solution.optimized_stops.into_iter().map(pending));
    for (i, s) in stops.iter_mut().enumerate() {
        s.plan.sequence = i + 1;
    }
    route.optimized_stops = stops;
    route.total_distance_meters = done_distance + solution.total_distance_meters;
    route.total_driving_seconds = done_driving + solution.total_driving_seconds;
    route.total_lateness_seconds = done_lateness + solution.total_lateness_seconds;
    route.finish_time = solution.finish_time;
    route.total_duration_seconds =
        (solution.finish_time - route.departure_time).num_milliseconds() as f64 / 1000.0;
    route.geometry = LineString {
        kind: "LineString".into(),
        coordinates,
    };
    route.optimization = solution.optimization;
    route.warnings = solution.warnings;
}
