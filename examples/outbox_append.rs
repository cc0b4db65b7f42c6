//! Durable append benchmark: throughput and latency of `Outbox::append` with 1 KiB payloads.
//!
//! ```sh
//! cargo run --release --example outbox_append [-- --events 60000]
//! ```
//!
//! For 1, 16 and 64 concurrent writers it appends `--events` single-event writes in `strict`
//! mode (fsync before each append returns, shared by group commit) and in `interval` mode, and
//! prints events/s, p50/p99 latency and fsyncs. As a baseline measured in the same run, the
//! same writers insert into sled directly and call `flush()` after each insert (no group commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use routegate::config::{Durability, Settings, StorageConfig};
use routegate::events::NewEvent;
use routegate::queue::{Outbox, Write};

const PAYLOAD: usize = 1024;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    fsyncs: u64,
}

async fn run_outbox(writers: usize, events: usize, durability: Durability) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = StorageConfig {
        data_dir: dir.path().into(),
        durability,
        max_queue_events: u64::MAX / 2,
        max_queue_bytes: u64::MAX / 2,
        ..Settings::default().storage
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).expect("open outbox");
    let payload = "x".repeat(PAYLOAD - 2);
    let per_writer = events / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (outbox, payload) = (outbox.clone(), payload.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let key = format!("vehicle-{}", (w * per_writer + i) % 100);
                    let e = NewEvent::now("vehicle.position", "bench", &key, None, &payload);
                    let t = Instant::now();
                    outbox
                        .append(Write {
                            events: vec![e],
                            records: vec![],
                        })
                        .await
                        .expect("append");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(events);
    for t in tasks {
        lat.extend(t.await.expect("writer task"));
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let fsyncs = outbox.stats().flushes;
    outbox.shutdown().await;
    Figures {
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        fsyncs,
    }
}

/// Baseline: each writer inserts and flushes on its own (a mutex serializes flushes, because
/// concurrent sled flushes can deadlock).
async fn run_naive(writers: usize, events: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(None)
        .cache_capacity(64 << 20)
        .open()
        .expect("open sled");
    let tree = db.open_tree("events").expect("tree");
    let flush = Arc::new(std::sync::Mutex::new(()));
    let per_writer = events / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (db, tree, flush) = (db.clone(), tree.clone(), flush.clone());
            tokio::task::spawn_blocking(move || {
                let value = vec![b'x'; PAYLOAD];
                let mut lat = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let t = Instant::now();
                    let id = db.generate_id().expect("id");
                    tree.insert(id.to_be_bytes(), value.as_slice())
                        .expect("insert");
                    let _g = flush.lock().expect("flush lock");
                    db.flush().expect("flush");
                    lat.push(t.elapsed());
                    let _ = (w, i);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(events);
    for t in tasks {
        lat.extend(t.await.expect("writer task"));
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    Figures {
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        fsyncs: lat.len() as u64,
    }
}

fn row(label: &str, writers: usize, f: &Figures) {
    println!(
        "| {label:<28} | {writers:>7} | {:>10.0} | {:>9.2} | {:>9.2} | {:>8} |",
        f.rate,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.fsyncs
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events = arg("--events", 60_000);
    println!("durable append, {PAYLOAD} B payloads, {events} single-event appends per run\n");
    println!(
        "| mode                         | writers |  events/s  |  p50 ms   |  p99 ms   |  fsyncs  |"
    );
    println!(
        "|------------------------------|---------|------------|-----------|-----------|----------|"
    );
    for writers in [1, 16, 64] {
        let strict = run_outbox(writers, events, Durability::Strict).await;
        row("routegate strict (fsync)", writers, &strict);
        let interval = run_outbox(writers, events, Durability::Interval).await;
        row("routegate interval (200 ms)", writers, &interval);
        let naive_events = if writers == 1 { events / 4 } else { events / 2 };
        let naive = run_naive(writers, naive_events).await;
        row("baseline: sled insert+flush", writers, &naive);
        println!(
            "|   strict vs baseline         | {writers:>7} | {:>9.1}x |           |           |          |",
            strict.rate / naive.rate
        );
    }
}
