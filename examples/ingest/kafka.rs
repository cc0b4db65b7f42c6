//! Kafka for the benchmark: a throwaway single-node KRaft broker started from a directory of
//! Kafka 4.x jars (`--kafka-libs`), and the few admin calls a run needs.
//!
//! The broker is started the way the peer driver starts it (`StorageTool format`, then
//! `kafka.Kafka` with a 512 MiB heap), not through the integration tests' harness, which needs
//! its own compiled classes and lives under `tests/`. Topics are created, counted and deleted
//! with rskafka. Counting is `ListOffsets`: the sum over partitions of the latest minus the
//! earliest offset, which the broker computes; so the count does not depend on the client that
//! produced the records.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

use crate::proc;

/// A single-node KRaft broker whose state lives in `dir`; killed on drop.
#[derive(Debug)]
pub struct OwnBroker {
    child: Child,
    port: u16,
}

impl OwnBroker {
    /// Formats the storage and starts the broker; returns once it answers metadata requests.
    pub async fn start(libs: &Path, dir: &Path) -> anyhow::Result<OwnBroker> {
        let libs = libs
            .canonicalize()
            .with_context(|| format!("--kafka-libs {}", libs.display()))?;
        let has_kafka = std::fs::read_dir(&libs)?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.1"));
        if !has_kafka {
            bail!(
                "--kafka-libs {}: no kafka_2.13-*.jar there (`cargo test` caches them in \
                 target/kafka-harness/libs; a Kafka tarball has them in libs/)",
                libs.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let (port, controller) = (proc::free_port()?, proc::free_port()?);
        let props = dir.join("server.properties");
        std::fs::write(
            &props,
            server_properties(port, controller, &dir.join("data")),
        )?;
        let log4j = dir.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J)?;
        let java = |heap: &[&str]| {
            let mut c = Command::new("java");
            c.args(heap)
                .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
                .arg("-cp")
                .arg(format!("{}/*", libs.display()));
            c
        };
        let cluster_id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::now_v7().as_bytes());
        let log = dir.join("broker.log");
        let format = java(&["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .args(["kafka.tools.StorageTool", "format", "-t", &cluster_id, "-c"])
            .arg(&props)
            .output()
            .context("run java (Java 17 or newer is needed for --kafka-libs)")?;
        if !format.status.success() {
            bail!(
                "kafka storage format failed: {}{}",
                String::from_utf8_lossy(&format.stdout),
                String::from_utf8_lossy(&format.stderr)
            );
        }
        let mut cmd = java(&["-Xms512m", "-Xmx512m", "-XX:+UseG1GC"]);
        cmd.arg("kafka.Kafka").arg(&props);
        let mut broker = OwnBroker {
            child: proc::spawn(&mut cmd, &log)?,
            port,
        };
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end {
            if !matches!(broker.child.try_wait(), Ok(None)) {
                bail!("the Kafka broker exited: {}", proc::tail(&log, 1500));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && Kafka::connect(&broker.bootstrap()).await.is_ok()
            {
                return Ok(broker);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "the Kafka broker was not ready in 120 s: {}",
            proc::tail(&log, 1500)
        )
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        proc::stop(&mut self.child, Duration::from_secs(30)).await;
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        proc::kill(&mut self.child);
    }
}

fn server_properties(port: u16, controller: u16, data: &Path) -> String {
    format!(
        "process.roles=broker,controller\nnode.id=1\n\
         controller.quorum.voters=1@127.0.0.1:{controller}\n\
         listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
         inter.broker.listener.name=PLAINTEXT\ncontroller.listener.names=CONTROLLER\n\
         listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
         log.dirs={}\nnum.network.threads=2\nnum.io.threads=4\nnum.partitions=3\n\
         auto.create.topics.enable=true\noffsets.topic.replication.factor=1\n\
         offsets.topic.num.partitions=1\ntransaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n\
         share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n",
        data.display()
    )
}

const LOG4J: &str = "status = warn\nappender.out.type = Console\nappender.out.name = OUT\n\
    appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n\
    rootLogger.level = WARN\nrootLogger.appenderRef.out.ref = OUT\n";

/// An admin connection to the cluster under test.
#[derive(Debug)]
pub struct Kafka {
    client: Client,
}

impl Kafka {
    /// `brokers`: `HOST:PORT[,HOST:PORT…]`, plaintext, no authentication.
    pub async fn connect(brokers: &str) -> anyhow::Result<Kafka> {
        let bootstrap = brokers.split(',').map(|b| b.trim().to_string()).collect();
        let client = ClientBuilder::new(bootstrap)
            .client_id("routegate-ingest-bench")
            .backoff_config(BackoffConfig {
                deadline: Some(Duration::from_secs(30)),
                ..BackoffConfig::default()
            })
            .build()
            .await
            .with_context(|| format!("connect to Kafka at {brokers}"))?;
        Ok(Kafka { client })
    }

    /// Creates `topic` and waits until every partition's leader answers `ListOffsets`.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<Topic> {
        self.client
            .controller_client()?
            .create_topic(topic, partitions, 1, 30_000)
            .await
            .with_context(|| format!("create topic {topic}"))?;
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            match self.topic(topic, partitions).await {
                Ok(t) if t.count().await.is_ok() => return Ok(t),
                Err(e) if Instant::now() > end => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    async fn topic(&self, topic: &str, partitions: i32) -> anyhow::Result<Topic> {
        let mut parts = Vec::new();
        for p in 0..partitions {
            parts.push(
                self.client
                    .partition_client(topic, p, UnknownTopicHandling::Error)
                    .await?,
            );
        }
        Ok(Topic { parts })
    }

    pub async fn delete_topic(&self, topic: &str) -> anyhow::Result<()> {
        self.client
            .controller_client()?
            .delete_topic(topic, 30_000)
            .await
            .with_context(|| format!("delete topic {topic}"))
    }
}

/// The partitions of one run's topic.
#[derive(Debug)]
pub struct Topic {
    parts: Vec<PartitionClient>,
}

impl Topic {
    /// Records in the topic: the sum over partitions of latest − earliest offset.
    pub async fn count(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for p in &self.parts {
            let latest = p.get_offset(OffsetAt::Latest).await?;
            let earliest = p.get_offset(OffsetAt::Earliest).await?;
            total += u64::try_from(latest - earliest).unwrap_or(0);
        }
        Ok(total)
    }
}
