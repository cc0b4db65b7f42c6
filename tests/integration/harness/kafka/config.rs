//! Cluster options, port choice and the generated `server.properties` of each node.
//!
//! Quorum: every cluster, also a single node, uses a static `controller.quorum.voters` list and
//! is formatted without a quorum flag. It needs no directory ids and starts all nodes at once,
//! which is the fastest reliable start (the notes' "static" variant, what rskafka's CI uses).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

/// What kind of cluster to start. `Default` is one plain node.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Combined broker+controller nodes, ids `1..=nodes`.
    pub nodes: usize,
    /// Adds a `SASL_PLAINTEXT` listener with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for
    /// [`SASL_USER`] (and a `SASL_SSL` one if `tls` is set too).
    pub sasl: bool,
    /// Adds an `SSL` listener whose certificate is signed by the harness's test CA.
    pub tls: bool,
    /// Turns authorization on: KRaft's `StandardAuthorizer`, nothing allowed without an ACL.
    /// `User:ANONYMOUS` (the PLAINTEXT and CONTROLLER listeners: the harness's own admin and
    /// reader, the brokers and the controllers) is a super user; [`SASL_USER`] may do nothing
    /// until an ACL grants it (`KafkaCluster::add_acls`). Needs `sasl` to be useful.
    pub acls: bool,
    /// Extra broker properties, appended last (the last occurrence of a key wins).
    pub broker_properties: Vec<(String, String)>,
    /// Extra broker JVM flags, after the harness's own (for HotSpot the last one wins), e.g.
    /// `-XX:TieredStopAtLevel=4` to give a benchmark's broker the C2 compiler back.
    pub broker_jvm_flags: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 1,
            sasl: false,
            tls: false,
            acls: false,
            broker_properties: Vec::new(),
            broker_jvm_flags: Vec::new(),
        }
    }
}

/// Username and password of the SASL user every secured cluster knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaslUser {
    pub username: &'static str,
    pub password: &'static str,
}

/// The one user of a SASL listener, for PLAIN and both SCRAM mechanisms.
pub const SASL_USER: SaslUser = SaslUser {
    username: "routegate",
    password: "routegate-secret",
};

/// The loopback ports of one node. Clients use `client`; `controller` is KRaft-internal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePorts {
    pub client: u16,
    pub controller: u16,
    pub sasl: Option<u16>,
    pub ssl: Option<u16>,
    pub sasl_ssl: Option<u16>,
}

/// Picks free loopback ports for every node.
///
/// Binding `127.0.0.1:0` lets the kernel choose a port nobody uses; all listeners stay bound
/// until every port is chosen, so one cluster never gets a port twice. Between the release
/// here and the broker's bind another process may take a port; the caller then retries the
/// start with new ports.
pub(crate) fn pick_ports(options: &ClusterOptions) -> Vec<NodePorts> {
    let mut held = Vec::new();
    let mut port = || {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind a free loopback port for the test broker");
        let port = listener.local_addr().expect("bound port").port();
        held.push(listener);
        port
    };
    (0..options.nodes)
        .map(|_| NodePorts {
            client: port(),
            controller: port(),
            sasl: options.sasl.then(&mut port),
            ssl: options.tls.then(&mut port),
            sasl_ssl: (options.sasl && options.tls).then(&mut port),
        })
        .collect()
}

/// Paths a node's properties refer to.
#[derive(Debug)]
pub(crate) struct PropertyPaths<'a> {
    pub data: &'a Path,
    /// PKCS12 keystore and its password, when the cluster has TLS listeners.
    pub keystore: Option<(&'a Path, &'a str)>,
}

/// The `server.properties` of node `id` (1-based) in a cluster with `ports`.
pub(crate) fn server_properties(
    id: usize,
    ports: &[NodePorts],
    options: &ClusterOptions,
    paths: &PropertyPaths<'_>,
) -> String {
    let voters: Vec<String> = (1..=ports.len())
        .map(|n| format!("{n}@127.0.0.1:{}", ports[n - 1].controller))
        .collect();
    let (listeners, protocols) = listeners(&ports[id - 1]);
    let mut p = String::new();
    let mut set = |key: &str, value: &str| {
        let value = value.replace('\\', "\\\\");
        writeln!(p, "{key}={value}").expect("writing to a String");
    };
    set("process.roles", "broker,controller");
    set("node.id", &id.to_string());
    set("controller.quorum.voters", &voters.join(","));
    set("listeners", &listeners);
    set("advertised.listeners", &listeners);
    set("inter.broker.listener.name", "PLAINTEXT");
    set("controller.listener.names", "CONTROLLER");
    set("listener.security.protocol.map", &protocols);
    set("log.dirs", &paths.data.display().to_string());
    cluster_properties(&mut set, ports.len());
    if options.sasl {
        sasl_properties(&mut set, options.tls);
    }
    if options.acls {
        acl_properties(&mut set);
    }
    if let Some((keystore, password)) = paths.keystore {
        set("ssl.keystore.type", "PKCS12");
        set("ssl.keystore.location", &keystore.display().to_string());
        set("ssl.keystore.password", password);
        set("ssl.key.password", password);
    }
    for (key, value) in &options.broker_properties {
        set(key, value);
    }
    p
}

/// `listeners` (also advertised: clients connect to what the metadata names) and
/// `listener.security.protocol.map` of one node.
fn listeners(me: &NodePorts) -> (String, String) {
    let mut listeners = vec![
        format!("PLAINTEXT://127.0.0.1:{}", me.client),
        format!("CONTROLLER://127.0.0.1:{}", me.controller),
    ];
    let mut protocols = vec![
        "CONTROLLER:PLAINTEXT".to_owned(),
        "PLAINTEXT:PLAINTEXT".to_owned(),
    ];
    let secured = [
        ("SASL", "SASL_PLAINTEXT", me.sasl),
        ("SSL", "SSL", me.ssl),
        ("SASL_SSL", "SASL_SSL", me.sasl_ssl),
    ];
    for (name, protocol, port) in secured {
        if let Some(port) = port {
            listeners.push(format!("{name}://127.0.0.1:{port}"));
            protocols.push(format!("{name}:{protocol}"));
        }
    }
    (listeners.join(","), protocols.join(","))
}

/// Sizing, replication and timing settings for a test cluster of `nodes` nodes.
fn cluster_properties(set: &mut impl FnMut(&str, &str), nodes: usize) {
    let replicas = nodes.min(3).to_string();
    let min_isr = if nodes >= 3 { "2" } else { "1" };
    // A small machine: few threads, a small cleaner buffer (it is allocated eagerly).
    set("num.network.threads", "2");
    set("num.io.threads", "4");
    set("log.cleaner.dedupe.buffer.size", "33554432");
    set("auto.create.topics.enable", "true");
    set("num.partitions", "1");
    set("default.replication.factor", &replicas);
    set("min.insync.replicas", min_isr);
    // Internal topics must fit the cluster, or consumer groups hang.
    set("offsets.topic.replication.factor", &replicas);
    set("offsets.topic.num.partitions", "1");
    set("transaction.state.log.replication.factor", &replicas);
    set("transaction.state.log.min.isr", min_isr);
    set("transaction.state.log.num.partitions", "1");
    set(
        "share.coordinator.state.topic.replication.factor",
        &replicas,
    );
    set("share.coordinator.state.topic.min.isr", min_isr);
    set("group.initial.rebalance.delay.ms", "0");
    // Fence a dead broker within seconds (defaults 2000 / 9000 ms).
    set("broker.heartbeat.interval.ms", "500");
    set("broker.session.timeout.ms", "3000");
    // The 1 MiB minimum; short retention, test data is throwaway.
    set("log.segment.bytes", "1048576");
    set("log.retention.ms", "600000");
    set("log.retention.check.interval.ms", "10000");
}

/// KRaft's own authorizer (ACLs live in the cluster metadata). Only authenticated SASL users
/// are checked against ACLs: every PLAINTEXT connection, the harness's and the cluster's own,
/// is `User:ANONYMOUS`, a super user.
fn acl_properties(set: &mut impl FnMut(&str, &str)) {
    set(
        "authorizer.class.name",
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    );
    set("super.users", "User:ANONYMOUS");
    set("allow.everyone.if.no.acl.found", "false");
}

/// PLAIN users live in the listener's JAAS config; SCRAM users in the cluster metadata
/// (written at format time, see [`format_args`]).
fn sasl_properties(set: &mut impl FnMut(&str, &str), tls: bool) {
    let user = SASL_USER;
    let plain = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required user_{}=\"{}\";",
        user.username, user.password
    );
    let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let names: &[&str] = if tls {
        &["sasl", "sasl_ssl"]
    } else {
        &["sasl"]
    };
    set(
        "sasl.enabled.mechanisms",
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    );
    for name in names {
        set(
            &format!("listener.name.{name}.plain.sasl.jaas.config"),
            &plain,
        );
        set(
            &format!("listener.name.{name}.scram-sha-256.sasl.jaas.config"),
            scram,
        );
        set(
            &format!("listener.name.{name}.scram-sha-512.sasl.jaas.config"),
            scram,
        );
    }
}

/// Extra `StorageTool format` arguments: the SCRAM credentials of [`SASL_USER`].
pub(crate) fn format_args(options: &ClusterOptions) -> Vec<String> {
    if !options.sasl {
        return Vec::new();
    }
    let user = SASL_USER;
    ["SCRAM-SHA-256", "SCRAM-SHA-512"]
        .iter()
        .flat_map(|mechanism| {
            [
                "--add-scram".to_owned(),
                format!(
                    "{mechanism}=[name={},password={}]",
                    user.username, user.password
                ),
            ]
        })
        .collect()
}
