//! WebSocket fan-out benchmark: many clients, a steady event rate, delivery latency and memory.
//!
//! ```sh
//! cargo run --release --example ws_fanout                   # the issue's scenario, 30 s
//! cargo run --release --example ws_fanout -- --seconds 60 --rate 200 --durability interval
//! ```
//!
//! The gateway runs as a **child process** (this same executable with `--serve-child`), so its
//! resident memory can be read from `/proc/<pid>/status` apart from the clients'. The child runs
//! `routegate::app::App` with a fresh data directory and no reachable broker, and appends events
//! to its own outbox when told to over stdin (one `append` per event; with `strict` durability
//! each is fsynced before clients see it). The parent opens the client connections
//! (tokio-tungstenite, one task per connection, two runtime threads), measures, and reports.
//!
//! * **Latency** per delivered message, two ways: from the event's creation (before the durable
//!   append: includes the fsync, the router, the socket and the client's scheduling), and from
//!   the moment the append returned (the fan-out alone; clamped at 0, because the router may
//!   deliver before the appending task is scheduled again). Client and gateway share the
//!   machine's cores, so both figures are pessimistic for the gateway.
//! * **RSS per idle connection** is the child's `VmRSS` with every client connected and idle,
//!   minus its `VmRSS` before the first connection, divided by the number of connections.
//! * **Completeness**: every client counts what it got against what its filter should have got,
//!   and checks that sequence numbers only increase.

#![allow(
    unsafe_code,
    reason = "setrlimit to allow tens of thousands of sockets"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Parser)]
struct Opts {
    /// Clients that each follow one vehicle.
    #[arg(long, default_value_t = 10_000)]
    vehicle_clients: usize,
    /// Clients that follow everything.
    #[arg(long, default_value_t = 1_000)]
    all_clients: usize,
    /// Distinct vehicles (events go round-robin over them).
    #[arg(long, default_value_t = 100)]
    vehicles: usize,
    /// Events per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Events per append (a REST position batch is one append).
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// `strict` (fsync before clients see an event) or `interval` (isolates the hub from the disk).
    #[arg(long, default_value = "strict")]
    durability: String,
    /// Concurrent connection attempts while connecting.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Internal: run as the gateway process.
    #[arg(long, hide = true)]
    serve_child: bool,
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    raise_fd_limit((opts.vehicle_clients + opts.all_clients + 1024) as u64)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if opts.serve_child {
        rt.block_on(child::serve(&opts.durability))
    } else {
        rt.block_on(parent(opts))
    }
}

/// Raise the soft open-file limit to at least `n` (to the hard limit, or past it when allowed).
fn raise_fd_limit(n: u64) -> anyhow::Result<()> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
    let want = libc::rlimit {
        rlim_cur: n.max(cur.rlim_max),
        rlim_max: n.max(cur.rlim_max),
    };
    // SAFETY: setrlimit reads the struct we own. Raising the hard limit needs CAP_SYS_RESOURCE;
    // without it, settle for the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
        let soft = libc::rlimit {
            rlim_cur: cur.rlim_max,
            rlim_max: cur.rlim_max,
        };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) };
        anyhow::ensure!(
            cur.rlim_max >= n,
            "the open-file limit is {} and this run needs about {n}",
            cur.rlim_max
        );
    }
    Ok(())
}

/// The gateway side, in the child process.
mod child {
    use std::io::Write as _;

    use routegate::app::App;
    use routegate::config::{Durability, Settings};
    use routegate::events::{NewEvent, VEHICLE_POSITION};
    use routegate::queue::Write;

    pub async fn serve(durability: &str) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut s = Settings::default();
        s.http.bind = "127.0.0.1:0".into();
        s.storage.data_dir = dir.path().to_path_buf();
        s.kafka.brokers = vec!["127.0.0.1:9".into()];
        // Kafka is absent: let the circuit open once, during the warm-up, and stay open.
        s.kafka.breaker_failure_threshold = 1;
        s.kafka.breaker_cooldown_ms = 3_600_000;
        s.websocket.max_connections = 100_000;
        s.storage.durability = match durability {
            "interval" => Durability::Interval,
            _ => Durability::Strict,
        };
        let app = App::build(s).await?;
        let outbox = app.outbox();
        println!("addr {}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        // Commands from the parent, one per line (tokio's stdin needs a feature the crate lacks).
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                if line.map(|l| tx.send(l)).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["warmup"] => {
                    append(&outbox, 0, 1, 1).await?;
                    println!("ok");
                }
                ["produce", n, rate, batch, vehicles] => {
                    let (n, rate, batch, vehicles): (u64, u64, u64, u64) =
                        (n.parse()?, rate.parse()?, batch.parse()?, vehicles.parse()?);
                    let stamps = produce(&outbox, n, rate, batch, vehicles).await?;
                    let stamps: Vec<String> = stamps
                        .iter()
                        .map(|(seq, created, durable)| format!("{seq},{created},{durable}"))
                        .collect();
                    println!("produced {}", stamps.join(" "));
                }
                _ => break,
            }
            std::io::stdout().flush()?;
        }
        let _ = stop.send(());
        server.await??;
        Ok(())
    }

    /// Append `batch` events (vehicles round-robin from `first`) in one write; returns each
    /// one's seq and creation time.
    async fn append(
        outbox: &routegate::queue::Outbox,
        first: u64,
        batch: u64,
        vehicles: u64,
    ) -> anyhow::Result<Vec<(u64, i64)>> {
        let events = (first..first + batch)
            .map(|n| {
                let vehicle = format!("v{}", n % vehicles);
                let payload = serde_json::json!({"vehicleId": vehicle, "n": n,
                    "latitude": 40.7128, "longitude": -74.0060, "speedKmh": 42.5, "headingDeg": 90});
                NewEvent::now(VEHICLE_POSITION, "vehicle-position-events", &vehicle, None, &payload)
            })
            .collect();
        let written = outbox
            .append(Write {
                events,
                records: vec![],
            })
            .await?;
        Ok(written.iter().map(|e| (e.seq, e.created_at_us)).collect())
    }

    /// `n` events at `rate`/s in writes of `batch`, round-robin over the vehicles; returns
    /// `(seq, created, durable)` per event, durable being when its append returned (µs since
    /// the epoch).
    async fn produce(
        outbox: &routegate::queue::Outbox,
        n: u64,
        rate: u64,
        batch: u64,
        vehicles: u64,
    ) -> anyhow::Result<Vec<(u64, i64, i64)>> {
        let period = std::time::Duration::from_micros(1_000_000 * batch / rate);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut stamps = Vec::with_capacity(n as usize);
        for first in (0..n).step_by(batch as usize) {
            tick.tick().await;
            let written = append(outbox, first, batch.min(n - first), vehicles).await?;
            let durable = chrono::Utc::now().timestamp_micros();
            stamps.extend(
                written
                    .into_iter()
                    .map(|(seq, created)| (seq, created, durable)),
            );
        }
        Ok(stamps)
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    vehicle: Option<usize>,
    events: u64,
    duplicates_or_disorder: u64,
    /// `(seq, receive time in µs since the epoch)` per event.
    received: Vec<(u64, i64)>,
    lagged: bool,
    closed_early: bool,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
}

async fn client(
    url: String,
    vehicle: Option<usize>,
    gate: Arc<Semaphore>,
    ready: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Seen {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = match vehicle {
        Some(v) => format!("{url}?vehicleId=v{v}"),
        None => url,
    };
    let mut ws = loop {
        let permit = gate.acquire().await.expect("gate");
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                drop(permit);
                eprintln!("connect failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut seen = Seen {
        vehicle,
        ..Seen::default()
    };
    let mut last_seq = 0;
    let mut greeted = false;
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = ws.next() => msg,
        };
        let Some(Ok(Message::Text(text))) = msg else {
            match msg {
                Some(Ok(_)) => continue,
                _ => {
                    seen.closed_early = true;
                    break;
                }
            }
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        let Ok(m) = serde_json::from_str::<Msg>(&text) else {
            continue;
        };
        match m.kind {
            "hello" => {
                greeted = true;
                last_seq = m.seq;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            "vehicle.position" if greeted => {
                if m.seq <= last_seq {
                    seen.duplicates_or_disorder += 1;
                }
                last_seq = m.seq;
                seen.events += 1;
                seen.received.push((m.seq, now_us));
            }
            "lagged" => seen.lagged = true,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    seen
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after_comm
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields 14 and 15 of /proc/pid/stat; after the comm, state is not numeric, so they sit at 10, 11.
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// Microseconds some task on the machine waited for a CPU (PSI), if the kernel reports it.
fn cpu_pressure_us() -> Option<u64> {
    let psi = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    psi.lines()
        .find(|l| l.starts_with("some"))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Gateway {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    addr: String,
}

impl Gateway {
    fn start(durability: &str) -> anyhow::Result<Gateway> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-child")
            .args(["--durability", durability])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let addr = Gateway::read_line(&mut stdout)?
            .strip_prefix("addr ")
            .ok_or_else(|| anyhow::anyhow!("the gateway did not print its address"))?
            .to_string();
        Ok(Gateway {
            child,
            stdin,
            stdout,
            addr,
        })
    }

    fn read_line(r: &mut impl BufRead) -> anyhow::Result<String> {
        let mut line = String::new();
        r.read_line(&mut line)?;
        Ok(line.trim().to_string())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{cmd}")?;
        Ok(())
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.command("stop")?;
        self.child.wait()?;
        Ok(())
    }
}

/// Percentiles of a sorted sample, in milliseconds.
fn percentiles(sorted: &[i64]) -> String {
    let p = |q: f64| match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) as f64 * q) as usize] as f64 / 1000.0,
    };
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        p(0.5),
        p(0.99),
        p(0.999),
        p(1.0)
    )
}

async fn parent(opts: Opts) -> anyhow::Result<()> {
    let total = opts.vehicle_clients + opts.all_clients;
    let events = opts.rate * opts.seconds;
    let mut gw = tokio::task::block_in_place(|| Gateway::start(&opts.durability))?;
    println!(
        "gateway pid {} on {} ({} durability); {} vehicle clients over {} vehicles + {} all-event clients; {} events/s for {} s",
        gw.pid(),
        gw.addr,
        opts.durability,
        opts.vehicle_clients,
        opts.vehicles,
        opts.all_clients,
        opts.rate,
        opts.seconds
    );
    gw.command("warmup")?;
    Gateway::read_line(&mut gw.stdout)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss0, self_rss0) = (rss_kb(gw.pid()), rss_kb(std::process::id()));

    let url = format!("ws://{}/traffic/routes/ws", gw.addr);
    let (gate, ready, stop) = (
        Arc::new(Semaphore::new(opts.connect_concurrency)),
        Arc::new(AtomicUsize::new(0)),
        CancellationToken::new(),
    );
    let t = Instant::now();
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let vehicle = (i < opts.vehicle_clients).then_some(i % opts.vehicles);
            let (gate, ready, stop) = (gate.clone(), ready.clone(), stop.clone());
            tokio::spawn(client(url.clone(), vehicle, gate, ready, stop))
        })
        .collect();
    while ready.load(Ordering::SeqCst) < total {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "clients did not connect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gate.close();
    let connect_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss1, self_rss1) = (rss_kb(gw.pid()), rss_kb(std::process::id()));
    println!("{total} clients connected in {connect_secs:.1} s; producing {events} events");

    let (cpu0, self_cpu0, t0) = (
        cpu_secs(gw.pid()),
        cpu_secs(std::process::id()),
        Instant::now(),
    );
    let (psi0, load0) = (cpu_pressure_us(), load_average());
    gw.command(&format!(
        "produce {events} {} {} {}",
        opts.rate, opts.batch, opts.vehicles
    ))?;
    let produced = tokio::task::block_in_place(|| Gateway::read_line(&mut gw.stdout))?;
    let load_secs = t0.elapsed().as_secs_f64();
    let (cpu1, self_cpu1) = (cpu_secs(gw.pid()), cpu_secs(std::process::id()));
    let (psi1, load1) = (cpu_pressure_us(), load_average());
    tokio::time::sleep(Duration::from_secs(5)).await; // let the last messages arrive
    let rss2 = rss_kb(gw.pid());
    stop.cancel();
    let mut seen = Vec::with_capacity(total);
    for t in tasks {
        seen.push(t.await?);
    }
    gw.stop()?;

    report(&opts, &seen, events, &produced);
    let per_conn = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / total as f64;
    println!(
        "gateway RSS: {} MiB before, {} MiB with {total} idle connections => {:.1} KB per idle connection; {} MiB after the load",
        rss0 / 1024,
        rss1 / 1024,
        per_conn(rss0, rss1),
        rss2 / 1024
    );
    println!(
        "client process RSS: {:.1} KB per connection (for reference)",
        per_conn(self_rss0, self_rss1)
    );
    println!(
        "CPU during the load ({load_secs:.1} s, 2 cores shared): gateway {:.0}% of one core, clients {:.0}%",
        100.0 * (cpu1 - cpu0) / load_secs,
        100.0 * (self_cpu1 - self_cpu0) / load_secs
    );
    if let (Some(a), Some(b)) = (psi0, psi1) {
        println!(
            "machine during the load: load average {load0} -> {load1}; some task waited for a CPU {:.0}% of the time (PSI)",
            (b - a) as f64 / (load_secs * 1e4)
        );
    }
    Ok(())
}

fn report(opts: &Opts, seen: &[Seen], events: u64, produced: &str) {
    // seq -> (created, durable), from the gateway.
    let stamps: HashMap<u64, (i64, i64)> = produced
        .split_whitespace()
        .skip(1)
        .filter_map(|w| {
            let mut f = w.split(',').map(|x| x.parse::<i64>().ok());
            Some((f.next()?? as u64, (f.next()??, f.next()??)))
        })
        .collect();
    let per_vehicle = |v: usize| {
        let (v, n) = (v as u64, opts.vehicles as u64);
        events / n + u64::from(v < events % n)
    };
    let (mut complete, mut short, mut over, mut closed, mut dups) = (0, 0, 0, 0, 0);
    let lagged = seen.iter().filter(|s| s.lagged).count();
    let (mut end_to_end, mut after_durable) = (Vec::new(), Vec::new());
    // seq -> (first, last) receive time over all clients
    let mut spread: HashMap<u64, (i64, i64)> = HashMap::new();
    for s in seen {
        match s.events.cmp(&s.vehicle.map_or(events, per_vehicle)) {
            std::cmp::Ordering::Equal => complete += 1,
            std::cmp::Ordering::Less => short += 1,
            std::cmp::Ordering::Greater => over += 1,
        }
        closed += u64::from(s.closed_early);
        dups += s.duplicates_or_disorder;
        for (seq, at) in &s.received {
            if let Some((created, durable)) = stamps.get(seq) {
                end_to_end.push(at - created);
                after_durable.push((at - durable).max(0));
                let (first, last) = spread.entry(*seq).or_insert((i64::MAX, i64::MIN));
                (*first, *last) = ((*first).min(*at), (*last).max(*at));
            }
        }
    }
    let mut appends: Vec<i64> = stamps.values().map(|(c, d)| d - c).collect();
    let mut first: Vec<i64> = spread
        .iter()
        .filter_map(|(seq, (f, _))| stamps.get(seq).map(|(_, d)| (f - d).max(0)))
        .collect();
    let mut fan_out: Vec<i64> = spread.values().map(|(f, l)| l - f).collect();
    for v in [
        &mut end_to_end,
        &mut after_durable,
        &mut appends,
        &mut first,
        &mut fan_out,
    ] {
        v.sort_unstable();
    }
    let expected: u64 = seen
        .iter()
        .map(|s| s.vehicle.map_or(events, per_vehicle))
        .sum();
    println!(
        "events appended: {}; append (durable write): {}",
        stamps.len(),
        percentiles(&appends)
    );
    println!(
        "messages delivered: {} ({expected} expected)",
        end_to_end.len()
    );
    println!(
        "clients: {complete} got exactly what they should, {short} fewer, {over} more, {closed} closed early ({lagged} told lagged), {dups} duplicate/out-of-order messages"
    );
    println!(
        "delivery latency, event creation -> client: {}",
        percentiles(&end_to_end)
    );
    println!(
        "delivery latency, append returned -> client: {}",
        percentiles(&after_durable)
    );
    println!(
        "per event, append returned -> first client: {}",
        percentiles(&first)
    );
    println!(
        "per event, first client -> last client: {}",
        percentiles(&fan_out)
    );
}
