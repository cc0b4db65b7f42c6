//! Starting routegate for tests: in-process on port 0, or as a child process that can be
//! killed with SIGKILL.
//!
//! Both kinds get a fresh temporary data directory unless given one, and point at no broker
//! unless told otherwise (`127.0.0.1:9` refuses connections at once), so tests without Kafka
//! stay fast. A child gateway is killed when its handle drops (also on panic) and is started
//! with `PR_SET_PDEATHSIG`, so a crashed test binary leaves no gateway behind. Set `TEST_LOG=1`
//! to see the gateway's logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use routegate::app::{App, AppError};
use routegate::config::Settings;
use routegate::datadir::DataDirError;
use routegate::queue::Outbox;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Settings for a test gateway: port 0, the given data directory, no broker.
pub fn test_settings(data_dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.http.bind = "127.0.0.1:0".into();
    s.storage.data_dir = data_dir.to_path_buf();
    s.kafka.brokers = vec!["127.0.0.1:9".into()];
    s.kafka.request_timeout_ms = 2_000;
    s.kafka.backoff_max_ms = 1_000;
    s.kafka.breaker_cooldown_ms = 1_000;
    s.http.shutdown_grace_ms = 2_000;
    // The tests stamp fixes with synthetic times far apart (unique per fix); the window around
    // the clock has tests of its own that set it back to the default.
    s.http.max_timestamp_age_ms = WIDE_TIME_WINDOW_MS;
    s.http.max_timestamp_lead_ms = WIDE_TIME_LEAD_MS;
    s
}

/// Ten years back and one ahead (the most the setting allows): the fix times `test_settings`
/// and child gateways accept.
pub const WIDE_TIME_WINDOW_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
pub const WIDE_TIME_LEAD_MS: u64 = 365 * 24 * 3600 * 1000;

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let mut cfg = Settings::default().log;
            cfg.filter = std::env::var("TEST_LOG_FILTER").unwrap_or(cfg.filter);
            routegate::telemetry::init(&cfg);
        }
    });
}

/// [`App::build`], retried while the data directory's lock is held by this very process. That
/// happens on an in-process restart when another test is spawning a child at that moment: the
/// harness spawns with `pre_exec`, so the fork holds a copy of every descriptor, the lock's
/// included, until its `exec` (seen in CI as `InUse { pid: <this process> }`).
async fn build_retrying_own_lock(settings: &Settings) -> App {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match App::build(settings.clone()).await {
            Ok(app) => return app,
            Err(AppError::DataDir(DataDirError::InUse { pid, .. }))
                if pid == Some(std::process::id()) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("test gateway starts: {e:?}"),
        }
    }
}

/// Where a data directory lives: owned by the test (removed at the end) or borrowed.
#[derive(Debug)]
pub enum Dir {
    Owned(TempDir),
    Borrowed(PathBuf),
}

impl Dir {
    pub fn fresh() -> Dir {
        Dir::Owned(tempfile::tempdir().expect("create a temporary data directory"))
    }

    pub fn path(&self) -> &Path {
        match self {
            Dir::Owned(t) => t.path(),
            Dir::Borrowed(p) => p,
        }
    }
}

/// A gateway running inside the test process.
#[derive(Debug)]
pub struct TestGateway {
    pub addr: SocketAddr,
    pub dir: Dir,
    pub settings: Settings,
    outbox: Outbox,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pub http: reqwest::Client,
}

impl TestGateway {
    /// Start with default test settings, adjusted by `configure`.
    pub async fn spawn(configure: impl FnOnce(&mut Settings)) -> TestGateway {
        TestGateway::spawn_in(Dir::fresh(), configure).await
    }

    /// Start on an existing directory (a restart).
    pub async fn spawn_in(dir: Dir, configure: impl FnOnce(&mut Settings)) -> TestGateway {
        init_logs();
        let mut settings = test_settings(dir.path());
        configure(&mut settings);
        let app = build_retrying_own_lock(&settings).await;
        let (addr, outbox) = (app.local_addr(), app.outbox());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            app.run_until(shutdown).await.expect("gateway runs");
        });
        TestGateway {
            addr,
            dir,
            settings,
            outbox,
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Graceful shutdown; returns the data directory for a restart.
    pub async fn stop(mut self) -> Dir {
        self.shutdown().await;
        std::mem::replace(&mut self.dir, Dir::Borrowed(PathBuf::new()))
    }

    /// Stop gracefully and start again on the same directory and settings.
    pub async fn restart(self) -> TestGateway {
        let settings = self.settings.clone();
        let dir = self.stop().await;
        TestGateway::spawn_in(dir, move |s| {
            *s = Settings {
                storage: s.storage.clone(),
                ..settings
            }
        })
        .await
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("gateway stops within 30 s")
                .expect("gateway task does not panic");
        }
    }

    /// Wait until the outbox is empty; fail the test after `timeout`.
    pub async fn wait_until_drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.outbox.stats().pending_events > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "outbox not drained: {:?}",
                self.outbox.stats()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET a path and parse the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST a JSON body and parse the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A gateway running as a child process (for `kill -9`).
#[derive(Debug)]
pub struct ChildGateway {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    child: Option<std::process::Child>,
}

impl ChildGateway {
    /// Start `routegate serve` on `data_dir` with extra `--set key=value` overrides, and wait
    /// until it has published its address.
    pub async fn spawn(data_dir: &Path, sets: &[(&str, String)]) -> ChildGateway {
        ChildGateway::spawn_with_env(data_dir, sets, &[]).await
    }

    /// [`ChildGateway::spawn`] with extra environment variables (e.g. `FAILPOINTS`).
    pub async fn spawn_with_env(
        data_dir: &Path,
        sets: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> ChildGateway {
        ChildGateway::start(data_dir, sets, env, None).await
    }

    /// [`ChildGateway::spawn`] with its stdout and stderr written to `log`.
    pub async fn spawn_logging(
        data_dir: &Path,
        sets: &[(&str, String)],
        log: &Path,
    ) -> ChildGateway {
        ChildGateway::start(data_dir, sets, &[], Some(log)).await
    }

    async fn start(
        data_dir: &Path,
        sets: &[(&str, String)],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> ChildGateway {
        let _ = std::fs::remove_file(data_dir.join("gateway.addr"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"));
        cmd.arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd.arg("--set")
            .arg(format!("http.max_timestamp_age_ms={WIDE_TIME_WINDOW_MS}"))
            .arg("--set")
            .arg(format!("http.max_timestamp_lead_ms={WIDE_TIME_LEAD_MS}"));
        for (k, v) in sets {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        cmd.envs(env.iter().copied());
        if let Some(log) = log {
            let file = std::fs::File::create(log).expect("create the child's log file");
            let copy = file.try_clone().expect("clone the log file handle");
            cmd.stdout(file).stderr(copy);
        } else if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start the routegate binary");
        let addr_file = data_dir.join("gateway.addr");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Some(a) = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break a;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "child gateway did not publish its address within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        ChildGateway {
            addr,
            data_dir: data_dir.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait up to `timeout` for the process to end on its own; its exit status, or `None` if it
    /// still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("poll the gateway") {
                self.child = None;
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("child is running");
        // SAFETY: sending a signal to our own child process by pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        tokio::task::spawn_blocking(move || child.wait().expect("wait for the gateway"))
            .await
            .expect("wait task")
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Ask the kernel to SIGKILL the child when the thread that spawned it dies, so a crashed test
/// binary cannot leave a gateway running.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Run `routegate ARGS --data-dir DATA` with the configuration file `config` (as
/// `ROUTEGATE_CONFIG`); its standard output. Panics with its standard error when it fails.
pub fn routegate_cli(data: &Path, config: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("ROUTEGATE_CONFIG", config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run routegate");
    assert!(
        out.status.success(),
        "routegate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
