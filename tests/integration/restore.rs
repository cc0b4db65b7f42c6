//! Routes from Kafka: a depot imports the routes another gateway plans for it (`routes`
//! consumer), and a depot whose disk is lost is rebuilt from Kafka (`restore --from-kafka`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::gateway::{Dir, TestGateway, routegate_cli};
use crate::harness::kafka::{self, KafkaCluster, ProducedRecord};
use routegate::config::{ConsumeConfig, ConsumeHandler, ConsumeStart, Settings};

const WAIT: Duration = Duration::from_secs(120);

/// Unique topics for one gateway's produced events.
#[derive(Clone)]
struct Topics {
    optimized: String,
    updated: String,
    positions: String,
}

impl Topics {
    fn unique(name: &str) -> Topics {
        Topics {
            optimized: kafka::unique_topic(&format!("{name}-optimized")),
            updated: kafka::unique_topic(&format!("{name}-updated")),
            positions: kafka::unique_topic(&format!("{name}-positions")),
        }
    }

    fn apply(&self, s: &mut Settings, cluster: &KafkaCluster, source: &str, depot: &str) {
        s.kafka.brokers = vec![cluster.bootstrap()];
        s.kafka.topic_partitions = 2;
        s.kafka.event_source = source.into();
        s.kafka.topics.route_optimized = self.optimized.clone();
        s.kafka.topics.route_updated = self.updated.clone();
        s.kafka.topics.vehicle_position = self.positions.clone();
        s.depot.id = depot.into();
    }
}

fn stops(vehicle: &str, n: usize, windows: bool) -> Value {
    let stops: Vec<Value> = (0..n)
        .map(|i| {
            let mut s = json!({"id": format!("s{i}"), "latitude": 40.70 + 0.005 * ((i * 7) % 10) as f64,
                               "longitude": -74.0 + 0.004 * i as f64, "serviceMinutes": 3});
            if windows && i % 2 == 0 {
                s["timeWindow"] = json!({"start": "2030-01-01T08:00:00Z", "end": "2030-01-01T12:00:00Z"});
            }
            s
        })
        .collect();
    json!({"vehicleId": vehicle, "stops": stops, "departureTime": "2030-01-01T07:00:00Z"})
}

async fn plan(gw: &TestGateway, body: &Value) -> String {
    let (status, route) = gw.post_json("/traffic/routes/optimize", body).await;
    assert_eq!(status, 201, "{route}");
    route["routeId"].as_str().unwrap().to_string()
}

async fn patch_stop(gw: &TestGateway, route: &str, stop: &str, status: &str) {
    let resp = gw
        .http
        .patch(gw.url(&format!("/traffic/routes/{route}/stops/{stop}")))
        .json(&json!({"status": status}))
        .send()
        .await
        .expect("PATCH a stop");
    assert_eq!(resp.status().as_u16(), 200);
}

/// The route as GET shows it.
async fn route(gw: &TestGateway, id: &str) -> (u16, Value) {
    gw.get_json(&format!("/traffic/routes/{id}")).await
}

/// The route's audit trail without the sequence numbers (a restored log numbers anew).
async fn trail(gw: &TestGateway, id: &str) -> Vec<Value> {
    let (status, body) = gw.get_json(&format!("/traffic/routes/{id}/events")).await;
    assert_eq!(status, 200, "{body}");
    let mut events = body["events"].as_array().cloned().unwrap_or_default();
    for e in &mut events {
        e.as_object_mut().unwrap().remove("seq");
    }
    events
}

/// Polls `GET /traffic/routes/{id}` until it shows `version`.
async fn wait_version(gw: &TestGateway, id: &str, version: u64) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = route(gw, id).await;
        if status == 200 && body["version"] == version {
            return body;
        }
        assert!(
            started.elapsed() < WAIT,
            "route {id} never reached version {version}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Headquarters plans and changes routes for the depot "south"; the depot's gateway consumes
/// them with the `routes` handler and shows them as headquarters does, with their events. The
/// whole routes reach the depot's topic only after it has read the stop change (they travel on
/// different topics): the change waits for its route instead of being dead-lettered. A route
/// for another depot is not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_planned_at_headquarters_appear_at_their_depot() {
    let cluster = kafka::shared().await;
    let (hq_topics, depot_topics) = (Topics::unique("hq"), Topics::unique("south"));
    let late = kafka::unique_topic("hq-late-optimized");
    cluster.create_topic(&late, 1, 1).await;
    let hq = {
        let t = hq_topics.clone();
        TestGateway::spawn(move |s| t.apply(s, cluster, "urn:hq", "south")).await
    };
    let first = plan(&hq, &stops("truck-1", 6, true)).await;
    let second = plan(&hq, &stops("truck-2", 4, false)).await;
    patch_stop(&hq, &first, "s0", "arrived").await;
    hq.wait_until_drained(WAIT).await;

    let consume = |topic: &str| ConsumeConfig {
        topic: topic.to_string(),
        handler: ConsumeHandler::Routes,
        vehicles: Vec::new(),
        vehicle_field: "vehicleId".into(),
        start: ConsumeStart::Earliest,
    };
    let depot = {
        let (t, updated, late) = (
            depot_topics.clone(),
            hq_topics.updated.clone(),
            late.clone(),
        );
        TestGateway::spawn(move |s| {
            t.apply(s, cluster, "urn:south", "south");
            s.kafka.consume = vec![consume(&late), consume(&updated)];
        })
        .await
    };
    // The depot reads the stop change first; the routes follow a while later.
    let updated_read = Instant::now();
    loop {
        let (_, health) = depot.get_json("/traffic/routes/kafka-health").await;
        let read = health["consumers"].as_array().is_some_and(|c| {
            c.iter()
                .any(|p| p["topic"] == hq_topics.updated.as_str() && p["highWatermark"] == 1)
        });
        if read {
            break;
        }
        assert!(updated_read.elapsed() < WAIT, "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let whole = cluster
        .wait_for_records(&hq_topics.optimized, 2, WAIT)
        .await;
    let copies: Vec<ProducedRecord> = whole
        .iter()
        .map(|r| {
            let key = r
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            let value = r.value.clone().unwrap_or_default();
            r.headers.iter().fold(
                ProducedRecord::new(Some(0), key.as_deref(), value),
                |rec, (k, v)| rec.header(k, &String::from_utf8_lossy(v)),
            )
        })
        .collect();
    cluster.produce_records(&late, &copies).await;

    let shown = wait_version(&depot, &first, 2).await;
    assert_eq!(
        shown,
        route(&hq, &first).await.1,
        "the depot shows HQ's route"
    );
    assert_eq!(
        wait_version(&depot, &second, 1).await,
        route(&hq, &second).await.1
    );
    let (hq_trail, depot_trail) = (trail(&hq, &first).await, trail(&depot, &first).await);
    let ids = |t: &[Value]| -> Vec<Value> { t.iter().map(|e| e["eventId"].clone()).collect() };
    assert_eq!(ids(&depot_trail), ids(&hq_trail), "the same events, by id");
    assert_eq!(depot_trail[1]["data"], hq_trail[1]["data"]);

    // The depot works the imported route like its own, and announces that itself.
    patch_stop(&depot, &first, "s0", "completed").await;
    assert_eq!(route(&depot, &first).await.1["version"], 3);

    // A route of another depot is skipped.
    let with_id = |id: &str| {
        let mut r = whole[1]
            .value
            .as_deref()
            .map_or(Value::Null, |v| serde_json::from_slice(v).unwrap());
        r["routeId"] = json!(id);
        r
    };
    let (other_id, marker_id) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let other = ProducedRecord::json(Some(0), Some("truck-9"), &with_id(&other_id))
        .header("ce_type", "route.optimized")
        .header("ce_depotid", "north");
    let marker = ProducedRecord::json(Some(0), Some("truck-2"), &with_id(&marker_id))
        .header("ce_type", "route.optimized")
        .header("ce_depotid", "south");
    cluster.produce_records(&late, &[other, marker]).await;
    wait_version(&depot, &marker_id, 1).await;
    assert_eq!(
        route(&depot, &other_id).await.0,
        404,
        "another depot's route"
    );
    depot.stop().await;
    hq.stop().await;
}

/// Create, update, drain, wipe, restore, compare: the restored gateway shows the same routes
/// and the same audit trails, and sends nothing to Kafka again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depot_is_restored_from_kafka_with_its_routes_and_audit_trails() {
    let cluster = kafka::shared().await;
    let topics = Topics::unique("restore");
    let old = {
        let t = topics.clone();
        TestGateway::spawn(move |s| t.apply(s, cluster, "urn:depot-r", "r-1")).await
    };
    let mut ids = Vec::new();
    for v in 0..4 {
        ids.push(plan(&old, &stops(&format!("van-{v}"), 5 + v, v % 2 == 0)).await);
    }
    patch_stop(&old, &ids[0], "s0", "arrived").await;
    patch_stop(&old, &ids[0], "s0", "completed").await;
    patch_stop(&old, &ids[1], "s1", "skipped").await;
    let (status, body) = old
        .post_json(
            &format!("/traffic/routes/{}/reoptimize", ids[2]),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    patch_stop(&old, &ids[2], "s3", "arrived").await;
    old.wait_until_drained(WAIT).await;
    let (_, list) = old.get_json("/traffic/routes?limit=100").await;
    let mut routes = Vec::new();
    for id in &ids {
        routes.push((route(&old, id).await.1, trail(&old, id).await));
    }
    drop(old.stop().await); // the old disk is gone

    let files = tempfile::tempdir().unwrap();
    let config = write_config(files.path(), &cluster.bootstrap(), &topics);
    let new = Dir::fresh();
    let out = restore(new.path(), &config, &[]);
    assert!(out.contains("restored 4 routes"), "{out}");
    let again = restore(new.path(), &config, &["--depot", "r-1"]);
    assert!(
        again.contains("0 events applied"),
        "a second run resumes: {again}"
    );
    let stats: Value = serde_json::from_str(&routegate_cli(
        new.path(),
        &config,
        &["queue", "stats", "--json"],
    ))
    .expect("queue stats as JSON");
    assert_eq!(
        stats["pendingEvents"], 0,
        "restored events are not sent again: {stats}"
    );
    assert!(stats["logEvents"].as_u64() > Some(8), "{stats}");

    let restored = {
        let t = topics.clone();
        TestGateway::spawn_in(new, move |s| t.apply(s, cluster, "urn:depot-r", "r-1")).await
    };
    assert_eq!(restored.get_json("/traffic/routes?limit=100").await.1, list);
    for (id, (shown, events)) in ids.iter().zip(&routes) {
        assert_eq!(&route(&restored, id).await.1, shown, "route {id}");
        assert_eq!(&trail(&restored, id).await, events, "audit trail of {id}");
    }
    // The restored routes are live: a change is announced as version n + 1.
    patch_stop(&restored, &ids[3], "s0", "arrived").await;
    assert_eq!(route(&restored, &ids[3]).await.1["version"], 2);
    restored.stop().await;
}

fn write_config(dir: &Path, bootstrap: &str, t: &Topics) -> String {
    let path = dir.join("routegate.toml");
    let text = format!(
        r#"[kafka]
brokers = ["{bootstrap}"]
event_source = "urn:depot-r"
request_timeout_ms = 5000

[kafka.topics]
route_optimized = "{}"
route_updated = "{}"
vehicle_position = "{}"
"#,
        t.optimized, t.updated, t.positions
    );
    std::fs::write(&path, text).expect("write the config file");
    path.display().to_string()
}

/// Run `routegate restore --from-kafka` into `data`; its standard output.
fn restore(data: &Path, config: &str, extra: &[&str]) -> String {
    let mut args = vec!["restore", "--from-kafka"];
    args.extend(extra);
    routegate_cli(data, config, &args)
}
