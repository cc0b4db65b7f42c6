//! The drain loop against an in-memory sink with scripted failures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::config::{Settings, StorageConfig};
use crate::events::Envelope;
use crate::events::NewEvent;
use crate::publisher::{Denied, SinkError, partition};
use crate::queue::Write;

/// What the fake sink answers to the next produce calls (default: success).
#[derive(Debug, Clone, Copy)]
enum Script {
    Fail,
    Hang,
}

#[derive(Debug, Default)]
struct FakeSink {
    partitions: HashMap<String, i32>,
    script: Mutex<VecDeque<Script>>,
    /// Events whose key is listed here are rejected as poison.
    poison: Vec<String>,
    /// (topic, partition, seqs) of every successful produce, in order.
    delivered: Mutex<Vec<(String, i32, Vec<u64>)>>,
    calls: Mutex<usize>,
    /// The ACLs: topics routegate may not write to (produce answers "not authorized") …
    unwritable: Mutex<HashSet<String>>,
    /// … and topics it may not create (the partition lookup answers "not authorized").
    uncreatable: Mutex<HashSet<String>>,
    /// Produce calls per topic.
    produced: Mutex<HashMap<String, usize>>,
}

fn denied(operation: &'static str, topic: &str) -> SinkError {
    SinkError::Unauthorized(Denied {
        operation,
        topic: Some(topic.into()),
        principal: "User:routegate".into(),
        error: "TOPIC_AUTHORIZATION_FAILED".into(),
    })
}

impl EventSink for FakeSink {
    async fn partitions(&self, topic: &str) -> Result<i32, SinkError> {
        if self.uncreatable.lock().unwrap().contains(topic) {
            return Err(denied("CREATE", topic));
        }
        self.partitions
            .get(topic)
            .copied()
            .ok_or_else(|| SinkError::Rejected(format!("no topic {topic}")))
    }

    async fn produce(&self, topic: &str, p: i32, events: &[Envelope]) -> Result<(), SinkError> {
        *self.calls.lock().unwrap() += 1;
        *self
            .produced
            .lock()
            .unwrap()
            .entry(topic.into())
            .or_default() += 1;
        if self.unwritable.lock().unwrap().contains(topic) {
            return Err(denied("WRITE", topic));
        }
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(Script::Fail) => return Err(SinkError::Retriable("broker away".into())),
            Some(Script::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        if events.iter().any(|e| self.poison.contains(&e.key)) {
            return Err(SinkError::Rejected("MESSAGE_TOO_LARGE".into()));
        }
        let seqs = events.iter().map(|e| e.seq).collect();
        self.delivered.lock().unwrap().push((topic.into(), p, seqs));
        Ok(())
    }

    async fn probe(&self) -> Result<(), SinkError> {
        Ok(())
    }

    fn record_size(&self, e: &Envelope) -> usize {
        e.payload.len()
    }

    fn wire_size(&self, e: &Envelope) -> usize {
        e.payload.len()
    }
}

impl FakeSink {
    fn new(topics: &[(&str, i32)]) -> FakeSink {
        FakeSink {
            partitions: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..FakeSink::default()
        }
    }

    fn script(self, steps: &[Script]) -> FakeSink {
        self.script.lock().unwrap().extend(steps.iter().cloned());
        self
    }

    fn deny_write(self, topic: &str) -> FakeSink {
        self.unwritable.lock().unwrap().insert(topic.into());
        self
    }

    /// Delivered seqs per topic, in delivery order.
    fn per_topic(&self) -> HashMap<String, Vec<u64>> {
        let mut out: HashMap<_, Vec<u64>> = HashMap::new();
        for (t, _, seqs) in self.delivered.lock().unwrap().iter() {
            out.entry(t.clone()).or_default().extend(seqs);
        }
        out
    }

    /// Delivered seqs per partition, in delivery order.
    fn per_partition(&self) -> HashMap<(String, i32), Vec<u64>> {
        let mut out: HashMap<_, Vec<u64>> = HashMap::new();
        for (t, p, seqs) in self.delivered.lock().unwrap().iter() {
            out.entry((t.clone(), *p)).or_default().extend(seqs);
        }
        out
    }
}

fn drain_config() -> DrainConfig {
    DrainConfig {
        max_records: 10,
        max_bytes: 1 << 20,
        linger: Duration::ZERO,
        max_record_bytes: 1000,
        request_timeout: Duration::from_secs(1),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_secs(5),
        idle_probe: Duration::from_secs(60),
        shutdown_deadline: Duration::from_secs(1),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    outbox: Outbox,
    sink: Arc<FakeSink>,
    drainer: Drainer<FakeSink>,
}

fn rig(sink: FakeSink) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        data_dir: dir.path().into(),
        ..Settings::default().storage
    };
    let outbox = Outbox::open(dir.path(), &cfg, &[]).unwrap();
    let sink = Arc::new(sink);
    let drainer = Drainer::new(outbox.clone(), sink.clone(), drain_config(), Arc::default());
    Rig {
        _dir: dir,
        outbox,
        sink,
        drainer,
    }
}

async fn enqueue(outbox: &Outbox, topic: &str, keys: &[&str], size: usize) {
    let events = keys
        .iter()
        .map(|k| NewEvent::now("t.e", topic, k, None, &"x".repeat(size)))
        .collect();
    outbox
        .append(Write {
            events,
            records: vec![],
        })
        .await
        .unwrap();
}

async fn drain_all(r: &mut Rig) -> Vec<Round> {
    let mut rounds = Vec::new();
    for _ in 0..100 {
        let round = r.drainer.round().await.unwrap();
        if round == Round::Idle {
            break;
        }
        rounds.push(round);
    }
    rounds
}

const KEYS: [&str; 6] = ["v1", "v2", "v3", "v1", "v2", "v1"];

#[tokio::test]
async fn delivers_everything_by_key_partition_in_sequence_order_and_empties_the_outbox() {
    let mut r = rig(FakeSink::new(&[("a", 3), ("b", 2)]));
    for _ in 0..5 {
        enqueue(&r.outbox, "a", &KEYS, 10).await;
        enqueue(&r.outbox, "b", &KEYS, 10).await;
    }
    drain_all(&mut r).await;
    assert_eq!(r.outbox.stats().pending_events, 0);
    let per = r.sink.per_partition();
    let total: usize = per.values().map(Vec::len).sum();
    assert_eq!(total, 60, "each event exactly once");
    for ((topic, p), seqs) in &per {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{topic}/{p}: {seqs:?}"
        );
    }
    let v1 = partition::partition_for_key(b"v1", 3);
    assert!(per.contains_key(&("a".to_string(), v1)));
}

#[tokio::test]
async fn failures_keep_events_pending_and_retries_preserve_per_key_order() {
    let sink = FakeSink::new(&[("a", 2)]).script(&[Script::Fail, Script::Fail, Script::Fail]);
    let mut r = rig(sink);
    for _ in 0..4 {
        enqueue(&r.outbox, "a", &KEYS, 10).await;
    }
    let rounds = drain_all(&mut r).await;
    assert!(rounds.iter().any(|x| matches!(x, Round::Failed { .. })));
    assert_eq!(r.outbox.stats().pending_events, 0);
    let per = r.sink.per_partition();
    assert_eq!(per.values().map(Vec::len).sum::<usize>(), 24);
    for seqs in per.values() {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    let snap = r.drainer.status.snapshot();
    assert!(snap.retried_total > 0 && snap.last_error.as_deref() == Some("broker away"));
    assert_eq!(snap.published_total, 24);
}

#[tokio::test]
async fn attempts_are_counted_on_the_pending_events() {
    let mut r = rig(FakeSink::new(&[("a", 1)]).script(&[Script::Fail]));
    enqueue(&r.outbox, "a", &["v1"], 10).await;
    let round = r.drainer.round().await.unwrap();
    assert!(matches!(round, Round::Failed { retried: 1, .. }));
    let Peeked::Event(e) = &r.outbox.peek(1, u64::MAX).unwrap()[0] else {
        panic!("expected an event");
    };
    assert_eq!(e.attempts, 1);
}

#[tokio::test]
async fn a_rejected_record_is_isolated_by_bisection_and_dead_lettered_alone() {
    let mut sink = FakeSink::new(&[("a", 1)]);
    sink.poison = vec!["bad".into()];
    let mut r = rig(sink);
    enqueue(
        &r.outbox,
        "a",
        &["k1", "k2", "bad", "k3", "k4", "k5", "k6"],
        10,
    )
    .await;
    drain_all(&mut r).await;
    let stats = r.outbox.stats();
    assert_eq!((stats.pending_events, stats.dead_letters), (0, 1));
    let dead = r.outbox.dead_letters(0, 10).unwrap();
    assert_eq!(dead[0].seq, 3);
    assert!(dead[0].reason.contains("MESSAGE_TOO_LARGE"));
    let delivered = &r.sink.per_partition()[&("a".to_string(), 0)];
    assert_eq!(delivered, &vec![1, 2, 4, 5, 6, 7]);
}

#[tokio::test]
async fn oversize_records_and_unknown_topics_are_dead_lettered_without_blocking_others() {
    let mut r = rig(FakeSink::new(&[("a", 1)]));
    enqueue(&r.outbox, "a", &["k1"], 10).await;
    enqueue(&r.outbox, "a", &["huge"], 5000).await;
    enqueue(&r.outbox, "nope", &["k2"], 10).await;
    enqueue(&r.outbox, "a", &["k3"], 10).await;
    drain_all(&mut r).await;
    let reasons: Vec<String> = r
        .outbox
        .dead_letters(0, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("max_record_bytes"));
    assert!(reasons[1].contains("no topic nope"));
    assert_eq!(r.sink.per_partition()[&("a".to_string(), 0)], vec![1, 4]);
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_stops_calling_the_sink() {
    let sink = FakeSink::new(&[("a", 1)]).script(&[Script::Fail; 3]);
    let mut r = rig(sink);
    enqueue(&r.outbox, "a", &["k"], 10).await;
    for _ in 0..3 {
        assert!(matches!(
            r.drainer.round().await.unwrap(),
            Round::Failed { .. }
        ));
    }
    let calls = *r.sink.calls.lock().unwrap();
    assert_eq!(r.drainer.round().await.unwrap(), Round::CircuitOpen);
    assert_eq!(*r.sink.calls.lock().unwrap(), calls, "no call while open");
    assert_eq!(r.drainer.status.snapshot().circuit, Circuit::Open);
    assert_eq!(r.outbox.stats().pending_events, 1, "nothing dropped");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_sink_times_out_and_the_event_is_delivered_later() {
    let mut r = rig(FakeSink::new(&[("a", 1)]).script(&[Script::Hang]));
    enqueue(&r.outbox, "a", &["k"], 10).await;
    let round = r.drainer.round().await.unwrap();
    let Round::Failed { error, .. } = round else {
        panic!("expected a timeout, got {round:?}");
    };
    assert!(error.contains("timed out"), "{error}");
    drain_all(&mut r).await;
    assert_eq!(r.outbox.stats().pending_events, 0);
}

#[tokio::test]
async fn corrupt_entries_are_dead_lettered_with_their_reason_and_the_rest_delivered() {
    let mut r = rig(FakeSink::new(&[("a", 1)]));
    enqueue(&r.outbox, "a", &["k1", "k2", "k3"], 10).await;
    r.outbox.overwrite_event_for_test(2, b"\x01garbage");
    drain_all(&mut r).await;
    assert_eq!(r.outbox.stats().pending_events, 0);
    let dead = r.outbox.dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("checksum"), "{}", dead[0].reason);
    assert_eq!(r.sink.per_partition()[&("a".to_string(), 0)], vec![1, 3]);
}

#[tokio::test]
async fn run_stops_on_cancel_after_a_last_pass() {
    let r = rig(FakeSink::new(&[("a", 1)]));
    enqueue(&r.outbox, "a", &["k1", "k2", "k3"], 10).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    r.drainer.run(cancel).await;
    assert_eq!(
        r.outbox.stats().pending_events,
        0,
        "the last pass delivered"
    );
}

#[tokio::test]
async fn a_storage_error_stalls_the_drain_visibly_and_it_retries_until_delivered() {
    let r = rig(FakeSink::new(&[("a", 1)]));
    enqueue(&r.outbox, "a", &["k1", "k2", "k3"], 10).await;
    let status = Arc::new(crate::delivery::Status::default());
    let drainer = Drainer::new(
        r.outbox.clone(),
        r.sink.clone(),
        drain_config(),
        status.clone(),
    );
    let point = "outbox-peek";
    fail::cfg(point, &format!("return(eio@{})", r._dir.path().display())).unwrap();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(drainer.run(cancel.clone()));
    let until = |what: &'static str, ok: Box<dyn Fn(&crate::delivery::Snapshot) -> bool>| {
        let status = status.clone();
        async move {
            for _ in 0..500 {
                if ok(&status.snapshot()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{what}: {:?}", status.snapshot());
        }
    };
    until("restarted twice", Box::new(|s| s.restarts >= 2)).await;
    let stall = status.snapshot().stalled.expect("the stall is visible");
    assert!(stall.contains("storage failure"), "{stall}");
    assert!(!run.is_finished(), "the drain did not give up");
    fail::remove(point);
    until("running again", Box::new(|s| s.stalled.is_none())).await;
    for _ in 0..500 {
        if r.outbox.stats().pending_events == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        r.outbox.stats().pending_events,
        0,
        "delivered after the stall"
    );
    cancel.cancel();
    run.await.unwrap();
}

/// Drive rounds until `done` holds, sleeping a little between them (pause retries wait on the
/// real clock, like the breaker). Panics after about 5 s.
async fn rounds_until(r: &mut Rig, what: &str, done: impl Fn(&Rig) -> bool) -> Vec<Round> {
    let mut rounds = Vec::new();
    for _ in 0..500 {
        if done(r) {
            return rounds;
        }
        rounds.push(r.drainer.round().await.unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{what}: rounds {rounds:?}, {:?}",
        r.drainer.status.snapshot()
    );
}

/// Seqs of the events of `topic`, as appended.
async fn enqueue_topic(outbox: &Outbox, topic: &str, n: usize) -> Vec<u64> {
    let events = (0..n)
        .map(|i| NewEvent::now("t.e", topic, KEYS[i % KEYS.len()], None, &"x".repeat(10)))
        .collect();
    let written = outbox
        .append(Write {
            events,
            records: vec![],
        })
        .await
        .unwrap();
    written.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn a_topic_kafka_refuses_pauses_others_flow_and_after_the_acl_fix_all_arrive_in_order() {
    let mut r = rig(FakeSink::new(&[("acl", 2), ("open", 2)]).deny_write("acl"));
    let mut sent: HashMap<&str, Vec<u64>> = HashMap::new();
    for _ in 0..3 {
        sent.entry("acl")
            .or_default()
            .extend(enqueue_topic(&r.outbox, "acl", 8).await);
        sent.entry("open")
            .or_default()
            .extend(enqueue_topic(&r.outbox, "open", 8).await);
    }
    let open_delivered = |r: &Rig| r.sink.per_topic().get("open").map_or(0, Vec::len) == 24;
    rounds_until(&mut r, "the open topic is delivered", open_delivered).await;
    // Several rounds and retries while refused: more than the breaker's threshold of 3.
    let refused_thrice = |r: &Rig| {
        r.drainer
            .status
            .snapshot()
            .paused
            .first()
            .map(|p| p.retries)
            >= Some(3)
    };
    rounds_until(&mut r, "retried while refused", refused_thrice).await;

    let stats = r.outbox.stats();
    assert_eq!(
        (stats.pending_events, stats.dead_letters),
        (24, 0),
        "waiting, not poison"
    );
    assert!(!r.sink.per_topic().contains_key("acl"));
    let snap = r.drainer.status.snapshot();
    assert_eq!(
        snap.circuit,
        Circuit::Closed,
        "a refusal is not a broker failure"
    );
    let [paused] = &snap.paused[..] else {
        panic!("one paused topic: {:?}", snap.paused);
    };
    assert_eq!(paused.topic, "acl");
    assert!(paused.denied.contains("WRITE") && paused.denied.contains("User:routegate"));
    assert!(
        paused.fix.contains("--operation WRITE --topic 'acl'"),
        "{}",
        paused.fix
    );
    let retries = *r.sink.produced.lock().unwrap().get("acl").unwrap();
    assert!(
        retries <= 2 * (paused.retries as usize + 1),
        "one request per partition and retry, {retries}"
    );

    r.sink.unwritable.lock().unwrap().clear();
    let drained = |r: &Rig| r.outbox.stats().pending_events == 0;
    rounds_until(&mut r, "delivered after the fix", drained).await;
    assert!(
        r.drainer.status.snapshot().paused.is_empty(),
        "the pause ended"
    );
    let delivered = r.sink.per_topic();
    for topic in ["acl", "open"] {
        let mut got = delivered[topic].clone();
        assert_eq!(got.len(), 24, "{topic}: each exactly once");
        got.sort_unstable();
        assert_eq!(got, sent[topic], "{topic}");
    }
    for ((topic, p), seqs) in r.sink.per_partition() {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{topic}/{p}: {seqs:?}"
        );
    }
}

#[tokio::test]
async fn other_topics_flow_past_a_paused_backlog_longer_than_a_round() {
    let mut r = rig(FakeSink::new(&[("acl", 1), ("open", 1)]).deny_write("acl"));
    // 100 refused events first, more than two rounds read (4 requests × 10 records).
    let refused = enqueue_topic(&r.outbox, "acl", 100).await;
    let open = enqueue_topic(&r.outbox, "open", 10).await;
    let open_delivered = |r: &Rig| r.sink.per_topic().get("open").map_or(0, Vec::len) == 10;
    let rounds = rounds_until(
        &mut r,
        "the open topic gets past the backlog",
        open_delivered,
    )
    .await;
    assert_eq!(r.sink.per_topic()["open"], open);
    let stats = r.outbox.stats();
    assert_eq!(
        (stats.pending_events, stats.dead_letters),
        (100, 0),
        "the refused events wait, none is dead-lettered"
    );
    assert!(
        rounds
            .iter()
            .any(|x| matches!(x, Round::Delivered { paused, .. } if *paused > 0)),
        "{rounds:?}"
    );

    r.sink.unwritable.lock().unwrap().clear();
    let drained = |r: &Rig| r.outbox.stats().pending_events == 0;
    rounds_until(&mut r, "the backlog is delivered after the fix", drained).await;
    assert_eq!(
        r.sink.per_topic()["acl"],
        refused,
        "in sequence order, each once"
    );
}

#[tokio::test]
async fn a_topic_kafka_refuses_to_create_pauses_too_and_resumes_once_allowed() {
    let sink = FakeSink::new(&[("new", 1), ("open", 1)]);
    sink.uncreatable.lock().unwrap().insert("new".into());
    let mut r = rig(sink);
    let new = enqueue_topic(&r.outbox, "new", 5).await;
    enqueue_topic(&r.outbox, "open", 5).await;
    let paused = |r: &Rig| r.drainer.status.snapshot().paused.len() == 1;
    rounds_until(&mut r, "paused", paused).await;
    let snap = r.drainer.status.snapshot();
    assert!(
        snap.paused[0]
            .fix
            .contains("--operation CREATE --topic 'new'")
    );
    let open_delivered = |r: &Rig| r.sink.per_topic().get("open").map_or(0, Vec::len) == 5;
    rounds_until(&mut r, "the open topic flows", open_delivered).await;
    assert_eq!(r.outbox.stats().dead_letters, 0);

    r.sink.uncreatable.lock().unwrap().clear();
    let drained = |r: &Rig| r.outbox.stats().pending_events == 0;
    rounds_until(&mut r, "delivered once allowed", drained).await;
    assert_eq!(r.sink.per_topic()["new"], new);
}
