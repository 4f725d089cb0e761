//! The runner: takes events off the intake channel and drives each job.
//!
//! Ordering rules live here: one job per tag key at a time (a per-key async
//! mutex), a newer push of a key supersedes a waiting older one (a per-key
//! sequence number), the same delivery twice is a no-op (a bounded set of
//! recent delivery ids), and a semaphore caps how many jobs run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::queue::{JobReceiver, QueuedJob};
use super::{Job, JobId, Journal};
use crate::deploy::container::{self, UpdateSettings};
use crate::deploy::engine::{engine_repository, Engine, ImageDetails};
use crate::deploy::service::{self, ServiceSettings};
use crate::deploy::{Outcome, StepLog};
use crate::event::{Aliases, ImageEvent, TagKey};
use crate::inventory::{IndexSnapshot, Target, TargetKind};
use crate::matcher::matching_targets;
use crate::notify::{Notification, TargetReport};
use crate::registry::Credentials;
use crate::swarm::{self, ServicesMode};
use crate::telemetry;

/// What the runner needs besides its channels.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    pub update: UpdateSettings,
    /// Jobs (pushes of different tags) that may run at once.
    pub max_parallel: usize,
    /// Crash tests only: stop still after this step (`HOIST_FAULT_PAUSE_AFTER`).
    pub pause_after: Option<Arc<str>>,
    /// Remove an updated target's old image when nothing uses it (`HOIST_REMOVE_OLD_IMAGES`).
    pub remove_old_images: bool,
    /// How Swarm services are updated and followed.
    pub service: ServiceSettings,
    /// Whether this hoist updates Swarm services (when its engine leads the swarm).
    pub services: ServicesMode,
    /// The registry credentials pulls log in with (the docker config file).
    pub credentials: Credentials,
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
    journal: Journal,
    on_finished: OnFinished,
    /// Caps running jobs; held for a job's whole run.
    permits: Arc<Semaphore>,
    /// Per tag key with jobs in flight: its lock and newest sequence number.
    /// The std mutex is held only to look up.
    keys: Arc<Mutex<KeyStates>>,
    sequence: Arc<AtomicU64>,
}

impl Runner {
    pub fn new(
        engine: Engine,
        aliases: Aliases,
        settings: RunnerSettings,
        snapshot: watch::Receiver<Arc<IndexSnapshot>>,
        journal: Journal,
        on_finished: OnFinished,
    ) -> Runner {
        let permits = Arc::new(Semaphore::new(settings.max_parallel));
        Runner {
            engine,
            aliases,
            settings,
            snapshot,
            journal,
            on_finished,
            permits,
            keys: Arc::default(),
            sequence: Arc::default(),
        }
    }

    /// Takes jobs until the channel closes; each runs on `tracker`, so
    /// shutdown can wait for running jobs. Jobs still queued when the channel
    /// closes stay unfinished in the journal and run at the next start.
    pub async fn run(self, receiver: JobReceiver, tracker: TaskTracker, cancel: CancellationToken) {
        let JobReceiver { mut jobs, waiting } = receiver;
        loop {
            let job = tokio::select! {
                _ = cancel.cancelled() => break,
                job = jobs.recv() => match job { Some(job) => job, None => break },
            };
            // The job counts as waiting (HOIST_QUEUE_CAPACITY) until it starts.
            let queued = QueuedJob::new(waiting.clone());
            let Some(key) = self.aliases.key(&job.event.reference) else {
                continue;
            };
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            let key_lock = lock(&self.keys).begin(&key, sequence);
            let runner = self.clone();
            tracker.spawn(async move {
                // Ends the key's part on every path out, so its state can go.
                let _in_flight = InFlight {
                    keys: runner.keys.clone(),
                    key: key.clone(),
                };
                runner.run_job(job, queued, key, key_lock, sequence).await
            });
        }
    }

    /// Tag keys with jobs in flight (their state is dropped when the last ends).
    pub fn keys_in_flight(&self) -> usize {
        lock(&self.keys).states.len()
    }

    async fn close(&self, job: JobId, state: &'static str, report: Option<serde_json::Value>) {
        if let Err(e) = self.journal.finish(job, state, report).await {
            warn!(job = %job, error = %e, "Cannot close the job in the journal; it will be looked at again at start-up.");
        }
    }

    async fn run_job(
        self,
        job: Job,
        queued: QueuedJob,
        key: TagKey,
        key_lock: Arc<tokio::sync::Mutex<()>>,
        sequence: u64,
    ) {
        let event = &job.event;
        let _key_guard = key_lock.lock().await;
        if lock(&self.keys).is_superseded(&key, sequence) {
            info!(image = %event.reference, digest = %event.digest.short(), "Superseded by a newer push; skipped.");
            self.close(job.id, "superseded", None).await;
            return;
        }
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        // Running now: no longer waiting.
        drop(queued);
        let snapshot = self.snapshot.borrow().clone();
        let targets = self
            .acting_on(matching_targets(event, &snapshot, &self.aliases))
            .await;
        if targets.is_empty() {
            debug!(image = %event.reference, "No target runs this image.");
            self.close(job.id, "no_target", None).await;
            return;
        }
        let started_at = Utc::now();
        let clock = Instant::now();
        info!(image = %event.reference, digest = %event.digest.short(), targets = targets.len(), "Update started.");
        let log = StepLog::new(self.journal.clone(), job.id, self.settings.pause_after.clone())
            .with_received_at(event.received_at);
        let (results, new_image) = self.update_targets(event, &targets, &log).await;
        self.repair_unsafe(&job, &results, &log).await;
        if self.settings.remove_old_images {
            self.remove_old_images(&results).await;
        }
        let mut reports: Vec<TargetReport> = results.into_iter().map(|r| r.report).collect();
        // A re-run after crash recovery finds recovered targets current; report what recovery did.
        for report in &mut reports {
            if report.outcome == Outcome::AlreadyCurrent {
                if let Some((_, outcome)) = job.recovered.iter().find(|(name, _)| *name == report.name) {
                    report.outcome = outcome.clone();
                }
            }
        }
        self.record(job.id, event, reports, new_image, started_at, clock)
            .await;
    }

    /// Follows, to its end, a service update that another hoist started (the
    /// swarm's leader before this one), and reports it as a job of its own.
    /// `event` names the tag and the digest the update goes to; `image` is the
    /// service's pinned image of that digest.
    pub async fn adopt(&self, event: ImageEvent, target: Target, image: String) {
        let Some(key) = self.aliases.key(&event.reference) else {
            return;
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let key_lock = lock(&self.keys).begin(&key, sequence);
        let _in_flight = InFlight {
            keys: self.keys.clone(),
            key,
        };
        let _key_guard = key_lock.lock().await;
        // Journaled like any job, so it is in the history and survives restarts.
        let id = match self.journal.accept(&event).await {
            Ok(crate::job::journal::Acceptance::New(id)) => id,
            Ok(crate::job::journal::Acceptance::Duplicate(_)) => return,
            Err(e) => {
                warn!(error = %e, "Cannot journal a followed service update; following it anyway.");
                JobId(0)
            }
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        info!(service = %target.name, %image, "Following a service update started before this hoist led the swarm.");
        let settings = self.service_settings_for(&target);
        let outcome = service::follow(&self.engine, &target.id.0, &image, None, &settings).await;
        let reports = vec![report_for(&target, outcome, None)];
        self.record(id, &event, reports, None, started_at, clock).await;
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

    /// Reports a finished job: journal (history), metrics, logs and notifiers.
    async fn record(
        &self,
        id: JobId,
        event: &ImageEvent,
        reports: Vec<TargetReport>,
        new_image: Option<ImageDetails>,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
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
            telemetry::job_outcome(&report.outcome, clock.elapsed());
        }
        info!(
            image = %event.reference,
            digest = %event.digest.short(),
            outcomes = ?notification.targets.iter().map(|t| format!("{}={}", t.name, t.outcome)).collect::<Vec<_>>(),
            took_ms = notification.duration.as_millis() as u64,
            "Update finished."
        );
        let mut report = serde_json::to_value(&notification).unwrap_or_default();
        report["job"] = serde_json::json!(id);
        self.close(id, "done", Some(report)).await;
        (self.on_finished)(&notification);
    }

    /// One pull per repository the targets name, then every target.
    async fn update_targets(
        &self,
        event: &ImageEvent,
        targets: &[Target],
        log: &StepLog,
    ) -> (Vec<TargetResult>, Option<ImageDetails>) {
        let report = |target: &Target, outcome: Outcome, old_digest| TargetResult {
            report: TargetReport {
                name: target.name.clone(),
                compose_project: target.compose_project.clone(),
                compose_service: target.compose_service.clone(),
                old_digest,
                outcome,
            },
            needs_repair: false,
            old_image_id: None,
        };
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
            let (registry, credentials) = (target.image.registry(), &self.settings.credentials);
            let (auth, problem) = match credentials.lookup(registry).await {
                Ok(auth) => (auth, None),
                Err(e) => {
                    warn!(registry, error = %e, "Pulling without registry credentials.");
                    (None, Some(e))
                }
            };
            let result = self
                .engine
                .pull_digest(&repository, &event.digest, tag, auth.as_ref())
                .await
                .map_err(|e| {
                    let message = e.to_string();
                    let repository = target.image.repository();
                    credentials
                        .explain_refusal(&message, registry, repository, auth.as_ref(), problem.as_ref())
                        .unwrap_or(message)
                });
            if let Err(e) = &result {
                warn!(image = %event.reference, error = %e, "Pull failed; nothing was changed.");
            }
            pulled.insert(repository, result);
        }
        let new_image = pulled.values().find_map(|r| r.as_ref().ok().cloned());
        log.after("pulled").await;
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
                            let done = container::update(&self.engine, &target.name, image, &repository, &settings, log).await;
                            TargetResult {
                                needs_repair: done.needs_repair,
                                old_image_id: done.old_image_id,
                                ..report(&target, done.outcome, done.old_digest)
                            }
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
        updates.sort_by(|a, b| a.report.name.cmp(&b.report.name));
        (updates, new_image)
    }
}

/// One target's end of a job, with what the runner still has to do about it.
struct TargetResult {
    report: TargetReport,
    /// The rollback could not complete; see [`Runner::repair_unsafe`].
    needs_repair: bool,
    old_image_id: Option<String>,
}

impl Runner {
    /// Targets whose rollback could not complete (the engine went away mid-way)
    /// are repaired here, with backoff, until they are safe. The job's key
    /// stays locked meanwhile, so no other update of the image can start.
    async fn repair_unsafe(&self, job: &Job, results: &[TargetResult], log: &StepLog) {
        for result in results.iter().filter(|r| r.needs_repair) {
            let name = &result.report.name;
            let mut wait = Duration::from_secs(1);
            loop {
                error!(container = %name, retry_in = ?wait, "The target is not in a safe state; repairing.");
                tokio::time::sleep(wait).await;
                let steps = match self.journal.steps(job.id).await {
                    Ok(steps) => steps,
                    Err(e) => {
                        warn!(error = %e, "Cannot read the journal for the repair.");
                        continue;
                    }
                };
                match container::recover(&self.engine, name, &steps, log).await {
                    Some((_, false)) => wait = (wait * 2).min(Duration::from_secs(60)),
                    Some((_, true)) | None => break,
                }
            }
        }
    }

    /// Removes the images the updated targets ran before, when no container
    /// uses them any more (the engine refuses otherwise, which is fine).
    async fn remove_old_images(&self, results: &[TargetResult]) {
        let mut old: Vec<&str> = results
            .iter()
            .filter(|r| r.report.outcome == Outcome::Updated)
            .filter_map(|r| r.old_image_id.as_deref())
            .collect();
        old.sort();
        old.dedup();
        for image in old {
            match self.engine.remove_image(image).await {
                Ok(()) => info!(image, "Old image removed."),
                Err(e) => debug!(image, error = %e, "Old image kept."),
            }
        }
    }

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

/// What the runner keeps per tag key, only while that key has jobs in
/// flight: pushes of ever new tags (a tag per build) leave nothing behind.
/// (Restores 501479c, which the merge 3491a53 dropped.)
#[derive(Default)]
struct KeyStates {
    states: HashMap<TagKey, KeyState>,
}

struct KeyState {
    /// Held for a job's whole run, so jobs of one key never overlap.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The newest event's sequence number; an older job waiting for the lock
    /// sees a larger number and steps aside.
    newest: u64,
    /// Jobs spawned and not yet ended.
    in_flight: usize,
}

impl KeyStates {
    /// A job for `key` with `sequence` is spawned: returns the key's lock.
    fn begin(&mut self, key: &TagKey, sequence: u64) -> Arc<tokio::sync::Mutex<()>> {
        let state = self.states.entry(key.clone()).or_insert_with(|| KeyState {
            lock: Arc::default(),
            newest: 0,
            in_flight: 0,
        });
        state.newest = state.newest.max(sequence);
        state.in_flight += 1;
        state.lock.clone()
    }

    fn is_superseded(&self, key: &TagKey, sequence: u64) -> bool {
        self.states.get(key).is_some_and(|state| state.newest > sequence)
    }

    /// A job for `key` ended; the last one out removes the key.
    fn end(&mut self, key: &TagKey) {
        if let Some(state) = self.states.get_mut(key) {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                self.states.remove(key);
            }
        }
    }
}

/// Ends a job's part in its key's state when dropped (returned, finished or panicked).
struct InFlight {
    keys: Arc<Mutex<KeyStates>>,
    key: TagKey,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.keys).end(&self.key);
    }
}

/// Locks a std mutex, recovering from poison: the data are plain maps that a
/// panicking holder cannot leave half-written in a way that matters here.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: &str) -> TagKey {
        let reference = crate::event::ImageRef::parse(&format!("127.0.0.1:5000/team/app:{tag}")).unwrap();
        Aliases::default().key(&reference).unwrap()
    }

    #[test]
    fn a_key_is_kept_only_while_it_has_jobs_in_flight() {
        let mut keys = KeyStates::default();
        for (n, tag) in (0..1000).map(|n| (n, format!("build-{n}"))) {
            keys.begin(&key(&tag), n + 1);
        }
        assert_eq!(keys.states.len(), 1000);
        for n in 0..1000 {
            keys.end(&key(&format!("build-{n}")));
        }
        assert!(
            keys.states.is_empty(),
            "every distinct tag's state must go when its job ends"
        );
    }

    #[test]
    fn a_waiting_older_job_still_sees_a_newer_one_that_ended() {
        let mut keys = KeyStates::default();
        let k = key("1");
        let first = keys.begin(&k, 1);
        let second = keys.begin(&k, 2);
        assert!(Arc::ptr_eq(&first, &second), "one lock per key");
        // The newer job ends first (it ran); the older one, still in flight, is superseded.
        keys.end(&k);
        assert!(keys.is_superseded(&k, 1));
        keys.end(&k);
        assert!(keys.states.is_empty());
    }
}
