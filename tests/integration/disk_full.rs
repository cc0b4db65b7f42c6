//! A long broker outage on a small disk: the gateway fills its filesystem with acknowledged
//! fixes, refuses more with 503 + `Retry-After` (never a 500), delivers every acknowledged fix
//! once the broker is back — with the disk still full — and accepts again once it made room.
//! Also the byte quota (`storage.max_queue_bytes`), which refuses before the disk is the limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use routegate::config::Settings;

use crate::harness::fixes::count_fixes;
use crate::harness::gateway::{Dir, TestGateway};
use crate::harness::kafka::{self, KafkaCluster};

const WAIT: Duration = Duration::from_secs(120);
const FIXES_PER_REQUEST: usize = 10;

/// A tmpfs of a fixed size, unmounted when dropped (mounting needs root, as CI runs).
struct SmallDisk {
    _dir: tempfile::TempDir,
    mountpoint: PathBuf,
}

impl SmallDisk {
    fn mount(mib: u64) -> SmallDisk {
        let dir = tempfile::tempdir().expect("mountpoint");
        let mountpoint = dir.path().to_path_buf();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mountpoint)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs failed ({status}): this test needs root"
        );
        SmallDisk {
            _dir: dir,
            mountpoint,
        }
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

fn settings(s: &mut Settings, bootstrap: String, topic: &str) {
    s.kafka.brokers = vec![bootstrap];
    s.kafka.topics.vehicle_position = topic.to_string();
    s.kafka.topic_partitions = 1;
    s.kafka.backoff_initial_ms = 50;
    s.kafka.backoff_max_ms = 1_000;
    s.kafka.breaker_cooldown_ms = 1_000;
}

/// One request of fixes for `vehicle`, stamped from `n` on: `(status, retry-after, body,
/// the fixes' (vehicle, ms) keys)`.
async fn post_fixes(
    gw: &TestGateway,
    vehicle: &str,
    n: usize,
) -> (u16, Option<String>, serde_json::Value, Vec<(String, i64)>) {
    let start = Utc::now() - chrono::Duration::minutes(1);
    let stamps: Vec<DateTime<Utc>> = (0..FIXES_PER_REQUEST)
        .map(|j| start + chrono::Duration::milliseconds((n * FIXES_PER_REQUEST + j) as i64))
        .collect();
    let body: Vec<_> = stamps
        .iter()
        .map(|t| {
            serde_json::json!({
                "latitude": 43.73, "longitude": 7.42, "timestamp": t.to_rfc3339()
            })
        })
        .collect();
    let resp = gw
        .http
        .post(gw.url(&format!("/traffic/vehicles/{vehicle}/positions")))
        .json(&body)
        .send()
        .await
        .expect("POST positions");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    let keys = stamps
        .iter()
        .map(|t| (vehicle.to_string(), t.timestamp_millis()))
        .collect();
    (status, retry, json, keys)
}

/// Post until the gateway refuses; every answer must be 202 or a 503 with `Retry-After`.
async fn fill(gw: &TestGateway, vehicle: &str) -> (Vec<(String, i64)>, serde_json::Value) {
    let mut acked = Vec::new();
    for n in 0..100_000 {
        let (status, retry, body, keys) = post_fixes(gw, vehicle, n).await;
        match status {
            202 => acked.extend(keys),
            503 => {
                assert!(retry.is_some(), "a 503 without Retry-After: {body}");
                return (acked, body);
            }
            other => panic!("answered {other} after {} fixes: {body}", acked.len()),
        }
    }
    panic!("the gateway never refused");
}

async fn wait_until_drained(gw: &TestGateway) {
    gw.wait_until_drained(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_delivers_everything_once_the_broker_is_back_and_accepts_again()
 {
    let disk = SmallDisk::mount(24);
    let data = disk.path().join("data");
    let cluster = KafkaCluster::single().await;
    cluster.stop(1).await;
    let topic = kafka::unique_topic("diskfull");
    let gw = TestGateway::spawn_in(Dir::Borrowed(data), |s| {
        settings(s, cluster.bootstrap(), &topic)
    })
    .await;

    let (acked, refusal) = fill(&gw, "veh-full").await;
    assert!(acked.len() >= 1_000, "only {} fixes fit", acked.len());
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk"), "{refusal}");
    let (ready, body) = gw.get_json("/health/ready").await;
    assert_eq!(ready, 200, "a full disk is not a broken gateway: {body}");
    eprintln!(
        "full disk: {} fixes acknowledged, then {message}",
        acked.len()
    );

    cluster.start_node(1).await;
    wait_until_drained(&gw).await;
    let (ready, body) = gw.get_json("/health/ready").await;
    assert_eq!(
        ready, 200,
        "storage still works after the disk was full: {body}"
    );
    let records = cluster.wait_for_records(&topic, acked.len(), WAIT).await;
    let seen = count_fixes(&records);
    let lost: Vec<_> = acked.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged fixes never reached Kafka",
        lost.len()
    );

    // A client that honours Retry-After gets in again: the delivered events make way.
    let mut answers = Vec::new();
    for n in 0..10 {
        let (status, retry, body, _) = post_fixes(&gw, "veh-after", n).await;
        answers.push((status, body));
        if status == 202 {
            break;
        }
        let secs: u64 = retry.and_then(|r| r.parse().ok()).expect("Retry-After");
        tokio::time::sleep(Duration::from_secs(secs.min(5))).await;
    }
    assert_eq!(
        answers.last().map(|a| a.0),
        Some(202),
        "appends succeed again once the drain made room: {answers:?}"
    );
    eprintln!("accepting again after {} tries", answers.len());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_quota_refuses_with_503_and_keeps_everything_queued() {
    const QUOTA: u64 = 1024 * 1024;
    let gw = TestGateway::spawn(|s| s.storage.max_queue_bytes = QUOTA).await;
    let (acked, refusal) = fill(&gw, "veh-quota").await;
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(message.contains("outbox is full"), "{refusal}");
    let stats = gw.outbox().stats();
    assert_eq!(
        stats.pending_events,
        acked.len() as u64,
        "every acknowledged fix is still queued"
    );
    assert!(stats.pending_bytes <= QUOTA, "{stats:?}");
    assert!(
        stats.pending_bytes > QUOTA / 2,
        "the quota, not something else, refused: {stats:?}"
    );
    gw.stop().await;
}
