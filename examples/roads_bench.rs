//! Road-network benchmark: routegate's graph and GraphHopper's, on the same extract, side by
//! side in one run.
//!
//! ```sh
//! mvn -q -f examples/graphhopper/pom.xml package -DskipTests   # once: the peer's jar
//! cargo run --release --example roads_bench [-- --osm data/osm/andorra.osm.pbf --pairs 1000]
//! ```
//!
//! Prints preparation time, load time, memory, one-to-one query time, 100×100 and 1,000×1,000
//! matrix times, and how far the two routers' distances and times agree over `--pairs` random
//! pairs of points on roads (random junctions of routegate's network, so both sides snap them
//! to the same road). `--no-peer` measures routegate alone. Both sides route cars by
//! fastest time; GraphHopper's car profile adds 90 s per km to its weight
//! (`distance_influence`), routegate minimises time only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use routegate::optimize::{CostMatrixSource, Location, Preferences};
use routegate::roads::Roads;
use routegate::roads::ch::{Objective, Weighting};
use routegate::roads::network::Avoid;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// routegate's side of the table.
struct Measured {
    prepare_ms: f64,
    load_ms: f64,
    rss_mib: f64,
    one_to_one_us: f64,
    matrix_100_ms: f64,
    matrix_1000_ms: f64,
    /// A 100-stop optimize request solved on road costs (matrix, search, geometry), median of 5.
    optimize_100_ms: f64,
    pairs: Vec<Option<(f64, f64)>>,
}

fn measure(
    osm: &Path,
    dir: &Path,
    pairs: &[(Location, Location)],
    points: &[Location],
) -> Measured {
    let started = Instant::now();
    let (built, _) = Roads::open(osm, dir).expect("build");
    let prepare_ms = ms(started);
    drop(built);
    let started = Instant::now();
    let (roads, origin) = Roads::open(osm, dir).expect("load");
    let load_ms = ms(started);
    assert_eq!(origin, routegate::roads::Origin::Loaded);
    let rss = rss_mib();
    let w = Weighting {
        objective: Objective::Time,
        avoid: Avoid::default(),
    };
    let one = |(a, b): &(Location, Location)| {
        roads
            .cost(*a, *b, w)
            .map(|c| (c.dist_cm as f64 / 100.0, c.time_ms as f64 / 1000.0))
    };
    let _warm: Vec<_> = pairs.iter().map(one).collect();
    let started = Instant::now();
    let results: Vec<_> = pairs.iter().map(one).collect();
    let one_to_one_us = started.elapsed().as_secs_f64() * 1e6 / pairs.len() as f64;
    let prefs = Preferences::default();
    let _ = roads.matrices(&points[..100], &prefs).expect("warm-up");
    let started = Instant::now();
    roads.matrices(&points[..100], &prefs).expect("100 × 100");
    let matrix_100_ms = ms(started);
    let started = Instant::now();
    roads.matrices(points, &prefs).expect("1000 × 1000");
    let matrix_1000_ms = ms(started);
    let stops: Vec<serde_json::Value> = points[..100]
        .iter()
        .enumerate()
        .map(|(i, p)| serde_json::json!({"id": format!("s{i}"), "latitude": p.latitude, "longitude": p.longitude}))
        .collect();
    let problem: routegate::optimize::Problem =
        serde_json::from_value(serde_json::json!({ "stops": stops })).expect("problem");
    let params = routegate::optimize::Params {
        now: Some(chrono::Utc::now()),
        ..Default::default()
    };
    // The median of five solves of the same request (the search is deterministic).
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let solution = routegate::optimize::solve_with_matrix(&problem, &params, &roads)
                .expect("100 stops");
            assert_eq!(solution.optimized_stops.len(), 100);
            ms(started)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    let optimize_100_ms = runs[runs.len() / 2];
    Measured {
        prepare_ms,
        load_ms,
        rss_mib: rss,
        one_to_one_us,
        matrix_100_ms,
        matrix_1000_ms,
        optimize_100_ms,
        pairs: results,
    }
}

fn write_points(path: &Path, lines: impl Iterator<Item = String>) {
    let text: Vec<String> = lines.collect();
    std::fs::write(path, text.join("\n") + "\n").expect("write points");
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let osm = PathBuf::from(arg("--osm").unwrap_or_else(|| "data/osm/andorra.osm.pbf".into()));
    let n_pairs: usize = arg("--pairs").map_or(1000, |v| v.parse().expect("--pairs N"));
    let work = tempfile::tempdir().expect("temp dir");
    // Points on roads: junctions of routegate's own network, chosen at random (fixed seed).
    let probe = Roads::build(&osm).expect("build");
    let nodes = &probe.network().nodes;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut pick = || nodes[rng.random_range(0..nodes.len())];
    let pairs: Vec<(Location, Location)> = (0..n_pairs).map(|_| (pick(), pick())).collect();
    let points: Vec<Location> = (0..1000).map(|_| pick()).collect();
    let info = probe.info.clone();
    drop(probe);
    let ours = measure(&osm, work.path(), &pairs, &points);
    let peer = if flag("--no-peer") {
        None
    } else {
        Some(graphhopper(&osm, work.path(), &pairs, &points))
    };
    println!(
        "extract {} ({} bytes): routegate {} nodes, {} edges",
        osm.display(),
        std::fs::metadata(&osm).map_or(0, |m| m.len()),
        info.nodes,
        info.edges
    );
    println!();
    println!("| measure | routegate | GraphHopper 10.2 | ratio (GH / routegate) |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, unit: &str, mine: f64, theirs: Option<f64>| {
        let (t, r) = match theirs {
            Some(t) => (format!("{t:.1} {unit}"), format!("{:.2}x", t / mine)),
            None => ("-".into(), "-".into()),
        };
        println!("| {name} | {mine:.1} {unit} | {t} | {r} |");
    };
    let gh = |k: &str| peer.as_ref().and_then(|p| p[k].as_f64());
    row("preparation", "ms", ours.prepare_ms, gh("prepare_ms"));
    row(
        "load of the prepared graph",
        "ms",
        ours.load_ms,
        gh("load_ms"),
    );
    row("RSS after load", "MiB", ours.rss_mib, gh("rss_mb"));
    row(
        "one-to-one query",
        "µs",
        ours.one_to_one_us,
        gh("one_to_one_us"),
    );
    row(
        "100 × 100 matrix",
        "ms",
        ours.matrix_100_ms,
        gh("matrix_100_ms"),
    );
    row(
        "1,000 × 1,000 matrix",
        "ms",
        ours.matrix_1000_ms,
        gh("matrix_1000_ms"),
    );
    row(
        "100-stop optimize on road costs (median of 5)",
        "ms",
        ours.optimize_100_ms,
        None,
    );
    if flag("--lkh") {
        lkh_gaps(&osm, work.path(), &nodes_sample(&osm));
    }
    let Some(peer) = peer else { return };
    let theirs = peer["pairs"].as_array().cloned().unwrap_or_default();
    let (mut dd, mut dt) = (Vec::new(), Vec::new());
    let mut compared = 0;
    for (mine, theirs) in ours.pairs.iter().zip(&theirs) {
        let (Some((md, mt)), Some(td), Some(tt)) = (
            mine,
            theirs["distance_m"].as_f64(),
            theirs["time_s"].as_f64(),
        ) else {
            continue;
        };
        if td < 1.0 {
            continue;
        }
        compared += 1;
        dd.push((md - td).abs() / td * 100.0);
        dt.push((mt - tt).abs() / tt.max(1.0) * 100.0);
    }
    println!();
    println!("agreement over {compared} of {n_pairs} random on-road pairs (both routed):");
    println!("| | median | 90th percentile |");
    println!("|---|---:|---:|");
    println!(
        "| distance difference | {:.1}% | {:.1}% |",
        median(dd.clone()),
        percentile(dd, 0.9)
    );
    println!(
        "| time difference | {:.1}% | {:.1}% |",
        median(dt.clone()),
        percentile(dt, 0.9)
    );
}

/// Runs the GraphHopper peer on the same inputs and returns its JSON report.
fn graphhopper(
    osm: &Path,
    work: &Path,
    pairs: &[(Location, Location)],
    points: &[Location],
) -> serde_json::Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let jar = root.join("examples/graphhopper/target/graphhopper-peer.jar");
    if !jar.exists() {
        let status = Command::new("mvn")
            .args(["-q", "-f"])
            .arg(root.join("examples/graphhopper/pom.xml"))
            .args(["package", "-DskipTests"])
            .status()
            .expect("mvn");
        assert!(status.success(), "building the GraphHopper peer failed");
    }
    let at = |l: &Location| format!("{} {}", l.latitude, l.longitude);
    let pairs_file = work.join("pairs.txt");
    write_points(
        &pairs_file,
        pairs.iter().map(|(a, b)| format!("{} {}", at(a), at(b))),
    );
    let p100 = work.join("points100.txt");
    write_points(&p100, points[..100].iter().map(at));
    let p1000 = work.join("points1000.txt");
    write_points(&p1000, points.iter().map(at));
    let out = work.join("graphhopper.json");
    let status = Command::new("java")
        .arg("-Xmx4g")
        .arg("-jar")
        .arg(&jar)
        .arg("--osm")
        .arg(osm)
        .arg("--cache")
        .arg(work.join("gh-cache"))
        .arg("--pairs")
        .arg(&pairs_file)
        .arg("--matrix100")
        .arg(&p100)
        .arg("--matrix1000")
        .arg(&p1000)
        .arg("--no-verify")
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("java");
    assert!(status.success(), "the GraphHopper peer failed");
    serde_json::from_slice(&std::fs::read(&out).expect("peer output")).expect("peer JSON")
}

/// 1,000 random junctions of the network (fixed seed), for the quality instances.
fn nodes_sample(osm: &Path) -> Vec<Location> {
    let roads = Roads::build(osm).expect("build");
    let nodes = &roads.network().nodes;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    (0..1000)
        .map(|_| nodes[rng.random_range(0..nodes.len())])
        .collect()
}

/// Routegate's round trips against LKH-3's on the same asymmetric matrices.
fn lkh_gaps(osm: &Path, work: &Path, pool: &[Location]) {
    let roads = Roads::build(osm).expect("build");
    let prefs = Preferences::default();
    let mut rows = Vec::new();
    for n in [100usize, 200] {
        for seed in 0..5u64 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let pts: Vec<Location> = (0..n)
                .map(|_| pool[rng.random_range(0..pool.len())])
                .collect();
            let m = roads.matrices(&pts, &prefs).expect("matrix");
            let ms: Vec<Vec<u64>> = (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| (m.duration_seconds.get(i, j) * 1000.0).round() as u64)
                        .collect()
                })
                .collect();
            let stops: Vec<serde_json::Value> = pts
                .iter()
                .enumerate()
                .map(|(i, p)| serde_json::json!({"id": i.to_string(), "latitude": p.latitude, "longitude": p.longitude}))
                .collect();
            let problem: routegate::optimize::Problem =
                serde_json::from_value(serde_json::json!({"stops": stops, "roundTrip": true}))
                    .expect("problem");
            let params = routegate::optimize::Params {
                now: Some(chrono::Utc::now()),
                max_compute_ms: 60_000,
                ..Default::default()
            };
            let started = Instant::now();
            let s =
                routegate::optimize::solve_with_matrix(&problem, &params, &roads).expect("solve");
            let took = ms_since(started);
            let order: Vec<usize> = s
                .optimized_stops
                .iter()
                .map(|st| st.id.parse().expect("index id"))
                .collect();
            let ours: u64 = (0..n).map(|k| ms[order[k]][order[(k + 1) % n]]).sum();
            let file = work.join(format!("lkh-{n}-{seed}.json"));
            std::fs::write(&file, serde_json::to_vec(&ms).expect("json")).expect("write");
            rows.push((n, seed, ours, took, file));
        }
    }
    let files: Vec<String> = rows.iter().map(|r| r.4.display().to_string()).collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(LKH_SCRIPT)
        .args(&files)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "elkai failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("an LKH tour cost"))
        .collect();
    println!();
    println!(
        "route quality on {} driving times (asymmetric; round trips, integer ms):",
        osm.display()
    );
    println!("| stops | instances | mean gap to LKH-3 | worst gap | routegate solve time (mean) |");
    println!("|---:|---:|---:|---:|---:|");
    for n in [100usize, 200] {
        let (mut gaps, mut times) = (Vec::new(), Vec::new());
        for (row, lkh) in rows.iter().zip(&theirs) {
            if row.0 == n {
                gaps.push((row.2 as f64 - *lkh as f64) / *lkh as f64 * 100.0);
                times.push(row.3);
            }
        }
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let worst = gaps.iter().cloned().fold(f64::MIN, f64::max);
        let time = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "| {n} | {} | {mean:.2}% | {worst:.2}% | {time:.0} ms |",
            gaps.len()
        );
    }
}

fn ms_since(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Solves each matrix file with LKH-3 (elkai) and prints the tour's cost, one per line.
const LKH_SCRIPT: &str = r#"
import json, sys
import elkai
for path in sys.argv[1:]:
    m = json.load(open(path))
    tour = elkai.solve_int_matrix(m)
    n = len(tour)
    print(sum(m[tour[k]][tour[(k + 1) % n]] for k in range(n)))
"#;
