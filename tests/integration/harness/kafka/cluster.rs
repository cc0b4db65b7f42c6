//! `KafkaCluster`: starting a cluster, waiting until it is ready, addresses, and teardown.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::config::{
    ClusterOptions, NodePorts, PropertyPaths, format_args, pick_ports, server_properties,
};
use super::install::{Install, install};
use super::process::{Jvm, JvmKind, java_command, log_tail, run_dir};
use super::tls::{STORE_PASSWORD, TlsMaterial, tls_material};
use super::tool::ToolClient;

/// A running Kafka cluster of combined broker+controller nodes on loopback ports.
///
/// Dropping it kills every JVM of the cluster (SIGKILL, reaped) and removes its directory,
/// unless the thread is panicking or the start failed: then the directory (logs, data) is
/// kept for inspection and removed by the first cluster start of a later test run.
/// Clones share the cluster; the last one dropped stops it.
#[derive(Debug, Clone)]
pub struct KafkaCluster {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// `<pid>-<n>`: the marker value on every JVM command line of this cluster.
    pub marker: String,
    pub dir: PathBuf,
    pub cluster_id: String,
    pub options: ClusterOptions,
    pub install: &'static Install,
    pub tls: Option<&'static TlsMaterial>,
    pub nodes: Vec<Node>,
    pub tool: ToolClient,
    /// Set when the start failed: the failure message points at the logs, so keep them.
    pub keep_dir: AtomicBool,
}

/// One node: its fixed ports and files, and its JVM while it runs.
#[derive(Debug)]
pub(crate) struct Node {
    pub id: i32,
    pub ports: NodePorts,
    pub config: PathBuf,
    pub log: PathBuf,
    pub jvm: Mutex<Option<Jvm>>,
}

/// Why a start attempt failed: a port taken by someone else is worth another attempt.
pub(crate) enum StartError {
    PortTaken(String),
    Failed(String),
}

impl StartError {
    pub(crate) fn into_message(self) -> String {
        match self {
            StartError::PortTaken(message) | StartError::Failed(message) => message,
        }
    }
}

const START_ATTEMPTS: usize = 3;

impl KafkaCluster {
    /// One plain node (PLAINTEXT only), owned by the caller.
    pub async fn single() -> KafkaCluster {
        Self::start(1).await
    }

    /// `nodes` combined broker+controller nodes (3 for failover tests), owned by the caller.
    pub async fn start(nodes: usize) -> KafkaCluster {
        Self::start_with(ClusterOptions {
            nodes,
            ..ClusterOptions::default()
        })
        .await
    }

    /// A cluster as `options` describe it; panics with the brokers' log tails if it does not
    /// become ready.
    pub async fn start_with(options: ClusterOptions) -> KafkaCluster {
        match Self::try_start(options).await {
            Ok(cluster) => cluster,
            Err(message) => panic!("{message}"),
        }
    }

    pub(crate) async fn try_start(options: ClusterOptions) -> Result<KafkaCluster, String> {
        assert!(
            options.nodes >= 1,
            "a Kafka cluster needs at least one node"
        );
        let started = Instant::now();
        let tls_wanted = options.tls;
        let (install, tls) =
            tokio::task::spawn_blocking(move || (install(), tls_wanted.then(tls_material)))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let marker = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = run_dir(install).join(format!("cluster-{marker}"));
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let cluster = KafkaCluster {
                inner: Arc::new(spawn_cluster(&options, install, tls, &marker, &dir)),
            };
            match cluster.wait_ready(ready_timeout(options.nodes)).await {
                Ok(()) => {
                    let took = started.elapsed();
                    eprintln!(
                        "kafka harness: cluster {marker} ({} nodes) ready in {took:.1?}",
                        options.nodes
                    );
                    return Ok(cluster);
                }
                Err(StartError::PortTaken(message)) => last = message,
                Err(StartError::Failed(message)) => {
                    cluster.inner.keep_dir.store(true, Ordering::Relaxed);
                    return Err(message);
                }
            }
        }
        Err(format!(
            "{last}\n(gave up after {START_ATTEMPTS} attempts with fresh ports)"
        ))
    }

    /// Waits until every node's ports are open and the cluster metadata lists every broker.
    ///
    /// In Kafka 4.x a broker opens its client port only once it is unfenced, so an open port
    /// already means "ready"; the metadata check covers the cluster as a whole.
    async fn wait_ready(&self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        for node in &self.inner.nodes {
            self.wait_node_ready(node, deadline).await?;
        }
        let expected = self.inner.nodes.len();
        loop {
            let answer =
                self.inner
                    .tool
                    .call("describe-cluster", json!({}), Duration::from_secs(10));
            match answer.await {
                Ok(cluster) if cluster["nodes"].as_array().map(Vec::len) == Some(expected) => {
                    return Ok(());
                }
                Err(error) if self.inner.tool.is_dead() => {
                    return Err(StartError::Failed(self.failure(&error)));
                }
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answer => {
                    let message =
                        format!("the cluster metadata never listed {expected} brokers: {answer:?}");
                    return Err(StartError::Failed(self.failure(&message)));
                }
            }
        }
    }

    /// Waits until `node`'s listeners accept connections; fails early if its JVM exits.
    pub(crate) async fn wait_node_ready(
        &self,
        node: &Node,
        deadline: Instant,
    ) -> Result<(), StartError> {
        loop {
            let exited = match node.jvm.lock().expect("node lock poisoned").as_mut() {
                Some(jvm) => !jvm.is_running(),
                None => true,
            };
            if exited {
                let tail = log_tail(&node.log, 40);
                let message = self.failure(&format!("node {} exited during start", node.id));
                return Err(if tail.contains("Address already in use") {
                    StartError::PortTaken(message)
                } else {
                    StartError::Failed(message)
                });
            }
            if listener_ports(&node.ports)
                .iter()
                .all(|port| port_open(*port))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Failed(
                    self.failure(&format!("node {} is not ready in time", node.id)),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A failure message with the tail of every log, saying where the full logs are.
    pub(crate) fn failure(&self, what: &str) -> String {
        let mut message = format!(
            "Kafka test cluster {} failed: {what}.\nFull logs and data: {}\n",
            self.inner.marker,
            self.inner.dir.display()
        );
        let logs = self.inner.nodes.iter().map(|node| node.log.as_path());
        for log in logs.chain([self.inner.tool.log()]) {
            let tail = log_tail(log, 40);
            message.push_str(&format!("--- tail of {} ---\n{tail}\n", log.display()));
        }
        message
    }
}

impl Inner {
    pub(crate) fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.id == id)
            .unwrap_or_else(|| {
                panic!(
                    "no node {id} in this cluster (nodes are 1..={})",
                    self.nodes.len()
                )
            })
    }

    /// The command that formats (first time only) and runs node `node`, under the Watchdog.
    pub(crate) fn node_command(&self, node: &Node) -> Command {
        let mut command = java_command(self.install, JvmKind::Broker, &self.marker);
        command
            .args(&self.options.broker_jvm_flags)
            .args(["routegate.harness.Watchdog", "routegate.harness.BrokerMain"])
            .arg(&node.config)
            .arg(&self.cluster_id)
            .args(format_args(&self.options));
        command
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(mut jvm) = node.jvm.lock().unwrap_or_else(|e| e.into_inner()).take() {
                jvm.kill_and_reap();
            }
        }
        if std::thread::panicking() || self.keep_dir.load(Ordering::Relaxed) {
            eprintln!(
                "kept the Kafka test cluster's logs and data in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes the node configs and starts every node and the tool JVM (without waiting).
fn spawn_cluster(
    options: &ClusterOptions,
    install: &'static Install,
    tls: Option<&'static TlsMaterial>,
    marker: &str,
    dir: &Path,
) -> Inner {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let ports = pick_ports(options);
    let nodes: Vec<Node> = (1..=options.nodes)
        .map(|n| {
            let data = dir.join(format!("node{n}"));
            let keystore = tls.map(|tls| (tls.keystore.as_path(), STORE_PASSWORD));
            let paths = PropertyPaths {
                data: &data,
                keystore,
            };
            let config = dir.join(format!("node{n}.properties"));
            std::fs::write(&config, server_properties(n, &ports, options, &paths))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            Node {
                id: i32::try_from(n).expect("node count fits i32"),
                ports: ports[n - 1],
                config,
                log: dir.join(format!("node{n}.log")),
                jvm: Mutex::new(None),
            }
        })
        .collect();
    let bootstrap: Vec<String> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.client))
        .collect();
    let mut tool_command = java_command(install, JvmKind::Tool, marker);
    tool_command.args(["routegate.harness.KafkaTool", "serve", &bootstrap.join(",")]);
    let tool = ToolClient::spawn(tool_command, &dir.join("tool.log"));
    let inner = Inner {
        marker: marker.to_owned(),
        dir: dir.to_path_buf(),
        cluster_id: URL_SAFE_NO_PAD.encode(uuid::Uuid::now_v7().as_bytes()),
        options: options.clone(),
        install,
        tls,
        nodes,
        tool,
        keep_dir: AtomicBool::new(false),
    };
    for node in &inner.nodes {
        let jvm = Jvm::spawn(inner.node_command(node), &node.log);
        *node.jvm.lock().expect("node lock poisoned") = Some(jvm);
    }
    inner
}

fn ready_timeout(nodes: usize) -> Duration {
    if nodes == 1 {
        Duration::from_secs(90)
    } else {
        Duration::from_secs(120)
    }
}

fn listener_ports(ports: &NodePorts) -> Vec<u16> {
    [Some(ports.client), ports.sasl, ports.ssl, ports.sasl_ssl]
        .into_iter()
        .flatten()
        .collect()
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
