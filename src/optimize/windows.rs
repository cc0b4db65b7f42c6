//! Local search for routes with time windows, on the lexicographic objective
//! (total lateness, then cost).
//!
//! Lateness is not a sum of edge costs, so every candidate is re-scheduled, but only from its
//! first changed position on (prefix departures are cached) and only until its departure times
//! rejoin the current route's after the changed range. Moves: Or-opt relocation of 1–3 stops next
//! to a neighbour, 2-opt reversals towards a neighbour, and, while the route is late, moving each
//! late stop to every earlier position. Candidates that do not lower the cost are not even
//! scheduled once the route is on time. Guarantee for large instances: the result is a local
//! optimum for these moves (or the budget ran out) and is never worse, lexicographically, than
//! the best of the starts it was given.

use std::time::Instant;

use super::candidates::Neighbours;
use super::instance::Instance;

/// Lateness differences below this many seconds are ties.
const LATE_EPS: f64 = 1e-6;
/// Cost improvements below this are ignored.
const COST_EPS: f64 = 1e-7;

/// (lateness, cost), compared lexicographically.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Key {
    pub late: f64,
    pub cost: f64,
}

impl Key {
    /// Strictly better than `other`.
    pub(crate) fn better_than(&self, other: &Key) -> bool {
        self.late < other.late - LATE_EPS
            || (self.late <= other.late + LATE_EPS && self.cost < other.cost - COST_EPS)
    }
}

/// The objective of a route.
pub(crate) fn key(inst: &Instance, route: &[usize]) -> Key {
    Key {
        late: inst.timing.lateness(route),
        cost: inst.route_cost(route),
    }
}

/// What the search did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// True when the deadline ended the search.
    pub timed_out: bool,
}

/// A candidate change: the positions `lo..=hi` of the route are rearranged.
#[derive(Debug, Clone, Copy)]
enum Move {
    /// Move `len` stops starting at `from` to just after position `after`.
    Relocate {
        from: usize,
        len: usize,
        after: usize,
    },
    /// Reverse positions `i..=j`.
    Reverse { i: usize, j: usize },
}

/// Search state over one route.
struct Search<'a> {
    inst: &'a Instance,
    route: Vec<usize>,
    pos: Vec<usize>,
    /// Departure time and lateness so far (inclusive) per position.
    depart: Vec<f64>,
    late_upto: Vec<f64>,
    key: Key,
    scratch: Vec<usize>,
    steps: u64,
}

/// Improves `route` in place within `max_steps` scheduled stops or until `deadline`.
pub(crate) fn improve(
    inst: &Instance,
    neighbours: &Neighbours,
    route: &mut Vec<usize>,
    max_steps: u64,
    deadline: Option<Instant>,
) -> Outcome {
    let mut s = Search::new(inst, std::mem::take(route));
    let last_free = route_last_free(inst, s.route.len());
    let mut timed_out = false;
    'passes: loop {
        let mut improved = false;
        for i in 1..=last_free {
            if s.steps >= max_steps {
                break 'passes;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                timed_out = true;
                break 'passes;
            }
            let v = s.route[i];
            improved |= s.try_moves(v, neighbours, last_free, max_steps);
        }
        if !improved {
            break;
        }
    }
    *route = s.route;
    Outcome { timed_out }
}

/// Last position whose stop may move (the terminal stays last).
fn route_last_free(inst: &Instance, len: usize) -> usize {
    if inst.terminal.is_some() {
        len.saturating_sub(2)
    } else {
        len - 1
    }
}

impl<'a> Search<'a> {
    fn new(inst: &'a Instance, route: Vec<usize>) -> Self {
        let mut s = Self {
            inst,
            pos: vec![0; route.len()],
            depart: vec![0.0; route.len()],
            late_upto: vec![0.0; route.len()],
            key: key(inst, &route),
            scratch: Vec::with_capacity(route.len()),
            route,
            steps: 0,
        };
        s.refresh();
        s
    }

    /// Recomputes the caches after the route changed.
    fn refresh(&mut self) {
        let visits = self.inst.timing.visits(&self.route);
        let mut late = 0.0;
        for (p, (&v, visit)) in self.route.iter().zip(&visits).enumerate() {
            self.pos[v] = p;
            late += visit.lateness;
            self.depart[p] = visit.departure;
            self.late_upto[p] = late;
        }
        self.key = Key {
            late,
            cost: self.inst.route_cost(&self.route),
        };
        self.steps += self.route.len() as u64;
    }

    /// Tries the moves around stop `v`; applies the first improving one.
    fn try_moves(
        &mut self,
        v: usize,
        neighbours: &Neighbours,
        last_free: usize,
        max_steps: u64,
    ) -> bool {
        let i = self.pos[v];
        let mut moves = Vec::with_capacity(64);
        for &w in neighbours.of(v) {
            let pw = self.pos[w as usize];
            if pw > last_free && Some(w as usize) != self.inst.terminal {
                continue;
            }
            for len in 1..=3 {
                if i + len - 1 > last_free {
                    break;
                }
                for after in [pw, pw.wrapping_sub(1)] {
                    if after <= last_free && (after + 1 < i || after >= i + len) {
                        moves.push(Move::Relocate {
                            from: i,
                            len,
                            after,
                        });
                    }
                }
            }
            if pw > i + 1 && pw <= last_free {
                moves.push(Move::Reverse { i: i + 1, j: pw });
            } else if pw >= 1 && pw + 1 < i {
                moves.push(Move::Reverse { i: pw, j: i - 1 });
            }
        }
        let late_here = self.late_upto[i] - if i > 0 { self.late_upto[i - 1] } else { 0.0 };
        if late_here > LATE_EPS {
            moves.extend((0..i.saturating_sub(1)).map(|after| Move::Relocate {
                from: i,
                len: 1,
                after,
            }));
        }
        for mv in moves {
            if self.steps >= max_steps {
                return false;
            }
            if let Some(candidate) = self.evaluate(mv)
                && candidate.better_than(&self.key)
            {
                std::mem::swap(&mut self.route, &mut self.scratch);
                self.refresh();
                return true;
            }
        }
        false
    }

    /// Builds the candidate into `scratch` and returns its key, or `None` when it cannot win.
    fn evaluate(&mut self, mv: Move) -> Option<Key> {
        let (lo, hi) = self.build(mv);
        let inst = self.inst;
        let n = self.route.len();
        let edge = |r: &[usize], p: usize| match (p + 1 < n, inst.terminal) {
            (true, _) => inst.cost.get(r[p], r[p + 1]),
            (false, None) => inst.cost.get(r[p], r[0]),
            (false, Some(_)) => 0.0,
        };
        let (mut old, mut new) = (0.0, 0.0);
        for p in lo - 1..=hi {
            old += edge(&self.route, p);
            new += edge(&self.scratch, p);
        }
        let cost = self.key.cost - old + new;
        if self.key.late <= LATE_EPS && cost >= self.key.cost - COST_EPS {
            return None;
        }
        Some(Key {
            late: self.lateness_from(lo, hi),
            cost,
        })
    }

    /// Lateness of `scratch`, which equals the route before `lo` and after `hi`.
    fn lateness_from(&mut self, lo: usize, hi: usize) -> f64 {
        let timing = &self.inst.timing;
        let mut late = self.late_upto[lo - 1];
        let mut time = self.depart[lo - 1];
        for p in lo..self.scratch.len() {
            let (u, v) = (self.scratch[p - 1], self.scratch[p]);
            let visit = timing.visit(v, time + timing.travel.get(u, v));
            self.steps += 1;
            late += visit.lateness;
            time = visit.departure;
            if p > hi && time == self.depart[p] {
                // From here on the candidate runs exactly like the current route.
                return late + self.key.late - self.late_upto[p];
            }
        }
        late
    }

    /// Writes the route after `mv` into `scratch`; returns the changed positions.
    fn build(&mut self, mv: Move) -> (usize, usize) {
        let r = &self.route;
        let out = &mut self.scratch;
        out.clear();
        match mv {
            Move::Relocate { from, len, after } if after < from => {
                out.extend_from_slice(&r[..=after]);
                out.extend_from_slice(&r[from..from + len]);
                out.extend_from_slice(&r[after + 1..from]);
                out.extend_from_slice(&r[from + len..]);
                (after + 1, from + len - 1)
            }
            Move::Relocate { from, len, after } => {
                out.extend_from_slice(&r[..from]);
                out.extend_from_slice(&r[from + len..=after]);
                out.extend_from_slice(&r[from..from + len]);
                out.extend_from_slice(&r[after + 1..]);
                (from, after)
            }
            Move::Reverse { i, j } => {
                out.extend_from_slice(r);
                out[i..=j].reverse();
                (i, j)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::matrix::SquareMatrix;
    use crate::optimize::schedule::Timing;

    /// Points on a line at `x`, origin first, round trip, one second per unit.
    fn line_instance(x: &[f64], windows: Vec<Option<(f64, f64)>>) -> Instance {
        let n = x.len();
        let m = SquareMatrix::from_fn(n, |i, j| (x[i] - x[j]).abs());
        Instance {
            cost: m.clone(),
            distance: m.clone(),
            timing: Timing {
                travel: m,
                service: vec![0.0; n],
                window: windows,
                origin_is_stop: false,
            },
            terminal: None,
            stop: (0..n).map(|v| v.checked_sub(1)).collect(),
            free_end: false,
        }
    }

    #[test]
    fn a_late_stop_is_moved_forward_until_every_window_is_met() {
        let x: Vec<f64> = (0..30).map(f64::from).collect();
        let mut windows = vec![None; 30];
        // Stop 29 must be served within 35 s; with 1 s of service per stop the natural order
        // reaches it at 57 s, driving there first takes 29 s.
        windows[29] = Some((0.0, 35.0));
        let mut inst = line_instance(&x, windows);
        inst.timing.service = vec![1.0; 30];
        let nb = Neighbours::nearest(&inst.cost, 5, None);
        let mut route: Vec<usize> = (0..30).collect();
        let before = key(&inst, &route);
        improve(&inst, &nb, &mut route, u64::MAX, None);
        let after = key(&inst, &route);
        assert!(before.late > 0.0);
        assert_eq!(after.late, 0.0, "{route:?}");
        let mut sorted = route.clone();
        sorted.sort();
        assert_eq!(sorted, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn without_windows_it_still_shortens_the_route() {
        let x = [0.0, 5.0, 1.0, 4.0, 2.0, 3.0];
        let inst = line_instance(&x, vec![None; 6]);
        let nb = Neighbours::nearest(&inst.cost, 5, None);
        let mut route: Vec<usize> = (0..6).collect();
        improve(&inst, &nb, &mut route, u64::MAX, None);
        assert_eq!(inst.route_cost(&route), 10.0);
    }

    #[test]
    fn lexicographic_order_puts_lateness_first() {
        let a = Key {
            late: 0.0,
            cost: 100.0,
        };
        let b = Key {
            late: 1.0,
            cost: 1.0,
        };
        assert!(a.better_than(&b));
        assert!(!b.better_than(&a));
        assert!(!a.better_than(&a));
    }
}
