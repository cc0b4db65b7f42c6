//! The composition root: the one place that knows every module and wires them together.
//!
//! # Lifecycle
//!
//! [`App::build`] takes the data directory (refusing one another process owns), opens local
//! storage and binds the HTTP listener, so that every startup error surfaces before anything runs
//! and tests can bind port 0 and read [`App::local_addr`]. [`App::run_until`] serves until the
//! shutdown future resolves, then shuts down in order:
//!
//! 1. readiness turns false and the listener closes (no new requests);
//! 2. in-flight requests finish, up to `http.shutdown_grace_ms`;
//! 3. storage is flushed and closed; the data directory is released.
//!
//! Whatever is not yet acknowledged by Kafka stays on disk for the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::datadir::{DataDir, DataDirError};
use crate::http::{self, Api, Lifecycle};

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
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
    lifecycle: Arc<Lifecycle>,
}

impl App {
    /// Take the data directory, open storage and bind the listener.
    pub async fn build(settings: Settings) -> Result<App, AppError> {
        let data_dir = DataDir::acquire(&settings.storage.data_dir)?;
        let bind_err = |source| AppError::Bind {
            addr: settings.http.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.http.bind)
            .await
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(App {
            settings,
            data_dir,
            listener,
            local_addr,
            lifecycle: Arc::new(Lifecycle::default()),
        })
    }

    /// The address the HTTP API listens on (the real port when `http.bind` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
            lifecycle,
        } = self;
        let api = Api {
            lifecycle: lifecycle.clone(),
            storage_check: Arc::new(|| Ok(())),
        };
        if let Err(e) = data_dir.publish_address(local_addr) {
            tracing::warn!(cause = %e, "cannot record the gateway address for the operator CLI");
        }
        tracing::info!(addr = %local_addr, data_dir = %data_dir.path().display(), "routegate listening");

        let shutdown = {
            let lifecycle = lifecycle.clone();
            async move {
                shutdown.await;
                tracing::info!("shutdown requested: no new requests, finishing in-flight ones");
                lifecycle.begin_shutdown();
            }
        };
        let grace = Duration::from_millis(settings.http.shutdown_grace_ms);
        if !http::serve(listener, http::routes(api), shutdown, grace).await {
            tracing::warn!(
                grace_ms = settings.http.shutdown_grace_ms,
                "in-flight requests outlived the grace period"
            );
        }

        data_dir.retract_address();
        tracing::info!("routegate stopped");
        Ok(())
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
