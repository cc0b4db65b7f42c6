//! Helpers shared by the benchmarks that run the release gateway beside a real Kafka broker
//! (`outbox_drain`, `consume_bench`): the gateway binary as a child process, its resident
//! memory, and Kafka's end offsets. Included with `#[path = "bench_support/mod.rs"] mod …;`
//! (a directory without `main.rs` is not an example of its own).

use std::path::{Path, PathBuf};
use std::process::Child;

/// The release gateway binary next to this example (`target/release/routegate`).
pub fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/examples")
        .join("routegate");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    bin
}

/// Resident memory of `pid` in KiB: total, anonymous (heap, stacks) and file-backed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

impl Rss {
    pub fn of(pid: u32) -> Rss {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Rss {
            total: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }

    /// The sample with the larger total; its parts are kept together.
    pub fn peak(self, other: Rss) -> Rss {
        if other.total > self.total {
            other
        } else {
            self
        }
    }

    pub fn total_mib(&self) -> f64 {
        self.total as f64 / 1024.0
    }

    pub fn anon_mib(&self) -> f64 {
        self.anon as f64 / 1024.0
    }

    pub fn file_mib(&self) -> f64 {
        self.file as f64 / 1024.0
    }
}

/// CPU time (user + system) `pid` has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    std::time::Duration::from_millis(ticks * 10)
}

/// A child gateway, killed and reaped when dropped.
pub struct Gateway(pub Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sum of `topic`'s end offsets, from Kafka's own `GetOffsetShell`.
pub async fn end_offsets(cluster: &super::kafka::KafkaCluster, topic: &str) -> u64 {
    let bootstrap = cluster.bootstrap();
    let out = cluster
        .run_tool(
            "org.apache.kafka.tools.GetOffsetShell",
            &["--bootstrap-server", &bootstrap, "--topic", topic],
        )
        .await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
        .sum()
}

/// Bytes of the files under `p`.
pub fn fs_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => fs_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
