//! The road network as built from the extract: junction nodes, and edges between them with
//! their geometry. An edge is one stretch of one way; it may be drivable in one direction or
//! both. An *arc* is an edge in one drivable direction: arc `2·e` runs a → b, arc `2·e + 1`
//! runs b → a.
//!
//! A *turn* is a pair of arcs, the second leaving the node the first enters. Every turn is
//! allowed (U-turns at junctions included) except those in [`Network::forbidden`], which the
//! extract's turn restrictions name ([`build`](super::build)).

use serde::{Deserialize, Serialize};

use crate::optimize::Location;

/// Junction nodes and the edges between them.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Network {
    pub nodes: Vec<Location>,
    pub edges: Vec<Edge>,
    /// Every edge's geometry, edge after edge, both ends included.
    pub points: Vec<Location>,
    /// Forbidden turns `(from arc, to arc)` at the node `from` enters: sorted, no repeats.
    pub forbidden: Vec<(u32, u32)>,
}

/// One stretch of a way between two junctions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub a: u32,
    pub b: u32,
    pub first_point: u32,
    pub points: u32,
    pub length_m: f32,
    pub speed_kmh: f32,
    pub forward: bool,
    pub backward: bool,
    pub toll: bool,
    pub highway: bool,
}

/// What travelling an arc (or a path, or a part of one) costs: the driving time, the distance
/// and how many stretches the request asked to avoid it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cost {
    pub time_ms: u64,
    pub dist_cm: u64,
    pub avoided: u32,
}

impl Cost {
    pub fn plus(self, o: Cost) -> Cost {
        Cost {
            time_ms: self.time_ms + o.time_ms,
            dist_cm: self.dist_cm + o.dist_cm,
            avoided: self.avoided + o.avoided,
        }
    }

    /// `share` (0..=1) of this cost; any share of an avoided stretch still counts as using it.
    pub fn part(self, share: f64) -> Cost {
        let share = share.clamp(0.0, 1.0);
        Cost {
            time_ms: (self.time_ms as f64 * share).round() as u64,
            dist_cm: (self.dist_cm as f64 * share).round() as u64,
            avoided: if share > 0.0 { self.avoided } else { 0 },
        }
    }
}

impl Edge {
    /// Driving time and distance over the whole edge, in either direction.
    pub fn cost(&self, avoid: Avoid) -> Cost {
        let seconds = self.length_m as f64 / (self.speed_kmh as f64 / 3.6);
        Cost {
            time_ms: (seconds * 1000.0).round().max(1.0) as u64,
            dist_cm: (self.length_m as f64 * 100.0).round().max(1.0) as u64,
            avoided: u32::from((avoid.tolls && self.toll) || (avoid.highways && self.highway)),
        }
    }
}

/// Which stretches a query should stay off where it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct Avoid {
    pub tolls: bool,
    pub highways: bool,
}

impl Network {
    pub fn edge_points(&self, e: &Edge) -> &[Location] {
        let first = e.first_point as usize;
        &self.points[first..first + e.points as usize]
    }

    /// `(from, to)` of arc `arc`, or `None` when its edge is not drivable that way.
    pub fn arc(&self, arc: u32) -> Option<(u32, u32)> {
        let e = &self.edges[(arc / 2) as usize];
        match arc % 2 {
            0 if e.forward => Some((e.a, e.b)),
            1 if e.backward => Some((e.b, e.a)),
            _ => None,
        }
    }

    /// Whether the turn from arc `from` into arc `to` (at `from`'s head) is forbidden.
    pub fn forbids(&self, from: u32, to: u32) -> bool {
        self.forbidden.binary_search(&(from, to)).is_ok()
    }

    /// Every drivable arc.
    pub fn arcs(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.edges.len() as u32 * 2).filter_map(|arc| self.arc(arc).map(|(f, t)| (arc, f, t)))
    }
}
