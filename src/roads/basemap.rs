//! The basemap: the network's own roads inside a bounding box, as GeoJSON, simplified for the
//! zoom, so a dashboard can draw streets under a route without any online map service.

use rstar::AABB;
use serde::Serialize;

use super::Roads;
use crate::optimize::Location;

/// At most this many road stretches per answer; more sets `truncated`.
pub const MAX_FEATURES: usize = 20_000;

/// A GeoJSON FeatureCollection of road stretches.
#[derive(Debug, Serialize)]
pub struct Basemap {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub features: Vec<Feature>,
    /// True when the box held more than [`MAX_FEATURES`] stretches (the rest are left out).
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct Feature {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub geometry: Line,
    pub properties: Properties,
}

#[derive(Debug, Serialize)]
pub struct Line {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub coordinates: Vec<[f64; 2]>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Properties {
    pub highway: bool,
    pub toll: bool,
    pub oneway: bool,
    pub speed_kmh: f32,
}

impl Roads {
    /// Stretches with a segment inside `[min, max]`, each simplified (Douglas–Peucker) to
    /// `tolerance_m` metres.
    pub fn basemap(&self, min: Location, max: Location, tolerance_m: f64) -> Basemap {
        let (lo, hi) = (self.index.to_plane(min), self.index.to_plane(max));
        let envelope = AABB::from_corners(lo, hi);
        let mut edges: Vec<u32> = self.index.edges_in(&envelope);
        edges.sort_unstable();
        edges.dedup();
        let truncated = edges.len() > MAX_FEATURES;
        edges.truncate(MAX_FEATURES);
        let features = edges
            .into_iter()
            .map(|i| {
                let e = &self.net.edges[i as usize];
                let pts: Vec<[f64; 2]> = self
                    .net
                    .edge_points(e)
                    .iter()
                    .map(|p| self.index.to_plane(*p))
                    .collect();
                let kept = simplify(&pts, tolerance_m);
                let coordinates = kept
                    .into_iter()
                    .map(|k| {
                        let p = self.net.edge_points(e)[k];
                        [round6(p.longitude), round6(p.latitude)]
                    })
                    .collect();
                Feature {
                    kind: "Feature",
                    geometry: Line {
                        kind: "LineString",
                        coordinates,
                    },
                    properties: Properties {
                        highway: e.highway,
                        toll: e.toll,
                        oneway: e.forward != e.backward,
                        speed_kmh: e.speed_kmh,
                    },
                }
            })
            .collect();
        Basemap {
            kind: "FeatureCollection",
            features,
            truncated,
        }
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Indices of the points Douglas–Peucker keeps at `tolerance` (plane metres); both ends always.
fn simplify(pts: &[[f64; 2]], tolerance: f64) -> Vec<usize> {
    let mut keep = vec![false; pts.len()];
    keep[0] = true;
    keep[pts.len() - 1] = true;
    let mut stack = vec![(0, pts.len() - 1)];
    while let Some((a, b)) = stack.pop() {
        let (mut far, mut far_d) = (0, 0.0);
        for (i, p) in pts.iter().enumerate().take(b).skip(a + 1) {
            let d = distance_to_segment(*p, pts[a], pts[b]);
            if d > far_d {
                (far, far_d) = (i, d);
            }
        }
        if far_d > tolerance {
            keep[far] = true;
            stack.push((a, far));
            stack.push((far, b));
        }
    }
    (0..pts.len()).filter(|&i| keep[i]).collect()
}

fn distance_to_segment(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (x, y) = (a[0] + t * dx - p[0], a[1] + t * dy - p[1]);
    (x * x + y * y).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplification_keeps_the_ends_and_the_corners_beyond_the_tolerance() {
        let pts = [[0.0, 0.0], [1.0, 0.1], [2.0, 0.0], [2.0, 5.0], [2.1, 10.0]];
        assert_eq!(simplify(&pts, 0.5), vec![0, 2, 4]);
        assert_eq!(simplify(&pts, 0.01), vec![0, 1, 2, 3, 4]);
        assert_eq!(simplify(&pts[..2], 100.0), vec![0, 1]);
    }
}
