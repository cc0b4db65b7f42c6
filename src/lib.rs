//! routegate: an edge gateway for route optimization with a durable outbox to Apache Kafka.

pub mod optimize;
