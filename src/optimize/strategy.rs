//! Which algorithm runs, with what budget, and the guard that the result never loses to the
//! order the caller gave.

use std::time::Instant;

use super::Params;
use super::candidates::Neighbours;
use super::construct;
use super::exact;
use super::graph::Graph;
use super::ils::{self, Budget};
use super::instance::Instance;
use super::tour::Tour;
use super::windows::{self, Key};

/// Free nodes up to which the exact search runs (12 stops with a start, 13 without).
pub(crate) const EXACT_MAX_FREE: usize = 12;

/// Candidate partners per node for the local search (alpha-nearest, see `candidates`). 8 gave
/// the same tours as 10 on 30 instances per size at 200-1,000 stops, about 10% faster.
const NEIGHBOURS: usize = 8;

/// Share of the kick budget an asymmetric matrix gets. Its kicks cost six to eight times as much
/// (no gain-based pruning is valid, every 2-opt move prices both reversals, ~20 moves per kick
/// against ~4). Measured on road driving times against LKH-3 (Monaco, 5 instances per size):
/// the full budget ends 0.06% / 0.16% above it at 100 / 200 stops, 0.3 of it 0.13% / 0.35%,
/// 0.2 of it 0.12% / 0.42%, which brings a 100-stop request on Andorra to about 100 ms.
/// Pruning by the positive-gain rule instead, or 6 candidates instead of 8, did worse at equal
/// time (0.23-0.51% / 0.51-0.79%).
const ASYMMETRIC_EFFORT: f64 = 0.2;

/// The route found and how.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub route: Vec<usize>,
    pub algorithm: &'static str,
    pub proven: bool,
    pub iterations: u64,
    pub timed_out: bool,
}

/// Kicks of the iterated local search for `n` nodes: grows a little faster than `n`, since
/// larger tours need more kicks per node to reach the same gap, up to [`MAX_KICKS`].
pub(crate) fn kicks_for(n: usize, effort: f64) -> u64 {
    let n = n as f64;
    let kicks = (n * (60.0 + 20.0 * (n / 100.0).sqrt())).min(MAX_KICKS);
    (effort * kicks).round() as u64
}

/// Kicks are capped so that 1 000 stops stay well inside their 1 s target on a busy machine
/// and even 2 000 stops (about 10 µs per kick) finish in about 1.1 s, within the default 2 s
/// wall-clock cap, and so stay deterministic. The cap binds from about 870 stops on.
const MAX_KICKS: f64 = 100_000.0;

/// Schedule evaluations allowed to the time-window search.
fn window_steps_for(n: usize, effort: f64) -> u64 {
    (effort * 4.0e4 * n as f64).round() as u64
}

/// Solves `inst`: exactly when small, else by iterated local search (plus the time-window search
/// when windows exist). Never returns a route that is worse than the input order.
pub(crate) fn run(inst: &Instance, params: &Params, deadline: Instant) -> Found {
    let free = inst.free();
    let windows = inst.timing.has_windows();
    let mut found = if free.len() <= EXACT_MAX_FREE {
        let (algorithm, e) = if windows {
            let incumbent = [inst.input_route(), deadline_order(inst)]
                .iter()
                .map(|r| windows::key(inst, r))
                .reduce(|a, b| if b.better_than(&a) { b } else { a })
                .map(|k| (k.late, k.cost));
            let e = exact::held_karp_windows(
                &inst.cost,
                &inst.timing,
                0,
                &free,
                inst.target(),
                incumbent,
            );
            ("held-karp-time-windows", e)
        } else {
            (
                "held-karp",
                exact::held_karp(&inst.cost, 0, &free, inst.target()),
            )
        };
        Found {
            route: e.route,
            algorithm,
            proven: e.proven,
            iterations: e.states,
            timed_out: false,
        }
    } else {
        heuristic(inst, params, deadline, windows)
    };
    let input = inst.input_route();
    if windows::key(inst, &input).better_than(&windows::key(inst, &found.route)) {
        found.route = input;
        found.proven = false;
    }
    found
}

fn heuristic(inst: &Instance, params: &Params, deadline: Instant, windows: bool) -> Found {
    let n = inst.len();
    let neighbours =
        Neighbours::alpha_nearest(&inst.cost, NEIGHBOURS, inst.fixed(), inst.free_end());
    let g = Graph::with_neighbours(&inst.cost, inst.fixed(), neighbours);
    let start = if g.symmetric {
        construct::greedy(&g, 0)
    } else {
        construct::nearest_neighbour(&g, 0, inst.terminal)
    };
    let mut tour = Tour::new(&start);
    let effort = if g.symmetric {
        params.search_effort
    } else {
        params.search_effort * ASYMMETRIC_EFFORT
    };
    let budget = Budget {
        kicks: kicks_for(n, effort),
        deadline: Some(deadline),
        seed: params.seed,
    };
    let outcome = ils::improve(&g, &mut tour, budget);
    let mut found = Found {
        route: inst.route_from_tour(&tour),
        algorithm: "iterated-local-search",
        proven: false,
        iterations: outcome.kicks,
        timed_out: outcome.timed_out,
    };
    if windows {
        let mut route = best_start(inst, found.route.clone());
        let steps = window_steps_for(n, params.search_effort);
        let w = windows::improve(inst, &g.neighbours, &mut route, steps, Some(deadline));
        found.route = route;
        found.algorithm = "iterated-local-search+time-windows";
        found.timed_out |= w.timed_out;
    }
    found
}

/// The best of: the cost-optimised route (both ways round for a round trip), the input order,
/// and earliest-deadline-first.
fn best_start(inst: &Instance, optimised: Vec<usize>) -> Vec<usize> {
    let mut candidates = vec![optimised.clone(), inst.input_route(), deadline_order(inst)];
    if inst.terminal.is_none() {
        let mut back = optimised;
        back[1..].reverse();
        candidates.push(back);
    }
    candidates
        .into_iter()
        .map(|r| (windows::key(inst, &r), r))
        .reduce(|best, c| if c.0.better_than(&best.0) { c } else { best })
        .map(|(_, r): (Key, Vec<usize>)| r)
        .expect("at least one candidate")
}

/// Free nodes sorted by window end (no window last), stable.
fn deadline_order(inst: &Instance) -> Vec<usize> {
    let mut free = inst.free();
    let close = |v: usize| inst.timing.window[v].map_or(f64::INFINITY, |w| w.1);
    free.sort_by(|&a, &b| close(a).total_cmp(&close(b)));
    let mut route = vec![0];
    route.extend(free);
    route.extend(inst.terminal);
    route
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::matrix::{Matrices, SquareMatrix};
    use crate::optimize::model::{Location, Preferences, Problem, Stop};
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    /// An instance over `stops` stops whose matrix (start, stops, end) is random and asymmetric.
    fn asymmetric(stops: usize, end: bool, round_trip: bool, seed: u64) -> Instance {
        let mut rng = SmallRng::seed_from_u64(seed);
        let here = Location {
            latitude: 0.0,
            longitude: 0.0,
        };
        let problem = Problem {
            stops: (0..stops)
                .map(|i| Stop {
                    id: i.to_string(),
                    latitude: 0.0,
                    longitude: 0.0,
                    address: None,
                    service_minutes: None,
                    time_window: None,
                })
                .collect(),
            start: Some(here),
            end: end.then_some(here),
            round_trip,
            departure_time: None,
            preferences: Preferences::default(),
        };
        let n = stops + 1 + usize::from(end);
        let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
        let m = SquareMatrix::from_fn(n, |i, j| {
            let d = (pts[i].0 - pts[j].0).hypot(pts[i].1 - pts[j].1) * 1000.0;
            if i == j {
                0.0
            } else {
                d + rng.random::<f64>() * 400.0
            }
        });
        let matrices = Matrices {
            distance_meters: m.clone(),
            duration_seconds: m,
            ..Default::default()
        };
        Instance::new(&problem, &matrices, "2026-01-01T00:00:00Z".parse().unwrap())
    }

    #[test]
    fn the_local_search_reaches_the_exact_optimum_on_small_asymmetric_instances() {
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        let mut optimal = 0;
        let cases = 24;
        for case in 0..cases {
            let (end, round_trip) = [(false, true), (true, false), (false, false)][case % 3];
            let inst = asymmetric(11, end, round_trip, case as u64);
            let exact = exact::held_karp(&inst.cost, 0, &inst.free(), inst.target());
            let best = inst.route_cost(&exact.route);
            let found = heuristic(&inst, &Params::default(), far, false);
            let cost = inst.route_cost(&found.route);
            assert_eq!(found.route[0], 0);
            if let Some(t) = inst.terminal {
                assert_eq!(*found.route.last().unwrap(), t);
            }
            let mut sorted = found.route.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..inst.len()).collect::<Vec<_>>());
            assert!(cost >= best - 1e-6, "case {case}: below the optimum?");
            if cost <= best + 1e-6 {
                optimal += 1;
            }
        }
        assert!(
            optimal >= cases * 9 / 10,
            "optimal in only {optimal} of {cases} cases"
        );
    }

    #[test]
    fn budgets_grow_with_size_and_effort() {
        assert!(kicks_for(1000, 1.0) > 10 * kicks_for(100, 1.0));
        assert_eq!(kicks_for(500, 0.0), 0);
        assert!(kicks_for(500, 2.0).abs_diff(2 * kicks_for(500, 1.0)) <= 1);
    }
}
