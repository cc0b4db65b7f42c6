//! Which algorithm runs, with what budget, and the guard that the result never loses to the
//! order the caller gave.

use std::time::Instant;

use super::Params;
use super::construct;
use super::exact;
use super::graph::Graph;
use super::ils::{self, Budget};
use super::instance::Instance;
use super::tour::Tour;
use super::windows::{self, Key};

/// Free nodes up to which the exact search runs (12 stops with a start, 13 without).
pub(crate) const EXACT_MAX_FREE: usize = 12;

/// Candidate partners per node for the local search.
const NEIGHBOURS: usize = 10;

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
/// larger tours need more kicks per node to reach the same gap.
pub(crate) fn kicks_for(n: usize, effort: f64) -> u64 {
    let n = n as f64;
    (effort * n * (60.0 + 20.0 * (n / 100.0).sqrt())).round() as u64
}

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
            let e = exact::held_karp_windows(&inst.cost, &inst.timing, 0, &free, inst.target());
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
    let g = Graph::new(&inst.cost, inst.fixed(), NEIGHBOURS);
    let start = if g.symmetric {
        construct::greedy(&g, 0)
    } else {
        construct::nearest_neighbour(&g, 0, inst.terminal)
    };
    let mut tour = Tour::new(&start);
    let budget = Budget {
        kicks: kicks_for(n, params.search_effort),
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
