//! Node control for fault tests: stop, kill -9, start again, and process queries.
//!
//! Never use these on the [shared](super::shared) broker: other tests are using it.

use std::time::{Duration, Instant};

use super::cluster::KafkaCluster;
use super::process::Jvm;

/// How long a SIGTERM'd broker may take for its controlled shutdown before it gets SIGKILL.
/// A node whose quorum is gone can wait minutes for the controller (see the broker notes).
const STOP_GRACE: Duration = Duration::from_secs(20);

impl KafkaCluster {
    /// Stops `node` with SIGTERM (a controlled shutdown: Kafka moves its leaderships first)
    /// and waits for the exit; after [`STOP_GRACE`] it sends SIGKILL.
    pub async fn stop(&self, node: i32) {
        let Some(mut jvm) = self.take_jvm(node) else {
            return;
        };
        let started = Instant::now();
        jvm.terminate();
        let stopped = jvm.wait_exit(STOP_GRACE).await;
        let took = started.elapsed();
        eprintln!(
            "kafka harness: node {node} {} after SIGTERM in {took:.1?}",
            if stopped { "stopped" } else { "still running" }
        );
        if !stopped {
            jvm.kill();
            assert!(
                jvm.wait_exit(Duration::from_secs(10)).await,
                "node {node} (pid {}) survived SIGKILL for 10 s",
                jvm.pid()
            );
        }
    }

    /// Kills `node` with SIGKILL, like `kill -9`: no shutdown hook, no flush.
    pub async fn kill(&self, node: i32) {
        let Some(mut jvm) = self.take_jvm(node) else {
            return;
        };
        jvm.kill();
        assert!(
            jvm.wait_exit(Duration::from_secs(10)).await,
            "node {node} (pid {}) survived SIGKILL for 10 s",
            jvm.pid()
        );
    }

    /// Starts a stopped `node` again with the same ports, config and data directory, and waits
    /// until its listeners accept connections (in Kafka 4.x: until it is unfenced).
    pub async fn start_node(&self, node: i32) {
        let inner = &self.inner;
        let n = inner.node(node);
        {
            let mut slot = n.jvm.lock().expect("node lock poisoned");
            if let Some(jvm) = slot.as_mut() {
                assert!(!jvm.is_running(), "node {node} is already running");
            }
            *slot = Some(Jvm::spawn(inner.node_command(n), &n.log));
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(90);
        if let Err(error) = self.wait_node_ready(n, deadline).await {
            panic!("restarting node {node}: {}", error.into_message());
        }
        eprintln!(
            "kafka harness: node {node} ready again in {:.1?}",
            started.elapsed()
        );
    }

    /// [`Self::stop`] then [`Self::start_node`].
    pub async fn restart(&self, node: i32) {
        self.stop(node).await;
        self.start_node(node).await;
    }

    /// `true` while `node`'s JVM runs.
    pub fn is_running(&self, node: i32) -> bool {
        let mut slot = self
            .inner
            .node(node)
            .jvm
            .lock()
            .expect("node lock poisoned");
        slot.as_mut().is_some_and(Jvm::is_running)
    }

    /// The pid of `node`'s JVM while it runs.
    pub fn pid(&self, node: i32) -> Option<u32> {
        let mut slot = self
            .inner
            .node(node)
            .jvm
            .lock()
            .expect("node lock poisoned");
        slot.as_mut()
            .and_then(|jvm| jvm.is_running().then(|| jvm.pid()))
    }

    /// Takes the JVM out of its slot, so no lock is held while waiting for it to exit.
    fn take_jvm(&self, node: i32) -> Option<Jvm> {
        self.inner
            .node(node)
            .jvm
            .lock()
            .expect("node lock poisoned")
            .take()
    }
}
