//! The road network against the two extracts in `data/osm` (© OpenStreetMap contributors, ODbL).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::ch::{Objective, Weighting};
use super::network::{Avoid, Cost, Network};
use super::*;

pub(crate) fn extract(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("data/osm/{name}.osm.pbf"))
}

fn andorra() -> &'static Roads {
    static R: OnceLock<Roads> = OnceLock::new();
    R.get_or_init(|| Roads::build(&extract("andorra")).unwrap())
}

fn monaco() -> &'static Roads {
    static R: OnceLock<Roads> = OnceLock::new();
    R.get_or_init(|| Roads::build(&extract("monaco")).unwrap())
}

fn at(latitude: f64, longitude: f64) -> Location {
    Location {
        latitude,
        longitude,
    }
}

const FASTEST: Weighting = Weighting {
    objective: Objective::Time,
    avoid: Avoid {
        tolls: false,
        highways: false,
    },
};

/// Plain Dijkstra on the network's arcs, node to node: the reference for the hierarchies.
fn dijkstra(r: &Roads, w: Weighting, from: u32) -> Vec<u64> {
    let net = r.network();
    let mut out_arcs = vec![Vec::new(); net.nodes.len()];
    for (arc, f, t) in net.arcs() {
        let c = net.edges[(arc / 2) as usize].cost(w.avoid);
        out_arcs[f as usize].push((t, w.weight(c).max(1)));
    }
    let mut dist = vec![u64::MAX; net.nodes.len()];
    let mut heap = BinaryHeap::new();
    dist[from as usize] = 0;
    heap.push(Reverse((0u64, from)));
    while let Some(Reverse((d, v))) = heap.pop() {
        if d > dist[v as usize] {
            continue;
        }
        for &(t, w) in &out_arcs[v as usize] {
            if d + w < dist[t as usize] {
                dist[t as usize] = d + w;
                heap.push(Reverse((d + w, t)));
            }
        }
    }
    dist
}

#[test]
fn the_hierarchies_agree_with_dijkstra_on_every_weighting() {
    let r = andorra();
    let n = r.network().nodes.len() as u32;
    let nodes: Vec<u32> = (0..12).map(|i| (i * 7919 + 13) % n).collect();
    for w in Weighting::all() {
        let h = r.hierarchy(w);
        let entries: Vec<ch::Entries> = nodes.iter().map(|&v| vec![(v, Cost::default())]).collect();
        let table = h.table(&entries, &entries);
        for (i, &s) in nodes.iter().enumerate() {
            let reference = dijkstra(r, w, s);
            for (j, &t) in nodes.iter().enumerate() {
                let got = table[i * nodes.len() + j].map(|c| w.weight(c));
                assert_eq!(got, Some(reference[t as usize]), "{w:?} {s} → {t}");
                let path = h.path(&entries[i], &entries[j]).unwrap();
                assert_eq!(w.weight(path.cost), reference[t as usize]);
                // The unpacked arcs form a walk from s to t that costs what the table says.
                let mut at = s;
                let mut cost = Cost::default();
                for &arc in &path.arcs {
                    let (f, to) = r.network().arc(arc).unwrap();
                    assert_eq!(f, at);
                    at = to;
                    cost = cost.plus(r.network().edges[(arc / 2) as usize].cost(w.avoid));
                }
                assert_eq!(at, t);
                assert_eq!(cost, path.cost);
            }
        }
    }
}

#[test]
fn the_extracts_build_into_one_connected_network() {
    for r in [andorra(), monaco()] {
        assert!(r.info.nodes > 1000, "{:?}", r.info);
        let n = r.network().nodes.len();
        let w = FASTEST;
        let reach = dijkstra(r, w, 0);
        assert!(reach.iter().all(|d| *d != u64::MAX), "strongly connected");
        assert!(n == r.info.nodes);
    }
}

fn uses(r: &Roads, arcs: &[u32], flag: impl Fn(&network::Edge) -> bool) -> bool {
    arcs.iter()
        .any(|a| flag(&r.network().edges[(*a / 2) as usize]))
}

/// The path between two points under `w`, as arcs.
fn arcs_between(r: &Roads, from: Location, to: Location, w: Weighting) -> (Cost, Vec<u32>) {
    let s = r.snap_all(&[from, to]).unwrap();
    let p = r
        .hierarchy(w)
        .path(&r.entries(&s[0], w, true), &r.entries(&s[1], w, false))
        .unwrap();
    (p.cost, p.arcs)
}

#[test]
fn one_way_streets_make_the_two_directions_cost_differently() {
    let r = monaco();
    let net = r.network();
    let mut differing = 0;
    let mut tried = 0;
    for (i, e) in net.edges.iter().enumerate() {
        if !(e.forward && !e.backward && e.length_m > 60.0) {
            continue;
        }
        // Two points inside the edge, a quarter from each end.
        let quarter = e.length_m as f64 / 4.0;
        let inner = snap::part(net, i as u32, quarter, 3.0 * quarter);
        let (a, b) = (inner[0], inner[inner.len() - 1]);
        let snapped = r.snap_all(&[a, b]).unwrap();
        if snapped.iter().any(|s| s.edge != i as u32) {
            continue; // a parallel carriageway lies as close
        }
        tried += 1;
        if tried > 40 {
            break;
        }
        let ab = r.cost(a, b, FASTEST).unwrap();
        let ba = r.cost(b, a, FASTEST).unwrap();
        assert!(
            ab.time_ms <= ba.time_ms,
            "along a one-way edge is never slower"
        );
        if ba.time_ms > ab.time_ms {
            differing += 1;
        }
    }
    assert!(
        differing >= 30,
        "{differing} of 40 one-way edges cost more against their way"
    );
}

/// Over pairs of junctions whose fastest route uses stretches `flag` marks, the route under
/// `avoid` uses none unless its cost says it had to; returns (such pairs, pairs kept off them).
fn avoidance(r: &Roads, avoid: Avoid, flag: impl Fn(&network::Edge) -> bool) -> (usize, usize) {
    let nodes = &r.network().nodes;
    let w = Weighting { avoid, ..FASTEST };
    let (mut using, mut kept_off) = (0, 0);
    for i in 0..300 {
        let (a, b) = (
            nodes[(i * 37) % nodes.len()],
            nodes[(i * 101 + 7) % nodes.len()],
        );
        let (fast, arcs) = arcs_between(r, a, b, FASTEST);
        if !uses(r, &arcs, &flag) {
            continue;
        }
        using += 1;
        let (cost, arcs) = arcs_between(r, a, b, w);
        assert_eq!(cost.avoided > 0, uses(r, &arcs, &flag), "{a:?} → {b:?}");
        if cost.avoided == 0 {
            kept_off += 1;
            assert!(cost.time_ms >= fast.time_ms);
        }
    }
    (using, kept_off)
}

/// A and B joined by a fast toll motorway (2 km) and a slow free road (3 km); C hangs off the
/// motorway's middle by a toll slip road, so it can only be reached through a toll.
fn toll_valley() -> Roads {
    let p = |lon: f64| at(45.0, lon);
    let mut net = Network {
        nodes: vec![p(0.0), p(0.02), p(0.01)],
        ..Network::default()
    };
    let road = |net: &mut Network, a: u32, b: u32, via: Location, kmh: f32, toll: bool| {
        let first = net.points.len() as u32;
        let pts = [net.nodes[a as usize], via, net.nodes[b as usize]];
        let length = haversine(pts[0], pts[1]) + haversine(pts[1], pts[2]);
        net.points.extend_from_slice(&pts);
        net.edges.push(network::Edge {
            a,
            b,
            first_point: first,
            points: 3,
            length_m: length as f32,
            speed_kmh: kmh,
            forward: true,
            backward: true,
            toll,
            highway: toll,
        });
    };
    road(&mut net, 0, 1, p(0.01), 100.0, true);
    road(&mut net, 0, 1, at(45.01, 0.01), 30.0, false);
    road(&mut net, 2, 0, at(45.0, 0.005), 50.0, true);
    let hierarchies = ch::prepare_all(&net).unwrap();
    let info = Info {
        extract: "toll-valley".into(),
        timestamp: None,
        nodes: 3,
        edges: 3,
    };
    Roads::assemble(net, hierarchies, info)
}

fn haversine(a: Location, b: Location) -> f64 {
    crate::optimize::haversine_meters(a, b)
}

#[test]
fn avoid_tolls_takes_the_free_road_and_says_when_a_point_needs_a_toll() {
    let r = toll_valley();
    let (a, b) = (at(45.0, 0.0), at(45.0, 0.02));
    let no_tolls = Preferences {
        avoid_tolls: true,
        ..Preferences::default()
    };
    let fast = r.matrices(&[a, b], &Preferences::default()).unwrap();
    let free = r.matrices(&[a, b], &no_tolls).unwrap();
    assert!(
        fast.distance_meters.get(0, 1) < 1700.0,
        "through the toll motorway"
    );
    assert!(
        free.distance_meters.get(0, 1) > 2000.0,
        "over the free road"
    );
    assert!(free.duration_seconds.get(0, 1) > fast.duration_seconds.get(0, 1));
    assert!(free.warnings.is_empty(), "{:?}", free.warnings);
    let c = at(45.0, 0.004);
    let m = r.matrices(&[a, c], &no_tolls).unwrap();
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("avoidTolls"));
}

#[test]
fn avoid_highways_keeps_off_motorways_where_another_road_exists() {
    let highways = Avoid {
        tolls: false,
        highways: true,
    };
    let (using, kept_off) = avoidance(monaco(), highways, |e| e.highway);
    assert!(
        using > 0 && kept_off > 0,
        "{using} fastest routes on highways, {kept_off} avoided"
    );
}

#[test]
fn points_in_the_sea_or_off_the_map_do_not_snap_and_near_ones_report_their_distance() {
    let r = monaco();
    assert_eq!(r.snap_all(&[at(43.7384, 7.4246), at(43.70, 7.43)]), Err(1));
    assert_eq!(andorra().snap_all(&[at(42.38, 1.49)]), Err(0));
    let s = r.snap_all(&[at(43.7384, 7.4246)]).unwrap();
    assert!(s[0].distance_m < 100.0, "{:?}", s[0]);
}

#[test]
fn a_prepared_graph_is_loaded_rebuilt_when_damaged_and_when_the_extract_changes() {
    let dir = tempfile::tempdir().unwrap();
    let osm = dir.path().join("depot.osm.pbf");
    std::fs::copy(extract("monaco"), &osm).unwrap();
    let (built, origin) = Roads::open(&osm, dir.path()).unwrap();
    assert_eq!(origin, Origin::Built);
    let (loaded, origin) = Roads::open(&osm, dir.path()).unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(loaded.info, built.info);
    let (a, b) = (at(43.7384, 7.4246), at(43.7311, 7.4197));
    assert_eq!(loaded.cost(a, b, FASTEST), built.cost(a, b, FASTEST));
    // One flipped byte in the payload: the checksum fails, the graph is rebuilt.
    let graph = graph_path(dir.path(), &osm);
    let mut bytes = std::fs::read(&graph).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&graph, &bytes).unwrap();
    assert_eq!(Roads::open(&osm, dir.path()).unwrap().1, Origin::Built);
    assert_eq!(Roads::open(&osm, dir.path()).unwrap().1, Origin::Loaded);
    // Another extract under the same name: rebuilt from it.
    std::fs::copy(extract("andorra"), &osm).unwrap();
    let (other, origin) = Roads::open(&osm, dir.path()).unwrap();
    assert_eq!(origin, Origin::Built);
    assert_ne!(other.info.nodes, built.info.nodes);
    // A missing extract is an error naming it.
    let missing = dir.path().join("gone.osm.pbf");
    let err = Roads::open(&missing, dir.path()).unwrap_err().to_string();
    assert!(err.contains("gone.osm.pbf"), "{err}");
}
