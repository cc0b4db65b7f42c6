//! Arrival, waiting, service and lateness along a route.
//!
//! Times are seconds after departure. Arriving before a window opens means waiting for it;
//! starting service after it closes is *lateness*, summed over stops. Service starts at
//! `max(arrival, window.start)` and the vehicle leaves `service` seconds later. A route's
//! lateness can only grow when any departure gets later ("later is never better"), which is what
//! makes the dominance rules of the exact time-window search valid.

use super::matrix::SquareMatrix;

/// Service and window data per internal node, plus travel times between nodes.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    /// Driving seconds between internal nodes.
    pub travel: SquareMatrix,
    /// Seconds of service per node.
    pub service: Vec<f64>,
    /// `(open, close)` in seconds after departure.
    pub window: Vec<Option<(f64, f64)>>,
    /// True when the origin is a stop (no `start`): it is served at time 0.
    pub origin_is_stop: bool,
}

/// What happens at one stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Visit {
    /// When the vehicle arrives.
    pub arrival: f64,
    /// Seconds waited for the window to open.
    pub wait: f64,
    /// Seconds service starts after the window closed; 0 when on time.
    pub lateness: f64,
    /// When the vehicle leaves.
    pub departure: f64,
}

impl Timing {
    /// True when some node has a time window.
    pub(crate) fn has_windows(&self) -> bool {
        self.window.iter().any(Option::is_some)
    }

    /// Serving node `v` after arriving at `arrival`.
    #[inline]
    pub(crate) fn visit(&self, v: usize, arrival: f64) -> Visit {
        let (open, close) = self.window[v].unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let start = arrival.max(open);
        Visit {
            arrival,
            wait: start - arrival,
            lateness: (start - close).max(0.0),
            departure: start + self.service[v],
        }
    }

    /// The visit at the origin: served at time 0 when it is a stop, else just left at time 0.
    pub(crate) fn at_origin(&self, origin: usize) -> Visit {
        if self.origin_is_stop {
            self.visit(origin, 0.0)
        } else {
            Visit {
                arrival: 0.0,
                wait: 0.0,
                lateness: 0.0,
                departure: 0.0,
            }
        }
    }

    /// Visits along `route` (origin first), one per node.
    pub(crate) fn visits(&self, route: &[usize]) -> Vec<Visit> {
        let mut out = Vec::with_capacity(route.len());
        let Some(&origin) = route.first() else {
            return out;
        };
        let mut last = self.at_origin(origin);
        out.push(last);
        for w in route.windows(2) {
            last = self.visit(w[1], last.departure + self.travel.get(w[0], w[1]));
            out.push(last);
        }
        out
    }

    /// Total lateness of `route` (origin first).
    pub(crate) fn lateness(&self, route: &[usize]) -> f64 {
        self.visits(route).iter().map(|v| v.lateness).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(windows: Vec<Option<(f64, f64)>>, origin_is_stop: bool) -> Timing {
        let n = windows.len();
        Timing {
            // 100 s between any two distinct nodes.
            travel: SquareMatrix::from_fn(n, |i, j| if i == j { 0.0 } else { 100.0 }),
            service: vec![60.0; n],
            window: windows,
            origin_is_stop,
        }
    }

    #[test]
    fn early_arrival_waits_for_the_window_and_service_follows() {
        let t = timing(vec![None, Some((500.0, 900.0))], false);
        let v = t.visits(&[0, 1]);
        assert_eq!(v[1].arrival, 100.0);
        assert_eq!(v[1].wait, 400.0);
        assert_eq!(v[1].lateness, 0.0);
        assert_eq!(v[1].departure, 560.0);
    }

    #[test]
    fn late_start_is_counted_from_the_window_end() {
        let t = timing(vec![None, None, Some((0.0, 200.0))], false);
        // 0 -> 1 arrives 100, leaves 160; -> 2 arrives 260, 60 s late.
        assert_eq!(t.lateness(&[0, 1, 2]), 60.0);
        assert_eq!(t.lateness(&[0, 2, 1]), 0.0);
    }

    #[test]
    fn a_start_point_is_left_at_zero_but_a_first_stop_is_served() {
        let windows = vec![Some((30.0, 40.0)), None];
        let as_start = timing(windows.clone(), false).visits(&[0, 1]);
        assert_eq!(as_start[0].departure, 0.0);
        let as_stop = timing(windows, true).visits(&[0, 1]);
        assert_eq!(as_stop[0].wait, 30.0);
        assert_eq!(as_stop[0].departure, 90.0);
        assert_eq!(as_stop[1].arrival, 190.0);
    }

    #[test]
    fn leaving_later_never_reduces_lateness() {
        let t = timing(vec![None, Some((0.0, 150.0)), Some((300.0, 400.0))], true);
        let mut previous = 0.0;
        for delay in [0.0, 50.0, 100.0, 400.0] {
            let a = t.visit(1, 100.0 + delay);
            let b = t.visit(2, a.departure + 100.0);
            let late = a.lateness + b.lateness;
            assert!(late >= previous);
            previous = late;
        }
    }
}
