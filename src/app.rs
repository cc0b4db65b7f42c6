//! The composition root: the one place that knows every module and wires them together.
//!
//! # Lifecycle
//!
//! [`App::build`] takes the data directory (refusing one another process owns), opens the outbox
//! and binds the HTTP listener, so that every startup error surfaces before anything runs and
//! tests can bind port 0 and read [`App::local_addr`]. Nothing connects to Kafka here: the
//! publisher connects lazily, so the gateway starts and serves without a broker.
//! [`App::run_until`] serves and drains until the shutdown future resolves, then shuts down in
//! order:
//!
//! 1. readiness turns false and the listener closes (no new requests);
//! 2. in-flight requests finish, up to `http.shutdown_grace_ms`;
//! 3. WebSocket clients get close code 1001 and their sessions end, up to the same grace period
//!    (they read the outbox, so they stop before it does);
//! 4. the publisher makes a last pass under a short deadline and stops;
//! 5. the outbox writer finishes queued writes, flushes and stops;
//! 6. the data directory is released.
//!
//! Whatever Kafka has not acknowledged stays on disk for the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{OptimizeConfig, Settings, TopicsConfig};
use crate::datadir::{DataDir, DataDirError};
use crate::delivery;
use crate::http::{self, Api, Lifecycle, Limits, RateLimiter, Tokens, auth::TokenFileError, ws};
use crate::metrics;
use crate::optimize;
use crate::publisher::{self, DrainConfig, Drainer, kafka::KafkaSink};
use crate::queue::{self, Outbox};
use crate::store::{self, Store};

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Storage(#[from] queue::Error),
    /// Storage failed while serving; the gateway stopped so that a restart (its service
    /// manager's) reopens the store.
    #[error("stopped because storage failed: {0}")]
    StorageFailed(String),
    #[error("kafka configuration: {0}")]
    Kafka(#[from] publisher::kafka::Error),
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    #[error(transparent)]
    Cors(#[from] http::CorsError),
    #[error(transparent)]
    Roads(#[from] crate::roads::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A built gateway, ready to run.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    data_dir: DataDir,
    listener: TcpListener,
    local_addr: SocketAddr,
    outbox: Outbox,
    sink: Arc<KafkaSink>,
    tokens: Tokens,
}

impl App {
    /// Take the data directory, open storage and bind the listener.
    pub async fn build(settings: Settings) -> Result<App, AppError> {
        let tokens = Tokens::load(&settings.http.api_tokens, &settings.http.api_tokens_file)?
            .with_origins(&settings.http.cors_origins);
        let data_dir = DataDir::acquire(&settings.storage.data_dir)?;
        let (db_path, storage) = (data_dir.db_path(), settings.storage.clone());
        let outbox =
            tokio::task::spawn_blocking(move || Outbox::open(&db_path, &storage, store::TREES))
                .await
                .expect("opening storage does not panic")?;
        let sink = Arc::new(KafkaSink::new(&settings.kafka)?.with_depot(&settings.depot.id));
        http::check_cors(&settings.http.cors_origins)?;
        crate::roads::check_extract(&settings.routing.osm_file)?;
        let bind_err = |source| AppError::Bind {
            addr: settings.http.bind.clone(),
            source,
        };
        let addr = settings
            .http
            .bind
            .parse()
            .map_err(|e| bind_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let listener = http::bind(addr).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(App {
            settings,
            data_dir,
            listener,
            local_addr,
            outbox,
            sink,
            tokens,
        })
    }

    /// The address the HTTP API listens on (the real port when `http.bind` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to the outbox (tests and embedding programs inspect it).
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Serve until `shutdown` resolves, then shut down in order (see the module docs).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            settings,
            data_dir,
            listener,
            local_addr,
            outbox,
            sink,
            tokens,
        } = self;
        let lifecycle = Arc::new(Lifecycle::default());
        let delivery = Arc::new(delivery::Status::default());
        let stop_drain = CancellationToken::new();
        let drain = {
            let (outbox, status, cfg) = (
                outbox.clone(),
                delivery.clone(),
                DrainConfig::from(&settings.kafka),
            );
            let make =
                move || Drainer::new(outbox.clone(), sink.clone(), cfg.clone(), status.clone());
            tokio::spawn(publisher::supervise(
                make,
                delivery.clone(),
                stop_drain.clone(),
            ))
        };
        let hub = ws::Hub::start(
            outbox.clone(),
            delivery.clone(),
            &settings.websocket,
            settings.http.max_string_length as usize,
            CancellationToken::new(),
        );

        let limits = Limits::from_config(&settings.http);
        let params = solver_params(&settings.optimize, limits.request_timeout);
        let roads = match settings.routing.osm_file.as_str() {
            "" => None,
            osm => Some(crate::roads::live::LiveRoads::start(
                osm.into(),
                data_dir.path().to_path_buf(),
                settings.routing.max_snap_meters,
            )?),
        };
        let mut store = Store::new(
            outbox.clone(),
            topics(&settings.kafka.topics),
            params,
            store::RecordLimit::from(&settings.kafka).with_depot(&settings.depot.id),
        )
        .with_solver_queue(settings.optimize.max_queued_solves as usize);
        if let Some(roads) = &roads {
            store = store.with_costs(roads.clone());
        }
        let stop_consumers = CancellationToken::new();
        let (consumers, consumer_tasks) = crate::consume::start(
            &settings.kafka.consume,
            &settings.kafka.event_source,
            &settings.depot.id,
            crate::consume::Discipline::from(&settings.kafka),
            Arc::new(publisher::fetch::KafkaSource::new(&settings.kafka)?),
            store.clone(),
            stop_consumers.clone(),
        );
        let api = Api {
            lifecycle: lifecycle.clone(),
            outbox: outbox.clone(),
            delivery,
            consumers,
            metrics: metrics::install(),
            store,
            tokens,
            ws: hub.clone(),
            rate: RateLimiter::new(
                settings.http.rate_limit_per_second,
                settings.http.rate_limit_burst,
            ),
            limits,
            admission: http::admission::Admission::new(settings.http.max_in_flight as usize),
            cors_origins: settings.http.cors_origins.clone(),
            roads,
        };
        if let Err(e) = data_dir.publish_address(local_addr) {
            tracing::warn!(cause = %e, "cannot record the gateway address for the operator CLI");
        }
        // A test holds the start here (`sleep(ms)`) to send SIGTERM right after the address is
        // known; the action is the fail crate's own, so the result is always Ok.
        let _ = crate::faults::check("gateway-after-publish-address", data_dir.path());
        metrics::started(api.delivery.snapshot().circuit);
        let queued = outbox.stats();
        let data_path = std::path::absolute(data_dir.path()).unwrap_or(data_dir.path().into());
        tracing::info!(
            addr = %local_addr,
            data_dir = %data_path.display(),
            pending_events = queued.pending_events,
            dead_letters = queued.dead_letters,
            durability = ?settings.storage.durability,
            brokers = %settings.kafka.brokers.join(","),
            "routegate listening"
        );

        let mut storage_failure = outbox.watch_failure();
        let failed = Arc::new(std::sync::Mutex::new(None::<String>));
        let shutdown = {
            let (lifecycle, failed) = (lifecycle.clone(), failed.clone());
            async move {
                tokio::select! {
                    () = shutdown => {
                        tracing::info!("shutdown requested: no new requests, finishing in-flight ones");
                    }
                    Ok(reason) = storage_failure.wait_for(Option::is_some) => {
                        let reason = reason.clone().unwrap_or_default();
                        tracing::error!(reason = %reason, "storage failed: stopping so that a restart reopens it");
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                    }
                }
                lifecycle.begin_shutdown();
            }
        };
        let grace = Duration::from_millis(settings.http.shutdown_grace_ms);
        let fd_limit = http::conn::raise_fd_limit();
        let limits = http::conn::ConnLimits::from_config(&settings.http, fd_limit);
        let ws_max = settings.websocket.max_connections as u64;
        if !limits.fits(ws_max, fd_limit) {
            tracing::warn!(
                http_max_connections = limits.max_connections,
                websocket_max_connections = ws_max,
                fd_limit,
                "http.max_connections plus websocket.max_connections exceed the open-file limit: \
                 at full load accepts will fail; lower them or raise the limit"
            );
        }
        tracing::info!(
            max_connections = limits.max_connections,
            fd_limit,
            "accepting API connections"
        );
        if !http::serve(listener, http::routes(api), limits, shutdown, grace).await {
            tracing::warn!(
                grace_ms = settings.http.shutdown_grace_ms,
                "in-flight requests outlived the grace period"
            );
        }
        if !hub.close(grace).await {
            tracing::warn!(
                grace_ms = settings.http.shutdown_grace_ms,
                "WebSocket sessions outlived the grace period"
            );
        }

        stop_consumers.cancel();
        consumer_tasks.wait().await;
        stop_drain.cancel();
        if let Err(e) = drain.await {
            tracing::error!(cause = %e, "publisher supervisor failed");
        }
        outbox.shutdown().await;
        let left = outbox.stats().pending_events;
        data_dir.retract_address();
        tracing::info!(queued = left, "routegate stopped");
        match failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(reason) => Err(AppError::StorageFailed(reason)),
            None => Ok(()),
        }
    }
}

/// Solver parameters from the configuration; a solve never outlives the request timeout.
fn solver_params(o: &OptimizeConfig, request_timeout: Duration) -> optimize::Params {
    let cap = u64::try_from(request_timeout.as_millis()).unwrap_or(u64::MAX);
    optimize::Params {
        max_stops: o.max_stops as usize,
        detour_factor: o.detour_factor,
        average_speed_kmh: o.average_speed_kmh,
        max_compute_ms: o.max_compute_ms.min(cap).max(1),
        ..optimize::Params::default()
    }
}

pub(crate) fn topics(t: &TopicsConfig) -> store::Topics {
    store::Topics {
        route_optimized: t.route_optimized.clone(),
        route_updated: t.route_updated.clone(),
        vehicle_position: t.vehicle_position.clone(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled: the
/// gateway publishes its address before `run_until` polls the shutdown future, and a SIGTERM
/// that came in between would otherwise kill the process with the default action instead of
/// shutting it down in order.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| {
        signal(kind)
            .inspect_err(|e| tracing::error!(cause = %e, "cannot listen for {name}"))
            .ok()
    };
    let mut int = listen(SignalKind::interrupt(), "SIGINT");
    let mut term = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = received(&mut int) => {},
            () = received(&mut term) => {},
        }
    }
}

/// The next delivery of `signal`; never, if it could not be listened for.
async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
