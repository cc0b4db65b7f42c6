//! Topics, leadership, reading and producing, all through the independent client
//! (`KafkaTool`), plus running any Kafka tool main class.
//!
//! These methods panic with the tool's error text: in a test, a failed admin call is a failed
//! test. `try_*` variants return the error for tests that expect one.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cluster::KafkaCluster;
use super::process::{JvmKind, java_command};
use super::tool::{ConsumedRecord, TopicDescription, decode_records};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);
/// For [`KafkaCluster::produce_records`]: 20,000 records took 1.8 s on two cores at load 5.7,
/// and the tool's own producer timeouts (30 s metadata, 60 s delivery) answer before this.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(120);

/// One record for [`KafkaCluster::produce_records`], which sends it with Kafka's own producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducedRecord {
    /// `None`: the producer's default partitioner chooses, by key (a null key: sticky).
    pub partition: Option<i32>,
    /// `None`: a null key.
    pub key: Option<String>,
    /// Any bytes: sent as text when UTF-8, as base64 otherwise.
    pub value: Vec<u8>,
    /// In record order; duplicate names kept.
    pub headers: Vec<(String, String)>,
}

impl ProducedRecord {
    /// A record without headers.
    pub fn new(partition: Option<i32>, key: Option<&str>, value: impl Into<Vec<u8>>) -> Self {
        ProducedRecord {
            partition,
            key: key.map(str::to_owned),
            value: value.into(),
            headers: Vec::new(),
        }
    }

    /// A record whose value is `value` as compact JSON text.
    pub fn json(partition: Option<i32>, key: Option<&str>, value: &Value) -> Self {
        Self::new(partition, key, value.to_string())
    }

    /// Appends a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The `produce-records` form: `value` when the bytes are UTF-8, `value_b64` otherwise;
    /// headers as `[name, value]` pairs, which keep their order and duplicates (a JSON object
    /// would keep neither: serde_json sorts its keys).
    fn to_json(&self) -> Value {
        let mut record = json!({ "key": self.key });
        if let Some(partition) = self.partition {
            record["partition"] = json!(partition);
        }
        match std::str::from_utf8(&self.value) {
            Ok(text) => record["value"] = json!(text),
            Err(_) => record["value_b64"] = json!(BASE64.encode(&self.value)),
        }
        if !self.headers.is_empty() {
            record["headers"] = json!(self.headers);
        }
        record
    }
}

impl KafkaCluster {
    async fn tool(&self, cmd: &str, args: Value) -> Result<Value, String> {
        self.tool_within(cmd, args, ADMIN_TIMEOUT).await
    }

    async fn tool_within(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.inner.tool.call(cmd, args, timeout).await
    }

    async fn tool_or_panic(&self, cmd: &str, args: Value) -> Value {
        let what = format!("{cmd} {args}");
        self.tool(cmd, args)
            .await
            .unwrap_or_else(|e| panic!("Kafka admin call `{what}` failed: {e}"))
    }

    /// Creates a topic and waits until every partition has a leader.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> TopicDescription {
        let args = json!({ "name": name, "partitions": partitions, "rf": replication_factor });
        description(self.tool_or_panic("create-topic", args).await)
    }

    /// Creates a topic with explicit replicas per partition (`assignment[p]` = replicas of
    /// partition `p`, preferred leader first), e.g. `&[&[1, 2, 3]]`.
    pub async fn create_topic_with_assignment(
        &self,
        name: &str,
        assignment: &[&[i32]],
    ) -> TopicDescription {
        let args = json!({ "name": name, "assignment": assignment });
        description(self.tool_or_panic("create-topic", args).await)
    }

    pub async fn delete_topic(&self, name: &str) {
        self.tool_or_panic("delete-topic", json!({ "name": name }))
            .await;
    }

    pub async fn describe_topic(&self, name: &str) -> TopicDescription {
        description(
            self.tool_or_panic("describe-topic", json!({ "name": name }))
                .await,
        )
    }

    /// Names of the non-internal topics.
    pub async fn list_topics(&self) -> Vec<String> {
        let topics = self.tool_or_panic("list-topics", json!({})).await;
        serde_json::from_value(topics).expect("list-topics answers a list of names")
    }

    /// Every record of every partition, from the beginning up to the end offsets at call time,
    /// ordered by partition and offset, read by Kafka's own consumer (no consumer group).
    pub async fn read_topic(&self, name: &str) -> Vec<ConsumedRecord> {
        self.try_read_topic(name)
            .await
            .unwrap_or_else(|e| panic!("reading topic {name} failed: {e}"))
    }

    /// [`Self::read_topic`], returning the error (e.g. the topic does not exist yet).
    pub async fn try_read_topic(&self, name: &str) -> Result<Vec<ConsumedRecord>, String> {
        self.tool("read-topic", json!({ "name": name }))
            .await
            .map(decode_records)
    }

    /// Polls [`Self::read_topic`] until the topic holds at least `n` records; for tests that
    /// wait for the gateway's drain. Panics after `timeout` with what it saw.
    pub async fn wait_for_records(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<ConsumedRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.try_read_topic(topic).await;
            match seen {
                Ok(records) if records.len() >= n => return records,
                _ if Instant::now() >= deadline => {
                    let seen = seen.map(|r| format!("{} records", r.len()));
                    panic!(
                        "topic {topic} did not reach {n} records within {timeout:?}; last read: {seen:?}"
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The current leader of a partition, `None` while it has none.
    pub async fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        leader_in(&self.describe_topic(topic).await, topic, partition)
    }

    /// Polls until the partition's leader satisfies `wanted`; returns it. An admin call that
    /// fails meanwhile (a node just stopped, the controller is being re-elected) counts as "not
    /// yet". Panics after `timeout` with the last leader or error seen.
    pub async fn wait_for_leader(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
        wanted: impl Fn(Option<i32>) -> bool,
    ) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .tool("describe-topic", json!({ "name": topic }))
                .await
                .map(|v| leader_in(&description(v), topic, partition));
            match seen {
                Ok(leader) if wanted(leader) => return leader,
                _ => assert!(
                    Instant::now() < deadline,
                    "{topic}-{partition}: after {timeout:?} the leader is {seen:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until the partition has `n` in-sync replicas, e.g. after a node rejoined.
    pub async fn wait_for_isr(&self, topic: &str, partition: i32, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let topic_description = self.describe_topic(topic).await;
            let isr = topic_description
                .partitions
                .iter()
                .find(|p| p.partition == partition)
                .map(|p| p.isr.clone())
                .unwrap_or_default();
            if isr.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}-{partition}: ISR {isr:?} did not reach {n} replicas in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets a partition's replica list (Admin `alterPartitionReassignments`) and waits until the
    /// reassignment is done. The first replica becomes the preferred leader.
    pub async fn reassign(&self, topic: &str, partition: i32, replicas: &[i32]) {
        let args = json!({ "name": topic, "partition": partition, "replicas": replicas });
        self.tool_or_panic("reassign", args).await;
    }

    /// Runs a preferred leader election (Admin `electLeaders(PREFERRED)`) for one partition.
    pub async fn elect_preferred(&self, topic: &str, partition: i32) {
        let args = json!({ "name": topic, "partition": partition });
        self.tool_or_panic("elect-preferred", args).await;
    }

    /// Moves a partition's leadership to `new_leader` while the old leader stays up: reorders
    /// the replicas with `new_leader` first, runs a preferred election, and waits until the
    /// metadata shows it. A client that still sends to the old leader then gets
    /// NOT_LEADER_OR_FOLLOWER, deterministically.
    pub async fn move_leader(&self, topic: &str, partition: i32, new_leader: i32) {
        let topic_description = self.describe_topic(topic).await;
        let current = topic_description
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .unwrap_or_else(|| panic!("topic {topic} has no partition {partition}"));
        assert!(
            current.replicas.contains(&new_leader),
            "node {new_leader} is not a replica of {topic}-{partition} (replicas {:?})",
            current.replicas
        );
        let mut replicas = vec![new_leader];
        replicas.extend(current.replicas.iter().filter(|&&r| r != new_leader));
        self.reassign(topic, partition, &replicas).await;
        self.elect_preferred(topic, partition).await;
        let moved = |leader| leader == Some(new_leader);
        self.wait_for_leader(topic, partition, Duration::from_secs(30), moved)
            .await;
    }

    /// Node `node`'s effective value of the broker setting `name` (Admin `describeConfigs`),
    /// `None` when it has none: what the broker says it runs with, not what the harness wrote.
    pub async fn broker_config(&self, node: i32, name: &str) -> Option<String> {
        let args = json!({ "node": node, "name": name });
        let value = self.tool_or_panic("broker-config", args).await;
        serde_json::from_value(value).expect("broker-config answers a string or null")
    }

    /// The partition's current leader epoch, as its leader answers ListOffsets(LATEST). A new
    /// leader sets it when it takes over, so every record appended after this call carries
    /// this epoch or a later one ([`ConsumedRecord::leader_epoch`]).
    pub async fn leader_epoch(&self, topic: &str, partition: i32) -> i32 {
        let args = json!({ "name": topic, "partition": partition });
        let epoch = self.tool_or_panic("leader-epoch", args).await;
        serde_json::from_value(epoch).expect("leader-epoch answers a number")
    }

    /// The partition Kafka's own Java producer (its default partitioner) chooses for each of
    /// `keys` in a topic of `partitions` partitions, in the order of `keys`. Measured, not
    /// computed: the tool JVM sends each key to a scratch topic `routegate-java-partitioner-<n>`
    /// of this cluster and reports where the broker stored it.
    pub async fn producer_partitions(&self, partitions: i32, keys: &[&[u8]]) -> Vec<i32> {
        let keys: Vec<String> = keys.iter().map(|k| BASE64.encode(k)).collect();
        let args = json!({ "partitions": partitions, "keys": keys });
        let chosen = self.tool_or_panic("producer-partitions", args).await;
        serde_json::from_value(chosen).expect("producer-partitions answers a list of partitions")
    }

    /// Sends `records` to `topic` with Kafka's own Java producer (acks=all, idempotent, send
    /// order kept per partition), an independent producer for tests of routegate's consumer.
    /// Waits for every acknowledgement and returns where each record landed, `(partition,
    /// offset)` in the order of `records`. Panics with the tool's error if any record fails
    /// (the ones before it may have been written). A missing topic is auto-created by the
    /// broker (`auto.create.topics.enable`), with one partition.
    pub async fn produce_records(
        &self,
        topic: &str,
        records: &[ProducedRecord],
    ) -> Vec<(i32, i64)> {
        let sent: Vec<Value> = records.iter().map(ProducedRecord::to_json).collect();
        let args = json!({ "name": topic, "records": sent });
        let landed = self
            .tool_within("produce-records", args, PRODUCE_TIMEOUT)
            .await
            .unwrap_or_else(|e| {
                panic!("producing {} records to {topic} failed: {e}", records.len())
            });
        let landed: Vec<Landed> = serde_json::from_value(landed)
            .expect("produce-records answers a list of {partition, offset}");
        assert_eq!(
            landed.len(),
            records.len(),
            "produce-records answered for a different number of records"
        );
        landed
            .into_iter()
            .map(|l| (l.partition, l.offset))
            .collect()
    }

    /// Allows `principal` (e.g. `User:routegate`) the ACL `operations` (`WRITE`, `DESCRIBE`,
    /// `CREATE`, … as `kafka-acls --operation` names them) on `topic`, or on the cluster when
    /// `topic` is `None` (Admin `createAcls`). Needs a cluster started with
    /// `ClusterOptions { acls: true, .. }`. The brokers apply it from the metadata log shortly
    /// after this returns.
    pub async fn add_acls(&self, principal: &str, topic: Option<&str>, operations: &[&str]) {
        let args = json!({ "principal": principal, "topic": topic, "operations": operations });
        self.tool_or_panic("add-acls", args).await;
    }

    /// Takes back what [`Self::add_acls`] allowed (Admin `deleteAcls` of exactly those ACLs).
    pub async fn remove_acls(&self, principal: &str, topic: Option<&str>, operations: &[&str]) {
        let args = json!({ "principal": principal, "topic": topic, "operations": operations });
        self.tool_or_panic("remove-acls", args).await;
    }

    /// Runs any main class on the Kafka classpath in a fresh tool JVM (under the Watchdog), e.g.
    /// `org.apache.kafka.tools.ProducerPerformance`, and returns its output. The JVM's stdin is
    /// the Watchdog's pipe, so the tool cannot read stdin.
    pub async fn run_tool(&self, main_class: &str, args: &[&str]) -> Output {
        self.run_tool_with_jvm_flags(main_class, &[], args).await
    }

    /// [`Self::run_tool`] with extra JVM flags after the harness's own (the last one wins), e.g.
    /// `-XX:TieredStopAtLevel=4 -Xmx1g` so a benchmark tool gets the full JIT and heap.
    pub async fn run_tool_with_jvm_flags(
        &self,
        main_class: &str,
        jvm_flags: &[&str],
        args: &[&str],
    ) -> Output {
        let mut command = java_command(self.inner.install, JvmKind::Tool, &self.inner.marker);
        command
            .args(jvm_flags)
            .arg("routegate.harness.Watchdog")
            .arg(main_class)
            .args(args);
        let mut child = tokio::process::Command::from(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {main_class}: {e}"));
        let _stdin = child.stdin.take();
        child
            .wait_with_output()
            .await
            .unwrap_or_else(|e| panic!("waiting for {main_class}: {e}"))
    }
}

/// Where `produce-records` says one record landed.
#[derive(Deserialize)]
struct Landed {
    partition: i32,
    offset: i64,
}

fn leader_in(description: &TopicDescription, topic: &str, partition: i32) -> Option<i32> {
    description
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .unwrap_or_else(|| panic!("topic {topic} has no partition {partition}"))
        .leader
}

fn description(value: Value) -> TopicDescription {
    serde_json::from_value(value).expect("KafkaTool sent an unexpected topic description")
}
