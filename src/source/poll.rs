//! Polling: for registries that send no notifications, ask for each watched
//! tag's digest and treat a new one as a push.
//!
//! Which tags, and how often: every tag some target runs, at `HOIST_POLL_INTERVAL`
//! (off by default) or its targets' `hoist.poll` label (the shortest wins;
//! `off` on a target leaves it out). One `HEAD` per distinct tag per interval,
//! however many containers run it, each due time jittered by ±10% so that
//! tags polled at one interval spread out.
//!
//! What a poll does: [`registry::Client::digest`]. The first answer for a tag
//! is compared with the image its targets run (their repo digests); later ones
//! with the previous answer. A new digest that the targets do not all run
//! already, and for which no job is queued yet (a webhook may have told of
//! it first), is journaled and queued like a webhook event, with source
//! `poll`, on the intake queue the webhook route feeds: from there on it is
//! an ordinary job, deduplicated, run and notified as any other.
//!
//! Failures are per registry and counted (`hoist_polls_total{registry,outcome}`).
//! The client pauses a registry after a 429 (until its `Retry-After`) or an
//! outage (backoff with jitter); its tags are not polled before then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::backoff::jitter_fraction;
use crate::engine::Engine;
use crate::event::{Aliases, Digest, ImageEvent, ImageRef, SourceKind, TagKey};
use crate::inventory::{IndexSnapshot, Target, TargetKind};
use crate::job::{Job, JobQueue, Journal, QueueError};
use crate::journal::Acceptance;
use crate::registry;
use crate::telemetry;

/// At most this many tags are asked for at once.
const CONCURRENT_POLLS: usize = 4;
/// A tag seen for the first time is first polled within this (or its interval, if shorter).
const FIRST_POLL_SPREAD: Duration = Duration::from_secs(10);
/// When nothing is due, the loop still wakes this often (a guard, not a schedule).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// What the poller needs. Built once by `app`.
pub struct Poller {
    pub client: registry::Client,
    /// Reads the repo digests of the images targets run, for a tag's first poll.
    pub engine: Engine,
    /// Where a change is recorded before it is queued, and where open jobs are looked up.
    pub journal: Journal,
    /// The intake queue (the one the webhook route feeds). Dropped when the task ends.
    pub jobs: JobQueue,
    pub aliases: Aliases,
    /// `HOIST_POLL_INTERVAL`: `None` polls only targets labelled `hoist.poll`.
    pub interval: Option<Duration>,
}

/// One polled tag.
#[derive(Clone, Debug)]
struct Polled {
    /// The reference asked for: the first target's (by name), host as it names it.
    image: ImageRef,
    interval: Duration,
    due: Instant,
    /// The digest the last poll recorded; `None` before the first answer.
    last: Option<Digest>,
}

/// Which tags are polled, and when each is due next. Pure: the clock is an argument.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    tags: HashMap<TagKey, Polled>,
}

/// The interval a target asks for: its label, else the default.
fn target_interval(target: &Target, default: Option<Duration>) -> Option<Duration> {
    match target.options.poll {
        Some(label) => label,
        None => default,
    }
}

/// `interval` ±10%, so that tags polled at one interval drift apart.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * jitter_fraction())
}

impl Schedule {
    /// Brings the tag list in line with the targets: one entry per distinct
    /// tag (aliases applied), at the shortest interval its targets ask for.
    /// Known tags keep their last digest and due time.
    pub(crate) fn sync(
        &mut self,
        snapshot: &IndexSnapshot,
        aliases: &Aliases,
        default: Option<Duration>,
        now: Instant,
    ) {
        let mut wanted: HashMap<TagKey, (ImageRef, Duration)> = HashMap::new();
        let mut targets: Vec<&Target> = snapshot.all().collect();
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        for target in targets {
            let (Some(interval), Some(key)) = (target_interval(target, default), aliases.key(&target.image))
            else {
                continue;
            };
            wanted
                .entry(key)
                .and_modify(|(_, shortest)| *shortest = (*shortest).min(interval))
                .or_insert_with(|| (target.image.without_digest(), interval));
        }
        self.tags.retain(|key, _| wanted.contains_key(key));
        for (key, (image, interval)) in wanted {
            match self.tags.get_mut(&key) {
                Some(polled) => {
                    polled.image = image;
                    if polled.interval != interval {
                        polled.interval = interval;
                        polled.due = polled.due.min(now + jittered(interval));
                    }
                }
                None => {
                    let first = interval.min(FIRST_POLL_SPREAD).mul_f64(jitter_fraction());
                    self.tags.insert(
                        key,
                        Polled {
                            image,
                            interval,
                            due: now + first,
                            last: None,
                        },
                    );
                }
            }
        }
    }

    /// The tags due at `now`.
    pub(crate) fn due(&self, now: Instant) -> Vec<TagKey> {
        let mut due: Vec<TagKey> = self
            .tags
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        due
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.tags.values().map(|p| p.due).min()
    }

    /// Records a poll: the digest to remember (unchanged when `None`) and the
    /// next due time, never before `not_before` (a registry's pause).
    fn polled(&mut self, key: &TagKey, record: Option<Digest>, not_before: Option<Instant>, now: Instant) {
        if let Some(polled) = self.tags.get_mut(key) {
            if record.is_some() {
                polled.last = record;
            }
            let next = now + jittered(polled.interval);
            polled.due = not_before.map_or(next, |at| next.max(at));
        }
    }

    /// Puts off a tag until `at` without polling it (its registry is paused).
    fn postpone(&mut self, key: &TagKey, at: Instant) {
        if let Some(polled) = self.tags.get_mut(key) {
            polled.due = polled.due.max(at);
        }
    }

    fn get(&self, key: &TagKey) -> Option<&Polled> {
        self.tags.get(key)
    }

    /// The registry a tag is polled at: the host its targets name, not the canonical alias.
    fn registry_of(&self, key: &TagKey) -> String {
        self.get(key)
            .map_or_else(|| key.registry.clone(), |p| p.image.registry().to_string())
    }
}

/// What one poll found, for the schedule.
struct PollResult {
    key: TagKey,
    /// The digest to remember; `None` keeps the last one (failure, or a change
    /// that could not be queued and should be found again).
    record: Option<Digest>,
    /// A paused registry's `retry_at`.
    not_before: Option<Instant>,
}

impl Poller {
    /// Polls until `cancel` fires, following the target index through `snapshot`.
    pub async fn run(self, mut snapshot: watch::Receiver<Arc<IndexSnapshot>>, cancel: CancellationToken) {
        let mut schedule = Schedule::default();
        let mut announced = false;
        loop {
            let current = snapshot.borrow_and_update().clone();
            let now = Instant::now();
            schedule.sync(&current, &self.aliases, self.interval, now);
            if !announced && schedule.next_due().is_some() {
                info!(
                    tags = schedule.tags.len(),
                    "Polling registries for the targets' tags."
                );
                announced = true;
            }
            let mut due = Vec::new();
            for key in schedule.due(now) {
                match self.client.paused_until(&schedule.registry_of(&key)) {
                    Some(until) => schedule.postpone(&key, until),
                    None => due.push(key),
                }
            }
            if due.is_empty() {
                let wake = schedule.next_due().unwrap_or(now + IDLE_WAKE);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = snapshot.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep_until(wake) => {}
                }
                continue;
            }
            let polls = due.into_iter().filter_map(|key| {
                let polled = schedule.get(&key)?.clone();
                let targets = current.targets_for(&key).to_vec();
                Some(self.poll(key, polled, targets))
            });
            let results: Vec<PollResult> = tokio::select! {
                _ = cancel.cancelled() => return,
                results = futures_util::stream::iter(polls).buffer_unordered(CONCURRENT_POLLS).collect() => results,
            };
            let now = Instant::now();
            for result in results {
                schedule.polled(&result.key, result.record, result.not_before, now);
            }
        }
    }

    /// Asks for one tag's digest and queues an update when it is new.
    #[instrument(skip_all, fields(image = %polled.image))]
    async fn poll(&self, key: TagKey, polled: Polled, targets: Vec<Target>) -> PollResult {
        let registry = polled.image.registry().to_string();
        let digest = match self.client.digest(&polled.image).await {
            Ok(digest) => digest,
            Err(error) => {
                telemetry::poll(&registry, error.kind());
                warn!(error = %error, "Poll failed.");
                return PollResult {
                    key,
                    record: None,
                    not_before: error.retry_at(),
                };
            }
        };
        let done = |record: Option<Digest>| PollResult {
            key: key.clone(),
            record,
            not_before: None,
        };
        if polled.last.as_ref() == Some(&digest) {
            telemetry::poll(&registry, "unchanged");
            debug!(digest = %digest.short(), "Tag unchanged.");
            return done(Some(digest));
        }
        // New to this poller: the first answer, or a change. It is news only if
        // some target runs something else and no job for it is queued yet.
        if self.all_run(&targets, &digest).await {
            let outcome = if polled.last.is_none() {
                "unchanged"
            } else {
                "current"
            };
            telemetry::poll(&registry, outcome);
            debug!(digest = %digest.short(), "Every target runs the registry's digest.");
            return done(Some(digest));
        }
        if self.job_open_for(&polled.image, &digest).await {
            telemetry::poll(&registry, "current");
            debug!(digest = %digest.short(), "A job for this digest is queued already.");
            return done(Some(digest));
        }
        match self.queue(&polled.image, &digest).await {
            Ok(()) => {
                telemetry::poll(&registry, "changed");
                done(Some(digest))
            }
            Err(why) => {
                telemetry::poll(&registry, "queue_failed");
                warn!(digest = %digest.short(), why, "A new digest found by polling could not be queued; the next poll tries again.");
                done(None)
            }
        }
    }

    /// Whether every target runs `digest` already (a container's image has it
    /// among its repo digests; a service is pinned to it).
    async fn all_run(&self, targets: &[Target], digest: &Digest) -> bool {
        for target in targets {
            let runs = match target.kind {
                TargetKind::Service => target.image_id == digest.as_str(),
                TargetKind::Container => match self.engine.inspect_image(&target.image_id).await {
                    Ok(image) => image
                        .repo_digests()
                        .iter()
                        .any(|d| d.rsplit_once('@').is_some_and(|(_, d)| d == digest.as_str())),
                    Err(e) => {
                        debug!(container = %target.name, error = %e, "Cannot read the image the target runs.");
                        false
                    }
                },
            };
            if !runs {
                return false;
            }
        }
        !targets.is_empty()
    }

    /// Whether the journal holds a job not yet finished for this tag and digest
    /// (a webhook told of it first).
    async fn job_open_for(&self, image: &ImageRef, digest: &Digest) -> bool {
        let key = self.aliases.key(image);
        match self.journal.unfinished().await {
            Ok(jobs) => jobs
                .iter()
                .any(|job| job.event.digest == *digest && self.aliases.key(&job.event.reference) == key),
            Err(e) => {
                debug!(error = %e, "Cannot read the open jobs; queueing anyway.");
                false
            }
        }
    }

    /// Journals and queues the change, exactly as the webhook route does.
    async fn queue(&self, image: &ImageRef, digest: &Digest) -> Result<(), String> {
        let event = ImageEvent {
            reference: image.without_digest(),
            digest: digest.clone(),
            source: SourceKind::Poll,
            delivery_id: None,
            actor: None,
            received_at: Utc::now(),
        };
        // A full queue is a failed poll: the change is found again at the next one.
        let permit = match self.jobs.try_reserve_many(1) {
            Ok(mut permits) => permits.pop().ok_or("no room in the queue")?,
            Err(QueueError::Full) => return Err("the queue is full".into()),
            Err(QueueError::Closed) => return Err("shutting down".into()),
        };
        match self.journal.accept(&event).await {
            Ok(Acceptance::New(id)) => {
                telemetry::event_received(SourceKind::Poll.as_str(), "update");
                info!(source = "poll", image = %event.reference, digest = %event.digest.short(), job = %id, "New digest found by polling.");
                permit.send(Job {
                    id,
                    event,
                    recovered: Vec::new(),
                });
                Ok(())
            }
            Ok(Acceptance::Duplicate(_)) => Ok(()),
            Err(e) => Err(format!("the journal cannot record it: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{TargetId, TargetIndex, TargetOptions};

    fn target(id: &str, image: &str, poll: Option<Option<Duration>>) -> Target {
        Target {
            id: TargetId(id.into()),
            kind: TargetKind::Container,
            name: id.into(),
            image: ImageRef::parse(image).unwrap(),
            image_id: "sha256:x".into(),
            running: true,
            monitor_only: false,
            options: TargetOptions {
                enabled: true,
                poll,
                ..TargetOptions::default()
            },
            compose_project: None,
            compose_service: None,
        }
    }

    fn snapshot(aliases: &Aliases, targets: Vec<Target>) -> Arc<IndexSnapshot> {
        let mut index = TargetIndex::new(aliases.clone());
        index.replace_all(targets);
        index.snapshot()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn one_poll_per_distinct_tag_at_the_shortest_interval() {
        let aliases = Aliases::parse("registry.example.test=127.0.0.1:5000").unwrap();
        let snap = snapshot(
            &aliases,
            vec![
                // Three containers of one tag (one through an alias): one entry, polled every minute.
                target("a", "127.0.0.1:5000/team/app:1", None),
                target("b", "127.0.0.1:5000/team/app:1", Some(Some(MINUTE))),
                target("c", "registry.example.test/team/app:1", None),
                // Off by label; and a tag only an `off` target runs is not polled.
                target("d", "127.0.0.1:5000/team/app:2", Some(None)),
                target("e", "127.0.0.1:5000/team/other:1", None),
            ],
        );
        let mut schedule = Schedule::default();
        let start = Instant::now();
        schedule.sync(&snap, &aliases, Some(10 * MINUTE), start);
        assert_eq!(schedule.tags.len(), 2, "{schedule:?}");
        let app = aliases
            .key(&ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap())
            .unwrap();
        let other = aliases
            .key(&ImageRef::parse("127.0.0.1:5000/team/other:1").unwrap())
            .unwrap();
        assert_eq!(schedule.get(&app).unwrap().interval, MINUTE);
        assert_eq!(schedule.get(&other).unwrap().interval, 10 * MINUTE);
        // The first poll of each is within the first spread.
        let first = start + FIRST_POLL_SPREAD;
        assert_eq!(schedule.due(first), vec![app.clone(), other.clone()]);

        // After a poll, the next is one interval ±10% away.
        schedule.polled(&app, None, None, first);
        let next = schedule.get(&app).unwrap().due;
        assert!(
            next >= first + MINUTE.mul_f64(0.9) && next <= first + MINUTE.mul_f64(1.1),
            "{:?}",
            next - first
        );
        assert!(!schedule.due(first).contains(&app));
        // A paused registry: not before its retry time, even past the interval.
        schedule.polled(&other, None, Some(first + 60 * MINUTE), first);
        assert_eq!(schedule.get(&other).unwrap().due, first + 60 * MINUTE);

        // Without a global interval only the labelled tag stays; its digest is kept.
        schedule.polled(
            &app,
            Some(Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap()),
            None,
            first,
        );
        schedule.sync(&snap, &aliases, None, first);
        assert_eq!(schedule.tags.keys().collect::<Vec<_>>(), vec![&app]);
        assert!(schedule.get(&app).unwrap().last.is_some());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let wait = jittered(MINUTE);
            assert!(
                wait >= MINUTE.mul_f64(0.9) && wait <= MINUTE.mul_f64(1.1),
                "{wait:?}"
            );
        }
    }
}
