//! The HTTP and WebSocket API (warp lives here and nowhere else).
//!
//! Routes are functions that return filters, one file per endpoint group ([`routes`](mod@routes),
//! [`optimize`], [`positions`], [`status`], [`health`], [`openapi`], [`dashboard`]); handlers
//! are plain async functions that get their state through cheap clones of the handles in
//! [`Api`]. Every rejection ends in [`error::recover`], the one place where errors become
//! responses. [`serve`] runs the server on a listener the caller bound (port 0 in tests) until
//! the shutdown future resolves, then lets in-flight requests finish; [`conn`] owns the
//! connections and bounds each one (cap, header/idle and body timeouts, unroutable targets).
//!
//! # A request's way through
//!
//! ```text
//! observe (request id, span, metrics by template)
//!  └─ CORS (when http.cors_origins is set; a same-origin request skips it)
//!      └─ endpoint: path + method match ─▶ guard (rate limit 429, then token 401)
//!                   ─▶ body (413, JSON 400 with field) ─▶ handler ─▶ store ─▶ outbox
//!      └─ recover: every rejection ─▶ {error, message, field?}
//! ```
//!
//! The guard runs only after a `/traffic` path matched, so an unknown path is a 404 and probes
//! and metrics are never rate limited or authenticated. Reads are bounded by
//! `http.request_timeout_ms` (503); writes are bounded until they are handed to the outbox and
//! then wait for the commit, so a timeout never reports a failure for a write that happened.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod body;
pub mod conn;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod limits;
pub mod observe;
pub mod openapi;
pub mod optimize;
pub mod positions;
pub mod roads;
pub mod routes;
pub mod status;
pub mod ws;

#[cfg(test)]
mod tests;

/// A log directive that silences warp's own request tracing: it logs every 5xx as ERROR "unable
/// to process request" and every 4xx as WARN, without the reason; `observe` logs each outcome
/// at the level its meaning deserves.
pub const QUIET_LOG_TARGET: &str = "warp::filters::trace=off";

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpSocket};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::HttpConfig;
use crate::delivery;
use crate::queue::Outbox;
use crate::store::{self, Store};

pub use auth::Tokens;
pub use body::BodyLimits;
pub use health::{Check, Lifecycle};
pub use limits::RateLimiter;

/// Everything the handlers need, as cheap clones.
#[derive(Clone)]
pub struct Api {
    pub lifecycle: Arc<Lifecycle>,
    pub outbox: Outbox,
    pub delivery: Arc<delivery::Status>,
    /// What the Kafka consumers do (empty without `[[kafka.consume]]`).
    pub consumers: Arc<crate::consume::Status>,
    pub metrics: PrometheusHandle,
    /// Routes and vehicles.
    pub store: Store,
    /// Bearer tokens for `/traffic/*`, `/admin/*` and the WebSocket; empty: no authentication.
    pub tokens: Tokens,
    /// The WebSocket hub (live events).
    pub ws: ws::Hub,
    /// Per-client rate limit on `/traffic/*` (probes and metrics are never limited).
    pub rate: RateLimiter,
    pub limits: Limits,
    /// The cap on requests handled at once.
    pub admission: admission::Admission,
    /// CORS origins (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The road network, when `routing.osm_file` is set: not ready until it is loaded.
    pub roads: Option<Arc<crate::roads::live::LiveRoads>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// Request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub body: BodyLimits,
    /// Time until a request must have submitted its write (or answered a read); then 503.
    pub request_timeout: Duration,
    /// The times a client may stamp a fix or a stop status with.
    pub timestamps: TimeWindow,
}

/// How far a client's timestamp may be from the gateway's clock: outside it a request is 422.
/// Bounding it keeps every time the API and Kafka emit a four-digit-year RFC 3339 time, and a
/// clock far ahead from making later real fixes look old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub max_age: Duration,
    pub max_lead: Duration,
}

impl TimeWindow {
    /// `Err` with the reason when `t` is outside the window around `now`.
    pub fn check(
        &self,
        t: chrono::DateTime<chrono::FixedOffset>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), String> {
        let ahead = t.signed_duration_since(now);
        let limit = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        if ahead > limit(self.max_lead) {
            return Err(format!(
                "{t} is more than {} s ahead of the gateway's clock ({now}); check the device's clock",
                self.max_lead.as_secs()
            ));
        }
        if -ahead > limit(self.max_age) {
            return Err(format!(
                "{t} is more than {} s older than the gateway's clock ({now})",
                self.max_age.as_secs()
            ));
        }
        Ok(())
    }
}

impl Limits {
    pub fn from_config(http: &HttpConfig) -> Limits {
        Limits {
            body: BodyLimits {
                max_body_bytes: http.max_body_bytes,
                max_string_length: http.max_string_length as usize,
            },
            request_timeout: Duration::from_millis(http.request_timeout_ms),
            timestamps: TimeWindow {
                max_age: Duration::from_millis(http.max_timestamp_age_ms),
                max_lead: Duration::from_millis(http.max_timestamp_lead_ms),
            },
        }
    }
}

impl Api {
    /// When the current request's time is up.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.limits.request_timeout
    }

    /// Run a read within the request timeout.
    pub async fn within<T>(
        &self,
        read: impl Future<Output = store::Result<T>>,
    ) -> Result<T, error::ApiError> {
        match tokio::time::timeout_at(self.deadline(), read).await {
            Ok(r) => r.map_err(error::ApiError::from),
            Err(_) => Err(store::Error::TimedOut.into()),
        }
    }
}

/// Rate limit, then authentication: what every `/traffic` endpoint checks after its path matched.
pub fn guard(api: &Api) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
    limits::rate_limited(api.rate.clone()).and(auth::required(api.tokens.clone()))
}

/// Hand a clone of the state to a handler.
pub fn with(api: Api) -> impl Filter<Extract = (Api,), Error = Infallible> + Clone {
    warp::any().map(move || api.clone())
}

/// Why the CORS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("http.cors_origins: {0:?} is not an origin (expected * or scheme://host[:port])")]
pub struct CorsError(String);

/// Check `http.cors_origins` (warp panics on a malformed origin, so it is checked first).
pub fn check_cors(origins: &[String]) -> Result<(), CorsError> {
    let ok = |o: &str| {
        let Some((scheme, rest)) = o.split_once("://") else {
            return o == "*";
        };
        let (host, port) = rest.split_once(':').unwrap_or((rest, "1"));
        matches!(scheme, "http" | "https")
            && !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && port.parse::<u16>().is_ok()
    };
    match origins.iter().find(|o| !ok(o)) {
        Some(bad) => Err(CorsError(bad.clone())),
        None => Ok(()),
    }
}

fn endpoints(api: &Api) -> BoxedFilter<(Response,)> {
    let outbox = api.outbox.clone();
    let roads = api.roads.clone();
    let storage: Check = Arc::new(move || {
        if let Some(reason) = outbox.failure() {
            return Err(reason);
        }
        roads.as_ref().map_or(Ok(()), |r| r.ready())
    });
    let admitted = api
        .admission
        .filter()
        .and(admitted_endpoints(api))
        .map(|_permit, response: Response| response);
    health::routes(api.lifecycle.clone(), storage)
        .or(admitted)
        .unify()
        .boxed()
}

/// Everything but the health probes: counted against `http.max_in_flight`. GPS fixes come first:
/// they are most of the traffic, and every route tried before the matching one costs a rejection.
fn admitted_endpoints(api: &Api) -> BoxedFilter<(Response,)> {
    positions::positions(api.clone())
        .boxed()
        .or(status::kafka_health(
            api.outbox.clone(),
            api.delivery.clone(),
            api.consumers.clone(),
            guard(api),
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
        .or(openapi::document())
        .unify()
        .or(dashboard::routes())
        .unify()
        .boxed()
        .or(optimize::optimize(api.clone()).boxed())
        .unify()
        .or(routes::list(api.clone()).boxed())
        .unify()
        .or(roads::basemap(api.clone()).boxed())
        .unify()
        .or(routes::get(api.clone()).boxed())
        .unify()
        .or(routes::update_stop(api.clone()).boxed())
        .unify()
        .or(routes::events(api.clone()).boxed())
        .unify()
        .or(optimize::reoptimize(api.clone()).boxed())
        .unify()
        .boxed()
}

/// All routes: CORS, errors recovered into JSON, request ids, spans and metrics.
pub fn routes(
    api: Api,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let all = endpoints(&api);
    let with_cors: BoxedFilter<(Response,)> = if api.cors_origins.is_empty() {
        all
    } else {
        let mut cors = warp::cors()
            .allow_methods(["GET", "POST", "PATCH", "OPTIONS"])
            .allow_headers(["authorization", "content-type", observe::REQUEST_ID])
            .expose_headers([observe::REQUEST_ID, "retry-after", "location"])
            .max_age(600);
        if api.cors_origins.iter().any(|o| o == "*") {
            cors = cors.allow_any_origin();
        } else {
            cors = cors.allow_origins(api.cors_origins.iter().map(String::as_str));
        }
        // warp's CORS filter refuses every `Origin` it was not given, the gateway's own pages
        // included; a same-origin request needs no CORS, so it skips the filter. Its
        // rejections are recovered in its own branch so that they never fall through to
        // the CORS branch (which would run the endpoints a second time).
        let own_pages = same_origin()
            .and(all.clone().recover(error::recover).unify())
            .boxed();
        own_pages
            .or(all.with(cors).map(Reply::into_response))
            .unify()
            .boxed()
    };
    observe::observed(with_cors.recover(error::recover).unify())
}

/// Passes a request whose `Origin` is the gateway's own (scheme + `Host`); anything else is
/// rejected as not found (an unreadable header too), which `or` drops in favour of the other
/// branch's outcome.
fn same_origin() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::header::optional::<String>("host"))
        .and_then(|origin: Option<String>, host: Option<String>| async move {
            match (origin, host) {
                (Some(o), Some(h)) if auth::origin::is_same_origin(&o, &h) => Ok(()),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .or_else(|_| async { Err(warp::reject::not_found()) })
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

/// Serve `routes` on `listener` within `limits` until `shutdown` resolves; then stop accepting
/// and wait up to `grace` for in-flight requests. Returns `false` if the grace period ran out.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: conn::ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> bool
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    conn::serve(listener, routes, limits, shutdown, grace).await
}
