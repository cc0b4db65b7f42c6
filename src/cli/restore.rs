//! `routegate restore --from-kafka`: rebuild a depot's routes and event log from Kafka.
//!
//! Every route event routegate produces reaches Kafka, whole routes with what they were planned
//! from (`plan`). Restore reads `kafka.topics.route_optimized`, then `route_updated`, every
//! partition from its earliest record to the high watermark it found at the start, and applies
//! the depot's records as a `routes` consumer would ([`crate::store::imported`]): the route
//! store, the vehicles' active routes and the event log (same ids, types, times, payloads and
//! topics; new sequence numbers) come back as they were.
//!
//! * **Which records.** Those whose `ce_source` is this configuration's `kafka.event_source`,
//!   or with `--depot ID` those whose `ce_depotid` header is `ID`.
//! * **Resumable.** Each batch commits with its partition's position; a restore that is
//!   stopped goes on where it was when run again.
//! * **Not sent again.** The restored events are in Kafka already: restore marks them delivered
//!   before it ends, so the gateway started on the directory does not produce them again.
//! * **A new directory.** A data directory that holds routes restore did not write is refused.

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;
use crate::consume::handlers::{header, route_effect};
use crate::datadir::DataDir;
use crate::publisher::fetch::KafkaSource;
use crate::publisher::{RecordSource, SourceRecord};
use crate::queue::{Outbox, Peeked};
use crate::store::consumed::{ConsumedBatch, Effect};
use crate::store::{self, Store};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Read the route events from Kafka (required: the only source there is).
    #[arg(long, required = true)]
    pub from_kafka: bool,
    /// Restore the routes of this depot: records whose `ce_depotid` header is ID [default: the
    /// records whose `ce_source` is kafka.event_source].
    #[arg(long, value_name = "ID")]
    pub depot: Option<String>,
}

/// One partition to read: from where, up to where.
struct Span {
    topic: String,
    partition: i32,
    from: Option<i64>,
    start: i64,
    end: i64,
}

pub async fn run(settings: &Settings, args: RestoreArgs) -> anyhow::Result<()> {
    let dir = &settings.storage.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let owned = DataDir::acquire(dir)?;
    let (path, storage) = (owned.db_path(), settings.storage.clone());
    let outbox = tokio::task::spawn_blocking(move || Outbox::open(&path, &storage, store::TREES))
        .await
        .context("opening storage")??;
    let result = restore(settings, &args, &outbox).await;
    outbox.shutdown().await;
    result
}

async fn restore(settings: &Settings, args: &RestoreArgs, outbox: &Outbox) -> anyhow::Result<()> {
    let t = &settings.kafka.topics;
    let topics = [t.route_optimized.clone(), t.route_updated.clone()];
    let store = Store::new(
        outbox.clone(),
        crate::app::topics(t),
        Default::default(),
        store::RecordLimit::from(&settings.kafka),
    );
    let restored_before = store
        .consumer_positions()
        .await?
        .iter()
        .any(|p| topics.contains(&p.topic));
    let has_routes = outbox
        .domain_tree(store::ROUTES)
        .is_some_and(|t| !t.is_empty());
    if has_routes && !restored_before {
        bail!(
            "{} holds routes already: restore into a new --data-dir",
            settings.storage.data_dir.display()
        );
    }
    let source = KafkaSource::new(&settings.kafka)?;
    let mut spans = Vec::new();
    for topic in &topics {
        let partitions = source
            .partitions(topic)
            .await
            .with_context(|| format!("reading the partitions of {topic}"))?;
        for p in 0..partitions {
            let (earliest, end) = source.bounds(topic, p).await?;
            let from = store.consumer_position(topic, p).await?;
            let start = from.unwrap_or(earliest).max(earliest);
            spans.push(Span {
                topic: topic.clone(),
                partition: p,
                from,
                start,
                end,
            });
        }
    }
    let total: i64 = spans.iter().map(|s| (s.end - s.start).max(0)).sum();
    let bar = progress(total as u64);
    let pick = Pick {
        source: settings.kafka.event_source.clone(),
        depot: args.depot.clone(),
    };
    let mut counts = store::consumed::Applied::default();
    for span in &spans {
        let c = read_span(&source, &store, span, &pick, &bar).await?;
        counts.applied += c.applied;
        counts.skipped += c.skipped;
        counts.dead_lettered += c.dead_lettered;
    }
    bar.finish_and_clear();
    let delivered = mark_delivered(outbox).await?;
    let routes = outbox.domain_tree(store::ROUTES).map_or(0, |t| t.len());
    crate::cli_outln!(
        "restored {routes} routes from {total} records: {} events applied ({delivered} marked \
         delivered), {} skipped (other depots, old news), {} could not be applied \
         (routegate queue dead-letters list --consumer)",
        counts.applied,
        counts.skipped,
        counts.dead_lettered
    );
    Ok(())
}

/// Which records are the depot's.
struct Pick {
    source: String,
    depot: Option<String>,
}

impl Pick {
    fn effect(&self, topic: &str, record: &SourceRecord) -> Effect {
        let ours = match &self.depot {
            Some(depot) => header(record, "ce_depotid") == Some(depot.as_str()),
            None => header(record, "ce_source") == Some(self.source.as_str()),
        };
        if !ours {
            return Effect::Skip;
        }
        let vehicle = record
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        route_effect(record, vehicle, topic)
    }
}

async fn read_span(
    source: &KafkaSource,
    store: &Store,
    span: &Span,
    pick: &Pick,
    bar: &ProgressBar,
) -> anyhow::Result<store::consumed::Applied> {
    let mut counts = store::consumed::Applied::default();
    let (mut from, mut at) = (span.from, span.start);
    while at < span.end {
        let fetched = source
            .fetch(&span.topic, span.partition, at)
            .await
            .with_context(|| format!("reading {}/{}", span.topic, span.partition))?;
        let records: Vec<&SourceRecord> = fetched
            .records
            .iter()
            .filter(|r| r.offset < span.end)
            .collect();
        let Some(last) = records.last().map(|r| r.offset) else {
            continue;
        };
        let effects = records
            .iter()
            .map(|r| (r.offset, pick.effect(&span.topic, r)))
            .collect();
        let batch = ConsumedBatch {
            topic: span.topic.clone(),
            partition: span.partition,
            from,
            next: last + 1,
            effects,
            // Whole routes were all read first: what is missing now never comes.
            wait_for_routes: false,
        };
        let applied = store.apply_consumed(batch).await?;
        counts.applied += applied.applied;
        counts.skipped += applied.skipped;
        counts.dead_lettered += applied.dead_lettered;
        bar.inc((last + 1 - at) as u64);
        (from, at) = (Some(last + 1), last + 1);
    }
    Ok(counts)
}

/// Acknowledge every pending event: what restore logged came from Kafka.
async fn mark_delivered(outbox: &Outbox) -> anyhow::Result<u64> {
    let mut acked = 0;
    loop {
        let o = outbox.clone();
        let page = tokio::task::spawn_blocking(move || o.peek(10_000, 64 << 20)).await??;
        if page.is_empty() {
            return Ok(acked);
        }
        let seqs: Vec<u64> = page.iter().map(Peeked::seq).collect();
        acked += seqs.len() as u64;
        outbox.ack(seqs).await?;
    }
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} restoring [{bar:40}] {pos}/{len} records ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}
