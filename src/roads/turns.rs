//! Turn restrictions in the hierarchies, by *node splitting* at restricted via nodes.
//!
//! The hierarchies are node-based: a node forgets which arc it was entered by, so it cannot
//! forbid a turn. Here every arc that is the `from` of some forbidden turn enters a node of its
//! own, a *copy* of its head, and a copy has outgoing edges only for the turns allowed from that
//! arc. All other arcs enter the plain node, which keeps every outgoing arc. So the graph the
//! hierarchies are prepared from (the *CH graph*) has the network's nodes `0..n` (same numbers)
//! followed by one copy per restricted from-arc, and an arc appears in it once from its tail and
//! once more from every copy at its tail that may turn into it.
//!
//! Why this rather than an edge-based (arc-to-arc) graph: only the few restricted junctions grow
//! (Andorra and Monaco have a few dozen restricted arcs against thousands of nodes), so the
//! hierarchies keep their size and their query speed; an edge-based graph doubles the nodes and
//! multiplies the edges everywhere to model the few turns that matter.
//!
//! Queries join the CH graph like this:
//! - a **source** on an edge leaves through the head of the arc it drives: the copy that arc
//!   enters, if it has one ([`TurnGraph::head`]);
//! - a **target** on an edge is reached over the arc it lies on, from that arc's tail: from the
//!   plain node and from every copy there that may turn into the arc ([`TurnGraph::tails`]);
//! - a path's arcs (unpacked from the hierarchy) are network arcs; its end nodes map back to
//!   network nodes with [`TurnGraph::node`].
//!
//! The CH graph is derived from the [`Network`] alone (its arcs and [`Network::forbidden`]), so
//! the stored format keeps only those and this is rebuilt on load.

use super::network::Network;

/// The CH graph's nodes: the network's and the copies of restricted via nodes.
#[derive(Debug, Clone)]
pub struct TurnGraph {
    nodes: u32,
    /// Per arc, the CH node it enters; `u32::MAX` for an arc its edge does not allow.
    head: Vec<u32>,
    /// Per network node, where its copies start in `copies` (one more entry at the end).
    first_copy: Vec<u32>,
    /// Per copy (CH node `nodes + k`): the network node and the arc that enters it.
    copies: Vec<(u32, u32)>,
}

impl TurnGraph {
    pub fn new(net: &Network) -> TurnGraph {
        let n = net.nodes.len();
        let mut head: Vec<u32> = (0..net.edges.len() as u32 * 2)
            .map(|arc| net.arc(arc).map_or(u32::MAX, |(_, to)| to))
            .collect();
        let mut copies: Vec<(u32, u32)> = net
            .forbidden
            .iter()
            .filter_map(|&(from, _)| net.arc(from).map(|(_, via)| (via, from)))
            .collect();
        copies.sort_unstable();
        copies.dedup();
        let mut first_copy = vec![0u32; n + 1];
        for &(via, _) in &copies {
            first_copy[via as usize + 1] += 1;
        }
        for i in 0..n {
            first_copy[i + 1] += first_copy[i];
        }
        for (k, &(_, arc)) in copies.iter().enumerate() {
            head[arc as usize] = (n + k) as u32;
        }
        TurnGraph {
            nodes: n as u32,
            head,
            first_copy,
            copies,
        }
    }

    /// How many nodes the CH graph has.
    pub fn nodes(&self) -> usize {
        self.nodes as usize + self.copies.len()
    }

    /// The network node of CH node `ch`.
    pub fn node(&self, ch: u32) -> u32 {
        match ch.checked_sub(self.nodes) {
            Some(k) => self.copies[k as usize].0,
            None => ch,
        }
    }

    /// The CH node arc `arc` enters.
    pub fn head(&self, arc: u32) -> u32 {
        self.head[arc as usize]
    }

    /// The copies of network node `v`, as `(CH node, arc entering it)`.
    fn copies_of(&self, v: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let range = self.first_copy[v as usize]..self.first_copy[v as usize + 1];
        range.map(move |k| (self.nodes + k, self.copies[k as usize].1))
    }

    /// The CH nodes arc `arc` (leaving network node `tail`) leaves from: `tail` itself, and
    /// every copy of `tail` whose arc may turn into `arc`.
    pub fn tails<'a>(
        &'a self,
        net: &'a Network,
        arc: u32,
        tail: u32,
    ) -> impl Iterator<Item = u32> + 'a {
        std::iter::once(tail).chain(
            self.copies_of(tail)
                .filter(move |&(_, from)| !net.forbids(from, arc))
                .map(|(ch, _)| ch),
        )
    }

    /// Every network node `v` can be arrived at as: itself and its copies (the tests' reference
    /// Dijkstra starts from them).
    #[cfg(test)]
    pub(crate) fn arrivals(&self, v: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(v).chain(self.copies_of(v).map(|(ch, _)| ch))
    }

    /// Every edge of the CH graph: `(network arc, from, to)` in CH nodes.
    pub fn arcs<'a>(&'a self, net: &'a Network) -> impl Iterator<Item = (u32, u32, u32)> + 'a {
        net.arcs().flat_map(move |(arc, from, _)| {
            let to = self.head(arc);
            self.tails(net, arc, from).map(move |f| (arc, f, to))
        })
    }
}
