//! Consumer benchmark: 1,000,000 GPS-fix records read from a real Kafka broker by the gateway's
//! `[[kafka.consume]]` consumers (`forward`, then `positions`), side by side with Kafka's own
//! `ConsumerPerformance` on the same topic, in the same run.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/consume_bench [--records 1000000] [--gateway-set key=value]...
//! target/release/examples/consume_bench --help      # usage only; starts nothing
//! ```
//!
//! 1. Starts a single-node Kafka 4.1 broker (the test harness's, with the full JIT and a 1 GiB
//!    heap) and creates a topic of 3 partitions.
//! 2. Fills it with `--records` JSON GPS fixes (about 150 bytes each: `vehicleId` among 1,000
//!    vehicles, latitude/longitude around Nice, an RFC 3339 timestamp, speed, heading) with
//!    Kafka's own `ProducerPerformance --payload-file`, which picks each record at random from
//!    up to 100,000 distinct lines (records without a key: the vehicle is the `vehicleId`
//!    field). Kafka's end offsets confirm the count.
//! 3. Runs Kafka's `ConsumerPerformance` on the topic (`--messages N`, default 1 MiB partition
//!    fetches like the gateway's `kafka.fetch_max_bytes`) and takes its records/s from its own
//!    summary line (`nMsg.sec`: from its start, group join included; `fetch.nMsg.sec` without
//!    the join is printed too), sampling its JVM's RSS.
//! 4. Starts the release `routegate serve` binary on a fresh data directory (default `strict`
//!    durability) with a configuration file consuming the topic with `handler = "forward"`,
//!    polls `GET /traffic/routes/kafka-health` until every partition's `nextOffset` adds up to
//!    N with no lag, and samples the process's RSS on each poll (every 100 ms; every 10 ms
//!    until the first record is applied, to time the startup). Records/s are N / (spawn →
//!    caught up), and, without the startup, the records applied after the first poll that saw
//!    one divided by the time from that poll. Also printed: the gateway's CPU seconds (steadier
//!    than wall time on a shared machine), its disk use, and its RSS when a quarter, half and
//!    three quarters of the records were applied and at the end (flat: memory does not grow
//!    with the backlog).
//! 5. The same with `handler = "positions"` on another fresh data directory: every record is
//!    a fix that moves its vehicle and logs a `vehicle.position` event, durably.
//!
//! `--gateway-set key=value` (repeatable) passes `--set key=value` to both gateway runs, e.g.
//! `--gateway-set kafka.fetch_max_bytes=4194304` or `--gateway-set storage.durability=interval`;
//! `--gateway-bin PATH` runs another build of the gateway (copy one aside to compare two).
//!
//! Every side shares the machine's cores with the broker (and with whatever else runs there:
//! the closing line gives the load average at the start and the end).

#[path = "../tests/integration/harness/kafka/mod.rs"]
#[allow(dead_code, unsafe_code)]
mod kafka;

#[path = "bench_support/mod.rs"]
#[allow(dead_code)]
mod bench_support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::{Gateway, Rss, cpu_time, end_offsets, fs_size, gateway_binary};
use clap::Parser;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const PARTITIONS: u32 = 3;
const VEHICLES: usize = 1_000;
/// Distinct payloads in the file `ProducerPerformance` picks from at random (at most).
const PAYLOADS: usize = 100_000;
/// Longest a gateway run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// Consumer benchmark: the gateway's `forward` and `positions` consumers beside Kafka's own
/// `ConsumerPerformance`, on one topic of a single-node Kafka 4.1 broker. Needs the release
/// gateway binary (`cargo build --release --bins --examples`).
#[derive(Debug, Parser)]
#[command(name = "consume_bench")]
struct Opts {
    /// Records in the topic, each consumed by every side.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// A configuration override for both gateway runs, passed as `--set KEY=VALUE`
    /// (repeatable), e.g. `kafka.fetch_max_bytes=4194304`.
    #[arg(long = "gateway-set", value_name = "KEY=VALUE")]
    gateway_set: Vec<String>,
    /// The gateway binary to run [default: `routegate` beside this example's directory, i.e.
    /// `target/release/routegate`], e.g. a copy of another build to compare.
    #[arg(long, value_name = "PATH")]
    gateway_bin: Option<std::path::PathBuf>,
}

/// The payload file: one GPS fix per line, `vehicleId` among [`VEHICLES`], each vehicle
/// driving a random walk around Nice with a fix every 5 s. Returns the mean line length
/// (about 145 bytes).
fn write_payloads(path: &Path, lines: usize) -> f64 {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(14);
    let start = chrono::DateTime::parse_from_rfc3339("2025-06-02T06:00:00Z").expect("a time");
    let per_vehicle = lines.div_ceil(VEHICLES);
    let mut text = String::with_capacity(lines * 160);
    let mut written = 0;
    'vehicles: for v in 0..VEHICLES {
        let (mut lat, mut lon) = (
            43.60 + rng.random::<f64>() * 0.2,
            7.10 + rng.random::<f64>() * 0.4,
        );
        for i in 0..per_vehicle {
            if written == lines {
                break 'vehicles;
            }
            lat += (rng.random::<f64>() - 0.5) * 0.002;
            lon += (rng.random::<f64>() - 0.5) * 0.002;
            let at = start + chrono::Duration::milliseconds(i as i64 * 5000 + v as i64);
            let _ = writeln!(
                text,
                r#"{{"vehicleId":"vehicle-{v:04}","latitude":{lat:.6},"longitude":{lon:.6},"timestamp":"{}","speedKmh":{:.1},"headingDeg":{:.1}}}"#,
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                rng.random::<f64>() * 90.0,
                rng.random::<f64>() * 360.0,
            );
            written += 1;
        }
    }
    std::fs::write(path, &text).expect("write the payload file");
    (text.len() - written) as f64 / written as f64
}

/// Fills `topic` with `records` records picked from `payloads` by `ProducerPerformance`.
async fn fill(cluster: &kafka::KafkaCluster, topic: &str, records: usize, payloads: &Path) {
    let props = format!(
        "bootstrap.servers={} acks=all linger.ms=20 batch.size=262144",
        cluster.bootstrap()
    );
    let mut args = vec![
        "--topic".to_string(),
        topic.to_string(),
        "--num-records".into(),
        records.to_string(),
        "--payload-file".into(),
        payloads.display().to_string(),
        "--throughput".into(),
        "-1".into(),
        "--producer-props".into(),
    ];
    args.extend(props.split(' ').map(str::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cluster
        .run_tool_with_jvm_flags(
            "org.apache.kafka.tools.ProducerPerformance",
            &["-XX:TieredStopAtLevel=4", "-Xmx1g"],
            &args,
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("records sent"),
        "ProducerPerformance did not finish: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ConsumerPerformance`'s summary: its records/s from its start (group join included) and
/// from its first fetch, and its elapsed seconds.
#[derive(Debug, Clone, Copy)]
struct PerfSummary {
    records: u64,
    rate: f64,
    fetch_rate: f64,
    seconds: f64,
}

/// Parses the header and data lines `ConsumerPerformance` prints (`start.time, end.time, …`).
fn consumer_perf_summary(stdout: &str) -> Option<PerfSummary> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|l| l.starts_with("start.time"))?
        .split(',')
        .map(str::trim)
        .collect();
    let data: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let field = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| *h == name)?;
        data.get(i)?.parse().ok()
    };
    let records = field("data.consumed.in.nMsg")?;
    let rate = field("nMsg.sec")?;
    Some(PerfSummary {
        records: records as u64,
        rate,
        fetch_rate: field("fetch.nMsg.sec")?,
        seconds: records / rate,
    })
}

/// The pid of a running JVM of this cluster whose command line names `main_class`.
fn jvm_pid(cluster: &kafka::KafkaCluster, main_class: &str) -> Option<u32> {
    let marker = format!("-D{}={}", kafka::MARKER_PROPERTY, cluster.marker());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let has = |s: &str| args.contains(&s.as_bytes());
        (has(&marker) && has(main_class)).then_some(pid)
    })
}

/// Runs `ConsumerPerformance` on `topic` and samples its JVM's RSS every 100 ms.
async fn consumer_perf(
    cluster: &kafka::KafkaCluster,
    topic: &str,
    records: usize,
) -> (PerfSummary, Rss, Duration) {
    const MAIN: &str = "org.apache.kafka.tools.ConsumerPerformance";
    let bootstrap = cluster.bootstrap();
    let messages = records.to_string();
    let group = format!("consume-bench-{}", std::process::id());
    let args = [
        "--bootstrap-server",
        &bootstrap,
        "--topic",
        topic,
        "--messages",
        &messages,
        "--group",
        &group,
        "--timeout",
        "60000",
    ];
    let run = cluster.run_tool_with_jvm_flags(MAIN, &["-XX:TieredStopAtLevel=4", "-Xmx1g"], &args);
    tokio::pin!(run);
    let mut peak = Rss::default();
    let mut pid = None;
    let mut cpu = Duration::ZERO;
    let out = loop {
        tokio::select! {
            out = &mut run => break out,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if pid.is_none() {
                    pid = jvm_pid(cluster, MAIN);
                }
                if let Some(pid) = pid {
                    peak = peak.peak(Rss::of(pid));
                    cpu = cpu.max(cpu_time(pid));
                }
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = consumer_perf_summary(&stdout).unwrap_or_else(|| {
        panic!(
            "no summary from ConsumerPerformance: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (summary, peak, cpu)
}

/// The consumers of one topic as `kafka-health` reports them.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    partitions: usize,
    next_offsets: i64,
    caught_up: bool,
    applied: u64,
    skipped: u64,
    dead_lettered: u64,
}

async fn progress(client: &reqwest::Client, base: &str, topic: &str) -> Option<Progress> {
    let r = client
        .get(format!("{base}/traffic/routes/kafka-health"))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    let mut p = Progress {
        caught_up: true,
        ..Progress::default()
    };
    for c in v["consumers"]
        .as_array()?
        .iter()
        .filter(|c| c["topic"] == topic)
    {
        let next = c["nextOffset"].as_i64().unwrap_or(0);
        p.partitions += 1;
        p.next_offsets += next;
        p.caught_up &= c["lag"].as_i64() == Some(0) && c["highWatermark"].as_i64() == Some(next);
        p.applied += c["applied"].as_u64().unwrap_or(0);
        p.skipped += c["skipped"].as_u64().unwrap_or(0);
        p.dead_lettered += c["deadLettered"].as_u64().unwrap_or(0);
    }
    Some(p)
}

/// One gateway run: spawn → every record applied.
#[derive(Debug)]
struct GatewayRun {
    handler: &'static str,
    /// Spawn → caught up.
    total: Duration,
    /// Spawn → the first poll that saw a record applied.
    startup: Duration,
    /// Records applied at that poll.
    applied_at_start: u64,
    end: Progress,
    peak: Rss,
    /// RSS (MiB) when a quarter, half and three quarters of the records were applied, and at
    /// the end: flat means memory does not grow with the backlog.
    rss_along: [f64; 4],
    /// CPU time of the gateway process, spawn → caught up.
    cpu: Duration,
    disk: u64,
}

impl GatewayRun {
    fn rate(&self, records: usize) -> f64 {
        records as f64 / self.total.as_secs_f64()
    }

    /// The records applied after the first poll that saw one, over the time since.
    fn steady(&self, records: usize) -> (u64, Duration, f64) {
        let n = records as u64 - self.applied_at_start;
        let d = self.total - self.startup;
        (n, d, n as f64 / d.as_secs_f64())
    }
}

async fn run_gateway(
    bootstrap: &str,
    topic: &str,
    handler: &'static str,
    records: usize,
    binary: &Path,
    sets: &[String],
) -> GatewayRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("routegate.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = [\"{bootstrap}\"]\n\n[[kafka.consume]]\ntopic = \"{topic}\"\nhandler = \"{handler}\"\nstart = \"earliest\"\n"
        ),
    )
    .expect("write the gateway config");
    let data = dir.path().join("data");
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .args(sets.iter().flat_map(|kv| ["--set", kv.as_str()]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start routegate");
    let gw = Gateway(child);
    let pid = gw.0.id();
    let client = reqwest::Client::new();
    let mut peak = Rss::default();
    let mut base: Option<String> = None;
    let mut first: Option<(Duration, u64)> = None;
    let mut rss_along = [0.0; 4];
    let end = loop {
        let rss = Rss::of(pid);
        peak = peak.peak(rss);
        if base.is_none() {
            base = std::fs::read_to_string(data.join("gateway.addr"))
                .ok()
                .map(|a| format!("http://{}", a.trim()));
        }
        if let Some(base) = &base
            && let Some(p) = progress(&client, base, topic).await
        {
            let done = p.applied + p.skipped + p.dead_lettered;
            if first.is_none() && done > 0 {
                first = Some((started.elapsed(), done));
            }
            for (i, slot) in rss_along.iter_mut().take(3).enumerate() {
                if *slot == 0.0 && done * 4 >= (i as u64 + 1) * records as u64 {
                    *slot = rss.total_mib();
                }
            }
            if p.partitions == PARTITIONS as usize
                && p.next_offsets == records as i64
                && p.caught_up
            {
                break p;
            }
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "the {handler} consumer did not catch up within {RUN_LIMIT:?}"
        );
        let poll = if first.is_some() { 100 } else { 10 };
        tokio::time::sleep(Duration::from_millis(poll)).await;
    };
    let total = started.elapsed();
    let rss = Rss::of(pid);
    peak = peak.peak(rss);
    rss_along[3] = rss.total_mib();
    let cpu = cpu_time(pid);
    drop(gw);
    let (startup, applied_at_start) = first.unwrap_or((total, 0));
    GatewayRun {
        handler,
        total,
        startup,
        applied_at_start,
        end,
        peak,
        rss_along,
        cpu,
        disk: fs_size(&data),
    }
}

/// The 1-minute load average: other work on the machine skews every side.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let opts = Opts::parse();
    let n = opts.records;
    let load_at_start = load_average();
    assert!(n > 0, "--records must be at least 1");
    println!(
        "consumer benchmark: {n} records, {PARTITIONS} partitions, {VEHICLES} vehicles, {} cores ({})\n",
        cores(),
        cpu_model()
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
    let topic = kafka::unique_topic("consume-bench");
    cluster.create_topic(&topic, PARTITIONS as i32, 1).await;

    let scratch = tempfile::tempdir().expect("temp dir");
    let payloads = scratch.path().join("fixes.jsonl");
    let mean = write_payloads(&payloads, n.min(PAYLOADS));
    let filling = Instant::now();
    fill(&cluster, &topic, n, &payloads).await;
    let in_kafka = end_offsets(&cluster, &topic).await;
    assert_eq!(
        in_kafka, n as u64,
        "the topic holds {in_kafka} records, not {n}"
    );
    println!(
        "topic filled with {n} records ({mean:.0} B values, {} distinct) by ProducerPerformance in {:.1} s",
        n.min(PAYLOADS),
        filling.elapsed().as_secs_f64()
    );

    let (perf, perf_rss, perf_cpu) = consumer_perf(&cluster, &topic, n).await;
    assert_eq!(perf.records, n as u64, "ConsumerPerformance read {perf:?}");
    println!(
        "ConsumerPerformance: {:.0} records/s ({:.0} records/s from its first fetch), {:.1} s; \
         {:.1} CPU s (JVM start included)",
        perf.rate,
        perf.fetch_rate,
        perf.seconds,
        perf_cpu.as_secs_f64()
    );

    let bootstrap = cluster.bootstrap();
    let binary = opts.gateway_bin.clone().unwrap_or_else(gateway_binary);
    let mut runs = Vec::new();
    for handler in ["forward", "positions"] {
        let run = run_gateway(&bootstrap, &topic, handler, n, &binary, &opts.gateway_set).await;
        println!(
            "routegate {handler}: {:.0} records/s, {:.1} s ({:.2} s to the first applied record), \
             {:.1} CPU s; applied {}, skipped {}, dead-lettered {}; {} MiB on disk; RSS at 25/50/75/100 % \
             applied: {:.0}/{:.0}/{:.0}/{:.0} MiB",
            run.rate(n),
            run.total.as_secs_f64(),
            run.startup.as_secs_f64(),
            run.cpu.as_secs_f64(),
            run.end.applied,
            run.end.skipped,
            run.end.dead_lettered,
            run.disk >> 20,
            run.rss_along[0],
            run.rss_along[1],
            run.rss_along[2],
            run.rss_along[3]
        );
        assert_eq!(
            run.end.applied, n as u64,
            "the {handler} consumer applied {} records, not {n}",
            run.end.applied
        );
        runs.push(run);
    }

    println!();
    println!(
        "| side | records | seconds | records/s | ratio to ConsumerPerformance | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| Kafka ConsumerPerformance (its nMsg.sec; {:.0}/s from its first fetch) | {n} | {:.2} | {:.0} | 1.00x | {:.0} (JVM, -Xmx1g) |",
        perf.fetch_rate,
        perf.seconds,
        perf.rate,
        perf_rss.total_mib()
    );
    for run in &runs {
        println!(
            "| routegate `{}` (spawn → caught up) | {n} | {:.2} | {:.0} | {:.2}x | {:.0} ({:.0} anonymous, {:.0} file-backed) |",
            run.handler,
            run.total.as_secs_f64(),
            run.rate(n),
            run.rate(n) / perf.rate,
            run.peak.total_mib(),
            run.peak.anon_mib(),
            run.peak.file_mib()
        );
        let (records, seconds, rate) = run.steady(n);
        println!(
            "| routegate `{}` (first applied → caught up) | {records} | {:.2} | {rate:.0} | {:.2}x | |",
            run.handler,
            seconds.as_secs_f64(),
            rate / perf.rate,
        );
    }
    println!();
    let sets = if opts.gateway_set.is_empty() {
        "defaults".to_string()
    } else {
        opts.gateway_set.join(", ")
    };
    println!(
        "{} cores ({}), load average {} at the start and {} at the end; single-node Kafka 4.1 on the same machine; gateway: strict durability unless overridden ({sets})",
        cores(),
        cpu_model(),
        load_at_start,
        load_average()
    );
}
