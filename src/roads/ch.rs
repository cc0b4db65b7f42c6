//! Contraction hierarchies: one per (objective, avoidances) *weighting*, prepared with the
//! `fast_paths` crate and queried here.
//!
//! `fast_paths` answers one-to-one queries; a cost matrix needs many-to-many, and the answer needs
//! the driving time, the distance and the avoided stretches of the path the weighting chose, not
//! only its weight. So the prepared graph is read into [`Hierarchy`]: upward edges per node, each
//! with its weight, its [`Cost`] (summed over the arcs a shortcut stands for) and how to unpack it.
//! The many-to-many query is the bucket algorithm (Knopp et al. 2007): an upward backward search
//! from each target leaves `(target, weight)` in a bucket at every node it settles; an upward
//! forward search from each source scans the buckets of the nodes it settles.
//!
//! **Weights.** The time weighting counts milliseconds, the distance weighting centimetres. A
//! stretch the request asks to avoid adds [`PENALTY_MS`] (or [`PENALTY_CM`]): a path uses one only
//! when no path without it exists (or is absurdly long), and its [`Cost::avoided`] says so.
//!
//! **Turns.** The hierarchies are prepared on the [`TurnGraph`], not on the network's nodes: a
//! node here is a network node or a copy of one that a restricted arc enters (see
//! [`turns`](super::turns)). Unpacked paths are network arcs; [`Path::from`] and [`Path::to`]
//! are CH nodes ([`TurnGraph::node`] maps them back).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fast_paths::InputGraph;
use serde::{Deserialize, Serialize};

use super::network::{Avoid, Cost, Network};
use super::turns::TurnGraph;
use super::{Error, Result};
use crate::optimize::OptimizeFor;

/// Ten hours: what an avoided stretch costs the time weighting on top of its driving time.
pub const PENALTY_MS: u64 = 36_000_000;
/// A thousand kilometres: the same for the distance weighting.
pub const PENALTY_CM: u64 = 100_000_000;

/// What a hierarchy minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Weighting {
    pub objective: Objective,
    pub avoid: Avoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Objective {
    Time,
    Distance,
}

impl From<OptimizeFor> for Objective {
    fn from(o: OptimizeFor) -> Objective {
        match o {
            OptimizeFor::Time => Objective::Time,
            OptimizeFor::Distance => Objective::Distance,
        }
    }
}

impl Weighting {
    /// Every weighting a request can ask for.
    pub fn all() -> Vec<Weighting> {
        let mut out = Vec::new();
        for objective in [Objective::Time, Objective::Distance] {
            for (tolls, highways) in [(false, false), (true, false), (false, true), (true, true)] {
                out.push(Weighting {
                    objective,
                    avoid: Avoid { tolls, highways },
                });
            }
        }
        out
    }

    pub fn weight(&self, c: Cost) -> u64 {
        match self.objective {
            Objective::Time => c.time_ms + PENALTY_MS * c.avoided as u64,
            Objective::Distance => c.dist_cm + PENALTY_CM * c.avoided as u64,
        }
    }
}

/// How an upward edge is made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Via {
    /// An arc of the network.
    Arc(u32),
    /// A shortcut over a lower node: first the backward edge `bwd` (into that node), then the
    /// forward edge `fwd` (out of it).
    Shortcut { bwd: u32, fwd: u32 },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct UpEdge {
    adj: u32,
    weight: u64,
    cost: Cost,
    via: Via,
}

/// A prepared weighting: forward edges lead from a node to higher ones, backward edges are
/// stored at the lower node and lead *into* it from the higher `adj`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hierarchy {
    pub weighting: Weighting,
    fwd_first: Vec<u32>,
    fwd: Vec<UpEdge>,
    bwd_first: Vec<u32>,
    bwd: Vec<UpEdge>,
}

/// `fast_paths`' prepared graph, field for field (its fields are private; serde reads them).
/// A change of its layout fails the conversion loudly, and the tests compare answers with its
/// own queries.
#[derive(Deserialize)]
struct Prepared {
    num_nodes: usize,
    ranks: Vec<usize>,
    edges_fwd: Vec<FastGraphEdge>,
    first_edge_ids_fwd: Vec<usize>,
    edges_bwd: Vec<FastGraphEdge>,
    first_edge_ids_bwd: Vec<usize>,
}

/// `fast_paths`' edge, field for field.
#[derive(Deserialize, Clone, Copy)]
struct FastGraphEdge {
    base_node: usize,
    adj_node: usize,
    weight: usize,
    replaced_in_edge: usize,
    replaced_out_edge: usize,
}

impl FastGraphEdge {
    fn is_shortcut(&self) -> bool {
        self.replaced_in_edge != usize::MAX
    }
}

/// `(from, to) → (weight, arc)` in CH nodes: the lightest of parallel arcs under one weighting.
type Lightest = HashMap<(u32, u32), (u64, u32)>;

/// The CH graph's edges under `w`, and the lightest arc of each pair of CH nodes.
fn input(net: &Network, turns: &TurnGraph, w: Weighting) -> (InputGraph, Lightest) {
    let mut best: HashMap<(u32, u32), (u64, u32)> = HashMap::new();
    for (arc, from, to) in turns.arcs(net) {
        let weight = w.weight(net.edges[(arc / 2) as usize].cost(w.avoid)).max(1);
        let slot = best.entry((from, to)).or_insert((weight, arc));
        if weight < slot.0 {
            *slot = (weight, arc);
        }
    }
    let mut g = InputGraph::new();
    let mut pairs: Vec<_> = best.iter().collect();
    pairs.sort_unstable();
    for (&(from, to), &(weight, _)) in pairs {
        g.add_edge(from as usize, to as usize, weight as usize);
    }
    g.freeze();
    (g, best)
}

/// Prepares every weighting. The node order found for an objective's first weighting is reused
/// for its avoid-variants (same topology, same weights but for penalties on a few stretches),
/// which is several times faster than ordering afresh. Each objective gets an order of its own:
/// on a town grid whose streets differ in speed but not in length, the time order made the
/// distance hierarchy 17 times as large and its preparation 500 times as slow.
pub fn prepare_all(net: &Network) -> Result<Vec<Hierarchy>> {
    let turns = TurnGraph::new(net);
    let mut out = Vec::new();
    let mut orders: HashMap<Objective, Vec<usize>> = HashMap::new();
    for w in Weighting::all() {
        let (g, arcs) = input(net, &turns, w);
        if g.get_num_nodes() < turns.nodes() {
            // fast_paths counts nodes up to the highest one with an edge; isolated tail nodes
            // cannot exist after the component filter (every copy has its arc in), but keep the
            // sizes honest.
            return Err(Error::Prepare(format!(
                "{} nodes have no arc",
                turns.nodes() - g.get_num_nodes()
            )));
        }
        let fast = match orders.get(&w.objective) {
            None => {
                let fast = fast_paths::prepare(&g);
                orders.insert(w.objective, fast_paths::get_node_ordering(&fast));
                fast
            }
            Some(order) => fast_paths::prepare_with_order(&g, order).map_err(Error::Prepare)?,
        };
        out.push(Hierarchy::from_prepared(&fast, w, net, &arcs)?);
    }
    Ok(out)
}

impl Hierarchy {
    fn from_prepared(
        fast: &fast_paths::FastGraph,
        weighting: Weighting,
        net: &Network,
        arcs: &Lightest,
    ) -> Result<Hierarchy> {
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(fast, config)
            .map_err(|e| Error::Prepare(e.to_string()))?;
        let (p, _): (Prepared, usize) = bincode::serde::decode_from_slice(&bytes, config)
            .map_err(|e| Error::Prepare(format!("unexpected fast_paths layout: {e}")))?;
        let n = p.num_nodes;
        let per_node = |first: &[usize], edges: &[FastGraphEdge]| -> (Vec<u32>, Vec<usize>) {
            // Edges are grouped by rank; regroup them by node.
            let mut order = Vec::with_capacity(edges.len());
            let mut firsts = Vec::with_capacity(n + 1);
            for node in 0..n {
                firsts.push(order.len() as u32);
                let r = p.ranks[node];
                order.extend(first[r]..first[r + 1]);
            }
            firsts.push(order.len() as u32);
            (firsts, order)
        };
        let (fwd_first, fwd_order) = per_node(&p.first_edge_ids_fwd, &p.edges_fwd);
        let (bwd_first, bwd_order) = per_node(&p.first_edge_ids_bwd, &p.edges_bwd);
        // New index of every old edge id, per direction.
        let renumber = |order: &[usize]| {
            let mut new = vec![0u32; order.len()];
            for (i, &old) in order.iter().enumerate() {
                new[old] = i as u32;
            }
            new
        };
        let (fwd_new, bwd_new) = (renumber(&fwd_order), renumber(&bwd_order));
        let mut costs = Costs {
            p: &p,
            net,
            weighting,
            arcs,
            fwd: vec![None; p.edges_fwd.len()],
            bwd: vec![None; p.edges_bwd.len()],
        };
        let mut edge = |forward: bool, old: usize| -> Result<UpEdge> {
            let e = if forward {
                p.edges_fwd[old]
            } else {
                p.edges_bwd[old]
            };
            let (cost, via) = costs.of(forward, old)?;
            let via = match via {
                Via::Arc(a) => Via::Arc(a),
                Via::Shortcut { bwd, fwd } => Via::Shortcut {
                    bwd: bwd_new[bwd as usize],
                    fwd: fwd_new[fwd as usize],
                },
            };
            Ok(UpEdge {
                adj: e.adj_node as u32,
                weight: e.weight as u64,
                cost,
                via,
            })
        };
        let fwd = fwd_order
            .iter()
            .map(|&o| edge(true, o))
            .collect::<Result<_>>()?;
        let bwd = bwd_order
            .iter()
            .map(|&o| edge(false, o))
            .collect::<Result<_>>()?;
        Ok(Hierarchy {
            weighting,
            fwd_first,
            fwd,
            bwd_first,
            bwd,
        })
    }

    pub fn nodes(&self) -> usize {
        self.fwd_first.len() - 1
    }

    /// Upward edges in both directions, shortcuts included: the size of the hierarchy.
    pub fn edges(&self) -> usize {
        self.fwd.len() + self.bwd.len()
    }

    fn edge(&self, forward: bool, i: u32) -> &UpEdge {
        if forward {
            &self.fwd[i as usize]
        } else {
            &self.bwd[i as usize]
        }
    }

    /// The arcs an upward edge stands for, in driving order.
    fn unpack(&self, forward: bool, i: u32, out: &mut Vec<u32>) {
        match self.edge(forward, i).via {
            Via::Arc(a) => out.push(a),
            Via::Shortcut { bwd, fwd } => {
                self.unpack(false, bwd, out);
                self.unpack(true, fwd, out);
            }
        }
    }
}

/// Costs of `fast_paths` edges (memoised: shortcuts share their parts).
struct Costs<'a> {
    p: &'a Prepared,
    net: &'a Network,
    weighting: Weighting,
    arcs: &'a Lightest,
    fwd: Vec<Option<(Cost, Via)>>,
    bwd: Vec<Option<(Cost, Via)>>,
}

impl Costs<'_> {
    fn of(&mut self, forward: bool, i: usize) -> Result<(Cost, Via)> {
        let memo = if forward { &self.fwd[i] } else { &self.bwd[i] };
        if let Some(known) = memo {
            return Ok(*known);
        }
        let e = if forward {
            self.p.edges_fwd[i]
        } else {
            self.p.edges_bwd[i]
        };
        let found = if e.is_shortcut() {
            let (first, _) = self.of(false, e.replaced_in_edge)?;
            let (second, _) = self.of(true, e.replaced_out_edge)?;
            let via = Via::Shortcut {
                bwd: e.replaced_in_edge as u32,
                fwd: e.replaced_out_edge as u32,
            };
            (first.plus(second), via)
        } else {
            // A forward edge runs base → adj; a backward one adj → base.
            let (from, to) = if forward {
                (e.base_node, e.adj_node)
            } else {
                (e.adj_node, e.base_node)
            };
            let &(_, arc) = self
                .arcs
                .get(&(from as u32, to as u32))
                .ok_or_else(|| Error::Prepare(format!("no arc {from} → {to}")))?;
            let cost = self.net.edges[(arc / 2) as usize].cost(self.weighting.avoid);
            (cost, Via::Arc(arc))
        };
        let slot = if forward {
            &mut self.fwd[i]
        } else {
            &mut self.bwd[i]
        };
        *slot = Some(found);
        Ok(found)
    }
}

/// Where a query starts or ends: up to two graph nodes, each with what it costs to get from the
/// point to the node (a source) or from the node to the point (a target).
pub type Entries = Vec<(u32, Cost)>;

/// One upward search's settled nodes: `(node, weight, cost, parent edge or u32::MAX)`.
struct Settled {
    weight: Vec<u64>,
    cost: Vec<Cost>,
    parent: Vec<u32>,
    touched: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
}

impl Settled {
    fn new(n: usize) -> Settled {
        Settled {
            weight: vec![u64::MAX; n],
            cost: vec![Cost::default(); n],
            parent: vec![u32::MAX; n],
            touched: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn reset(&mut self) {
        for &v in &self.touched {
            self.weight[v as usize] = u64::MAX;
            self.parent[v as usize] = u32::MAX;
        }
        self.touched.clear();
        self.heap.clear();
    }

    /// Upward Dijkstra from `entries`; afterwards `touched` lists every node reached.
    fn search(&mut self, h: &Hierarchy, forward: bool, entries: &Entries) {
        self.reset();
        let w = h.weighting;
        for &(node, cost) in entries {
            let weight = w.weight(cost);
            if weight < self.weight[node as usize] {
                self.relax(node, weight, cost, u32::MAX);
            }
        }
        let (first, edges) = if forward {
            (&h.fwd_first, &h.fwd)
        } else {
            (&h.bwd_first, &h.bwd)
        };
        while let Some(Reverse((weight, v))) = self.heap.pop() {
            if weight > self.weight[v as usize] {
                continue;
            }
            let base = self.cost[v as usize];
            let range = first[v as usize] as usize..first[v as usize + 1] as usize;
            for i in range {
                let e = &edges[i];
                let next = weight + e.weight;
                if next < self.weight[e.adj as usize] {
                    self.relax(e.adj, next, base.plus(e.cost), i as u32);
                }
            }
        }
    }

    fn relax(&mut self, v: u32, weight: u64, cost: Cost, parent: u32) {
        if self.weight[v as usize] == u64::MAX {
            self.touched.push(v);
        }
        self.weight[v as usize] = weight;
        self.cost[v as usize] = cost;
        self.parent[v as usize] = parent;
        self.heap.push(Reverse((weight, v)));
    }
}

impl Hierarchy {
    /// Costs of the lightest paths from every source to every target, row-major; `None` where
    /// no path exists.
    pub fn table(&self, sources: &[Entries], targets: &[Entries]) -> Vec<Option<Cost>> {
        let n = self.nodes();
        let mut search = Settled::new(n);
        // Buckets: per node, the targets whose backward search reached it.
        let mut bucket_items: Vec<(u32, u32, u64, Cost)> = Vec::new();
        for (t, entries) in targets.iter().enumerate() {
            search.search(self, false, entries);
            for &v in &search.touched {
                let (w, c) = (search.weight[v as usize], search.cost[v as usize]);
                bucket_items.push((v, t as u32, w, c));
            }
        }
        bucket_items.sort_unstable_by_key(|b| b.0);
        let mut bucket_first = vec![0u32; n + 1];
        for b in &bucket_items {
            bucket_first[b.0 as usize + 1] += 1;
        }
        for i in 0..n {
            bucket_first[i + 1] += bucket_first[i];
        }
        let mut out = vec![None; sources.len() * targets.len()];
        let mut best = vec![u64::MAX; targets.len()];
        for (s, entries) in sources.iter().enumerate() {
            search.search(self, true, entries);
            best.fill(u64::MAX);
            let row = &mut out[s * targets.len()..(s + 1) * targets.len()];
            for &v in &search.touched {
                let (w, c) = (search.weight[v as usize], search.cost[v as usize]);
                let range =
                    bucket_first[v as usize] as usize..bucket_first[v as usize + 1] as usize;
                for &(_, t, tw, tc) in &bucket_items[range] {
                    let total = w + tw;
                    if total < best[t as usize] {
                        best[t as usize] = total;
                        row[t as usize] = Some(c.plus(tc));
                    }
                }
            }
        }
        out
    }

    /// The lightest path from `source` to `target`: its cost, the arcs it drives, and the
    /// entry nodes it leaves the source by and reaches the target by.
    pub fn path(&self, source: &Entries, target: &Entries) -> Option<Path> {
        let n = self.nodes();
        let (mut fwd, mut bwd) = (Settled::new(n), Settled::new(n));
        fwd.search(self, true, source);
        bwd.search(self, false, target);
        let meet = fwd
            .touched
            .iter()
            .copied()
            .filter(|&v| bwd.weight[v as usize] != u64::MAX)
            .min_by_key(|&v| fwd.weight[v as usize] + bwd.weight[v as usize])?;
        let mut up = Vec::new();
        let mut v = meet;
        while fwd.parent[v as usize] != u32::MAX {
            let e = fwd.parent[v as usize];
            up.push(e);
            v = self.edge_base(true, e, v, &fwd);
        }
        let first = v;
        let mut arcs = Vec::new();
        for &e in up.iter().rev() {
            self.unpack(true, e, &mut arcs);
        }
        let mut v = meet;
        while bwd.parent[v as usize] != u32::MAX {
            let e = bwd.parent[v as usize];
            self.unpack(false, e, &mut arcs);
            v = self.edge_base(false, e, v, &bwd);
        }
        Some(Path {
            cost: fwd.cost[meet as usize].plus(bwd.cost[meet as usize]),
            arcs,
            from: first,
            to: v,
        })
    }

    /// The node an upward edge `e` (which reached `v`) starts from: found as the node of the
    /// search whose range holds `e`.
    fn edge_base(&self, forward: bool, e: u32, v: u32, s: &Settled) -> u32 {
        let first = if forward {
            &self.fwd_first
        } else {
            &self.bwd_first
        };
        // The edge's owner is the node whose range contains it.
        let owner = first.partition_point(|&f| f <= e) - 1;
        debug_assert_eq!(self.edge(forward, e).adj, v);
        debug_assert!(s.weight[owner] != u64::MAX);
        owner as u32
    }
}

/// A path found by [`Hierarchy::path`].
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub cost: Cost,
    pub arcs: Vec<u32>,
    /// The source's entry node (a CH node) the path leaves by.
    pub from: u32,
    /// The target's entry node (a CH node) the path arrives by.
    pub to: u32,
}
