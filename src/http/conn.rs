//! The connection loop: warp's routes served on hyper connections this module owns.
//!
//! warp's own server accepts every connection, never times one out and hands every request
//! target to the routes, where an authority-form target (`GET 127.0.0.1:80 HTTP/1.1`,
//! `CONNECT host:port`) panics inside warp's path filters. So routegate accepts and serves
//! connections itself, with these bounds:
//!
//! * **A cap on open connections** (`http.max_connections`, by default derived from the
//!   file-descriptor limit, which [`raise_fd_limit`] first raises to its hard maximum). A
//!   connection beyond the cap gets one of [`PROBE_CONNECTIONS`] spare slots in which only
//!   `/health/*` is served and every other request gets 503 + `Retry-After` and `Connection:
//!   close`; beyond those it is closed at once. The store, the Kafka connections and the log keep
//!   [`FD_RESERVE`] descriptors.
//! * **Header timeout** (`http.header_timeout_ms`): a request's head must arrive within it, and
//!   the same clock closes a keep-alive connection that sits idle between requests (hyper starts
//!   it whenever the connection waits for a request head).
//! * **Body timeout** (`http.body_timeout_ms`): a body must arrive within it of its head; a body
//!   that stops midway ends in a 408 and the connection is closed.
//! * **Request targets the routes can serve**: a target that is not a path (authority-form,
//!   `OPTIONS *`) is a 400 and `CONNECT` a 405, both JSON with a request id, before any route runs.
//! * **Request heads hyper can parse**: a request line and headers of at most
//!   [`MAX_HEAD_BYTES`] (128 KiB) with at most [`MAX_HEADERS`] (100) fields, a target of at
//!   most [`MAX_URI_BYTES`] (65,534 bytes, hyper's own limit), and a well-formed request line,
//!   headers and `Content-Length`. hyper answers any other head itself, before a route runs;
//!   [`parse_errors`] puts the API's JSON error in place of its empty answer (431
//!   `headers_too_large`, 414 `uri_too_long`, 400 `bad_request`, each with an `x-request-id`),
//!   then the connection is closed.
//!
//! Every request carries the peer's address as a [`PeerAddr`] extension (warp's own is private
//! to warp), which the rate limiter reads.
//!
//! # Lifecycle
//!
//! [`serve`] accepts until the shutdown future resolves, then closes the listener, asks every
//! connection to finish its in-flight request and close, and waits up to the grace period.
//! Upgraded connections (WebSocket) leave this loop when they upgrade; the hub owns them.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use warp::Filter;
use warp::http::{HeaderValue, Method, Request, header};
use warp::reply::Response;

pub mod parse_errors;

use super::error::ApiError;
use super::observe;
use crate::config::HttpConfig;
use crate::metrics;

/// Connections past the cap that may still ask for `/health/*`.
pub const PROBE_CONNECTIONS: usize = 16;
/// File descriptors kept for everything but API connections: the store's files, the Kafka
/// connections, the log, the WebSocket hub's own margin.
pub const FD_RESERVE: u64 = 256;
/// The largest request head (request line and headers) hyper reads: 431 past it. Large enough
/// that a target past [`MAX_URI_BYTES`] gets its own 414.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;
/// The most header fields a request may have: 431 past it. hyper's default, left unset: setting
/// it, even to 100, makes hyper initialise its header array on every request.
pub const MAX_HEADERS: usize = 100;
/// The longest request target: 414 past it. hyper's own limit (`MAX_URI_LEN`), not configurable.
pub const MAX_URI_BYTES: usize = u16::MAX as usize - 1;
/// The derived cap never exceeds this many connections.
const MAX_DERIVED: u64 = 16_384;

/// The peer's address, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// What bounds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl ConnLimits {
    /// The configured bounds; a `max_connections` of 0 is derived from `fd_limit`: half of what
    /// is left after [`FD_RESERVE`] (the other half is the WebSocket sessions'), at least 64 and
    /// at most 16,384.
    pub fn from_config(http: &HttpConfig, fd_limit: u64) -> ConnLimits {
        let derived = (fd_limit.saturating_sub(FD_RESERVE) / 2).clamp(64, MAX_DERIVED);
        ConnLimits {
            max_connections: match http.max_connections {
                0 => derived as usize,
                n => n as usize,
            },
            header_timeout: Duration::from_millis(http.header_timeout_ms),
            body_timeout: Duration::from_millis(http.body_timeout_ms),
        }
    }

    /// Whether these connections, `ws_max` WebSocket sessions and the reserve fit `fd_limit`.
    pub fn fits(&self, ws_max: u64, fd_limit: u64) -> bool {
        let wanted = self.max_connections as u64 + PROBE_CONNECTIONS as u64 + ws_max + FD_RESERVE;
        wanted <= fd_limit
    }
}

/// Raise the soft limit on open files to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let current = lim.current.unwrap_or(u64::MAX);
    if lim.current.is_some() && lim.current < lim.maximum.or(Some(u64::MAX)) {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return lim.maximum.unwrap_or(u64::MAX);
        }
    }
    current
}

/// Serve `routes` on `listener` until `shutdown` resolves; then stop accepting and wait up to
/// `grace` for in-flight requests. Returns `false` if the grace period ran out.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> bool
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(PROBE_CONNECTIONS));
    let stopping = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let (slot, probes_only) = match slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, false),
            Err(_) => match spare.clone().try_acquire_owned() {
                Ok(slot) => (slot, true),
                Err(_) => {
                    metrics::http_connection_refused("closed");
                    drop(stream);
                    continue;
                }
            },
        };
        if probes_only {
            metrics::http_connection_refused("probes_only");
        }
        let svc = Conn {
            routes: warp::service(routes.clone()),
            peer: PeerAddr(peer),
            probes_only,
            body_timeout: limits.body_timeout,
        };
        let served = serve_one(http.clone(), stream, svc, slot, stopping.clone());
        metrics::http_connection_opened();
        tracker.spawn(served);
    }
    drop(listener);
    stopping.cancel();
    tracker.close();
    tokio::time::timeout(grace, tracker.wait()).await.is_ok()
}

async fn serve_one<S>(
    http: http1::Builder,
    stream: TcpStream,
    svc: Conn<S>,
    slot: OwnedSemaphorePermit,
    stopping: CancellationToken,
) where
    S: Routes,
    S::Future: Send + 'static,
{
    let conn = http
        .serve_connection(TokioIo::new(parse_errors::Socket::new(stream)), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let outcome = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = outcome {
        tracing::debug!(cause = %e, "connection ended with an error");
    }
    drop(slot);
    metrics::http_connection_closed();
}

/// Out of file descriptors (or another resource): back off a moment instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(cause = %e, "accepting a connection failed; pausing accepts for 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One connection's service: checks what the routes cannot handle, then runs them.
struct Conn<S> {
    /// warp's service over the routes (its type cannot be named).
    routes: S,
    peer: PeerAddr,
    probes_only: bool,
    body_timeout: Duration,
}

/// What warp's service over the routes is.
trait Routes:
    Service<Request<TimedBody>, Response = Response, Error = Infallible> + Clone + Send + 'static
{
}

impl<S> Routes for S where
    S: Service<Request<TimedBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static
{
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Conn<S>
where
    S: Routes,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut req: Request<Incoming>) -> Answer {
        if let Some(refusal) = self.refusal(&req) {
            let resp = refuse(&req, refusal);
            return Box::pin(std::future::ready(Ok(resp)));
        }
        req.extensions_mut().insert(self.peer);
        let req = req.map(|body| TimedBody::new(body, self.body_timeout));
        let mut routes = self.routes.clone();
        Box::pin(routes.call(req))
    }
}

impl<S> Conn<S> {
    /// Why this request is answered here instead of by the routes.
    fn refusal(&self, req: &Request<Incoming>) -> Option<ApiError> {
        if req.method() == Method::CONNECT {
            return Some(ApiError::MethodNotAllowed);
        }
        let path = req.uri().path_and_query().map(|pq| pq.path());
        if !path.is_some_and(|p| p.starts_with('/')) {
            return Some(ApiError::bad_request(
                "the request target must be a path such as /traffic/routes (origin-form)",
                None,
            ));
        }
        if self.probes_only && !path.is_some_and(|p| p.starts_with("/health/")) {
            return Some(ApiError::Unavailable {
                message: "too many open connections (http.max_connections); retry shortly".into(),
                retry_after_secs: 1,
            });
        }
        None
    }
}

/// The JSON answer for a refused request, with a request id and `Connection: close`.
fn refuse(req: &Request<Incoming>, error: ApiError) -> Response {
    let started = Instant::now();
    let mut resp = error.into_response();
    let id = observe::request_id(req.headers());
    resp.headers_mut().insert(observe::REQUEST_ID, id);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    metrics::http_request("unmatched", resp.status().as_u16(), started.elapsed());
    resp
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body did not arrive within http.body_timeout_ms")]
    TimedOut,
    #[error("reading the request body failed: {0}")]
    Read(#[from] hyper::Error),
}

/// Whether `e` (or what caused it) is a body that ran out of time.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if matches!(e.downcast_ref::<BodyError>(), Some(BodyError::TimedOut)) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A request body that fails once its deadline passes.
#[derive(Debug)]
pub struct TimedBody {
    inner: Incoming,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, within: Duration) -> TimedBody {
        // A request without a body needs no timer.
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(within)));
        TimedBody { inner, deadline }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BodyError::Read))),
            Poll::Pending => {
                let expired = match self.deadline.as_mut() {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Some(Err(BodyError::TimedOut)))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_leaves_the_reserve_and_half_for_websockets() {
        let http = crate::config::Settings::default().http;
        let limits = ConnLimits::from_config(&http, 20_000);
        assert_eq!(limits.max_connections, (20_000 - 256) / 2);
        assert_eq!(ConnLimits::from_config(&http, 300).max_connections, 64);
        assert_eq!(
            ConnLimits::from_config(&http, 1 << 20).max_connections,
            16_384
        );
        assert!(limits.fits(5_000, 20_000));
        assert!(!limits.fits(20_000, 20_000));
        let set = HttpConfig {
            max_connections: 100,
            ..http
        };
        assert_eq!(ConnLimits::from_config(&set, 20_000).max_connections, 100);
    }
}
