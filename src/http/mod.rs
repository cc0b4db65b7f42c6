//! The HTTP and WebSocket API (warp lives here and nowhere else).
//!
//! Routes are functions that return filters; handlers get their state through cheap clones of
//! the handles in [`Api`]. Every rejection ends in [`error::recover`], the one place where errors
//! become responses. [`serve`] runs the server on a listener the caller bound (port 0 in tests)
//! until the shutdown future resolves, then lets in-flight requests finish.

pub mod admin;
pub mod auth;
pub mod error;
pub mod health;
pub mod status;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpSocket};
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
        .or(admin::routes(
            api.outbox.clone(),
            api.delivery.clone(),
            api.tokens.clone(),
        ))
        .unify()
        .or(ws::route(api.ws.clone(), api.tokens.clone()))
        .unify()
        .recover(error::recover)
}

/// Bind the API's listener with `TCP_NODELAY`, which the connections it accepts inherit (Linux
/// copies it from the listening socket; warp has no option of its own). Without it, Nagle's
/// algorithm holds a small WebSocket frame back while the previous one is unacknowledged, which
/// with the client's delayed ACK adds up to 40 ms to a push.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pending connections the kernel queues for `accept` (what tokio's `TcpListener::bind` uses).
const LISTEN_BACKLOG: u32 = 1024;

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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_inherit_no_delay_from_the_listener() {
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
