//! Wiring: the only file that knows every stage.
//!
//! Builds each stage from `Config`, joins them with channels, spawns them as
//! named tasks, and owns the shutdown order:
//! 1. stop intake (webhooks answer 503) and stop serving;
//! 2. let running jobs finish, within the grace period;
//! 3. flush notifications; exit.
//!
//! Notifiers run beside the runner, fed by its `on_finished` callback, so a
//! slow channel never holds up a deploy.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::deploy::container::UpdateSettings;
use crate::deploy::service::ServiceSettings;
use crate::deploy::FaultPause;
use crate::engine::{Engine, EngineError};
use crate::intake::Intake;
use crate::inventory::{watch as target_watch, IndexSnapshot, TargetIndex};
use crate::job::{Job, Journal, Runner, RunnerSettings};
use crate::journal::JournalError;
use crate::notify::{Notifier, NotifyError};
use crate::registry::{self, Credentials, Insecure};
use crate::source::poll::Poller;
use crate::source::webhook::{self, WebhookState};
use crate::swarm::{adopt, forward};
use crate::telemetry;

/// The longest any HTTP request may take, from its first byte to its answer.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    #[error("cannot set up notifications: {0}")]
    Notify(#[from] NotifyError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("cannot build the client that forwards updates to peers: {0}")]
    Forwarder(#[from] reqwest::Error),
    #[error("{0}")]
    Registry(#[from] registry::BuildError),
    #[error("cannot build the client that calls the rebuild hook: {0}")]
    Base(String),
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
    let engine = Engine::connect(config.docker_host.as_deref(), config.engine_timeout)
        .await?
        .with_pull_timeout(config.pull_timeout);
    // An engine that is down (restarting, upgrading) does not stop hoist:
    // accepted pushes are kept, and jobs wait for it.
    let engine_answers = match engine.ping().await {
        Ok(()) => {
            info!(api_version = %engine.api_version(), "Connected to the docker engine.");
            true
        }
        Err(e) => {
            warn!(error = %e, "The docker engine does not answer; starting anyway. Updates wait for it.");
            false
        }
    };
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
    let journal = Journal::open(&config.state_dir)?;
    // The history is pruned now and then daily (HOIST_HISTORY_RETENTION).
    let prune_task = tokio::spawn(prune_history(journal.clone(), config.history_retention));
    #[cfg(feature = "fault-injection")]
    let pause = config.fault_pause_after.clone().map(|step| {
        warn!(step = %step, "HOIST_FAULT_PAUSE_AFTER is set: updates will stop still after this step (fault tests only).");
        Arc::new(FaultPause::new(step, config.fault_pause_file.clone()))
    });
    #[cfg(not(feature = "fault-injection"))]
    let pause: Option<Arc<FaultPause>> = None;
    // Jobs accepted and not finished run again below; the runner first
    // brings whatever a crash left half done to a safe state, once the engine answers.
    let unfinished = unfinished_jobs(&journal).await?;

    // The index: owned by the watch task, read through snapshots.
    let (snapshot_tx, mut snapshot_rx) = watch::channel(Arc::new(IndexSnapshot::default()));
    let stop = CancellationToken::new();
    let watch_task = tokio::spawn(target_watch::run(
        engine.clone(),
        TargetIndex::new(config.registry_aliases.clone()),
        snapshot_tx,
        stop.child_token(),
    ));
    // Notifiers are checked at start-up, so a bad webhook URL or an
    // unreachable SMTP server shows in the log and /healthz before the first
    // deploy; in the background, since a receiver that hangs must not hold
    // readiness for its whole timeout.
    let notifier = Notifier::start(&config.notify)?;
    tokio::spawn({
        let notifier = notifier.clone();
        async move {
            for status in notifier.check().await {
                if status.ok {
                    info!(channel = status.channel, detail = %status.detail, "Notification channel ready.");
                } else {
                    warn!(channel = status.channel, detail = %status.detail, "Notification channel check failed; will keep trying at each message.");
                }
            }
        }
    });

    // Ready means the targets are known: wait for the first sync (bounded, so
    // a slow engine delays readiness, not start-up forever). Until then every
    // update pushed is journaled, whether or not a target runs it. The
    // engine's registry settings are read meanwhile (with a thousand
    // containers every engine call counts towards start-up).
    let first_sync = async {
        if engine_answers
            && tokio::time::timeout(std::time::Duration::from_secs(30), snapshot_rx.changed())
                .await
                .is_err()
        {
            warn!("The target index is not synced yet; serving anyway.");
        }
    };
    let ((), insecure) = tokio::join!(first_sync, engine.insecure_registries());

    // One docker config file (re-read when it changes) for pulls, digest
    // look-ups and service updates; registries the engine reaches over plain
    // http are reached so by the registry client too.
    let credentials = Credentials::new(config.docker_config.clone(), config.registry_aliases.clone());
    let insecure = match insecure {
        Ok((cidrs, names)) => Insecure::new(cidrs, names),
        Err(e) => {
            warn!(error = %e, "Cannot read the engine's insecure registries; only loopback registries are asked over http.");
            Insecure::default()
        }
    };
    let registry = registry::Client::new(credentials.clone(), insecure)?;

    // Webhook → tee (which also forwards to peers) → runner; forwarded events
    // from peers go to the runner directly, so they are never forwarded again.
    // One count of waiting jobs (HOIST_QUEUE_CAPACITY) across both entrances.
    let (runner_tx, jobs_rx) = crate::job::queue::channel(config.queue_capacity);
    let (jobs_tx, intake_rx) = runner_tx.entrance();
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
                order: config.order,
                drain: crate::deploy::container::DEFAULT_DRAIN,
                slots: crate::deploy::slots::Slots::new(config.max_parallel),
                co_targets: Default::default(),
            },
            pause,
            remove_old_images: config.remove_old_images,
            canary: config.canary,
            own: crate::deploy::selfupdate::OwnContainer::detect(config.self_container.as_deref()),
            service: ServiceSettings {
                deadline: config.swarm.service_deadline,
                credentials: credentials.clone(),
                ..ServiceSettings::default()
            },
            services: config.swarm.services,
            engine_retry_for: config.engine_retry_for,
            credentials,
        },
        snapshot_rx.clone(),
        journal.clone(),
        {
            let notifier = notifier.clone();
            let notify_unchanged = config.notify_unchanged;
            Arc::new(move |notification| {
                // A redelivered push that changed nothing is only in the history.
                if notify_unchanged || !notification.changed_nothing() {
                    notifier.notify(notification.clone())
                }
            })
        },
    )
    .with_shutdown(stop.clone());
    let jobs = TaskTracker::new();
    let adopt_task = tokio::spawn(adopt::run(
        engine.clone(),
        runner.clone(),
        config.swarm.services,
        stop.child_token(),
    ));
    let queue_status: crate::api::HealthDetail = {
        let (queue, runner, capacity) = (runner_tx.clone(), runner.clone(), config.queue_capacity);
        Arc::new(move || {
            json!({
                "waiting": queue.waiting(),
                "capacity": capacity,
                "tag_keys_in_flight": runner.keys_in_flight(),
            })
        })
    };
    let rollback_queue = runner_tx.clone();
    let runner_task = tokio::spawn(runner.run(jobs_rx, jobs.clone(), CancellationToken::new()));
    let peers = (!config.swarm.peers.is_empty()).then(|| forwarder.clone());
    let forward_all = peers.is_some();
    tokio::spawn(forward::run(intake_rx, runner_tx.clone(), peers, jobs.clone()));
    if !unfinished.is_empty() {
        info!(
            jobs = unfinished.len(),
            "Running again the jobs that were not finished."
        );
        let requeue = runner_tx.clone();
        tokio::spawn(async move {
            for job in unfinished {
                if requeue.requeue(job).await.is_err() {
                    break;
                }
            }
        });
    }

    // Polling feeds the same intake queue as the webhooks.
    let poll_task = tokio::spawn(
        Poller {
            client: registry.clone(),
            engine: engine.clone(),
            journal: journal.clone(),
            jobs: jobs_tx.clone(),
            aliases: config.registry_aliases.clone(),
            interval: config.poll_interval,
        }
        .run(snapshot_rx.clone(), stop.child_token()),
    );

    // Base images: every push intake hears is compared with the targets' bases.
    let (bases, base_task) = crate::base::Watcher {
        config: config.base.clone(),
        journal: journal.clone(),
        registry: registry.clone(),
        aliases: config.registry_aliases.clone(),
        snapshot: snapshot_rx.clone(),
        notify: {
            let notifier = notifier.clone();
            Arc::new(move |notification| notifier.notify(notification))
        },
        leads_services: {
            let (engine, mode) = (engine.clone(), config.swarm.services);
            Arc::new(move || {
                let engine = engine.clone();
                Box::pin(async move { crate::deploy::service::acts_on_services(&engine, mode).await })
            })
        },
    }
    .start(stop.child_token())
    .map_err(StartError::Base)?;

    let intake_stopping = CancellationToken::new();
    let intake = Intake {
        jobs: jobs_tx,
        journal: journal.clone(),
        snapshot: snapshot_rx.clone(),
        aliases: config.registry_aliases.clone(),
        queue_all: forward_all,
        stopping: intake_stopping.clone(),
        max_body_bytes: config.max_body_bytes,
        // Pushes without a digest are resolved by the one registry client.
        resolver: Some(Arc::new(registry)),
        rejections: Arc::default(),
        bases: Some(bases),
    };
    let app = webhook::router(WebhookState {
        token: token.clone(),
        github_secret: config.github_webhook_secret.clone().map(Arc::new),
        gitea_secret: config.gitea_webhook_secret.clone().map(Arc::new),
        intake: intake.clone(),
    })
    .merge(forward::router(forward::ForwardState {
        token,
        // Straight to the runner (never forwarded again), every update queued.
        intake: Intake {
            jobs: runner_tx,
            queue_all: true,
            ..intake
        },
        forwarder,
    }))
    .merge(api::router(ApiState {
        engine: engine.clone(),
        snapshot: snapshot_rx,
        journal,
        metrics,
        notifiers: {
            let notifier = notifier.clone();
            Arc::new(move || json!(notifier.status()))
        },
        jobs: queue_status,
        aliases: config.registry_aliases.clone(),
        services: config.swarm.services,
        queue: rollback_queue,
    }));

    // Every GET /v1/* behind the webhook token; /metrics behind its own.
    let app = app.layer(axum::middleware::from_fn_with_state(
        api::ReadTokens {
            api: config.webhook_token.clone().map(Arc::new),
            metrics: config.metrics_token.clone().map(Arc::new),
        },
        api::guard,
    ));

    // No request holds a connection for ever: a client that stalls its body,
    // or a handler stuck behind a stalled engine, gets 408 after this long.
    let app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    ));

    let server_stop = stop.clone();
    let grace = config.shutdown_grace;
    let done = tokio::spawn(async move {
        // With the peer's address, so rejected requests are logged per address.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            server_stop.cancelled().await;
            // 1. intake answers 503 for requests still arriving.
            intake_stopping.cancel();
        });
        if let Err(e) = serve.await {
            warn!(error = %e, "HTTP server failed.");
        }
        // The poller (cancelled with the server) holds a sender too.
        if let Err(e) = poll_task.await {
            warn!(error = %e, "The poll task failed.");
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
        prune_task.abort();
        adopt_task.abort();
        // Cancelled with the server: ends at once, cutting off a call in flight.
        if let Err(e) = base_task.await {
            warn!(error = %e, "The base image task failed.");
        }
        // 3. messages of finished jobs still go out, each briefly.
        notifier.shutdown(std::time::Duration::from_secs(10)).await;
        info!("Stopped.");
    });
    info!(listen = %local_addr, "hoist is ready.");
    Ok(RunningApp {
        local_addr,
        stop,
        done,
    })
}

/// The jobs accepted and not finished when hoist last stopped, oldest
/// first, to run again. The runner repairs each one's half-done targets
/// from the journal before running it, once the engine answers.
async fn unfinished_jobs(journal: &Journal) -> Result<Vec<Job>, StartError> {
    let unfinished = journal.unfinished().await?;
    Ok(unfinished
        .into_iter()
        .map(|job| Job {
            id: job.id,
            event: job.event,
            recovered: Vec::new(),
        })
        .collect())
}

/// Prunes finished jobs older than `retention` from the journal, at once and then daily.
async fn prune_history(journal: Journal, retention: std::time::Duration) {
    let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    loop {
        daily.tick().await;
        match journal.prune(retention).await {
            Ok(0) => {}
            Ok(pruned) => info!(pruned, retention = ?retention, "Old jobs pruned from the history."),
            Err(e) => warn!(error = %e, "Cannot prune the history; trying again tomorrow."),
        }
    }
}
