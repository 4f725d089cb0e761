//! The runner: takes events off the intake channel and drives each job.
//!
//! Ordering rules live here: one job per tag key at a time (a per-key async
//! mutex), a newer push of a key supersedes a waiting older one (a per-key
//! sequence number), the same delivery twice is a no-op (a bounded set of
//! recent delivery ids). `HOIST_MAX_PARALLEL` slots ([`Slots`]) cap the
//! engine operations in flight over every job, not the jobs: a job waiting
//! on health gates holds none, and a push's targets are updated side by side.
//!
//! Faults that are no verdict on the push (the engine restarted, stalled or
//! failed with a 5xx; the journal could not be written) do not end a job:
//! its targets are brought back to a safe state, and the job runs again once
//! the engine answers, with backoff, for up to `HOIST_ENGINE_RETRY_FOR`.
//! The report then says what happened on the way ([`Interruption`]). A job
//! that an earlier run of hoist left half done is repaired from the journal
//! before it runs again, here rather than at start-up, so that start-up does
//! not depend on the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::queue::{JobReceiver, QueuedJob};
use super::rollout;
use super::{Job, JobId, Journal};
use crate::backoff::Backoff;
use crate::deploy::container::{self, UpdateSettings};
use crate::deploy::contract::{self, Change};
use crate::deploy::dependents;
use crate::deploy::selfupdate::{self, OwnContainer};
use crate::deploy::service::ServicesMode;
use crate::deploy::service::{self, ServiceSettings};
use crate::deploy::{DeployError, FaultPause, Outcome, StepLog};
use crate::engine::{engine_repository, Engine, ImageDetails};
use crate::event::{Aliases, ImageEvent, TagKey};
use crate::inventory::{IndexSnapshot, Target, TargetKind};
use crate::matcher::matching_targets;
use crate::notify::{Notification, TargetReport};
use crate::registry::Credentials;
use crate::telemetry;

/// What the runner needs besides its channels.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    pub update: UpdateSettings,
    /// Fault tests only: stop still after a step (`HOIST_FAULT_PAUSE_AFTER`).
    pub pause: Option<Arc<FaultPause>>,
    /// Remove an updated target's old image when nothing uses it (`HOIST_REMOVE_OLD_IMAGES`).
    pub remove_old_images: bool,
    /// How Swarm services are updated and followed.
    pub service: ServiceSettings,
    /// Whether this hoist updates Swarm services (when its engine leads the swarm).
    pub services: ServicesMode,
    /// How long a job cut off by engine faults is run again before it is
    /// reported failed (`HOIST_ENGINE_RETRY_FOR`), counted from the first fault.
    pub engine_retry_for: Duration,
    /// The registry credentials pulls log in with (the docker config file).
    pub credentials: Credentials,
    /// `HOIST_CANARY`: one target of a push first, the rest once it is healthy.
    pub canary: bool,
    /// hoist's own container, updated last and through a relay.
    pub own: OwnContainer,
}

/// Waits between tries of a job cut off by a fault, and of a repair.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// Tries of a job whose faults are only server errors (5xx) from an engine
/// that otherwise answers: such an error may well come back every time, and
/// each try stops and restarts the old container.
const TRIES_ON_ENGINE_ERRORS: u32 = 3;

/// How long hoist waits, after handing its own update to the relay, to be
/// stopped by it; past that the relay is taken to have failed.
const HAND_OVER_WAIT: Duration = Duration::from_secs(5 * 60);

/// What the job-level "interrupted by" is called when hoist itself stopped.
const HOIST_STOPPED: &str = "hoist stopped";

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
    /// Per tag key with jobs in flight: its lock and newest sequence number.
    /// The std mutex is held only to look up.
    keys: Arc<Mutex<KeyStates>>,
    sequence: Arc<AtomicU64>,
    /// Cancelled when shutdown starts: a job waiting for the engine to come
    /// back stops waiting (it stays open in the journal for the next start).
    stopping: CancellationToken,
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
        Runner {
            engine,
            aliases,
            settings,
            snapshot,
            journal,
            on_finished,
            keys: Arc::default(),
            sequence: Arc::default(),
            stopping: CancellationToken::new(),
        }
    }

    /// Jobs waiting for the engine give up waiting (not their job) when `stopping` fires.
    pub fn with_shutdown(mut self, stopping: CancellationToken) -> Runner {
        self.stopping = stopping;
        self
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
        mut job: Job,
        queued: QueuedJob,
        key: TagKey,
        key_lock: Arc<tokio::sync::Mutex<()>>,
        sequence: u64,
    ) {
        let _key_guard = key_lock.lock().await;
        let log = StepLog::new(self.journal.clone(), job.id, self.settings.pause.clone())
            .with_received_at(job.event.received_at);
        // Half done by an earlier run of hoist: safe first, superseded or not.
        let (mut interruptions, mut settled) = self.recover_interrupted(&mut job, &log).await;
        let event = &job.event;
        let mut known = self.recovered_targets(&job).await;
        let mut queued = Some(queued);
        // Outcomes reached by earlier tries (or by the recovery), reported
        // when a later try finds the target current.
        let mut earlier: HashMap<String, Outcome> = job.recovered.iter().cloned().collect();
        let mut last: Option<(Vec<TargetResult>, Option<ImageDetails>)> = None;
        let mut give_up_at: Option<Instant> = None;
        let mut server_errors = 0;
        // The image each updated target ran before, over every try.
        let mut old_images: HashMap<String, String> = HashMap::new();
        let started_at = Utc::now();
        let clock = Instant::now();
        for attempt in 1u32.. {
            if lock(&self.keys).is_superseded(&key, sequence) {
                info!(image = %event.reference, digest = %event.digest.short(), "Superseded by a newer push; skipped.");
                self.close(job.id, "superseded", None).await;
                return;
            }
            // A job starts when an engine operation could: until then it
            // counts as waiting (the queue's back-pressure); the slot itself
            // is taken again by each operation.
            drop(self.settings.update.slots.take().await);
            drop(queued.take());
            let fault = match self.try_job(event, &log, attempt, &mut known, &settled).await {
                Try::NoTarget => {
                    debug!(image = %event.reference, "No target runs this image.");
                    self.close(job.id, "no_target", None).await;
                    return;
                }
                Try::EngineNotSeen(fault) => fault,
                Try::Ran(results, new_image) => {
                    if results.iter().any(|r| r.handed_over) {
                        // The relay stops this hoist; the one that runs next records the job.
                        tokio::select! {
                            _ = self.stopping.cancelled() => {
                                info!(job = %job.id, "Stopping for the relay: the next hoist records this job.");
                                return;
                            }
                            _ = tokio::time::sleep(HAND_OVER_WAIT) => {}
                        }
                        // Never stopped: the relay gave up before it touched this hoist.
                        error!(job = %job.id, "The relay did not take over; recording what became of hoist's own update.");
                        let steps = self.read_steps(job.id).await;
                        for result in results.iter().filter(|r| r.handed_over) {
                            let name = &result.report.name;
                            if let Some(outcome) = selfupdate::recover(&self.engine, name, &steps, &log).await
                            {
                                settled.insert(name.clone(), outcome);
                            }
                        }
                        continue;
                    }
                    let new_image = new_image.map(|image| *image);
                    let fault = results.iter().find_map(|r| r.interrupted.clone());
                    for result in &results {
                        let name = &result.report.name;
                        if let Some(why) = &result.interrupted {
                            interruptions.entry(name.clone()).or_insert(Interruption {
                                what: why.what_happened().to_string(),
                                rolled_back: result.touched,
                            });
                        } else if result.report.outcome != Outcome::AlreadyCurrent {
                            earlier.insert(name.clone(), result.report.outcome.clone());
                            if result.report.outcome == Outcome::Updated {
                                if let Some(id) = &result.old_image_id {
                                    old_images.entry(name.clone()).or_insert_with(|| id.clone());
                                }
                            }
                        }
                    }
                    last = Some((results, new_image));
                    match fault {
                        Some(fault) => fault,
                        None => break,
                    }
                }
            };
            let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + self.settings.engine_retry_for);
            if matches!(fault, DeployError::EngineFailed(_)) {
                server_errors += 1;
            }
            let waited = if server_errors >= TRIES_ON_ENGINE_ERRORS {
                Waited::GaveUp
            } else {
                warn!(image = %event.reference, error = %fault, attempt, "The update was cut off by a fault that is no verdict on the push; it runs again once the engine answers.");
                self.wait_for_engine(attempt, deadline).await
            };
            match waited {
                Waited::Answers => continue,
                Waited::Stopping => {
                    info!(job = %job.id, "Shutting down: the interrupted job stays open and runs at the next start.");
                    return;
                }
                Waited::GaveUp => {
                    error!(image = %event.reference, error = %fault, tries = attempt, "Giving up on the update: the fault lasted too long.");
                    if let Some((results, _)) = &mut last {
                        for result in results.iter_mut() {
                            result.give_up(attempt);
                        }
                    }
                    break;
                }
            }
        }
        let Some((results, new_image)) = last else {
            // The engine never answered, so which targets run the image was never known.
            error!(image = %event.reference, digest = %event.digest.short(), "The engine did not answer within HOIST_ENGINE_RETRY_FOR; the push is dropped.");
            self.close(job.id, "engine_unreachable", None).await;
            return;
        };
        let finished_at = Utc::now();
        let reports: Vec<TargetReport> = results
            .into_iter()
            .map(|result| {
                let mut report = result.report;
                // A try after an earlier one (or after crash recovery) finds the target current.
                if report.outcome == Outcome::AlreadyCurrent {
                    if let Some(outcome) = earlier.get(&report.name) {
                        report.outcome = outcome.clone();
                    }
                }
                if let Some(interruption) = interruptions.get(&report.name) {
                    let note = interruption.note(&report.outcome, finished_at);
                    report.note = Some(match report.note.take() {
                        Some(earlier) => format!("{earlier}; {note}"),
                        None => note,
                    });
                }
                report
            })
            .collect();
        // What each updated target ran before stays, for a rollback; with
        // HOIST_REMOVE_OLD_IMAGES only the ones before that go.
        let older = self.keep_previous(event, &reports, &old_images).await;
        if self.settings.remove_old_images {
            self.remove_old_images(older).await;
        }
        self.record(job.id, event, reports, new_image, started_at, clock)
            .await;
    }

    /// Records, per updated target, the image it ran before (what `hoist
    /// rollback` puts back); returns the images recorded before those, which
    /// no rollback needs any more.
    async fn keep_previous(
        &self,
        event: &ImageEvent,
        reports: &[TargetReport],
        old_images: &HashMap<String, String>,
    ) -> Vec<String> {
        let mut older = Vec::new();
        for report in reports.iter().filter(|r| r.outcome == Outcome::Updated) {
            let Some(image_id) = old_images.get(&report.name) else {
                continue;
            };
            let previous = crate::journal::PreviousImage {
                image: event.reference.to_string(),
                digest: report.old_digest.as_ref().map(|d| d.as_str().to_string()),
                image_id: Some(image_id.clone()),
                at: Utc::now(),
            };
            match self.journal.set_previous(&report.name, previous).await {
                Ok(Some(before)) => older.extend(before.image_id.filter(|id| id != image_id)),
                Ok(None) => {}
                Err(e) => {
                    warn!(container = %report.name, error = %e, "Cannot record the image the target ran before; a rollback of it will not be possible.")
                }
            }
        }
        older
    }

    /// One try of a job: match, pull, update every target, repair what an
    /// engine fault left unsafe.
    ///
    /// `known` holds the targets this job already had (an earlier try, or a
    /// crash recovery): they stay targets even when the index, which follows
    /// the engine's events a moment behind, does not show them right after a
    /// repair renamed them back. It is updated for the next try.
    async fn try_job(
        &self,
        event: &ImageEvent,
        log: &StepLog,
        attempt: u32,
        known: &mut Vec<Target>,
        settled: &HashMap<String, Outcome>,
    ) -> Try {
        let snapshot = self.snapshot.borrow().clone();
        if !snapshot.is_synced() {
            // Without a first list of the engine's containers, "no target" would drop the push.
            return Try::EngineNotSeen(DeployError::EngineGone(
                "the engine has not answered since hoist started, so its containers are not known".into(),
            ));
        }
        let mut targets = matching_targets(event, &snapshot, &self.aliases);
        for target in known.iter() {
            if !targets.iter().any(|t| t.name == target.name) {
                targets.push(target.clone());
            }
        }
        // A rollback puts back one target's image, not every target's.
        if let Some(only) = event.only_target() {
            targets.retain(|t| t.name == only && t.kind == TargetKind::Container);
        }
        let targets = self.acting_on(targets).await;
        if targets.is_empty() {
            return Try::NoTarget;
        }
        known.clone_from(&targets);
        // The API version must be known before a container is recreated (an
        // engine down since start-up has not been asked yet).
        if let Err(e) = self.engine.ready().await {
            return Try::EngineNotSeen(DeployError::from_engine("the engine does not answer", &e));
        }
        if attempt == 1 {
            info!(image = %event.reference, digest = %event.digest.short(), targets = targets.len(), "Update started.");
        } else {
            info!(image = %event.reference, digest = %event.digest.short(), targets = targets.len(), attempt, "Update running again.");
        }
        let (results, new_image) = self.update_targets(event, &targets, log, settled).await;
        self.repair_unsafe(&results, log).await;
        Try::Ran(results, new_image.map(Box::new))
    }

    /// After a fault: waits with backoff until the engine answers a ping, the
    /// deadline passes, or shutdown starts.
    async fn wait_for_engine(&self, attempt: u32, deadline: Instant) -> Waited {
        let mut attempt = attempt;
        loop {
            let wait = RETRY_BACKOFF.wait(attempt);
            let now = Instant::now();
            if now >= deadline {
                return Waited::GaveUp;
            }
            tokio::select! {
                _ = self.stopping.cancelled() => return Waited::Stopping,
                _ = tokio::time::sleep(wait.min(deadline - now)) => {}
            }
            match self.engine.ping().await {
                Ok(()) => return Waited::Answers,
                Err(e) => debug!(error = %e, "The engine does not answer yet."),
            }
            attempt += 1;
        }
    }

    /// Brings the targets of a job that an earlier run of hoist left half
    /// done (it stopped, or the engine was gone) to a safe state, from the
    /// journal, retrying until each is safe. Returns what interrupted them.
    async fn recover_interrupted(
        &self,
        job: &mut Job,
        log: &StepLog,
    ) -> (HashMap<String, Interruption>, HashMap<String, Outcome>) {
        let mut interruptions = HashMap::new();
        let mut settled = HashMap::new();
        let steps = self.read_steps(job.id).await;
        let mut targets: Vec<&str> = steps.iter().map(|s| s.target.as_str()).collect();
        targets.sort();
        targets.dedup();
        for target in targets.iter().copied() {
            // Finished before hoist stopped (the targets before its own update,
            // say): reported as it ended, not as current when the job runs again.
            let last = steps.iter().rev().find(|s| s.target == target);
            if last
                .is_some_and(|s| s.step == container::steps::DONE && s.detail.as_deref() == Some("updated"))
            {
                job.recovered.push((target.to_string(), Outcome::Updated));
                continue;
            }
            // hoist's own update, handed to a relay: its outcome is a verdict, not run again.
            if let Some(outcome) = selfupdate::recover(&self.engine, target, &steps, log).await {
                job.recovered.push((target.to_string(), outcome.clone()));
                settled.insert(target.to_string(), outcome);
            }
        }
        for target in targets {
            for attempt in 1u32.. {
                match container::recover(&self.engine, target, &steps, log, HOIST_STOPPED).await {
                    None => break,
                    Some((outcome, true)) => {
                        interruptions.insert(
                            target.to_string(),
                            Interruption {
                                what: HOIST_STOPPED.to_string(),
                                rolled_back: matches!(outcome, Outcome::RolledBack { .. }),
                            },
                        );
                        job.recovered.push((target.to_string(), outcome));
                        break;
                    }
                    Some((_, false)) => tokio::time::sleep(RETRY_BACKOFF.wait(attempt)).await,
                }
            }
        }
        // Dependents after their targets: they attach to what the target became.
        for attempt in 1u32.. {
            let steps = self.read_steps(job.id).await;
            let repaired = dependents::recover(&self.engine, &steps, log).await;
            if repaired.iter().all(|(_, _, safe)| *safe) {
                break;
            }
            tokio::time::sleep(RETRY_BACKOFF.wait(attempt)).await;
        }
        (interruptions, settled)
    }

    /// The containers crash recovery repaired for this job, as targets, read
    /// from the engine: the index may not show them yet under their names.
    async fn recovered_targets(&self, job: &Job) -> Vec<Target> {
        let key = self.aliases.key(&job.event.reference);
        let mut targets = Vec::new();
        for (name, _) in &job.recovered {
            let Ok(details) = self.engine.inspect_container(name).await else {
                continue;
            };
            match crate::inventory::watch::target_from(&details) {
                Ok(target) if key.is_some() && self.aliases.key(&target.image) == key => targets.push(target),
                Ok(_) => debug!(container = %name, "Recovered, but no longer runs this tag."),
                Err(why) => debug!(container = %name, why, "Recovered, but not a target."),
            }
        }
        targets
    }

    /// The journaled steps of a job. Retried until read: running a job whose
    /// half-done state is unknown could undo the wrong container.
    async fn read_steps(&self, job: JobId) -> Vec<crate::journal::StepRecord> {
        for attempt in 1u32.. {
            match self.journal.steps(job).await {
                Ok(steps) => return steps,
                Err(e) => {
                    warn!(job = %job, error = %e, "Cannot read the journal; trying again.");
                    tokio::time::sleep(RETRY_BACKOFF.wait(attempt)).await;
                }
            }
        }
        unreachable!("the loop above only ends by returning")
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
            Ok(crate::journal::Acceptance::New(id)) => id,
            Ok(crate::journal::Acceptance::Duplicate(_)) => return,
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
            || service::acts_on_services(&self.engine, self.settings.services).await
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
            headline: None,
        };
        for report in &notification.targets {
            telemetry::job_outcome(report.outcome.as_str(), clock.elapsed());
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
        settled: &HashMap<String, Outcome>,
    ) -> (Vec<TargetResult>, Option<ImageDetails>) {
        let report = |target: &Target, outcome: Outcome, old_digest| TargetResult {
            report: report_for(target, outcome, old_digest),
            needs_repair: false,
            old_image_id: None,
            interrupted: None,
            touched: false,
            handed_over: false,
        };
        // Targets may name the registry differently (aliases); each name is pulled as the target names it.
        let mut pulled: HashMap<String, Result<ImageDetails, DeployError>> = HashMap::new();
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
                .settings
                .update
                .slots
                .run(
                    self.engine
                        .pull_digest(&repository, &event.digest, tag, auth.as_ref()),
                )
                .await
                .map_err(|e| {
                    // The engine gone mid-pull is a fault to try again after;
                    // the registry's refusal is a verdict, explained.
                    let fault = DeployError::from_engine("cannot pull the new image", &e);
                    if fault.is_transient() {
                        return fault;
                    }
                    let message = e.to_string();
                    let repository = target.image.repository();
                    DeployError::Verdict(
                        credentials
                            .explain_refusal(&message, registry, repository, auth.as_ref(), problem.as_ref())
                            .unwrap_or(message),
                    )
                });
            if let Err(e) = &result {
                warn!(image = %event.reference, error = %e, "Pull failed; nothing was changed.");
            }
            pulled.insert(repository, result);
        }
        let new_image = pulled.values().find_map(|r| r.as_ref().ok().cloned());
        log.after("pulled").await;
        let (owner_of, co_targets) = self.dependent_targets(targets, &pulled).await;
        let own = &self.settings.own;
        let plan = rollout::plan(targets.to_vec(), self.settings.canary, &owner_of, |t| {
            own.is(&t.id.0, &t.name)
        });
        let update = |target: Target| {
            let pulled = &pulled;
            let co_targets = &co_targets;
            async move {
                if let Some(outcome) = settled.get(&target.name) {
                    return report(&target, outcome.clone(), None);
                }
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
                    Some(Ok(image))
                        if own.is(&target.id.0, &target.name) && target.image_id != image.id() =>
                    {
                        match selfupdate::hand_over(&self.engine, &target.name, image, log).await {
                            Ok(()) => TargetResult {
                                handed_over: true,
                                ..report(&target, Outcome::Updated, None)
                            },
                            Err(why) => TargetResult {
                                interrupted: why.is_transient().then(|| why.clone()),
                                ..report(
                                    &target,
                                    Outcome::Failed {
                                        reason: why.to_string(),
                                    },
                                    None,
                                )
                            },
                        }
                    }
                    Some(Ok(image)) => {
                        let changes = self.contract_changes(&target, image).await;
                        if target.options.contract_block && changes.iter().any(Change::blocks) {
                            let blocking: Vec<&str> =
                                changes.iter().filter(|c| c.blocks()).map(|c| c.field).collect();
                            warn!(container = %target.name, changes = ?blocking, "Update blocked by hoist.contract=block; the old container keeps running.");
                            let reason =
                                format!("its {} would change; nothing was changed", blocking.join(" and "));
                            let mut result = report(&target, Outcome::Blocked { reason }, None);
                            result.report.contract = changes.into_iter().map(|c| c.text).collect();
                            return result;
                        }
                        let mut settings = self.settings_for(&target);
                        settings.co_targets = co_targets.clone();
                        let done =
                            container::update(&self.engine, &target.name, image, &repository, &settings, log)
                                .await;
                        let mut result = TargetResult {
                            needs_repair: done.needs_repair,
                            old_image_id: done.old_image_id,
                            interrupted: done.interrupted,
                            touched: done.touched,
                            ..report(&target, done.outcome, done.old_digest)
                        };
                        result.report.dependents = done.dependents;
                        result.report.note = done.note;
                        if result.report.outcome != Outcome::AlreadyCurrent {
                            result.report.contract = changes.into_iter().map(|c| c.text).collect();
                        }
                        result
                    }
                    Some(Err(e)) => TargetResult {
                        interrupted: e.is_transient().then(|| e.clone()),
                        ..report(
                            &target,
                            Outcome::Failed {
                                reason: e.to_string(),
                            },
                            None,
                        )
                    },
                    None => report(
                        &target,
                        Outcome::Failed {
                            reason: "image was not pulled".into(),
                        },
                        None,
                    ),
                }
            }
        };
        let held = |target: &Target, reason: String| report(target, Outcome::Failed { reason }, None);
        // Side by side: the slots bound the engine operations, and the
        // health gates, which are waiting, overlap.
        let mut updates = rollout::run(plan, targets.len().max(1), update, held).await;
        // A dependent target its owner's update already moved to the new image.
        let carried: HashMap<String, Outcome> = updates
            .iter()
            .flat_map(|r| r.report.dependents.iter())
            .map(|d| (d.name.clone(), d.outcome.clone()))
            .collect();
        for result in &mut updates {
            if result.report.outcome == Outcome::AlreadyCurrent {
                if let (Some(outcome), Some(owner)) = (
                    carried.get(&result.report.name),
                    owner_of.get(&result.report.name),
                ) {
                    result.report.outcome = outcome.clone();
                    result.report.note = Some(format!("updated with {owner}, which it depends on"));
                }
            }
        }
        updates.sort_by(|a, b| a.report.name.cmp(&b.report.name));
        (updates, new_image)
    }
}

/// One target's end of a try, with what the runner still has to do about it.
struct TargetResult {
    report: TargetReport,
    /// The rollback could not complete; see [`Runner::repair_unsafe`].
    needs_repair: bool,
    old_image_id: Option<String>,
    /// Cut off by a fault that is no verdict: the job runs again.
    interrupted: Option<DeployError>,
    /// The old container had been parked (so it was, or is being, rolled back).
    touched: bool,
    /// hoist's own update went to the relay: this hoist is about to be stopped.
    handed_over: bool,
}

impl rollout::Verdict for TargetResult {
    fn passed(&self) -> bool {
        self.interrupted.is_none()
            && matches!(
                self.report.outcome,
                Outcome::Updated | Outcome::AlreadyCurrent | Outcome::MonitorOnly
            )
    }
}

impl TargetResult {
    /// The fault lasted past its bound: the outcome is now a verdict, with the fault's own words.
    fn give_up(&mut self, tries: u32) {
        if let Some(why) = self.interrupted.take() {
            self.report.outcome = Outcome::Failed {
                reason: format!("{why}; still failing after {tries} tries"),
            };
        }
    }
}

/// How one try of a job ended.
enum Try {
    NoTarget,
    /// The engine has not been listed since start-up: targets unknown.
    EngineNotSeen(DeployError),
    Ran(Vec<TargetResult>, Option<Box<ImageDetails>>),
}

/// How a wait for the engine ended.
enum Waited {
    Answers,
    GaveUp,
    Stopping,
}

/// What cut a target's update off before it got anywhere, for its report.
#[derive(Clone, Debug)]
struct Interruption {
    /// "engine restarted", "hoist stopped", ...
    what: String,
    /// The old container had been parked, and was put back.
    rolled_back: bool,
}

impl Interruption {
    /// "engine restarted during the update; rolled back, then updated at 2026-12-02 10:42:13 UTC".
    fn note(&self, outcome: &Outcome, at: chrono::DateTime<Utc>) -> String {
        let mut note = format!("{} during the update", self.what);
        if self.rolled_back {
            note.push_str("; rolled back");
        }
        let at = at.format("%Y-%m-%d %H:%M:%S UTC");
        match outcome {
            Outcome::Updated if self.rolled_back => note.push_str(&format!(", then updated at {at}")),
            Outcome::Updated => note.push_str(&format!("; updated at {at}")),
            Outcome::AlreadyCurrent | Outcome::MonitorOnly => {}
            _ => note.push_str(&format!("; tried again until {at}")),
        }
        note
    }
}

impl Runner {
    /// Targets whose rollback could not complete (the engine went away mid-way)
    /// are repaired here, with backoff, until they are safe: never given up.
    /// The job's key stays locked meanwhile, so no other update of the image
    /// can start.
    async fn repair_unsafe(&self, results: &[TargetResult], log: &StepLog) {
        for result in results.iter().filter(|r| r.needs_repair) {
            let name = &result.report.name;
            let cause = result
                .interrupted
                .as_ref()
                .map_or("the engine went away", DeployError::what_happened);
            for attempt in 1u32.. {
                let wait = RETRY_BACKOFF.wait(attempt);
                error!(container = %name, retry_in = ?wait, "The target is not in a safe state; repairing.");
                tokio::time::sleep(wait).await;
                let steps = self.read_steps(log.job()).await;
                match container::recover(&self.engine, name, &steps, log, cause).await {
                    Some((_, false)) => {}
                    Some((_, true)) | None => {
                        dependents::recover(&self.engine, &steps, log).await;
                        break;
                    }
                }
            }
        }
    }

    /// Removes the images the updated targets ran before, when no container
    /// uses them any more (the engine refuses otherwise, which is fine).
    async fn remove_old_images(&self, mut old: Vec<String>) {
        old.sort();
        old.dedup();
        // An image some target still has as its previous one stays.
        match self.journal.previous_image_ids().await {
            Ok(kept) => old.retain(|id| !kept.contains(id)),
            Err(e) => {
                warn!(error = %e, "Cannot read which images rollbacks need; removing none.");
                return;
            }
        }
        for image in &old {
            match self.engine.remove_image(image).await {
                Ok(()) => info!(image, "Old image removed."),
                Err(e) => debug!(image, error = %e, "Old image kept."),
            }
        }
    }

    /// What `new` changes against the image `target` runs now (nothing when
    /// it runs `new` already, or the old image cannot be read).
    async fn contract_changes(&self, target: &Target, new: &ImageDetails) -> Vec<Change> {
        if target.image_id == new.id() {
            return Vec::new();
        }
        match self.engine.inspect_image(&target.image_id).await {
            Ok(old) => contract::diff(
                &contract::Contract::of_image(&old),
                &contract::Contract::of_image(new),
            ),
            Err(e) => {
                debug!(container = %target.name, error = %e, "Cannot read the old image; its changes are not shown.");
                Vec::new()
            }
        }
    }

    /// Container targets of this push that depend on another one (its
    /// network namespace, volumes, links): each one's owner, and the image
    /// the owner's update recreates it on, so it is updated once.
    async fn dependent_targets(
        &self,
        targets: &[Target],
        pulled: &HashMap<String, Result<ImageDetails, DeployError>>,
    ) -> (HashMap<String, String>, dependents::CoTargets) {
        let mut owner_of = HashMap::new();
        let mut co_targets = HashMap::new();
        let containers: Vec<&Target> = targets
            .iter()
            .filter(|t| t.kind == TargetKind::Container && !t.monitor_only)
            .collect();
        if containers.len() < 2 {
            return (owner_of, Arc::default());
        }
        // Inspected a few at a time: a fan-out push has many targets.
        let names: Vec<String> = containers.iter().map(|t| t.name.clone()).collect();
        let engine = self.engine.clone();
        let inspected: Vec<(String, Result<_, _>)> = futures_util::stream::iter(names)
            .map(move |name| {
                let engine = engine.clone();
                async move {
                    let details = engine.inspect_container(&name).await;
                    (name, details)
                }
            })
            .buffered(8)
            .collect()
            .await;
        for (target, (_, details)) in containers.iter().zip(inspected) {
            let Ok(details) = details else {
                continue;
            };
            let owner = containers
                .iter()
                .find(|o| o.name != target.name && dependents::depends_on(&details, &o.id.0, &o.name));
            let image = pulled
                .get(&engine_repository(&target.image))
                .and_then(|r| r.as_ref().ok());
            if let (Some(owner), Some(image)) = (owner, image) {
                owner_of.insert(target.name.clone(), owner.name.clone());
                co_targets.insert(target.name.clone(), image.clone());
            }
        }
        (owner_of, Arc::new(co_targets))
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
        if let Some(order) = target.options.order {
            settings.order = order;
        }
        settings.drain = target.options.drain.unwrap_or(container::DEFAULT_DRAIN);
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
        note: None,
        contract: Vec::new(),
        dependents: Vec::new(),
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
    fn a_note_says_what_interrupted_an_update_and_how_it_ended() {
        use chrono::TimeZone;
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 10, 42, 13).unwrap();
        let restarted = Interruption {
            what: DeployError::EngineGone(String::new()).what_happened().into(),
            rolled_back: true,
        };
        assert_eq!(
            restarted.note(&Outcome::Updated, at),
            "engine restarted during the update; rolled back, then updated at 2026-12-02 10:42:13 UTC"
        );
        let untouched = Interruption {
            what: DeployError::EngineStalled(String::new()).what_happened().into(),
            rolled_back: false,
        };
        assert_eq!(
            untouched.note(&Outcome::Updated, at),
            "engine stopped answering during the update; updated at 2026-12-02 10:42:13 UTC"
        );
        let failed = Outcome::RolledBack {
            reason: "unhealthy".into(),
            log_tail: Vec::new(),
        };
        assert_eq!(
            restarted.note(&failed, at),
            "engine restarted during the update; rolled back; tried again until 2026-12-02 10:42:13 UTC"
        );
    }

    #[test]
    fn giving_up_turns_an_interruption_into_a_failure_with_the_real_reason() {
        let reference = crate::event::ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap();
        let mut result = TargetResult {
            report: TargetReport {
                name: "web".into(),
                compose_project: None,
                compose_service: None,
                old_digest: None,
                outcome: Outcome::Failed {
                    reason: "cannot pull".into(),
                },
                note: None,
                contract: Vec::new(),
                dependents: Vec::new(),
            },
            needs_repair: false,
            old_image_id: None,
            interrupted: Some(DeployError::EngineGone(format!(
                "cannot pull {reference}: docker engine unreachable"
            ))),
            touched: false,
            handed_over: false,
        };
        result.give_up(7);
        assert_eq!(
            result.report.outcome,
            Outcome::Failed {
                reason: format!(
                    "cannot pull {reference}: docker engine unreachable; still failing after 7 tries"
                )
            }
        );
        assert!(result.interrupted.is_none());
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
