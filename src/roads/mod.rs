//! The road network: an offline car router built from an OpenStreetMap extract, behind the
//! optimizer's [`CostMatrixSource`] seam.
//!
//! # Lifecycle
//!
//! `routing.osm_file` names a `.osm.pbf` extract. [`Roads::open`] loads the prepared graph from
//! the data directory (`roads/<extract>.graph`) when it was prepared from this very extract
//! (length and CRC-32 match), else builds it ([`build`] → [`network`] → [`ch`]) and stores it. A
//! missing or unreadable extract is an error naming the file; a damaged prepared graph (its
//! checksum fails) is rebuilt, never used. `routegate graph build` does the same ahead of time.
//!
//! # Prepared-graph format (version 2)
//!
//! ```text
//! "RGROADS\0" | version u32 LE | extract length u64 LE | extract CRC-32 u32 LE
//!             | payload length u64 LE | payload CRC-32 u32 LE | payload (bincode of Stored)
//! ```
//!
//! Version 2 adds the network's forbidden turns and prepares the hierarchies on the turn graph;
//! a version 1 file (no turn restrictions) is rebuilt, never read as version 2.
//!
//! # Queries
//!
//! Every point snaps to the nearest place on a drivable edge ([`snap`]); farther than
//! `max_snap_meters` is an error naming the point. From a snapped point a query leaves through
//! the edge's ends it may drive to (a part of the edge's cost each), and the costs between points
//! come from the hierarchy of the request's weighting ([`ch::Weighting`]: time or distance,
//! avoiding tolls and/or highways). Two points on the same edge, the second ahead of the first
//! in a drivable direction, are also joined directly along it.
//!
//! # Turn restrictions
//!
//! The extract's `type=restriction` relations that bind a car ([`profile`]) with a `via` node
//! become forbidden turns of the network ([`build`]); every query honours them (one-to-one
//! [`Roads::cost`], many-to-many [`Roads::table`], geometry [`Roads::leg`]), because the
//! hierarchies are prepared on a graph where each restricted arc enters a copy of its via node
//! that leads on only to the turns allowed from it ([`turns`]). A snapped source leaves through
//! the node (or copy) its arc enters; a snapped target is reached from its arc's tail and from
//! every copy there that may turn into it. Restrictions with a `via` *way*, time-conditional
//! ones and those of other vehicles are not applied.

pub mod basemap;
pub mod build;
pub mod ch;
pub mod live;
pub mod network;
pub mod profile;
pub mod snap;
mod stored;
pub mod turns;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::optimize::{
    self, CostMatrixSource, CostModel, Location, Matrices, Preferences, SquareMatrix,
};
use ch::{Entries, Hierarchy, Weighting};
use network::{Cost, Network};
use turns::TurnGraph;

pub use stored::graph_path;

/// Why the road network could not be prepared or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the OpenStreetMap extract {path}: {message}")]
    Extract { path: PathBuf, message: String },
    #[error("preparing the road graph failed: {0}")]
    Prepare(String),
    #[error("cannot {action} the prepared road graph {path}: {message}")]
    Stored {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A loaded road network, ready for queries.
#[derive(Debug)]
pub struct Roads {
    net: Network,
    /// The graph the hierarchies were prepared on (derived from `net` on load).
    turns: TurnGraph,
    hierarchies: Vec<Hierarchy>,
    index: snap::Index,
    pub info: Info,
    pub max_snap_meters: f64,
}

/// Where the network came from and what it holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    /// The extract's file name.
    pub extract: String,
    /// The extract's replication timestamp, RFC 3339, when it has one.
    pub timestamp: Option<String>,
    pub nodes: usize,
    pub edges: usize,
    /// Turn restrictions applied (relations that became forbidden turns).
    pub restrictions: usize,
}

/// How the network got ready, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    Loaded,
    Built,
}

impl Roads {
    /// Builds the network from `osm` (no storage).
    pub fn build(osm: &Path) -> Result<Roads> {
        let (net, header, counts) = build::network(osm)?;
        tracing::info!(
            tagged = counts.tagged,
            via_way = counts.via_way,
            applied = counts.applied,
            forbidden_turns = net.forbidden.len(),
            "turn restrictions"
        );
        let hierarchies = ch::prepare_all(&net)?;
        let info = Info {
            extract: osm
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            timestamp: header
                .timestamp
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            nodes: net.nodes.len(),
            edges: net.edges.len(),
            restrictions: counts.applied,
        };
        Ok(Roads::assemble(net, hierarchies, info))
    }

    fn assemble(net: Network, hierarchies: Vec<Hierarchy>, info: Info) -> Roads {
        let index = snap::Index::new(&net);
        Roads {
            turns: TurnGraph::new(&net),
            net,
            hierarchies,
            index,
            info,
            max_snap_meters: 1000.0,
        }
    }

    /// Loads the graph prepared from `osm` in `data_dir`, or builds and stores it.
    pub fn open(osm: &Path, data_dir: &Path) -> Result<(Roads, Origin)> {
        let started = Instant::now();
        let path = graph_path(data_dir, osm);
        match stored::load(&path, osm)? {
            stored::Loaded::Graph(net, hierarchies, info) => {
                tracing::info!(
                    graph = %path.display(), took_ms = started.elapsed().as_millis() as u64,
                    nodes = info.nodes, "road graph loaded"
                );
                return Ok((Roads::assemble(net, hierarchies, info), Origin::Loaded));
            }
            stored::Loaded::Stale(why) => {
                tracing::info!(graph = %path.display(), reason = %why, "preparing the road graph");
            }
        }
        let roads = Roads::build(osm)?;
        stored::save(&path, osm, &roads.net, &roads.hierarchies, &roads.info)?;
        tracing::info!(
            graph = %path.display(), took_ms = started.elapsed().as_millis() as u64,
            nodes = roads.info.nodes, edges = roads.info.edges, "road graph prepared and stored"
        );
        Ok((roads, Origin::Built))
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn hierarchy(&self, w: Weighting) -> &Hierarchy {
        self.hierarchies
            .iter()
            .find(|h| h.weighting == w)
            .expect("every weighting is prepared")
    }

    /// Snaps every point; the first one farther than `max_snap_meters` is an error naming it.
    pub fn snap_all(&self, points: &[Location]) -> std::result::Result<Vec<snap::Snap>, usize> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| match self.index.snap(&self.net, *p) {
                Some(s) if s.distance_m <= self.max_snap_meters => Ok(s),
                _ => Err(i),
            })
            .collect()
    }

    /// The ways out of a snapped point (as a source) or into it (as a target), in CH nodes.
    ///
    /// A source leaves over each arc of its edge it may drive, entering that arc's head (the
    /// copy of the head that arc enters, at a restricted via node). A target is reached over
    /// each arc of its edge, from that arc's tail and from every copy of the tail that may turn
    /// into the arc.
    fn entries(&self, s: &snap::Snap, w: Weighting, source: bool) -> Entries {
        let e = &self.net.edges[s.edge as usize];
        let share = s.offset_m / e.length_m as f64;
        let full = e.cost(w.avoid);
        let mut out = Vec::with_capacity(2);
        // Arc 2e runs a → b: the point is `share` along it; arc 2e + 1 runs b → a.
        for (arc, drivable, tail, before, after) in [
            (2 * s.edge, e.forward, e.a, share, 1.0 - share),
            (2 * s.edge + 1, e.backward, e.b, 1.0 - share, share),
        ] {
            if !drivable {
                continue;
            }
            if source {
                out.push((self.turns.head(arc), full.part(after)));
            } else {
                let cost = full.part(before);
                out.extend(
                    self.turns
                        .tails(&self.net, arc, tail)
                        .map(|node| (node, cost)),
                );
            }
        }
        out
    }

    /// Along the shared edge, when `to` lies ahead of `from` in a drivable direction.
    fn direct(&self, from: &snap::Snap, to: &snap::Snap, w: Weighting) -> Option<Cost> {
        if from.edge != to.edge {
            return None;
        }
        let e = &self.net.edges[from.edge as usize];
        let len = e.length_m as f64;
        let ahead = (e.forward && to.offset_m >= from.offset_m)
            || (e.backward && to.offset_m <= from.offset_m);
        ahead.then(|| {
            e.cost(w.avoid)
                .part((to.offset_m - from.offset_m).abs() / len)
        })
    }

    /// Costs between every pair of snapped points under `w`; `None` where unreachable.
    pub fn table(&self, snaps: &[snap::Snap], w: Weighting) -> Vec<Option<Cost>> {
        let h = self.hierarchy(w);
        let sources: Vec<Entries> = snaps.iter().map(|s| self.entries(s, w, true)).collect();
        let targets: Vec<Entries> = snaps.iter().map(|s| self.entries(s, w, false)).collect();
        let mut out = h.table(&sources, &targets);
        let n = snaps.len();
        for i in 0..n {
            for j in 0..n {
                let cell = &mut out[i * n + j];
                if i == j {
                    *cell = Some(Cost::default());
                } else if let Some(d) = self.direct(&snaps[i], &snaps[j], w)
                    && cell.is_none_or(|c| w.weight(d) <= w.weight(c))
                {
                    *cell = Some(d);
                }
            }
        }
        out
    }

    /// Driving cost from `from` to `to` under `w`, both snapped; `None` when either is off the
    /// network or no path exists.
    pub fn cost(&self, from: Location, to: Location, w: Weighting) -> Option<Cost> {
        let s = self.snap_all(&[from, to]).ok()?;
        let h = self.hierarchy(w);
        let via = h.table(
            &[self.entries(&s[0], w, true)],
            &[self.entries(&s[1], w, false)],
        )[0];
        match (via, self.direct(&s[0], &s[1], w)) {
            (Some(v), Some(d)) if w.weight(d) <= w.weight(v) => Some(d),
            (None, d) => d,
            (v, _) => v,
        }
    }

    /// The road geometry from `from` to `to` under `w`, snapped ends included.
    pub fn leg(&self, from: &snap::Snap, to: &snap::Snap, w: Weighting) -> Option<Vec<Location>> {
        let h = self.hierarchy(w);
        let path = h.path(&self.entries(from, w, true), &self.entries(to, w, false));
        let direct = self.direct(from, to, w);
        if let Some(d) = direct
            && path
                .as_ref()
                .is_none_or(|p| w.weight(d) <= w.weight(p.cost))
        {
            return Some(snap::part(&self.net, from.edge, from.offset_m, to.offset_m));
        }
        let path = path?;
        let mut out = vec![from.at];
        let fe = &self.net.edges[from.edge as usize];
        let exit = if self.turns.node(path.from) == fe.b {
            fe.length_m as f64
        } else {
            0.0
        };
        out.extend(snap::part(&self.net, from.edge, from.offset_m, exit));
        for &arc in &path.arcs {
            let e = &self.net.edges[(arc / 2) as usize];
            let pts = self.net.edge_points(e);
            match arc % 2 {
                0 => out.extend_from_slice(pts),
                _ => out.extend(pts.iter().rev()),
            }
        }
        let te = &self.net.edges[to.edge as usize];
        let entry = if self.turns.node(path.to) == te.b {
            te.length_m as f64
        } else {
            0.0
        };
        out.extend(snap::part(&self.net, to.edge, entry, to.offset_m));
        out.push(to.at);
        out.dedup();
        Some(out)
    }
}

/// A configured extract (`routing.osm_file`) must be readable at start; empty means none.
pub fn check_extract(osm_file: &str) -> Result<()> {
    if osm_file.is_empty() {
        return Ok(());
    }
    std::fs::File::open(osm_file)
        .map(drop)
        .map_err(|e| Error::Extract {
            path: osm_file.into(),
            message: e.to_string(),
        })
}

/// The weighting a request asks for.
pub fn weighting(prefs: &Preferences) -> Weighting {
    Weighting {
        objective: prefs.optimize_for.into(),
        avoid: network::Avoid {
            tolls: prefs.avoid_tolls,
            highways: prefs.avoid_highways,
        },
    }
}

/// JSON path of point `i` of a request's points (`start`, `stops[k]`, `end`).
fn point_field(i: usize, has_start: bool, stops: usize) -> String {
    match (i, has_start) {
        (0, true) => "start".into(),
        _ => {
            let k = i - usize::from(has_start);
            if k < stops {
                format!("stops[{k}]")
            } else {
                "end".into()
            }
        }
    }
}

impl CostMatrixSource for Roads {
    fn matrices(&self, points: &[Location], prefs: &Preferences) -> optimize::Result<Matrices> {
        self.matrices_named(points, prefs, |i| format!("points[{i}]"))
    }

    fn matrices_for_problem(
        &self,
        problem: &optimize::Problem,
        points: &[Location],
    ) -> optimize::Result<Matrices> {
        let has_start = problem.start.is_some();
        let stops = problem.stops.len();
        self.matrices_named(points, &problem.preferences, |i| {
            point_field(i, has_start, stops)
        })
    }

    fn honours_avoidances(&self) -> bool {
        true
    }

    fn cost_model(&self) -> CostModel {
        CostModel::Road {
            extract: self.info.extract.clone(),
            timestamp: self.info.timestamp.clone(),
        }
    }

    fn path_through(&self, points: &[Location], prefs: &Preferences) -> Option<Vec<Location>> {
        let snaps = self.snap_all(points).ok()?;
        let w = weighting(prefs);
        let mut out: Vec<Location> = Vec::new();
        for pair in snaps.windows(2) {
            let leg = self.leg(&pair[0], &pair[1], w)?;
            out.extend(leg);
        }
        out.dedup();
        Some(out)
    }
}

impl Roads {
    fn matrices_named(
        &self,
        points: &[Location],
        prefs: &Preferences,
        field: impl Fn(usize) -> String,
    ) -> optimize::Result<Matrices> {
        let snaps = self.snap_all(points).map_err(|i| {
            optimize::Error::unroutable(
                field(i),
                format!(
                    "no road a car may drive on within routing.max_snap_meters ({} m) of this \
                     point in {}",
                    self.max_snap_meters, self.info.extract
                ),
            )
        })?;
        let w = weighting(prefs);
        let table = self.table(&snaps, w);
        let n = points.len();
        if let Some(k) = table.iter().position(Option::is_none) {
            return Err(optimize::Error::unroutable(
                field(k % n),
                format!("no road route from {} to this point", field(k / n)),
            ));
        }
        let cells: Vec<Cost> = table.into_iter().map(|c| c.unwrap_or_default()).collect();
        let mut warnings = Vec::new();
        for (asked, name) in [
            (prefs.avoid_tolls, "avoidTolls"),
            (prefs.avoid_highways, "avoidHighways"),
        ] {
            if asked && cells.iter().any(|c| c.avoided > 0) {
                warnings.push(format!(
                    "{name}: some points can only be reached on the roads it avoids; those legs use them"
                ));
                break;
            }
        }
        Ok(Matrices {
            distance_meters: SquareMatrix::from_fn(n, |i, j| {
                cells[i * n + j].dist_cm as f64 / 100.0
            }),
            duration_seconds: SquareMatrix::from_fn(n, |i, j| {
                cells[i * n + j].time_ms as f64 / 1000.0
            }),
            snap_meters: Some(snaps.iter().map(|s| s.distance_m).collect()),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
