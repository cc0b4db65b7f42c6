//! Kafka in: records written by Kafka's own Java producer, consumed by the gateway with
//! `[[kafka.consume]]`, applied once and in order per key, across a `kill -9`, while a
//! WebSocket client watches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::gateway::{ChildGateway, routegate_cli};
use crate::harness::kafka::{self, ProducedRecord};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const OWN_SOURCE: &str = "urn:routegate:consume-test";
const RECORDS: usize = 20_000;
const VEHICLES: usize = 50;
/// Every this many records carries the gateway's own `ce_source` and must be skipped.
const OWN_EVERY: usize = 1000;
const WAIT: Duration = Duration::from_secs(180);

/// A configuration file consuming `forward` with the forward handler and `positions` with the
/// positions handler. Small fetches make a 20,000-record stream take long enough to be cut.
fn write_config(dir: &Path, bootstrap: &str, forward: &str, positions: &str) -> String {
    write_config_fetching(dir, bootstrap, forward, positions, 16384)
}

/// [`write_config`] with fetches of at most `fetch_bytes`.
fn write_config_fetching(
    dir: &Path,
    bootstrap: &str,
    forward: &str,
    positions: &str,
    fetch_bytes: u32,
) -> String {
    let path = dir.join("routegate.toml");
    let text = format!(
        r#"[kafka]
brokers = ["{bootstrap}"]
event_source = "{OWN_SOURCE}"
fetch_max_bytes = {fetch_bytes}
request_timeout_ms = 3000
backoff_max_ms = 1000
breaker_cooldown_ms = 1000

[[kafka.consume]]
topic = "{forward}"
handler = "forward"

[[kafka.consume]]
topic = "{positions}"
handler = "positions"
"#
    );
    std::fs::write(&path, text).expect("write the config file");
    path.display().to_string()
}

async fn spawn(data: &Path, config: &str) -> ChildGateway {
    ChildGateway::spawn_with_env(data, &[], &[("ROUTEGATE_CONFIG", config)]).await
}

async fn connect(gw: &ChildGateway, query: &str) -> Client {
    let url = gw
        .url(&format!("/traffic/routes/ws{query}"))
        .replacen("http", "ws", 1);
    let (client, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    client
}

/// The next event of type `kind` within `wait`, or `None` (timeout or the socket closed).
async fn next_of(c: &mut Client, kind: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, c.next()).await.ok()??;
        if let Ok(Message::Text(t)) = msg {
            let v: Value = serde_json::from_str(&t).expect("JSON text");
            if v["type"] == kind {
                return Some(v);
            }
        }
    }
}

/// The consumers' state from `kafka-health`, for the partitions of `topic`.
async fn consumers(gw: &ChildGateway, topic: &str) -> Vec<Value> {
    let body: Value = reqwest::get(gw.url("/traffic/routes/kafka-health"))
        .await
        .expect("GET kafka-health")
        .json()
        .await
        .expect("a JSON health report");
    body["consumers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["topic"] == topic)
        .collect()
}

/// Polls until every partition of `topic` has applied up to its high watermark, which must be
/// `total` records over all partitions.
async fn wait_caught_up(gw: &ChildGateway, topic: &str, partitions: usize, total: i64) {
    let started = Instant::now();
    loop {
        let c = consumers(gw, topic).await;
        // A partition that never had a record has no stored position yet.
        let next = |p: &Value| p["nextOffset"].as_i64().unwrap_or(0);
        let caught_up = |p: &Value| p["highWatermark"].as_i64() == Some(next(p));
        if c.len() == partitions
            && c.iter().map(next).sum::<i64>() == total
            && c.iter().all(caught_up)
        {
            return;
        }
        assert!(started.elapsed() < WAIT, "{topic} not caught up: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stream(topic_records: usize) -> Vec<ProducedRecord> {
    (0..topic_records)
        .map(|n| {
            let vehicle = format!("v{}", n % VEHICLES);
            let r = ProducedRecord::json(None, Some(&vehicle), &json!({ "n": n }));
            if n % OWN_EVERY == OWN_EVERY - 1 {
                r.header("ce_source", OWN_SOURCE)
            } else {
                r.header("ce_source", "urn:headquarters")
            }
        })
        .collect()
}

/// A `since=0` replay holds every produced record of `forward` (but the gateway's own) exactly
/// once, as a `kafka.record` event keyed by its vehicle, and each vehicle's records in order.
async fn assert_logged_once_in_order(gw: &ChildGateway, forward: &str) {
    let mut replay = connect(gw, "?since=0").await;
    let expected = RECORDS - RECORDS / OWN_EVERY;
    let mut at = BTreeSet::new();
    let mut per_vehicle: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while at.len() < expected {
        let e = next_of(&mut replay, "kafka.record", Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("only {} of {expected} records were logged", at.len()));
        let d = &e["data"];
        let place = (
            d["partition"].as_i64().unwrap(),
            d["offset"].as_i64().unwrap(),
        );
        assert!(at.insert(place), "record {place:?} applied twice");
        assert_eq!(d["topic"], forward);
        assert_eq!(e["vehicleId"], d["key"], "the key names the vehicle");
        let n = d["value"]["n"].as_u64().unwrap();
        assert_ne!(
            n as usize % OWN_EVERY,
            OWN_EVERY - 1,
            "own record {n} was applied"
        );
        per_vehicle
            .entry(d["key"].as_str().unwrap().to_string())
            .or_default()
            .push(n);
    }
    assert!(
        next_of(&mut replay, "kafka.record", Duration::from_secs(1))
            .await
            .is_none(),
        "more records than were produced"
    );
    assert_eq!(per_vehicle.len(), VEHICLES);
    for (vehicle, ns) in &per_vehicle {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{vehicle} out of order: {ns:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_another_producer_are_applied_once_in_order_per_key_across_a_kill_minus_nine() {
    let cluster = kafka::shared().await;
    let (forward, positions) = (
        kafka::unique_topic("telematics"),
        kafka::unique_topic("fixes"),
    );
    cluster.create_topic(&forward, 3, 1).await;
    cluster.create_topic(&positions, 3, 1).await;
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = write_config(files.path(), &cluster.bootstrap(), &forward, &positions);

    let mut gw = spawn(data.path(), &config).await;
    let mut live = connect(&gw, "").await;
    cluster.produce_records(&forward, &stream(RECORDS)).await;
    let mut seen_live = 0;
    while seen_live < 500 {
        next_of(&mut live, "kafka.record", WAIT)
            .await
            .expect("forwarded records reach a live client");
        seen_live += 1;
    }
    let applied_before: i64 = consumers(&gw, &forward)
        .await
        .iter()
        .filter_map(|p| p["nextOffset"].as_i64())
        .sum();
    gw.kill9();
    assert!(
        (applied_before as usize) < RECORDS,
        "the kill must come mid-stream, but {applied_before} records were applied"
    );

    let gw = spawn(data.path(), &config).await;
    wait_caught_up(&gw, &forward, 3, RECORDS as i64).await;
    assert_logged_once_in_order(&gw, &forward).await;

    // GPS fixes move the vehicle like the HTTP API, are never produced back, and a malformed
    // record is dead-lettered while the rest flows.
    let mut fixes: Vec<ProducedRecord> = (0..10)
        .map(|i| {
            let fix = json!({
                "latitude": 43.73 + i as f64 * 0.001,
                "longitude": 7.42,
                "timestamp": format!("2026-12-03T10:{i:02}:00Z"),
            });
            ProducedRecord::json(Some(0), Some("truck-1"), &fix)
        })
        .collect();
    fixes.insert(
        4,
        ProducedRecord::new(Some(0), Some("truck-1"), "{not a fix"),
    );
    fixes.push(
        ProducedRecord::json(
            Some(0),
            Some("truck-1"),
            &json!({"latitude": 1, "longitude": 1,
            "timestamp": "2026-12-03T11:00:00Z"}),
        )
        .header("ce_source", OWN_SOURCE),
    );
    let mut truck = connect(&gw, "?vehicleId=truck-1").await;
    cluster.produce_records(&positions, &fixes).await;
    for i in 0..10 {
        let e = next_of(&mut truck, "vehicle.position", WAIT)
            .await
            .expect("each fix is a vehicle.position event");
        assert_eq!(
            e["data"]["latitude"].as_f64().unwrap(),
            43.73 + i as f64 * 0.001
        );
    }
    wait_caught_up(&gw, &positions, 3, fixes.len() as i64).await;
    let p0 = consumers(&gw, &positions).await;
    let p0 = p0.iter().find(|p| p["partition"] == 0).unwrap();
    assert_eq!(
        (
            p0["applied"].as_u64(),
            p0["deadLettered"].as_u64(),
            p0["skipped"].as_u64()
        ),
        (Some(10), Some(1), Some(1)),
        "{p0}"
    );
    let health: Value = reqwest::get(gw.url("/traffic/routes/kafka-health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["queueDepth"], 0,
        "consumed records are not produced back"
    );

    // The operator lists the dead letter through the running gateway, then from the directory.
    let listed = consumer_dead_letters(data.path(), &config);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let place = (listed[0]["topic"].as_str(), listed[0]["offset"].as_i64());
    assert_eq!(place, (Some(positions.as_str()), Some(4)));
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a GPS fix"),
        "{listed:?}"
    );
    assert_eq!(listed[0]["value"], "{not a fix");
    let mut gw = gw;
    assert!(gw.terminate().await.success());
    assert_eq!(consumer_dead_letters(data.path(), &config), listed);
    let stats = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .args(["queue", "stats", "--json", "--data-dir"])
        .arg(data.path())
        .env("ROUTEGATE_CONFIG", &config)
        .output()
        .expect("run routegate");
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("JSON stats");
    let stored: i64 = stats["consumers"]
        .as_array()
        .expect("consumers in the stats")
        .iter()
        .filter(|c| c["topic"] == forward.as_str())
        .map(|c| c["nextOffset"].as_i64().unwrap())
        .sum();
    assert_eq!(stored, RECORDS as i64, "{stats}");
}

/// `routegate queue dead-letters list --consumer --json` on `data`.
fn consumer_dead_letters(data: &Path, config: &str) -> Vec<Value> {
    let args = ["queue", "dead-letters", "list", "--consumer", "--json"];
    serde_json::from_str(&routegate_cli(data, config, &args)).expect("a JSON list")
}

/// The broker goes away mid-stream and comes back: consumers report that they retry, then
/// finish where they stopped; the outcome is the same as without the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_changes_nothing_in_the_outcome() {
    let cluster = kafka::KafkaCluster::single().await;
    let (forward, positions) = (kafka::unique_topic("outage"), kafka::unique_topic("fixes"));
    cluster.create_topic(&forward, 3, 1).await;
    cluster.create_topic(&positions, 1, 1).await;
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // The smallest fetches: the stream must last long enough for the broker to stop under it.
    let bootstrap = cluster.bootstrap();
    let config = write_config_fetching(files.path(), &bootstrap, &forward, &positions, 1024);
    let gw = spawn(data.path(), &config).await;
    let mut live = connect(&gw, "").await;
    cluster.produce_records(&forward, &stream(RECORDS)).await;
    for _ in 0..100 {
        next_of(&mut live, "kafka.record", WAIT)
            .await
            .expect("forwarded records reach a live client");
    }
    cluster.stop(1).await;
    let started = Instant::now();
    let retrying = loop {
        let c = consumers(&gw, &forward).await;
        if let Some(p) = c.iter().find(|p| p["state"] == "retrying") {
            break p.clone();
        }
        let next: i64 = c.iter().filter_map(|p| p["nextOffset"].as_i64()).sum();
        assert!(
            (next as usize) < RECORDS,
            "the outage must come mid-stream, but all records were applied"
        );
        assert!(
            started.elapsed() < WAIT,
            "no consumer noticed the outage: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(retrying["lastError"].is_string(), "{retrying}");
    cluster.start_node(1).await;
    wait_caught_up(&gw, &forward, 3, RECORDS as i64).await;
    assert_logged_once_in_order(&gw, &forward).await;
}
