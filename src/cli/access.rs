//! How operator commands reach the queue: through the running gateway's admin API when one owns
//! the data directory, or by opening the directory themselves when none runs.
//!
//! The gateway records its address in the data directory while it holds the directory's lock,
//! so "a gateway runs here" is decided by the lock, not by a stale file. Opening locally takes
//! the same lock, so a gateway cannot start underneath a command (it would refuse to start).

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;

use crate::config::Settings;
use crate::datadir::DataDir;
use crate::events::EventJson;
use crate::http::admin::{self, DeadLetterJson, PendingJson, QueueStats, RequeueAll};
use crate::queue::Outbox;

/// A way to the queue.
#[derive(Debug)]
pub enum Access {
    Remote {
        base: String,
        client: reqwest::Client,
        token: Option<String>,
    },
    Local {
        outbox: Outbox,
        _dir: DataDir,
    },
}

impl Access {
    pub async fn open(settings: &Settings) -> anyhow::Result<Access> {
        let dir = &settings.storage.data_dir;
        if let Some(addr) = DataDir::running_gateway(dir) {
            return Ok(Access::Remote {
                base: format!("http://{addr}"),
                client: reqwest::Client::new(),
                token: settings.http.api_tokens.first().cloned(),
            });
        }
        // A mistyped path must not quietly become a fresh, empty queue.
        if !dir.is_dir() {
            anyhow::bail!(
                "no data directory at {}: pass the --data-dir the gateway runs with",
                dir.display()
            );
        }
        let owned = DataDir::acquire(dir)?;
        let (path, storage) = (owned.db_path(), settings.storage.clone());
        let outbox =
            tokio::task::spawn_blocking(move || Outbox::open(&path, &storage, crate::store::TREES))
                .await
                .context("opening storage")??;
        Ok(Access::Local {
            outbox,
            _dir: owned,
        })
    }

    /// Where the answers come from, for the human output.
    pub fn describe(&self) -> String {
        match self {
            Access::Remote { base, .. } => format!("running gateway at {base}"),
            Access::Local { .. } => "data directory (no gateway running)".into(),
        }
    }

    pub async fn close(self) {
        if let Access::Local { outbox, .. } = self {
            outbox.shutdown().await;
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let Access::Remote {
            base,
            client,
            token,
        } = self
        else {
            unreachable!("only remote access makes calls");
        };
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {base}{path}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let message = body["message"].as_str().unwrap_or("no message");
            bail!("gateway answered {status}: {message}");
        }
        Ok(Some(
            resp.json().await.context("decoding the gateway's answer")?,
        ))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path)
            .await?
            .context("empty answer")
    }

    pub async fn stats(&self) -> anyhow::Result<QueueStats> {
        match self {
            Access::Local { outbox, .. } => Ok(QueueStats::collect(outbox, None)),
            Access::Remote { .. } => self.get("/admin/queue/stats").await,
        }
    }

    pub async fn pending(&self, after: u64, limit: usize) -> anyhow::Result<Vec<PendingJson>> {
        match self {
            Access::Local { outbox, .. } => {
                let o = outbox.clone();
                let items =
                    tokio::task::spawn_blocking(move || o.peek_after(after, limit, u64::MAX))
                        .await??;
                Ok(items.iter().map(PendingJson::from).collect())
            }
            Access::Remote { .. } => {
                self.get(&format!("/admin/queue/pending?after={after}&limit={limit}"))
                    .await
            }
        }
    }

    pub async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<DeadLetterJson>> {
        match self {
            Access::Local { outbox, .. } => {
                let o = outbox.clone();
                let items =
                    tokio::task::spawn_blocking(move || o.dead_letters(after, limit)).await??;
                Ok(items.iter().map(DeadLetterJson::from).collect())
            }
            Access::Remote { .. } => {
                self.get(&format!("/admin/dead-letters?after={after}&limit={limit}"))
                    .await
            }
        }
    }

    /// Records the consumers could not use, by topic, partition and offset.
    pub async fn consumer_dead_letters(
        &self,
        limit: usize,
    ) -> anyhow::Result<Vec<crate::store::consumed::ConsumerDeadLetter>> {
        match self {
            Access::Local { outbox, .. } => {
                let o = outbox.clone();
                let read = move || crate::store::consumed::dead_letters(&o, limit);
                Ok(tokio::task::spawn_blocking(read).await??)
            }
            Access::Remote { .. } => {
                self.get(&format!("/admin/consumer-dead-letters?limit={limit}"))
                    .await
            }
        }
    }

    pub async fn dead_letter(&self, seq: u64) -> anyhow::Result<DeadLetterJson> {
        match self {
            Access::Local { outbox, .. } => {
                let found = outbox.dead_letter_by_seq(seq)?;
                let d = found.with_context(|| format!("no dead letter {seq}"))?;
                Ok(DeadLetterJson::from(&d))
            }
            Access::Remote { .. } => self.get(&format!("/admin/dead-letters/{seq}")).await,
        }
    }

    pub async fn requeue(&self, seq: u64) -> anyhow::Result<EventJson> {
        match self {
            Access::Local { outbox, .. } => {
                Ok(EventJson::from(outbox.requeue(seq).await?.as_ref()))
            }
            Access::Remote { .. } => self
                .call(
                    reqwest::Method::POST,
                    &format!("/admin/dead-letters/{seq}/requeue"),
                )
                .await?
                .context("empty answer"),
        }
    }

    pub async fn requeue_all(&self) -> anyhow::Result<RequeueAll> {
        match self {
            Access::Local { outbox, .. } => Ok(admin::requeue_all(outbox).await?),
            Access::Remote { .. } => self
                .call(reqwest::Method::POST, "/admin/dead-letters/requeue-all")
                .await?
                .context("empty answer"),
        }
    }

    pub async fn purge(&self, seq: u64) -> anyhow::Result<()> {
        match self {
            Access::Local { outbox, .. } => Ok(outbox.purge(seq).await?),
            Access::Remote { .. } => {
                let _: Option<serde_json::Value> = self
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/admin/dead-letters/{seq}"),
                    )
                    .await?;
                Ok(())
            }
        }
    }

    pub async fn route_events(&self, route: &str) -> anyhow::Result<Vec<EventJson>> {
        match self {
            Access::Local { outbox, .. } => {
                let events = outbox.route_events(route, usize::MAX)?;
                Ok(events.iter().map(EventJson::from).collect())
            }
            Access::Remote { .. } => self.get(&format!("/admin/routes/{route}/events")).await,
        }
    }
}
