//! 2-opt and Or-opt local search driven by neighbour lists and don't-look bits.
//!
//! Only nodes in the work queue are examined (the don't-look bits are "not queued"): at the start
//! every node, later only the endpoints of edges that changed. From a node `a` the search tries
//!
//! * **2-opt**: for each candidate `c` of `a`, remove `a`'s edge to its successor (or
//!   predecessor) and the matching edge at `c`, reconnect through `a`–`c`. The classic pruning
//!   (stop scanning once `cost(a, c)` exceeds the edge being removed) applies to symmetric costs.
//! * **Or-opt**: move a segment of 1–3 nodes that starts or ends at `a` next to one of its
//!   candidates, forwards or reversed: the Or-3opt "segment insertion" move.
//!
//! The first improving move found is applied. On a symmetric matrix a 2-opt move reverses
//! whichever side of the cycle is shorter. On an asymmetric one the direction of travel matters:
//! the cost of a reversed path is read from a prefix sum of "reverse minus forward" edge costs
//! (rebuilt after each change, `O(n)`), both ways of reconnecting are priced, and paths holding
//! the fixed edge are never reversed, so asymmetric results are exact in cost, only slower.

use std::collections::VecDeque;

use super::graph::Graph;
use super::tour::Tour;

/// Moves must gain at least this much; keeps rounding noise from cycling forever.
pub(crate) const EPS: f64 = 1e-7;

/// Longest segment Or-opt moves.
const OR_OPT_MAX: usize = 3;

/// Work queue and scratch space, reusable across calls on the same graph.
#[derive(Debug)]
pub(crate) struct LocalSearch<'g> {
    g: &'g Graph,
    queue: VecDeque<u32>,
    queued: Vec<bool>,
    /// `diff[p]`: sum over edges at positions `< p` of `cost(back) - cost(forward)`.
    diff: Vec<f64>,
    diff_stale: bool,
    /// Moves applied so far.
    pub(crate) moves: u64,
}

impl<'g> LocalSearch<'g> {
    pub(crate) fn new(g: &'g Graph) -> Self {
        Self {
            g,
            queue: VecDeque::with_capacity(g.len()),
            queued: vec![false; g.len()],
            diff: vec![0.0; g.len() + 1],
            diff_stale: true,
            moves: 0,
        }
    }

    /// Clears the don't-look bit of `v`.
    #[inline]
    pub(crate) fn activate(&mut self, v: usize) {
        if !self.queued[v] {
            self.queued[v] = true;
            self.queue.push_back(v as u32);
        }
    }

    /// Tells the search that the tour changed behind its back (e.g. after an undo).
    pub(crate) fn tour_changed(&mut self) {
        self.diff_stale = true;
    }

    /// Runs until no queued node yields an improving move; returns the change in cost (≤ 0).
    pub(crate) fn run(&mut self, tour: &mut Tour) -> f64 {
        let mut total = 0.0;
        while let Some(v) = self.queue.pop_front() {
            let v = v as usize;
            self.queued[v] = false;
            if let Some(delta) = self.improve(tour, v) {
                total += delta;
                self.moves += 1;
                self.activate(v);
            }
        }
        total
    }

    fn improve(&mut self, tour: &mut Tour, a: usize) -> Option<f64> {
        self.two_opt(tour, a, true)
            .or_else(|| self.two_opt(tour, a, false))
            .or_else(|| self.or_opt(tour, a))
    }

    /// 2-opt from `a` using its successor edge (`forward`) or predecessor edge.
    fn two_opt(&mut self, tour: &mut Tour, a: usize, forward: bool) -> Option<f64> {
        let g = self.g;
        let b = if forward { tour.succ(a) } else { tour.pred(a) };
        let removed = if forward { g.c(a, b) } else { g.c(b, a) };
        for &c in g.neighbours.of(a) {
            let c = c as usize;
            let added = if forward { g.c(a, c) } else { g.c(c, a) };
            if g.symmetric && removed - added <= EPS {
                break;
            }
            let (x1, x2, y1, y2) = if forward {
                (a, b, c, tour.succ(c))
            } else {
                (b, a, tour.pred(c), c)
            };
            if c == b || x1 == y2 || y1 == x2 || x1 == y1 {
                continue;
            }
            if let Some((delta, reverse_inner)) = self.price_two_opt(tour, x1, x2, y1, y2)
                && delta < -EPS
            {
                if reverse_inner {
                    tour.reverse_path(x2, y1);
                } else {
                    tour.reverse_path(y2, x1);
                }
                self.after_move(&[x1, x2, y1, y2]);
                return Some(delta);
            }
        }
        None
    }

    /// Prices removing `x1→x2`, `y1→y2` (successor edges) and adding `x1–y1`, `x2–y2`.
    /// Returns the delta and whether to reverse the inner path `x2..y1` (else `y2..x1`).
    fn price_two_opt(
        &mut self,
        tour: &Tour,
        x1: usize,
        x2: usize,
        y1: usize,
        y2: usize,
    ) -> Option<(f64, bool)> {
        let g = self.g;
        if g.is_fixed(x1, x2) || g.is_fixed(y1, y2) {
            return None;
        }
        let removed = g.c(x1, x2) + g.c(y1, y2);
        if g.symmetric {
            let delta = g.c(x1, y1) + g.c(x2, y2) - removed;
            // Either side may be reversed; only an applied move needs to know the shorter one.
            let inner = delta >= -EPS || tour.span(x2, y1) <= tour.span(y2, x1);
            return Some((delta, inner));
        }
        // Reversing x2..y1 gives x1→y1 … x2→y2; reversing y2..x1 gives y1→x1 … y2→x2. The two
        // paths split the cycle and neither removed edge is the fixed one, so a fixed edge lies
        // in exactly one of them.
        let inner_fixed = self.holds_fixed(tour, x2, y1);
        let outer_fixed = g.fixed.is_some() && !inner_fixed;
        let inner = (!inner_fixed)
            .then(|| g.c(x1, y1) + g.c(x2, y2) - removed + self.reversal_cost(tour, x2, y1));
        let outer = (!outer_fixed)
            .then(|| g.c(y1, x1) + g.c(y2, x2) - removed + self.reversal_cost(tour, y2, x1));
        match (inner, outer) {
            (Some(i), Some(o)) => Some(if i <= o { (i, true) } else { (o, false) }),
            (Some(i), None) => Some((i, true)),
            (None, Some(o)) => Some((o, false)),
            (None, None) => None,
        }
    }

    /// True when the path `from..to` (never the whole cycle here) holds both ends of the
    /// fixed edge, hence the edge itself.
    fn holds_fixed(&self, tour: &Tour, from: usize, to: usize) -> bool {
        self.g.fixed.is_some_and(|(t, o)| {
            let len = tour.span(from, to);
            tour.span(from, t) <= len && tour.span(from, o) <= len
        })
    }

    /// Cost change of driving the path `from..to` backwards (asymmetric matrices only).
    fn reversal_cost(&mut self, tour: &Tour, from: usize, to: usize) -> f64 {
        if self.diff_stale {
            let n = tour.len();
            for p in 0..n {
                let (u, v) = (tour.at(p), tour.at(p + 1));
                self.diff[p + 1] = self.diff[p] + self.g.c(v, u) - self.g.c(u, v);
            }
            self.diff_stale = false;
        }
        let (i, j) = (tour.pos(from), tour.pos(to));
        if i <= j {
            self.diff[j] - self.diff[i]
        } else {
            self.diff[tour.len()] - self.diff[i] + self.diff[j]
        }
    }

    fn after_move(&mut self, touched: &[usize]) {
        for &v in touched {
            self.activate(v);
        }
        if !self.g.symmetric {
            self.diff_stale = true;
        }
    }

    /// Or-opt: moves a segment of up to three nodes that starts or ends at `a`.
    fn or_opt(&mut self, tour: &mut Tour, a: usize) -> Option<f64> {
        let n = tour.len();
        for len in 1..=OR_OPT_MAX.min(n.saturating_sub(3)) {
            for starts_at_a in [true, false] {
                if len == 1 && !starts_at_a {
                    continue;
                }
                let (s1, s_last) = if starts_at_a {
                    (a, tour.at(tour.pos(a) + len - 1))
                } else {
                    (tour.at(tour.pos(a) + n + 1 - len), a)
                };
                if let Some(delta) = self.move_segment(tour, s1, s_last, len) {
                    return Some(delta);
                }
            }
        }
        None
    }

    /// Tries every insertion of the segment `s1..=s_last` next to a candidate of either end.
    fn move_segment(
        &mut self,
        tour: &mut Tour,
        s1: usize,
        s_last: usize,
        len: usize,
    ) -> Option<f64> {
        let g = self.g;
        let (p, nx) = (tour.pred(s1), tour.succ(s_last));
        if g.is_fixed(p, s1) || g.is_fixed(s_last, nx) || self.holds_fixed(tour, s1, s_last) {
            return None;
        }
        let gain = g.c(p, s1) + g.c(s_last, nx) - g.c(p, nx);
        if gain <= EPS {
            return None;
        }
        let flip = if g.symmetric {
            0.0
        } else {
            self.segment_flip_cost(tour, s1, len)
        };
        let in_segment = |v: usize| tour.span(s1, v) <= len;
        for (end, other) in [(s1, s_last), (s_last, s1)] {
            for &c in g.neighbours.of(end) {
                let c = c as usize;
                if g.symmetric && g.c(c, end) >= gain {
                    break;
                }
                if in_segment(c) {
                    continue;
                }
                // Either `c → end … other → succ(c)` or `pred(c) → other … end → c`.
                for after_c in [true, false] {
                    let d = if after_c { tour.succ(c) } else { tour.pred(c) };
                    if in_segment(d) || g.is_fixed(c, d) {
                        continue;
                    }
                    let (u, w) = if after_c { (c, d) } else { (d, c) };
                    let (first, last) = if after_c { (end, other) } else { (other, end) };
                    let reversed = first != s1;
                    let add = g.c(u, first) + g.c(last, w) - g.c(u, w)
                        + if reversed { flip } else { 0.0 };
                    let delta = add - gain;
                    if delta < -EPS {
                        tour.move_segment(s1, s_last, u, reversed);
                        self.after_move(&[p, nx, s1, s_last, u, w]);
                        return Some(delta);
                    }
                }
            }
        }
        None
    }

    /// Cost change of driving the `len`-node segment from `s1` backwards.
    fn segment_flip_cost(&self, tour: &Tour, s1: usize, len: usize) -> f64 {
        let mut total = 0.0;
        let mut u = s1;
        for _ in 1..len {
            let v = tour.succ(u);
            total += self.g.c(v, u) - self.g.c(u, v);
            u = v;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::matrix::SquareMatrix;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    fn random_matrix(n: usize, symmetric: bool, seed: u64) -> SquareMatrix {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
        let skew: Vec<f64> = (0..n * n).map(|_| rng.random::<f64>() * 0.3).collect();
        SquareMatrix::from_fn(n, |i, j| {
            let d = (pts[i].0 - pts[j].0).hypot(pts[i].1 - pts[j].1);
            if symmetric || i == j {
                d
            } else {
                d + skew[i * n + j]
            }
        })
    }

    fn search(g: &Graph, order: &[usize]) -> (Tour, f64) {
        let mut tour = Tour::new(order);
        let mut ls = LocalSearch::new(g);
        for &v in order {
            ls.activate(v);
        }
        let delta = ls.run(&mut tour);
        (tour, delta)
    }

    #[test]
    fn reported_gain_matches_the_recomputed_cost_on_symmetric_and_asymmetric_matrices() {
        for (seed, symmetric) in [(1, true), (2, false), (3, true), (4, false)] {
            let m = random_matrix(60, symmetric, seed);
            let g = Graph::new(&m, None, 8);
            let order: Vec<usize> = (0..60).collect();
            let before = g.cycle_cost(order.iter().copied());
            let (tour, delta) = search(&g, &order);
            let after = g.cycle_cost(tour.order());
            assert!((before + delta - after).abs() < 1e-6, "seed {seed}");
            assert!(after < before * 0.7, "seed {seed}: {before} -> {after}");
        }
    }

    #[test]
    fn the_fixed_edge_survives_the_search() {
        for symmetric in [true, false] {
            let m = random_matrix(40, symmetric, 9);
            let g = Graph::new(&m, Some((39, 0)), 8);
            let order: Vec<usize> = (0..40).collect();
            let (tour, _) = search(&g, &order);
            if symmetric {
                assert!(tour.succ(39) == 0 || tour.pred(39) == 0);
            } else {
                assert_eq!(tour.succ(39), 0);
            }
        }
    }

    #[test]
    fn local_optimum_has_no_improving_two_opt_move_among_all_pairs() {
        let m = random_matrix(30, true, 5);
        let g = Graph::new(&m, None, 29);
        let order: Vec<usize> = (0..30).collect();
        let (tour, _) = search(&g, &order);
        for a in 0..30 {
            for c in 0..30 {
                let (b, d) = (tour.succ(a), tour.succ(c));
                if a == c || b == c || d == a {
                    continue;
                }
                let delta = g.c(a, c) + g.c(b, d) - g.c(a, b) - g.c(c, d);
                assert!(delta > -1e-6, "improving move {a} {c} left: {delta}");
            }
        }
    }
}
