//! Snapping: a point to the nearest place on a drivable edge, projected onto the segment (not
//! to the nearest junction), through an R-tree of every segment of every edge.
//!
//! Coordinates are projected to a local plane (equirectangular around the network's middle
//! latitude, metres) for the search; the reported distance is the great-circle one.

use rstar::primitives::{GeomWithData, Line};
use rstar::{PointDistance, RTree};

use super::network::Network;
use crate::optimize::{EARTH_RADIUS_METERS, Location, haversine_meters};

type Segment = GeomWithData<Line<[f64; 2]>, (u32, u32)>;

/// The R-tree over the network's segments.
#[derive(Debug)]
pub struct Index {
    tree: RTree<Segment>,
    cos_lat: f64,
}

/// Where a point lands on the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snap {
    pub edge: u32,
    /// Metres along the edge from its `a` end.
    pub offset_m: f64,
    pub at: Location,
    /// Great-circle metres from the point to `at`.
    pub distance_m: f64,
}

impl Index {
    pub fn new(net: &Network) -> Index {
        let mid = net.nodes.iter().map(|l| l.latitude).sum::<f64>() / net.nodes.len().max(1) as f64;
        let cos_lat = mid.to_radians().cos();
        let mut segments = Vec::with_capacity(net.points.len());
        for (i, e) in net.edges.iter().enumerate() {
            let pts = net.edge_points(e);
            for (s, w) in pts.windows(2).enumerate() {
                let line = Line::new(plane(w[0], cos_lat), plane(w[1], cos_lat));
                segments.push(Segment::new(line, (i as u32, s as u32)));
            }
        }
        Index {
            tree: RTree::bulk_load(segments),
            cos_lat,
        }
    }

    /// `p` in the search plane (metres).
    pub fn to_plane(&self, p: Location) -> [f64; 2] {
        plane(p, self.cos_lat)
    }

    /// Edges with a segment inside `envelope` (plane coordinates), with repeats.
    pub fn edges_in(&self, envelope: &rstar::AABB<[f64; 2]>) -> Vec<u32> {
        self.tree
            .locate_in_envelope_intersecting(*envelope)
            .map(|s| s.data.0)
            .collect()
    }

    /// The nearest place on the network to `p`.
    pub fn snap(&self, net: &Network, p: Location) -> Option<Snap> {
        let q = plane(p, self.cos_lat);
        let seg = self.tree.nearest_neighbor(q)?;
        let (edge, s) = seg.data;
        let line = seg.geom();
        let on = line.nearest_point(&q);
        let len2 = line.length_2();
        let t = if len2 > 0.0 {
            let (d, f) = (sub(on, line.from), sub(line.to, line.from));
            ((d[0] * f[0] + d[1] * f[1]) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let e = &net.edges[edge as usize];
        let pts = net.edge_points(e);
        let (a, b) = (pts[s as usize], pts[s as usize + 1]);
        let at = Location {
            latitude: a.latitude + (b.latitude - a.latitude) * t,
            longitude: a.longitude + (b.longitude - a.longitude) * t,
        };
        let before: f64 = pts[..=s as usize]
            .windows(2)
            .map(|w| haversine_meters(w[0], w[1]))
            .sum();
        let offset = before + haversine_meters(a, at);
        // Lengths are stored as f32: keep the offset inside the stored length.
        let offset_m = offset.min(e.length_m as f64);
        debug_assert!(seg.distance_2(&q) >= 0.0);
        Some(Snap {
            edge,
            offset_m,
            at,
            distance_m: haversine_meters(p, at),
        })
    }
}

fn plane(p: Location, cos_lat: f64) -> [f64; 2] {
    let k = EARTH_RADIUS_METERS * std::f64::consts::PI / 180.0;
    [p.longitude * k * cos_lat, p.latitude * k]
}

fn sub(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

/// The part of an edge's geometry from `from_m` to `to_m` metres along it (either order; the
/// points come out in the direction from `from_m` to `to_m`).
pub fn part(net: &Network, edge: u32, from_m: f64, to_m: f64) -> Vec<Location> {
    let e = &net.edges[edge as usize];
    let pts = net.edge_points(e);
    let (lo, hi) = (from_m.min(to_m), from_m.max(to_m));
    let mut out = vec![point_at(pts, lo)];
    let mut walked = 0.0;
    for w in pts.windows(2) {
        walked += haversine_meters(w[0], w[1]);
        if walked > lo && walked < hi {
            out.push(w[1]);
        }
    }
    out.push(point_at(pts, hi));
    if from_m > to_m {
        out.reverse();
    }
    out
}

/// The point `m` metres along a polyline.
fn point_at(pts: &[Location], m: f64) -> Location {
    let mut walked = 0.0;
    for w in pts.windows(2) {
        let len = haversine_meters(w[0], w[1]);
        if walked + len >= m && len > 0.0 {
            let t = ((m - walked) / len).clamp(0.0, 1.0);
            return Location {
                latitude: w[0].latitude + (w[1].latitude - w[0].latitude) * t,
                longitude: w[0].longitude + (w[1].longitude - w[0].longitude) * t,
            };
        }
        walked += len;
    }
    *pts.last().expect("an edge has two points or more")
}
