//! From an `.osm.pbf` extract to the road [`Network`]: routable ways split at junctions into
//! edges, each with its geometry, length and car speed, reduced to the largest strongly connected
//! component.
//!
//! The extract is read twice, streaming: first the ways (kept: the car's ways and their node
//! references; counted: how many ways use each node), then the nodes (kept: coordinates of
//! referenced nodes only). Memory is therefore proportional to the *road* part of the extract,
//! not to the extract: about 40 bytes per referenced node and 8 per reference.

use std::collections::HashMap;
use std::path::Path;

use osmpbf::{BlobDecode, BlobReader, Element, ElementReader};

use super::network::{Edge, Network};
use super::profile::{self, WayClass};
use super::{Error, Result};
use crate::optimize::{Location, haversine_meters};

struct Way {
    class: WayClass,
    refs: Vec<i64>,
}

/// What the extract's header says about it.
#[derive(Debug, Default, Clone)]
pub struct Header {
    /// The replication timestamp (seconds since the epoch), when the extract has one.
    pub timestamp: Option<i64>,
}

/// Reads the extract and builds the network.
pub fn network(osm: &Path) -> Result<(Network, Header)> {
    let unreadable = |e: osmpbf::Error| Error::Extract {
        path: osm.to_path_buf(),
        message: e.to_string(),
    };
    let header = header(osm).map_err(unreadable)?;
    let mut ways = Vec::new();
    let mut uses: HashMap<i64, u32> = HashMap::new();
    ElementReader::from_path(osm)
        .map_err(unreadable)?
        .for_each(|element| {
            if let Element::Way(w) = element
                && let Some(class) = profile::classify(w.tags())
            {
                let refs: Vec<i64> = w.refs().collect();
                if refs.len() >= 2 {
                    for r in &refs {
                        *uses.entry(*r).or_default() += 1;
                    }
                    ways.push(Way { class, refs });
                }
            }
        })
        .map_err(unreadable)?;
    // A way's two ends are graph nodes even when no other way touches them.
    for w in &ways {
        for end in [w.refs[0], w.refs[w.refs.len() - 1]] {
            *uses.get_mut(&end).expect("counted above") += 1;
        }
    }
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
    let network = split(&ways, &uses, &coords);
    Ok((largest_component(network), header))
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

/// Splits ways at every node two ways share (and at their ends) into edges. A stretch with a
/// node the extract lacks (a way cut at the extract's border) is dropped.
fn split(ways: &[Way], uses: &HashMap<i64, u32>, coords: &HashMap<i64, Location>) -> Network {
    let mut ids: HashMap<i64, u32> = HashMap::new();
    let mut net = Network::default();
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
            }
            start = Some(here);
            points.clear();
            points.push(at);
        }
    }
    net
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
fn largest_component(net: Network) -> Network {
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
        return net;
    };
    let mut renumber = vec![u32::MAX; n];
    let mut kept = Network::default();
    for (i, at) in net.nodes.iter().enumerate() {
        if comp[i] == keep {
            renumber[i] = kept.nodes.len() as u32;
            kept.nodes.push(*at);
        }
    }
    for e in &net.edges {
        let (a, b) = (renumber[e.a as usize], renumber[e.b as usize]);
        if a == u32::MAX || b == u32::MAX {
            continue;
        }
        let first = kept.points.len() as u32;
        kept.points.extend_from_slice(net.edge_points(e));
        kept.edges.push(Edge {
            a,
            b,
            first_point: first,
            ..*e
        });
    }
    kept
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
