//! Wiring: the only file that knows every stage.
//!
//! Builds each stage from `Config`, joins them with channels, spawns them as
//! named tasks, and owns the shutdown order:
//! 1. stop intake (webhooks answer 503) and stop serving;
//! 2. let running jobs finish, within the grace period;
//! 3. flush notifications; exit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::deploy::container::UpdateSettings;
use crate::deploy::engine::{Engine, EngineError};
use crate::deploy::service::ServiceSettings;
use crate::history::History;
use crate::job::{Runner, RunnerSettings};
use crate::source::webhook::{self, IntakeState};
use crate::swarm::{adopt, forward};
use crate::target::{watch as target_watch, IndexSnapshot, TargetIndex};
use crate::telemetry;

/// Why hoist could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot reach the docker engine: {0}")]
    Engine(#[from] EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the client that forwards updates to peers: {0}")]
    Forwarder(#[from] reqwest::Error),
}

/// A started hoist: its address, and the handle to stop it.
pub struct RunningApp {
    /// The address the HTTP server listens on (useful with port 0).
    pub local_addr: SocketAddr,
    /// Cancelled to begin shutdown.
    stop: CancellationToken,
    /// The task that serves and then drains; ends when shutdown is complete.
    done: JoinHandle<()>,
}

impl RunningApp {
    /// Begins shutdown and waits until it is complete.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.done.await {
            warn!(error = %e, "The shutdown task failed.");
        }
    }
}

/// Runs hoist until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = &'static str>) -> Result<(), StartError> {
    let app = start(config).await?;
    let signal = shutdown.await;
    info!(signal, "Shutting down.");
    app.shutdown().await;
    Ok(())
}

/// Starts every stage and returns once the server listens and the target
/// index has had its first sync.
pub async fn start(config: Config) -> Result<RunningApp, StartError> {
    let engine = Engine::connect(config.docker_host.as_deref()).await?;
    engine.ping().await?;
    info!(api_version = %engine.api_version(), "Connected to the docker engine.");
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let metrics = telemetry::metrics_handle();

    // The index: owned by the watch task, read through snapshots.
    let (snapshot_tx, mut snapshot_rx) = watch::channel(Arc::new(IndexSnapshot::default()));
    let stop = CancellationToken::new();
    let watch_task = tokio::spawn(target_watch::run(
        engine.clone(),
        TargetIndex::new(config.registry_aliases.clone()),
        snapshot_tx,
        stop.child_token(),
    ));
    // Ready means the targets are known: wait for the first sync (bounded, so
    // a slow engine delays readiness, not start-up forever).
    if tokio::time::timeout(std::time::Duration::from_secs(30), snapshot_rx.changed())
        .await
        .is_err()
    {
        warn!("The target index is not synced yet; serving anyway.");
    }

    let history = History::default();
    // Webhook → tee (which also forwards to peers) → runner; forwarded events
    // from peers go to the runner directly, so they are never forwarded again.
    let (events_tx, intake_rx) = mpsc::channel(config.queue_capacity);
    let (runner_tx, events_rx) = mpsc::channel(config.queue_capacity);
    let token = config.webhook_token.clone().map(Arc::new);
    let forwarder = forward::Forwarder::new(
        forward::new_instance_id(),
        config.swarm.peers.clone(),
        token.clone(),
        config.swarm.forward_attempts,
    )?;
    if !config.swarm.peers.is_empty() {
        info!(peers = %config.swarm.peers, "Updates are forwarded to peer hoists.");
    }
    let runner = Runner::new(
        engine.clone(),
        config.registry_aliases.clone(),
        RunnerSettings {
            update: UpdateSettings {
                health: config.health.clone(),
                stop_timeout: config.stop_timeout,
            },
            max_parallel: config.max_parallel,
            service: ServiceSettings {
                deadline: config.swarm.service_deadline,
                docker_config: config.swarm.docker_config.clone(),
                ..ServiceSettings::default()
            },
            services: config.swarm.services,
        },
        snapshot_rx.clone(),
        history.clone(),
        Arc::new(|_| {}),
    );
    let jobs = TaskTracker::new();
    let adopt_task = tokio::spawn(adopt::run(
        engine.clone(),
        runner.clone(),
        config.swarm.services,
        stop.child_token(),
    ));
    let runner_task = tokio::spawn(runner.run(events_rx, jobs.clone(), CancellationToken::new()));
    let peers = (!config.swarm.peers.is_empty()).then(|| forwarder.clone());
    tokio::spawn(forward::run(intake_rx, runner_tx.clone(), peers, jobs.clone()));

    let intake_stopping = CancellationToken::new();
    let app = webhook::router(IntakeState {
        token: token.clone(),
        events: events_tx,
        stopping: intake_stopping.clone(),
        max_body_bytes: config.max_body_bytes,
    })
    .merge(forward::router(forward::ForwardState {
        token,
        events: runner_tx,
        stopping: intake_stopping.clone(),
        max_body_bytes: config.max_body_bytes,
        forwarder,
    }))
    .merge(api::router(ApiState {
        engine: engine.clone(),
        snapshot: snapshot_rx,
        history,
        metrics,
        notifiers: Arc::new(|| json!([])),
    }));

    let server_stop = stop.clone();
    let grace = config.shutdown_grace;
    let done = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            server_stop.cancelled().await;
            // 1. intake answers 503 for requests still arriving.
            intake_stopping.cancel();
        });
        if let Err(e) = serve.await {
            warn!(error = %e, "HTTP server failed.");
        }
        // The router (and its sender) is gone: the runner drains the queue and ends.
        if let Err(e) = runner_task.await {
            warn!(error = %e, "The runner task failed.");
        }
        // 2. running jobs reach a safe state, within the grace period.
        jobs.close();
        if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
            warn!(running = jobs.len(), grace = ?grace, "Jobs still running after the shutdown grace period.");
        }
        watch_task.abort();
        adopt_task.abort();
        info!("Stopped.");
    });
    info!(listen = %local_addr, "hoist is ready.");
    Ok(RunningApp {
        local_addr,
        stop,
        done,
    })
}
