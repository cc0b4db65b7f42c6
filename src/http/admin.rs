//! `/admin/*`: the operator endpoints the CLI uses while a gateway owns the data directory.
//!
//! Same authentication as `/traffic`. Nothing here deletes a queued event: dead letters can be
//! listed, requeued or purged; pending events can only be read.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/admin/queue/stats` | [`QueueStats`] |
//! | GET | `/admin/queue/pending?after=&limit=` | pending events, oldest first |
//! | GET | `/admin/dead-letters?after=&limit=` | dead letters, oldest first |
//! | GET | `/admin/dead-letters/{seq}` | one dead letter |
//! | GET | `/admin/consumer-dead-letters?limit=` | records the consumers could not use |
//! | POST | `/admin/dead-letters/{seq}/requeue` | the requeued event |
//! | POST | `/admin/dead-letters/requeue-all` | `{requeued, failed}` |
//! | DELETE | `/admin/dead-letters/{seq}` | 204 |
//! | GET | `/admin/routes/{routeId}/events` | the route's logged events, oldest first |

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::{self, Response};
use warp::{Filter, Rejection, Reply};

use super::auth::{self, Tokens};
use super::error::ApiError;
use crate::delivery::{Snapshot, Status};
use crate::events::EventJson;
use crate::queue::{self, DeadLetter, Outbox, Peeked};

/// Queue figures plus the publisher's view, for `routegate queue stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub pending_events: u64,
    pub pending_bytes: u64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub dead_letters: u64,
    pub log_events: u64,
    pub log_bytes: u64,
    pub last_seq: u64,
    pub disk_bytes: u64,
    /// `None` when read from disk with no gateway running.
    pub delivery: Option<Snapshot>,
    /// Where each consumed partition stands (`[[kafka.consume]]`).
    #[serde(default)]
    pub consumers: Vec<crate::store::consumed::StoredPosition>,
}

impl QueueStats {
    pub fn collect(outbox: &Outbox, delivery: Option<Snapshot>) -> QueueStats {
        let s = outbox.stats();
        QueueStats {
            pending_events: s.pending_events,
            pending_bytes: s.pending_bytes,
            oldest_pending_at: s
                .oldest_pending_us
                .and_then(|us| Utc.timestamp_micros(us).single()),
            dead_letters: s.dead_letters,
            log_events: s.log_events,
            log_bytes: s.log_bytes,
            last_seq: s.durable_seq,
            disk_bytes: outbox.disk_bytes(),
            delivery,
            consumers: crate::store::consumed::positions(outbox).unwrap_or_else(|e| {
                tracing::warn!(cause = %e, "cannot read the consumers' positions");
                Vec::new()
            }),
        }
    }
}

/// A pending entry: the event, or why it cannot be decoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingJson {
    pub seq: u64,
    pub event: Option<EventJson>,
    pub corrupt: Option<String>,
}

impl From<&Peeked> for PendingJson {
    fn from(p: &Peeked) -> Self {
        match p {
            Peeked::Event(e) => PendingJson {
                seq: e.seq,
                event: Some(e.into()),
                corrupt: None,
            },
            Peeked::Corrupt { seq, reason } => PendingJson {
                seq: *seq,
                event: None,
                corrupt: Some(reason.clone()),
            },
        }
    }
}

/// A dead letter as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterJson {
    pub seq: u64,
    pub reason: String,
    pub dead_at: DateTime<Utc>,
    pub attempts: u32,
    pub raw_bytes: usize,
    pub event: Option<EventJson>,
}

impl From<&DeadLetter> for DeadLetterJson {
    fn from(d: &DeadLetter) -> Self {
        DeadLetterJson {
            seq: d.seq,
            reason: d.reason.clone(),
            dead_at: Utc
                .timestamp_micros(d.dead_at_us)
                .single()
                .unwrap_or_default(),
            attempts: d.attempts,
            raw_bytes: d.raw_len,
            event: d.event.as_ref().map(EventJson::from),
        }
    }
}

/// Result of requeueing every dead letter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequeueAll {
    pub requeued: Vec<u64>,
    pub failed: Vec<(u64, String)>,
}

#[derive(Debug, Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

const MAX_PAGE: usize = 10_000;
/// Stored bytes of events one admin page carries at most (at least one event): a page of 10,000
/// large events was a 31.5 MB answer. Page on with `after` = the last `seq`.
pub const MAX_PAGE_BYTES: u64 = 1024 * 1024;

impl Page {
    fn bounds(&self) -> (u64, usize) {
        (
            self.after.unwrap_or(0),
            self.limit.unwrap_or(100).clamp(1, MAX_PAGE),
        )
    }
}

/// Requeue every dead letter, oldest first; the ones that cannot be requeued are reported.
pub async fn requeue_all(outbox: &Outbox) -> Result<RequeueAll, queue::Error> {
    let mut out = RequeueAll::default();
    let mut after = 0;
    loop {
        let page = {
            let o = outbox.clone();
            blocking(move || o.dead_letters(after, 1000)).await?
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        for d in page {
            match outbox.requeue(d.seq).await {
                Ok(_) => out.requeued.push(d.seq),
                Err(e @ queue::Error::QuotaExceeded { .. }) => return Err(e),
                Err(e) => out.failed.push((d.seq, e.to_string())),
            }
        }
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, queue::Error> + Send + 'static,
) -> Result<T, queue::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(e.into()))
}

fn json<T: Serialize>(v: &T) -> Response {
    reply::json(v).into_response()
}

/// All `/admin` routes.
pub fn routes(
    outbox: Outbox,
    delivery: Arc<Status>,
    tokens: Tokens,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with = move || {
        let o = outbox.clone();
        warp::any().map(move || o.clone())
    };
    let admin = warp::path("admin").and(auth::required(tokens));
    let stats = admin
        .clone()
        .and(warp::path!("queue" / "stats"))
        .and(crate::http::openapi::read())
        .and(with())
        .then(move |o: Outbox| {
            let snapshot = delivery.snapshot();
            async move {
                // Reads sled and walks the data directory: off the async workers.
                match blocking(move || Ok(QueueStats::collect(&o, Some(snapshot)))).await {
                    Ok(stats) => json(&stats),
                    Err(e) => ApiError::from(e).into_response(),
                }
            }
        });
    let pending = admin
        .clone()
        .and(warp::path!("queue" / "pending"))
        .and(crate::http::openapi::read())
        .and(warp::query::<Page>())
        .and(with())
        .and_then(|page: Page, o: Outbox| async move {
            let (after, limit) = page.bounds();
            let items = blocking(move || o.peek_after(after, limit, MAX_PAGE_BYTES)).await;
            let items = items.map_err(api_error)?;
            Ok::<_, Rejection>(json(
                &items.iter().map(PendingJson::from).collect::<Vec<_>>(),
            ))
        });
    let dead_list = admin
        .clone()
        .and(warp::path!("dead-letters"))
        .and(crate::http::openapi::read())
        .and(warp::query::<Page>())
        .and(with())
        .and_then(|page: Page, o: Outbox| async move {
            let (after, limit) = page.bounds();
            let items = blocking(move || o.dead_letters_page(after, limit, MAX_PAGE_BYTES)).await;
            let items = items.map_err(api_error)?;
            Ok::<_, Rejection>(json(
                &items.iter().map(DeadLetterJson::from).collect::<Vec<_>>(),
            ))
        });
    let consumer_dead = admin
        .clone()
        .and(warp::path!("consumer-dead-letters"))
        .and(crate::http::openapi::read())
        .and(warp::query::<Page>())
        .and(with())
        .and_then(|page: Page, o: Outbox| async move {
            let (_, limit) = page.bounds();
            let items = tokio::task::spawn_blocking(move || {
                crate::store::consumed::dead_letters(&o, limit)
            })
            .await
            .map_err(|e| ApiError::from(crate::store::Error::Task(e.to_string())))?
            .map_err(ApiError::from)?;
            Ok::<_, Rejection>(json(&items))
        });
    let dead_one = admin
        .clone()
        .and(warp::path!("dead-letters" / u64))
        .and(crate::http::openapi::read())
        .and(with())
        .and_then(|seq: u64, o: Outbox| async move {
            let found = blocking(move || o.dead_letter_by_seq(seq)).await;
            match found.map_err(api_error)? {
                Some(d) => Ok(json(&DeadLetterJson::from(&d))),
                None => Err(api_error(queue::Error::NoDeadLetter(seq))),
            }
        });
    let requeue = admin
        .clone()
        .and(warp::path!("dead-letters" / u64 / "requeue"))
        .and(warp::post())
        .and(with())
        .and_then(|seq: u64, o: Outbox| async move {
            let e = o.requeue(seq).await.map_err(api_error)?;
            Ok::<_, Rejection>(json(&EventJson::from(e.as_ref())))
        });
    let requeue_every = admin
        .clone()
        .and(warp::path!("dead-letters" / "requeue-all"))
        .and(warp::post())
        .and(with())
        .and_then(|o: Outbox| async move {
            let r = requeue_all(&o).await.map_err(api_error)?;
            Ok::<_, Rejection>(json(&r))
        });
    let route_events = admin
        .clone()
        .and(warp::path!("routes" / String / "events"))
        .and(crate::http::openapi::read())
        .and(with())
        .and_then(|route: String, o: Outbox| async move {
            let events = blocking(move || o.route_events(&route, MAX_PAGE)).await;
            let events = events.map_err(api_error)?;
            Ok::<_, Rejection>(json(
                &events.iter().map(EventJson::from).collect::<Vec<_>>(),
            ))
        });
    let purge = admin
        .and(warp::path!("dead-letters" / u64))
        .and(warp::delete())
        .and(with())
        .and_then(|seq: u64, o: Outbox| async move {
            o.purge(seq).await.map_err(api_error)?;
            Ok::<_, Rejection>(
                reply::with_status(reply::reply(), StatusCode::NO_CONTENT).into_response(),
            )
        });
    stats
        .or(pending)
        .unify()
        .or(dead_list)
        .unify()
        .or(consumer_dead)
        .unify()
        .or(dead_one)
        .unify()
        .or(requeue_every)
        .unify()
        .or(requeue)
        .unify()
        .or(purge)
        .unify()
        .or(route_events)
        .unify()
}

fn api_error(e: queue::Error) -> Rejection {
    warp::reject::custom(ApiError::from(e))
}
