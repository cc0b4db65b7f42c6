//! A missing Kafka permission pauses a topic instead of poisoning it, against a real broker
//! whose authorizer (KRaft's `StandardAuthorizer`) refuses the gateway's SASL user whatever no
//! ACL grants. What reached Kafka is read back with Kafka's own consumer (a super user).

use std::time::Duration;

use routegate::config::SaslMechanism;
use serde_json::Value;

use crate::delivery::{KEYS, append, check_delivery, kafka_settings, wait_until_drained};
use crate::harness::gateway::TestGateway;
use crate::harness::kafka::{self, ClusterOptions, KafkaCluster};

const WAIT: Duration = Duration::from_secs(90);
/// Refusals are retried within `kafka.backoff_max_ms` (1 s here): health follows quickly.
const HEALTH_WAIT: Duration = Duration::from_secs(30);

/// Polls `GET /traffic/routes/kafka-health` until `wanted` holds; returns the status and body.
async fn health_until(
    gw: &TestGateway,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + HEALTH_WAIT;
    loop {
        let (status, health) = gw.get_json("/traffic/routes/kafka-health").await;
        if wanted(&health) {
            return (status, health);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kafka-health is not {what} after {HEALTH_WAIT:?}: {health:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn message(h: &Value) -> &str {
    h["message"].as_str().unwrap_or_default()
}

fn paused_topics(h: &Value) -> Vec<&str> {
    let list = h["pausedTopics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    list.iter().filter_map(|p| p["topic"].as_str()).collect()
}

/// The value of `routegate_kafka_topic_paused{topic}` on `/metrics`, if exported.
async fn paused_gauge(gw: &TestGateway, topic: &str) -> Option<f64> {
    let text = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let series = format!("routegate_kafka_topic_paused{{topic=\"{topic}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

/// The gateway writes as a SASL user that may create and write one topic and nothing on
/// another (which an admin created). That topic pauses: its events wait in the outbox, none is
/// dead-lettered, kafka-health names the topic, what is refused and how to grant it, and the
/// other topic flows. As ACLs are added one by one the health names what is still missing
/// (CREATE only: DESCRIBE; DESCRIBE: WRITE). Once WRITE is granted, every event arrives, in
/// order per key, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_gateway_may_not_write_pauses_without_dead_letters_and_resumes_once_granted() {
    let no_auto_create = ("auto.create.topics.enable".to_owned(), "false".to_owned());
    let cluster = KafkaCluster::start_with(ClusterOptions {
        sasl: true,
        acls: true,
        broker_properties: vec![no_auto_create],
        ..ClusterOptions::default()
    })
    .await;
    let user = cluster.sasl_user();
    let principal = format!("User:{}", user.username);
    let (refused, open) = (
        kafka::unique_topic("acl-refused"),
        kafka::unique_topic("acl-open"),
    );
    cluster.create_topic(&refused, 2, 1).await;
    cluster
        .add_acls(&principal, Some(&open), &["CREATE", "WRITE"])
        .await;
    let gw = TestGateway::spawn(|s| {
        kafka_settings(s, cluster.sasl_bootstrap(), 2, 1);
        s.kafka.sasl.mechanism = SaslMechanism::ScramSha512;
        s.kafka.sasl.username = user.username.into();
        s.kafka.sasl.password = user.password.into();
    })
    .await;
    let (mut sent_refused, mut sent_open) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        sent_refused.extend(append(&gw, &refused, KEYS, 25, 5).await);
        sent_open.extend(append(&gw, &open, KEYS, 25, 5).await);
    }

    let records = cluster.wait_for_records(&open, 100, WAIT).await;
    check_delivery(&cluster, &records, &sent_open, 2).await;
    let (status, h) = health_until(&gw, "paused", |h| paused_topics(h) == [refused.as_str()]).await;
    eprintln!("no ACL on the topic: {}", message(&h));
    assert_eq!(
        (status, h["status"].as_str()),
        (503, Some("degraded")),
        "{h:#}"
    );
    // The topic exists, but the user cannot see it, so routegate tries to create it: refused.
    let fix = format!("'{principal}' --operation WRITE --operation CREATE --topic '{refused}'");
    for part in [refused.as_str(), "not authorized", "CREATE on topic", &fix] {
        assert!(message(&h).contains(part), "{part:?} not in {h:#}");
    }
    let stats = gw.outbox().stats();
    assert_eq!(
        (stats.pending_events, stats.dead_letters),
        (100, 0),
        "waiting, not poison"
    );

    // CREATE alone: the broker answers TOPIC_ALREADY_EXISTS, but still lists nothing to us.
    cluster
        .add_acls(&principal, Some(&refused), &["CREATE"])
        .await;
    let describe_refused =
        |h: &Value| message(h).contains(&format!("DESCRIBE on topic {refused:?}"));
    let (_, h) = health_until(&gw, "refusing DESCRIBE", describe_refused).await;
    eprintln!("CREATE only: {}", message(&h));
    assert_eq!(
        h["circuit"], "closed",
        "a refusal is not a broker failure: {h:#}"
    );

    cluster
        .add_acls(&principal, Some(&refused), &["DESCRIBE"])
        .await;
    let write_refused = |h: &Value| message(h).contains(&format!("WRITE on topic {refused:?}"));
    let (_, h) = health_until(&gw, "refusing WRITE", write_refused).await;
    eprintln!("DESCRIBE only: {}", message(&h));
    let fix = format!("--allow-principal '{principal}' --operation WRITE --topic '{refused}'");
    assert!(message(&h).contains(&fix), "{h:#}");
    assert_eq!(
        h["circuit"], "closed",
        "a refusal is not a broker failure: {h:#}"
    );
    assert_eq!(paused_gauge(&gw, &refused).await, Some(1.0));
    let stats = gw.outbox().stats();
    assert_eq!(
        (stats.pending_events, stats.dead_letters),
        (100, 0),
        "still waiting"
    );

    cluster
        .add_acls(&principal, Some(&refused), &["WRITE"])
        .await;
    wait_until_drained(&gw).await;
    let records = cluster.wait_for_records(&refused, 100, WAIT).await;
    let d = check_delivery(&cluster, &records, &sent_refused, 2).await;
    assert_eq!((records.len(), d.duplicates), (100, 0));
    let (status, h) = health_until(&gw, "healthy", |h| h["status"] == "healthy").await;
    assert_eq!(status, 200);
    assert!(paused_topics(&h).is_empty(), "{h:#}");
    assert_eq!(paused_gauge(&gw, &refused).await, Some(0.0));
    assert_eq!(gw.outbox().stats().dead_letters, 0);
    gw.stop().await;
}
