//! The client side of `KafkaTool serve`, the independent Kafka client (Kafka's own `Admin`,
//! `KafkaConsumer` and `KafkaProducer`), and the types its answers decode into.
//!
//! One tool JVM per cluster answers JSON-line requests, several at a time. A std thread (not a
//! tokio task) reads its answers and hands each to the waiting caller through a oneshot
//! channel, so the client keeps working when the runtime of the test that started the cluster
//! is gone: the shared cluster outlives the test that happened to start it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::process::log_tail;

/// One record as Kafka's own consumer returned it. Byte-exact: keys, values and header values
/// are carried as base64 from the JVM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The partition leader epoch the broker stamped on the record's batch when it appended
    /// it: which leader wrote the record. `None` for batches without one.
    pub leader_epoch: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In record order; duplicates kept. A null header value becomes an empty vector.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A topic as the `Admin` client describes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
}

/// One partition: its leader (`None` while there is none), replicas (preferred leader first)
/// and in-sync replicas.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Deserialize)]
struct RawRecord {
    partition: i32,
    offset: i64,
    timestamp: i64,
    leader_epoch: Option<i32>,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

impl From<RawRecord> for ConsumedRecord {
    fn from(raw: RawRecord) -> Self {
        let decode = |text: String| BASE64.decode(text).expect("KafkaTool sent invalid base64");
        ConsumedRecord {
            partition: raw.partition,
            offset: raw.offset,
            timestamp_ms: raw.timestamp,
            leader_epoch: raw.leader_epoch,
            key: raw.key.map(decode),
            value: raw.value.map(decode),
            headers: raw
                .headers
                .into_iter()
                .map(|(name, value)| (name, value.map(decode).unwrap_or_default()))
                .collect(),
        }
    }
}

pub(crate) fn decode_records(value: Value) -> Vec<ConsumedRecord> {
    let raw: Vec<RawRecord> =
        serde_json::from_value(value).expect("KafkaTool sent an unexpected read-topic answer");
    raw.into_iter().map(ConsumedRecord::from).collect()
}

type Waiter = oneshot::Sender<Result<Value, String>>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// Set when the tool's stdout ended: the JVM is gone.
    closed: bool,
}

/// A running `KafkaTool serve` JVM.
#[derive(Debug)]
pub(crate) struct ToolClient {
    stdin: Mutex<ChildStdin>,
    child: Mutex<Child>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    log: PathBuf,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("waiting", &self.waiters.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl ToolClient {
    /// Starts the tool JVM (`command` must run `KafkaTool serve <bootstrap>`); stderr goes to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> ToolClient {
        let err = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("cannot start the KafkaTool JVM");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let pending = Arc::new(Mutex::new(Pending::default()));
        let reader_pending = Arc::clone(&pending);
        std::thread::Builder::new()
            .name("kafka-tool-reader".into())
            .spawn(move || read_answers(BufReader::new(stdout), &reader_pending))
            .expect("cannot start the KafkaTool reader thread");
        ToolClient {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
            pending,
            next_id: AtomicU64::new(1),
            log: log.to_path_buf(),
        }
    }

    /// Sends one command and waits up to `timeout` for its answer.
    pub async fn call(&self, cmd: &str, args: Value, timeout: Duration) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("tool pending map poisoned");
            if pending.closed {
                return Err(self.dead_message());
            }
            pending.waiters.insert(id, tx);
        }
        let line = json!({ "id": id, "cmd": cmd, "args": args }).to_string();
        {
            let mut stdin = self.stdin.lock().expect("tool stdin poisoned");
            if writeln!(stdin, "{line}")
                .and_then(|()| stdin.flush())
                .is_err()
            {
                return Err(self.dead_message());
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(self.dead_message()),
            Err(_) => {
                self.pending.lock().expect("poisoned").waiters.remove(&id);
                Err(format!(
                    "KafkaTool `{cmd}` got no answer within {timeout:?}"
                ))
            }
        }
    }

    /// `true` once the tool JVM's stdout has ended: it will answer nothing any more.
    pub fn is_dead(&self) -> bool {
        self.pending
            .lock()
            .expect("tool pending map poisoned")
            .closed
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().expect("tool child poisoned").id()
    }

    fn dead_message(&self) -> String {
        format!(
            "the KafkaTool JVM has exited; its log {} ends with:\n{}",
            self.log.display(),
            log_tail(&self.log, 30)
        )
    }
}

impl Drop for ToolClient {
    fn drop(&mut self) {
        let child = self.child.get_mut().expect("tool child poisoned");
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn read_answers(stdout: impl BufRead, pending: &Mutex<Pending>) {
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let Ok(answer) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = answer.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let waiter = pending.lock().expect("poisoned").waiters.remove(&id);
        let result = if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer.get("result").cloned().unwrap_or(Value::Null))
        } else {
            Err(answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error text")
                .to_owned())
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(result);
        }
    }
    let mut pending = pending.lock().expect("poisoned");
    pending.closed = true;
    pending.waiters.clear();
}
