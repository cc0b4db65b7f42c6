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

mod child;
mod client;
mod report;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Semaphore;
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
            tokio::spawn(client::client(url.clone(), vehicle, gate, ready, stop))
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

    report::report(&opts, &seen, events, &produced);
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
