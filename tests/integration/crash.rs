//! `kill -9` of the gateway process under concurrent load, and crashes at fault points inside
//! the outbox writer's commit: every event whose request was answered is in Kafka after a
//! restart, and the duplicates stay within one drain round.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::fixes::{Fix, count_fixes, post_until_gone};
use crate::harness::gateway::ChildGateway;
use crate::harness::kafka;

const WRITERS: usize = 8;
const BATCH_MAX_RECORDS: usize = 200;
/// The drain reads at most four requests' worth of events per round (`ROUND_REQUESTS`).
const ROUND_MAX_EVENTS: usize = 4 * BATCH_MAX_RECORDS;

async fn wait_until_drained(gw: &ChildGateway) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        let h: serde_json::Value = match client
            .get(gw.url("/traffic/routes/kafka-health"))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if h["queueDepth"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the restarted gateway did not drain its outbox");
}

fn sets(cluster_bootstrap: String, topic: &str) -> Vec<(&'static str, String)> {
    vec![
        ("kafka.brokers", cluster_bootstrap),
        ("kafka.topics.vehicle_position", topic.to_string()),
        ("kafka.topic_partitions", "3".to_string()),
        ("kafka.batch_max_records", BATCH_MAX_RECORDS.to_string()),
        ("kafka.request_timeout_ms", "5000".to_string()),
        ("kafka.backoff_max_ms", "1000".to_string()),
    ]
}

fn start_writers(
    gw: &ChildGateway,
    acked: &Arc<Mutex<Vec<Fix>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let base = format!("http://{}", gw.addr);
    (0..WRITERS)
        .map(|t| {
            // 2026-03-01, a vehicle per writer, 10⁸ ms apart.
            let first_ms = 1_772_323_200_000 + (t as i64) * 100_000_000;
            tokio::spawn(post_until_gone(
                base.clone(),
                format!("veh-{t}"),
                first_ms,
                acked.clone(),
            ))
        })
        .collect()
}

/// Restart on the same directory, drain, and check that Kafka holds every acknowledged fix,
/// with duplicates within one drain round.
async fn restart_and_check(
    cluster: &crate::harness::kafka::KafkaCluster,
    dir: &std::path::Path,
    sets: &[(&str, String)],
    topic: &str,
    acked: &[Fix],
    what: &str,
) {
    let gw = ChildGateway::spawn(dir, sets).await;
    wait_until_drained(&gw).await;
    let records = cluster.read_topic(topic).await;
    let seen = count_fixes(&records);
    let lost: Vec<_> = acked.iter().filter(|f| !seen.contains_key(*f)).collect();
    assert!(
        lost.is_empty(),
        "{what}: {} acknowledged fixes missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "{what}: {} acknowledged, {} records in Kafka, {} duplicates",
        acked.len(),
        records.len(),
        duplicates
    );
    assert!(
        duplicates <= ROUND_MAX_EVENTS,
        "{what}: {duplicates} duplicates: more than one drain round ({ROUND_MAX_EVENTS} events)"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_with_sigkill_under_load_loses_no_acknowledged_event() {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("crash");
    let dir = tempfile::tempdir().unwrap();
    let sets = sets(cluster.bootstrap(), &topic);
    let mut gw = ChildGateway::spawn(dir.path(), &sets).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = start_writers(&gw, &acked);
    // Kill mid-stream: once Kafka holds some of the events and the writers are still going.
    cluster
        .wait_for_records(&topic, 200, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.kill9();
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "load ran: {} fixes acknowledged",
        acked.len()
    );
    restart_and_check(
        cluster,
        dir.path(),
        &sets,
        &topic,
        &acked,
        "gateway SIGKILL",
    )
    .await;
}

/// The process dies (abort: no destructor, no flush) at a fault point inside the outbox
/// writer's commit, after `skip` passes through it, under 8 writers and a live drain.
async fn crash_at(point: &str, skip: usize) {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("crashpoint");
    let dir = tempfile::tempdir().unwrap();
    let sets = sets(cluster.bootstrap(), &topic);
    let faults = format!("{point}={skip}*off->return(crash)");
    let mut gw =
        ChildGateway::spawn_with_env(dir.path(), &sets, &[("FAILPOINTS", faults.as_str())]).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = start_writers(&gw, &acked);
    let status = gw.wait_exit(Duration::from_secs(60)).await;
    let status = status.unwrap_or_else(|| panic!("the gateway never reached {point}"));
    assert!(!status.success(), "it died at {point}: {status}");
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "load ran before {point}");
    restart_and_check(cluster, dir.path(), &sets, &topic, &acked, point).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_commit_before_the_flush_loses_no_acknowledged_event() {
    crash_at("outbox-after-commit", 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_flush_before_the_answer_loses_no_acknowledged_event() {
    crash_at("outbox-after-flush", 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_an_ack_commits_loses_no_acknowledged_event() {
    crash_at("outbox-ack-committed", 5).await;
}
