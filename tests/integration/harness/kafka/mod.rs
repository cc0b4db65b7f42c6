//! A real Apache Kafka 4.1.1 for the integration tests, started from Maven Central jars.
//!
//! # Lifecycle
//!
//! 1. **Install** (once per machine, cached): `mvn dependency:copy-dependencies` of
//!    `tests/kafka/pom.xml` and `javac` of `tests/kafka/src` into `<target>/kafka-harness/`,
//!    under a file lock so parallel test threads and processes build it once (`install.rs`).
//!    A missing or too old `java`/`javac`/`mvn` panics with what to install; a Kafka test is
//!    never skipped.
//! 2. **Start**: free loopback ports, one `server.properties` per node, a static
//!    `controller.quorum.voters` quorum (`config.rs`). Each node is one JVM that formats its
//!    storage on first start and then runs `kafka.Kafka` (`BrokerMain.java`: one JVM start per
//!    node instead of two). Ready means every node's client port is open (Kafka 4.x opens it
//!    only once the broker is unfenced) and the metadata lists every broker. A port taken by
//!    someone else between choosing and binding it makes the start retry with new ports; any
//!    other failure panics with the tail of every broker log.
//! 3. **Use**: one shared single broker per test binary ([`shared`]), started by the first
//!    test that asks and reused by all (each test takes a fresh topic from [`unique_topic`]).
//!    Fault tests start their own [`KafkaCluster`] and stop, kill or restart its nodes.
//! 4. **Stop**: dropping an owned cluster kills its JVMs. Nothing stops the shared one
//!    explicitly: statics are never dropped.
//!
//! # Why the watchdog
//!
//! No JVM may outlive the test binary, whether it exits, panics, times out or is SIGKILLed.
//! `Drop` cannot cover a static or a SIGKILL, and `PR_SET_PDEATHSIG` fires when the *spawning
//! thread* ends (test threads end all the time). So every JVM gets a stdin pipe from the test
//! process and halts at EOF, which the kernel delivers when the test process is gone for any
//! reason (`Watchdog.java`, `process.rs`). Every JVM command line carries
//! `-Droutegate.kafka.harness=<pid>-<n>`: `pgrep -af routegate.kafka.harness` lists leftovers.
//!
//! # Ports
//!
//! No fixed ports: every listener (client, controller, and the SASL/SSL ones when asked for)
//! gets a port the kernel hands out for `127.0.0.1:0`, so parallel test binaries and clusters
//! never fight over 9092. A restarted node keeps its ports, so clients can reconnect.
//! The shared broker has every listener (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL), so tests of
//! SASL and TLS need no broker of their own.
//!
//! # Timings measured on two shared cores
//!
//! First use: Maven fetch about 3 s, javac about 2 s, keytool about 2 s; cached afterwards.
//! One node ready in 2.5 s on an idle machine (4-6 s under load), three nodes in 6-9 s. A
//! SIGTERM'd node stops in under 1 s and is ready again in about 2 s; after kill -9 in 3-5 s.
//! A killed leader is replaced after about 4 s (`broker.session.timeout.ms=3000`).
//!
//! # Files and cleanup
//!
//! A cluster lives in `<target>/kafka-harness/runs/<pid>/cluster-<pid>-<n>/` (configs, data,
//! `node<N>.log`, `tool.log`). Dropping a cluster removes its directory unless the test is
//! panicking or the start failed. The first start of every test process removes the run directories of pids that
//! no longer exist, so `target/` does not grow with every run.
//!
//! # Verifying with an independent client
//!
//! routegate produces with rskafka, so the tests never read back with rskafka: the admin
//! calls and [`KafkaCluster::read_topic`] go through `KafkaTool.java`, one long-lived JVM per
//! cluster that uses Kafka's own `Admin`, `KafkaConsumer` and `KafkaProducer` (`tool.rs`,
//! `admin.rs`). The other way round, [`KafkaCluster::produce_records`] writes with Kafka's own
//! producer, so routegate's consumer is tested against records rskafka did not write. What a
//! listener speaks is probed with a third client, framed by hand (`wire.rs`).

mod addresses;
mod admin;
mod cluster;
mod config;
/// Shared with the browser harness: stamped, lock-guarded caches under `target/`.
pub(crate) mod install;
mod nodes;
mod process;
mod tls;
mod tool;
/// A hand-framed Kafka client that probes what a listener speaks (SASL, TLS).
pub mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};

#[allow(
    unused_imports,
    reason = "the harness's API: not every test module uses every item"
)]
pub use {
    admin::ProducedRecord,
    cluster::KafkaCluster,
    config::{ClusterOptions, NodePorts, SASL_USER, SaslUser},
    process::{MARKER_PROPERTY, pid_alive},
    tool::{ConsumedRecord, PartitionDescription, TopicDescription},
};

/// The options of the shared broker: one node with every listener, so tests of SASL and TLS
/// need no broker of their own.
pub fn shared_options() -> ClusterOptions {
    ClusterOptions {
        nodes: 1,
        sasl: true,
        tls: true,
        ..ClusterOptions::default()
    }
}

/// The single broker shared by every test of this binary, started on first use. Safe for
/// concurrent callers: they wait for the one start. Never stop or restart its node.
pub async fn shared() -> &'static KafkaCluster {
    static SHARED: tokio::sync::OnceCell<Result<KafkaCluster, String>> =
        tokio::sync::OnceCell::const_new();
    let started = SHARED
        .get_or_init(|| KafkaCluster::try_start(shared_options()))
        .await;
    match started {
        Ok(cluster) => cluster,
        Err(message) => panic!("the shared test broker did not start: {message}"),
    }
}

/// A topic name no other test of this run uses: `<prefix>-<pid>-<n>`.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
