//! Durable HTTP ingest into Kafka: routegate alone, or side by side with Fluent Bit.
//!
//! ```sh
//! cargo build --release
//! # routegate alone, against a broker you run:
//! cargo run --release --example ingest -- --brokers 127.0.0.1:9092
//! # side by side with the peer, on a throwaway broker started from the jars `cargo test` caches:
//! cargo run --release --example ingest -- --kafka-libs target/kafka-harness/libs \
//!     --fluent-bit ../shared/peers/fluent-bit/fluent-bit
//! ```
//!
//! The workload and method of the peer driver `../shared/peers/ingest-vs-fluent-bit`, with the
//! load generated in-process instead of by wrk. For every workload (`--per-request`, default 1
//! and 10 GPS fixes per request) and repetition (`--reps`), alternating routegate and Fluent Bit
//! so that both see the same machine state:
//!
//! 1. create a fresh topic `ingest-<time>-<rg|fb>-b<N>-r<rep>` with 3 partitions;
//! 2. start the server on a fresh directory and a free loopback port (`server.rs`, `run.rs`);
//! 3. load it for `--secs` with `--conns` keep-alive connections in a closed loop, the same
//!    ~330-byte JSON fix for 1,000 vehicles to both (`load.rs`); meanwhile the server's CPU is
//!    utime + stime from `/proc/<pid>/stat` over the load (100 % = one core), and its peak RSS
//!    is `VmHWM` at the end of it;
//! 4. wait until Kafka holds every event answered 2xx and every event the server itself counted,
//!    with the server's own backlog empty (`kafka.rs` counts offsets), then stop the server
//!    (SIGTERM), delete the topic and the directory.
//!
//! It prints one line per run and a Markdown table of medians (with the routegate / Fluent Bit
//! ratio when Fluent Bit ran). Exit status: 0 when every accepted event reached Kafka and no
//! server died, 1 when not, 2 when the benchmark could not run, 130 on Ctrl-C.
//!
//! Differences from the driver: the bodies are byte for byte `gps.lua`'s (a unit test checks
//! one), but the request in flight at the deadline is finished and counted, so Kafka should
//! hold exactly the accepted events (wrk stops without reading those answers, and the driver
//! shows up to conns × N extra). The load generator's own CPU is printed with every run: it
//! shares the cores with the server and the broker.
//!
//! What a 2xx means differs (details in `../shared/peers/README.md`): routegate in its default
//! `strict` durability answers after the events are fsynced in its outbox and keeps them until
//! Kafka acknowledged them; Fluent Bit's filesystem buffer answers before any sync and drops its
//! copy once librdkafka has queued the record in memory. `--set storage.durability=interval`
//! is routegate's nearest setting to Fluent Bit's write path.
//!
//! On two shared cores the server, the broker and the load generator compete: compare the
//! ratios of one invocation, not absolute numbers across machines or runs.

mod kafka;
mod load;
mod proc;
mod report;
mod run;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};

use kafka::{Kafka, OwnBroker};
use report::Run;
use server::Kind;

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Durable HTTP ingest into Kafka: routegate alone, or alternated with Fluent Bit \
             (medians and ratios)",
    group(ArgGroup::new("broker").required(true).args(["brokers", "kafka_libs"]))
)]
struct Opts {
    /// Seconds of load per run.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Runs per server and workload.
    #[arg(long, default_value_t = 2)]
    reps: u32,
    /// GPS fixes per request, one workload per value.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    per_request: Vec<usize>,
    /// Concurrent keep-alive connections (closed loop).
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Runtime threads of the load generator (wrk's -t of the peer driver).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Fluent Bit binary: run it alternated with routegate (e.g. ../shared/peers/fluent-bit/fluent-bit).
    #[arg(long, value_name = "PATH")]
    fluent_bit: Option<PathBuf>,
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT] (plaintext, no authentication).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Instead of --brokers: start a throwaway single-node KRaft broker from this directory of
    /// Kafka 4.x jars (target/kafka-harness/libs after `cargo test`); needs Java 17+.
    #[arg(long, value_name = "DIR")]
    kafka_libs: Option<PathBuf>,
    /// The routegate binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/routegate")]
    routegate: PathBuf,
    /// Configuration override for routegate, passed as `--set KEY=VALUE` (repeatable), e.g.
    /// storage.durability=interval.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Partitions of each run's topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Where the runs' directories go (default: a new temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the runs' directories, logs and topics.
    #[arg(long)]
    keep: bool,
}

/// Exit status: 0 when every accepted event reached Kafka and no server died, 1 when not, 2 when
/// the benchmark could not run, 130 when interrupted.
fn main() -> ExitCode {
    let opts = Opts::parse();
    match main_with(&opts) {
        Ok(Some(runs)) if runs.iter().all(Run::ok) => ExitCode::SUCCESS,
        Ok(Some(_)) => {
            eprintln!(
                "\nFAILED: an accepted event is missing from Kafka, or a server died (see above)"
            );
            ExitCode::from(1)
        }
        Ok(None) => {
            eprintln!("interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            // `{:#}`, not `{:?}`: the cause chain without the backtrace RUST_BACKTRACE would add.
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The runs, or `None` when interrupted by Ctrl-C.
fn main_with(opts: &Opts) -> anyhow::Result<Option<Vec<Run>>> {
    anyhow::ensure!(
        opts.secs > 0 && opts.reps > 0 && opts.conns > 0 && opts.partitions > 0,
        "--secs, --reps, --conns and --partitions must be at least 1"
    );
    anyhow::ensure!(
        !opts.per_request.is_empty() && opts.per_request.iter().all(|&n| n > 0),
        "--per-request takes numbers of at least 1, e.g. 1,10"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_all()
        .build()?;
    // Children are spawned from this future, on the main thread (see proc.rs). Ctrl-C drops
    // it, and with it the servers, the broker and the temporary directory.
    rt.block_on(async {
        tokio::select! {
            r = bench(opts) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    })
}

/// What every run shares.
#[derive(Debug)]
struct Bench {
    opts: Opts,
    kafka: Kafka,
    /// Bootstrap servers for the servers under test.
    brokers: String,
    /// Parent of the runs' directories.
    work: PathBuf,
    /// Part of the runs' topic names, unique per invocation.
    stamp: String,
}

async fn bench(opts: &Opts) -> anyhow::Result<Vec<Run>> {
    let mut kinds = vec![Kind::Routegate {
        binary: std::path::absolute(&opts.routegate)?,
        sets: opts.sets.clone(),
    }];
    if let Some(fb) = &opts.fluent_bit {
        let binary = std::path::absolute(fb)?;
        kinds.push(Kind::FluentBit { binary });
    }
    let versions: Vec<String> = kinds
        .iter()
        .map(server::preflight)
        .collect::<Result<_, _>>()?;
    let (work, _temp) = work_dir(opts)?;
    let broker = match &opts.kafka_libs {
        Some(libs) => {
            eprintln!("starting a Kafka broker from {} ...", libs.display());
            Some(OwnBroker::start(libs, &work.join("kafka")).await?)
        }
        None => None,
    };
    let brokers = match (&broker, &opts.brokers) {
        (Some(b), _) => b.bootstrap(),
        (None, Some(b)) => b.clone(),
        (None, None) => unreachable!("clap requires one of --brokers and --kafka-libs"),
    };
    let now = chrono::Local::now();
    let bench = Bench {
        opts: opts.clone(),
        kafka: Kafka::connect(&brokers).await?,
        brokers,
        work,
        stamp: now.format("%Y%m%d%H%M%S").to_string(),
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# ingest  {}  {} CPUs, load average {}",
        now.format("%Y-%m-%d %H:%M:%S %Z"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (kind, version) in kinds.iter().zip(&versions) {
        println!(
            "# {}: {} ({version})",
            kind.short(),
            kind.binary().display()
        );
    }
    println!(
        "# Kafka {}{}, topics ingest-{}-*, {} partitions; load: {} conns, {} threads, {} s, \
         events/request {:?}, {} rep(s); routegate --set {:?}; work dir {}",
        bench.brokers,
        if broker.is_some() {
            " (own broker)"
        } else {
            ""
        },
        bench.stamp,
        opts.partitions,
        opts.conns,
        opts.threads,
        opts.secs,
        opts.per_request,
        opts.reps,
        opts.sets,
        bench.work.display()
    );
    let mut runs = Vec::new();
    for &n in &opts.per_request {
        for rep in 1..=opts.reps {
            for kind in &kinds {
                let run = run::run(&bench, kind, n, rep).await?;
                println!("{}", run.line());
                runs.push(run);
            }
        }
    }
    let both = kinds.len() > 1;
    let ratio = if both {
        ", and routegate / Fluent Bit"
    } else {
        ""
    };
    println!("\nMedians over {} run(s) each{ratio}:\n", opts.reps);
    print!("{}", report::medians(&runs, &opts.per_request, both));
    if let Some(b) = broker {
        b.stop().await;
    }
    Ok(runs)
}

/// `--work-dir`, or a new temporary directory (removed with the returned guard unless `--keep`).
fn work_dir(opts: &Opts) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let (work, guard) = match &opts.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (std::path::absolute(d)?, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("routegate-ingest-")
                .tempdir()?;
            match opts.keep {
                true => (t.keep(), None),
                false => (t.path().to_path_buf(), Some(t)),
            }
        }
    };
    if proc::on_memory_fs(&work) {
        eprintln!(
            "warning: {} is on tmpfs or ramfs, where fsync costs nothing: use --work-dir on a disk",
            work.display()
        );
    }
    Ok((work, guard))
}
