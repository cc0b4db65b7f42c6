//! Tests that prove the Kafka harness: the broker is real, the independent reader is
//! byte-exact, node faults behave as Kafka does, secured listeners work, and no JVM outlives
//! its owner.
//!
//! Producing uses rskafka (what routegate uses), except where a test proves the harness's own
//! producer (Kafka's, for tests of routegate's consumer); verifying never uses rskafka.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rskafka::BackoffConfig;
use rskafka::chrono::{DateTime, TimeZone, Utc};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use serde_json::json;

use crate::harness::kafka::{
    self, ClusterOptions, ConsumedRecord, KafkaCluster, ProducedRecord, pid_alive,
};

/// Retries end after 30 s of backoff sleeps, so a broken broker fails the test instead of
/// hanging it (rskafka's default retries forever).
fn backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(Duration::from_secs(30)),
    }
}

async fn partition_client(builder: ClientBuilder, topic: &str, partition: i32) -> PartitionClient {
    let client = builder
        .backoff_config(backoff())
        .build()
        .await
        .expect("rskafka cannot connect to the test broker");
    client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .expect("rskafka cannot find the partition's leader")
}

async fn plain_client(cluster: &KafkaCluster, topic: &str, partition: i32) -> PartitionClient {
    let builder = ClientBuilder::new(split(&cluster.bootstrap()));
    partition_client(builder, topic, partition).await
}

fn split(bootstrap: &str) -> Vec<String> {
    bootstrap.split(',').map(str::to_owned).collect()
}

/// A timestamp `n` ms after the test binary started. Records must carry recent timestamps: the
/// harness broker's time retention would otherwise delete them before a test reads them back.
fn recent(n: i64) -> i64 {
    static BASE: LazyLock<i64> = LazyLock::new(|| Utc::now().timestamp_millis());
    *BASE + n
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .expect("valid timestamp")
}

fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])], ms: i64) -> Record {
    Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect(),
        timestamp: at(ms),
    }
}

async fn produce(client: &PartitionClient, records: Vec<Record>) -> Vec<i64> {
    produce_compressed(client, records, Compression::NoCompression).await
}

async fn produce_compressed(
    client: &PartitionClient,
    records: Vec<Record>,
    compression: Compression,
) -> Vec<i64> {
    tokio::time::timeout(
        Duration::from_secs(60),
        client.produce(records, compression),
    )
    .await
    .expect("rskafka produce hung for 60 s")
    .expect("rskafka produce failed")
}

fn values(records: &[ConsumedRecord]) -> Vec<&[u8]> {
    records
        .iter()
        .map(|r| r.value.as_deref().unwrap_or_default())
        .collect()
}

fn plain_records(values: &[&str]) -> Vec<Record> {
    values
        .iter()
        .map(|v| record(None, Some(v.as_bytes()), &[], recent(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_with_rskafka_are_read_back_byte_identical_by_the_independent_reader() {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("byte-exact");
    cluster.create_topic(&topic, 2, 1).await;
    let not_utf8: &[u8] = &[0x00, 0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28];
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    // Partition 0 uncompressed, partition 1 zstd: the reader must undo what routegate may use.
    let batches: [(i32, Compression, Vec<Record>); 2] = [
        (
            0,
            Compression::NoCompression,
            vec![
                record(
                    Some(b"k1"),
                    Some(not_utf8),
                    &[("trace", b"t-1"), ("bin", not_utf8)],
                    recent(1),
                ),
                record(None, Some(b"no key"), &[], recent(2)),
                record(Some(not_utf8), None, &[("empty", b"")], recent(3)),
                record(Some(b""), Some(b""), &[], recent(4)),
                record(Some(b"k1"), Some(not_utf8), &[("trace", b"t-1")], recent(5)),
            ],
        ),
        (
            1,
            Compression::Zstd,
            vec![
                record(
                    Some(b"other"),
                    Some("ünïcödé ✓".as_bytes()),
                    &[("a", b"1"), ("b", b"2")],
                    1_600_000_000_000,
                ),
                record(Some(b"big"), Some(&big), &[], 1_600_000_000_001),
            ],
        ),
    ];
    let mut expected = Vec::new();
    for (partition, compression, records) in batches {
        let client = plain_client(cluster, &topic, partition).await;
        let offsets = produce_compressed(&client, records.clone(), compression).await;
        expected.extend(
            records
                .into_iter()
                .zip(offsets)
                .map(|(r, offset)| ConsumedRecord {
                    partition,
                    offset,
                    timestamp_ms: r.timestamp.timestamp_millis(),
                    // The topic's first leader: epoch 0.
                    leader_epoch: Some(0),
                    key: r.key,
                    value: r.value,
                    headers: r.headers.into_iter().collect(),
                }),
        );
    }

    // Polled: under load a single read once saw partition 0's records only.
    let read = cluster
        .wait_for_records(&topic, expected.len(), Duration::from_secs(30))
        .await;

    assert_eq!(read, expected);
    assert_eq!(
        read.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 0, 1]
    );
}

/// What a record read back must equal: partition, offset, key, value and headers.
type RecordParts = (i32, i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_with_kafkas_own_producer_are_read_back_in_order_with_keys_values_and_headers()
 {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("java-produced");
    cluster.create_topic(&topic, 3, 1).await;
    let not_utf8: &[u8] = &[0x00, 0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28];
    // Every third record names its partition; the others leave it to the default partitioner,
    // by one of 40 keys or (every ninth) by no key at all.
    let records: Vec<ProducedRecord> = (0..3_000)
        .map(|i| {
            let key = format!("key-{}", i % 40);
            let value = json!({ "i": i, "text": "ünïcödé ✓" });
            let record = match i % 9 {
                0 | 3 | 6 => ProducedRecord::json(Some(i / 3 % 3), None, &value),
                8 => ProducedRecord::json(None, None, &value),
                _ => ProducedRecord::json(None, Some(&key), &value),
            };
            match i {
                1_234 => ProducedRecord::new(Some(1), Some("binary"), not_utf8),
                1_235 => ProducedRecord::new(None, Some(""), Vec::new()),
                // Order and duplicate names survive.
                1_236 => record
                    .header("z", "last name first")
                    .header("dup", "1")
                    .header("a", "")
                    .header("dup", "2 ✓"),
                _ if i % 7 == 0 => record.header("trace", &format!("t-{i}")),
                _ => record,
            }
        })
        .collect();

    let started = Instant::now();
    let answered = cluster.produce_records(&topic, &records).await;
    let took = started.elapsed();

    assert_eq!(answered.len(), records.len());
    for (i, (record, &(partition, _))) in records.iter().zip(&answered).enumerate() {
        if let Some(wanted) = record.partition {
            assert_eq!(partition, wanted, "record {i} went to another partition");
        }
    }
    // Keyed records went where Kafka's default partitioner puts their keys.
    let keyed: Vec<(usize, &[u8])> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.partition.is_none())
        .filter_map(|(i, r)| Some((i, r.key.as_deref()?.as_bytes())))
        .collect();
    let keys: Vec<&[u8]> = keyed.iter().map(|&(_, key)| key).collect();
    let chosen = cluster.producer_partitions(3, &keys).await;
    for (&(i, key), chosen) in keyed.iter().zip(chosen) {
        assert_eq!(answered[i].0, chosen, "record {i} with key {key:?}");
    }
    // Send order kept: each partition's records have offsets 0, 1, 2, … in input order.
    for partition in 0..3 {
        let offsets: Vec<i64> = answered
            .iter()
            .filter(|&&(p, _)| p == partition)
            .map(|&(_, offset)| offset)
            .collect();
        assert!(
            !offsets.is_empty(),
            "nothing landed in partition {partition}"
        );
        assert!(
            offsets.iter().copied().eq(0..offsets.len() as i64),
            "partition {partition}: offsets in send order are not 0, 1, 2, …: {offsets:?}"
        );
    }

    let mut expected: Vec<RecordParts> = records
        .iter()
        .zip(&answered)
        .map(|(r, &(partition, offset))| {
            let key = r.key.as_ref().map(|k| k.as_bytes().to_vec());
            let headers = r.headers.iter();
            let headers = headers.map(|(n, v)| (n.clone(), v.as_bytes().to_vec()));
            (partition, offset, key, r.value.clone(), headers.collect())
        })
        .collect();
    expected.sort_by_key(|&(partition, offset, ..)| (partition, offset));
    let read: Vec<RecordParts> = cluster
        .read_topic(&topic)
        .await
        .into_iter()
        .map(|r| {
            let value = r.value.expect("no record was produced with a null value");
            (r.partition, r.offset, r.key, value, r.headers)
        })
        .collect();
    assert_eq!(read.len(), expected.len(), "records read back");
    for (got, wanted) in read.iter().zip(&expected) {
        assert_eq!(
            got, wanted,
            "record at partition {} offset {}",
            wanted.0, wanted.1
        );
    }
    // The API promises 20,000 records in seconds; 3,000 must not take long even under load.
    assert!(
        took < Duration::from_secs(30),
        "3,000 records took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_restart_keeps_the_data_after_stop_and_after_kill_minus_nine() {
    let cluster = KafkaCluster::single().await;
    let topic = kafka::unique_topic("restart");
    cluster.create_topic(&topic, 1, 1).await;
    produce(
        &plain_client(&cluster, &topic, 0).await,
        plain_records(&["a", "b"]),
    )
    .await;

    cluster.restart(1).await;
    assert!(cluster.is_running(1));
    produce(
        &plain_client(&cluster, &topic, 0).await,
        plain_records(&["c"]),
    )
    .await;
    cluster.kill(1).await;
    assert!(!cluster.is_running(1));
    cluster.start_node(1).await;

    let read = cluster.read_topic(&topic).await;
    assert_eq!(values(&read), [&b"a"[..], b"b", b"c"]);
    assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_of_three_nodes_elects_a_new_one_rskafka_produces_again_and_the_node_rejoins()
 {
    let cluster = KafkaCluster::start(3).await;
    let topic = kafka::unique_topic("failover");
    let description = cluster.create_topic(&topic, 1, 3).await;
    assert_eq!(description.partitions[0].replicas.len(), 3);
    let client = plain_client(&cluster, &topic, 0).await;
    produce(&client, plain_records(&["before"])).await;
    let old = cluster.leader_of(&topic, 0).await.expect("a leader");

    cluster.kill(old).await;
    let timeout = Duration::from_secs(30);
    let new = cluster
        .wait_for_leader(&topic, 0, timeout, |leader| {
            leader.is_some_and(|l| l != old)
        })
        .await
        .expect("a new leader");
    produce(&client, plain_records(&["after"])).await;

    assert_ne!(new, old);
    assert_eq!(
        values(&cluster.read_topic(&topic).await),
        [&b"before"[..], b"after"]
    );
    cluster.start_node(old).await;
    cluster.wait_for_isr(&topic, 0, 3, timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_moves_leadership_on_three_nodes_and_stopping_a_follower_keeps_it() {
    let cluster = KafkaCluster::start(3).await;
    let topic = kafka::unique_topic("move-leader");
    cluster
        .create_topic_with_assignment(&topic, &[&[1, 2, 3]])
        .await;
    assert_eq!(cluster.leader_of(&topic, 0).await, Some(1));
    let client = plain_client(&cluster, &topic, 0).await;
    produce(&client, plain_records(&["on 1"])).await;

    cluster.move_leader(&topic, 0, 2).await;
    assert_eq!(cluster.leader_of(&topic, 0).await, Some(2));
    produce(&client, plain_records(&["on 2"])).await;
    cluster.move_leader(&topic, 0, 3).await;

    let description = cluster.describe_topic(&topic).await;
    assert_eq!(description.partitions[0].leader, Some(3));
    assert_eq!(description.partitions[0].replicas, [3, 2, 1]);
    assert!(
        cluster.is_running(1) && cluster.is_running(2),
        "the old leaders stay up"
    );
    assert_eq!(
        values(&cluster.read_topic(&topic).await),
        [&b"on 1"[..], b"on 2"]
    );
    cluster.stop(1).await;
    assert!(!cluster.is_running(1));
    // Node 1 may have been the active controller: while the other two elect a new one, a
    // describe can briefly answer without a leader. Leadership itself must not move.
    let leader = cluster
        .wait_for_leader(&topic, 0, Duration::from_secs(30), |l| l.is_some())
        .await;
    assert_eq!(leader, Some(3));
}

fn sasl_builder(cluster: &KafkaCluster, sasl: SaslConfig) -> ClientBuilder {
    ClientBuilder::new(split(&cluster.sasl_bootstrap())).sasl_config(sasl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_produces_through_the_sasl_listener_with_plain_and_scram() {
    let cluster = kafka::shared().await;
    let user = cluster.sasl_user();
    let credentials = || Credentials::new(user.username.into(), user.password.into());
    let mechanisms = [
        SaslConfig::Plain(credentials()),
        SaslConfig::ScramSha256(credentials()),
        SaslConfig::ScramSha512(credentials()),
    ];
    for sasl in mechanisms {
        let topic = kafka::unique_topic("sasl");
        cluster.create_topic(&topic, 1, 1).await;
        let client = partition_client(sasl_builder(cluster, sasl), &topic, 0).await;
        produce(&client, plain_records(&[&topic])).await;

        assert_eq!(
            values(&cluster.read_topic(&topic).await),
            [topic.as_bytes()]
        );
    }
}

/// One produce as the SASL user of an ACL cluster: `Err` with rskafka's error text.
async fn produce_as_user(cluster: &KafkaCluster, topic: &str, value: &str) -> Result<(), String> {
    let user = cluster.sasl_user();
    let credentials = Credentials::new(user.username.into(), user.password.into());
    let client = sasl_builder(cluster, SaslConfig::ScramSha512(credentials))
        .backoff_config(backoff())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let partition = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await
        .map_err(|e| e.to_string())?;
    let produced = partition.produce(plain_records(&[value]), Compression::NoCompression);
    tokio::time::timeout(Duration::from_secs(60), produced)
        .await
        .expect("rskafka produce hung for 60 s")
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Produces as the SASL user until `wanted` holds for the outcome (ACL changes reach the
/// broker from the metadata log a moment after the Admin call returns).
async fn produce_until(
    cluster: &KafkaCluster,
    topic: &str,
    value: &str,
    wanted: impl Fn(&Result<(), String>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = produce_as_user(cluster, topic, value).await;
        if wanted(&outcome) {
            return;
        }
        assert!(Instant::now() < deadline, "still {outcome:?} after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_cluster_refuses_the_sasl_user_until_an_acl_allows_it_and_again_once_removed() {
    let options = ClusterOptions {
        sasl: true,
        acls: true,
        ..ClusterOptions::default()
    };
    let cluster = KafkaCluster::start_with(options).await;
    let principal = format!("User:{}", cluster.sasl_user().username);
    let topic = kafka::unique_topic("acl");
    // The harness's own admin (PLAINTEXT, User:ANONYMOUS) is a super user.
    cluster.create_topic(&topic, 1, 1).await;
    let refused = |o: &Result<(), String>| o.as_ref().is_err_and(|e| e.contains("Authorization"));

    let nothing_granted = produce_as_user(&cluster, &topic, "refused").await;
    assert!(refused(&nothing_granted), "{nothing_granted:?}");
    cluster.add_acls(&principal, Some(&topic), &["WRITE"]).await;
    produce_until(&cluster, &topic, "allowed", Result::is_ok).await;
    cluster
        .remove_acls(&principal, Some(&topic), &["WRITE"])
        .await;
    // Until the broker applies the removal, these still go through.
    produce_until(&cluster, &topic, "before-removal", refused).await;

    let read = cluster.read_topic(&topic).await;
    let values = values(&read);
    assert_eq!(values[0], b"allowed", "{values:?}");
    assert!(
        values[1..].iter().all(|v| *v == b"before-removal"),
        "nothing written without the ACL: {values:?}"
    );
}

// The default current-thread runtime on purpose: the harness must work there too.
#[tokio::test]
async fn the_sasl_listener_rejects_a_wrong_password_for_plain_and_scram() {
    let cluster = kafka::shared().await;
    let wrong = Credentials::new(cluster.sasl_user().username.into(), "wrong".into());
    // Each failed attempt costs the broker's authentication delay; one or two are enough.
    let give_up = BackoffConfig {
        deadline: Some(Duration::from_millis(100)),
        ..backoff()
    };
    for sasl in [
        SaslConfig::Plain(wrong.clone()),
        SaslConfig::ScramSha512(wrong),
    ] {
        let result = sasl_builder(cluster, sasl.clone())
            .backoff_config(give_up.clone())
            .build()
            .await;

        let error = result
            .err()
            .unwrap_or_else(|| panic!("{sasl:?} with a wrong password was accepted"));
        assert!(
            error.to_string().contains("SaslAuthenticationFailed"),
            "{sasl:?}: {error}"
        );
    }
}

fn tls_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.expect("the harness CA is valid PEM"))
            .expect("a usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_trusting_the_harness_ca_produces_through_the_ssl_and_sasl_ssl_listeners() {
    let cluster = kafka::shared().await;
    let tls = tls_config(&cluster.tls_ca_pem());
    let user = cluster.sasl_user();
    let scram =
        SaslConfig::ScramSha512(Credentials::new(user.username.into(), user.password.into()));
    let topic = kafka::unique_topic("tls");
    cluster.create_topic(&topic, 1, 1).await;

    let ssl = ClientBuilder::new(split(&cluster.ssl_bootstrap())).tls_config(Arc::clone(&tls));
    produce(
        &partition_client(ssl, &topic, 0).await,
        plain_records(&["ssl"]),
    )
    .await;
    let sasl_ssl = ClientBuilder::new(split(&cluster.sasl_ssl_bootstrap()))
        .tls_config(tls)
        .sasl_config(scram);
    produce(
        &partition_client(sasl_ssl, &topic, 0).await,
        plain_records(&["sasl_ssl"]),
    )
    .await;

    assert_eq!(
        values(&cluster.read_topic(&topic).await),
        [&b"ssl"[..], b"sasl_ssl"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_tool_runs_kafkas_own_producer_performance_against_the_shared_broker() {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("perf");
    cluster.create_topic(&topic, 1, 1).await;
    let props = format!("bootstrap.servers={}", cluster.bootstrap());
    let args = [
        "--topic",
        &topic,
        "--num-records",
        "1000",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        &props,
    ];

    let output = cluster
        .run_tool("org.apache.kafka.tools.ProducerPerformance", &args)
        .await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1000 records sent"), "{stdout}");
    assert_eq!(
        cluster
            .wait_for_records(&topic, 1000, Duration::from_secs(30))
            .await
            .len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_cluster_leaves_no_jvm_of_it_running() {
    let cluster = KafkaCluster::single().await;
    let pids = cluster.pids();
    assert_eq!(pids.len(), 2, "one broker and one tool JVM");
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a running JVM");
        let marker = format!("-D{}={}", kafka::MARKER_PROPERTY, cluster.marker());
        assert!(
            String::from_utf8_lossy(&cmdline).contains(&marker),
            "pid {pid} lacks {marker}"
        );
    }
    let dir = cluster.dir().to_path_buf();

    drop(cluster);

    assert!(
        pids.iter().all(|pid| !pid_alive(*pid)),
        "a JVM survived the drop: {pids:?}"
    );
    assert!(!dir.exists(), "the cluster directory was not removed");
}

const WATCHDOG_CHILD_ENV: &str = "ROUTEGATE_HARNESS_WATCHDOG_CHILD";

/// Re-runs this test binary, for this test only, as a child that starts a cluster (the
/// variable tells the two roles apart); SIGKILLs the child; the cluster's JVMs must halt on
/// their own (their stdin pipe closes), no Drop involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jvms_halt_when_the_test_process_that_started_them_is_killed() {
    if std::env::var_os(WATCHDOG_CHILD_ENV).is_some() {
        return watchdog_child().await;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "kafka_harness::jvms_halt_when_the_test_process_that_started_them_is_killed",
            "--exact",
            "--nocapture",
        ])
        .env(WATCHDOG_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot re-run the test binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let pids = tokio::task::spawn_blocking(move || {
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("JVM PIDS"));
        let line = line.expect("the child did not report its JVMs (did its cluster start?)");
        line.split_whitespace()
            .skip(2)
            .map(|p| p.parse::<u32>().expect("a pid"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("reading the child's output");
    assert!(pids.iter().all(|pid| pid_alive(*pid)));

    child.kill().expect("SIGKILL the child test process");
    child.wait().expect("reap the child");

    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|pid| pid_alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "JVMs {pids:?} outlived their killed parent by 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The child's side of the test above: start a cluster, report its JVMs, wait to be killed.
async fn watchdog_child() {
    let cluster = KafkaCluster::single().await;
    let pids: Vec<String> = cluster.pids().iter().map(u32::to_string).collect();
    println!("JVM PIDS {}", pids.join(" "));
    tokio::time::sleep(Duration::from_secs(300)).await;
    unreachable!("the parent test kills this process long before");
}

#[test]
fn unique_topics_are_unique_and_valid_kafka_topic_names() {
    let names: Vec<String> = (0..100).map(|_| kafka::unique_topic("t")).collect();
    let distinct: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len());
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-';
    assert!(names.iter().all(|n| n.len() < 250 && n.chars().all(valid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "Invalid value 10 for configuration log.segment.bytes")]
async fn a_broker_that_cannot_start_fails_the_test_with_the_tail_of_its_log() {
    let options = ClusterOptions {
        broker_properties: vec![("log.segment.bytes".into(), "10".into())],
        ..ClusterOptions::default()
    };
    KafkaCluster::start_with(options).await;
}
