//! What the heuristics search over: the cost matrix, candidate neighbour lists, and the one edge
//! that must never be broken.
//!
//! Every variant of the problem is a cycle here. A round trip is a plain cycle through the
//! origin. An open route gets an extra terminal node (the fixed `end`, or a free end that costs
//! nothing to reach) and the edge terminal → origin is *fixed*: reading the cycle from the origin
//! then gives origin … terminal, whichever stops the search put in between.

use super::matrix::SquareMatrix;

/// Candidate lists: for each node, its `k` cheapest partners, cheapest first.
#[derive(Debug, Clone)]
pub(crate) struct Neighbours {
    k: usize,
    list: Vec<u32>,
}

impl Neighbours {
    /// The `k` nearest partners of every node by `cost(i, j) + cost(j, i)` (so one list serves
    /// both directions of an asymmetric matrix), leaving out the node itself and its partner on
    /// the fixed edge, with which it is always joined anyway.
    pub(crate) fn nearest(cost: &SquareMatrix, k: usize, fixed: Option<(usize, usize)>) -> Self {
        let n = cost.len();
        let k = k.min(n.saturating_sub(1));
        let mut list = Vec::with_capacity(n * k);
        let mut row: Vec<(f64, u32)> = Vec::with_capacity(n);
        for i in 0..n {
            row.clear();
            row.extend(
                (0..n)
                    .filter(|&j| j != i && !is_fixed_pair(fixed, i, j))
                    .map(|j| (cost.get(i, j) + cost.get(j, i), j as u32)),
            );
            let by_cost = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            let take = k.min(row.len());
            if take < row.len() {
                row.select_nth_unstable_by(take, by_cost);
            }
            row[..take].sort_unstable_by(by_cost);
            list.extend(row[..take].iter().map(|&(_, j)| j));
            // Pad short rows (tiny instances) by repeating the last entry; callers tolerate it.
            for _ in take..k {
                list.push(row.last().map_or(i as u32, |&(_, j)| j));
            }
        }
        Self { k, list }
    }

    /// Partners of `v`, cheapest first.
    #[inline]
    pub(crate) fn of(&self, v: usize) -> &[u32] {
        &self.list[v * self.k..(v + 1) * self.k]
    }
}

fn is_fixed_pair(fixed: Option<(usize, usize)>, a: usize, b: usize) -> bool {
    fixed.is_some_and(|(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// The search space shared by construction, local search and perturbation.
#[derive(Debug)]
pub(crate) struct Graph<'a> {
    /// Cost of going from node `i` to node `j`.
    pub cost: &'a SquareMatrix,
    /// Candidate partners per node.
    pub neighbours: Neighbours,
    /// `(terminal, origin)`: the edge that closes an open route; never removed.
    pub fixed: Option<(usize, usize)>,
    /// Lets 2-opt reverse whichever side is shorter; an asymmetric matrix pays for reversals.
    pub symmetric: bool,
}

impl<'a> Graph<'a> {
    /// Builds the search space with `k` candidates per node.
    pub(crate) fn new(cost: &'a SquareMatrix, fixed: Option<(usize, usize)>, k: usize) -> Self {
        Self {
            cost,
            neighbours: Neighbours::nearest(cost, k, fixed),
            fixed,
            symmetric: cost.is_symmetric(),
        }
    }

    /// Number of nodes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.cost.len()
    }

    /// Cost from `i` to `j`.
    #[inline]
    pub(crate) fn c(&self, i: usize, j: usize) -> f64 {
        self.cost.get(i, j)
    }

    /// True when `a`–`b` (either direction) is the fixed edge.
    #[inline]
    pub(crate) fn is_fixed(&self, a: usize, b: usize) -> bool {
        is_fixed_pair(self.fixed, a, b)
    }

    /// Cost of the cycle `order` (closing edge included).
    pub(crate) fn cycle_cost(&self, order: impl IntoIterator<Item = usize>) -> f64 {
        let mut it = order.into_iter();
        let Some(first) = it.next() else { return 0.0 };
        let (mut total, mut prev) = (0.0, first);
        for v in it {
            total += self.c(prev, v);
            prev = v;
        }
        total + self.c(prev, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_lists_are_sorted_and_skip_self_and_the_fixed_partner() {
        // Points on a line at 0, 1, 3, 6, 10.
        let x = [0.0, 1.0, 3.0, 6.0, 10.0f64];
        let m = SquareMatrix::from_fn(5, |i, j| (x[i] - x[j]).abs());
        let nb = Neighbours::nearest(&m, 2, Some((4, 0)));
        assert_eq!(nb.of(2), &[1, 0]);
        assert_eq!(nb.of(0), &[1, 2]);
        assert_eq!(nb.of(4), &[3, 2]);
        assert!(!nb.of(0).contains(&4));
    }

    #[test]
    fn cycle_cost_includes_the_closing_edge() {
        let m = SquareMatrix::from_fn(3, |i, j| (10 * i + j) as f64);
        let g = Graph::new(&m, None, 2);
        assert_eq!(g.cycle_cost([0, 1, 2]), 1.0 + 12.0 + 20.0);
        assert!(!g.symmetric);
    }
}
