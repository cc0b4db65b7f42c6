//! Route-optimizer benchmark: routegate against LKH-3, fast-tsp, VROOM and OR-Tools on the same
//! matrices.
//!
//! ```text
//! cargo run --release --example optimize_bench [-- --sizes 10,50,100 --seeds 3 --effort 1.0
//!                                                  --no-peers | --fresh-peers | --end-to-end]
//! ```
//!
//! Generates seeded geographic instances around a city, uniform and clustered (delivery zones),
//! with a depot at the centre; writes each great-circle × 1.3 matrix in integer metres (what the
//! peers need) under `target/optimize-bench/`; solves it with routegate through
//! `solve_with_matrix` on that very integer matrix, closed tour from the depot; then runs
//! `benches/optimize_peers.py` with the venv in `target/optimize-bench/venv` if present (create
//! it with `python3 -m venv target/optimize-bench/venv && target/optimize-bench/venv/bin/pip
//! install elkai fast-tsp pyvroom ortools`), else `python3`. Prints, per size and solver, the
//! mean and worst gap to the best tour anyone found, and the mean wall time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use routegate::optimize::{
    self, CostMatrixSource, Location, Matrices, OptimizeFor, Params, Preferences, Problem,
    SquareMatrix, Stop,
};

const CENTRE: Location = Location {
    latitude: 52.52,
    longitude: 13.405,
};
/// Half the side of the square the stops lie in, metres. Keeps every entry below 2^16 (fast-tsp
/// takes uint16 matrices).
const HALF_SIDE_M: f64 = 12_500.0;
const DETOUR: f64 = 1.3;

#[derive(Debug)]
struct Options {
    sizes: Vec<usize>,
    seeds: u64,
    peers: bool,
    fresh_peers: bool,
    end_to_end: bool,
    effort: f64,
}

fn options() -> Options {
    let mut o = Options {
        sizes: vec![10, 50, 100, 200, 500, 1000],
        seeds: 3,
        peers: true,
        fresh_peers: false,
        end_to_end: false,
        effort: 1.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                o.sizes = it
                    .next()
                    .expect("--sizes LIST")
                    .split(',')
                    .map(|s| s.parse().expect("size"))
                    .collect()
            }
            "--seeds" => o.seeds = it.next().expect("--seeds N").parse().expect("seeds"),
            "--effort" => o.effort = it.next().expect("--effort X").parse().expect("effort"),
            "--no-peers" => o.peers = false,
            "--end-to-end" => o.end_to_end = true,
            "--fresh-peers" => o.fresh_peers = true,
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// A depot at the centre plus `size` stops, uniform or in delivery zones.
fn instance(size: usize, clustered: bool, seed: u64) -> Vec<Location> {
    let mut rng =
        SmallRng::seed_from_u64(seed * 1_000_003 + size as u64 * 2 + u64::from(clustered));
    let deg_lat = 1.0 / 111_195.0;
    let deg_lon = deg_lat / CENTRE.latitude.to_radians().cos();
    let at = |dx: f64, dy: f64| Location {
        latitude: CENTRE.latitude + dy.clamp(-HALF_SIDE_M, HALF_SIDE_M) * deg_lat,
        longitude: CENTRE.longitude + dx.clamp(-HALF_SIDE_M, HALF_SIDE_M) * deg_lon,
    };
    let uniform = |rng: &mut SmallRng, scale: f64| {
        (
            rng.random_range(-scale..scale),
            rng.random_range(-scale..scale),
        )
    };
    let zones: Vec<(f64, f64)> = (0..(size / 20).max(2))
        .map(|_| uniform(&mut rng, 0.8 * HALF_SIDE_M))
        .collect();
    let mut points = vec![CENTRE];
    for _ in 0..size {
        let (dx, dy) = if clustered {
            let (cx, cy) = zones[rng.random_range(0..zones.len())];
            // Box-Muller: a zone is a Gaussian blob of about 800 m.
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            let r = 800.0 * (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            (cx + r * a.cos(), cy + r * a.sin())
        } else {
            uniform(&mut rng, HALF_SIDE_M)
        };
        points.push(at(dx, dy));
    }
    points
}

/// The integer matrix every solver sees.
fn int_matrix(points: &[Location]) -> Vec<Vec<u32>> {
    points
        .iter()
        .map(|&a| {
            points
                .iter()
                .map(|&b| (optimize::haversine_meters(a, b) * DETOUR).round() as u32)
                .collect()
        })
        .collect()
}

/// Hands routegate the benchmark's integer matrix, so all solvers optimise the same numbers.
#[derive(Debug)]
struct FixedMatrix<'a>(&'a [Vec<u32>]);

impl CostMatrixSource for FixedMatrix<'_> {
    fn matrices(
        &self,
        points: &[Location],
        _prefs: &optimize::Preferences,
    ) -> optimize::Result<Matrices> {
        let n = points.len();
        let d = SquareMatrix::from_fn(n, |i, j| f64::from(self.0[i][j]));
        let t = SquareMatrix::from_fn(n, |i, j| f64::from(self.0[i][j]) / (40.0 / 3.6));
        Ok(Matrices {
            distance_meters: d,
            duration_seconds: t,
            ..Default::default()
        })
    }
}

fn problem(points: &[Location]) -> Problem {
    Problem {
        stops: points[1..]
            .iter()
            .enumerate()
            .map(|(i, p)| Stop {
                id: (i + 1).to_string(),
                latitude: p.latitude,
                longitude: p.longitude,
                address: None,
                service_minutes: None,
                time_window: None,
            })
            .collect(),
        start: Some(points[0]),
        end: None,
        round_trip: true,
        departure_time: Some("2026-01-05T08:00:00+01:00".parse().expect("time")),
        preferences: Preferences {
            optimize_for: OptimizeFor::Distance,
            ..Preferences::default()
        },
    }
}

#[derive(Debug, Clone)]
struct Run {
    instance: String,
    size: usize,
    solver: String,
    cost: u64,
    seconds: f64,
    /// CPU time of the solving thread(s): wall time is meaningless on a busy shared machine.
    cpu: f64,
}

/// CPU seconds this thread has run, from `/proc/thread-self/schedstat` (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

fn tour_cost(m: &[Vec<u32>], tour: &[usize]) -> u64 {
    (0..tour.len())
        .map(|i| u64::from(m[tour[i]][tour[(i + 1) % tour.len()]]))
        .sum()
}

fn write_matrix(path: &Path, m: &[Vec<u32>]) {
    let mut s = String::with_capacity(m.len() * m.len() * 6);
    writeln!(s, "{}", m.len()).unwrap();
    for row in m {
        let line: Vec<String> = row.iter().map(u32::to_string).collect();
        writeln!(s, "{}", line.join(" ")).unwrap();
    }
    std::fs::write(path, s).expect("write matrix");
}

fn run_routegate(name: &str, size: usize, points: &[Location], m: &[Vec<u32>], effort: f64) -> Run {
    let params = Params {
        search_effort: effort,
        max_compute_ms: 60_000,
        ..Params::default()
    };
    let p = problem(points);
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let solution = optimize::solve_with_matrix(&p, &params, &FixedMatrix(m)).expect("solve");
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let o = &solution.optimization;
        eprintln!(
            "    {name}: {} iterations, limit reached: {}",
            o.iterations, o.time_limit_reached
        );
    }
    let mut tour = vec![0];
    tour.extend(
        solution
            .optimized_stops
            .iter()
            .map(|s| s.id.parse::<usize>().expect("id")),
    );
    Run {
        instance: name.to_owned(),
        size,
        solver: "routegate".to_owned(),
        cost: tour_cost(m, &tour),
        seconds,
        cpu,
    }
}

/// Runs the peers through the Python script, which keeps earlier results for unchanged
/// instances and settings unless `fresh`.
fn run_peers(
    dir: &Path,
    manifest: &serde_json::Value,
    sizes: &BTreeMap<String, usize>,
    fresh: bool,
) -> Vec<Run> {
    let manifest_path = dir.join("manifest.json");
    let out_path = dir.join("peers.json");
    if !call_python(dir, manifest, &manifest_path, &out_path, fresh) {
        return Vec::new();
    }
    let out: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).expect("read peers"))
            .expect("peers json");
    for (peer, status) in out["peers"].as_object().into_iter().flatten() {
        if status != "ok" {
            println!("peer {peer}: {status} (skipped)");
        }
    }
    out["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["instance"]
                .as_str()
                .is_some_and(|n| sizes.contains_key(n))
        })
        .map(|r| {
            let instance = r["instance"].as_str().expect("instance").to_owned();
            Run {
                size: sizes[&instance],
                instance,
                solver: r["solver"].as_str().expect("solver").to_owned(),
                cost: r["cost"].as_u64().expect("cost"),
                seconds: r["seconds"].as_f64().expect("seconds"),
                cpu: r["cpu"].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

fn call_python(
    dir: &Path,
    manifest: &serde_json::Value,
    manifest_path: &Path,
    out_path: &Path,
    fresh: bool,
) -> bool {
    std::fs::write(manifest_path, manifest.to_string()).expect("write manifest");
    let venv = dir.join("venv/bin/python");
    let python: PathBuf = if venv.exists() {
        venv
    } else {
        "python3".into()
    };
    println!("running peers with {}", python.display());
    let status = Command::new(&python)
        .arg("benches/optimize_peers.py")
        .arg(manifest_path)
        .arg(out_path)
        .args(fresh.then_some("--fresh"))
        .status();
    match status {
        Ok(s) if s.success() => true,
        other => {
            println!("PEERS DID NOT RUN ({other:?}); the table shows routegate only");
            false
        }
    }
}

fn table(runs: &[Run]) -> String {
    let mut best: BTreeMap<&str, u64> = BTreeMap::new();
    for r in runs {
        let b = best.entry(&r.instance).or_insert(u64::MAX);
        *b = (*b).min(r.cost);
    }
    let mut cells: BTreeMap<(usize, &str), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        cells.entry((r.size, &r.solver)).or_default().push(r);
    }
    let ms = |s: f64| {
        if s < 1.0 {
            format!("{:.1} ms", s * 1e3)
        } else {
            format!("{s:.2} s")
        }
    };
    let mut s = String::new();
    writeln!(
        s,
        "| stops | solver | instances | mean gap | worst gap | mean wall time | mean CPU time |"
    )
    .unwrap();
    writeln!(s, "|---:|---|---:|---:|---:|---:|---:|").unwrap();
    for ((size, solver), v) in &cells {
        let gap = |r: &Run| 100.0 * (r.cost as f64 / best[r.instance.as_str()] as f64 - 1.0);
        let count = v.len() as f64;
        let mean_gap = v.iter().map(|r| gap(r)).sum::<f64>() / count;
        let worst = v.iter().map(|r| gap(r)).fold(0.0, f64::max);
        let wall = v.iter().map(|r| r.seconds).sum::<f64>() / count;
        let cpu = v.iter().map(|r| r.cpu).sum::<f64>() / count;
        let cpu = if cpu.is_nan() {
            "n/a".to_owned()
        } else {
            ms(cpu)
        };
        writeln!(
            s,
            "| {size} | {solver} | {} | {mean_gap:.3}% | {worst:.3}% | {} | {cpu} |",
            v.len(),
            ms(wall)
        )
        .unwrap();
    }
    s
}

/// Windows of ±20 min around the arrivals of a shuffled order driven as given, 5 min of
/// service: a route meeting every window exists, but nothing hints at it.
fn feasible_windows(p: &mut Problem, rng: &mut SmallRng) {
    let day = p.departure_time.expect("set");
    let mut order: Vec<usize> = (0..p.stops.len()).collect();
    for k in (1..order.len()).rev() {
        order.swap(k, rng.random_range(0..=k));
    }
    let (mut t, mut at) = (day, p.start.expect("start"));
    for &k in &order {
        let s = &mut p.stops[k];
        let here = Location {
            latitude: s.latitude,
            longitude: s.longitude,
        };
        let secs = optimize::haversine_meters(at, here) * DETOUR / (40.0 / 3.6);
        t += chrono::Duration::milliseconds((secs * 1000.0) as i64);
        s.time_window = Some(optimize::TimeWindow {
            start: t - chrono::Duration::minutes(20),
            end: t + chrono::Duration::minutes(20),
        });
        s.service_minutes = Some(5.0);
        t += chrono::Duration::minutes(5);
        at = here;
    }
}

/// `optimize::solve` as the HTTP layer calls it: haversine matrix built inside, default
/// parameters (2 s cap), one uniform instance per size.
fn end_to_end(sizes: &[usize]) {
    println!("| stops | computeMillis | wall | CPU | limit reached | algorithm |");
    println!("|---:|---:|---:|---:|---|---|");
    let windows = std::env::var_os("BENCH_WINDOWS").is_some();
    let feasible = std::env::var("BENCH_WINDOWS").is_ok_and(|v| v == "feasible");
    for &size in sizes {
        let mut p = problem(&instance(size, false, 0));
        if windows {
            // Two-hour windows spread over a ten-hour day, five minutes of service per stop.
            let mut rng = SmallRng::seed_from_u64(size as u64);
            let day = p.departure_time.expect("set");
            for s in &mut p.stops {
                let open = day + chrono::Duration::minutes(rng.random_range(0..480));
                s.time_window = Some(optimize::TimeWindow {
                    start: open,
                    end: open + chrono::Duration::hours(2),
                });
                s.service_minutes = Some(5.0 * 500.0 / size.max(500) as f64);
            }
            if feasible {
                feasible_windows(&mut p, &mut rng);
            }
        }
        let (t0, cpu0) = (Instant::now(), cpu_seconds());
        let s = optimize::solve(&p, &Params::default()).expect("solve");
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let o = &s.optimization;
        println!(
            "| {size} | {} | {:.0} ms | {:.0} ms | {} | {} |{}",
            o.compute_millis,
            wall * 1e3,
            cpu * 1e3,
            o.time_limit_reached,
            o.algorithm,
            if windows {
                let missed = s
                    .optimized_stops
                    .iter()
                    .filter(|x| !x.time_window_met)
                    .count();
                format!(
                    " missed {missed} (input order: {:.0} s late, result: {:.0} s late)",
                    o.initial_lateness_seconds, s.total_lateness_seconds
                )
            } else {
                String::new()
            }
        );
    }
}

fn main() {
    let o = options();
    if o.end_to_end {
        return end_to_end(&o.sizes);
    }
    let dir = PathBuf::from("target/optimize-bench");
    std::fs::create_dir_all(&dir).expect("create target/optimize-bench");
    let mut runs = Vec::new();
    let mut manifest = Vec::new();
    let mut sizes = BTreeMap::new();
    for &size in &o.sizes {
        for clustered in [false, true] {
            for seed in 0..o.seeds {
                let kind = if clustered { "clustered" } else { "uniform" };
                let name = format!("{kind}-{size}-s{seed}");
                let points = instance(size, clustered, seed);
                let m = int_matrix(&points);
                let path = dir.join(format!("{name}.matrix"));
                write_matrix(&path, &m);
                let run = run_routegate(&name, size, &points, &m, o.effort);
                println!(
                    "  {name:<24} routegate {:>10} {:8.3}s cpu {:8.3}s",
                    run.cost, run.seconds, run.cpu
                );
                runs.push(run);
                sizes.insert(name.clone(), size);
                manifest.push(serde_json::json!({"name": name, "size": size, "matrix": path}));
            }
        }
    }
    if o.peers {
        let manifest = serde_json::json!({ "instances": manifest });
        runs.extend(run_peers(&dir, &manifest, &sizes, o.fresh_peers));
    }
    let t = table(&runs);
    println!("\n{t}");
    std::fs::write(dir.join("results.md"), &t).expect("write results");
}
