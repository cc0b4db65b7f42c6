//! The consumer loop against an in-memory source that fails often: every record is applied
//! exactly once, in order per partition, across failures and a restart.

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::config::ConsumeHandler;
use crate::publisher::{Fetched, SourceRecord};
use crate::queue::Replay;
use crate::store::testdata::fixture;

/// Partitions of records in memory, which tests can extend; every `fail_every`-th call fails.
struct MemorySource {
    partitions: Mutex<Vec<Vec<SourceRecord>>>,
    calls: AtomicU64,
    fail_every: u64,
}

impl MemorySource {
    fn new(partitions: usize, per_partition: usize, fail_every: u64) -> MemorySource {
        let partitions = (0..partitions)
            .map(|p| (0..per_partition).map(|o| record(p, o)).collect())
            .collect();
        MemorySource {
            partitions: Mutex::new(partitions),
            calls: AtomicU64::new(0),
            fail_every,
        }
    }

    fn partitions(&self) -> MutexGuard<'_, Vec<Vec<SourceRecord>>> {
        self.partitions.lock().unwrap()
    }

    /// Append `n` records to partition `p`.
    fn push(&self, p: usize, n: usize) {
        let mut all = self.partitions();
        let len = all[p].len();
        all[p].extend((len..len + n).map(|o| record(p, o)));
    }

    fn flaky(&self) -> Result<(), SourceError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.fail_every) {
            return Err(SourceError::Retriable(format!("injected failure {n}")));
        }
        Ok(())
    }
}

fn record(p: usize, o: usize) -> SourceRecord {
    SourceRecord {
        offset: o as i64,
        key: Some(format!("v{}", o % 5).into_bytes()),
        value: Some(format!(r#"{{"p":{p},"o":{o}}}"#).into_bytes()),
        headers: Default::default(),
        timestamp_ms: 0,
    }
}

impl RecordSource for MemorySource {
    async fn partitions(&self, _topic: &str) -> Result<i32, SourceError> {
        self.flaky()?;
        Ok(self.partitions().len() as i32)
    }

    async fn bounds(&self, _topic: &str, p: i32) -> Result<(i64, i64), SourceError> {
        self.flaky()?;
        Ok((0, self.partitions()[p as usize].len() as i64))
    }

    async fn fetch(&self, _topic: &str, p: i32, offset: i64) -> Result<Fetched, SourceError> {
        self.flaky()?;
        let fetched = {
            let all = &self.partitions()[p as usize];
            Fetched {
                records: all.iter().skip(offset as usize).take(7).cloned().collect(),
                high_watermark: all.len() as i64,
            }
        };
        if fetched.records.is_empty() {
            // A broker waits up to `fetch_max_wait_ms` for records before answering empty.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(fetched)
    }
}

fn config() -> ConsumeConfig {
    ConsumeConfig {
        topic: "telematics".into(),
        handler: ConsumeHandler::Forward,
        vehicles: Vec::new(),
        vehicle_field: "vehicleId".into(),
        start: ConsumeStart::Earliest,
    }
}

const FAST: Discipline = Discipline {
    backoff_initial: Duration::from_millis(1),
    backoff_max: Duration::from_millis(5),
    breaker_threshold: 3,
    breaker_cooldown: Duration::from_millis(5),
};

async fn applied(status: &Status) -> i64 {
    status.snapshot().iter().filter_map(|p| p.next_offset).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_a_restart_apply_every_record_once_in_order() {
    let f = fixture();
    let (store, outbox) = (f.store.clone(), f.outbox.clone());
    let source = Arc::new(MemorySource::new(3, 200, 4));
    let total = 600;

    // First run: stopped part-way.
    let cancel = CancellationToken::new();
    let (status, tasks) = start(
        &[config()],
        "me",
        "",
        FAST,
        source.clone(),
        store.clone(),
        cancel.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied(&status).await < 100 {
        assert!(Instant::now() < deadline, "{:?}", status.snapshot());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cancel.cancel();
    tasks.wait().await;
    assert!(applied(&status).await < total, "stopped mid-stream");

    // Second run: picks up at the stored positions.
    let cancel = CancellationToken::new();
    let (status, tasks) = start(
        &[config()],
        "me",
        "",
        FAST,
        source.clone(),
        store,
        cancel.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied(&status).await < total {
        assert!(Instant::now() < deadline, "{:?}", status.snapshot());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    tasks.wait().await;
    assert!(
        source.calls.load(Ordering::Relaxed) > 100,
        "failures were injected"
    );

    let Replay::Events(events) = outbox.replay(0, u64::MAX, 10_000).unwrap() else {
        panic!("nothing was pruned");
    };
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for e in &events {
        let d: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        let (p, o) = (
            d["partition"].as_i64().unwrap(),
            d["offset"].as_i64().unwrap(),
        );
        assert_eq!(d["value"]["o"].as_i64(), Some(o));
        seen.entry(p).or_default().push(o);
    }
    for (p, offsets) in &seen {
        assert_eq!(*offsets, (0..200).collect::<Vec<i64>>(), "partition {p}");
    }
    assert_eq!(seen.len(), 3);
    outbox.shutdown().await;
}

/// `start = "latest"` means the end of the partition when the consumer first started: records
/// written after that are applied, even when the first fetches find nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_starts_where_the_partition_ended_and_keeps_what_came_after() {
    let f = fixture();
    let source = Arc::new(MemorySource::new(1, 3, u64::MAX));
    let cancel = CancellationToken::new();
    let latest = ConsumeConfig {
        start: ConsumeStart::Latest,
        ..config()
    };
    let (status, tasks) = start(
        &[latest],
        "me",
        "",
        FAST,
        source.clone(),
        f.store.clone(),
        cancel.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.snapshot().first().map(|p| p.state) != Some("running") {
        assert!(Instant::now() < deadline, "{:?}", status.snapshot());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The consumer has fetched and found nothing; now the partition grows.
    source.push(0, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied(&status).await < 7 {
        assert!(
            Instant::now() < deadline,
            "records written after the start were skipped: {:?}",
            status.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cancel.cancel();
    tasks.wait().await;
    let Replay::Events(events) = f.outbox.replay(0, u64::MAX, 100).unwrap() else {
        panic!("nothing was pruned");
    };
    let offsets: Vec<i64> = events
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.payload).unwrap()["offset"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, vec![3, 4, 5, 6]);
    f.outbox.shutdown().await;
}
