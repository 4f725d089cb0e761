//! The runner: takes events off the intake channel and drives each job.
//!
//! Ordering rules live here: one job per tag key at a time (a per-key async
//! mutex), a newer push of a key supersedes a waiting older one (a per-key
//! sequence number), the same delivery twice is a no-op (a bounded set of
//! recent delivery ids), and a semaphore caps how many jobs run at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::deploy::container::{self, UpdateSettings};
use crate::deploy::engine::{engine_repository, Engine, ImageDetails};
use crate::deploy::service::{self, ServiceSettings};
use crate::deploy::Outcome;
use crate::event::{Aliases, ImageEvent, TagKey};
use crate::history::{History, JobRecord};
use crate::matcher::matching_targets;
use crate::notify::{Notification, TargetReport};
use crate::swarm::{self, ServicesMode};
use crate::target::{IndexSnapshot, Target, TargetKind};
use crate::telemetry;

/// How many recent delivery ids are remembered to drop redeliveries.
const REMEMBERED_DELIVERIES: usize = 4096;

/// What the runner needs besides its channels.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    pub update: UpdateSettings,
    /// Jobs (pushes of different tags) that may run at once.
    pub max_parallel: usize,
    /// How Swarm services are updated and followed.
    pub service: ServiceSettings,
    /// Whether this hoist updates Swarm services (when its engine leads the swarm).
    pub services: ServicesMode,
}

/// Called with every finished job's report (the notifiers' entry point).
pub type OnFinished = Arc<dyn Fn(&Notification) + Send + Sync>;

/// Drives jobs. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct Runner {
    engine: Engine,
    aliases: Aliases,
    settings: RunnerSettings,
    /// The index snapshot, republished by the watch task after every change.
    snapshot: watch::Receiver<Arc<IndexSnapshot>>,
    history: History,
    on_finished: OnFinished,
    /// Caps running jobs; held for a job's whole run.
    permits: Arc<Semaphore>,
    /// One async mutex per tag key: held for a job's whole run, so jobs of
    /// one key never overlap. The outer std mutex is held only to look up.
    key_locks: Arc<Mutex<HashMap<TagKey, Arc<tokio::sync::Mutex<()>>>>>,
    /// The sequence number of the newest event per key; an older job waiting
    /// for the key lock sees a larger number and steps aside.
    newest: Arc<Mutex<HashMap<TagKey, u64>>>,
    sequence: Arc<AtomicU64>,
    /// Recent delivery ids (set for lookup, queue for eviction order).
    seen: Arc<Mutex<(HashSet<String>, VecDeque<String>)>>,
}

impl Runner {
    pub fn new(
        engine: Engine,
        aliases: Aliases,
        settings: RunnerSettings,
        snapshot: watch::Receiver<Arc<IndexSnapshot>>,
        history: History,
        on_finished: OnFinished,
    ) -> Runner {
        let permits = Arc::new(Semaphore::new(settings.max_parallel));
        Runner {
            engine,
            aliases,
            settings,
            snapshot,
            history,
            on_finished,
            permits,
            key_locks: Arc::default(),
            newest: Arc::default(),
            sequence: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// Takes events until the channel closes or `cancel` fires; each job runs
    /// on `tracker`, so shutdown can wait for running jobs.
    pub async fn run(
        self,
        mut events: mpsc::Receiver<ImageEvent>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break,
                event = events.recv() => match event { Some(e) => e, None => break },
            };
            telemetry::queue_depth(events.len());
            if self.is_redelivery(&event) {
                info!(image = %event.reference, delivery = ?event.delivery_id, "Redelivered event ignored.");
                continue;
            }
            let Some(key) = self.aliases.key(&event.reference) else {
                continue;
            };
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            lock(&self.newest).insert(key.clone(), sequence);
            let runner = self.clone();
            tracker.spawn(async move { runner.run_job(event, key, sequence).await });
        }
    }

    fn is_redelivery(&self, event: &ImageEvent) -> bool {
        let Some(id) = &event.delivery_id else {
            return false;
        };
        let mut seen = lock(&self.seen);
        let (set, order) = &mut *seen;
        if !set.insert(id.clone()) {
            return true;
        }
        order.push_back(id.clone());
        if order.len() > REMEMBERED_DELIVERIES {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
        false
    }

    async fn run_job(self, event: ImageEvent, key: TagKey, sequence: u64) {
        let key_lock = lock(&self.key_locks).entry(key.clone()).or_default().clone();
        let _key_guard = key_lock.lock().await;
        if lock(&self.newest)
            .get(&key)
            .is_some_and(|newest| *newest > sequence)
        {
            info!(image = %event.reference, digest = %event.digest.short(), "Superseded by a newer push; skipped.");
            return;
        }
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let snapshot = self.snapshot.borrow().clone();
        let targets = self
            .acting_on(matching_targets(&event, &snapshot, &self.aliases))
            .await;
        if targets.is_empty() {
            debug!(image = %event.reference, "No target runs this image.");
            return;
        }
        let started_at = Utc::now();
        let clock = Instant::now();
        info!(image = %event.reference, digest = %event.digest.short(), targets = targets.len(), "Update started.");
        let (reports, new_image) = self.update_targets(&event, &targets).await;
        self.record(&event, reports, new_image, started_at, clock, sequence);
    }

    /// Follows, to its end, a service update that another hoist started (the
    /// swarm's leader before this one), and reports it as a job of its own.
    /// `event` names the tag and the digest the update goes to; `image` is the
    /// service's pinned image of that digest.
    pub async fn adopt(&self, event: ImageEvent, target: Target, image: String) {
        let Some(key) = self.aliases.key(&event.reference) else {
            return;
        };
        let key_lock = lock(&self.key_locks).entry(key).or_default().clone();
        let _key_guard = key_lock.lock().await;
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let started_at = Utc::now();
        let clock = Instant::now();
        info!(service = %target.name, %image, "Following a service update started before this hoist led the swarm.");
        let settings = self.service_settings_for(&target);
        let outcome = service::follow(&self.engine, &target.id.0, &image, None, &settings).await;
        let reports = vec![report_for(&target, outcome, None)];
        self.record(&event, reports, None, started_at, clock, sequence);
    }

    /// Without the leader's role, service targets are left to the hoist that has it.
    async fn acting_on(&self, targets: Vec<Target>) -> Vec<Target> {
        if !targets.iter().any(|t| t.kind == TargetKind::Service)
            || swarm::acts_on_services(&self.engine, self.settings.services).await
        {
            return targets;
        }
        debug!("Not the swarm's leader (or services are off): services are left to the leader's hoist.");
        targets
            .into_iter()
            .filter(|t| t.kind != TargetKind::Service)
            .collect()
    }

    /// Reports a finished job: history, metrics, logs and notifiers.
    fn record(
        &self,
        event: &ImageEvent,
        reports: Vec<TargetReport>,
        new_image: Option<ImageDetails>,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
        sequence: u64,
    ) {
        let label = |key: &str| new_image.as_ref().and_then(|image| image.label(key));
        let notification = Notification {
            image: event.reference.clone(),
            new_digest: event.digest.clone(),
            source: event.source,
            actor: event.actor.clone(),
            image_version: label("org.opencontainers.image.version"),
            image_revision: label("org.opencontainers.image.revision"),
            image_source: label("org.opencontainers.image.source"),
            targets: reports,
            started_at,
            duration: clock.elapsed(),
        };
        for report in &notification.targets {
            telemetry::job_outcome(&report.outcome, event.received_at, clock.elapsed());
        }
        info!(
            image = %event.reference,
            digest = %event.digest.short(),
            outcomes = ?notification.targets.iter().map(|t| format!("{}={}", t.name, t.outcome)).collect::<Vec<_>>(),
            took_ms = notification.duration.as_millis() as u64,
            "Update finished."
        );
        self.history.record(JobRecord {
            id: sequence,
            notification: notification.clone(),
        });
        (self.on_finished)(&notification);
    }

    /// One pull per repository the targets name, then every target.
    async fn update_targets(
        &self,
        event: &ImageEvent,
        targets: &[Target],
    ) -> (Vec<TargetReport>, Option<ImageDetails>) {
        let report = report_for;
        // Targets may name the registry differently (aliases); each name is pulled as the target names it.
        let mut pulled: HashMap<String, Result<ImageDetails, String>> = HashMap::new();
        // Services are pulled by Swarm on the nodes that run them, not here.
        for target in targets
            .iter()
            .filter(|t| !t.monitor_only && t.kind == TargetKind::Container)
        {
            let repository = engine_repository(&target.image);
            if pulled.contains_key(&repository) {
                continue;
            }
            let tag = target.image.tag().unwrap_or("latest");
            let result = self
                .engine
                .pull_digest(&repository, &event.digest, tag)
                .await
                .map_err(|e| e.to_string());
            if let Err(e) = &result {
                warn!(image = %event.reference, error = %e, "Pull failed; nothing was changed.");
            }
            pulled.insert(repository, result);
        }
        let new_image = pulled.values().find_map(|r| r.as_ref().ok().cloned());
        let updates = futures_util::stream::iter(targets.iter().cloned())
            .map(|target| {
                let pulled = &pulled;
                async move {
                    if target.monitor_only {
                        info!(container = %target.name, image = %event.reference, "Update available; monitor-only, not applied.");
                        return report(&target, Outcome::MonitorOnly, None);
                    }
                    if target.kind == TargetKind::Service {
                        let settings = self.service_settings_for(&target);
                        let done = service::update(&self.engine, &target.id.0, &event.digest, &settings).await;
                        return report(&target, done.outcome, done.old_digest);
                    }
                    let repository = engine_repository(&target.image);
                    match pulled.get(&repository) {
                        Some(Ok(image)) => {
                            let settings = self.settings_for(&target);
                            let done = container::update(&self.engine, &target.name, image, &repository, &settings).await;
                            report(&target, done.outcome, done.old_digest)
                        }
                        Some(Err(e)) => report(&target, Outcome::Failed { reason: e.clone() }, None),
                        None => report(&target, Outcome::Failed { reason: "image was not pulled".into() }, None),
                    }
                }
            })
            .buffer_unordered(self.settings.max_parallel.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut updates = updates;
        updates.sort_by(|a, b| a.name.cmp(&b.name));
        (updates, new_image)
    }
}

impl Runner {
    /// The global settings with the target's label overrides applied.
    fn settings_for(&self, target: &Target) -> UpdateSettings {
        let mut settings = self.settings.update.clone();
        if let Some(grace) = target.options.health_grace {
            settings.health.grace = grace;
        }
        if let Some(deadline) = target.options.health_deadline {
            settings.health.deadline = deadline;
        }
        settings
    }

    /// The service settings with the target's `hoist.health.deadline` applied
    /// (for a service: the most time its rolling update gets).
    fn service_settings_for(&self, target: &Target) -> ServiceSettings {
        let mut settings = self.settings.service.clone();
        if let Some(deadline) = target.options.health_deadline {
            settings.deadline = deadline;
        }
        settings
    }
}

/// One target's line in a job's report.
fn report_for(target: &Target, outcome: Outcome, old_digest: Option<crate::event::Digest>) -> TargetReport {
    TargetReport {
        name: target.name.clone(),
        compose_project: target.compose_project.clone(),
        compose_service: target.compose_service.clone(),
        old_digest,
        outcome,
    }
}

/// Locks a std mutex, recovering from poison: the data are plain maps that a
/// panicking holder cannot leave half-written in a way that matters here.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
