//! Iterated local search: kick the tour with a double bridge, re-optimise around the kick,
//! keep the result if it stays close to the best tour so far, otherwise undo.
//!
//! The kick swaps two adjacent segments of 1 to 100 stops after a random node (a double bridge,
//! which 2-opt and Or-opt cannot undo in one move and which never reverses anything, so it is
//! priced exactly on asymmetric costs). Only the six nodes it touches are queued for the local
//! search, so an iteration costs about the same at 50 or 2 000 stops; the tour keeps a journal
//! of reversals and a rejected kick is rolled back by replaying it backwards.
//!
//! Acceptance is record-to-record: a result no worse than the current tour is always kept, a
//! worse one while it is within [`BAND`] average edges of the best tour found, which lets the
//! search drift along plateaus that strict descent never leaves; the best tour is copied aside
//! whenever it improves and returned at the end.
//!
//! The budget is a number of kicks fixed in advance from the problem size (deterministic). The
//! wall-clock deadline is only a safety cap, checked every few dozen kicks; when it fires the
//! search stops with the best tour so far and says so.

use std::time::Instant;

use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::graph::Graph;
use super::local_search::{EPS, LocalSearch};
use super::tour::Tour;

/// How long to search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Number of kicks.
    pub kicks: u64,
    /// Hard stop, whatever is left of `kicks`.
    pub deadline: Option<Instant>,
    /// Seed of the kick positions.
    pub seed: u64,
}

/// What the search did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    /// Cost of the final tour.
    pub cost: f64,
    /// Kicks made.
    pub kicks: u64,
    /// True when the deadline ended the search early.
    pub timed_out: bool,
}

/// How often (in kicks) to look at the clock.
const CLOCK_EVERY: u64 = 32;

/// Longest segment a kick moves. Long enough to rewire how delivery zones are chained (10 or 30
/// left 0.3-0.6% gaps at 500-1,000 stops that 100 closes), short enough to stay local.
const MAX_SEGMENT: usize = 100;

/// Record-to-record acceptance: a kick whose result is worse than the current tour is still
/// kept while it stays within `BAND` average edges of the best tour found, which lets the search
/// drift off plateaus that strict descent never leaves. The best tour is kept aside.
const BAND: f64 = 0.1;

/// Improves `tour` in place: a full local search, then `budget.kicks` kicks.
pub(crate) fn improve(g: &Graph, tour: &mut Tour, budget: Budget) -> Outcome {
    let mut ls = LocalSearch::new(g);
    for v in tour.order().collect::<Vec<_>>() {
        ls.activate(v);
    }
    ls.run(tour);
    let mut cost = g.cycle_cost(tour.order());
    let n = tour.len();
    let mut outcome = Outcome {
        cost,
        kicks: 0,
        timed_out: false,
    };
    if n < 8 {
        return outcome;
    }
    let mut rng = SmallRng::seed_from_u64(budget.seed);
    let max_segment = (n / 2).clamp(1, MAX_SEGMENT);
    let mut best_cost = cost;
    let mut best: Vec<usize> = tour.order().collect();
    let mut band = BAND * cost / n as f64;
    tour.record();
    while outcome.kicks < budget.kicks {
        if outcome.kicks.is_multiple_of(CLOCK_EVERY)
            && budget.deadline.is_some_and(|d| Instant::now() >= d)
        {
            outcome.timed_out = true;
            break;
        }
        outcome.kicks += 1;
        let Some(kick) = double_bridge(g, tour, &mut rng, max_segment) else {
            continue;
        };
        for v in kick.touched {
            ls.activate(v);
        }
        ls.tour_changed();
        let candidate = cost + kick.delta + ls.run(tour);
        if candidate <= cost + EPS || candidate < best_cost + band {
            cost = candidate;
            tour.commit();
            if cost < best_cost - EPS {
                best_cost = cost;
                band = BAND * cost / n as f64;
                best.clear();
                best.extend(tour.order());
            }
        } else {
            tour.undo();
            ls.tour_changed();
        }
    }
    if cost > best_cost + EPS {
        *tour = Tour::new(&best);
    }
    // Re-sum to shed the rounding drift of many small deltas.
    outcome.cost = g.cycle_cost(tour.order());
    outcome
}

/// A kick that was applied to the tour.
#[derive(Debug)]
struct Kick {
    delta: f64,
    touched: [usize; 6],
}

/// Swaps two adjacent segments of random length right after a random node.
fn double_bridge(
    g: &Graph,
    tour: &mut Tour,
    rng: &mut SmallRng,
    max_segment: usize,
) -> Option<Kick> {
    let n = tour.len();
    let la = rng.random_range(1..=max_segment);
    let lb = rng.random_range(1..=max_segment);
    if la + lb + 2 > n {
        return None;
    }
    let x = tour.at(rng.random_range(0..n));
    let p = tour.pos(x);
    let (a1, a_last) = (tour.at(p + 1), tour.at(p + la));
    let (b1, b_last) = (tour.at(p + la + 1), tour.at(p + la + lb));
    let y = tour.at(p + la + lb + 1);
    if g.is_fixed(x, a1) || g.is_fixed(a_last, b1) || g.is_fixed(b_last, y) {
        return None;
    }
    let delta = g.c(x, b1) + g.c(b_last, a1) + g.c(a_last, y)
        - g.c(x, a1)
        - g.c(a_last, b1)
        - g.c(b_last, y);
    tour.swap_adjacent(a1, a_last, b_last);
    Some(Kick {
        delta,
        touched: [x, a1, a_last, b1, b_last, y],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::matrix::SquareMatrix;

    fn random_points(n: usize, seed: u64) -> SquareMatrix {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
        SquareMatrix::from_fn(n, |i, j| (pts[i].0 - pts[j].0).hypot(pts[i].1 - pts[j].1))
    }

    fn run(m: &SquareMatrix, kicks: u64, seed: u64) -> (Vec<usize>, Outcome) {
        let g = Graph::new(m, None, 8);
        let order: Vec<usize> = (0..m.len()).collect();
        let mut tour = Tour::new(&order);
        let budget = Budget {
            kicks,
            deadline: None,
            seed,
        };
        let out = improve(&g, &mut tour, budget);
        (tour.order().collect(), out)
    }

    #[test]
    fn kicks_never_make_the_tour_worse_than_plain_local_search() {
        let m = random_points(120, 3);
        let (_, plain) = run(&m, 0, 1);
        let (_, kicked) = run(&m, 3_000, 1);
        assert!(kicked.cost <= plain.cost + 1e-9);
        assert!(
            kicked.cost < plain.cost * 0.99,
            "{} vs {}",
            kicked.cost,
            plain.cost
        );
    }

    #[test]
    fn same_seed_gives_the_same_tour_and_another_seed_may_not() {
        let m = random_points(80, 4);
        let (a, oa) = run(&m, 500, 7);
        let (b, ob) = run(&m, 500, 7);
        assert_eq!(a, b);
        assert_eq!(oa, ob);
    }

    #[test]
    fn reported_cost_is_the_cost_of_the_returned_tour() {
        let m = random_points(60, 5);
        let (order, out) = run(&m, 1_000, 2);
        let g = Graph::new(&m, None, 8);
        assert!((g.cycle_cost(order.iter().copied()) - out.cost).abs() < 1e-9);
        assert_eq!(out.kicks, 1_000);
    }

    #[test]
    fn an_expired_deadline_stops_before_the_first_kick() {
        let m = random_points(60, 6);
        let g = Graph::new(&m, None, 8);
        let mut tour = Tour::new(&(0..60).collect::<Vec<_>>());
        let budget = Budget {
            kicks: 1_000_000,
            deadline: Some(Instant::now()),
            seed: 1,
        };
        let out = improve(&g, &mut tour, budget);
        assert!(out.timed_out);
        assert_eq!(out.kicks, 0);
    }
}
