//! The record source of the consumers: reading partitions with rskafka.
//!
//! It shares the sink's connection handling ([`KafkaSink`]: lazy client, one partition client
//! per partition, every call under `kafka.request_timeout_ms`, the client rebuilt after a
//! timeout, a disconnect or a leadership error), so a consumer meets a broker outage exactly
//! as the drain does. It never creates a topic: a consumed topic that does not exist yet is a
//! retriable error until someone creates it.
//!
//! rskafka's fetch may return records before the requested offset (they share a compressed
//! batch); they are dropped here, so a [`Fetched`] starts at the offset asked for.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::OffsetAt;

use super::kafka::{KafkaSink, Stale};
use super::{Fetched, RecordSource, SinkError, SourceError, SourceRecord};
use crate::config::KafkaConfig;

/// Reads consumed topics from Kafka.
#[derive(Debug)]
pub struct KafkaSource {
    sink: KafkaSink,
    max_wait_ms: i32,
    max_bytes: i32,
}

impl KafkaSource {
    pub fn new(cfg: &KafkaConfig) -> Result<KafkaSource, super::kafka::Error> {
        Ok(KafkaSource {
            sink: KafkaSink::new(cfg)?,
            max_wait_ms: cfg.fetch_max_wait_ms.min(i32::MAX as u64) as i32,
            max_bytes: cfg.fetch_max_bytes.min(i32::MAX as u32) as i32,
        })
    }

    /// The deadline of a fetch: the broker may hold it for the fetch wait first.
    fn fetch_deadline(&self) -> Duration {
        self.sink.timeout + Duration::from_millis(self.max_wait_ms as u64)
    }
}

impl From<SinkError> for SourceError {
    fn from(e: SinkError) -> SourceError {
        match e {
            SinkError::Retriable(m) | SinkError::Rejected(m) => SourceError::Retriable(m),
            SinkError::Unauthorized(d) => SourceError::Unauthorized(format!(
                "{} (grant READ on the topic: kafka-acls.sh --bootstrap-server <broker> --add \
                 --allow-principal '{}' --operation READ --topic '{}')",
                d.error,
                d.principal,
                d.topic.unwrap_or_default()
            )),
        }
    }
}

fn out_of_range(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::ServerError {
            protocol_error: ProtocolError::OffsetOutOfRange,
            ..
        }
    )
}

impl RecordSource for KafkaSource {
    async fn partitions(&self, topic: &str) -> Result<i32, SourceError> {
        let client = self.sink.client().await?;
        let topics = self
            .sink
            .with_deadline(topic, "list topics", client.list_topics())
            .await?;
        match topics.into_iter().find(|t| t.name == topic) {
            Some(t) if !t.partitions.is_empty() => Ok(t.partitions.len() as i32),
            _ => Err(SourceError::Retriable(format!(
                "topic {topic} does not exist (yet)"
            ))),
        }
    }

    async fn bounds(&self, topic: &str, partition: i32) -> Result<(i64, i64), SourceError> {
        let pc = self.sink.partition_client(topic, partition).await?;
        let earliest = self
            .sink
            .with_deadline(topic, "earliest offset", pc.get_offset(OffsetAt::Earliest))
            .await?;
        let latest = self
            .sink
            .with_deadline(topic, "latest offset", pc.get_offset(OffsetAt::Latest))
            .await?;
        Ok((earliest, latest))
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Fetched, SourceError> {
        let pc: Arc<_> = self.sink.partition_client(topic, partition).await?;
        let call = pc.fetch_records(offset, 1..self.max_bytes, self.max_wait_ms);
        let (records, high_watermark) =
            match tokio::time::timeout(self.fetch_deadline(), call).await {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(e)) if out_of_range(&e) => return Err(SourceError::OutOfRange),
                Ok(Err(e)) => return Err(self.sink.fail(topic, "fetch", e).await.into()),
                Err(_) => {
                    self.sink.invalidate(Stale::Client, topic).await;
                    return Err(SourceError::Retriable(format!(
                        "fetch timed out after {:?}",
                        self.fetch_deadline()
                    )));
                }
            };
        let records = records
            .into_iter()
            .filter(|r| r.offset >= offset)
            .map(|r| SourceRecord {
                offset: r.offset,
                key: r.record.key,
                value: r.record.value,
                headers: r.record.headers,
                timestamp_ms: r.record.timestamp.timestamp_millis(),
            })
            .collect();
        Ok(Fetched {
            records,
            high_watermark,
        })
    }
}
