//! Drain benchmark: a 1,000,000-event backlog into a real Kafka broker, side by side with
//! Kafka's own `ProducerPerformance` on the same broker in the same run.
//!
//! ```sh
//! cargo build --release && cargo run --release --example outbox_drain [-- --events 1000000]
//! ```
//!
//! 1. Starts a single-node Kafka 4.1 broker (the test harness's, with the full JIT and a 1 GiB
//!    heap).
//! 2. Writes the backlog: `--events` events with 1 KiB JSON values into a fresh data directory.
//! 3. Starts the release `routegate serve` binary on that directory and measures the startup
//!    time (spawn until `/health/ready` answers 200), then the drain: until the outbox is empty,
//!    sampling the process's RSS every 100 ms. Kafka's end offsets confirm the count.
//! 4. Runs `ProducerPerformance` with the same record count and size, `acks=all`, the same
//!    compression, on a topic with the same partitions.
//!
//! `--gateway-set key=value` passes a configuration override to the gateway. Both sides use
//! `compression none` by default (`--compression lz4` to compare with it), and
//! the values are random hex so compression cannot flatter either side.

#[path = "../tests/integration/harness/kafka/mod.rs"]
#[allow(dead_code, unsafe_code)]
mod kafka;

#[path = "bench_support/mod.rs"]
#[allow(dead_code)]
mod bench_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::{Gateway, Rss, end_offsets, fs_size, gateway_binary};
use rand::{Rng, SeedableRng};
use routegate::config::{Durability, Settings, StorageConfig};
use routegate::events::NewEvent;
use routegate::queue::{Outbox, Write};

const PARTITIONS: u32 = 3;
const VALUE_BYTES: usize = 1024;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Extra `--gateway-set key=value` options, passed to the gateway as `--set key=value`.
fn gateway_sets() -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|w| w[0] == "--gateway-set")
        .map(|w| w[1].clone())
        .collect()
}

async fn write_backlog(dir: &Path, topic: &str, events: usize) -> Duration {
    let cfg = StorageConfig {
        data_dir: dir.into(),
        durability: Durability::Interval,
        max_queue_events: u64::MAX / 2,
        max_queue_bytes: u64::MAX / 2,
        ..Settings::default().storage
    };
    let outbox = Outbox::open(&dir.join("db"), &cfg, &[]).expect("open outbox");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let started = Instant::now();
    let mut written = 0;
    while written < events {
        let batch = (events - written).min(1000);
        let events = (0..batch)
            .map(|i| {
                let bytes: Vec<u8> = (0..(VALUE_BYTES - 16) / 2).map(|_| rng.random()).collect();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let key = format!("vehicle-{}", (written + i) % 1000);
                NewEvent::now(
                    "vehicle.position",
                    topic,
                    &key,
                    None,
                    &serde_json::json!({"v": hex}),
                )
            })
            .collect();
        outbox
            .append(Write {
                events,
                records: vec![],
            })
            .await
            .expect("append");
        written += batch;
    }
    outbox.shutdown().await;
    started.elapsed()
}

async fn start_gateway(
    dir: &Path,
    bootstrap: &str,
    compression: &str,
) -> (Gateway, String, Duration) {
    let _ = std::fs::remove_file(dir.join("gateway.addr"));
    let started = Instant::now();
    let child = Command::new(gateway_binary())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--set", &format!("kafka.brokers={bootstrap}")])
        .args(["--set", &format!("kafka.compression={compression}")])
        .args(["--set", &format!("kafka.topic_partitions={PARTITIONS}")])
        .args(gateway_sets().iter().flat_map(|kv| ["--set", kv.as_str()]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start routegate");
    let gw = Gateway(child);
    let client = reqwest::Client::new();
    loop {
        if let Ok(addr) = std::fs::read_to_string(dir.join("gateway.addr")) {
            let base = format!("http://{}", addr.trim());
            if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
                && r.status() == 200
            {
                return (gw, base, started.elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn queue_depth(client: &reqwest::Client, base: &str) -> Option<u64> {
    let r = client
        .get(format!("{base}/traffic/routes/kafka-health"))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["queueDepth"].as_u64()
}

/// `ProducerPerformance`'s summary line → records/s.
fn perf_rate(stdout: &str) -> Option<f64> {
    let line = stdout.lines().rev().find(|l| l.contains("records sent"))?;
    let after = line.split(',').nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: outbox_drain [--events N] [--compression none|lz4|…] [--gateway-set KEY=VALUE]...\n\n\
             Drains an N-event backlog (default 1000000) from the release gateway into a Kafka broker\n\
             started for the run, beside Kafka's ProducerPerformance. Needs `cargo build --release`."
        );
        return;
    }
    let events: usize = arg("--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let compression = arg("--compression").unwrap_or_else(|| "none".into());
    println!(
        "drain benchmark: {events} events, {VALUE_BYTES} B values, {PARTITIONS} partitions, compression {compression}, acks=all\n"
    );

    let cluster = kafka::KafkaCluster::start_with(kafka::ClusterOptions {
        broker_jvm_flags: vec![
            "-XX:TieredStopAtLevel=4".into(),
            "-Xms1g".into(),
            "-Xmx1g".into(),
        ],
        ..Default::default()
    })
    .await;
    let topic = kafka::unique_topic("drain-bench");
    cluster.create_topic(&topic, PARTITIONS as i32, 1).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let fill = write_backlog(dir.path(), &topic, events).await;
    let disk = fs_size(&dir.path().join("db"));
    println!(
        "backlog written in {:.1} s ({} MiB on disk)",
        fill.as_secs_f64(),
        disk >> 20
    );

    let (gw, base, startup) = start_gateway(dir.path(), &cluster.bootstrap(), &compression).await;
    let pid = gw.0.id();
    let client = reqwest::Client::new();
    let drain_started = Instant::now() - startup;
    let at_ready = Rss::of(pid);
    let mut peak_rss = at_ready;
    loop {
        peak_rss = peak_rss.peak(Rss::of(pid));
        if queue_depth(&client, &base).await == Some(0) {
            break;
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(1800),
            "drain did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = drain_started.elapsed();
    drop(gw);
    let delivered = end_offsets(&cluster, &topic).await;
    let drain_rate = events as f64 / drain.as_secs_f64();

    let perf_topic = kafka::unique_topic("perf-bench");
    cluster
        .create_topic(&perf_topic, PARTITIONS as i32, 1)
        .await;
    let props = format!(
        "bootstrap.servers={} acks=all compression.type={compression}",
        cluster.bootstrap()
    );
    let mut perf_args = vec![
        "--topic".to_string(),
        perf_topic.clone(),
        "--num-records".into(),
        events.to_string(),
        "--record-size".into(),
        VALUE_BYTES.to_string(),
        "--throughput".into(),
        "-1".into(),
        "--producer-props".into(),
    ];
    perf_args.extend(props.split(' ').map(str::to_string));
    let perf_args: Vec<&str> = perf_args.iter().map(String::as_str).collect();
    let out = cluster
        .run_tool_with_jvm_flags(
            "org.apache.kafka.tools.ProducerPerformance",
            &["-XX:TieredStopAtLevel=4", "-Xmx1g"],
            &perf_args,
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let perf = perf_rate(&stdout).unwrap_or_else(|| {
        panic!(
            "no summary from ProducerPerformance: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| startup with {events} queued (spawn → ready) | {:.2} s |",
        startup.as_secs_f64()
    );
    println!(
        "| routegate drain | {drain_rate:.0} events/s ({:.1} s) |",
        drain.as_secs_f64()
    );
    println!("| Kafka ProducerPerformance (acks=all) | {perf:.0} records/s |");
    println!(
        "| drain / ProducerPerformance | {:.2}x |",
        drain_rate / perf
    );
    println!(
        "| peak RSS of the gateway while draining | {:.0} MiB ({:.0} anonymous, {:.0} file-backed) |",
        peak_rss.total as f64 / 1024.0,
        peak_rss.anon as f64 / 1024.0,
        peak_rss.file as f64 / 1024.0
    );
    println!(
        "| RSS of the gateway when ready, before the drain | {:.0} MiB ({:.0} anonymous) |",
        at_ready.total as f64 / 1024.0,
        at_ready.anon as f64 / 1024.0
    );
    println!("| records in Kafka (end offsets) | {delivered} (of {events}) |");
}
