//! The HTTP and WebSocket API (warp lives here and nowhere else).
//!
//! Routes are functions that return filters; handlers get their state through cheap clones of
//! the handles in [`Api`]. Every rejection ends in [`error::recover`], the one place where errors
//! become responses. [`serve`] runs the server on a listener the caller bound (port 0 in tests)
//! until the shutdown future resolves, then lets in-flight requests finish.

pub mod auth;
pub mod error;
pub mod health;
pub mod status;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use warp::Filter;

use crate::delivery;
use crate::queue::Outbox;

pub use health::{Check, Lifecycle};

/// Everything the handlers need, as cheap clones.
#[derive(Clone)]
pub struct Api {
    pub lifecycle: Arc<Lifecycle>,
    pub outbox: Outbox,
    pub delivery: Arc<delivery::Status>,
    pub metrics: PrometheusHandle,
    /// Bearer tokens; empty means authentication is off.
    pub tokens: auth::Tokens,
    /// The WebSocket hub (live events).
    pub ws: ws::Hub,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// All routes, with errors recovered into JSON.
pub fn routes(
    api: Api,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let outbox = api.outbox.clone();
    let storage: Check = Arc::new(move || {
        if outbox.is_healthy() {
            Ok(())
        } else {
            Err("the outbox writer stopped".into())
        }
    });
    health::routes(api.lifecycle.clone(), storage)
        .or(status::kafka_health(
            api.outbox.clone(),
            api.delivery.clone(),
        ))
        .unify()
        .or(status::metrics(api.outbox.clone(), api.metrics.clone()))
        .unify()
        .or(ws::route(api.ws.clone(), api.tokens.clone()))
        .unify()
        .recover(error::recover)
}

/// Serve `routes` on `listener` until `shutdown` resolves; then stop accepting and wait up to
/// `grace` for in-flight requests. Returns `false` if the grace period ran out.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> bool
where
    F: Filter<Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopped_tx.send(());
    };
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run();
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return true,
        _ = stopped_rx => {}
    }
    tokio::time::timeout(grace, server).await.is_ok()
}
