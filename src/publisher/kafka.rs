//! The Kafka sink: the only file that imports rskafka.
//!
//! # Connection lifecycle
//!
//! Lazy: nothing connects until the drain needs metadata or a produce, so the gateway starts and
//! serves with no broker. The client, the partition count per topic and one partition client per
//! partition are cached. rskafka 0.6 has no request timeout and a metadata cache that can stay
//! stale after a leader moves, so:
//!
//! * every call runs under `kafka.request_timeout_ms`, and rskafka's own retries get the same
//!   deadline (it otherwise retries forever);
//! * on a timeout, a disconnect, or a leadership error (NOT_LEADER_OR_FOLLOWER,
//!   LEADER_NOT_AVAILABLE, …) the whole client is dropped and rebuilt on the next call, which
//!   refreshes metadata from scratch and discards connections that a cancelled request may have
//!   left half-used;
//! * on UNKNOWN_TOPIC_OR_PARTITION the topic is forgotten; the next call looks it up and creates
//!   it again (someone deleted it) with `kafka.topic_partitions` and `kafka.replication_factor`.
//!
//! # Permissions
//!
//! On a cluster with an authorizer, routegate's principal (`User:<kafka.sasl.username>`, or
//! `User:ANONYMOUS` without SASL) needs `WRITE` on each of its topics (`WRITE` includes
//! `DESCRIBE`), and `CREATE` on a topic (or the cluster) for topics it should create. A refusal
//! (`TOPIC_AUTHORIZATION_FAILED`, `CLUSTER_AUTHORIZATION_FAILED`) becomes
//! [`SinkError::Unauthorized`] naming the operation the failed call needs: `WRITE` for a produce,
//! `DESCRIBE` for a leader lookup, `CREATE` for a topic creation. A topic the broker says exists
//! (`TOPIC_ALREADY_EXISTS`) but does not list to us is a missing `DESCRIBE` as well.
//!
//! # Records
//!
//! Key: the event key (vehicle id) as UTF-8. Value: the JSON payload. Timestamp: the event's
//! creation time. Headers: the CloudEvents Kafka protocol binding, binary mode: `ce_specversion`,
//! `ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_subject` (the route, when there is one) and
//! `content-type`. Produce requests use `acks=all` (rskafka's fixed setting).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use serde::Serialize;
use tokio::sync::Mutex;

use super::{Denied, EventSink, SinkError};
use crate::config::{self, KafkaConfig, SaslMechanism};
use crate::events::Envelope;

/// Why the sink could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka.tls.ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Produces outbox events to Kafka with rskafka.
#[derive(Debug)]
pub struct KafkaSink {
    brokers: Vec<String>,
    client_id: String,
    origin: crate::events::Origin,
    compression: Compression,
    new_topic_partitions: i32,
    new_topic_replication: i16,
    pub(super) timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslConfig>,
    /// Who the broker's authorizer sees: `User:<sasl username>`, or `User:ANONYMOUS`.
    principal: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    client: Option<Arc<Client>>,
    topics: HashMap<String, i32>,
    partitions: HashMap<(String, i32), Arc<PartitionClient>>,
}

/// What an error says about our cached view of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stale {
    Nothing,
    Topic,
    Client,
}

impl KafkaSink {
    /// Records carry `depot` (`depot.id`) as their `ce_depotid` header (none when empty).
    pub fn with_depot(mut self, depot: &str) -> KafkaSink {
        self.origin.depot = depot.to_string();
        self
    }

    pub fn new(cfg: &KafkaConfig) -> Result<KafkaSink, Error> {
        let credentials = || Credentials::new(cfg.sasl.username.clone(), cfg.sasl.password.clone());
        let sasl = match cfg.sasl.mechanism {
            SaslMechanism::None => None,
            SaslMechanism::Plain => Some(SaslConfig::Plain(credentials())),
            SaslMechanism::ScramSha256 => Some(SaslConfig::ScramSha256(credentials())),
            SaslMechanism::ScramSha512 => Some(SaslConfig::ScramSha512(credentials())),
        };
        let principal = match (&sasl, cfg.sasl.username.as_str()) {
            (Some(_), user) => format!("User:{user}"),
            (None, _) => "User:ANONYMOUS".to_string(),
        };
        Ok(KafkaSink {
            principal,
            brokers: cfg.brokers.clone(),
            client_id: cfg.client_id.clone(),
            origin: crate::events::Origin::new(&cfg.event_source, ""),
            compression: match cfg.compression {
                config::Compression::None => Compression::NoCompression,
                config::Compression::Gzip => Compression::Gzip,
                config::Compression::Lz4 => Compression::Lz4,
                config::Compression::Snappy => Compression::Snappy,
                config::Compression::Zstd => Compression::Zstd,
            },
            new_topic_partitions: cfg.topic_partitions as i32,
            new_topic_replication: cfg.replication_factor as i16,
            timeout: Duration::from_millis(cfg.request_timeout_ms),
            tls: cfg.tls.enabled.then(|| tls_config(&cfg.tls)).transpose()?,
            sasl,
            state: Mutex::new(State::default()),
        })
    }

    pub(super) async fn client(&self) -> Result<Arc<Client>, SinkError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.client {
            return Ok(c.clone());
        }
        let mut builder = ClientBuilder::new(self.brokers.clone())
            .client_id(self.client_id.as_str())
            .max_message_size(64 * 1024 * 1024)
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                deadline: Some(self.timeout),
            });
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone());
        }
        if let Some(sasl) = &self.sasl {
            builder = builder.sasl_config(sasl.clone());
        }
        let client = match tokio::time::timeout(self.timeout, builder.build()).await {
            Ok(Ok(c)) => Arc::new(c),
            Ok(Err(e)) => return Err(SinkError::Retriable(format!("connect: {e}"))),
            Err(_) => return Err(self.timed_out("connect")),
        };
        state.client = Some(client.clone());
        Ok(client)
    }

    /// Drop cached state that an error showed to be stale.
    pub(super) async fn invalidate(&self, stale: Stale, topic: &str) {
        let mut state = self.state.lock().await;
        match stale {
            Stale::Nothing => {}
            Stale::Topic => {
                state.topics.remove(topic);
                state.partitions.retain(|(t, _), _| t != topic);
            }
            Stale::Client => *state = State::default(),
        }
    }

    pub(super) async fn fail(&self, topic: &str, what: &str, e: KafkaError) -> SinkError {
        let (err, stale) = classify(what, &e);
        let err = match err {
            Refusal::Sink(err) => err,
            Refusal::Denied { operation, cluster } => SinkError::Unauthorized(Denied {
                operation,
                topic: (!cluster).then(|| topic.to_string()),
                principal: self.principal.clone(),
                error: format!("{what}: {e}"),
            }),
        };
        self.invalidate(stale, topic).await;
        err
    }

    fn timed_out(&self, what: &str) -> SinkError {
        SinkError::Retriable(format!("{what} timed out after {:?}", self.timeout))
    }

    pub(super) async fn with_deadline<T>(
        &self,
        topic: &str,
        what: &str,
        call: impl Future<Output = Result<T, KafkaError>>,
    ) -> Result<T, SinkError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(topic, what, e).await),
            Err(_) => {
                self.invalidate(Stale::Client, topic).await;
                Err(self.timed_out(what))
            }
        }
    }

    pub(super) async fn partition_client(
        &self,
        topic: &str,
        p: i32,
    ) -> Result<Arc<PartitionClient>, SinkError> {
        let key = (topic.to_string(), p);
        if let Some(pc) = self.state.lock().await.partitions.get(&key) {
            return Ok(pc.clone());
        }
        let client = self.client().await?;
        let pc = self
            .with_deadline(
                topic,
                "find partition leader",
                client.partition_client(topic, p, UnknownTopicHandling::Error),
            )
            .await?;
        let pc = Arc::new(pc);
        self.state.lock().await.partitions.insert(key, pc.clone());
        Ok(pc)
    }

    /// Look the topic up; create it when missing.
    async fn discover(&self, topic: &str) -> Result<i32, SinkError> {
        let client = self.client().await?;
        let mut ours = false;
        for _ in 0..2 {
            let topics = self
                .with_deadline(topic, "list topics", client.list_topics())
                .await?;
            if let Some(t) = topics.iter().find(|t| t.name == topic) {
                return Ok(t.partitions.len().max(1) as i32);
            }
            let controller = client
                .controller_client()
                .map_err(|e| SinkError::Retriable(format!("controller: {e}")))?;
            let timeout_ms = self.timeout.as_millis().min(i32::MAX as u128) as i32;
            let created = controller.create_topic(
                topic,
                self.new_topic_partitions,
                self.new_topic_replication,
                timeout_ms,
            );
            match tokio::time::timeout(self.timeout, created).await {
                Ok(Ok(())) => {
                    ours = true;
                    tracing::info!(
                        topic,
                        partitions = self.new_topic_partitions,
                        "created topic"
                    );
                }
                Ok(Err(KafkaError::ServerError {
                    protocol_error: ProtocolError::TopicAlreadyExists,
                    ..
                })) => {}
                Ok(Err(e)) => return Err(self.fail(topic, "create topic", e).await),
                Err(_) => return Err(self.timed_out("create topic")),
            }
        }
        if !ours {
            // It existed before we asked, yet the metadata never listed it: not visible to us.
            return Err(SinkError::Unauthorized(Denied {
                operation: "DESCRIBE",
                topic: Some(topic.to_string()),
                principal: self.principal.clone(),
                error: "create topic: TOPIC_ALREADY_EXISTS, yet the metadata does not list it"
                    .into(),
            }));
        }
        Err(SinkError::Retriable(format!(
            "topic {topic} created but not yet in metadata"
        )))
    }

    fn headers(&self, e: &Envelope) -> BTreeMap<String, Vec<u8>> {
        e.record_headers(&self.origin)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes()))
            .collect()
    }

    fn record(&self, e: &Envelope) -> Record {
        Record {
            key: Some(e.key.as_bytes().to_vec()),
            value: Some(e.payload.clone()),
            headers: self.headers(e),
            timestamp: e.created_at(),
        }
    }
}

impl EventSink for KafkaSink {
    async fn partitions(&self, topic: &str) -> Result<i32, SinkError> {
        if !config::is_topic_name(topic) {
            return Err(SinkError::Rejected(format!("invalid topic name {topic:?}")));
        }
        if let Some(n) = self.state.lock().await.topics.get(topic) {
            return Ok(*n);
        }
        let n = self.discover(topic).await?;
        self.state.lock().await.topics.insert(topic.to_string(), n);
        Ok(n)
    }

    async fn produce(
        &self,
        topic: &str,
        partition: i32,
        events: &[Envelope],
    ) -> Result<(), SinkError> {
        let pc = self.partition_client(topic, partition).await?;
        let records: Vec<Record> = events.iter().map(|e| self.record(e)).collect();
        let what = "produce";
        let offsets = self
            .with_deadline(topic, what, pc.produce(records, self.compression))
            .await?;
        if offsets.len() != events.len() {
            return Err(SinkError::Retriable(format!(
                "broker acknowledged {} of {} records",
                offsets.len(),
                events.len()
            )));
        }
        Ok(())
    }

    async fn probe(&self) -> Result<(), SinkError> {
        let client = self.client().await?;
        self.with_deadline("", "list topics", client.list_topics())
            .await
            .map(drop)
    }

    fn record_size(&self, e: &Envelope) -> usize {
        e.record_size(&self.origin)
    }

    fn wire_size(&self, e: &Envelope) -> usize {
        e.wire_size(&self.origin)
    }
}

/// What `routegate kafka check` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub brokers: Vec<String>,
    pub ok: bool,
    /// Time to connect and fetch the cluster's metadata.
    pub metadata_millis: u64,
    /// Topics and their partition counts.
    pub topics: BTreeMap<String, usize>,
    /// Configured topics the cluster does not have yet (routegate creates them on first use).
    pub missing_topics: Vec<String>,
    pub error: Option<String>,
    /// What to look at when it failed.
    pub hints: Vec<String>,
}

/// Connect with the configured settings, list the topics and time it.
pub async fn check(cfg: &KafkaConfig) -> Result<CheckReport, Error> {
    let sink = KafkaSink::new(cfg)?;
    let started = std::time::Instant::now();
    let listed = async {
        let client = sink.client().await?;
        sink.with_deadline("", "list topics", client.list_topics())
            .await
    }
    .await;
    let metadata_millis = started.elapsed().as_millis() as u64;
    let configured = [
        &cfg.topics.route_optimized,
        &cfg.topics.route_updated,
        &cfg.topics.vehicle_position,
    ];
    let mut report = CheckReport {
        brokers: cfg.brokers.clone(),
        ok: listed.is_ok(),
        metadata_millis,
        topics: BTreeMap::new(),
        missing_topics: Vec::new(),
        error: None,
        hints: Vec::new(),
    };
    match listed {
        Ok(topics) => {
            report.topics = topics
                .into_iter()
                .map(|t| (t.name, t.partitions.len()))
                .collect();
            report.missing_topics = configured
                .into_iter()
                .filter(|t| !report.topics.contains_key(*t))
                .cloned()
                .collect();
        }
        Err(e) => {
            let text = e.to_string();
            report.hints = hints(&text, cfg);
            report.error = Some(text);
        }
    }
    Ok(report)
}

fn hints(error: &str, cfg: &KafkaConfig) -> Vec<String> {
    let lower = error.to_ascii_lowercase();
    let mut out = Vec::new();
    if lower.contains("refused") {
        out.push(format!(
            "nothing listens at {}: is the broker running? check kafka.brokers (KAFKA_BROKERS)",
            cfg.brokers.join(",")
        ));
    }
    if !lower.contains("refused") && (lower.contains("timed out") || lower.contains("deadline")) {
        out.push("the broker did not answer in time: check the address, firewalls, and kafka.request_timeout_ms".into());
    }
    if lower.contains("sasl") || lower.contains("authentication") {
        out.push("authentication failed: check kafka.sasl.mechanism, kafka.sasl.username and kafka.sasl.password".into());
    }
    if lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake") {
        out.push("TLS failed: check kafka.tls.enabled and kafka.tls.ca_file, and that the listener speaks TLS".into());
    }
    if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
        out.push("a broker host name does not resolve: check kafka.brokers".into());
    }
    if out.is_empty() {
        out.push("see the error above; `routegate config` shows the settings in use".into());
    }
    out
}

/// How [`classify`] sorted an error: a plain sink error, or a refused permission that the
/// caller turns into [`SinkError::Unauthorized`] (it knows the topic and the principal).
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Sink(SinkError),
    Denied {
        operation: &'static str,
        cluster: bool,
    },
}

/// Sort an rskafka error into retry, reject or refused permission, and say what cached state it
/// invalidates.
fn classify(what: &str, e: &KafkaError) -> (Refusal, Stale) {
    use ProtocolError as P;
    let text = format!("{what}: {e}");
    let retry = |stale| (Refusal::Sink(SinkError::Retriable(text.clone())), stale);
    let KafkaError::ServerError { protocol_error, .. } = e else {
        // Connection, request, response decoding, rskafka's retry deadline: start over.
        return retry(Stale::Client);
    };
    let denied = |cluster| {
        let operation = match (what, cluster) {
            ("produce", false) => "WRITE",
            ("produce", true) => "IDEMPOTENT_WRITE",
            ("create topic", _) => "CREATE",
            _ => "DESCRIBE",
        };
        (Refusal::Denied { operation, cluster }, Stale::Nothing)
    };
    match protocol_error {
        P::UnknownTopicOrPartition | P::UnknownTopicId => retry(Stale::Topic),
        P::TopicAuthorizationFailed => denied(false),
        P::ClusterAuthorizationFailed => denied(true),
        P::MessageTooLarge
        | P::RecordListTooLarge
        | P::InvalidTopicException
        | P::InvalidRecord
        | P::InvalidTimestamp
        | P::PolicyViolation => (Refusal::Sink(SinkError::Rejected(text)), Stale::Nothing),
        P::TopicAlreadyExists | P::InvalidReplicationFactor | P::InvalidPartitions => {
            retry(Stale::Topic)
        }
        _ => retry(Stale::Client),
    }
}

fn tls_config(tls: &config::TlsConfig) -> Result<Arc<rustls::ClientConfig>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if tls.ca_file.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        let ca_err = |message: String| Error::CaFile {
            path: PathBuf::from(&tls.ca_file),
            message,
        };
        let certs =
            CertificateDer::pem_file_iter(&tls.ca_file).map_err(|e| ca_err(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_err("no certificates found".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::events::NewEvent;

    #[test]
    fn records_carry_cloudevents_headers_and_the_key() {
        let sink = KafkaSink::new(&Settings::default().kafka).unwrap();
        let e = Envelope::sequenced(
            9,
            NewEvent::now(
                "route.updated",
                "t",
                "veh-1",
                Some("r-1"),
                &serde_json::json!({"a": 1}),
            ),
        );
        let r = sink.record(&e);
        assert_eq!(r.key.as_deref(), Some(&b"veh-1"[..]));
        assert_eq!(r.value.as_deref(), Some(&e.payload[..]));
        let h = |k: &str| String::from_utf8(r.headers[k].clone()).unwrap();
        assert_eq!(h("ce_specversion"), "1.0");
        assert_eq!(h("ce_id"), e.id.to_string());
        assert_eq!(h("ce_type"), "route.updated");
        assert_eq!(h("ce_source"), "urn:routegate");
        assert_eq!(h("ce_subject"), "r-1");
        assert_eq!(h("content-type"), "application/json");
        assert!(chrono::DateTime::parse_from_rfc3339(&h("ce_time")).is_ok());
        assert_eq!(sink.record_size(&e), r.approximate_size());
        assert!(
            !r.headers.contains_key("ce_depotid"),
            "no depot.id, no header"
        );

        let sink = sink.with_depot("depot-7");
        let r = sink.record(&e);
        assert_eq!(r.headers["ce_depotid"], b"depot-7");
        assert_eq!(sink.record_size(&e), r.approximate_size());
    }

    /// A broker's answer with `p` for topic `t`.
    fn server(p: ProtocolError) -> KafkaError {
        KafkaError::ServerError {
            protocol_error: p,
            error_message: None,
            request: rskafka::client::error::RequestContext::Topic("t".into()),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn leadership_errors_rebuild_the_client_and_size_errors_reject() {
        let (e, s) = classify("produce", &server(ProtocolError::NotLeaderOrFollower));
        assert!(matches!(e, Refusal::Sink(SinkError::Retriable(_))) && s == Stale::Client);
        let (e, s) = classify("produce", &server(ProtocolError::UnknownTopicOrPartition));
        assert!(matches!(e, Refusal::Sink(SinkError::Retriable(_))) && s == Stale::Topic);
        let (e, _) = classify("produce", &server(ProtocolError::MessageTooLarge));
        assert!(matches!(e, Refusal::Sink(SinkError::Rejected(_))));
    }

    #[test]
    fn authorization_errors_name_the_operation_the_call_needs_and_are_not_poison() {
        let topic = ProtocolError::TopicAuthorizationFailed;
        let cluster = ProtocolError::ClusterAuthorizationFailed;
        let cases = [
            ("produce", topic, "WRITE", false),
            ("create topic", topic, "CREATE", false),
            ("find partition leader", topic, "DESCRIBE", false),
            ("create topic", cluster, "CREATE", true),
            ("produce", cluster, "IDEMPOTENT_WRITE", true),
        ];
        for (what, error, operation, on_cluster) in cases {
            let (e, s) = classify(what, &server(error));
            let expected = Refusal::Denied {
                operation,
                cluster: on_cluster,
            };
            assert_eq!((e, s), (expected, Stale::Nothing), "{what} {error:?}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_a_configuration_error() {
        let mut cfg = Settings::default().kafka;
        cfg.tls.enabled = true;
        cfg.tls.ca_file = "/nonexistent/ca.pem".into();
        assert!(matches!(KafkaSink::new(&cfg), Err(Error::CaFile { .. })));
    }
}
