//! Addresses, credentials and process facts of a running [`KafkaCluster`].

use std::path::Path;

use super::cluster::KafkaCluster;
use super::config::{NodePorts, SASL_USER, SaslUser};

impl KafkaCluster {
    /// "127.0.0.1:p1,127.0.0.1:p2,..." of the PLAINTEXT listeners.
    pub fn bootstrap(&self) -> String {
        self.bootstrap_of(|p| Some(p.client), "PLAINTEXT")
    }

    /// The SASL_PLAINTEXT listeners (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub fn sasl_bootstrap(&self) -> String {
        self.bootstrap_of(|p| p.sasl, "SASL (ClusterOptions { sasl: true, .. })")
    }

    /// The SSL listeners; trust [`Self::tls_ca_pem`].
    pub fn ssl_bootstrap(&self) -> String {
        self.bootstrap_of(|p| p.ssl, "TLS (ClusterOptions { tls: true, .. })")
    }

    /// The SASL_SSL listeners.
    pub fn sasl_ssl_bootstrap(&self) -> String {
        self.bootstrap_of(
            |p| p.sasl_ssl,
            "SASL and TLS (ClusterOptions { sasl: true, tls: true, .. })",
        )
    }

    fn bootstrap_of(&self, port: impl Fn(&NodePorts) -> Option<u16>, needs: &str) -> String {
        let ports: Option<Vec<String>> = self
            .inner
            .nodes
            .iter()
            .map(|node| port(&node.ports).map(|p| format!("127.0.0.1:{p}")))
            .collect();
        ports
            .unwrap_or_else(|| {
                panic!("this test cluster has no such listener: start it with {needs}")
            })
            .join(",")
    }

    /// The user the SASL listeners accept (for PLAIN and both SCRAM mechanisms).
    pub fn sasl_user(&self) -> SaslUser {
        assert!(
            self.inner.options.sasl,
            "start the cluster with ClusterOptions {{ sasl: true, .. }}"
        );
        SASL_USER
    }

    /// The PEM of the CA that signed the brokers' certificate, for a rustls root store.
    pub fn tls_ca_pem(&self) -> Vec<u8> {
        let tls = self
            .inner
            .tls
            .expect("start the cluster with ClusterOptions { tls: true, .. }");
        std::fs::read(&tls.ca_pem).expect("cannot read the harness's test CA")
    }

    /// Node ids, `1..=n`.
    pub fn node_ids(&self) -> Vec<i32> {
        self.inner.nodes.iter().map(|node| node.id).collect()
    }

    pub fn ports(&self, node: i32) -> NodePorts {
        self.inner.node(node).ports
    }

    /// This cluster's directory: `node<N>/` data, `node<N>.properties`, `node<N>.log`, `tool.log`.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The value of `-Droutegate.kafka.harness=` on this cluster's JVM command lines.
    pub fn marker(&self) -> &str {
        &self.inner.marker
    }

    /// Pids of every JVM of this cluster that is running now (brokers and the tool JVM).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .node_ids()
            .into_iter()
            .filter_map(|id| self.pid(id))
            .collect();
        pids.push(self.inner.tool.pid());
        pids
    }
}
