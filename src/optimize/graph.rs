//! What the heuristics search over: the cost matrix, candidate neighbour lists, and the one edge
//! that must never be broken.
//!
//! Every variant of the problem is a cycle here. A round trip is a plain cycle through the
//! origin. An open route gets an extra terminal node (the fixed `end`, or a free end that costs
//! nothing to reach) and the edge terminal → origin is *fixed*: reading the cycle from the origin
//! then gives origin … terminal, whichever stops the search put in between.

use super::candidates::Neighbours;
use super::matrix::SquareMatrix;

pub(crate) fn is_fixed_pair(fixed: Option<(usize, usize)>, a: usize, b: usize) -> bool {
    fixed.is_some_and(|(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// The search space shared by construction, local search and perturbation.
#[derive(Debug)]
pub(crate) struct Graph {
    /// Cost of going from node `i` to node `j`, in single precision, row-major: half the bytes, so twice as much of the matrix
    /// stays in cache, and the local search is bound by matrix reads. Rounding (1e-7 relative)
    /// only affects which of two near-equal moves is taken; reported costs are recomputed in double precision.
    compact: Vec<f32>,
    n: usize,
    /// Candidate partners per node.
    pub neighbours: Neighbours,
    /// `(terminal, origin)`: the edge that closes an open route; never removed.
    pub fixed: Option<(usize, usize)>,
    /// Lets 2-opt reverse whichever side is shorter; an asymmetric matrix pays for reversals.
    pub symmetric: bool,
}

impl Graph {
    /// Builds the search space with `k` nearest candidates per node.
    #[cfg(test)]
    pub(crate) fn new(cost: &SquareMatrix, fixed: Option<(usize, usize)>, k: usize) -> Self {
        Self::with_neighbours(cost, fixed, Neighbours::nearest(cost, k, fixed))
    }

    /// Builds the search space with the given candidates.
    pub(crate) fn with_neighbours(
        cost: &SquareMatrix,
        fixed: Option<(usize, usize)>,
        neighbours: Neighbours,
    ) -> Self {
        let n = cost.len();
        let compact = (0..n * n).map(|k| cost.get(k / n, k % n) as f32).collect();
        Self {
            compact,
            n,
            neighbours,
            fixed,
            symmetric: cost.is_symmetric(),
        }
    }

    /// Number of nodes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Cost from `i` to `j`.
    #[inline]
    pub(crate) fn c(&self, i: usize, j: usize) -> f64 {
        f64::from(self.compact[i * self.n + j])
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
    fn cycle_cost_includes_the_closing_edge() {
        let m = SquareMatrix::from_fn(3, |i, j| (10 * i + j) as f64);
        let g = Graph::new(&m, None, 2);
        assert_eq!(g.cycle_cost([0, 1, 2]), 1.0 + 12.0 + 20.0);
        assert!(!g.symmetric);
    }
}
