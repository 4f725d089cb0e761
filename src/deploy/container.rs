//! Recreating a standalone container on a new image, safely.
//!
//! The old container is never removed before the new one is proven. The
//! update is a sequence of named steps, each journaled before it is taken
//! ([`StepLog`]), so that [`recover`] can finish or roll back what a crash
//! left half done. Two orders (`hoist.order`, `HOIST_ORDER`):
//!
//! stop-first (the default), with the create moved out of the outage:
//! 1. [`Update::create_beside`]: create the new container under a temporary
//!    name (`<name>-hoist-new`) while the old one still serves;
//! 2. [`Update::journal_swap`]: the next three steps are journaled, so the
//!    outage holds no journal write; then, in one slot,
//!    [`Update::park_old`]: restart policy off, stop (with its own stop
//!    timeout when it has one), rename to `<name>-hoist-old`;
//! 3. [`Update::take_name`]: rename the new one to the name;
//! 4. start it, then [`Update::gate`] (no slot is held while waiting);
//! 5. success: [`Update::verified`], then [`Update::retire_old`]. Failure
//!    at 3-4: [`Update::roll_back`] keeps the new one's last log lines,
//!    removes it, and gives the old one its name, restart policy and
//!    running state back.
//!
//! start-first (for containers reached through a network alias or a proxy,
//! without published host ports; others fall back to stop-first, and the
//! report says why):
//! 1. create and start the new container beside the old one, under the
//!    temporary name, on the same networks with the same aliases; gate it.
//!    A failure removes it: the old one never stopped serving;
//!    It has no network aliases while gated ([`Update::join_aliases`] gives
//!    them once it passed), so the engine's DNS sends it no request before;
//! 2. [`Update::verified`], then [`Update::detach_old`]: the old one leaves
//!    its networks (the engine's DNS stops answering with it) and its name,
//!    which the new one takes;
//! 3. [`Update::retire_old`] after `hoist.drain`: stop and remove the old one.
//!
//! So at every step the user has the old or the new container, never neither.
//! Engine operations take a slot of `HOIST_MAX_PARALLEL` ([`Slots`]); health gates do not.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::dependents::{self, CoTargets, DependentReport};
use super::recreate;
use super::slots::Slots;
use super::{health, DeployError, Outcome, StepLog};
use crate::deploy::health::HealthConfig;
use crate::engine::{Aliased, ContainerDetails, CreateSpec, Engine, ImageDetails, RestartPolicyName};
use crate::event::Digest;
use crate::inventory::{TargetOptions, NEW_SUFFIX, PARKED_SUFFIX};
use crate::journal::StepRecord;
use crate::labels::UpdateOrder;

/// How many log lines of a failed container go into the report.
pub const LOG_TAIL_LINES: usize = 20;

/// How long a start-first update leaves the old container off its networks,
/// still running, for requests in flight (`hoist.drain`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

/// Step names, as journaled. The order is the order they are taken.
pub mod steps {
    /// The new container is being created under the temporary name; the
    /// detail is the old container (as [`super::Parked`]), for the repair.
    pub const CREATING: &str = "creating";
    pub const CREATED: &str = "created";
    pub const PARKING: &str = "parking";
    pub const PARKED: &str = "parked";
    /// The new container takes the name (stop-first).
    pub const NAMING: &str = "naming";
    pub const NAMED: &str = "named";
    pub const STARTING: &str = "starting";
    pub const STARTED: &str = "started";
    pub const VERIFYING: &str = "verifying";
    pub const VERIFIED: &str = "verified";
    /// start-first: the gated new container gets its network aliases.
    pub const JOINING: &str = "joining";
    pub const JOINED: &str = "joined";
    /// start-first: the old container leaves its networks and its name.
    pub const DETACHING: &str = "detaching";
    pub const DETACHED: &str = "detached";
    pub const ROLLING_BACK: &str = "rolling_back";
    pub const DONE: &str = "done";
}

/// Settings for one container update.
#[derive(Clone, Debug)]
pub struct UpdateSettings {
    pub health: HealthConfig,
    /// How long the old container gets to stop, unless it has a stop timeout of its own.
    pub stop_timeout: Duration,
    /// `hoist.order`, else `HOIST_ORDER`.
    pub order: UpdateOrder,
    /// `hoist.drain` (start-first only).
    pub drain: Duration,
    /// Engine operations in flight, shared by every update (`HOIST_MAX_PARALLEL`).
    pub slots: Slots,
    /// The push's other targets, so a dependent among them is updated once.
    pub co_targets: CoTargets,
}

/// What one container update did.
#[derive(Clone, Debug)]
pub struct ContainerUpdate {
    pub outcome: Outcome,
    /// The digest of the image the container ran before, in the pushed repository.
    pub old_digest: Option<Digest>,
    /// The ID of the image the container ran before (for optional clean-up).
    pub old_image_id: Option<String>,
    /// A rollback could not complete (engine gone mid-way): the target is not
    /// in a safe state yet, and [`recover`] must be run again until it is.
    pub needs_repair: bool,
    /// The update was cut off by the engine or the journal, not judged: the
    /// outcome is no verdict on the push, and the job should run again.
    pub interrupted: Option<DeployError>,
    /// The old container had been parked: an interrupted update was (or is
    /// to be) rolled back, not merely not started.
    pub touched: bool,
    /// For the report: why the update did not go as labelled (start-first
    /// that fell back to stop-first).
    pub note: Option<String>,
    /// The containers that depend on this one, and how each ended.
    pub dependents: Vec<DependentReport>,
}

/// Updates the container called `name` to `new_image` (already pulled and tagged).
/// `repository` is the engine's name of the pushed repository, to find the old digest.
pub async fn update(
    engine: &Engine,
    name: &str,
    new_image: &ImageDetails,
    repository: &str,
    settings: &UpdateSettings,
    log: &StepLog,
) -> ContainerUpdate {
    let old = match engine.inspect_container_full(name).await {
        Ok(old) => old,
        Err(e) => return failed(None, DeployError::from_engine("cannot inspect the container", &e)),
    };
    // The engine also resolves an ID prefix: a name that is gone could match
    // another container whose ID begins with it.
    if old.name() != name {
        return failed(
            None,
            DeployError::Verdict(format!("no container is called {name} any more")),
        );
    }
    let old_image = engine.inspect_image(old.image_id()).await;
    let old_digest = old_image
        .as_ref()
        .ok()
        .and_then(|image| image.digest_in(repository));
    if old.image_id() == new_image.id() {
        return ContainerUpdate {
            outcome: Outcome::AlreadyCurrent,
            old_digest,
            old_image_id: None,
            needs_repair: false,
            interrupted: None,
            touched: false,
            note: None,
            dependents: Vec::new(),
        };
    }
    let old_image = match old_image {
        Ok(image) => image,
        Err(e) => {
            return failed(
                old_digest,
                DeployError::from_engine("cannot inspect the current image", &e),
            )
        }
    };
    if old.auto_remove() {
        return failed(
            old_digest,
            DeployError::Verdict("the container runs with --rm, so it cannot be kept for a rollback".into()),
        );
    }
    // Labels are read again as they are now: a bad one fails this target
    // before anything is touched (the index only logged it).
    let (_, problems) = TargetOptions::from_labels(&old.labels());
    if !problems.is_empty() {
        let reason = format!("bad label, nothing was changed: {}", problems.join("; "));
        warn!(container = name, %reason, "Not updated.");
        return failed(old_digest, DeployError::Verdict(reason));
    }
    let spec = match recreate::spec(&old, &old_image, new_image) {
        Ok(spec) => spec,
        Err(why) => {
            return failed(
                old_digest,
                DeployError::Verdict(format!("cannot read the container's configuration: {why}")),
            )
        }
    };
    let (mut order, mut note) = order_for(&old, settings.order);
    if order == UpdateOrder::StartFirst {
        // A container in its namespace (or using its volumes, links) goes
        // down with the old one whatever the order: stop-first does that in order.
        match dependents::find(engine, &old).await {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                let names: Vec<&str> = found.iter().map(|d| d.name()).collect();
                let why = format!(
                    "start-first is not possible: containers depend on it ({}); updated stop-first",
                    names.join(", ")
                );
                warn!(container = name, %why, "Falling back to stop-first.");
                (order, note) = (UpdateOrder::StopFirst, Some(why));
            }
            Err(e) => {
                return failed(
                    old_digest,
                    DeployError::from_engine("cannot look for dependent containers", &e),
                )
            }
        }
    }
    let update = Update {
        engine,
        old: &old,
        name,
        log,
        settings,
        parked: Parked::of(&old),
        // As `docker stop` does: the container's own stop timeout, when it has one.
        stop_timeout: old.stop_timeout().unwrap_or(settings.stop_timeout),
    };
    let mut done = match order {
        UpdateOrder::StopFirst => update.stop_first(&spec, old_digest).await,
        UpdateOrder::StartFirst => update.start_first(&spec, old_digest).await,
    };
    if done.outcome == Outcome::Updated {
        done.old_image_id = Some(old.image_id().to_string());
    }
    done.note = note;
    done
}

/// The order this container is updated in: start-first only where two
/// containers can run side by side (and only for a running one, since a
/// stopped one serves nothing); otherwise stop-first, saying why.
fn order_for(old: &ContainerDetails, wanted: UpdateOrder) -> (UpdateOrder, Option<String>) {
    if wanted == UpdateOrder::StopFirst || !old.running() {
        return (UpdateOrder::StopFirst, None);
    }
    match recreate::start_first_obstacle(old) {
        None => (UpdateOrder::StartFirst, None),
        Some(why) => {
            let note = format!("start-first is not possible: {why}; updated stop-first");
            warn!(container = old.name(), %note, "Falling back to stop-first.");
            (UpdateOrder::StopFirst, Some(note))
        }
    }
}

/// One container's update, step by step. Each step journals itself before
/// it is taken and is a fault-injection point after.
struct Update<'a> {
    engine: &'a Engine,
    old: &'a ContainerDetails,
    name: &'a str,
    log: &'a StepLog,
    settings: &'a UpdateSettings,
    parked: Parked,
    stop_timeout: Duration,
}

impl Update<'_> {
    /// Create beside, stop and park the old one, rename, start, gate.
    async fn stop_first(&self, spec: &CreateSpec, old_digest: Option<Digest>) -> ContainerUpdate {
        let new_id = match self.create_beside(spec).await {
            Ok(id) => id,
            Err(why) => return failed(old_digest, why),
        };
        // Containers that share its namespace (or volumes, links) stop first.
        let settings = self.settings;
        let mut dependents = match dependents::park(
            self.engine,
            self.old,
            &settings.co_targets,
            self.stop_timeout,
            self.log,
        )
        .await
        {
            Ok(dependents) => dependents,
            Err(why) => {
                // As a failed park: the new container goes (the repair
                // removes it if the engine is gone), the old one stays.
                if let Err(unrecorded) = self
                    .log
                    .before(self.name, steps::ROLLING_BACK, Some(why.to_string()))
                    .await
                {
                    warn!(container = self.name, why = %unrecorded, "Rolling back without a journal record.");
                }
                self.discard_quietly(&new_id).await;
                let transient = why.is_transient();
                return ContainerUpdate {
                    needs_repair: transient,
                    touched: transient,
                    ..failed(old_digest, why)
                };
            }
        };
        // The outage runs from the old container's stop to the new one's
        // start: its steps are journaled before it begins, and one slot is
        // held through it, so nothing but the engine's own work is in it.
        if let Err(why) = self.journal_swap().await {
            self.discard_quietly(&new_id).await;
            dependents.restore(self.engine, self.log).await;
            return ContainerUpdate {
                dependents: dependents.reports(),
                ..failed(old_digest, why)
            };
        }
        let slot = self.settings.slots.take().await;
        if let Err(why) = self.park_old().await {
            drop(slot);
            // The old one is where it was (or the repair puts it back from
            // the journal); its successor goes.
            if let Err(unrecorded) = self
                .log
                .before(self.name, steps::ROLLING_BACK, Some(why.to_string()))
                .await
            {
                warn!(container = self.name, why = %unrecorded, "Rolling back without a journal record.");
            }
            self.discard_quietly(&new_id).await;
            dependents.restore(self.engine, self.log).await;
            let transient = why.is_transient();
            return ContainerUpdate {
                needs_repair: transient,
                touched: transient,
                dependents: dependents.reports(),
                ..failed(old_digest, why)
            };
        }
        let swapped = async {
            self.take_name(&new_id).await?;
            if !self.parked.was_running {
                // A stopped container is updated but left stopped, as it was.
                return Ok(false);
            }
            self.start(&new_id).await?;
            Ok(true)
        }
        .await;
        drop(slot);
        let result = match swapped {
            Ok(true) => self.gate(&new_id).await,
            Ok(false) => Ok(()),
            Err(why) => Err(why),
        };
        // Before "verified": a dependent that does not come back rolls the target back.
        let result = match result {
            Ok(()) => {
                dependents
                    .follow(self.engine, &new_id, &settings.health, self.log)
                    .await
            }
            Err(why) => Err(why),
        };
        let mut interrupted = None;
        let (outcome, safe) = match result {
            Ok(()) => {
                self.verified().await;
                dependents.commit(self.engine, self.log).await;
                self.retire_old(false).await;
                info!(container = self.name, "Container updated.");
                (Outcome::Updated, true)
            }
            Err(why) => {
                if why.is_transient() {
                    interrupted = Some(why.clone());
                }
                let (outcome, safe) = self.roll_back(&new_id, why).await;
                // After the old target is back, so they attach to it.
                if safe {
                    dependents.restore(self.engine, self.log).await;
                }
                (outcome, safe)
            }
        };
        let mut done = self.finish(outcome, safe, old_digest, interrupted, true).await;
        done.dependents = dependents.reports();
        done
    }

    /// Create and start beside, gate, then move the traffic and retire the old one.
    async fn start_first(&self, spec: &CreateSpec, old_digest: Option<Digest>) -> ContainerUpdate {
        // No aliases until it is proven: the engine's DNS sends it nothing before.
        let (quiet, aliased) = spec.without_aliases();
        let new_id = match self.create_beside(&quiet).await {
            Ok(id) => id,
            Err(why) => return failed(old_digest, why),
        };
        let result = async {
            self.start_new(&new_id).await?;
            self.gate(&new_id).await?;
            self.join_aliases(&new_id, &aliased).await
        }
        .await;
        if let Err(why) = result {
            let interrupted = why.is_transient().then(|| why.clone());
            let (outcome, safe) = self.discard(&new_id, why).await;
            return self.finish(outcome, safe, old_digest, interrupted, false).await;
        }
        self.verified().await;
        // Proven: from here on only forward (the repair finishes it too).
        let mut safe = self.detach_old(&new_id).await;
        tokio::time::sleep(self.settings.drain).await;
        safe &= self.retire_old(true).await;
        if safe {
            info!(container = self.name, "Container updated (start-first).");
        }
        self.finish(Outcome::Updated, safe, old_digest, None, true).await
    }

    /// The temporary name the new container is created under.
    fn temp_name(&self) -> String {
        self.parked.temp_name()
    }

    /// Step: create the new container under the temporary name, the old one untouched.
    async fn create_beside(&self, spec: &CreateSpec) -> Result<String, DeployError> {
        self.log
            .before(self.name, steps::CREATING, Some(self.parked.to_json()))
            .await?;
        let temp = self.temp_name();
        let slots = &self.settings.slots;
        // A leftover of an earlier interrupted update holds the temporary name.
        if let Ok(Some(leftover)) = self.engine.container_id_by_name(&temp).await {
            warn!(container = self.name, leftover = %leftover, "Removing a new container left by an earlier update.");
            slots
                .run(self.engine.remove(&leftover))
                .await
                .map_err(|e| DeployError::from_engine(&format!("cannot remove leftover {temp}"), &e))?;
        }
        let id = slots
            .run(self.engine.create(&temp, spec))
            .await
            .map_err(|e| DeployError::from_engine("cannot create the new container", &e))?;
        if let Err(why) = self.log.before(self.name, steps::CREATED, Some(id.clone())).await {
            self.discard_quietly(&id).await;
            return Err(why);
        }
        self.log.after(steps::CREATED).await;
        Ok(id)
    }

    /// Step: the old container stops and is renamed aside (stop-first).
    /// Journals the steps of the swap (park, name, start) before the first
    /// is taken, so that no journal write falls in the outage.
    async fn journal_swap(&self) -> Result<(), DeployError> {
        self.log
            .before(self.name, steps::PARKING, Some(self.parked.to_json()))
            .await?;
        self.log.before(self.name, steps::NAMING, None).await?;
        if self.parked.was_running {
            self.log.before(self.name, steps::STARTING, None).await?;
        }
        Ok(())
    }

    /// Step (journaled by [`Update::journal_swap`], in its slot): the old
    /// container stops and is renamed aside.
    async fn park_old(&self) -> Result<(), DeployError> {
        self.parked.park(self.engine, self.stop_timeout).await?;
        self.log.after(steps::PARKED).await;
        Ok(())
    }

    /// Step (journaled by [`Update::journal_swap`], in its slot): the new
    /// container takes the name.
    async fn take_name(&self, new_id: &str) -> Result<(), DeployError> {
        self.engine
            .rename(new_id, self.name)
            .await
            .map_err(|e| DeployError::from_engine("cannot give the new container its name", &e))?;
        self.log.after(steps::NAMED).await;
        Ok(())
    }

    /// Step (start-first): start the new container beside the old one.
    async fn start_new(&self, new_id: &str) -> Result<(), DeployError> {
        self.log.before(self.name, steps::STARTING, None).await?;
        self.settings.slots.run(self.start(new_id)).await
    }

    /// Starts the new container (the caller journaled it and holds a slot).
    async fn start(&self, new_id: &str) -> Result<(), DeployError> {
        self.engine
            .start(new_id)
            .await
            .map_err(|e| DeployError::from_engine("cannot start the new container", &e))?;
        self.log.after(steps::STARTED).await;
        Ok(())
    }

    /// Step: the health gate. Waiting is not an engine operation: no slot is held.
    async fn gate(&self, new_id: &str) -> Result<(), DeployError> {
        self.log.before(self.name, steps::VERIFYING, None).await?;
        self.log.after(steps::VERIFYING).await;
        health::wait_until_up(self.engine, new_id, &self.settings.health).await
    }

    /// Step (start-first): the gated new container joins its aliases, on
    /// each network (a reconnect, since an endpoint's aliases are set when it
    /// joins); the engine's DNS then answers with both containers.
    async fn join_aliases(&self, new_id: &str, aliased: &Aliased) -> Result<(), DeployError> {
        if aliased.is_empty() {
            return Ok(());
        }
        self.log.before(self.name, steps::JOINING, None).await?;
        self.settings
            .slots
            .run(self.engine.rejoin(new_id, aliased))
            .await
            .map_err(|e| DeployError::from_engine("cannot give the new container its network aliases", &e))?;
        self.log.after(steps::JOINED).await;
        Ok(())
    }

    /// Step: the new container is proven. Once this is journaled, the repair
    /// finishes forward.
    async fn verified(&self) {
        if let Err(why) = self.log.before(self.name, steps::VERIFIED, None).await {
            warn!(container = self.name, %why, "Updated, but the journal could not record it.");
        }
        self.log.after(steps::VERIFIED).await;
    }

    /// Step (start-first): the old container gives its name to the new one,
    /// then leaves its networks, so the engine's DNS answers with the new one
    /// only. Returns whether it all went; if not, the repair finishes it.
    async fn detach_old(&self, new_id: &str) -> bool {
        if let Err(why) = self.log.before(self.name, steps::DETACHING, None).await {
            warn!(container = self.name, %why, "Moving traffic to the new container without a journal record.");
        }
        let (engine, slots, parked) = (self.engine, &self.settings.slots, &self.parked);
        let mut ok = true;
        // The names first: the engine's DNS then answers the name with the
        // new container while the old one still has its interfaces, so a
        // client that resolved the name a moment ago is not cut off.
        if let Err(e) = slots.run(engine.rename(&parked.id, &parked.parked_name())).await {
            warn!(container = self.name, error = %e, "Cannot rename the old container aside.");
            ok = false;
        } else if let Err(e) = slots.run(engine.rename(new_id, self.name)).await {
            warn!(container = self.name, error = %e, "Cannot give the new container its name.");
            ok = false;
        }
        // Then the networks, which is the only way to take its aliases out of
        // the engine's DNS (a request in flight on that network ends with it).
        let networks = match engine.inspect_container(&parked.id).await {
            Ok(old) => old.network_aliases().into_keys().collect::<Vec<_>>(),
            Err(e) => {
                warn!(container = self.name, error = %e, "Cannot read the old container's networks.");
                Vec::new()
            }
        };
        for network in networks {
            if let Err(e) = slots.run(engine.disconnect(&network, &parked.id)).await {
                warn!(container = self.name, %network, error = %e, "Cannot take the old container off a network; it is stopped after the drain anyway.");
            }
        }
        self.log.after(steps::DETACHED).await;
        ok
    }

    /// Step: the old container goes. Under start-first it is stopped first,
    /// with its stop timeout, so requests it still holds can end.
    async fn retire_old(&self, graceful: bool) -> bool {
        let (engine, slots, parked) = (self.engine, &self.settings.slots, &self.parked);
        if graceful {
            if let Err(e) = slots.run(engine.stop(&parked.id, self.stop_timeout)).await {
                warn!(container = self.name, error = %e, "Cannot stop the old container; removing it.");
            }
        }
        match slots.run(engine.remove(&parked.id)).await {
            Ok(()) => {}
            Err(e) => {
                warn!(container = self.name, error = %e, "Updated, but the old container could not be removed.");
                // Under stop-first the old one is parked and harmless; under
                // start-first it may still hold the name: the repair must finish.
                if graceful {
                    return false;
                }
            }
        }
        if graceful {
            // The new container takes the name now if the detach could not give it.
            match engine.container_id_by_name(self.name).await {
                Ok(Some(_)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Rolls back (stop-first): journaled, then the old container restored.
    async fn roll_back(&self, new_id: &str, why: DeployError) -> (Outcome, bool) {
        let reason = why.to_string();
        if let Err(unrecorded) = self
            .log
            .before(self.name, steps::ROLLING_BACK, Some(reason.clone()))
            .await
        {
            // Rolling back is the safe direction: do it even unrecorded.
            warn!(container = self.name, why = %unrecorded, "Rolling back without a journal record.");
        }
        let _slot = self.settings.slots.take().await;
        self.parked.restore(self.engine, Some(new_id), reason).await
    }

    /// The new container failed beside the old one (start-first): it goes,
    /// and the old one, which never stopped serving, stays.
    async fn discard(&self, new_id: &str, why: DeployError) -> (Outcome, bool) {
        let reason = why.to_string();
        if let Err(unrecorded) = self
            .log
            .before(self.name, steps::ROLLING_BACK, Some(reason.clone()))
            .await
        {
            warn!(container = self.name, why = %unrecorded, "Rolling back without a journal record.");
        }
        let log_tail = self.engine.log_tail(new_id, LOG_TAIL_LINES).await;
        match self.settings.slots.run(self.engine.remove(new_id)).await {
            Ok(()) => {
                warn!(container = self.name, %reason, "The new container failed; the old one kept serving.");
                (Outcome::RolledBack { reason, log_tail }, true)
            }
            Err(e) => {
                error!(container = self.name, error = %e, "Cannot remove the failed new container.");
                (
                    Outcome::Failed {
                        reason: format!("{reason}; and the failed container could not be removed: {e}"),
                    },
                    false,
                )
            }
        }
    }

    /// Removes a new container that never ran; a failure leaves it under the
    /// temporary name, which the next update (or the repair) clears.
    async fn discard_quietly(&self, new_id: &str) {
        if let Err(e) = self.settings.slots.run(self.engine.remove(new_id)).await {
            warn!(container = self.name, error = %e, "Cannot remove the new container; it is removed at the next try.");
        }
    }

    /// Journals the end (unless unsafe: that stays open for the repair).
    async fn finish(
        &self,
        outcome: Outcome,
        safe: bool,
        old_digest: Option<Digest>,
        interrupted: Option<DeployError>,
        touched: bool,
    ) -> ContainerUpdate {
        if safe {
            if let Err(why) = self
                .log
                .before(self.name, steps::DONE, Some(outcome.as_str().to_string()))
                .await
            {
                warn!(container = self.name, %why, "Finished, but the journal could not record it.");
            }
        }
        ContainerUpdate {
            outcome,
            old_digest,
            old_image_id: None,
            needs_repair: !safe,
            interrupted,
            touched,
            note: None,
            dependents: Vec::new(),
        }
    }
}

/// Nothing was changed (or everything was put back by `park` itself).
fn failed(old_digest: Option<Digest>, why: DeployError) -> ContainerUpdate {
    ContainerUpdate {
        outcome: Outcome::Failed {
            reason: why.to_string(),
        },
        old_digest,
        old_image_id: None,
        needs_repair: false,
        interrupted: why.is_transient().then_some(why),
        touched: false,
        note: None,
        dependents: Vec::new(),
    }
}

/// The old container, stopped and renamed aside while its successor proves
/// itself. Journaled (as JSON) before parking, so a crash can put it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Parked {
    id: String,
    name: String,
    was_running: bool,
    restart_policy: Option<RestartPolicyName>,
}

impl Parked {
    fn of(old: &ContainerDetails) -> Parked {
        Parked {
            id: old.id().to_string(),
            name: old.name().to_string(),
            was_running: old.running(),
            restart_policy: old.restart_policy(),
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn parked_name(&self) -> String {
        format!("{}{PARKED_SUFFIX}", self.name)
    }

    /// The name the new container is created under, beside this one.
    fn temp_name(&self) -> String {
        format!("{}{NEW_SUFFIX}", self.name)
    }

    /// Restart policy off, stopped, renamed aside. On failure it tries to
    /// undo what it did; an engine fault may leave that half done, which the
    /// journal-driven repair finishes.
    async fn park(&self, engine: &Engine, stop_timeout: Duration) -> Result<(), DeployError> {
        let parked_name = self.parked_name();
        // A leftover from an earlier interrupted update: the container under
        // the real name is the one that counts.
        if let Ok(Some(leftover)) = engine.container_id_by_name(&parked_name).await {
            warn!(container = %self.name, leftover = %leftover, "Removing a parked container left by an earlier update.");
            engine.remove(&leftover).await.map_err(|e| {
                DeployError::from_engine(&format!("cannot remove leftover {parked_name}"), &e)
            })?;
        }
        // Off first, so the engine does not restart it while parked (or after a daemon restart).
        engine
            .set_restart_policy(&self.id, None)
            .await
            .map_err(|e| DeployError::from_engine("cannot change the restart policy", &e))?;
        if self.was_running {
            if let Err(e) = engine.stop(&self.id, stop_timeout).await {
                if let Err(again) = engine
                    .set_restart_policy(&self.id, self.restart_policy.as_ref())
                    .await
                {
                    warn!(container = %self.name, error = %again, "Cannot restore the restart policy.");
                }
                return Err(DeployError::from_engine("cannot stop the old container", &e));
            }
        }
        if let Err(e) = engine.rename(&self.id, &parked_name).await {
            let why = DeployError::from_engine("cannot rename the old container aside", &e);
            if let Err(again) = self.bring_back(engine).await {
                warn!(container = %self.name, error = %again, "Cannot bring the old container back.");
                // Transient either way now: the repair has to finish it.
                return Err(DeployError::EngineGone(format!("{why}; and then {again}")));
            }
            return Err(why);
        }
        Ok(())
    }

    /// The new container failed (or never came): remove it and bring the old one back.
    /// Returns the outcome and whether the target is safe (old container back).
    async fn restore(&self, engine: &Engine, new_id: Option<&str>, reason: String) -> (Outcome, bool) {
        let mut log_tail = Vec::new();
        if let Some(new_id) = new_id {
            log_tail = engine.log_tail(new_id, LOG_TAIL_LINES).await;
            if let Err(e) = engine.remove(new_id).await {
                error!(container = %self.name, error = %e, "Cannot remove the failed new container; the old one stays parked.");
                return (
                    Outcome::Failed {
                        reason: format!("{reason}; and the failed container could not be removed: {e}"),
                    },
                    false,
                );
            }
        }
        // Not parked yet (cut off before), it still has its name.
        let renamed = match engine.inspect_container(&self.id).await {
            Ok(old) if old.name() == self.name => Ok(()),
            _ => engine.rename(&self.id, &self.name).await,
        };
        if let Err(e) = renamed {
            error!(container = %self.name, error = %e, "Cannot give the old container its name back.");
            return (
                Outcome::Failed {
                    reason: format!("{reason}; and the old container could not be renamed back: {e}"),
                },
                false,
            );
        }
        match self.bring_back(engine).await {
            Ok(()) => {
                warn!(container = %self.name, %reason, "Rolled back to the old container.");
                let outcome = match new_id {
                    Some(_) => Outcome::RolledBack { reason, log_tail },
                    None => Outcome::Failed { reason },
                };
                (outcome, true)
            }
            Err(e) => {
                error!(container = %self.name, error = %e, "The old container did not come back after a failed update.");
                (
                    Outcome::Failed {
                        reason: format!("{reason}; and the old container did not restart: {e}"),
                    },
                    false,
                )
            }
        }
    }

    /// Restores the restart policy and the running state.
    async fn bring_back(&self, engine: &Engine) -> Result<(), String> {
        engine
            .set_restart_policy(&self.id, self.restart_policy.as_ref())
            .await
            .map_err(|e| format!("cannot restore the restart policy: {e}"))?;
        if self.was_running
            && !engine
                .inspect_container(&self.id)
                .await
                .is_ok_and(|c| c.running())
        {
            engine
                .start(&self.id)
                .await
                .map_err(|e| format!("cannot start the old container: {e}"))?;
        }
        Ok(())
    }
}

/// Brings one target of an interrupted job to a safe state, from its
/// journaled steps and what the engine shows now. `cause` says what
/// interrupted it, for the report ("hoist stopped", "engine restarted").
/// Returns `None` when the target needs nothing (untouched, or its last
/// attempt finished); otherwise the outcome and whether the target is now
/// safe (when not, for example with the engine unreachable, it stays open in
/// the journal to be tried again).
pub async fn recover(
    engine: &Engine,
    target: &str,
    records: &[StepRecord],
    log: &StepLog,
    cause: &str,
) -> Option<(Outcome, bool)> {
    let mine: Vec<&StepRecord> = records.iter().filter(|r| r.target == target).collect();
    // A job run again records a new attempt after the last one's "done".
    let last_attempt = match mine.iter().rposition(|r| r.step == steps::DONE) {
        Some(done) => &mine[done + 1..],
        None => &mine[..],
    };
    // Recorded at "creating" (before anything exists) and again at "parking";
    // journals of earlier versions have it at "parking" only.
    let parked: Parked = last_attempt
        .iter()
        .filter(|r| r.step == steps::CREATING || r.step == steps::PARKING)
        .find_map(|r| serde_json::from_str(r.detail.as_deref()?).ok())?;
    let verified = last_attempt.iter().any(|r| r.step == steps::VERIFIED);
    let (outcome, safe) = match repair(engine, &parked, verified, cause).await {
        Ok(outcome) => (outcome, true),
        Err(why) => (Outcome::Failed { reason: why }, false),
    };
    if safe {
        if let Err(why) = log
            .before(target, steps::DONE, Some(outcome.as_str().to_string()))
            .await
        {
            warn!(container = target, %why, "Recovered, but the journal could not record it.");
        }
        warn!(container = target, outcome = %outcome, "Interrupted update repaired.");
    } else {
        error!(container = target, outcome = %outcome, "Interrupted update not repaired yet; will try again.");
    }
    Some((outcome, safe))
}

/// Finishes (when the new container had been verified) or rolls back.
async fn repair(engine: &Engine, parked: &Parked, verified: bool, cause: &str) -> Result<Outcome, String> {
    let by_name = |name: String| async move {
        engine
            .container_id_by_name(&name)
            .await
            .map_err(|e| e.to_string())
    };
    // The new container, while it has not taken the name yet.
    let temp = by_name(parked.temp_name()).await?.filter(|id| *id != parked.id);
    let old = match engine.inspect_container(&parked.id).await {
        Ok(old) => Some(old),
        Err(crate::engine::EngineError::NotFound { .. }) => None,
        Err(e) => return Err(e.to_string()),
    };
    if verified {
        // The new container had proven itself: finish by removing the old
        // one, and give the new one the name if it does not have it yet.
        if old.is_some() {
            engine.remove(&parked.id).await.map_err(|e| e.to_string())?;
        }
        let new_id = match (by_name(parked.name.clone()).await?, temp) {
            (Some(id), _) => Some(id),
            (None, Some(id)) => {
                engine
                    .rename(&id, &parked.name)
                    .await
                    .map_err(|e| format!("cannot give the new container its name: {e}"))?;
                Some(id)
            }
            (None, None) => None,
        };
        if let Some(id) = new_id.filter(|_| parked.was_running) {
            if !engine.inspect_container(&id).await.is_ok_and(|c| c.running()) {
                engine
                    .start(&id)
                    .await
                    .map_err(|e| format!("cannot start the new container: {e}"))?;
            }
        }
        info!(container = %parked.name, "Recovered an interrupted update: finished it.");
        return Ok(Outcome::Updated);
    }
    // Not proven: a new container under the temporary name goes first.
    if let Some(id) = temp {
        engine
            .remove(&id)
            .await
            .map_err(|e| format!("cannot remove the new container: {e}"))?;
    }
    let under_name = by_name(parked.name.clone()).await?;
    let Some(old) = old else {
        // Nothing left to roll back to; whatever runs under the name stays.
        error!(container = %parked.name, "Recovering an interrupted update, but the old container is gone.");
        return Ok(Outcome::Failed {
            reason: format!("{cause} during the update and the old container is gone"),
        });
    };
    let reason = format!("{cause} during the update; rolled back");
    // Anything under the name that is not the old container is the unproven new one.
    match under_name.filter(|id| *id != parked.id) {
        Some(new_id) => match parked.restore(engine, Some(&new_id), reason).await {
            (outcome, true) => Ok(outcome),
            (Outcome::Failed { reason }, false) => Err(reason),
            (outcome, false) => Err(outcome.to_string()),
        },
        None => {
            if old.name() != parked.name {
                engine
                    .rename(&parked.id, &parked.name)
                    .await
                    .map_err(|e| format!("cannot rename back: {e}"))?;
            }
            parked.bring_back(engine).await?;
            Ok(Outcome::RolledBack {
                reason,
                log_tail: Vec::new(),
            })
        }
    }
}
