//! The outbox's guarantees against a real Kafka broker, each checked with the independent
//! reader (Kafka's own consumer), never with rskafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use routegate::config::{SaslMechanism, Settings};
use routegate::events::{Envelope, NewEvent};
use routegate::queue::{self, Stats, Write};

use crate::harness::gateway::{ChildGateway, TestGateway};
use crate::harness::kafka::wire::{self, WireClient};
use crate::harness::kafka::{self, ClusterOptions, ConsumedRecord, KafkaCluster, SaslUser};

const WAIT: Duration = Duration::from_secs(90);

/// Gateway settings for a broker: fast retries so fault tests do not wait long.
pub(crate) fn kafka_settings(s: &mut Settings, bootstrap: String, partitions: u32, rf: u16) {
    s.kafka.brokers = bootstrap.split(',').map(str::to_string).collect();
    s.kafka.topic_partitions = partitions;
    s.kafka.replication_factor = rf;
    s.kafka.request_timeout_ms = 5_000;
    s.kafka.backoff_initial_ms = 50;
    s.kafka.backoff_max_ms = 1_000;
    s.kafka.breaker_cooldown_ms = 1_000;
    s.kafka.batch_max_records = 200;
}

/// Append `n` events round-robin over `keys`, `per_write` events per atomic write.
pub(crate) async fn append(
    gw: &TestGateway,
    topic: &str,
    keys: &[&str],
    n: usize,
    per_write: usize,
) -> Vec<Arc<Envelope>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let events = (i..(i + per_write).min(n))
            .map(|j| {
                let key = keys[j % keys.len()];
                NewEvent::now("test.event", topic, key, None, &serde_json::json!({"n": j}))
            })
            .collect();
        let written = gw
            .outbox()
            .append(Write {
                events,
                records: vec![],
            })
            .await
            .expect("append");
        i += written.len();
        out.extend(written);
    }
    out
}

fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// What the topic holds compared to what was acknowledged.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub duplicates: usize,
}

/// Where Kafka's own Java producer puts each key of `sent` in a topic of `partitions`
/// partitions, measured by producing with it (not computed with routegate's murmur2).
async fn java_partitions(
    cluster: &KafkaCluster,
    sent: &[Arc<Envelope>],
    partitions: i32,
) -> HashMap<String, i32> {
    let keys: Vec<&str> = sent
        .iter()
        .map(|e| e.key.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let chosen = cluster.producer_partitions(partitions, &bytes).await;
    assert_eq!(chosen.len(), keys.len());
    keys.into_iter().map(str::to_owned).zip(chosen).collect()
}

/// Every acknowledged event is in the topic exactly as sent (value, key, CloudEvents id, and
/// the partition Kafka's Java producer chooses for its key), and per key the first deliveries
/// are in sequence order.
pub(crate) async fn check_delivery(
    cluster: &KafkaCluster,
    records: &[ConsumedRecord],
    sent: &[Arc<Envelope>],
    partitions: i32,
) -> Delivery {
    let java = java_partitions(cluster, sent, partitions).await;
    let by_id: HashMap<String, &Arc<Envelope>> =
        sent.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    for r in records {
        let id = String::from_utf8(header(r, "ce_id").expect("ce_id header").to_vec()).unwrap();
        let Some(e) = by_id.get(&id) else { continue };
        *seen.entry(id).or_default() += 1;
        assert_eq!(
            r.value.as_deref(),
            Some(e.payload.as_slice()),
            "value of {}",
            e.seq
        );
        assert_eq!(r.key.as_deref(), Some(e.key.as_bytes()));
        assert_eq!(
            r.partition, java[&e.key],
            "key {:?} of {}: routegate's partition differs from the Java producer's",
            e.key, e.seq
        );
        assert_eq!(header(r, "ce_type"), Some(e.kind.as_bytes()));
        assert_eq!(header(r, "ce_specversion"), Some(&b"1.0"[..]));
        assert_eq!(header(r, "content-type"), Some(&b"application/json"[..]));
        assert!(header(r, "ce_source").is_some() && header(r, "ce_time").is_some());
        per_partition
            .entry(r.partition)
            .or_default()
            .push((r.offset, e.seq));
    }
    let missing: Vec<u64> = sent
        .iter()
        .filter(|e| !seen.contains_key(&e.id.to_string()))
        .map(|e| e.seq)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in Kafka: {missing:?}"
    );
    for (p, mut items) in per_partition {
        items.sort_unstable();
        let mut first_seen = Vec::new();
        let mut done = std::collections::HashSet::new();
        for (_, seq) in items {
            if done.insert(seq) {
                first_seen.push(seq);
            }
        }
        assert!(
            first_seen.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: first deliveries out of sequence order: {first_seen:?}"
        );
    }
    Delivery {
        duplicates: seen.values().map(|c| c - 1).sum(),
    }
}

pub(crate) async fn wait_until_drained(gw: &TestGateway) {
    gw.wait_until_drained(WAIT).await;
}

pub(crate) const KEYS: &[&str] = &["veh-a", "veh-b", "veh-c", "veh-d", "veh-e"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_while_the_broker_is_absent_are_all_delivered_in_order_once_it_starts() {
    let cluster = KafkaCluster::single().await;
    cluster.stop(1).await;
    let topic = kafka::unique_topic("absent");
    let gw = TestGateway::spawn(|s| kafka_settings(s, cluster.bootstrap(), 3, 1)).await;
    let sent = append(&gw, &topic, KEYS, 300, 7).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gw.outbox().stats().pending_events, 300, "all wait on disk");
    let (status, health) = gw.get_json("/traffic/routes/kafka-health").await;
    assert_eq!(status, 503, "{health}");

    cluster.start_node(1).await;
    let records = cluster.wait_for_records(&topic, 300, WAIT).await;
    let d = check_delivery(&cluster, &records, &sent, 3).await;
    assert_eq!(d.duplicates, 0);
    wait_until_drained(&gw).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_with_sigkill_mid_stream_and_restarted_loses_nothing() {
    let cluster = KafkaCluster::single().await;
    let topic = kafka::unique_topic("sigkill");
    let gw = TestGateway::spawn(|s| kafka_settings(s, cluster.bootstrap(), 2, 1)).await;
    let mut sent = append(&gw, &topic, KEYS, 200, 5).await;
    cluster.wait_for_records(&topic, 50, WAIT).await;
    cluster.kill(1).await;
    sent.extend(append(&gw, &topic, KEYS, 200, 5).await);
    cluster.start_node(1).await;
    sent.extend(append(&gw, &topic, KEYS, 200, 5).await);
    wait_until_drained(&gw).await;
    let records = cluster.wait_for_records(&topic, 600, WAIT).await;
    let d = check_delivery(&cluster, &records, &sent, 2).await;
    eprintln!(
        "broker SIGKILL: {} records for 600 events, {} duplicates",
        records.len(),
        d.duplicates
    );
    gw.stop().await;
}

/// Events the gateway has handed to Kafka so far (acknowledged and deleted from the outbox).
fn delivered(s: &Stats) -> u64 {
    s.durable_seq.saturating_sub(s.pending_events)
}

/// Waits until the gateway is mid-stream: it has delivered at least 50 more events since the
/// call, and more events still wait in its outbox, so produce requests are under way.
async fn wait_mid_stream(gw: &TestGateway) -> Stats {
    let start = delivered(&gw.outbox().stats());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = gw.outbox().stats();
        if delivered(&s) >= start + 50 && s.pending_events > 0 {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway is not delivering a stream: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many records each leader appended, given the leader epoch each leader started with
/// (`epochs[i]` for the i-th leader, ascending). The broker stamps every batch with the
/// epoch of the leader that appended it.
fn appended_per_leader(records: &[ConsumedRecord], epochs: &[i32]) -> Vec<usize> {
    let mut counts = vec![0; epochs.len()];
    for r in records {
        let epoch = r.leader_epoch.expect("records carry a leader epoch");
        let leader = epochs.iter().rposition(|&start| epoch >= start);
        let leader = leader.unwrap_or_else(|| panic!("epoch {epoch} is older than {epochs:?}"));
        counts[leader] += 1;
    }
    counts
}

/// The leader moves twice (1 → 2 → 3, the old leader staying up, so a request to it gets
/// NOT_LEADER_OR_FOLLOWER) while the gateway streams: each move starts only once the gateway
/// has delivered since the previous one and still has a backlog. The broker's leader epochs
/// on the records prove that every leader appended part of the stream, i.e. the producer
/// followed both moves mid-stream; if a move fell before or after the stream, or the gateway
/// stopped following, a leader would have appended nothing (or delivery would stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_partition_leadership_while_producing_loses_nothing_and_keeps_key_order() {
    let cluster = KafkaCluster::start(3).await;
    let topic = kafka::unique_topic("leader-move");
    cluster
        .create_topic_with_assignment(&topic, &[&[1, 2, 3]])
        .await;
    let mut epochs = vec![cluster.leader_epoch(&topic, 0).await];
    let gw = TestGateway::spawn(|s| kafka_settings(s, cluster.bootstrap(), 1, 3)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (outbox, topic, stop) = (gw.outbox().clone(), topic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = sent.len();
                let events = (n..n + 10)
                    .map(|i| NewEvent::now("test.event", &topic, KEYS[i % KEYS.len()], None, &i))
                    .collect();
                let w = Write {
                    events,
                    records: vec![],
                };
                sent.extend(outbox.append(w).await.expect("append"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    let mut backlogs = Vec::new();
    for leader in [2, 3] {
        backlogs.push(wait_mid_stream(&gw).await.pending_events);
        cluster.move_leader(&topic, 0, leader).await;
        epochs.push(cluster.leader_epoch(&topic, 0).await);
    }
    wait_mid_stream(&gw).await;
    stop.store(true, Ordering::Relaxed);
    let sent = producer.await.unwrap();
    wait_until_drained(&gw).await;
    assert_eq!(cluster.leader_of(&topic, 0).await, Some(3));
    let records = cluster.wait_for_records(&topic, sent.len(), WAIT).await;
    let d = check_delivery(&cluster, &records, &sent, 1).await;

    let per_leader = appended_per_leader(&records, &epochs);
    eprintln!(
        "leader moves: {} events, {} duplicates, backlog at the moves {backlogs:?}, \
         appended by leaders 1/2/3 {per_leader:?} (epochs {epochs:?})",
        sent.len(),
        d.duplicates
    );
    assert!(
        per_leader.iter().all(|&n| n > 0),
        "every leader must have appended part of the stream (1/2/3: {per_leader:?}, epochs \
         {epochs:?}): a move did not happen mid-stream or the producer did not follow it"
    );
    gw.stop().await;
}

/// Waits until the cluster no longer lists `topic`.
async fn wait_until_gone(cluster: &KafkaCluster, topic: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.list_topics().await.iter().any(|t| t == topic) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic} still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Only routegate can recreate the topic here: this broker has `auto.create.topics.enable`
/// off (asked of the broker itself, not taken from the harness's config), so the Metadata
/// lookups rskafka sends with `allow_auto_topic_creation` set create nothing; and the recreated
/// topic must have routegate's `kafka.topic_partitions` (2), not the broker's `num.partitions` (1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_while_running_is_recreated_and_delivery_resumes() {
    let no_auto_create = ("auto.create.topics.enable".to_owned(), "false".to_owned());
    let cluster = KafkaCluster::start_with(ClusterOptions {
        broker_properties: vec![no_auto_create],
        ..ClusterOptions::default()
    })
    .await;
    let auto_create = cluster.broker_config(1, "auto.create.topics.enable").await;
    assert_eq!(
        auto_create.as_deref(),
        Some("false"),
        "the broker auto-creates topics"
    );
    let topic = kafka::unique_topic("deleted");
    let gw = TestGateway::spawn(|s| kafka_settings(s, cluster.bootstrap(), 2, 1)).await;
    let first = append(&gw, &topic, KEYS, 50, 5).await;
    cluster.wait_for_records(&topic, 50, WAIT).await;
    wait_until_drained(&gw).await;
    cluster.delete_topic(&topic).await;
    wait_until_gone(&cluster, &topic).await;
    let second = append(&gw, &topic, KEYS, 50, 5).await;
    wait_until_drained(&gw).await;
    let records = cluster.wait_for_records(&topic, 50, WAIT).await;
    let partitions = cluster.describe_topic(&topic).await.partitions.len();
    assert_eq!(
        partitions, 2,
        "created with routegate's kafka.topic_partitions"
    );
    check_delivery(&cluster, &records, &second, 2).await;
    let old: Vec<_> = first.iter().map(|e| e.id.to_string()).collect();
    assert!(
        records
            .iter()
            .all(|r| !old
                .contains(&String::from_utf8_lossy(header(r, "ce_id").unwrap()).into_owned())),
        "the recreated topic holds only the new events"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_refuses_appends_drops_nothing_and_accepts_again_once_drained() {
    let cluster = KafkaCluster::single().await;
    cluster.stop(1).await;
    let topic = kafka::unique_topic("quota");
    let gw = TestGateway::spawn(|s| {
        kafka_settings(s, cluster.bootstrap(), 1, 1);
        s.storage.max_queue_events = 40;
    })
    .await;
    let sent = append(&gw, &topic, KEYS, 40, 4).await;
    let refused = gw
        .outbox()
        .append(Write {
            events: vec![NewEvent::now("test.event", &topic, "veh-a", None, &"x")],
            records: vec![],
        })
        .await;
    assert!(
        matches!(refused, Err(queue::Error::QuotaExceeded { .. })),
        "{refused:?}"
    );
    assert_eq!(gw.outbox().stats().pending_events, 40, "nothing dropped");

    cluster.start_node(1).await;
    wait_until_drained(&gw).await;
    let more = append(&gw, &topic, KEYS, 10, 1).await;
    wait_until_drained(&gw).await;
    let records = cluster.wait_for_records(&topic, 50, WAIT).await;
    let all: Vec<_> = sent.into_iter().chain(more).collect();
    check_delivery(&cluster, &records, &all, 1).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_record_on_disk_is_dead_lettered_and_all_others_are_delivered() {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("corrupt");
    let dead_broker = |s: &mut Settings| kafka_settings(s, "127.0.0.1:9".into(), 1, 1);
    let gw = TestGateway::spawn(dead_broker).await;
    let sent = append(&gw, &topic, KEYS, 20, 20).await;
    let dir = gw.stop().await;

    let victim = sent[7].seq;
    let damaged = routegate::queue::damage_stored_event(&dir.path().join("db"), victim, |raw| {
        let mid = raw.len() / 2;
        raw[mid] ^= 0xff;
    })
    .expect("damage the stopped gateway's store");
    assert!(damaged, "event {victim} is in the log");

    let bootstrap = cluster.bootstrap();
    let gw = TestGateway::spawn_in(dir, |s| kafka_settings(s, bootstrap, 1, 1)).await;
    wait_until_drained(&gw).await;
    let records = cluster.wait_for_records(&topic, 19, WAIT).await;
    let survivors: Vec<_> = sent.iter().filter(|e| e.seq != victim).cloned().collect();
    let d = check_delivery(cluster, &records, &survivors, 1).await;
    assert_eq!((records.len(), d.duplicates), (19, 0));
    let dead = gw.outbox().dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].seq, victim);
    assert!(dead[0].reason.contains("checksum"), "{}", dead[0].reason);
    gw.stop().await;
}

async fn deliver_through(cluster: &KafkaCluster, configure: impl FnOnce(&mut Settings)) {
    let topic = kafka::unique_topic("secured");
    let gw = TestGateway::spawn(configure).await;
    let sent = append(&gw, &topic, KEYS, 20, 5).await;
    wait_until_drained(&gw).await;
    let records = cluster.wait_for_records(&topic, 20, WAIT).await;
    check_delivery(cluster, &records, &sent, 1).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_sasl_broker_with_plain_and_both_scram_mechanisms() {
    let cluster = kafka::shared().await;
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        deliver_through(cluster, |s| {
            kafka_settings(s, cluster.sasl_bootstrap(), 1, 1);
            s.kafka.sasl.mechanism = mechanism;
            s.kafka.sasl.username = cluster.sasl_user().username.into();
            s.kafka.sasl.password = cluster.sasl_user().password.into();
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_broker_over_tls_and_over_sasl_ssl() {
    let cluster = kafka::shared().await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), cluster.tls_ca_pem()).unwrap();
    let ca_file = ca.path().to_str().unwrap().to_string();
    deliver_through(cluster, |s| {
        kafka_settings(s, cluster.ssl_bootstrap(), 1, 1);
        s.kafka.tls.enabled = true;
        s.kafka.tls.ca_file = ca_file.clone();
    })
    .await;
    deliver_through(cluster, |s| {
        kafka_settings(s, cluster.sasl_ssl_bootstrap(), 1, 1);
        s.kafka.tls.enabled = true;
        s.kafka.tls.ca_file = ca_file.clone();
        s.kafka.sasl.mechanism = SaslMechanism::ScramSha512;
        s.kafka.sasl.username = cluster.sasl_user().username.into();
        s.kafka.sasl.password = cluster.sasl_user().password.into();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sasl_password_keeps_events_queued_and_reports_the_failure() {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("badauth");
    let gw = TestGateway::spawn(|s| {
        kafka_settings(s, cluster.sasl_bootstrap(), 1, 1);
        s.kafka.sasl.mechanism = SaslMechanism::ScramSha512;
        s.kafka.sasl.username = cluster.sasl_user().username.into();
        s.kafka.sasl.password = "not-the-password".into();
        s.kafka.request_timeout_ms = 1_000;
    })
    .await;
    append(&gw, &topic, KEYS, 5, 5).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, h) = gw.get_json("/traffic/routes/kafka-health").await;
        if h["lastError"].is_string() {
            assert_ne!(h["status"], "healthy");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failure reported: {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gw.outbox().stats().pending_events, 5);
    assert_eq!(
        gw.outbox().stats().dead_letters,
        0,
        "a credentials problem is not poison"
    );
    gw.stop().await;
}

/// A secured listener checked on the wire: before authenticating it answers ApiVersions but
/// hangs up on anything else; it offers PLAIN and both SCRAMs; a wrong PLAIN password gets
/// SASL_AUTHENTICATION_FAILED; the right one opens a session in which Metadata is answered,
/// naming this listener's port.
fn check_sasl_listener(connect: impl Fn() -> WireClient, port: u16, user: SaslUser) {
    let mut c = connect();
    assert_eq!(c.api_versions(), Ok(wire::NONE));
    let unauthenticated = c.metadata_ports();
    assert!(
        unauthenticated.is_err(),
        "answered Metadata without authentication: {unauthenticated:?}"
    );

    let mut c = connect();
    let (code, mechanisms) = c.sasl_handshake("PLAIN").expect("SaslHandshake answered");
    assert_eq!(code, wire::NONE);
    for m in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        assert!(
            mechanisms.iter().any(|e| e == m),
            "{m} not in {mechanisms:?}"
        );
    }
    let wrong = c.sasl_plain(user.username, "not-the-password");
    assert_eq!(wrong, Ok(wire::SASL_AUTHENTICATION_FAILED));

    let mut c = connect();
    assert_eq!(
        c.sasl_handshake("PLAIN").map(|(code, _)| code),
        Ok(wire::NONE)
    );
    assert_eq!(c.sasl_plain(user.username, user.password), Ok(wire::NONE));
    assert_eq!(c.metadata_ports(), Ok(vec![port]));
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("host:port")
}

/// The SASL and TLS delivery tests above are only worth something if the shared broker's
/// secured listeners really demand SASL and speak TLS. Checked with a hand-framed client
/// (neither rskafka nor Kafka's Java client): the PLAINTEXT listener answers the same probes
/// without either, so the probes are valid requests and the refusals come from security.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_broker_offers_sasl_and_tls_listeners() {
    let cluster = kafka::shared().await;
    let (plain, sasl) = (cluster.bootstrap(), cluster.sasl_bootstrap());
    let (ssl, sasl_ssl) = (cluster.ssl_bootstrap(), cluster.sasl_ssl_bootstrap());
    let (ca, user) = (cluster.tls_ca_pem(), cluster.sasl_user());
    let probes = move || {
        let mut c = WireClient::plain(&plain);
        assert_eq!(c.metadata_ports(), Ok(vec![port_of(&plain)]));
        let refused = c.sasl_handshake("PLAIN").map(|(code, _)| code);
        assert_eq!(
            refused,
            Ok(wire::ILLEGAL_SASL_STATE),
            "PLAINTEXT has no SASL"
        );

        check_sasl_listener(|| WireClient::plain(&sasl), port_of(&sasl), user);
        let tls_on_sasl = WireClient::tls(&sasl, &ca).map(drop);
        assert!(tls_on_sasl.is_err(), "SASL_PLAINTEXT spoke TLS");

        let plaintext_on_ssl = WireClient::plain(&ssl).api_versions();
        assert!(
            plaintext_on_ssl.is_err(),
            "SSL answered plaintext: {plaintext_on_ssl:?}"
        );
        let mut c = WireClient::tls(&ssl, &ca).expect("TLS with the harness CA on SSL");
        assert_eq!(c.metadata_ports(), Ok(vec![port_of(&ssl)]));

        let plaintext_on_sasl_ssl = WireClient::plain(&sasl_ssl).api_versions();
        assert!(
            plaintext_on_sasl_ssl.is_err(),
            "SASL_SSL answered plaintext"
        );
        let tls = || WireClient::tls(&sasl_ssl, &ca).expect("TLS with the harness CA on SASL_SSL");
        check_sasl_listener(tls, port_of(&sasl_ssl), user);
    };
    tokio::task::spawn_blocking(probes)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

/// A backlog of 1 KiB events, all on one partition and uncompressed, is sent in requests that
/// fit the broker's default `max.message.bytes` (1 MiB + 12): none is rejected as too large and
/// split. Counted by key, value and headers alone, a 1 MiB request of such records is some
/// 20 KB larger on the wire, and every full request came back `MESSAGE_TOO_LARGE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_large_events_is_sent_in_requests_the_broker_accepts_whole() {
    const EVENTS: usize = 3_000;
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("wire-size");
    let value = "f".repeat(1000);
    let filled = TestGateway::spawn(|s| s.kafka.brokers = vec!["127.0.0.1:9".into()]).await;
    for start in (0..EVENTS).step_by(500) {
        let events = (start..start + 500)
            .map(|n| {
                let payload = serde_json::json!({ "n": n, "v": value });
                NewEvent::now("test.event", &topic, "veh-a", None, &payload)
            })
            .collect();
        let write = Write {
            events,
            records: vec![],
        };
        filled.outbox().append(write).await.expect("append");
    }
    let dir = filled.stop().await;

    let sets = [
        ("kafka.brokers", cluster.bootstrap()),
        ("kafka.topic_partitions", "1".to_string()),
        // Uncompressed, the broker checks the batch at its full size.
        ("kafka.compression", "none".to_string()),
    ];
    let gw = ChildGateway::spawn(dir.path(), &sets).await;
    let records = cluster.wait_for_records(&topic, EVENTS, WAIT).await;
    assert_eq!(records.len(), EVENTS);
    let metrics = reqwest::get(gw.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let splits: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("routegate_kafka_produce_splits_total"))
        .collect();
    assert!(
        splits.iter().all(|l| l.ends_with(" 0")),
        "produce requests were rejected whole and split: {splits:?}"
    );
    let dead: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("result=\"dead_letter\""))
        .collect();
    assert!(dead.iter().all(|l| l.ends_with(" 0")), "{dead:?}");
}
