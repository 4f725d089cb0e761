//! Base images: when the image a target's image was built on moves, ask CI
//! to rebuild it. The running containers are not touched: their image has not
//! changed.
//!
//! - A target's base is read from its image's OCI labels
//!   (`org.opencontainers.image.base.name`/`.base.digest`, which the engine
//!   copies onto the container) or the container label `hoist.base=<ref>`
//!   (`inventory::labels`).
//! - A new digest of a base is heard from every source: intake hands each
//!   push to [`BaseWatch::heard`], whether or not a target runs the pushed
//!   tag; and with `HOIST_BASE_POLL_INTERVAL`, each distinct base is asked
//!   for its digest (one HEAD per base per interval).
//! - A base digest other than the one an image records (or, for an image that
//!   records none, than the one hoist last saw) journals one rebuild per app
//!   image and new base digest (`rebuilds` table): heard again, after a
//!   restart too, it asks nothing more.
//! - The caller POSTs each pending rebuild to the target's
//!   `hoist.rebuild-hook` or `HOIST_REBUILD_HOOK_URL` (`hook`), retries with
//!   backoff while the receiver is down, and notifies once it is asked.
//!   Pending calls resume after a restart.
//!
//! Dependencies point down: intake calls this; this reads the inventory,
//! asks the registry, writes the journal and tells the notifier.

pub mod hook;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use crate::backoff::Backoff;
use crate::deploy::Outcome;
use crate::event::{Aliases, Digest, ImageRef, SourceKind, TagKey, TagPush};
use crate::inventory::{IndexSnapshot, Target, TargetKind};
use crate::journal::{Journal, Rebuild};
use crate::notify::{Notification, TargetReport};
use crate::registry;
use crate::secret::Secret;
use crate::settings::{parse_poll, Reader};
pub use hook::HookFormat;

/// The variables this module reads (listed in `config::variables`).
pub mod keys {
    pub const REBUILD_HOOK_URL: &str = "HOIST_REBUILD_HOOK_URL";
    pub const REBUILD_HOOK_TOKEN: &str = "HOIST_REBUILD_HOOK_TOKEN";
    pub const REBUILD_HOOK_FORMAT: &str = "HOIST_REBUILD_HOOK_FORMAT";
    pub const BASE_POLL_INTERVAL: &str = "HOIST_BASE_POLL_INTERVAL";
}

/// Waits between calls of a hook that is down.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
/// The most time one digest look-up of a base may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pushes waiting to be compared; past this they are dropped with a warning
/// (the next push or poll of that base is compared instead).
const HEARD_CAPACITY: usize = 1024;

pub const BASE_DIGESTS: &str = "hoist_base_digests_total";
pub const REBUILD_CALLS: &str = "hoist_rebuild_calls_total";

/// One base digest compared for one app image: `unchanged`, `requested` (a
/// rebuild journaled), `known` (asked before), `baseline` (first digest seen
/// of a base the image records no digest of), or a registry error's kind.
fn counted(outcome: &'static str) {
    metrics::counter!(BASE_DIGESTS, "outcome" => outcome).increment(1);
}

/// One call of a rebuild hook: `ok`, `retried`, `refused`, `no_hook`.
fn called(outcome: &'static str) {
    metrics::counter!(REBUILD_CALLS, "outcome" => outcome).increment(1);
}

/// `HOIST_REBUILD_HOOK_*` and `HOIST_BASE_POLL_INTERVAL`.
#[derive(Clone, Debug, Default)]
pub struct BaseConfig {
    /// Where to ask for a rebuild, unless a target names its own hook.
    pub hook_url: Option<Secret<Url>>,
    /// Sent as a bearer token (or as the format puts it).
    pub token: Option<Secret<String>>,
    pub format: HookFormat,
    /// How often each distinct base is asked for its digest; `None` is off.
    pub poll_interval: Option<Duration>,
}

impl BaseConfig {
    pub fn from_reader(r: &mut Reader<'_>) -> BaseConfig {
        let hook_url = r.secret(keys::REBUILD_HOOK_URL).and_then(|text| {
            match Url::parse(text.expose()) {
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some_and(|h| !h.is_empty()) =>
                {
                    Some(Secret::new(url))
                }
                // The value is not echoed: it may carry a trigger token.
                _ => {
                    r.problem(
                        keys::REBUILD_HOOK_URL,
                        None,
                        "expected an http(s) URL with a host".into(),
                    );
                    None
                }
            }
        });
        let token = r.secret(keys::REBUILD_HOOK_TOKEN);
        let format = r.parsed(keys::REBUILD_HOOK_FORMAT, HookFormat::Hoist);
        let poll_interval = r.string(keys::BASE_POLL_INTERVAL).and_then(|text| {
            parse_poll(&text).unwrap_or_else(|message| {
                r.problem(keys::BASE_POLL_INTERVAL, Some(text), message);
                None
            })
        });
        BaseConfig {
            hook_url,
            token,
            format,
            poll_interval,
        }
    }
}

/// A push heard by intake.
struct Heard {
    reference: ImageRef,
    digest: Option<Digest>,
    source: SourceKind,
}

/// Intake's handle: hands pushes over without waiting. Cheap to clone.
#[derive(Clone)]
pub struct BaseWatch {
    heard: mpsc::Sender<Heard>,
    aliases: Aliases,
    /// The match keys of every target's base, kept current by the watch:
    /// every other push (nearly all of them) is skipped here, at no cost.
    /// A std lock, held to read or replace the set, never across an `.await`.
    keys: Arc<RwLock<HashSet<TagKey>>>,
}

impl BaseWatch {
    /// Hands every push of a target's base over for comparison; never waits.
    pub fn heard(&self, pushes: &[TagPush]) {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        for push in pushes {
            if !self
                .aliases
                .key(&push.reference)
                .is_some_and(|key| keys.contains(&key))
            {
                continue;
            }
            let heard = Heard {
                reference: push.reference.without_digest(),
                digest: push.digest.clone(),
                source: push.source,
            };
            if self.heard.try_send(heard).is_err() {
                warn!(image = %push.reference, "Too many pushes waiting to be compared with base images; this one is not.");
            }
        }
    }
}

/// Tells the notifier; the app passes the notifier's `notify`.
pub type NotifyFn = Arc<dyn Fn(Notification) + Send + Sync>;

/// Whether this hoist acts on Swarm services now (it runs on the leader);
/// the app passes `deploy::service::acts_on_services` on its engine.
pub type LeaderCheck = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// Everything the base watch needs.
pub struct Watcher {
    pub config: BaseConfig,
    pub journal: Journal,
    pub registry: registry::Client,
    pub aliases: Aliases,
    pub snapshot: watch::Receiver<Arc<IndexSnapshot>>,
    pub notify: NotifyFn,
    /// Every manager lists the services, so only the leader's hoist asks
    /// for a rebuild of a service's image: one call per base digest.
    pub leads_services: LeaderCheck,
}

impl Watcher {
    /// Starts the watch and the caller; both end when `stop` is cancelled.
    pub fn start(self, stop: CancellationToken) -> Result<(BaseWatch, JoinHandle<()>), String> {
        let caller = hook::Caller::new(self.config.format, self.config.token.clone())?;
        let (tx, rx) = mpsc::channel(HEARD_CAPACITY);
        let wake = Arc::new(Notify::new());
        let this_aliases = self.aliases.clone();
        let this = Arc::new(self);
        if let Some(every) = this.config.poll_interval {
            info!(every = ?every, "Base images are polled.");
        }
        let keys: Arc<RwLock<HashSet<TagKey>>> = Arc::default();
        let watch_task = tokio::spawn(this.clone().watch(rx, keys.clone(), wake.clone(), stop.clone()));
        let call_task = tokio::spawn(this.call_loop(caller, wake, stop.clone()));
        // At shutdown both stop where they are, even mid-call: a call cut off
        // stays pending in the journal and is made again at the next start
        // (at least once; never left to run on beside the next instance).
        let task = tokio::spawn(async move {
            stop.cancelled().await;
            for (name, task) in [("watch", watch_task), ("caller", call_task)] {
                task.abort();
                if let Err(e) = task.await {
                    if !e.is_cancelled() {
                        warn!(error = %e, task = name, "A base image task failed.");
                    }
                }
            }
        });
        let handle = BaseWatch {
            heard: tx,
            aliases: this_aliases,
            keys,
        };
        Ok((handle, task))
    }

    async fn watch(
        self: Arc<Self>,
        mut heard: mpsc::Receiver<Heard>,
        keys: Arc<RwLock<HashSet<TagKey>>>,
        wake: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let publish = |snapshot: &IndexSnapshot| {
            let now: HashSet<TagKey> = self.bases(snapshot).into_keys().collect();
            *keys.write().unwrap_or_else(PoisonError::into_inner) = now;
        };
        let mut snapshot = self.snapshot.clone();
        let mut poll = self.config.poll_interval.map(|every| {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        // Bases named without a digest whose first digest was looked for.
        let mut baselined: HashSet<TagKey> = HashSet::new();
        let current = snapshot.borrow_and_update().clone();
        publish(&current);
        self.baseline(&current, &mut baselined).await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = heard.recv() => match next {
                    Some(heard) => self.on_heard(heard, &wake).await,
                    None => return,
                },
                changed = snapshot.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let current = snapshot.borrow_and_update().clone();
                    publish(&current);
                    self.baseline(&current, &mut baselined).await;
                }
                _ = tick(&mut poll) => self.poll(&wake).await,
            }
        }
    }

    /// The targets of each distinct base, by its match key.
    fn bases(&self, snapshot: &IndexSnapshot) -> BTreeMap<TagKey, (ImageRef, Vec<Target>)> {
        let mut bases: BTreeMap<TagKey, (ImageRef, Vec<Target>)> = BTreeMap::new();
        for target in snapshot.all() {
            let Some(base) = &target.options.base else {
                continue;
            };
            let Some(key) = self.aliases.key(&base.name) else {
                continue;
            };
            bases
                .entry(key)
                .or_insert_with(|| (base.name.clone(), Vec::new()))
                .1
                .push(target.clone());
        }
        bases
    }

    /// Looks up, once per base, the digest of each base that an image names
    /// without one and that hoist has not seen yet: the digest a later one is
    /// compared with.
    async fn baseline(&self, snapshot: &IndexSnapshot, baselined: &mut HashSet<TagKey>) {
        for (key, (name, targets)) in self.bases(snapshot) {
            if baselined.contains(&key) || targets.iter().all(|t| recorded(t).is_some()) {
                continue;
            }
            baselined.insert(key.clone());
            match self.journal.base_digest(key_text(&key)).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "Cannot read the journal.");
                    continue;
                }
            }
            match self.lookup(&name).await {
                Ok(digest) => {
                    debug!(base = %name, digest = %digest.short(), "First digest of a base image seen.");
                    self.remember(&key, &digest).await;
                    counted("baseline");
                }
                Err(kind) => counted(kind),
            }
        }
    }

    async fn lookup(&self, name: &ImageRef) -> Result<Digest, &'static str> {
        match self.registry.digest_within(name, LOOKUP_TIMEOUT).await {
            Ok(digest) => Ok(digest),
            Err(e) => {
                warn!(base = %name, error = %e, "Cannot ask the registry for the base image's digest.");
                Err(e.kind())
            }
        }
    }

    async fn remember(&self, key: &TagKey, digest: &Digest) {
        if let Err(e) = self.journal.set_base_digest(key_text(key), digest.clone()).await {
            warn!(error = %e, "Cannot record the base image's digest.");
        }
    }

    async fn on_heard(&self, heard: Heard, wake: &Notify) {
        let Some(key) = self.aliases.key(&heard.reference) else {
            return;
        };
        let snapshot = self.snapshot.borrow().clone();
        let Some((name, targets)) = self.bases(&snapshot).remove(&key) else {
            return;
        };
        let digest = match heard.digest {
            Some(digest) => digest,
            // Docker Hub, Quay, ...: ask where the targets recorded the base.
            None => match self.lookup(&name).await {
                Ok(digest) => digest,
                Err(kind) => return counted(kind),
            },
        };
        self.compare(&key, &name, digest, heard.source, &targets, wake)
            .await;
    }

    /// One HEAD per distinct base.
    async fn poll(&self, wake: &Notify) {
        let snapshot = self.snapshot.borrow().clone();
        for (key, (name, targets)) in self.bases(&snapshot) {
            match self.lookup(&name).await {
                Ok(digest) => {
                    self.compare(&key, &name, digest, SourceKind::Poll, &targets, wake)
                        .await
                }
                Err(kind) => counted(kind),
            }
        }
    }

    /// Compares `digest` of the base with what each app image built on it
    /// records, and journals one rebuild per image built on another digest.
    async fn compare(
        &self,
        key: &TagKey,
        base: &ImageRef,
        digest: Digest,
        source: SourceKind,
        targets: &[Target],
        wake: &Notify,
    ) {
        let leader = if targets.iter().any(|t| t.kind == TargetKind::Service) {
            (self.leads_services)().await
        } else {
            false
        };
        let targets = &asked_for_here(targets, leader);
        if targets.is_empty() {
            return;
        }
        let seen = match self.journal.base_digest(key_text(key)).await {
            Ok(seen) => seen,
            Err(e) => {
                warn!(error = %e, "Cannot read the journal.");
                return;
            }
        };
        for rebuild in rebuilds(
            base,
            &digest,
            seen.as_ref(),
            source,
            targets,
            self.config.hook_url.as_ref(),
        ) {
            let Some(rebuild) = rebuild else {
                counted(if seen.is_none() { "baseline" } else { "unchanged" });
                continue;
            };
            let image = rebuild.image.clone();
            match self.journal.request_rebuild(rebuild).await {
                Ok(Some(id)) => {
                    info!(image = %image, base = %base, digest = %digest.short(), rebuild = id, "Base image moved; a rebuild is to be asked for.");
                    counted("requested");
                    wake.notify_one();
                }
                Ok(None) => {
                    debug!(image = %image, base = %base, digest = %digest.short(), "Rebuild for this base digest asked for before.");
                    counted("known");
                }
                Err(e) => {
                    warn!(error = %e, image = %image, "Cannot journal the rebuild; the next push or poll of the base tries again.")
                }
            }
        }
        if seen.as_ref() != Some(&digest) && targets.iter().any(|t| recorded(t).is_none()) {
            self.remember(key, &digest).await;
        }
    }

    /// Calls every pending rebuild's hook, retrying those whose hook is down.
    async fn call_loop(self: Arc<Self>, caller: hook::Caller, wake: Arc<Notify>, stop: CancellationToken) {
        // When each failed call may be made again (after a restart: at once).
        let mut next: HashMap<i64, Instant> = HashMap::new();
        loop {
            let mut soonest: Option<Instant> = None;
            match self.journal.pending_rebuilds().await {
                Ok(pending) => {
                    next.retain(|id, _| pending.iter().any(|r| r.id == *id));
                    for rebuild in pending {
                        let now = Instant::now();
                        if let Some(at) = next.get(&rebuild.id).filter(|at| **at > now) {
                            soonest = Some(soonest.map_or(*at, |s| s.min(*at)));
                            continue;
                        }
                        if let Some(wait) = self.attempt(&caller, &rebuild).await {
                            let at = Instant::now() + wait;
                            next.insert(rebuild.id, at);
                            soonest = Some(soonest.map_or(at, |s| s.min(at)));
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "Cannot read pending rebuilds from the journal; trying again.");
                    soonest = Some(Instant::now() + RETRY.max);
                }
            }
            let sleep = async {
                match soonest {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// Calls one rebuild's hook; `Some(wait)` when it is to be called again.
    async fn attempt(&self, caller: &hook::Caller, rebuild: &Rebuild) -> Option<Duration> {
        let Some(text) = &rebuild.hook else {
            called("no_hook");
            info!(image = %rebuild.image, base = %rebuild.base, "Base image moved; no rebuild hook is configured (HOIST_REBUILD_HOOK_URL or hoist.rebuild-hook).");
            self.finish(
                rebuild,
                "done",
                "no rebuild hook configured".into(),
                "no rebuild hook is configured",
            )
            .await;
            return None;
        };
        let Ok(url) = Url::parse(text) else {
            called("refused");
            self.finish(
                rebuild,
                "failed",
                "bad hook URL".into(),
                "the rebuild hook URL is not valid",
            )
            .await;
            return None;
        };
        let host = url.host_str().unwrap_or_default().to_string();
        match caller.call(&url, rebuild).await {
            Ok(status) => {
                called("ok");
                info!(image = %rebuild.image, base = %rebuild.base, hook_host = %host, status, "Rebuild requested.");
                self.finish(rebuild, "done", format!("HTTP {status}"), "rebuild requested")
                    .await;
                None
            }
            Err(hook::CallError::Transient(why)) => {
                called("retried");
                let wait = RETRY.wait(rebuild.attempts.saturating_add(1));
                warn!(image = %rebuild.image, hook_host = %host, error = %why, attempts = rebuild.attempts + 1, retry_in = ?wait, "The rebuild hook did not take the request; calling again later.");
                if let Err(e) = self.journal.rebuild_attempted(rebuild.id, why).await {
                    warn!(error = %e, "Cannot journal the rebuild call.");
                }
                Some(wait)
            }
            Err(hook::CallError::Refused(why)) => {
                called("refused");
                warn!(image = %rebuild.image, hook_host = %host, error = %why, "The rebuild hook refused the request; not calling again.");
                let outcome = format!("the rebuild hook refused the request ({why})");
                self.finish(rebuild, "failed", why, &outcome).await;
                None
            }
        }
    }

    /// Closes a rebuild in the journal and notifies.
    async fn finish(&self, rebuild: &Rebuild, state: &'static str, detail: String, outcome: &str) {
        if let Err(e) = self.journal.finish_rebuild(rebuild.id, state, detail).await {
            // Left pending: called again (at worst twice) rather than lost.
            warn!(error = %e, "Cannot journal the rebuild call.");
            return;
        }
        if let Some(notification) = notification(rebuild, outcome) {
            (self.notify)(notification);
        }
    }
}

/// Waits for the next poll, or for ever when polling is off.
async fn tick(poll: &mut Option<tokio::time::Interval>) {
    match poll {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The targets whose rebuilds this hoist asks for: its containers, and the
/// services only when it leads the swarm (every manager lists them).
fn asked_for_here(targets: &[Target], leads_services: bool) -> Vec<Target> {
    targets
        .iter()
        .filter(|t| t.kind == TargetKind::Container || leads_services)
        .cloned()
        .collect()
}

/// The base digest a target's image records.
fn recorded(target: &Target) -> Option<&Digest> {
    target.options.base.as_ref()?.digest.as_ref()
}

/// How a base is keyed in the journal: canonical registry, repository, tag.
fn key_text(key: &TagKey) -> String {
    format!("{}/{}:{}", key.registry, key.repository, key.tag)
}

/// For each app image built on `base`: the rebuild to ask for when `digest`
/// is new to it, `None` when it is not (or when nothing is known to compare
/// with: the digest then becomes what the next is compared with).
///
/// An image is compared with the base digest it records, else with `seen`
/// (the last digest hoist saw of the base). A target's own
/// `hoist.rebuild-hook` wins over `default_hook`.
pub fn rebuilds(
    base: &ImageRef,
    digest: &Digest,
    seen: Option<&Digest>,
    source: SourceKind,
    targets: &[Target],
    default_hook: Option<&Secret<Url>>,
) -> Vec<Option<Rebuild>> {
    let mut images: BTreeMap<String, Vec<&Target>> = BTreeMap::new();
    for target in targets {
        images
            .entry(target.image.without_digest().to_string())
            .or_default()
            .push(target);
    }
    images
        .into_iter()
        .map(|(image, targets)| {
            let old = targets.iter().find_map(|t| recorded(t)).or(seen)?;
            if old == digest {
                return None;
            }
            let hook = targets
                .iter()
                .find_map(|t| t.options.rebuild_hook.as_ref())
                .or(default_hook)
                .map(|url| url.expose().to_string());
            let mut names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
            names.sort();
            names.dedup();
            Some(Rebuild {
                id: 0,
                image,
                targets: names,
                base: base.to_string(),
                old_digest: old.to_string(),
                new_digest: digest.to_string(),
                hook,
                source: source.as_str().to_string(),
                attempts: 0,
            })
        })
        .collect()
}

/// The message: "base image moved: app/web:1 is built on base/img:1 at
/// sha256:..., which is now sha256:...; rebuild requested".
fn notification(rebuild: &Rebuild, outcome: &str) -> Option<Notification> {
    let image = ImageRef::parse(&rebuild.image).ok()?;
    let new_digest = Digest::parse(&rebuild.new_digest).ok()?;
    let old_digest = Digest::parse(&rebuild.old_digest).ok();
    let headline = format!(
        "base image moved: {} is built on {} at {}, which is now {}; {outcome}",
        rebuild.image, rebuild.base, rebuild.old_digest, rebuild.new_digest
    );
    Some(Notification {
        image,
        new_digest,
        source: SourceKind::from_name(&rebuild.source).unwrap_or(SourceKind::Poll),
        actor: None,
        image_version: None,
        image_revision: None,
        image_source: None,
        targets: rebuild
            .targets
            .iter()
            .map(|name| TargetReport {
                name: name.clone(),
                compose_project: None,
                compose_service: None,
                old_digest: old_digest.clone(),
                // Its image has not changed: it still runs what it ran.
                outcome: Outcome::AlreadyCurrent,
                note: Some("not touched: its image has not changed".into()),
                contract: Vec::new(),
                dependents: Vec::new(),
            })
            .collect(),
        started_at: Utc::now(),
        duration: Duration::ZERO,
        headline: Some(headline),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::inventory::{TargetId, TargetKind, TargetOptions};

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn target(name: &str, image: &str, labels: &[(&str, &str)]) -> Target {
        let labels: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("hoist.enable".to_string(), "true".to_string())])
            .collect();
        let (options, problems) = TargetOptions::from_labels(&labels);
        assert!(problems.is_empty(), "{problems:?}");
        Target {
            id: TargetId(name.into()),
            kind: TargetKind::Container,
            name: name.into(),
            image: ImageRef::parse(image).unwrap(),
            image_id: "sha256:x".into(),
            running: true,
            monitor_only: false,
            options,
            compose_project: None,
            compose_service: None,
        }
    }

    #[test]
    fn a_services_rebuild_is_asked_for_by_the_leader_only() {
        let labels = [("hoist.base", "registry.example.test/base/img:1")];
        let container = target("web", "registry.example.test/app/web:1", &labels);
        let service = Target {
            kind: TargetKind::Service,
            ..target("api", "registry.example.test/app/api:1", &labels)
        };
        let both = [container, service];
        let names = |targets: Vec<Target>| targets.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(asked_for_here(&both, true)), ["web", "api"]);
        assert_eq!(names(asked_for_here(&both, false)), ["web"]);
    }

    #[test]
    fn one_rebuild_per_app_image_built_on_another_digest() {
        let a = digest('a').to_string();
        let recorded = [
            (
                "org.opencontainers.image.base.name",
                "registry.example.test/base/img:1",
            ),
            ("org.opencontainers.image.base.digest", a.as_str()),
        ];
        let targets = [
            target("web-2", "registry.example.test/app/web:1", &recorded),
            target("web-1", "registry.example.test/app/web:1", &recorded),
            target("api", "registry.example.test/app/api:1", &recorded),
        ];
        let base = ImageRef::parse("registry.example.test/base/img:1").unwrap();
        let hook = Secret::new(Url::parse("https://ci.example.test/hook").unwrap());
        let asked = rebuilds(
            &base,
            &digest('b'),
            None,
            SourceKind::Distribution,
            &targets,
            Some(&hook),
        );
        assert_eq!(asked.len(), 2);
        let web = asked[1].as_ref().unwrap();
        assert_eq!(web.image, "registry.example.test/app/web:1");
        assert_eq!(web.targets, ["web-1", "web-2"]);
        assert_eq!(
            (web.old_digest.as_str(), web.new_digest.clone()),
            (a.as_str(), digest('b').to_string())
        );
        assert_eq!(web.hook.as_deref(), Some("https://ci.example.test/hook"));
        // The digest they were built on asks nothing.
        let same = rebuilds(&base, &digest('a'), None, SourceKind::Poll, &targets, Some(&hook));
        assert!(same.iter().all(Option::is_none));
    }

    #[test]
    fn an_image_that_records_no_digest_is_compared_with_the_last_seen_and_its_own_hook_wins() {
        let targets = [target(
            "web",
            "registry.example.test/app/web:1",
            &[
                ("hoist.base", "registry.example.test/base/img:1"),
                ("hoist.rebuild-hook", "http://127.0.0.1:9/own"),
            ],
        )];
        let base = ImageRef::parse("registry.example.test/base/img:1").unwrap();
        let hook = Secret::new(Url::parse("https://ci.example.test/hook").unwrap());
        // Nothing seen yet: this digest is the one the next is compared with.
        assert_eq!(
            rebuilds(&base, &digest('b'), None, SourceKind::Poll, &targets, Some(&hook)),
            [None]
        );
        let asked = rebuilds(
            &base,
            &digest('b'),
            Some(&digest('a')),
            SourceKind::Poll,
            &targets,
            Some(&hook),
        );
        let asked = asked[0].as_ref().unwrap();
        assert_eq!(asked.hook.as_deref(), Some("http://127.0.0.1:9/own"));
        assert_eq!(asked.old_digest, digest('a').to_string());
    }

    /// A loopback receiver answering `statuses` in turn (then 200), counting requests.
    async fn receiver(statuses: Vec<u16>) -> (Url, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::StatusCode;
        let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let script = Arc::new(std::sync::Mutex::new(statuses));
        let app = axum::Router::new().fallback({
            let seen = seen.clone();
            move |body: String| async move {
                seen.lock().unwrap().push(body);
                let mut script = script.lock().unwrap();
                let status = if script.is_empty() { 200 } else { script.remove(0) };
                StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/hook?token=s3cr3t",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn watcher(journal: Journal, notified: Arc<std::sync::Mutex<Vec<String>>>) -> Watcher {
        let (_, snapshot) = watch::channel(Arc::new(IndexSnapshot::default()));
        Watcher {
            config: BaseConfig::default(),
            journal,
            registry: registry::Client::new(
                crate::registry::Credentials::new(None, Aliases::default()),
                crate::registry::Insecure::default(),
            )
            .unwrap(),
            aliases: Aliases::default(),
            snapshot,
            notify: Arc::new(move |n: Notification| {
                notified.lock().unwrap().push(n.headline.unwrap_or_default())
            }),
            leads_services: Arc::new(|| Box::pin(async { false })),
        }
    }

    fn pending(hook: &Url, new: char) -> Rebuild {
        Rebuild {
            id: 0,
            image: "127.0.0.1:5000/app/web:1".into(),
            targets: vec!["web".into()],
            base: "127.0.0.1:5000/base/img:1".into(),
            old_digest: digest('a').to_string(),
            new_digest: digest(new).to_string(),
            hook: Some(hook.to_string()),
            source: "distribution".into(),
            attempts: 0,
        }
    }

    async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done().await {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_journaled_before_a_restart_is_made_at_start_retried_while_down_and_a_refusal_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let (up, up_seen) = receiver(vec![503]).await;
        let (refusing, refused_seen) = receiver(vec![403]).await;
        // A redirect is not followed (it would take the token elsewhere): refused.
        let (redirecting, redirected_seen) = receiver(vec![307]).await;
        {
            // Journaled by an earlier run that stopped before calling.
            let journal = Journal::open(dir.path()).unwrap();
            journal.request_rebuild(pending(&up, 'b')).await.unwrap().unwrap();
            journal
                .request_rebuild(pending(&redirecting, 'd'))
                .await
                .unwrap()
                .unwrap();
            journal
                .request_rebuild(pending(&refusing, 'c'))
                .await
                .unwrap()
                .unwrap();
        }
        let journal = Journal::open(dir.path()).unwrap();
        let notified: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let (_watch, task) = watcher(journal.clone(), notified.clone())
            .start(stop.clone())
            .unwrap();
        wait_until("every call finished and told", async || {
            journal.pending_rebuilds().await.unwrap().is_empty() && notified.lock().unwrap().len() == 3
        })
        .await;
        // The first answer was 503: called again, once it worked no more.
        assert_eq!(up_seen.lock().unwrap().len(), 2);
        assert_eq!(refused_seen.lock().unwrap().len(), 1, "a 403 is not retried");
        assert_eq!(redirected_seen.lock().unwrap().len(), 1);
        let body: serde_json::Value = serde_json::from_str(&up_seen.lock().unwrap()[1]).unwrap();
        assert_eq!(body, hook::hoist_body(&pending(&up, 'b')));
        let notified = notified.lock().unwrap().clone();
        assert_eq!(notified.len(), 3, "{notified:?}");
        assert!(notified.iter().any(|n| n.ends_with("; rebuild requested")));
        for status in ["HTTP 403", "HTTP 307"] {
            let refusal = notified.iter().find(|n| n.contains(status)).unwrap();
            assert!(
                refusal.ends_with(&format!("; the rebuild hook refused the request ({status})")),
                "{refusal}"
            );
        }
        assert!(notified.iter().all(|n| !n.contains("s3cr3t")), "{notified:?}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hook_nobody_listens_on_stays_pending_and_is_called_again() {
        let dir = tempfile::tempdir().unwrap();
        // A port nobody listens on: bound, then let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let id = journal
            .request_rebuild(pending(&down, 'b'))
            .await
            .unwrap()
            .unwrap();
        let notified: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let (_watch, task) = watcher(journal.clone(), notified.clone())
            .start(stop.clone())
            .unwrap();
        wait_until("called twice", async || {
            journal.pending_rebuilds().await.unwrap()[0].attempts >= 2
        })
        .await;
        let pending = journal.pending_rebuilds().await.unwrap();
        assert_eq!((pending.len(), pending[0].id), (1, id), "still pending");
        assert!(notified.lock().unwrap().is_empty(), "nothing to tell yet");
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn the_message_says_what_moved_and_that_a_rebuild_was_requested() {
        let rebuild = Rebuild {
            id: 1,
            image: "registry.example.test/app/web:1".into(),
            targets: vec!["web".into()],
            base: "registry.example.test/base/img:1".into(),
            old_digest: digest('a').to_string(),
            new_digest: digest('b').to_string(),
            hook: None,
            source: "distribution".into(),
            attempts: 0,
        };
        let n = notification(&rebuild, "rebuild requested").unwrap();
        assert_eq!(
            n.headline.as_deref().unwrap(),
            format!(
                "base image moved: registry.example.test/app/web:1 is built on registry.example.test/base/img:1 at {}, which is now {}; rebuild requested",
                digest('a'),
                digest('b')
            )
        );
        let message = crate::notify::render::message(&n);
        assert_eq!(&message.title, n.headline.as_ref().unwrap());
    }
}
