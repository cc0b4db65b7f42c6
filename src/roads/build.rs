//! From an `.osm.pbf` extract to the road [`Network`]: routable ways split at junctions into
//! edges, each with its geometry, length and car speed, reduced to the largest strongly connected
//! component.
//!
//! The extract is read twice, streaming: first the ways (kept: the car's ways and their node
//! references; counted: how many ways use each node), then the nodes (kept: coordinates of
//! referenced nodes only). Memory is therefore proportional to the *road* part of the extract,
//! not to the extract: about 40 bytes per referenced node and 8 per reference.
//!
//! # Turn restrictions
//!
//! The first pass also keeps the relations that restrict a car's turns ([`profile::turn_rule`])
//! with one `via` *node* and `from` / `to` ways. Restrictions with a `via` *way* (a U-turn over
//! a dual carriageway's crossing, say) are counted and skipped: node splitting models one
//! junction, not a sequence of them. After the split and the component filter each restriction
//! is mapped onto arcs: its *from arcs* are the arcs of the `from` way(s) that end at the via
//! node, its *to arcs* the arcs of the `to` way(s) that start there (a `from` way that runs
//! through the via node, which OSM's rules do not allow, contributes both its arcs into it).
//! `no_*` forbids every from arc → to arc turn; `only_*` forbids every other turn out of each
//! from arc at the via node, the U-turn included. A restriction whose via node, from arcs or to
//! arcs are not in the kept network (a way cut off, not drivable that way, or not a car's road)
//! is dropped. The forbidden turns end in [`Network::forbidden`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use osmpbf::{BlobDecode, BlobReader, Element, ElementReader, RelMemberType};

use super::network::{Edge, Network};
use super::profile::{self, TurnRule, WayClass};
use super::{Error, Result};
use crate::optimize::{Location, haversine_meters};

/// A way a car may use, with its OSM id and node references.
pub(crate) struct Way {
    pub id: i64,
    pub class: WayClass,
    pub refs: Vec<i64>,
}

/// A turn restriction as the extract tags it (OSM ids).
#[derive(Debug, Clone)]
pub(crate) struct Restriction {
    pub rule: TurnRule,
    pub from: Vec<i64>,
    pub via: i64,
    pub to: Vec<i64>,
}

/// How many turn restrictions the extract has and how many the network applies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestrictionCounts {
    /// Relations that bind a car (`type=restriction`, see [`profile::turn_rule`]).
    pub tagged: usize,
    /// Of those, with a `via` way: skipped.
    pub via_way: usize,
    /// Of those, malformed (no `from`, `to` or `via`, or several via nodes): skipped.
    pub malformed: usize,
    /// Mapped onto the kept network's arcs.
    pub applied: usize,
}

/// What the extract's header says about it.
#[derive(Debug, Default, Clone)]
pub struct Header {
    /// The replication timestamp (seconds since the epoch), when the extract has one.
    pub timestamp: Option<i64>,
}

/// Reads the extract and builds the network.
pub fn network(osm: &Path) -> Result<(Network, Header, RestrictionCounts)> {
    let unreadable = |e: osmpbf::Error| Error::Extract {
        path: osm.to_path_buf(),
        message: e.to_string(),
    };
    let header = header(osm).map_err(unreadable)?;
    let mut ways = Vec::new();
    let mut restrictions = Vec::new();
    let mut counts = RestrictionCounts::default();
    ElementReader::from_path(osm)
        .map_err(unreadable)?
        .for_each(|element| match element {
            Element::Way(w) => {
                if let Some(class) = profile::classify(w.tags()) {
                    let refs: Vec<i64> = w.refs().collect();
                    if refs.len() >= 2 {
                        ways.push(Way {
                            id: w.id(),
                            class,
                            refs,
                        });
                    }
                }
            }
            Element::Relation(r) => {
                if let Some(rule) = profile::turn_rule(r.tags()) {
                    counts.tagged += 1;
                    match restriction(rule, &r) {
                        Ok(found) => restrictions.push(found),
                        Err(Skipped::ViaWay) => counts.via_way += 1,
                        Err(Skipped::Malformed) => counts.malformed += 1,
                    }
                }
            }
            _ => {}
        })
        .map_err(unreadable)?;
    let uses = node_uses(&ways);
    let mut coords: HashMap<i64, Location> = HashMap::with_capacity(uses.len());
    ElementReader::from_path(osm)
        .map_err(unreadable)?
        .for_each(|element| {
            let (id, lat, lon) = match element {
                Element::DenseNode(n) => (n.id(), n.lat(), n.lon()),
                Element::Node(n) => (n.id(), n.lat(), n.lon()),
                _ => return,
            };
            if uses.contains_key(&id) {
                coords.insert(
                    id,
                    Location {
                        latitude: lat,
                        longitude: lon,
                    },
                );
            }
        })
        .map_err(unreadable)?;
    if ways.is_empty() {
        return Err(Error::Extract {
            path: osm.to_path_buf(),
            message: "the extract holds no road a car may drive on".into(),
        });
    }
    let (net, applied) = assemble(&ways, &uses, &coords, &restrictions);
    counts.applied = applied;
    Ok((net, header, counts))
}

enum Skipped {
    ViaWay,
    Malformed,
}

/// A restriction relation's members.
fn restriction(rule: TurnRule, r: &osmpbf::Relation) -> std::result::Result<Restriction, Skipped> {
    let (mut from, mut to, mut via) = (Vec::new(), Vec::new(), Vec::new());
    for m in r.members() {
        match (m.role().unwrap_or(""), m.member_type) {
            ("from", RelMemberType::Way) => from.push(m.member_id),
            ("to", RelMemberType::Way) => to.push(m.member_id),
            ("via", RelMemberType::Node) => via.push(m.member_id),
            ("via", RelMemberType::Way) => return Err(Skipped::ViaWay),
            _ => {}
        }
    }
    match via[..] {
        [via] if !from.is_empty() && !to.is_empty() => Ok(Restriction {
            rule,
            from,
            via,
            to,
        }),
        _ => Err(Skipped::Malformed),
    }
}

/// How many ways use each node; a way's two ends count once more, so they are graph nodes
/// even when no other way touches them.
fn node_uses(ways: &[Way]) -> HashMap<i64, u32> {
    let mut uses: HashMap<i64, u32> = HashMap::new();
    for w in ways {
        for r in &w.refs {
            *uses.entry(*r).or_default() += 1;
        }
    }
    for w in ways {
        for end in [w.refs[0], w.refs[w.refs.len() - 1]] {
            *uses.get_mut(&end).expect("counted above") += 1;
        }
    }
    uses
}

/// The network from ways, node coordinates and restrictions already read: split, reduced to
/// the largest strongly connected component, restrictions applied. Also returns how many
/// restrictions were applied.
fn assemble(
    ways: &[Way],
    uses: &HashMap<i64, u32>,
    coords: &HashMap<i64, Location>,
    restrictions: &[Restriction],
) -> (Network, usize) {
    let mut split = largest_component(split(ways, uses, coords));
    let applied = split.apply(restrictions);
    (split.net, applied)
}

/// [`assemble`] for tests: the network of `ways` over `coords`, with `restrictions`.
#[cfg(test)]
pub(crate) fn from_parts(
    ways: &[Way],
    coords: &HashMap<i64, Location>,
    restrictions: &[Restriction],
) -> (Network, usize) {
    assemble(ways, &node_uses(ways), coords, restrictions)
}

fn header(osm: &Path) -> std::result::Result<Header, osmpbf::Error> {
    let mut reader = BlobReader::from_path(osm)?;
    let Some(first) = reader.next() else {
        return Ok(Header::default());
    };
    let timestamp = match first?.decode()? {
        BlobDecode::OsmHeader(h) => h.osmosis_replication_timestamp(),
        _ => None,
    };
    Ok(Header { timestamp })
}

/// The network with the OSM ids it was built from, while restrictions still need them.
struct Split {
    net: Network,
    /// OSM node id → network node.
    nodes: HashMap<i64, u32>,
    /// Per edge, the OSM way it is a stretch of.
    ways: Vec<i64>,
}

/// Splits ways at every node two ways share (and at their ends) into edges. A stretch with a
/// node the extract lacks (a way cut at the extract's border) is dropped.
fn split(ways: &[Way], uses: &HashMap<i64, u32>, coords: &HashMap<i64, Location>) -> Split {
    let mut ids: HashMap<i64, u32> = HashMap::new();
    let mut net = Network::default();
    let mut edge_ways = Vec::new();
    let mut node = |net: &mut Network, osm_id: i64, at: Location| -> u32 {
        *ids.entry(osm_id).or_insert_with(|| {
            net.nodes.push(at);
            (net.nodes.len() - 1) as u32
        })
    };
    for way in ways {
        let mut start: Option<u32> = None;
        let mut points: Vec<Location> = Vec::new();
        for r in &way.refs {
            let Some(&at) = coords.get(r) else {
                start = None;
                points.clear();
                continue;
            };
            points.push(at);
            let junction = uses.get(r).copied().unwrap_or(0) >= 2;
            if !junction {
                continue;
            }
            let here = node(&mut net, *r, at);
            if let Some(from) = start
                && from != here
                && points.len() >= 2
            {
                net.push_edge(from, here, &points, way.class);
                edge_ways.push(way.id);
            }
            start = Some(here);
            points.clear();
            points.push(at);
        }
    }
    Split {
        net,
        nodes: ids,
        ways: edge_ways,
    }
}

impl Split {
    /// Maps `restrictions` onto arcs (see the [module docs](self)) into
    /// [`Network::forbidden`]; returns how many were applied.
    fn apply(&mut self, restrictions: &[Restriction]) -> usize {
        let net = &self.net;
        let named: HashSet<i64> = restrictions
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to).copied())
            .collect();
        let mut edges_of: HashMap<i64, Vec<u32>> = HashMap::new();
        for (e, way) in self.ways.iter().enumerate() {
            if named.contains(way) {
                edges_of.entry(*way).or_default().push(e as u32);
            }
        }
        let vias: HashSet<u32> = restrictions
            .iter()
            .filter_map(|r| self.nodes.get(&r.via).copied())
            .collect();
        let mut out_of: HashMap<u32, Vec<u32>> = HashMap::new();
        for (arc, from, _) in net.arcs() {
            if vias.contains(&from) {
                out_of.entry(from).or_default().push(arc);
            }
        }
        // The arcs of `ways` that end at `via` (into) or start there (out of it).
        let arcs = |ways: &[i64], via: u32, into: bool| -> Vec<u32> {
            let mut out = Vec::new();
            for e in ways.iter().filter_map(|w| edges_of.get(w)).flatten() {
                for arc in [2 * e, 2 * e + 1] {
                    if let Some((f, t)) = net.arc(arc)
                        && (if into { t } else { f }) == via
                    {
                        out.push(arc);
                    }
                }
            }
            out
        };
        let mut forbidden = Vec::new();
        let mut applied = 0;
        for r in restrictions {
            let Some(&via) = self.nodes.get(&r.via) else {
                continue;
            };
            let (from, to) = (arcs(&r.from, via, true), arcs(&r.to, via, false));
            if from.is_empty() || to.is_empty() {
                continue;
            }
            applied += 1;
            for &f in &from {
                match r.rule {
                    TurnRule::No => forbidden.extend(to.iter().map(|&t| (f, t))),
                    TurnRule::Only => forbidden.extend(
                        out_of
                            .get(&via)
                            .into_iter()
                            .flatten()
                            .filter(|a| !to.contains(a))
                            .map(|&t| (f, t)),
                    ),
                }
            }
        }
        forbidden.sort_unstable();
        forbidden.dedup();
        self.net.forbidden = forbidden;
        applied
    }
}

impl Network {
    fn push_edge(&mut self, a: u32, b: u32, points: &[Location], class: WayClass) {
        let length: f64 = points
            .windows(2)
            .map(|w| haversine_meters(w[0], w[1]))
            .sum();
        let first = self.points.len() as u32;
        self.points.extend_from_slice(points);
        self.edges.push(Edge {
            a,
            b,
            first_point: first,
            points: points.len() as u32,
            length_m: length.max(0.1) as f32,
            speed_kmh: class.speed_kmh as f32,
            forward: class.forward,
            backward: class.backward,
            toll: class.toll,
            highway: class.highway,
        });
    }
}

/// Keeps the largest strongly connected component (a stop snapped to an island could not be
/// reached, or not left), renumbering nodes and dropping edges outside it.
fn largest_component(split: Split) -> Split {
    let Split { net, nodes, ways } = split;
    let n = net.nodes.len();
    let mut out_arcs: Vec<Vec<u32>> = vec![Vec::new(); n];
    for e in &net.edges {
        if e.forward {
            out_arcs[e.a as usize].push(e.b);
        }
        if e.backward {
            out_arcs[e.b as usize].push(e.a);
        }
    }
    let comp = tarjan(&out_arcs);
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    for c in &comp {
        *sizes.entry(*c).or_default() += 1;
    }
    let Some((&keep, _)) = sizes
        .iter()
        .max_by_key(|(c, s)| (**s, std::cmp::Reverse(**c)))
    else {
        return Split { net, nodes, ways };
    };
    let mut renumber = vec![u32::MAX; n];
    let mut kept = Network::default();
    let mut kept_ways = Vec::new();
    for (i, at) in net.nodes.iter().enumerate() {
        if comp[i] == keep {
            renumber[i] = kept.nodes.len() as u32;
            kept.nodes.push(*at);
        }
    }
    for (e, way) in net.edges.iter().zip(ways) {
        let (a, b) = (renumber[e.a as usize], renumber[e.b as usize]);
        if a == u32::MAX || b == u32::MAX {
            continue;
        }
        kept_ways.push(way);
        let first = kept.points.len() as u32;
        kept.points.extend_from_slice(net.edge_points(e));
        kept.edges.push(Edge {
            a,
            b,
            first_point: first,
            ..*e
        });
    }
    let nodes = nodes
        .into_iter()
        .filter_map(|(id, v)| {
            let v = renumber[v as usize];
            (v != u32::MAX).then_some((id, v))
        })
        .collect();
    Split {
        net: kept,
        nodes,
        ways: kept_ways,
    }
}

/// Strongly connected components (Tarjan, iterative): a component id per node.
fn tarjan(out_arcs: &[Vec<u32>]) -> Vec<u32> {
    let n = out_arcs.len();
    const UNSEEN: u32 = u32::MAX;
    let (mut index, mut low) = (vec![UNSEEN; n], vec![0u32; n]);
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSEEN; n];
    let (mut stack, mut next_index, mut next_comp) = (Vec::new(), 0u32, 0u32);
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, next arc to look at)
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut arc)) = work.last_mut() {
            if let Some(&w) = out_arcs[v].get(*arc) {
                *arc += 1;
                let w = w as usize;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarjan_finds_cycles_and_one_way_tails() {
        // 0 ⇄ 1 → 2 ⇄ 3, 4 alone.
        let arcs = vec![vec![1], vec![0, 2], vec![3], vec![2], vec![]];
        let c = tarjan(&arcs);
        assert_eq!(c[0], c[1]);
        assert_eq!(c[2], c[3]);
        assert_ne!(c[0], c[2]);
        assert_ne!(c[4], c[0]);
        assert_ne!(c[4], c[2]);
    }
}
