//! Child processes and what `/proc` says about them.
//!
//! Every process this benchmark starts (the servers, the Kafka broker's JVM) goes through
//! [`spawn`]: its own process group, so a Ctrl-C in the terminal reaches only this benchmark,
//! which then stops its children in order; and `PR_SET_PDEATHSIG`, so none outlives a benchmark
//! that is killed outright. The kernel sends that signal when the *thread* that spawned the
//! child ends, so children are spawned from the main future only (`block_on` on the main
//! thread), never from a task or `spawn_blocking`.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Starts `cmd` with stdin closed and stdout and stderr appended to `log`.
#[allow(unsafe_code, reason = "prctl(PR_SET_PDEATHSIG) between fork and exec")]
pub fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("start {:?}", cmd.get_program()))
}

/// SIGTERM, then up to `grace` for the process to exit, then SIGKILL. Returns whether it
/// exited by itself.
#[allow(unsafe_code, reason = "kill(2) with SIGTERM; std only sends SIGKILL")]
pub async fn stop(child: &mut Child, grace: Duration) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return true;
    }
    // SAFETY: kill(2) on the pid of a child we have not reaped yet, so the pid is still ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Kills and reaps a child that may still run (for `Drop`).
pub fn kill(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `n` bytes of a log file, for error messages.
pub fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(&text[text.len().saturating_sub(n)..]).into_owned()
}

/// utime + stime of a process and all its threads, in seconds; `None` once it is gone.
#[allow(unsafe_code, reason = "sysconf(_SC_CLK_TCK)")]
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 and 15 (utime, stime), counted after the parenthesised command name, which may
    // itself contain spaces: state is field 3, so they are the 12th and 13th after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a constant of the C library.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / per_sec as f64)
}

/// A `kB` line of `/proc/<pid>/status` (`VmHWM`, `VmRSS`) in bytes; `None` once it is gone.
pub fn status_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Whether `dir` is on tmpfs or ramfs, where fsync costs nothing and a durability comparison
/// means little.
#[allow(unsafe_code, reason = "statfs(2)")]
pub fn on_memory_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return false;
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    matches!(st.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// First line of `cmd --version`-style output, or why it could not run.
pub fn version_of(program: &Path, arg: &str) -> Result<String, String> {
    match Command::new(program).arg(arg).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            Ok(text.lines().next().unwrap_or("").trim().to_string())
        }
        Ok(out) => Err(format!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}
