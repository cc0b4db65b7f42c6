//! One run of one server: fresh topic and directory, start, load, measure, drain, stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::kafka::Topic;
use crate::report::Run;
use crate::server::{Kind, Server};
use crate::{Bench, load, proc};

/// Give up waiting for Kafka after this long without progress…
const STALL: Duration = Duration::from_secs(30);
/// …or this long in all.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

pub async fn run(bench: &Bench, kind: &Kind, per_request: usize, rep: u32) -> anyhow::Result<Run> {
    let opts = &bench.opts;
    let name = format!("{}-b{per_request}-r{rep}", kind.short());
    let topic_name = format!("ingest-{}-{name}", bench.stamp);
    let topic = bench
        .kafka
        .create_topic(&topic_name, opts.partitions)
        .await?;
    let dir = bench.work.join(&name);
    std::fs::create_dir_all(&dir)?;
    let time = chrono::Local::now().format("%H:%M:%S").to_string();
    let mut srv = Server::start(kind, &bench.brokers, &topic_name, &dir).await?;
    let requests = Arc::new(load::requests(kind.shape(), per_request));

    let (pid, me) = (srv.pid(), std::process::id());
    let (c0, own0, t0) = (proc::cpu_secs(pid), proc::cpu_secs(me), Instant::now());
    let secs = Duration::from_secs(opts.secs);
    let load = load::run(srv.addr, requests, opts.conns, secs).await;
    let (c1, own1, t1) = (proc::cpu_secs(pid), proc::cpu_secs(me), Instant::now());
    let rss_peak = proc::status_bytes(pid, "VmHWM").unwrap_or(0);
    let cpu_pct = |a: Option<f64>, b: Option<f64>| {
        100.0 * a.zip(b).map_or(0.0, |(a, b)| b - a) / (t1 - t0).as_secs_f64()
    };
    let accepted_events = load.accepted * per_request as u64;

    let d0 = Instant::now();
    let (kafka_records, server) = drain(&mut srv, &topic, accepted_events).await;
    let drain_s = d0.elapsed().as_secs_f64();
    let alive = srv.alive();
    if !alive {
        eprintln!("  {name} died:\n{}", proc::tail(srv.log(), 2000));
    }
    srv.stop().await;
    if !opts.keep {
        if let Err(e) = bench.kafka.delete_topic(&topic_name).await {
            eprintln!("  could not delete topic {topic_name}: {e:#}");
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    Ok(Run {
        server: kind.short(),
        per_request,
        rep,
        time,
        events_per_s: accepted_events as f64 / load.elapsed.as_secs_f64(),
        p50_ms: load.latency_ms(0.50),
        p99_ms: load.latency_ms(0.99),
        rejected: load.rejected,
        errors: load.errors,
        cpu_pct: cpu_pct(c0, c1),
        load_cpu_pct: cpu_pct(own0, own1),
        rss_peak_mib: rss_peak as f64 / f64::from(1 << 20),
        accepted_events,
        server_count: server.map(|(count, _)| count),
        kafka_records,
        drain_s,
        alive,
    })
}

/// Waits until Kafka holds every event answered 2xx and every event the server counted, and
/// the server's backlog is empty (or the server died, or progress stopped). Returns the last
/// record count and the server's last (count, backlog).
async fn drain(
    srv: &mut Server,
    topic: &Topic,
    accepted: u64,
) -> (Option<u64>, Option<(u64, u64)>) {
    let started = Instant::now();
    let (mut records, mut server) = (None, None);
    let (mut last, mut last_change) = (None, Instant::now());
    while srv.alive() && started.elapsed() < DRAIN_LIMIT {
        records = topic.count().await.ok();
        server = srv.progress().await;
        let done = records
            .zip(server)
            .is_some_and(|(k, (count, backlog))| k >= accepted.max(count) && backlog == 0);
        if done {
            break;
        }
        if last != Some((records, server)) {
            (last, last_change) = (Some((records, server)), Instant::now());
        } else if last_change.elapsed() > STALL {
            eprintln!(
                "  no progress for {STALL:?} (Kafka {records:?}, server {server:?}); giving up"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if records.is_none() {
        records = topic.count().await.ok();
    }
    (records, server)
}
