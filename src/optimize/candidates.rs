//! Candidate partners per node: which edges the local search even looks at.
//!
//! Nearest neighbours are the classic choice, but on clustered instances every one of a node's
//! ten nearest lies in its own cluster, so no move can ever rewire how clusters are joined.
//! *Alpha-nearness* (Helsgaun, LKH) fixes that: `alpha(i, j)` is how much the minimum spanning
//! tree would grow if it had to contain edge `i–j`, i.e. `cost(i, j)` minus the heaviest edge on
//! the tree path from `i` to `j`. Tree edges have alpha 0, so the edges joining clusters are
//! always candidates. Computing it is `O(n²)` time and `O(n)` extra space: Prim's algorithm on
//! the dense matrix, then one tree walk per node. The `k` best by alpha are kept and sorted by
//! cost, so the gain-based early exits of the local search stay valid.

use super::graph::is_fixed_pair;
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
    #[cfg(test)]
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

    /// The `k` alpha-nearest partners of every node (see the module doc), cheapest first.
    /// `free_end`, a node that costs nothing to reach from anywhere, is left out of the tree and
    /// put at the head of every list instead: any stop may be the last.
    pub(crate) fn alpha_nearest(
        cost: &SquareMatrix,
        k: usize,
        fixed: Option<(usize, usize)>,
        free_end: Option<usize>,
    ) -> Self {
        let n = cost.len();
        let k = k.min(n.saturating_sub(1));
        let w = |i: usize, j: usize| 0.5 * (cost.get(i, j) + cost.get(j, i));
        let tree = spanning_tree(n, free_end, w);
        let mut list = Vec::with_capacity(n * k);
        let mut beta = vec![0.0f64; n];
        let mut stack: Vec<(usize, usize, f64)> = Vec::with_capacity(n);
        let mut row: Vec<(f64, f64, u32)> = Vec::with_capacity(n);
        for i in 0..n {
            row.clear();
            if Some(i) == free_end {
                row.extend(
                    (0..n)
                        .filter(|&j| j != i && !is_fixed_pair(fixed, i, j))
                        .map(|j| (0.0, w(i, j), j as u32)),
                );
            } else {
                // beta[j]: heaviest tree edge between i and j.
                stack.push((i, usize::MAX, f64::NEG_INFINITY));
                while let Some((v, from, b)) = stack.pop() {
                    beta[v] = b;
                    for &(u, wt) in &tree[v] {
                        if u != from {
                            stack.push((u, v, b.max(wt)));
                        }
                    }
                }
                row.extend(
                    (0..n)
                        .filter(|&j| j != i && Some(j) != free_end && !is_fixed_pair(fixed, i, j))
                        .map(|j| (w(i, j) - beta[j], w(i, j), j as u32)),
                );
            }
            let by_alpha = |a: &(f64, f64, u32), b: &(f64, f64, u32)| {
                a.0.total_cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then(a.2.cmp(&b.2))
            };
            let head = free_end.filter(|&f| f != i && !is_fixed_pair(fixed, i, f));
            let take = (k - usize::from(head.is_some())).min(row.len());
            if take < row.len() {
                row.select_nth_unstable_by(take, by_alpha);
            }
            let chosen = &mut row[..take];
            chosen.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
            let start = list.len();
            list.extend(head.map(|f| f as u32));
            list.extend(chosen.iter().map(|&(_, _, j)| j));
            let last = list.last().copied().unwrap_or(i as u32);
            list.resize(start + k, last);
        }
        Self { k, list }
    }

    /// Partners of `v`, cheapest first.
    #[inline]
    pub(crate) fn of(&self, v: usize) -> &[u32] {
        &self.list[v * self.k..(v + 1) * self.k]
    }
}

/// Minimum spanning tree (Prim, `O(n²)`) over all nodes but `skip`, as adjacency lists.
fn spanning_tree(
    n: usize,
    skip: Option<usize>,
    w: impl Fn(usize, usize) -> f64,
) -> Vec<Vec<(usize, f64)>> {
    let mut tree = vec![Vec::new(); n];
    let Some(root) = (0..n).find(|&v| Some(v) != skip) else {
        return tree;
    };
    let mut in_tree = vec![false; n];
    let mut best = vec![(f64::INFINITY, usize::MAX); n];
    in_tree[root] = true;
    if let Some(s) = skip {
        in_tree[s] = true;
    }
    let mut last = root;
    for _ in 1..n - usize::from(skip.is_some()) {
        let mut next = usize::MAX;
        for v in 0..n {
            if in_tree[v] {
                continue;
            }
            let d = w(last, v);
            if d < best[v].0 {
                best[v] = (d, last);
            }
            if next == usize::MAX || best[v].0 < best[next].0 {
                next = v;
            }
        }
        let (d, parent) = best[next];
        tree[next].push((parent, d));
        tree[parent].push((next, d));
        in_tree[next] = true;
        last = next;
    }
    tree
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
    fn alpha_candidates_include_the_edges_between_clusters() {
        // Two tight clusters on a line, far apart: 0..5 near 0, 5..10 near 100.
        let x: Vec<f64> = (0..10)
            .map(|i| if i < 5 { i as f64 } else { 100.0 + i as f64 })
            .collect();
        let m = SquareMatrix::from_fn(10, |i, j| (x[i] - x[j]).abs());
        let nearest = Neighbours::nearest(&m, 3, None);
        assert!(nearest.of(4).iter().all(|&j| j < 5));
        let alpha = Neighbours::alpha_nearest(&m, 3, None, None);
        assert!(alpha.of(4).contains(&5), "{:?}", alpha.of(4));
        assert!(alpha.of(5).contains(&4), "{:?}", alpha.of(5));
    }

    #[test]
    fn a_free_end_heads_every_list_and_stays_out_of_the_tree() {
        let x = [0.0, 1.0, 3.0, 6.0, 10.0f64];
        let m = SquareMatrix::from_fn(6, |i, j| {
            if i == 5 || j == 5 {
                0.0
            } else {
                (x[i] - x[j]).abs()
            }
        });
        let nb = Neighbours::alpha_nearest(&m, 3, Some((5, 0)), Some(5));
        assert_eq!(nb.of(2)[0], 5);
        assert!(!nb.of(0).contains(&5));
        assert_eq!(&nb.of(2)[1..], &[1, 3]);
    }
}
