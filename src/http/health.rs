//! `GET /health/live` and `GET /health/ready`: process health, never Kafka's.
//!
//! Liveness says the process answers. Readiness says it can accept work: local storage is open
//! and the gateway is not shutting down. Neither looks at Kafka, on purpose: the gateway keeps
//! accepting while Kafka is away (that is what the outbox is for), so a load balancer must not
//! pull it out of rotation because of Kafka. Kafka's state has its own endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::{self, Response};
use warp::{Filter, Rejection, Reply};

/// Shared flags the readiness probe reads.
#[derive(Debug, Default)]
pub struct Lifecycle {
    shutting_down: AtomicBool,
}

impl Lifecycle {
    /// Readiness turns false from here on, so balancers stop sending new work.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// A readiness check: `Ok` or the reason the gateway is not ready.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /health/live` and `GET /health/ready`.
pub fn routes(
    lifecycle: Arc<Lifecycle>,
    storage: Check,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let live = warp::path!("health" / "live")
        .and(crate::http::openapi::read())
        .map(|| {
            reply::json(&Status {
                status: "ok",
                reason: None,
            })
            .into_response()
        });
    let ready = warp::path!("health" / "ready")
        .and(crate::http::openapi::read())
        .map(move || readiness(&lifecycle, &storage));
    live.or(ready).unify()
}

fn readiness(lifecycle: &Lifecycle, storage: &Check) -> Response {
    let reason = if lifecycle.is_shutting_down() {
        Some("shutting down".to_string())
    } else {
        storage().err()
    };
    let status = if reason.is_some() {
        "unavailable"
    } else {
        "ready"
    };
    let code = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    reply::with_status(reply::json(&Status { status, reason }), code).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Check {
        Arc::new(|| Ok(()))
    }

    #[tokio::test]
    async fn live_is_ok_and_ready_follows_storage_and_shutdown() {
        let lifecycle = Arc::new(Lifecycle::default());
        let api = routes(lifecycle.clone(), ok());
        let res = warp::test::request().path("/health/live").reply(&api).await;
        assert_eq!(res.status(), 200);
        let res = warp::test::request()
            .path("/health/ready")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 200);
        lifecycle.begin_shutdown();
        let res = warp::test::request()
            .path("/health/ready")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 503);
        assert!(String::from_utf8_lossy(res.body()).contains("shutting down"));
    }

    #[tokio::test]
    async fn ready_reports_a_storage_failure() {
        let broken: Check = Arc::new(|| Err("storage writer stopped".into()));
        let api = routes(Arc::new(Lifecycle::default()), broken);
        let res = warp::test::request()
            .path("/health/ready")
            .reply(&api)
            .await;
        assert_eq!(res.status(), 503);
        assert!(String::from_utf8_lossy(res.body()).contains("storage writer stopped"));
    }
}
