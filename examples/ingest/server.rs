//! The two servers under test, each started on a fresh directory and a free loopback port.
//!
//! * routegate: `KAFKA_BROKERS=<brokers> routegate serve --bind 127.0.0.1:P --data-dir <dir>/data
//!   --set kafka.topics.vehicle_position=<topic> [--set …]`, run in `<dir>` (so no `./.env` is
//!   read) without the caller's `ROUTEGATE_*` and `RUST_LOG`: the defaults apply (strict
//!   durability, lz4, linger 5 ms, acks=all).
//! * Fluent Bit: `fluent-bit -c <dir>/fluent-bit.yaml`, filled from `fluent-bit.yaml.in`.
//!
//! Each says how many events it accepted and how many it has not handed on yet
//! ([`Server::progress`]): routegate from `/admin/queue/stats` (`lastSeq` on a fresh directory,
//! one seq per event; `pendingEvents`), Fluent Bit from its monitoring API (input `records`;
//! input minus output records, where output counts a record once librdkafka queued it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::load::Shape;
use crate::proc;

const FLUENT_BIT_CONF: &str = include_str!("fluent-bit.yaml.in");

/// Which server, and how to start it.
#[derive(Debug, Clone)]
pub enum Kind {
    Routegate { binary: PathBuf, sets: Vec<String> },
    FluentBit { binary: PathBuf },
}

impl Kind {
    pub fn short(&self) -> &'static str {
        match self {
            Kind::Routegate { .. } => "rg",
            Kind::FluentBit { .. } => "fb",
        }
    }

    pub fn binary(&self) -> &Path {
        match self {
            Kind::Routegate { binary, .. } | Kind::FluentBit { binary } => binary,
        }
    }

    pub fn shape(&self) -> Shape {
        match self {
            Kind::Routegate { .. } => Shape::Routegate,
            Kind::FluentBit { .. } => Shape::FluentBit,
        }
    }
}

/// A running server; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Where to ask for progress: routegate's `/admin/queue/stats` or Fluent Bit's metrics.
    progress_url: String,
    log: PathBuf,
    http: reqwest::Client,
    is_routegate: bool,
}

impl Server {
    pub async fn start(
        kind: &Kind,
        brokers: &str,
        topic: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let port = proc::free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join("server.log");
        let (mut cmd, progress_url, ready_url) = match kind {
            Kind::Routegate { binary, sets } => {
                let mut cmd = Command::new(binary);
                cmd.current_dir(dir)
                    .args(["serve", "--bind", &addr.to_string(), "--data-dir"])
                    .arg(dir.join("data"))
                    .args(["--set", &format!("kafka.topics.vehicle_position={topic}")])
                    // The load's fixes carry the same fixed 2026-12-01 stamps as the peer's
                    // script (byte-identical payloads): accept them whatever today's date.
                    .args(["--set", "http.max_timestamp_age_ms=3153600000000"])
                    .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
                    .env("KAFKA_BROKERS", brokers);
                for (k, _) in std::env::vars_os() {
                    let name = k.to_string_lossy();
                    if name.starts_with("ROUTEGATE_") || name == "RUST_LOG" {
                        cmd.env_remove(&k);
                    }
                }
                let base = format!("http://{addr}");
                (
                    cmd,
                    format!("{base}/admin/queue/stats"),
                    format!("{base}/health/live"),
                )
            }
            Kind::FluentBit { binary } => {
                let monitor = proc::free_port()?;
                let conf = fluent_bit_conf(port, monitor, &dir.join("storage"), brokers, topic);
                std::fs::write(dir.join("fluent-bit.yaml"), conf)?;
                let metrics = format!("http://127.0.0.1:{monitor}/api/v1/metrics");
                let mut cmd = Command::new(binary);
                cmd.current_dir(dir)
                    .arg("-c")
                    .arg(dir.join("fluent-bit.yaml"));
                (cmd, metrics.clone(), metrics)
            }
        };
        let server = Server {
            child: proc::spawn(&mut cmd, &log)?,
            addr,
            progress_url,
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            is_routegate: matches!(kind, Kind::Routegate { .. }),
        };
        server.wait_ready(&ready_url, cmd).await
    }

    /// Until `url` answers 200 and the load port accepts connections, then one more second (as
    /// the peer driver waits).
    async fn wait_ready(mut self, url: &str, cmd: Command) -> anyhow::Result<Self> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if !self.alive() {
                bail!("{cmd:?} exited at start:\n{}", proc::tail(&self.log, 2000));
            }
            let ok = matches!(self.http.get(url).send().await, Ok(r) if r.status() == 200);
            if ok && tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                break;
            }
            if Instant::now() > end {
                bail!(
                    "{cmd:?} not ready in 60 s:\n{}",
                    proc::tail(&self.log, 2000)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(self)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// (events the server says it accepted, events it has not handed on yet); `None` when it
    /// does not answer.
    pub async fn progress(&self) -> Option<(u64, u64)> {
        let v: Value = self
            .http
            .get(&self.progress_url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        if self.is_routegate {
            return Some((v["lastSeq"].as_u64()?, v["pendingEvents"].as_u64()?));
        }
        let sum = |section: &str, keys: &[&str]| -> u64 {
            v[section].as_object().map_or(0, |plugins| {
                plugins
                    .values()
                    .flat_map(|p| keys.iter().filter_map(|k| p[*k].as_u64()))
                    .sum()
            })
        };
        let input = sum("input", &["records"]);
        let output = sum("output", &["proc_records", "dropped_records"]);
        Some((input, input.saturating_sub(output)))
    }

    /// SIGTERM, up to 30 s to exit, then SIGKILL.
    pub async fn stop(mut self) {
        proc::stop(&mut self.child, Duration::from_secs(30)).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        proc::kill(&mut self.child);
    }
}

fn fluent_bit_conf(port: u16, monitor: u16, storage: &Path, brokers: &str, topic: &str) -> String {
    FLUENT_BIT_CONF
        .replace("@PORT@", &port.to_string())
        .replace("@MONITOR_PORT@", &monitor.to_string())
        .replace("@STORAGE_PATH@", &storage.display().to_string())
        .replace("@BROKERS@", brokers)
        .replace("@TOPIC@", topic)
}

/// Fails with what to install when a binary cannot run; returns its version line otherwise.
pub fn preflight(kind: &Kind) -> anyhow::Result<String> {
    let hint = match kind {
        Kind::Routegate { .. } => "cargo build --release, or --routegate PATH",
        Kind::FluentBit { .. } => {
            "missing runtime libraries? apt-get install -y libyaml-0-2 libsasl2-2 libssl3 zlib1g"
        }
    };
    let binary = kind.binary();
    proc::version_of(binary, "--version")
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot run {} --version ({hint})", binary.display()))
}
