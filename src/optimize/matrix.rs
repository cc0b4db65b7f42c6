//! The cost matrix: built once per request, shared by every algorithm.
//!
//! [`CostMatrixSource`] is the seam where a road-network source (which gives asymmetric costs)
//! can later replace [`HaversineSource`]. A source receives every point of the request in a fixed
//! order (start, stops in request order, end) and returns distance and driving-time matrices over
//! them; [`Matrices::check`] rejects sizes that do not match and entries that are negative or not
//! finite, so the algorithms can trust what they read.

use super::error::{Error, Result};
use super::geo::haversine_prepared;
use super::model::{CostModel, Location, Preferences, Problem};

/// A dense row-major `n × n` matrix of non-negative costs; entry `(i, j)` is the cost of going
/// from point `i` to point `j`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SquareMatrix {
    n: usize,
    data: Vec<f64>,
}

impl SquareMatrix {
    /// A matrix whose entry `(i, j)` is `f(i, j)`.
    pub fn from_fn(n: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let mut data = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                data.push(f(i, j));
            }
        }
        Self { n, data }
    }

    /// Wraps row-major data; `None` when `data.len() != n * n`.
    pub fn from_row_major(n: usize, data: Vec<f64>) -> Option<Self> {
        (data.len() == n * n).then_some(Self { n, data })
    }

    /// Number of rows (and columns).
    pub fn len(&self) -> usize {
        self.n
    }

    /// True for the 0 × 0 matrix.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Cost from `i` to `j`.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j]
    }

    /// True when `(i, j)` and `(j, i)` agree within a relative `1e-9`: symmetric matrices let the
    /// local search reverse either side of a 2-opt move, which is much faster.
    pub fn is_symmetric(&self) -> bool {
        (0..self.n).all(|i| {
            (0..i).all(|j| {
                let (a, b) = (self.get(i, j), self.get(j, i));
                (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            })
        })
    }
}

/// Distances and driving times over the same points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrices {
    /// Metres.
    pub distance_meters: SquareMatrix,
    /// Driving seconds.
    pub duration_seconds: SquareMatrix,
    /// Per point, metres from the point to where it joins the road network (road sources).
    pub snap_meters: Option<Vec<f64>>,
    /// What the source wants the caller to know (e.g. an avoidance that could not be kept).
    pub warnings: Vec<String>,
}

impl Matrices {
    /// Checks that both matrices are `n × n` with finite, non-negative entries.
    pub fn check(&self, n: usize) -> Result<()> {
        for (name, m) in [
            ("distance", &self.distance_meters),
            ("duration", &self.duration_seconds),
        ] {
            if m.len() != n {
                return Err(Error::Matrix(format!(
                    "{name} matrix is {0}×{0}, expected {n}×{n}",
                    m.len()
                )));
            }
            if let Some(bad) = m.data.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(Error::Matrix(format!("{name} matrix holds {bad}")));
            }
        }
        Ok(())
    }
}

/// Where travel costs come from.
pub trait CostMatrixSource {
    /// Distances and driving times between all `points`, in the order given, for a request
    /// with these preferences.
    fn matrices(&self, points: &[Location], prefs: &Preferences) -> Result<Matrices>;

    /// [`CostMatrixSource::matrices`] for the [`points`](super::points) of `problem`, so that
    /// errors can name the request's field (`stops[3]`).
    fn matrices_for_problem(&self, problem: &Problem, points: &[Location]) -> Result<Matrices> {
        self.matrices(points, &problem.preferences)
    }

    /// True when the costs honour `avoidTolls` / `avoidHighways`; otherwise the result warns
    /// that they were ignored.
    fn honours_avoidances(&self) -> bool {
        false
    }

    /// What the costs are based on, reported in `optimization.costModel`.
    fn cost_model(&self) -> CostModel {
        CostModel::GreatCircle
    }

    /// The driven polyline through `points` in that order, when the source knows the roads;
    /// `None` draws straight lines.
    fn path_through(&self, _points: &[Location], _prefs: &Preferences) -> Option<Vec<Location>> {
        None
    }
}

/// Great-circle distance times a detour factor, at a constant average speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HaversineSource {
    /// Road metres per great-circle metre (default 1.3).
    pub detour_factor: f64,
    /// Average driving speed in km/h (default 40).
    pub average_speed_kmh: f64,
}

impl CostMatrixSource for HaversineSource {
    fn matrices(&self, points: &[Location], _prefs: &Preferences) -> Result<Matrices> {
        let n = points.len();
        // Trigonometry per point once, and each pair once: the great circle is symmetric.
        let trig: Vec<(f64, f64, f64)> = points
            .iter()
            .map(|p| {
                (
                    p.latitude.to_radians(),
                    p.longitude.to_radians(),
                    p.latitude.to_radians().cos(),
                )
            })
            .collect();
        let mut upper = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let d = haversine_prepared(trig[i], trig[j]) * self.detour_factor;
                upper[i * n + j] = d;
                upper[j * n + i] = d;
            }
        }
        let distance_meters = SquareMatrix::from_row_major(n, upper).expect("n × n entries");
        let meters_per_second = self.average_speed_kmh / 3.6;
        let duration_seconds =
            SquareMatrix::from_fn(n, |i, j| distance_meters.get(i, j) / meters_per_second);
        Ok(Matrices {
            distance_meters,
            duration_seconds,
            ..Matrices::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(latitude: f64, longitude: f64) -> Location {
        Location {
            latitude,
            longitude,
        }
    }

    #[test]
    fn haversine_source_matches_the_plain_formula_both_ways() {
        let pts = [
            at(48.1, 11.5),
            at(-33.9, 151.2),
            at(0.0, -179.9),
            at(0.0, 179.9),
        ];
        let m = HaversineSource {
            detour_factor: 1.0,
            average_speed_kmh: 40.0,
        }
        .matrices(&pts, &Preferences::default())
        .unwrap();
        for (i, &a) in pts.iter().enumerate() {
            for (j, &b) in pts.iter().enumerate() {
                let want = crate::optimize::geo::haversine_meters(a, b);
                assert!((m.distance_meters.get(i, j) - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn haversine_source_applies_detour_factor_and_speed() {
        let source = HaversineSource {
            detour_factor: 1.5,
            average_speed_kmh: 36.0,
        };
        let m = source
            .matrices(&[at(10.0, 20.0), at(11.0, 20.0)], &Preferences::default())
            .unwrap();
        let straight = crate::optimize::geo::haversine_meters(at(10.0, 20.0), at(11.0, 20.0));
        assert!((m.distance_meters.get(0, 1) - 1.5 * straight).abs() < 1e-6);
        // 36 km/h is 10 m/s.
        assert!((m.duration_seconds.get(1, 0) - 0.15 * straight).abs() < 1e-6);
        assert_eq!(m.distance_meters.get(1, 1), 0.0);
        m.check(2).unwrap();
    }

    #[test]
    fn check_rejects_wrong_sizes_and_negative_or_nan_entries() {
        let ok = SquareMatrix::from_fn(2, |_, _| 1.0);
        let bad = SquareMatrix::from_fn(2, |i, j| if i == j { f64::NAN } else { 1.0 });
        let m = Matrices {
            distance_meters: ok.clone(),
            duration_seconds: bad,
            ..Matrices::default()
        };
        assert!(matches!(m.check(2), Err(Error::Matrix(_))));
        let m = Matrices {
            distance_meters: ok.clone(),
            duration_seconds: ok.clone(),
            ..Matrices::default()
        };
        assert!(matches!(m.check(3), Err(Error::Matrix(_))));
        let neg = SquareMatrix::from_fn(2, |_, _| -1.0);
        let m = Matrices {
            distance_meters: neg,
            duration_seconds: ok,
            ..Matrices::default()
        };
        assert!(matches!(m.check(2), Err(Error::Matrix(_))));
    }

    #[test]
    fn symmetry_is_detected_within_rounding() {
        assert!(SquareMatrix::from_fn(3, |i, j| (i + j) as f64).is_symmetric());
        assert!(!SquareMatrix::from_fn(3, |i, j| (2 * i + j) as f64).is_symmetric());
        let m = SquareMatrix::from_row_major(2, vec![0.0, 1.0, 1.0 + 1e-12, 0.0]).unwrap();
        assert!(m.is_symmetric());
        assert!(SquareMatrix::from_row_major(2, vec![0.0]).is_none());
    }
}
