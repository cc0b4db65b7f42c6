//! Load generator: requests/s and p50/p99 latency of the API's hot paths, each compared with
//! `GET /health/live` on the same gateway in the same run.
//!
//! ```sh
//! cargo build --release --bin routegate
//! cargo run --release --example loadgen                      # starts its own gateway
//! cargo run --release --example loadgen -- --url http://127.0.0.1:4000 --seconds 20
//! ```
//!
//! Workloads, one after the other, each at `--connections` concurrent keep-alive connections
//! (default 64) for `--seconds` (default 10), after a short warm-up:
//!
//! * `health`: `GET /health/live` (the baseline: routing, no storage);
//! * `optimize`: `POST /traffic/routes/optimize` with 10 stops (solve, store, fsync);
//! * `positions`: `POST /traffic/vehicles/{id}/positions` with a batch of `--batch` fixes
//!   (default 10) for one of `--vehicles` vehicles (default 64), each with an active route.
//!
//! Without `--url` it starts `target/release/routegate serve` on a free port with a temporary
//! data directory, strict durability (fsync per group commit) and no reachable broker (events
//! wait on disk, as they would while Kafka is away), and stops it at the end. The gateway and
//! this client share the machine, so the ratios are the figures to compare across machines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "routegate load generator")]
struct Args {
    /// Target an existing gateway instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent connections per workload.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Fixes per position batch.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Distinct vehicles the requests are spread over (fewer: more concurrent updates of the
    /// same vehicle record, which the store serializes by compare-and-set).
    #[arg(long, default_value_t = 64)]
    vehicles: u64,
    /// The routegate binary to start (default: target/release/routegate next to this example).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Extra `--set key=value` for the gateway this run starts (repeatable), e.g.
    /// `storage.durability=interval`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

/// A gateway process this run started; stopped (SIGKILL) and its directory removed on drop.
struct Spawned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/release/examples/loadgen -> target/release/routegate
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("routegate"))
        .unwrap_or_else(|| PathBuf::from("target/release/routegate"))
}

fn spawn_gateway(binary: &Path, sets: &[String]) -> (Spawned, String) {
    assert!(
        binary.exists(),
        "{} not found: run `cargo build --release --bin routegate` first",
        binary.display()
    );
    // The gateway runs in a temporary working directory, so a relative path must be resolved now.
    let binary = binary.canonicalize().expect("the binary's absolute path");
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let child = Command::new(binary)
        .current_dir(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args([
            "--set",
            "kafka.brokers=127.0.0.1:9",
            "--set",
            "log.filter=error",
        ])
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .env_remove("ROUTEGATE_HTTP_API_TOKENS")
        .env_remove("ROUTEGATE_HTTP_RATE_LIMIT_PER_SECOND")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the gateway");
    let spawned = Spawned { child, _dir: dir };
    let addr_file = data.join("gateway.addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = std::fs::read_to_string(&addr_file)
            && !addr.trim().is_empty()
        {
            return (spawned, format!("http://{}", addr.trim()));
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one request of a workload looks like.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    Health,
    Optimize,
    Positions,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Health => "GET /health/live",
            Workload::Optimize => "POST optimize (10 stops)",
            Workload::Positions => "POST positions (batch)",
        }
    }
}

fn ten_stops(vehicle: &str, n: u64) -> Value {
    let stops: Vec<Value> = (0..10u64)
        .map(|i| {
            let jitter = ((n * 31 + i * 17) % 97) as f64 * 0.0005;
            json!({"id": format!("s{i}"), "latitude": 40.70 + 0.01 * ((i * 7) % 10) as f64 + jitter,
                   "longitude": -74.00 + 0.008 * i as f64 - jitter, "serviceMinutes": 2})
        })
        .collect();
    json!({"vehicleId": vehicle, "stops": stops})
}

fn fixes(batch: usize, n: u64) -> Value {
    let now = chrono::Utc::now();
    let items: Vec<Value> = (0..batch)
        .map(|i| {
            let t = now + chrono::Duration::milliseconds(i as i64 * 100);
            json!({"latitude": 40.70 + (n % 100) as f64 * 1e-4, "longitude": -74.0 + i as f64 * 1e-4,
                   "timestamp": t.to_rfc3339(), "speedKmh": 30.0})
        })
        .collect();
    Value::Array(items)
}

async fn one(
    client: &reqwest::Client,
    base: &str,
    w: Workload,
    n: u64,
    args: (usize, u64),
) -> bool {
    let (batch, vehicles) = args;
    let resp = match w {
        Workload::Health => client.get(format!("{base}/health/live")).send().await,
        Workload::Optimize => {
            let vehicle = format!("load-{}", n % vehicles);
            client
                .post(format!("{base}/traffic/routes/optimize"))
                .json(&ten_stops(&vehicle, n))
                .send()
                .await
        }
        Workload::Positions => {
            let url = format!("{base}/traffic/vehicles/load-{}/positions", n % vehicles);
            client.post(url).json(&fixes(batch, n)).send().await
        }
    };
    let outcome = match resp {
        Ok(r) if r.status().is_success() => r.bytes().await.map(drop).map_err(|e| e.to_string()),
        Ok(r) => Err(format!(
            "{} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        )),
        Err(e) => Err(format!("{e:?}")),
    };
    if let Err(e) = &outcome {
        static SHOWN: AtomicU64 = AtomicU64::new(0);
        if SHOWN.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("{} failed: {e}", w.name());
        }
    }
    outcome.is_ok()
}

/// Figures of one workload.
#[derive(Debug)]
struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: usize,
    errors: u64,
}

async fn run(client: &reqwest::Client, base: &str, w: Workload, args: &Args) -> Figures {
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs(args.seconds);
    let start = Instant::now() + warmup;
    let end = start + measure;
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (client, base) = (client.clone(), base.to_string());
            let (counter, errors) = (counter.clone(), errors.clone());
            let shape = (args.batch, args.vehicles);
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = one(&client, &base, w, n, shape).await;
                    if t0 >= start {
                        samples.push(t0.elapsed());
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        rate: all.len() as f64 / measure.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        requests: all.len(),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Give each load vehicle an active route, so that fixes refresh ETAs as in production.
async fn prepare(client: &reqwest::Client, base: &str, vehicles: u64) {
    for v in 0..vehicles.min(256) {
        let body = ten_stops(&format!("load-{v}"), v);
        let r = client
            .post(format!("{base}/traffic/routes/optimize"))
            .json(&body)
            .send()
            .await
            .expect("prepare a route");
        assert!(
            r.status().is_success(),
            "preparing routes failed: {}",
            r.status()
        );
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (_gateway, base) = match &args.url {
        Some(url) => (None, url.trim_end_matches('/').to_string()),
        None => {
            let binary = args.binary.clone().unwrap_or_else(default_binary);
            let (g, base) = spawn_gateway(&binary, &args.sets);
            (Some(g), base)
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    prepare(&client, &base, args.vehicles).await;
    println!(
        "routegate load: {base}, {} connections, {} s per workload, position batches of {}, {} cores",
        args.connections,
        args.seconds,
        args.batch,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let health = run(&client, &base, Workload::Health, &args).await;
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>9} {:>7} {:>10}",
        "workload", "requests", "req/s", "p50 ms", "p99 ms", "errors", "vs health"
    );
    let row = |w: Workload, f: &Figures| {
        println!(
            "{:<26} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>9.2}x",
            w.name(),
            f.requests,
            f.rate,
            f.p50_ms,
            f.p99_ms,
            f.errors,
            f.rate / health.rate.max(f64::MIN_POSITIVE)
        );
    };
    row(Workload::Health, &health);
    for w in [Workload::Optimize, Workload::Positions] {
        let f = run(&client, &base, w, &args).await;
        row(w, &f);
        if w == Workload::Positions {
            println!(
                "{:<26} {:>10.0} fixes/s",
                "  fixes recorded",
                f.rate * args.batch as f64
            );
        }
    }
}
