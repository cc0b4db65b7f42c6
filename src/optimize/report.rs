//! Turns a route over internal nodes into the [`Solution`] the API returns.

use chrono::{DateTime, Duration, FixedOffset};

use super::geo::LineString;
use super::instance::Instance;
use super::model::{Location, OptimizationInfo, OptimizedStop, Problem, Solution};

/// Times in seconds after departure → instants, saturating instead of overflowing.
fn at(departure: DateTime<FixedOffset>, seconds: f64) -> DateTime<FixedOffset> {
    let ms = (seconds * 1000.0).round();
    Duration::try_milliseconds(ms as i64)
        .and_then(|d| departure.checked_add_signed(d))
        .unwrap_or(departure)
}

/// Assembles the result for `route` (origin first, terminal last when there is one).
pub(crate) fn solution(
    problem: &Problem,
    inst: &Instance,
    route: &[usize],
    departure: DateTime<FixedOffset>,
    optimization: OptimizationInfo,
    warnings: Vec<String>,
) -> Solution {
    let visits = inst.timing.visits(route);
    let travel = &inst.timing.travel;
    let mut stops = Vec::with_capacity(problem.stops.len());
    for (p, (&v, visit)) in route.iter().zip(&visits).enumerate() {
        let Some(s) = inst.stop[v] else { continue };
        let stop = &problem.stops[s];
        let (distance, duration) = match p {
            0 => (0.0, 0.0),
            _ => (
                inst.distance.get(route[p - 1], v),
                travel.get(route[p - 1], v),
            ),
        };
        stops.push(OptimizedStop {
            id: stop.id.clone(),
            sequence: stops.len() + 1,
            latitude: stop.latitude,
            longitude: stop.longitude,
            address: stop.address.clone(),
            arrival_time: at(departure, visit.arrival),
            departure_time: at(departure, visit.departure),
            distance_from_previous_meters: distance,
            duration_from_previous_seconds: duration,
            waiting_seconds: visit.wait,
            time_window_met: visit.lateness <= 0.0,
            lateness_seconds: visit.lateness,
            snap_distance_meters: None,
        });
    }
    let closing = |m: &super::matrix::SquareMatrix| match (inst.terminal, route.last()) {
        (None, Some(&last)) => m.get(last, route[0]),
        _ => 0.0,
    };
    let along = |m: &super::matrix::SquareMatrix| -> f64 {
        route.windows(2).map(|w| m.get(w[0], w[1])).sum::<f64>() + closing(m)
    };
    let last = visits.last().map_or(0.0, |v| v.departure);
    let finish = last + closing(travel);
    Solution {
        total_distance_meters: along(&inst.distance),
        total_driving_seconds: along(travel),
        total_duration_seconds: finish,
        total_lateness_seconds: visits.iter().map(|v| v.lateness).sum(),
        departure_time: departure,
        finish_time: at(departure, finish),
        geometry: geometry(problem, inst, &stops),
        optimized_stops: stops,
        optimization,
        warnings,
    }
}

/// Start, stops in order, then the end point or the way home.
fn geometry(problem: &Problem, inst: &Instance, stops: &[OptimizedStop]) -> LineString {
    let stop_points = stops.iter().map(|s| Location {
        latitude: s.latitude,
        longitude: s.longitude,
    });
    let origin = problem.start.or_else(|| {
        stops.first().map(|s| Location {
            latitude: s.latitude,
            longitude: s.longitude,
        })
    });
    let finish = match inst.terminal {
        None => origin,
        Some(_) => problem.end,
    };
    LineString::through(problem.start.into_iter().chain(stop_points).chain(finish))
}
