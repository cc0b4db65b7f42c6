//! Route optimizer: the order in which one vehicle should visit its stops.
//!
//! A pure module: no async runtime, no storage, no I/O. The HTTP layer deserializes a request
//! into a [`Problem`], calls [`solve`] on a blocking thread and embeds the [`Solution`].
//!
//! # Pipeline
//!
//! ```text
//! Problem ─validate─▶ points ─CostMatrixSource─▶ Matrices ─▶ Instance ─▶ strategy ─▶ Solution
//!                     [start] stops [end]        (metres,     nodes,      exact ≤ 12 free nodes,
//!                                                  seconds)   one cost    else greedy + 2-opt/Or-opt
//!                                                             matrix      + iterated local search,
//!                                                                         + time-window search
//! ```
//!
//! * **One matrix per request.** [`CostMatrixSource`] turns the request's points into distance and
//!   driving-time matrices once; every algorithm reads from it. [`HaversineSource`] (great circle
//!   × detour factor, constant speed) is the default; a road-network source can replace it through
//!   [`solve_with_matrix`] and will give asymmetric costs, which every algorithm here handles.
//! * **Every variant is a cycle.** Node 0 is the origin (the start, or the first stop, which
//!   therefore stays first). A round trip is a plain cycle. An open route gets a terminal node (the
//!   end point, or a free end that costs nothing to reach) joined to the origin by a fixed,
//!   zero-cost edge that no move may break (see `instance.rs`).
//! * **Exact when small.** Up to [`EXACT_MAX_STOPS`] stops, Held-Karp dynamic programming
//!   returns a proven optimum (`provablyOptimal: true`), in well under a millisecond.
//! * **Iterated local search when large.** Greedy matching (nearest neighbour on asymmetric costs),
//!   then 2-opt and Or-opt with 8 alpha-nearest candidates per node (minimum-spanning-tree
//!   based, so the edges between delivery zones are candidates too) and don't-look bits, then
//!   double-bridge kicks (two adjacent segments of up to 100 stops swapped), each re-optimised
//!   around the kick and undone unless it stays within a narrow band above the best tour.
//! * **Time windows.** The objective becomes lexicographic: total lateness, then cost. Up to
//!   [`EXACT_MAX_STOPS`] stops the exact search keeps Pareto labels and finds a route meeting
//!   every window whenever one exists, the cheapest such route in practice (proven unless its
//!   label cap bites, which the result reports). Above that, the cost-optimised route, the input
//!   order and earliest-deadline-first seed a lateness-aware local search: best effort, never
//!   worse than any of those three.
//! * **Never worse than the input.** The result is compared with the stops in the order given,
//!   by (lateness, cost); if the input order is strictly better, it is returned instead.
//! * **Asymmetric costs are exact.** Moves that reverse a path price the reversed direction
//!   (prefix sums of reverse-minus-forward costs), kicks never reverse anything, and the exact
//!   searches are direction-aware, so a road-network source only costs speed, never correctness.
//!
//! # Determinism and time limits
//!
//! The same [`Problem`], [`Params`] and seed give the same [`Solution`] (timing fields aside).
//! Search effort is a number of kicks fixed in advance from the problem size,
//! `n · (60 + 20·√(n/100))` capped at 100 000 and scaled by [`Params::search_effort`], never
//! "as many as fit in N ms". On the benchmark machine that is about 10 ms at 50 stops, 25 ms at
//! 100, 70 ms at 200, 0.3 s at 500, 0.7 s at 1 000 and 1.0 s at 2 000 of CPU time. The wall-clock limit
//! (`preferences.maxComputeMillis`, else [`Params::max_compute_ms`]) is a safety cap only: when it
//! fires, the search stops, returns the best route so far, sets `timeLimitReached` and adds a
//! warning; only then can two runs differ. The module never reads the calendar clock either: a
//! missing `departureTime` means [`Params::now`], supplied by the caller.
//!
//! # Cost
//!
//! Memory is dominated by dense matrices: about 30 bytes per pair of points while searching
//! (distance, driving time and objective in `f64`, plus an `f32` copy the local search reads),
//! i.e. 30 MB at 1 000 stops and 120 MB at 2 000. Time is `O(n²)` to build the matrix and the
//! candidate lists, then proportional to the kick budget.

mod candidates;
mod construct;
mod error;
mod exact;
mod geo;
mod graph;
mod ils;
mod instance;
mod local_search;
mod matrix;
mod model;
mod report;
mod schedule;
mod strategy;
mod tour;
mod validate;
mod windows;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use error::{Error, Result};
pub use geo::{EARTH_RADIUS_METERS, LineString, haversine_meters};
pub use matrix::{CostMatrixSource, HaversineSource, Matrices, SquareMatrix};
pub use model::{
    CostModel, Location, OptimizationInfo, OptimizeFor, OptimizedStop, Preferences, Problem,
    Solution, Stop, TimeWindow,
};

/// A cost source shared across threads (the gateway's road network).
pub type SharedSource = std::sync::Arc<dyn CostMatrixSource + Send + Sync>;

/// Problems with at most this many stops are solved exactly.
pub const EXACT_MAX_STOPS: usize = strategy::EXACT_MAX_FREE;

/// Upper bound for `preferences.maxComputeMillis`: one request may not hold a worker longer.
pub const MAX_COMPUTE_MILLIS: u64 = 60_000;

/// Solver configuration, set by the server (not by requests).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Most stops accepted in one request (default 2 000).
    pub max_stops: usize,
    /// Road metres per great-circle metre for [`HaversineSource`] (default 1.3).
    pub detour_factor: f64,
    /// Average driving speed for [`HaversineSource`], km/h (default 40).
    pub average_speed_kmh: f64,
    /// Wall-clock cap when the request gives none, milliseconds (default 2 000).
    pub max_compute_ms: u64,
    /// Seed of the randomised search; same seed, same route.
    pub seed: u64,
    /// Multiplier on the deterministic search budget (default 1.0; 0 = construction and local
    /// search only).
    pub search_effort: f64,
    /// "Now", used when the request has no `departureTime`. The caller reads the clock.
    pub now: Option<DateTime<Utc>>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_stops: 2_000,
            detour_factor: 1.3,
            average_speed_kmh: 40.0,
            max_compute_ms: 2_000,
            seed: 0x5EED,
            search_effort: 1.0,
            now: None,
        }
    }
}

/// Solves `problem` with great-circle distances ([`HaversineSource`] from `params`).
pub fn solve(problem: &Problem, params: &Params) -> Result<Solution> {
    let source = HaversineSource {
        detour_factor: params.detour_factor,
        average_speed_kmh: params.average_speed_kmh,
    };
    solve_with_matrix(problem, params, &source)
}

/// Solves `problem` with costs from `source`, called once with [`points`]`(problem)`.
pub fn solve_with_matrix(
    problem: &Problem,
    params: &Params,
    source: &dyn CostMatrixSource,
) -> Result<Solution> {
    let started = Instant::now();
    validate::params(params)?;
    validate::problem(problem, params)?;
    let departure = problem
        .departure_time
        .or_else(|| params.now.map(|t| t.fixed_offset()))
        .expect("validated: departure time or now is present");
    let limit = problem
        .preferences
        .max_compute_millis
        .unwrap_or(params.max_compute_ms);
    let deadline = started + Duration::from_millis(limit);
    let points = points(problem);
    let mut matrices = source.matrices_for_problem(problem, &points)?;
    matrices.check(points.len())?;
    let inst = instance::Instance::new(problem, &matrices, departure);
    let snaps = matrices.snap_meters.take();
    let source_warnings = std::mem::take(&mut matrices.warnings);
    drop(matrices);
    let found = strategy::run(&inst, params, deadline);
    let input = inst.input_route();
    let (initial, optimized) = (inst.route_cost(&input), inst.route_cost(&found.route));
    let optimization = OptimizationInfo {
        algorithm: found.algorithm.to_owned(),
        provably_optimal: found.proven,
        objective: problem.preferences.optimize_for,
        initial_cost: initial,
        optimized_cost: optimized,
        improvement_percent: if initial > 0.0 {
            100.0 * (initial - optimized) / initial
        } else {
            0.0
        },
        initial_lateness_seconds: inst.timing.lateness(&input),
        iterations: found.iterations,
        compute_millis: started.elapsed().as_millis() as u64,
        time_limit_reached: found.timed_out,
        cost_model: source.cost_model(),
    };
    let mut warnings = warnings(problem, source, found.timed_out, limit);
    warnings.extend(source_warnings);
    let mut solution = report::solution(
        problem,
        &inst,
        &found.route,
        departure,
        optimization,
        warnings,
    );
    if let Some(road) = source.path_through(&solution.geometry.points(), &problem.preferences) {
        solution.geometry = LineString::through(road);
    }
    if let Some(snaps) = snaps {
        let offset = usize::from(problem.start.is_some());
        let index: std::collections::HashMap<&str, usize> = problem
            .stops
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        for stop in &mut solution.optimized_stops {
            let at = index
                .get(stop.id.as_str())
                .and_then(|i| snaps.get(i + offset));
            stop.snap_distance_meters = at.map(|m| (m * 10.0).round() / 10.0);
        }
    }
    let missed = solution
        .optimized_stops
        .iter()
        .filter(|s| !s.time_window_met)
        .count();
    if missed > 0 {
        solution.warnings.push(format!(
            "{missed} stop(s) cannot be reached within their time window on this route"
        ));
    }
    Ok(solution)
}

/// The points a [`CostMatrixSource`] is asked about: `start` (if any), every stop in request
/// order, then `end` (if any).
pub fn points(problem: &Problem) -> Vec<Location> {
    let stops = problem.stops.iter().map(|s| Location {
        latitude: s.latitude,
        longitude: s.longitude,
    });
    problem
        .start
        .into_iter()
        .chain(stops)
        .chain(problem.end)
        .collect()
}

fn warnings(
    problem: &Problem,
    source: &dyn CostMatrixSource,
    timed_out: bool,
    limit: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let prefs = &problem.preferences;
    for (asked, name) in [
        (prefs.avoid_tolls, "avoidTolls"),
        (prefs.avoid_highways, "avoidHighways"),
    ] {
        if asked && !source.honours_avoidances() {
            out.push(format!(
                "{name} was requested but cannot be honoured: distances are estimated without a road network"
            ));
        }
    }
    if timed_out {
        out.push(format!(
            "compute limit of {limit} ms reached; returning the best route found so far"
        ));
    }
    out
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
