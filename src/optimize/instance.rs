//! The internal form of a request: numbered nodes, one cost matrix, and where the route ends.
//!
//! Node `v` is point `v` of the matrix source's input (start if given, then the stops in request
//! order, then `end` if given). Node 0 is the *origin*: the start, or the first stop without one,
//! which is why the first stop stays first. An open route has a *terminal* as its last node: the
//! fixed `end`, or, when the route may end anywhere, a free end that costs nothing to reach. The
//! edge terminal → origin is fixed and costs nothing, so "cycle cost" and "route cost" agree and
//! the same cycle algorithms solve round trips, fixed ends and open ends.

use chrono::{DateTime, FixedOffset};

use super::matrix::{Matrices, SquareMatrix};
use super::model::{OptimizeFor, Problem};
use super::schedule::Timing;
use super::tour::Tour;

/// A request reduced to numbers.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    /// What the search minimises between nodes (metres or driving seconds).
    pub cost: SquareMatrix,
    /// Metres between nodes (0 to and from the free end).
    pub distance: SquareMatrix,
    /// Travel times, service and windows.
    pub timing: Timing,
    /// The last node of an open route; `None` for a round trip.
    pub terminal: Option<usize>,
    /// Index into `problem.stops` per node, `None` for start and end points.
    pub stop: Vec<Option<usize>>,
    /// True when the terminal is a free end rather than the caller's `end`.
    pub free_end: bool,
}

impl Instance {
    /// Builds the instance; `matrices` are over the points of [`points`](super::points).
    pub(crate) fn new(
        problem: &Problem,
        matrices: &Matrices,
        departure: DateTime<FixedOffset>,
    ) -> Self {
        let has_start = usize::from(problem.start.is_some());
        let real = matrices.distance_meters.len();
        let free_end = problem.end.is_none() && !problem.round_trip;
        let n = real + usize::from(free_end);
        let terminal = (!problem.round_trip).then_some(n - 1);
        let fixed =
            |i: usize, j: usize| terminal.is_some_and(|t| (i == t && j == 0) || (i == 0 && j == t));
        let internal = |m: &SquareMatrix| {
            SquareMatrix::from_fn(n, |i, j| {
                if i >= real || j >= real || fixed(i, j) {
                    0.0
                } else {
                    m.get(i, j)
                }
            })
        };
        let distance = internal(&matrices.distance_meters);
        let travel = internal(&matrices.duration_seconds);
        let cost = match problem.preferences.optimize_for {
            OptimizeFor::Distance => distance.clone(),
            OptimizeFor::Time => travel.clone(),
        };
        let stop: Vec<Option<usize>> = (0..n)
            .map(|v| (v >= has_start && v - has_start < problem.stops.len()).then(|| v - has_start))
            .collect();
        let seconds_after =
            |t: DateTime<FixedOffset>| (t - departure).num_milliseconds() as f64 / 1000.0;
        let service = stop
            .iter()
            .map(|s| {
                s.map_or(0.0, |i| {
                    problem.stops[i].service_minutes.unwrap_or(0.0) * 60.0
                })
            })
            .collect();
        let window = stop
            .iter()
            .map(|s| {
                let w = problem.stops[(*s)?].time_window?;
                Some((seconds_after(w.start), seconds_after(w.end)))
            })
            .collect();
        Self {
            cost,
            distance,
            timing: Timing {
                travel,
                service,
                window,
                origin_is_stop: has_start == 0,
            },
            terminal,
            stop,
            free_end,
        }
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.cost.len()
    }

    /// The terminal when it is a free end (no point of its own, free to reach).
    pub(crate) fn free_end(&self) -> Option<usize> {
        self.terminal
            .filter(|&t| self.stop[t].is_none() && self.free_end)
    }

    /// The edge that closes an open route.
    pub(crate) fn fixed(&self) -> Option<(usize, usize)> {
        self.terminal.map(|t| (t, 0))
    }

    /// Where the route goes after the last free node: the terminal, or home.
    pub(crate) fn target(&self) -> usize {
        self.terminal.unwrap_or(0)
    }

    /// Nodes whose place the search chooses.
    pub(crate) fn free(&self) -> Vec<usize> {
        (1..self.len())
            .filter(|&v| Some(v) != self.terminal)
            .collect()
    }

    /// The stops in the order given: origin, free nodes, terminal.
    pub(crate) fn input_route(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }

    /// Objective cost of a route (origin first), including the way home of a round trip.
    pub(crate) fn route_cost(&self, route: &[usize]) -> f64 {
        let open: f64 = route.windows(2).map(|w| self.cost.get(w[0], w[1])).sum();
        match (self.terminal, route.last()) {
            (None, Some(&last)) => open + self.cost.get(last, route[0]),
            _ => open,
        }
    }

    /// Reads a cycle as a route from the origin, in the direction that ends at the terminal.
    pub(crate) fn route_from_tour(&self, tour: &Tour) -> Vec<usize> {
        let n = tour.len();
        let p = tour.pos(0);
        let backwards = self.terminal.is_some_and(|t| tour.succ(0) == t);
        (0..n)
            .map(|k| {
                if backwards {
                    tour.at(p + n - k)
                } else {
                    tour.at(p + k)
                }
            })
            .collect()
    }
}
