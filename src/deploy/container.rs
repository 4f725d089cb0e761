//! Recreating a standalone container on a new image, safely.
//!
//! The old container is never removed before the new one is proven:
//! 1. pull (once per push, before any target is touched);
//! 2. build the new container's body from the old one's inspect; a failure
//!    here touches nothing;
//! 3. park the old one: restart policy off, stop (with its own stop timeout
//!    when it has one), rename to `<name>-hoist-old`;
//! 4. create the new one under the name, start it, wait until it is up;
//! 5. success: remove the parked one. Failure at 4: keep the new one's last
//!    log lines, remove it, and give the old one its name, restart policy and
//!    running state back.
//!
//! So at every step the user has the old or the new container, never neither.
//! Each step is journaled before it is taken ([`StepLog`]); [`recover`] uses
//! those records after a crash to finish or roll back what was half done.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::dependents::{self, CoTargets, DependentReport};
use super::{health, recreate, DeployError, Outcome, StepLog};
use crate::deploy::health::HealthConfig;
use crate::engine::{ContainerDetails, Engine, ImageDetails, RestartPolicyName};
use crate::event::Digest;
use crate::inventory::{TargetOptions, PARKED_SUFFIX};
use crate::journal::StepRecord;

/// How many log lines of a failed container go into the report.
pub const LOG_TAIL_LINES: usize = 20;

/// Step names, as journaled. The order is the order they are taken.
pub mod steps {
    pub const PARKING: &str = "parking";
    pub const PARKED: &str = "parked";
    pub const CREATING: &str = "creating";
    pub const CREATED: &str = "created";
    pub const STARTING: &str = "starting";
    pub const STARTED: &str = "started";
    pub const VERIFYING: &str = "verifying";
    pub const VERIFIED: &str = "verified";
    pub const ROLLING_BACK: &str = "rolling_back";
    pub const DONE: &str = "done";
}

/// Settings for one container update.
#[derive(Clone, Debug)]
pub struct UpdateSettings {
    pub health: HealthConfig,
    /// How long the old container gets to stop, unless it has a stop timeout of its own.
    pub stop_timeout: Duration,
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
    // As `docker stop` does: the container's own stop timeout, when it has one.
    let stop_timeout = old.stop_timeout().unwrap_or(settings.stop_timeout);
    // Containers that share its namespace (or volumes, links) stop first.
    let mut dependents = match dependents::park(engine, &old, &settings.co_targets, stop_timeout, log).await {
        Ok(dependents) => dependents,
        Err(why) => return failed(old_digest, why),
    };
    let parked = Parked::of(&old);
    if let Err(why) = log.before(name, steps::PARKING, Some(parked.to_json())).await {
        dependents.restore(engine, log).await;
        return failed(old_digest, why);
    }
    if let Err(why) = parked.park(engine, stop_timeout).await {
        dependents.restore(engine, log).await;
        // Cut off half-way, the old container may be stopped or renamed:
        // the repair puts it back from the journal's record.
        let transient = why.is_transient();
        return ContainerUpdate {
            needs_repair: transient,
            touched: transient,
            dependents: dependents.reports(),
            ..failed(old_digest, why)
        };
    }
    log.after(steps::PARKED).await;

    let result = async {
        log.before(name, steps::CREATING, None)
            .await
            .map_err(|why| (None, why))?;
        let new_id = engine.create(name, &spec).await.map_err(|e| {
            (
                None,
                DeployError::from_engine("cannot create the new container", &e),
            )
        })?;
        log.before(name, steps::CREATED, Some(new_id.clone()))
            .await
            .map_err(|why| (Some(new_id.clone()), why))?;
        log.after(steps::CREATED).await;
        if !parked.was_running {
            // A stopped container is updated but left stopped, as it was.
            return Ok(new_id);
        }
        log.before(name, steps::STARTING, None)
            .await
            .map_err(|why| (Some(new_id.clone()), why))?;
        engine.start(&new_id).await.map_err(|e| {
            (
                Some(new_id.clone()),
                DeployError::from_engine("cannot start the new container", &e),
            )
        })?;
        log.after(steps::STARTED).await;
        log.before(name, steps::VERIFYING, None)
            .await
            .map_err(|why| (Some(new_id.clone()), why))?;
        log.after(steps::VERIFYING).await;
        health::wait_until_up(engine, &new_id, &settings.health)
            .await
            .map_err(|why| (Some(new_id.clone()), why))?;
        Ok(new_id)
    }
    .await;
    // Before "verified": a dependent that does not come back rolls the target back.
    let result = match result {
        Ok(new_id) => dependents
            .follow(engine, &new_id, &settings.health, log)
            .await
            .map_err(|why| (Some(new_id), why)),
        Err(e) => Err(e),
    };

    let mut interrupted = None;
    let (outcome, safe) = match result {
        Ok(()) => {
            // Once "verified" is journaled, recovery finishes forward.
            if let Err(why) = log.before(name, steps::VERIFIED, None).await {
                warn!(container = name, %why, "Updated, but the journal could not record it.");
            }
            log.after(steps::VERIFIED).await;
            dependents.commit(engine, log).await;
            parked.remove(engine).await;
            info!(container = name, "Container updated.");
            (Outcome::Updated, true)
        }
        Err((new_id, why)) => {
            let reason = why.to_string();
            if let Err(unrecorded) = log.before(name, steps::ROLLING_BACK, Some(reason.clone())).await {
                // Rolling back is the safe direction: do it even unrecorded.
                warn!(container = name, why = %unrecorded, "Rolling back without a journal record.");
            }
            if why.is_transient() {
                interrupted = Some(why);
            }
            let (outcome, safe) = parked.restore(engine, new_id.as_deref(), reason).await;
            // After the old target is back, so they attach to it.
            if safe {
                dependents.restore(engine, log).await;
            }
            (outcome, safe)
        }
    };
    // An unsafe end stays open in the journal, so the repair can find it.
    if safe {
        if let Err(why) = log
            .before(name, steps::DONE, Some(outcome.as_str().to_string()))
            .await
        {
            warn!(container = name, %why, "Finished, but the journal could not record it.");
        }
    }
    let old_image_id = Some(old.image_id().to_string());
    ContainerUpdate {
        outcome,
        old_digest,
        old_image_id,
        needs_repair: !safe,
        interrupted,
        touched: true,
        dependents: dependents.reports(),
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

    /// The new container is up: the old one can go.
    async fn remove(&self, engine: &Engine) {
        if let Err(e) = engine.remove(&self.id).await {
            warn!(container = %self.name, error = %e, "Updated, but the old container could not be removed.");
        }
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
        if let Err(e) = engine.rename(&self.id, &self.name).await {
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
    let parked: Parked = last_attempt
        .iter()
        .find(|r| r.step == steps::PARKING)
        .and_then(|r| r.detail.as_deref())
        .and_then(|d| serde_json::from_str(d).ok())?;
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
    let under_name = engine
        .container_id_by_name(&parked.name)
        .await
        .map_err(|e| e.to_string())?;
    let old = match engine.inspect_container(&parked.id).await {
        Ok(old) => Some(old),
        Err(crate::engine::EngineError::NotFound { .. }) => None,
        Err(e) => return Err(e.to_string()),
    };
    if verified {
        // The new container had proven itself: finish by removing the old one.
        if old.is_some() {
            engine.remove(&parked.id).await.map_err(|e| e.to_string())?;
        }
        info!(container = %parked.name, "Recovered an interrupted update: finished it.");
        return Ok(Outcome::Updated);
    }
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
