//! Exact search for small problems: Held-Karp dynamic programming over subsets.
//!
//! `best[S][j]` is the cheapest path that leaves the origin, visits exactly the set `S` of free
//! nodes and ends at `j`; the route closes at the target (the terminal, or the origin for a round
//! trip). `O(2^k · k²)` time: 12 free nodes take well under a millisecond in release builds.
//!
//! With time windows the objective is lexicographic: total lateness first, then cost. One value
//! per state no longer suffices, so each state keeps a Pareto set of labels (lateness so far,
//! departure time, cost): a label is dropped only when another is no worse in all three, which is
//! safe because a later departure never reduces future lateness (see [`schedule`](super::schedule)).
//! Labels that are already later than a known complete route (the caller's incumbent), or as
//! late and dearer, are dropped too, which keeps the sets small without losing exactness.
//! Sets are capped at [`MAX_LABELS`], keeping the labels with the least lateness, then the
//! earliest departure, so a route meeting every window is always found when one exists; if the
//! cap ever bites, the result is no longer reported as proven optimal.

use super::matrix::SquareMatrix;
use super::schedule::Timing;

/// Labels kept per DP state with time windows.
const MAX_LABELS: usize = 32;

/// Lateness within this many seconds counts as equal.
const LATE_EPS: f64 = 1e-6;

/// An exact (or, when label sets were capped, best-effort) route.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exact {
    /// Internal nodes: origin, free nodes in order, then the terminal when it differs.
    pub route: Vec<usize>,
    /// DP states filled.
    pub states: u64,
    /// False when label pruning may have lost the optimum.
    pub proven: bool,
}

fn route_of(origin: usize, inner: impl IntoIterator<Item = usize>, target: usize) -> Vec<usize> {
    let mut route = vec![origin];
    route.extend(inner);
    if target != origin {
        route.push(target);
    }
    route
}

/// The indices of the set bits of `set`, lowest first.
fn bits(mut set: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let bit = set.trailing_zeros() as usize;
            set &= set - 1;
            bit
        })
    })
}

/// Cheapest route from `origin` through all of `free` to `target`, by cost alone.
pub(crate) fn held_karp(
    cost: &SquareMatrix,
    origin: usize,
    free: &[usize],
    target: usize,
) -> Exact {
    let k = free.len();
    assert!(k <= 20, "Held-Karp over {k} nodes would not fit in memory");
    if k == 0 {
        return Exact {
            route: route_of(origin, [], target),
            states: 0,
            proven: true,
        };
    }
    let full = (1usize << k) - 1;
    // The free nodes' own k × k matrix, row-major: the inner loop below runs 2^k · k² times, and
    // a dense local copy keeps it free of the big matrix's index arithmetic.
    let local: Vec<f64> = free
        .iter()
        .flat_map(|&a| free.iter().map(move |&b| cost.get(a, b)))
        .collect();
    let mut best = vec![f64::INFINITY; (full + 1) * k];
    let mut parent = vec![u8::MAX; (full + 1) * k];
    for (j, &v) in free.iter().enumerate() {
        best[(1 << j) * k + j] = cost.get(origin, v);
    }
    for set in 1..=full {
        for j in bits(set) {
            let here = best[set * k + j];
            if !here.is_finite() {
                continue;
            }
            let row = &local[j * k..(j + 1) * k];
            for v in bits(full & !set) {
                let at = (set | (1 << v)) * k + v;
                let candidate = here + row[v];
                if candidate < best[at] {
                    best[at] = candidate;
                    parent[at] = j as u8;
                }
            }
        }
    }
    let last = (0..k)
        .min_by(|&a, &b| {
            let ca = best[full * k + a] + cost.get(free[a], target);
            let cb = best[full * k + b] + cost.get(free[b], target);
            ca.total_cmp(&cb)
        })
        .expect("k > 0");
    let mut inner = Vec::with_capacity(k);
    let (mut set, mut j) = (full, last);
    loop {
        inner.push(free[j]);
        let p = parent[set * k + j];
        set &= !(1 << j);
        if p == u8::MAX {
            break;
        }
        j = p as usize;
    }
    inner.reverse();
    Exact {
        route: route_of(origin, inner, target),
        states: ((full + 1) * k) as u64,
        proven: true,
    }
}

/// One partial route in the time-window DP.
#[derive(Debug, Clone, Copy)]
struct Label {
    late: f64,
    time: f64,
    cost: f64,
    /// Index of the previous free node, `u8::MAX` at the origin.
    prev: u8,
    /// Index of the previous label in its state.
    prev_label: u32,
}

impl Label {
    fn dominates(&self, other: &Label) -> bool {
        self.late <= other.late + LATE_EPS && self.time <= other.time && self.cost <= other.cost
    }
}

/// Least lateness, then least cost, from `origin` through all of `free` to `target`.
pub(crate) fn held_karp_windows(
    cost: &SquareMatrix,
    timing: &Timing,
    origin: usize,
    free: &[usize],
    target: usize,
    incumbent: Option<(f64, f64)>,
) -> Exact {
    let k = free.len();
    assert!(
        k <= 16,
        "exact time-window search over {k} nodes is too large"
    );
    // A label that is already later than a known route, or as late and dearer, cannot lead to
    // a better route: dropping it keeps the search exact and the label sets small.
    let hopeless = |l: &Label| {
        incumbent.is_some_and(|(late, cost)| {
            l.late > late + LATE_EPS || (l.late >= late - LATE_EPS && l.cost > cost + 1e-9)
        })
    };
    let full = (1usize << k) - 1;
    let mut labels: Vec<Vec<Label>> = vec![Vec::new(); (full + 1) * k];
    let start = timing.at_origin(origin);
    for (j, &v) in free.iter().enumerate() {
        let visit = timing.visit(v, start.departure + timing.travel.get(origin, v));
        labels[(1 << j) * k + j].push(Label {
            late: start.lateness + visit.lateness,
            time: visit.departure,
            cost: cost.get(origin, v),
            prev: u8::MAX,
            prev_label: 0,
        });
    }
    let mut proven = true;
    for set in 1..=full {
        for j in (0..k).filter(|j| set & (1 << j) != 0) {
            let state = set * k + j;
            if labels[state].len() > MAX_LABELS {
                labels[state]
                    .sort_by(|a, b| a.late.total_cmp(&b.late).then(a.time.total_cmp(&b.time)));
                labels[state].truncate(MAX_LABELS);
                proven = false;
            }
            if set == full {
                continue;
            }
            for li in 0..labels[state].len() {
                let here = labels[state][li];
                for v in (0..k).filter(|v| set & (1 << v) == 0) {
                    let (from, to) = (free[j], free[v]);
                    let visit = timing.visit(to, here.time + timing.travel.get(from, to));
                    let label = Label {
                        late: here.late + visit.lateness,
                        time: visit.departure,
                        cost: here.cost + cost.get(from, to),
                        prev: j as u8,
                        prev_label: li as u32,
                    };
                    if !hopeless(&label) {
                        insert(&mut labels[(set | (1 << v)) * k + v], label);
                    }
                }
            }
        }
    }
    let mut best: Option<(usize, usize, f64, f64)> = None;
    for j in 0..k {
        for (li, l) in labels[full * k + j].iter().enumerate() {
            let total = l.cost + cost.get(free[j], target);
            let better = best.is_none_or(|(_, _, late, c)| {
                l.late < late - LATE_EPS || (l.late <= late + LATE_EPS && total < c)
            });
            if better {
                best = Some((j, li, l.late, total));
            }
        }
    }
    if best.is_none() && incumbent.is_some() {
        // Rounding pruned the incumbent's own path: search again without the bound.
        return held_karp_windows(cost, timing, origin, free, target, None);
    }
    let mut inner = Vec::with_capacity(k);
    if let Some((mut j, mut li, _, _)) = best {
        let mut set = full;
        loop {
            inner.push(free[j]);
            let l = labels[set * k + j][li];
            set &= !(1 << j);
            if l.prev == u8::MAX {
                break;
            }
            (j, li) = (l.prev as usize, l.prev_label as usize);
        }
        inner.reverse();
    }
    Exact {
        route: route_of(origin, inner, target),
        states: labels.iter().map(|l| l.len() as u64).sum(),
        proven,
    }
}

/// Adds `label` to a Pareto set unless something there dominates it; drops what it dominates.
fn insert(set: &mut Vec<Label>, label: Label) {
    if set.iter().any(|l| l.dominates(&label)) {
        return;
    }
    set.retain(|l| !label.dominates(l));
    set.push(label);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    fn random_matrix(n: usize, symmetric: bool, rng: &mut SmallRng) -> SquareMatrix {
        let pts: Vec<(f64, f64)> = (0..n).map(|_| (rng.random(), rng.random())).collect();
        let skew: Vec<f64> = (0..n * n).map(|_| rng.random::<f64>() * 0.5).collect();
        SquareMatrix::from_fn(n, |i, j| {
            let d = (pts[i].0 - pts[j].0).hypot(pts[i].1 - pts[j].1);
            if symmetric || i == j {
                d
            } else {
                d + skew[i * n + j]
            }
        })
    }

    fn route_cost(m: &SquareMatrix, route: &[usize], close: bool) -> f64 {
        let open: f64 = route.windows(2).map(|w| m.get(w[0], w[1])).sum();
        open + if close {
            m.get(*route.last().unwrap(), route[0])
        } else {
            0.0
        }
    }

    /// Every ordering of `free`, by Heap's algorithm.
    fn permutations(free: &[usize]) -> Vec<Vec<usize>> {
        fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(free.len(), &mut free.to_vec(), &mut out);
        out
    }

    fn brute_force(m: &SquareMatrix, origin: usize, free: &[usize], target: usize) -> f64 {
        permutations(free)
            .into_iter()
            .map(|p| route_cost(m, &route_of(origin, p, target), target == origin))
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn held_karp_matches_brute_force_on_symmetric_and_asymmetric_instances() {
        let mut rng = SmallRng::seed_from_u64(11);
        for case in 0..40 {
            let n = rng.random_range(2..=8);
            let m = random_matrix(n, case % 2 == 0, &mut rng);
            // Round trips, and open paths to the last node.
            let (free, target): (Vec<usize>, usize) = if case % 4 < 2 {
                ((1..n).collect(), 0)
            } else {
                ((1..n - 1).collect(), n - 1)
            };
            let exact = held_karp(&m, 0, &free, target);
            let got = route_cost(&m, &exact.route, target == 0);
            let want = brute_force(&m, 0, &free, target);
            assert!((got - want).abs() < 1e-9, "case {case}: {got} vs {want}");
            assert!(exact.proven);
        }
    }

    fn timing_for(m: &SquareMatrix, windows: Vec<Option<(f64, f64)>>) -> Timing {
        Timing {
            travel: m.clone(),
            service: vec![0.5; m.len()],
            window: windows,
            origin_is_stop: false,
        }
    }

    #[test]
    fn time_window_search_matches_brute_force_lexicographically() {
        let mut rng = SmallRng::seed_from_u64(12);
        for case in 0..40 {
            let n = rng.random_range(3..=8);
            let m = random_matrix(n, case % 2 == 0, &mut rng);
            let windows = (0..n)
                .map(|i| {
                    (i > 0 && rng.random_bool(0.6)).then(|| {
                        let open = rng.random::<f64>() * 4.0;
                        (open, open + rng.random::<f64>() * 2.0)
                    })
                })
                .collect();
            let timing = timing_for(&m, windows);
            let free: Vec<usize> = (1..n).collect();
            let key = |r: &[usize]| (timing.lateness(r), route_cost(&m, r, true));
            // Every third case is bounded by the input order, as the strategy does.
            let bound = (case % 3 == 0).then(|| key(&route_of(0, free.clone(), 0)));
            let exact = held_karp_windows(&m, &timing, 0, &free, 0, bound);
            let got = key(&exact.route);
            let want = permutations(&free)
                .into_iter()
                .map(|p| key(&route_of(0, p, 0)))
                .min_by(|a, b| {
                    if (a.0 - b.0).abs() > LATE_EPS {
                        a.0.total_cmp(&b.0)
                    } else {
                        a.1.total_cmp(&b.1)
                    }
                })
                .unwrap();
            assert!(
                (got.0 - want.0).abs() < 1e-6,
                "case {case}: lateness {got:?} vs {want:?}"
            );
            assert!(
                (got.1 - want.1).abs() < 1e-6,
                "case {case}: cost {got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn a_route_meeting_every_window_is_found_when_it_costs_more() {
        // Points on a line at 0..=3; stop 3 must come first although 0 -> 1 -> 2 -> 3 is
        // shorter, and then 0 -> 3 -> 2 -> 1 -> 0 (cost 6) is the cheapest on-time route.
        let x = [0.0, 1.0, 2.0, 3.0f64];
        let m = SquareMatrix::from_fn(4, |i, j| (x[i] - x[j]).abs());
        let windows = vec![None, Some((0.0, 10.0)), Some((0.0, 20.0)), Some((0.0, 3.0))];
        let mut timing = timing_for(&m, windows);
        timing.service = vec![0.0; 4];
        let exact = held_karp_windows(&m, &timing, 0, &[1, 2, 3], 0, None);
        assert_eq!(exact.route, vec![0, 3, 2, 1]);
        assert_eq!(route_cost(&m, &exact.route, true), 6.0);
        assert_eq!(timing.lateness(&exact.route), 0.0);
    }
}
