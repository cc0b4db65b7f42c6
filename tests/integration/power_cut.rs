//! Power cuts under load: the gateway's data directory lives on a [`LazyFs`], the gateway is
//! SIGKILLed mid-stream and the filesystem then loses everything that was not fsynced. Every
//! event whose request was answered 202 must still reach Kafka.
//!
//! `crash.rs` covers `kill -9` alone, where the page cache survives; this test covers what only
//! `fdatasync` and directory fsyncs protect. Set `POWER_CUT_SEED` to replay a run's kill delays.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::harness::fixes::{count_fixes, post_until_gone};
use crate::harness::gateway::ChildGateway;
use crate::harness::kafka;
use crate::harness::lazyfs::LazyFs;

const TRIALS: usize = 10;
const WRITERS: usize = 8;
const BATCH_MAX_RECORDS: usize = 200;
/// The drain reads at most four requests' worth of events per round (`ROUND_REQUESTS`), as in
/// `crash.rs`.
const ROUND_MAX_EVENTS: usize = 4 * BATCH_MAX_RECORDS;
/// Each power cut re-sends at most the round in flight; one more for a produce that timed out
/// on our side after the broker had stored it, which the drain sends again.
const MAX_DUPLICATES: usize = (TRIALS + 1) * ROUND_MAX_EVENTS;
/// How long the load runs before the power fails, in ms (drawn per trial).
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 300..=1500;

/// Start the gateway on a store that may have just lost power; if it does not come up, say so
/// with what it printed, and leave no gateway process behind.
async fn start(data_dir: &Path, sets: &[(&str, String)], after: &str) -> ChildGateway {
    let started = std::panic::AssertUnwindSafe(ChildGateway::spawn(data_dir, sets))
        .catch_unwind()
        .await;
    match started {
        Ok(gw) => gw,
        Err(_) => {
            kill_our_gateways();
            let output = diagnose(data_dir, sets).await;
            panic!("the gateway did not start {after}; run on its own it said:\n{output}");
        }
    }
}

/// `ChildGateway::spawn` panics without a handle on the child: kill, by pid, every routegate
/// process that this test process started and that is still running.
fn kill_our_gateways() {
    let me = std::process::id().to_string();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_routegate")).ok();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) && std::fs::read_link(path.join("exe")).ok() == exe {
            let pid = entry.file_name();
            eprintln!("killing gateway {pid:?} that did not start");
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(&pid)
                .status();
        }
    }
}

/// Run `routegate serve` once more on the same directory, for up to 10 s, and return its stderr.
async fn diagnose(data_dir: &Path, sets: &[(&str, String)]) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_routegate"));
    cmd.arg("serve")
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in sets {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    let Ok(child) = cmd.spawn() else {
        return "(could not start it)".into();
    };
    match tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await {
        Ok(Ok(out)) => format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        Ok(Err(e)) => format!("(waiting for it failed: {e})"),
        Err(_) => "(still running after 10 s without publishing its address: hung?)".into(),
    }
}

async fn wait_until_drained(gw: &ChildGateway) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(gw.url("/traffic/routes/kafka-health"))
            .send()
            .await
        {
            last = r.json().await.unwrap_or_default();
            if last["queueDepth"] == 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not drain its outbox within 120 s; last health: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_under_load_lose_no_acknowledged_event() {
    let test_started = Instant::now();
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("power-cut");
    // Declared in this order so they drop in reverse: gateways, mount, mount point.
    let mountpoint = tempfile::tempdir().unwrap();
    let fs = LazyFs::new();
    let mut mounted = fs.mount(mountpoint.path());
    let data_dir = mountpoint.path().join("gateway");
    std::fs::create_dir(&data_dir).unwrap();
    fs.sync_everything();
    let sets = [
        ("kafka.brokers", cluster.bootstrap()),
        ("kafka.topics.vehicle_position", topic.clone()),
        ("kafka.topic_partitions", "3".to_string()),
        ("kafka.batch_max_records", BATCH_MAX_RECORDS.to_string()),
        ("kafka.request_timeout_ms", "5000".to_string()),
        ("kafka.backoff_max_ms", "1000".to_string()),
    ];
    let seed = std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros() as u64);
    eprintln!("power cuts: seed {seed} (replay with POWER_CUT_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    // A day back, so that ten trials of 10⁷ ms each stay in the past.
    let base_ms = Utc::now().timestamp_millis() - 86_400_000;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut per_trial = Vec::new();
    for trial in 0..TRIALS {
        let after = match trial {
            0 => "on a fresh data directory".to_string(),
            n => format!("after power cut {n} (trial {trial})"),
        };
        let mut gw = start(&data_dir, &sets, &after).await;
        let base = format!("http://{}", gw.addr);
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                // Recent, and distinct for every trial and request.
                let first_ms = base_ms + (trial as i64) * 10_000_000;
                let vehicle = format!("veh-{t}");
                tokio::spawn(post_until_gone(
                    base.clone(),
                    vehicle,
                    first_ms,
                    acked.clone(),
                ))
            })
            .collect();
        let delay = rng.random_range(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // On a slow machine, give the load up to 30 s to get its first answer.
        let so_far: usize = per_trial.iter().sum();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() == so_far && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SIGKILL first: the gateway must answer nothing after the power is gone.
        gw.kill9();
        for w in writers {
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("writers stop once the gateway is gone")
                .expect("writer task");
        }
        let count = acked.lock().unwrap().len() - so_far;
        per_trial.push(count);
        let report = mounted.power_cut();
        eprintln!(
            "trial {trial}: killed after {delay} ms, {count} fixes acknowledged; the cut dropped \
             {report:?}"
        );
    }
    let stats = fs.stats();
    eprintln!("filesystem: {stats:?}");
    for (trial, count) in per_trial.iter().enumerate() {
        assert!(
            *count > 0,
            "trial {trial} acknowledged nothing: the load did not run"
        );
    }

    let gw = start(
        &data_dir,
        &sets,
        &format!("after the last power cut ({TRIALS})"),
    )
    .await;
    wait_until_drained(&gw).await;
    let records = cluster.read_topic(&topic).await;
    let seen = count_fixes(&records);
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<_> = acked.iter().filter(|f| !seen.contains_key(*f)).collect();
    let mut lost_per_trial = vec![0; TRIALS];
    for (_, ms) in &lost {
        lost_per_trial[((ms - base_ms) / 10_000_000) as usize] += 1;
    }
    let mut duplicates_per_trial = vec![0; TRIALS];
    for ((_, ms), count) in &seen {
        duplicates_per_trial[((ms - base_ms) / 10_000_000) as usize] += count - 1;
    }
    let duplicates: usize = duplicates_per_trial.iter().sum();
    eprintln!(
        "power cuts: {} acknowledged, {} records in Kafka, {} duplicates, {} lost; acknowledged \
         per trial {per_trial:?}, lost per trial {lost_per_trial:?}, duplicates by the trial \
         that wrote them {duplicates_per_trial:?}; {:.0?} in all",
        acked.len(),
        records.len(),
        duplicates,
        lost.len(),
        test_started.elapsed(),
    );
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged fixes missing from Kafka after {TRIALS} power cuts (per trial \
         {lost_per_trial:?}), e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        duplicates <= MAX_DUPLICATES,
        "{duplicates} duplicates after {TRIALS} power cuts (by the trial that wrote them \
         {duplicates_per_trial:?}): more than {MAX_DUPLICATES}, i.e. ({TRIALS} cuts + 1) × one \
         drain round ({ROUND_MAX_EVENTS} events). The drain makes a round's ack durable before \
         it produces the next round, so a cut can lose at most the ack of the round in flight \
         and re-send that one round; more means acks are lost beyond the round in flight (an \
         ack not fsynced before the next produce, or a cursor that goes back further)"
    );
    drop(gw);
}
