//! Typed configuration: every key routegate understands, its default, and its validation.
//!
//! # Layers
//!
//! The effective configuration is built from five layers, lowest precedence first
//! (see [`layers`]):
//!
//! 1. built-in defaults ([`Settings::default`]);
//! 2. an optional TOML file (`--config FILE`);
//! 3. a `.env` file in the working directory, if present;
//! 4. environment variables;
//! 5. command-line flags (`--bind`, `--data-dir`, `--log-format`, `--set key=value`).
//!
//! Every key has a dotted path (`storage.max_queue_bytes`) and an environment name derived from it
//! (`ROUTEGATE_STORAGE_MAX_QUEUE_BYTES`). Two aliases keep the names operators already use:
//! `KAFKA_BROKERS` and `KAFKA_CLIENT_ID`; the `ROUTEGATE_` names win when both are set.
//!
//! # Invariants
//!
//! * A [`Settings`] value that left [`layers::load`] has passed [`Settings::validate`]: modules never
//!   re-check what is validated here.
//! * Unknown keys in a file, a bad type or an out-of-range value stop startup with a [`ConfigError`]
//!   that names the key, the value, where it came from and what is allowed.
//! * Durations are integers in milliseconds (`*_ms`) and sizes integers in bytes (`*_bytes`), so that
//!   every layer, environment variables included, spells them the same way.
//! * Each module receives its own section (`&StorageConfig`, `&KafkaConfig`, …), never the whole.

pub mod layers;
mod validate;

pub use validate::is_topic_name;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use layers::{Layered, Overrides, Source, load};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML. `at` names the line, column and (when it can be
    /// told) the key; the offending text itself is never shown, as it may hold a secret.
    #[error("config file {path} is not valid TOML at {at}: {message}")]
    ParseFile {
        path: PathBuf,
        at: String,
        message: String,
    },
    /// The `.env` file exists but cannot be parsed (`message` names the line and variable, never
    /// the value).
    #[error(".env file {path}: {message}")]
    DotEnv { path: PathBuf, message: String },
    /// A key that routegate does not know.
    #[error(
        "unknown configuration key `{key}` (from {origin}); run `routegate config` to list the keys"
    )]
    UnknownKey { key: String, origin: String },
    /// A value of the wrong type or out of range. Built with [`ConfigError::invalid`], which
    /// replaces the value of a [secret key](SECRET_KEYS) with `***`.
    #[error("invalid value for `{key}` (from {origin}): {value:?}; {allowed}")]
    Invalid {
        key: String,
        value: String,
        origin: String,
        allowed: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] that shows `value` unless `key` is a secret.
    pub fn invalid(
        key: impl Into<String>,
        value: impl Into<String>,
        origin: impl Into<String>,
        allowed: impl Into<String>,
    ) -> ConfigError {
        let key = key.into();
        let value = if is_secret(&key) {
            "***".to_string()
        } else {
            value.into()
        };
        ConfigError::Invalid {
            key,
            value,
            origin: origin.into(),
            allowed: allowed.into(),
        }
    }
}

/// The whole configuration. `Default` is the embedded configuration `routegate serve` runs on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub kafka: KafkaConfig,
    pub optimize: OptimizeConfig,
    pub routing: RoutingConfig,
    pub websocket: WebSocketConfig,
    pub log: LogConfig,
    pub depot: DepotConfig,
}

/// The depot this gateway serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DepotConfig {
    /// The depot's id: sent as the `ce_depotid` header of every record routegate produces, and
    /// what a `routes` consumer takes routes planned elsewhere for. Empty: none.
    pub id: String,
}

/// The HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the API listens on. Loopback by default: a depot server exposes it deliberately.
    pub bind: String,
    /// Largest request body accepted, so one client cannot exhaust memory.
    pub max_body_bytes: u64,
    /// API requests handled at once; more get 503 + `Retry-After` (health probes are exempt).
    /// With `max_body_bytes` it bounds what a burst of clients can pin in memory.
    pub max_in_flight: u32,
    /// A request that takes longer is answered 503 instead of holding a connection forever.
    pub request_timeout_ms: u64,
    /// Open API connections at most; beyond it a few more may still ask `/health/*`, everyone
    /// else gets 503 or is closed. 0 derives it from the process's file-descriptor limit.
    pub max_connections: u32,
    /// A request's headers must arrive within this time, and an idle keep-alive connection is
    /// closed after it.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this time of its headers.
    pub body_timeout_ms: u64,
    /// A fix or stop-status time older than this (by the gateway's clock) is refused with 422.
    pub max_timestamp_age_ms: u64,
    /// …and one further ahead than this.
    pub max_timestamp_lead_ms: u64,
    /// How long graceful shutdown waits for in-flight requests before it stops waiting.
    pub shutdown_grace_ms: u64,
    /// Bearer tokens accepted on `/traffic` and the WebSocket; empty means no authentication.
    /// Secret: redacted by `routegate config`, never logged.
    pub api_tokens: Vec<String>,
    /// A file with more tokens, one per line (`#` comments allowed), read at startup.
    pub api_tokens_file: String,
    /// Origins allowed by CORS (`*` for any); empty disables CORS headers.
    pub cors_origins: Vec<String>,
    /// Sustained requests per second allowed per client address; 0 disables the limit.
    pub rate_limit_per_second: u32,
    /// Requests a client may burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Longest string accepted in a JSON field (ids, addresses, notes).
    pub max_string_length: u32,
}

/// The on-disk state: the outbox, the event log and the route store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory that holds all runtime state; created on start, owned by one process at a time.
    pub data_dir: PathBuf,
    /// `strict`: an append returns only after fsync. `interval`: it returns after the write is in
    /// memory and a flush follows within `flush_interval_ms` (a crash loses that window).
    pub durability: Durability,
    /// Flush period in `interval` mode.
    pub flush_interval_ms: u64,
    /// Quota on the bytes of events waiting for Kafka; appends beyond it are refused, never dropped.
    pub max_queue_bytes: u64,
    /// Quota on the number of events waiting for Kafka.
    pub max_queue_events: u64,
    /// Free space kept on the data directory's filesystem: appends that would eat into it are
    /// refused (503), so acks and deletes always have room. 0 derives it: a quarter of the
    /// filesystem, between 8 MiB and 1 GiB.
    pub min_free_bytes: u64,
    /// sled page cache. Small on purpose: an edge box is shared with other services.
    pub cache_capacity_bytes: u64,
    /// Events already delivered stay in the local log this long (WebSocket resume, audit trail).
    pub log_retention_ms: u64,
    /// …and the local log keeps at most this many bytes of delivered events.
    pub log_retention_bytes: u64,
}

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Strict,
    Interval,
}

/// The Kafka producer that drains the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`. Nothing connects until the drain needs to (lazy).
    pub brokers: Vec<String>,
    pub client_id: String,
    /// `ce_source` of every CloudEvent routegate writes.
    pub event_source: String,
    /// Partitions of topics routegate creates.
    pub topic_partitions: u32,
    /// Replication factor of topics routegate creates.
    pub replication_factor: u16,
    /// `none`, `gzip`, `lz4`, `snappy` or `zstd`.
    pub compression: Compression,
    pub batch_max_records: u32,
    pub batch_max_bytes: u64,
    /// How long the drain waits for more events before it sends a partial batch.
    pub linger_ms: u64,
    /// A record larger than this is dead-lettered instead of blocking its partition forever; the
    /// API refuses (413) a request whose event would be one, before acknowledging it.
    pub max_record_bytes: u64,
    /// Deadline of every Kafka call (rskafka has none of its own).
    pub request_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before one probe is let through.
    pub breaker_cooldown_ms: u64,
    pub topics: TopicsConfig,
    pub tls: TlsConfig,
    pub sasl: SaslConfig,
    /// Longest a consumer's fetch waits at the broker for records; the fetch's deadline is
    /// `request_timeout_ms` plus this.
    pub fetch_max_wait_ms: u64,
    /// Most bytes one fetch of one partition returns.
    pub fetch_max_bytes: u32,
    /// Topics routegate reads (`[[kafka.consume]]` entries); none by default.
    #[serde(default)]
    pub consume: Vec<ConsumeConfig>,
}

/// One topic routegate reads, every partition of it, and what it does with each record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumeConfig {
    pub topic: String,
    pub handler: ConsumeHandler,
    /// Apply only records of these vehicles; empty means every vehicle.
    #[serde(default)]
    pub vehicles: Vec<String>,
    /// The JSON field of a record's value naming its vehicle when the record has no key.
    #[serde(default = "default_vehicle_field")]
    pub vehicle_field: String,
    /// Where a partition starts when routegate has no position stored for it yet.
    #[serde(default = "default_start")]
    pub start: ConsumeStart,
}

fn default_vehicle_field() -> String {
    "vehicleId".into()
}

fn default_start() -> ConsumeStart {
    ConsumeStart::Earliest
}

/// What a consumer does with a record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeHandler {
    /// Each record becomes a local `kafka.record` event: live clients get it, Kafka does not.
    Forward,
    /// Each record is a GPS fix that moves its vehicle like `POST …/positions` does.
    Positions,
    /// Each record is a `route.optimized` / `route.updated` event planned elsewhere for this
    /// depot (its `ce_depotid` header is `depot.id`, or its vehicle is in `vehicles`).
    Routes,
}

/// A partition's first offset when none is stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeStart {
    Earliest,
    Latest,
}

/// Topic per event type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub route_optimized: String,
    pub route_updated: String,
    pub vehicle_position: String,
}

/// TLS to the brokers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM bundle of CAs to trust; empty means the Mozilla roots.
    pub ca_file: String,
}

/// SASL authentication to the brokers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `none`, `plain`, `scram-sha-256` or `scram-sha-512`.
    pub mechanism: SaslMechanism,
    pub username: String,
    /// Secret: redacted by `routegate config`, never logged.
    pub password: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Lz4,
    Snappy,
    Zstd,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMechanism {
    None,
    Plain,
    ScramSha256,
    ScramSha512,
}

/// The route optimizer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizeConfig {
    pub max_stops: u32,
    /// Great-circle distance times this factor approximates road distance.
    pub detour_factor: f64,
    pub average_speed_kmh: f64,
    /// Upper bound on solver time per request; the best route so far is returned when reached.
    pub max_compute_ms: u64,
    /// Optimize requests that may wait for a solver turn (one per core); one more is answered
    /// 503 at once, unless it is smaller than the largest waiting one, which is refused instead.
    pub max_queued_solves: u32,
}

/// The road network behind every cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// An OpenStreetMap extract (`.osm.pbf`): routes, ETAs and geometry follow its roads. Empty:
    /// great-circle distance × `optimize.detour_factor` at `optimize.average_speed_kmh`.
    pub osm_file: String,
    /// A point farther than this from any road a car may drive on is refused (422).
    pub max_snap_meters: f64,
}

/// Live updates over WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    pub max_connections: u32,
    /// Messages buffered per connection; a client that falls further behind is caught up from
    /// the event log on the same connection.
    pub buffer_messages: u32,
    pub ping_interval_ms: u64,
    /// How far behind the newest event (in events) a client may be and still be caught up from
    /// the log; further behind, it is told `lagged` and closed. 0: never catch up.
    pub max_lag_events: u64,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `routegate=debug,warn`; `RUST_LOG` overrides.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

const MIB: u64 = 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http: HttpConfig {
                bind: "127.0.0.1:4000".into(),
                max_body_bytes: MIB,
                max_in_flight: 512,
                request_timeout_ms: 30_000,
                max_connections: 0,
                header_timeout_ms: 10_000,
                body_timeout_ms: 30_000,
                max_timestamp_age_ms: 24 * 3600 * 1000,
                max_timestamp_lead_ms: 5 * 60 * 1000,
                shutdown_grace_ms: 10_000,
                api_tokens: Vec::new(),
                api_tokens_file: String::new(),
                cors_origins: Vec::new(),
                rate_limit_per_second: 0,
                rate_limit_burst: 100,
                max_string_length: 1024,
            },
            storage: StorageConfig {
                data_dir: PathBuf::from("./data/state"),
                durability: Durability::Strict,
                flush_interval_ms: 200,
                max_queue_bytes: 2 * 1024 * MIB,
                max_queue_events: 2_000_000,
                min_free_bytes: 0,
                cache_capacity_bytes: 32 * MIB,
                log_retention_ms: 24 * 3600 * 1000,
                log_retention_bytes: 256 * MIB,
            },
            kafka: KafkaConfig {
                brokers: vec!["localhost:9092".into()],
                client_id: "routegate".into(),
                event_source: "urn:routegate".into(),
                topic_partitions: 3,
                replication_factor: 1,
                compression: Compression::Lz4,
                batch_max_records: 1000,
                batch_max_bytes: MIB,
                linger_ms: 5,
                max_record_bytes: MIB - 64 * 1024,
                request_timeout_ms: 10_000,
                backoff_initial_ms: 100,
                backoff_max_ms: 30_000,
                breaker_failure_threshold: 5,
                breaker_cooldown_ms: 10_000,
                topics: TopicsConfig {
                    route_optimized: "route-optimization-events".into(),
                    route_updated: "route-update-events".into(),
                    vehicle_position: "vehicle-position-events".into(),
                },
                tls: TlsConfig {
                    enabled: false,
                    ca_file: String::new(),
                },
                sasl: SaslConfig {
                    mechanism: SaslMechanism::None,
                    username: String::new(),
                    password: String::new(),
                },
                fetch_max_wait_ms: 500,
                fetch_max_bytes: MIB as u32,
                consume: Vec::new(),
            },
            optimize: OptimizeConfig {
                max_stops: 2000,
                detour_factor: 1.3,
                average_speed_kmh: 40.0,
                max_compute_ms: 2000,
                max_queued_solves: 8,
            },
            routing: RoutingConfig {
                osm_file: String::new(),
                max_snap_meters: 1000.0,
            },
            websocket: WebSocketConfig {
                max_connections: 20_000,
                buffer_messages: 256,
                max_lag_events: 100_000,
                ping_interval_ms: 20_000,
            },
            log: LogConfig {
                format: LogFormat::Text,
                filter: "info,warp=warn,hyper=warn,rskafka=error".into(),
            },
            depot: DepotConfig::default(),
        }
    }
}

/// Keys whose values `routegate config` prints as `"***"`, that are never logged and that no
/// configuration error shows (the contents of `http.api_tokens_file` are treated the same way).
/// There is no TLS client key, so no key passphrase, among the settings.
pub const SECRET_KEYS: &[&str] = &["kafka.sasl.password", "http.api_tokens"];

/// Whether `key`'s value must never be shown.
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// What an API token must look like to be presentable at all: 1 to 4096 visible ASCII characters
/// other than `,` (it travels in an `Authorization` header and in a WebSocket subprotocol list).
pub fn is_usable_token(token: &str) -> bool {
    (1..=4096).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// What [`is_usable_token`] allows, for error messages.
pub const TOKEN_RULE: &str =
    "expected tokens of 1 to 4096 visible ASCII characters, without spaces or commas";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_pass_validation() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn broker_without_port_is_rejected_naming_the_key() {
        let mut s = Settings::default();
        s.kafka.brokers = vec!["kafka1".into()];
        let (key, allowed) = s.validate().unwrap_err();
        assert_eq!(key, "kafka.brokers");
        assert!(allowed.contains("host:port"));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(is_topic_name("route-update-events"));
        assert!(is_topic_name("a.b_c"));
        assert!(!is_topic_name(""));
        assert!(!is_topic_name(".."));
        assert!(!is_topic_name("has space"));
        assert!(!is_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn sasl_mechanism_needs_a_user_name() {
        let mut s = Settings::default();
        s.kafka.sasl.mechanism = SaslMechanism::ScramSha512;
        assert_eq!(s.validate().unwrap_err().0, "kafka.sasl.username");
    }
}
