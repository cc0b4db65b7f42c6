//! JVM processes: how they are started, signalled and reaped, and where their files live.
//!
//! Every long-lived JVM runs `routegate.harness.Watchdog <main class> ...` with its stdin piped
//! from this test process (`KafkaTool` watches its own stdin the same way). The test process
//! keeps the write end open and never writes; when it dies, by exit, panic, timeout or
//! SIGKILL, the kernel closes the pipe and the JVM halts. That is what stops the shared broker
//! (statics are never dropped). `Drop` only makes the stop prompt for clusters owned by one
//! test. The std pipes are close-on-exec, so no other child inherits a write end and keeps a
//! JVM alive.
//!
//! Every JVM command line carries `-Droutegate.kafka.harness=<pid>-<cluster>`, so leftovers are
//! easy to find: `pgrep -af routegate.kafka.harness`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::install::{Install, kafka_src_dir};

/// The system property that marks every JVM of the harness.
pub const MARKER_PROPERTY: &str = "routegate.kafka.harness";

/// Broker flags: kafka-run-class.sh's G1 settings with a smaller heap (test brokers hold
/// little data), and C1 only (`TieredStopAtLevel=1`, not a Kafka default): on two shared
/// cores C2 compiling slows the start of three brokers, and tests need no peak throughput.
/// [`ClusterOptions::broker_jvm_flags`](super::ClusterOptions) can undo it.
const BROKER_JVM_FLAGS: &[&str] = &[
    "-Xms512m",
    "-Xmx512m",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
];

/// Short-lived and helper JVMs: small heap, quick start.
const TOOL_JVM_FLAGS: &[&str] = &[
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
];

/// Which flags and log4j configuration a JVM gets.
#[derive(Clone, Copy, Debug)]
pub(crate) enum JvmKind {
    Broker,
    Tool,
}

/// A `java` command for `main_class`, marked with `marker`. Without the Watchdog: callers
/// that need it put `routegate.harness.Watchdog` first.
pub(crate) fn java_command(install: &Install, kind: JvmKind, marker: &str) -> Command {
    let (flags, log4j) = match kind {
        JvmKind::Broker => (BROKER_JVM_FLAGS, "broker-log4j2.properties"),
        JvmKind::Tool => (TOOL_JVM_FLAGS, "tools-log4j2.properties"),
    };
    let mut command = Command::new(&install.java);
    command
        .args(flags)
        .arg(format!("-D{MARKER_PROPERTY}={marker}"))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            kafka_src_dir().join(log4j).display()
        ))
        .arg("-cp")
        .arg(&install.classpath);
    command
}

/// A running JVM whose stdin pipe we hold. Dropping it kills and reaps the JVM.
#[derive(Debug)]
pub(crate) struct Jvm {
    child: Child,
    /// Never written; its closing is the JVM's signal to halt (see the module docs).
    _stdin: ChildStdin,
}

impl Jvm {
    /// Spawns `command` with stdin piped and stdout/stderr appended to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> Jvm {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open the JVM log {}: {e}", log.display()));
        let err = out
            .try_clone()
            .expect("cannot duplicate the JVM log handle");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        let stdin = child.stdin.take().expect("stdin of the JVM was piped");
        Jvm {
            child,
            _stdin: stdin,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `true` while the process has not exited (reaps it if it has).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM: Kafka's shutdown hook runs a controlled shutdown.
    ///
    /// Only while the process is unreaped: a reaped pid may already belong to someone else.
    /// Nothing else reaps our children, so the check cannot go stale before the signal.
    pub fn terminate(&mut self) {
        if self.is_running() {
            send_sigterm(self.child.id());
        }
    }

    /// SIGKILL, like `kill -9`: no shutdown hook, no flush.
    pub fn kill(&mut self) {
        // An error only means the process has already exited.
        let _ = self.child.kill();
    }

    /// Polls until the process has exited or `timeout` passed; `true` if it exited.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// SIGKILL and reap, blocking (only for `Drop`, where no runtime may be around).
    pub fn kill_and_reap(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill_and_reap();
        }
    }
}

/// Sends SIGTERM through the shell's `kill` builtin.
///
/// Why not `libc::kill`: it is an `unsafe fn`, and the crate sets `unsafe_code = "forbid"`
/// (which no `allow` can lift). SIGKILL needs no helper: `Child::kill` sends it.
fn send_sigterm(pid: u32) {
    let status = Command::new("sh")
        .args(["-c", "kill -TERM \"$0\" 2>/dev/null", &pid.to_string()])
        .status();
    // A failure means the process is already gone; the caller waits for the exit anyway.
    let _ = status;
}

/// `true` if a process with this pid exists and is not a zombie. A JVM whose parent died is
/// a zombie until init reaps it; it runs no code any more, so it counts as gone.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: `pid (comm) state ...`; comm may contain spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// The directory of this test process's clusters: `<home>/runs/<pid>`. The first call also
/// removes the run directories of processes that no longer exist, so `target/` does not grow
/// with every run (a directory kept after a failure stays until the next run).
pub(crate) fn run_dir(install: &Install) -> PathBuf {
    let runs = install.home.join("runs");
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| remove_stale_runs(&runs));
    let dir = runs.join(std::process::id().to_string());
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

pub(crate) fn remove_stale_runs(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !pid_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The last `lines` lines of a log file, for failure messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
