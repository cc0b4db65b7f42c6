//! The road network against the two extracts in `data/osm` (© OpenStreetMap contributors, ODbL).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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

/// Plain Dijkstra on the network's arcs, arc to arc so that it honours the forbidden turns:
/// the reference for the hierarchies. The weight of reaching every node from `from`.
fn dijkstra(r: &Roads, w: Weighting, from: u32) -> Vec<u64> {
    let net = r.network();
    let mut out_arcs = vec![Vec::new(); net.nodes.len()];
    let mut weight = vec![0u64; net.edges.len() * 2];
    for (arc, f, _) in net.arcs() {
        let c = net.edges[(arc / 2) as usize].cost(w.avoid);
        weight[arc as usize] = w.weight(c).max(1);
        out_arcs[f as usize].push(arc);
    }
    let mut arc_dist = vec![u64::MAX; net.edges.len() * 2];
    let mut dist = vec![u64::MAX; net.nodes.len()];
    dist[from as usize] = 0;
    let mut heap = BinaryHeap::new();
    for &a in &out_arcs[from as usize] {
        arc_dist[a as usize] = weight[a as usize];
        heap.push(Reverse((weight[a as usize], a)));
    }
    while let Some(Reverse((d, a))) = heap.pop() {
        if d > arc_dist[a as usize] {
            continue;
        }
        let (_, v) = net.arc(a).unwrap();
        dist[v as usize] = dist[v as usize].min(d);
        for &b in &out_arcs[v as usize] {
            let next = d + weight[b as usize];
            if !net.forbids(a, b) && next < arc_dist[b as usize] {
                arc_dist[b as usize] = next;
                heap.push(Reverse((next, b)));
            }
        }
    }
    dist
}

#[test]
fn the_hierarchies_agree_with_dijkstra_on_every_weighting() {
    // Andorra's extract has no turn restrictions, Monaco's has: there the nodes include via
    // nodes of forbidden turns.
    for r in [andorra(), monaco()] {
        agree_with_dijkstra(r);
    }
}

fn agree_with_dijkstra(r: &Roads) {
    let net = r.network();
    let n = net.nodes.len() as u32;
    let mut nodes: Vec<u32> = (0..12).map(|i| (i * 7919 + 13) % n).collect();
    let vias = net.forbidden.iter().map(|&(f, _)| net.arc(f).unwrap().1);
    nodes.extend(vias.step_by(4).take(8));
    for w in Weighting::all() {
        let h = r.hierarchy(w);
        let sources: Vec<ch::Entries> = nodes.iter().map(|&v| vec![(v, Cost::default())]).collect();
        // A node as a target is reached by any arc: its copies too.
        let targets: Vec<ch::Entries> = nodes
            .iter()
            .map(|&v| r.turns.arrivals(v).map(|c| (c, Cost::default())).collect())
            .collect();
        let table = h.table(&sources, &targets);
        for (i, &s) in nodes.iter().enumerate() {
            let reference = dijkstra(r, w, s);
            for (j, &t) in nodes.iter().enumerate() {
                let got = table[i * nodes.len() + j].map(|c| w.weight(c));
                assert_eq!(got, Some(reference[t as usize]), "{w:?} {s} → {t}");
                let path = h.path(&sources[i], &targets[j]).unwrap();
                assert_eq!(w.weight(path.cost), reference[t as usize]);
                // The unpacked arcs form a walk from s to t without a forbidden turn that costs
                // what the table says.
                for pair in path.arcs.windows(2) {
                    assert!(!r.network().forbids(pair[0], pair[1]), "{pair:?}");
                }
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
        restrictions: 0,
    };
    Roads::assemble(net, hierarchies, info)
}

/// A town grid of `side × side` junctions 100 m apart: every tenth street is a fast avenue,
/// the rest residential, so the streets differ in speed but not in length.
fn town_grid(side: u32) -> Network {
    let mut net = Network::default();
    for i in 0..side {
        for j in 0..side {
            net.nodes
                .push(at(45.0 + f64::from(i) * 0.0009, f64::from(j) * 0.00127));
        }
    }
    let id = |i: u32, j: u32| i * side + j;
    let mut streets = Vec::new();
    for i in 0..side {
        for j in 0..side {
            if j + 1 < side {
                streets.push((id(i, j), id(i, j + 1), i % 10 == 0));
            }
            if i + 1 < side {
                streets.push((id(i, j), id(i + 1, j), j % 10 == 0));
            }
        }
    }
    for (a, b, avenue) in streets {
        let pts = [net.nodes[a as usize], net.nodes[b as usize]];
        net.edges.push(network::Edge {
            a,
            b,
            first_point: net.points.len() as u32,
            points: 2,
            length_m: haversine(pts[0], pts[1]) as f32,
            speed_kmh: if avenue { 50.0 } else { 30.0 },
            forward: true,
            backward: true,
            toll: false,
            highway: false,
        });
        net.points.extend_from_slice(&pts);
    }
    net
}

#[test]
fn the_distance_hierarchies_are_ordered_for_distance_not_for_time() {
    let net = town_grid(40);
    let hs = ch::prepare_all(&net).unwrap();
    let size = |objective: Objective| {
        hs.iter()
            .filter(|h| h.weighting.objective == objective && h.weighting.avoid == Avoid::default())
            .map(|h| h.edges())
            .sum::<usize>()
    };
    // Ordered for time, this one had 1.8 times the time hierarchy's edges (17 times on 100 × 100).
    let (time, distance) = (size(Objective::Time), size(Objective::Distance));
    assert!(
        4 * distance < 5 * time,
        "distance hierarchy has {distance} upward edges, the time hierarchy {time}"
    );
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
    // A graph of format version 1 (no turn restrictions): rebuilt, not misread.
    let mut bytes = std::fs::read(&graph).unwrap();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
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

// ---- Turn restrictions ----------------------------------------------------------------------

/// A plus-shaped junction C (OSM node 1) with arms S (2), N (3), W (4) and E (5) about 110 m
/// long, and a back road N – NW (6) – W; every road two-way residential, every way with a
/// middle point. Way 101 is S–C, 102 C–N, 103 C–W, 104 C–E, 105 N–NW, 106 NW–W.
fn junction(restrictions: &[build::Restriction]) -> Roads {
    let u = 0.001;
    let node = |lat: f64, lon: f64| at(45.0 + lat * u, 7.0 + lon * u);
    let coords: HashMap<i64, Location> = [
        (1, node(0.0, 0.0)),
        (2, node(-1.0, 0.0)),
        (3, node(1.0, 0.0)),
        (4, node(0.0, -1.0)),
        (5, node(0.0, 1.0)),
        (6, node(1.0, -1.0)),
        (12, node(-0.5, 0.0)),
        (13, node(0.5, 0.0)),
        (14, node(0.0, -0.5)),
        (15, node(0.0, 0.5)),
        (16, node(1.0, -0.5)),
        (17, node(0.5, -1.0)),
    ]
    .into_iter()
    .collect();
    let class = profile::classify([("highway", "residential")]).unwrap();
    let way = |id: i64, refs: &[i64]| build::Way {
        id,
        class,
        refs: refs.to_vec(),
    };
    let ways = [
        way(101, &[2, 12, 1]),
        way(102, &[1, 13, 3]),
        way(103, &[1, 14, 4]),
        way(104, &[1, 15, 5]),
        way(105, &[3, 16, 6]),
        way(106, &[6, 17, 4]),
    ];
    let (net, applied) = build::from_parts(&ways, &coords, restrictions);
    assert_eq!(applied, restrictions.len());
    let hierarchies = ch::prepare_all(&net).unwrap();
    let info = Info {
        extract: "junction".into(),
        timestamp: None,
        nodes: net.nodes.len(),
        edges: net.edges.len(),
        restrictions: applied,
    };
    Roads::assemble(net, hierarchies, info)
}

fn restriction(rule: profile::TurnRule, from: i64, to: i64) -> build::Restriction {
    build::Restriction {
        rule,
        from: vec![from],
        via: 1,
        to: vec![to],
    }
}

const C: Location = Location {
    latitude: 45.0,
    longitude: 7.0,
};

fn on_s_arm(l: &Location) -> bool {
    l.longitude == 7.0 && l.latitude < 45.0
}
fn on_n_arm(l: &Location) -> bool {
    l.longitude == 7.0 && l.latitude > 45.0
}
fn on_w_arm(l: &Location) -> bool {
    l.latitude == 45.0 && l.longitude < 7.0
}
fn on_e_arm(l: &Location) -> bool {
    l.latitude == 45.0 && l.longitude > 7.0
}

/// Whether `geometry` passes C coming from an arm `from` marks into an arm `to` marks.
fn turns_at_c(
    geometry: &[Location],
    from: impl Fn(&Location) -> bool,
    to: impl Fn(&Location) -> bool,
) -> bool {
    geometry
        .windows(3)
        .any(|w| w[1] == C && from(&w[0]) && to(&w[2]))
}

/// Heading north on the S arm, just before C; on the W, E and N arms just past it.
fn junction_points() -> [Location; 4] {
    [
        at(44.99975, 7.0),
        at(45.0, 6.99975),
        at(45.0, 7.00025),
        at(45.00025, 7.0),
    ]
}

#[test]
fn a_no_left_turn_forces_a_detour_in_every_query() {
    let [p, w_arm, _, _] = junction_points();
    let free = junction(&[]);
    let turned = junction(&[restriction(profile::TurnRule::No, 101, 103)]);
    assert_eq!(turned.network().forbidden.len(), 1);
    let short = free.cost(p, w_arm, FASTEST).unwrap();
    let long = turned.cost(p, w_arm, FASTEST).unwrap();
    assert!(
        long.time_ms > short.time_ms && long.dist_cm > short.dist_cm,
        "the left turn costs {short:?}, the detour {long:?}"
    );
    let snaps = turned.snap_all(&[p, w_arm]).unwrap();
    let table = turned.table(&snaps, FASTEST);
    assert_eq!(
        table[1],
        Some(long),
        "the matrix agrees with the one-to-one query"
    );
    let geometry = turned.leg(&snaps[0], &snaps[1], FASTEST).unwrap();
    assert!(!turns_at_c(&geometry, on_s_arm, on_w_arm), "{geometry:?}");
    let direct = free.leg(&snaps[0], &snaps[1], FASTEST).unwrap();
    assert!(turns_at_c(&direct, on_s_arm, on_w_arm), "{direct:?}");
    // The way back is a right turn from another way: not restricted.
    assert_eq!(turned.cost(w_arm, p, FASTEST), free.cost(w_arm, p, FASTEST));
    // Along the from way itself (the same edge) nothing changes.
    let behind = at(44.9993, 7.0);
    assert_eq!(
        turned.cost(behind, p, FASTEST),
        free.cost(behind, p, FASTEST)
    );
    let snaps = turned.snap_all(&[behind, p]).unwrap();
    let along = turned.leg(&snaps[0], &snaps[1], FASTEST).unwrap();
    assert!(along.iter().all(on_s_arm), "{along:?}");
}

#[test]
fn an_only_straight_on_forbids_every_other_turn() {
    let points = junction_points();
    let [p, w_arm, e_arm, n_arm] = points;
    let free = junction(&[]);
    let turned = junction(&[restriction(profile::TurnRule::Only, 101, 102)]);
    // Straight on is as before (the target on the N arm is reached from C's copy for S).
    assert_eq!(turned.cost(p, n_arm, FASTEST), free.cost(p, n_arm, FASTEST));
    for (target, arm) in [
        (e_arm, on_e_arm as fn(&Location) -> bool),
        (w_arm, on_w_arm),
    ] {
        let short = free.cost(p, target, FASTEST).unwrap();
        let long = turned.cost(p, target, FASTEST).unwrap();
        assert!(long.time_ms > short.time_ms, "{short:?} vs {long:?}");
        let snaps = turned.snap_all(&[p, target]).unwrap();
        let geometry = turned.leg(&snaps[0], &snaps[1], FASTEST).unwrap();
        assert!(!turns_at_c(&geometry, on_s_arm, arm), "{geometry:?}");
        assert!(!turns_at_c(&geometry, on_s_arm, on_s_arm), "no U-turn at C");
    }
    // The matrix gives what the one-to-one queries give.
    let snaps = turned.snap_all(&points).unwrap();
    let table = turned.table(&snaps, FASTEST);
    for (j, &q) in points.iter().enumerate().skip(1) {
        assert_eq!(table[j], turned.cost(p, q, FASTEST), "to point {j}");
    }
    // Into the N arm the route goes straight on.
    let geometry = turned.leg(&snaps[0], &snaps[3], FASTEST).unwrap();
    assert!(turns_at_c(&geometry, on_s_arm, on_n_arm), "{geometry:?}");
}

/// Every forbidden turn of the extracts, from the middle of its from arc's edge to the middle
/// of its to arc's: the route never takes a forbidden turn, the matrix and the path agree, and
/// the geometry exists.
#[test]
fn the_extracts_turn_restrictions_are_honoured() {
    for (name, r) in [("monaco", monaco()), ("andorra", andorra())] {
        let net = r.network();
        let (_, _, counts) = build::network(&extract(name)).unwrap();
        eprintln!(
            "{name}: {counts:?}, {} forbidden turns",
            net.forbidden.len()
        );
        assert_eq!(counts.applied, r.info.restrictions);
        let w = FASTEST;
        let mid = |arc: u32| {
            let len = net.edges[(arc / 2) as usize].length_m as f64;
            snap::Snap {
                edge: arc / 2,
                offset_m: len / 2.0,
                at: snap::part(net, arc / 2, len / 2.0, len / 2.0)[0],
                distance_m: 0.0,
            }
        };
        let mut bitten = 0;
        for &(f, t) in &net.forbidden {
            if f / 2 == t / 2 {
                continue;
            }
            let (s, d) = (mid(f), mid(t));
            let table = r.table(&[s, d], w);
            let path = r
                .hierarchy(w)
                .path(&r.entries(&s, w, true), &r.entries(&d, w, false))
                .unwrap();
            assert_eq!(table[1].map(|c| w.weight(c)), Some(w.weight(path.cost)));
            // The whole walk: the source's arc, the path, the target's arc.
            let se = &net.edges[s.edge as usize];
            let first = if r.turns.head(2 * s.edge) == path.from && se.forward {
                2 * s.edge
            } else {
                2 * s.edge + 1
            };
            let te = &net.edges[d.edge as usize];
            let last = if r.turns.node(path.to) == te.a && te.forward {
                2 * d.edge
            } else {
                2 * d.edge + 1
            };
            let mut walk = vec![first];
            walk.extend(&path.arcs);
            walk.push(last);
            for pair in walk.windows(2) {
                let (_, head) = net.arc(pair[0]).unwrap();
                let (tail, _) = net.arc(pair[1]).unwrap();
                assert_eq!(head, tail, "{name}: a connected walk");
                assert!(
                    !net.forbids(pair[0], pair[1]),
                    "{name}: forbidden turn {pair:?} taken from {f} to {t}"
                );
            }
            assert!(r.leg(&s, &d, w).is_some());
            let turn = w.weight(net.edges[(f / 2) as usize].cost(w.avoid).part(0.5))
                + w.weight(net.edges[(t / 2) as usize].cost(w.avoid).part(0.5));
            if w.weight(path.cost) > turn {
                bitten += 1;
            }
        }
        assert!(
            net.forbidden.is_empty() || bitten > 0,
            "{name}: no restriction changed a route"
        );
        eprintln!("{name}: {bitten} forbidden turns force a detour");
    }
}
