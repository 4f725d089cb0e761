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
use crate::deploy::Outcome;
use crate::event::{Aliases, ImageEvent, TagKey};
use crate::history::{History, JobRecord};
use crate::matcher::matching_targets;
use crate::notify::{Notification, TargetReport};
use crate::target::{IndexSnapshot, Target};
use crate::telemetry;

/// How many recent delivery ids are remembered to drop redeliveries.
const REMEMBERED_DELIVERIES: usize = 4096;

/// What the runner needs besides its channels.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    pub update: UpdateSettings,
    /// Jobs (pushes of different tags) that may run at once.
    pub max_parallel: usize,
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
    /// Per tag key with jobs in flight: its lock and newest sequence number.
    keys: Arc<Mutex<KeyStates>>,
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
            keys: Arc::default(),
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
            let key_lock = lock(&self.keys).begin(&key, sequence);
            let runner = self.clone();
            tracker.spawn(async move {
                // Ends the key's job on every path out, so its state can go.
                let _in_flight = InFlight {
                    keys: runner.keys.clone(),
                    key: key.clone(),
                };
                runner.run_job(event, key, key_lock, sequence).await
            });
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

    async fn run_job(
        self,
        event: ImageEvent,
        key: TagKey,
        key_lock: Arc<tokio::sync::Mutex<()>>,
        sequence: u64,
    ) {
        let _key_guard = key_lock.lock().await;
        if lock(&self.keys).is_superseded(&key, sequence) {
            info!(image = %event.reference, digest = %event.digest.short(), "Superseded by a newer push; skipped.");
            return;
        }
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let snapshot = self.snapshot.borrow().clone();
        let targets = matching_targets(&event, &snapshot, &self.aliases);
        if targets.is_empty() {
            debug!(image = %event.reference, "No target runs this image.");
            return;
        }
        let started_at = Utc::now();
        let clock = Instant::now();
        info!(image = %event.reference, digest = %event.digest.short(), targets = targets.len(), "Update started.");
        let (reports, new_image) = self.update_targets(&event, &targets).await;
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
        let report = |target: &Target, outcome: Outcome, old_digest| TargetReport {
            name: target.name.clone(),
            compose_project: target.compose_project.clone(),
            compose_service: target.compose_service.clone(),
            old_digest,
            outcome,
        };
        // Targets may name the registry differently (aliases); each name is pulled as the target names it.
        let mut pulled: HashMap<String, Result<ImageDetails, String>> = HashMap::new();
        for target in targets.iter().filter(|t| !t.monitor_only) {
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
}

/// What the runner keeps per tag key, only while that key has jobs in
/// flight: pushes of ever new tags (a tag per build) leave nothing behind.
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
        TagKey {
            registry: "registry.example.test".into(),
            repository: "team/app".into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn a_key_is_kept_only_while_it_has_jobs_in_flight() {
        let mut keys = KeyStates::default();
        for (sequence, tag) in (1..).zip(["a", "b", "c"]) {
            keys.begin(&key(tag), sequence);
        }
        for tag in ["a", "b", "c"] {
            keys.end(&key(tag));
        }
        assert!(keys.states.is_empty());
        // Ending a key that is not there (twice) is harmless.
        keys.end(&key("a"));
        assert!(keys.states.is_empty());
    }

    #[test]
    fn jobs_of_one_key_share_its_lock_and_the_newest_wins_whatever_order_they_end_in() {
        let mut keys = KeyStates::default();
        let older = keys.begin(&key("1.0"), 4);
        let newer = keys.begin(&key("1.0"), 5);
        assert!(Arc::ptr_eq(&older, &newer));
        // The newer job runs and ends first; the older one, not yet run, must still step aside.
        assert!(!keys.is_superseded(&key("1.0"), 5));
        keys.end(&key("1.0"));
        assert!(keys.is_superseded(&key("1.0"), 4));
        keys.end(&key("1.0"));
        assert!(keys.states.is_empty());
        // A later push of the same tag starts afresh and is not superseded.
        keys.begin(&key("1.0"), 6);
        assert!(!keys.is_superseded(&key("1.0"), 6));
    }
}
