//! Recreating a standalone container on a new image, safely.
//!
//! The old container is never removed before the new one is proven:
//! 1. pull (once per push, before any target is touched);
//! 2. build the new container's body from the old one's inspect; a failure
//!    here touches nothing;
//! 3. park the old one: restart policy off, stop, rename to `<name>-hoist-old`;
//! 4. create the new one under the name, start it, wait until it is up;
//! 5. success: remove the parked one. Failure at 4: keep the new one's last
//!    log lines, remove it, and give the old one its name, restart policy and
//!    running state back.
//!
//! So at every step the user has the old or the new container, never neither.

use std::time::Duration;

use tracing::{error, info, warn};

use super::engine::{ContainerDetails, Engine, EngineError, ImageDetails};
use super::{health, Outcome};
use crate::config::HealthConfig;
use crate::event::Digest;
use crate::target::PARKED_SUFFIX;

/// How many log lines of a failed container go into the report.
pub const LOG_TAIL_LINES: usize = 20;

/// Settings for one container update.
#[derive(Clone, Debug)]
pub struct UpdateSettings {
    pub health: HealthConfig,
    /// How long the old container gets to stop.
    pub stop_timeout: Duration,
}

/// What one container update did.
#[derive(Clone, Debug)]
pub struct ContainerUpdate {
    pub outcome: Outcome,
    /// The digest of the image the container ran before, in the pushed repository.
    pub old_digest: Option<Digest>,
}

/// Updates the container called `name` to `new_image` (already pulled and tagged).
/// `repository` is the engine's name of the pushed repository, to find the old digest.
pub async fn update(
    engine: &Engine,
    name: &str,
    new_image: &ImageDetails,
    repository: &str,
    settings: &UpdateSettings,
) -> ContainerUpdate {
    let old = match engine.inspect_container(name).await {
        Ok(old) => old,
        Err(e) => return failed(None, format!("cannot inspect the container: {e}")),
    };
    let old_image = engine.inspect_image(old.image_id()).await;
    let old_digest = old_image
        .as_ref()
        .ok()
        .and_then(|image| image.digest_in(repository));
    if old.image_id() == new_image.id() {
        return ContainerUpdate {
            outcome: Outcome::AlreadyCurrent,
            old_digest,
        };
    }
    let old_image = match old_image {
        Ok(image) => image,
        Err(e) => return failed(old_digest, format!("cannot inspect the current image: {e}")),
    };
    if old.auto_remove() {
        return failed(
            old_digest,
            "the container runs with --rm, so it cannot be kept for a rollback".into(),
        );
    }
    let spec = match old.recreate_spec(&old_image, new_image, old.image_reference()) {
        Ok(spec) => spec,
        Err(why) => {
            return failed(
                old_digest,
                format!("cannot read the container's configuration: {why}"),
            )
        }
    };
    let parked = Parked::park(engine, &old, settings.stop_timeout).await;
    let parked = match parked {
        Ok(parked) => parked,
        Err(why) => return failed(old_digest, why),
    };

    let new_id = match engine.create(name, &spec).await {
        Ok(id) => id,
        Err(e) => {
            return parked
                .restore(
                    engine,
                    None,
                    format!("cannot create the new container: {e}"),
                    old_digest,
                )
                .await
        }
    };
    if !parked.was_running {
        // A stopped container is updated but left stopped, as it was.
        return parked.finish(engine, old_digest).await;
    }
    if let Err(e) = engine.start(&new_id).await {
        return parked
            .restore(
                engine,
                Some(&new_id),
                format!("cannot start the new container: {e}"),
                old_digest,
            )
            .await;
    }
    match health::wait_until_up(engine, &new_id, &settings.health).await {
        Ok(()) => parked.finish(engine, old_digest).await,
        Err(reason) => parked.restore(engine, Some(&new_id), reason, old_digest).await,
    }
}

fn failed(old_digest: Option<Digest>, reason: String) -> ContainerUpdate {
    ContainerUpdate {
        outcome: Outcome::Failed { reason },
        old_digest,
    }
}

/// The old container, stopped and renamed aside while its successor proves itself.
struct Parked {
    id: String,
    name: String,
    was_running: bool,
    restart_policy: Option<super::engine::RestartPolicyName>,
}

impl Parked {
    async fn park(engine: &Engine, old: &ContainerDetails, stop_timeout: Duration) -> Result<Parked, String> {
        let parked = Parked {
            id: old.id().to_string(),
            name: old.name().to_string(),
            was_running: old.running(),
            restart_policy: old.restart_policy(),
        };
        let parked_name = format!("{}{PARKED_SUFFIX}", parked.name);
        // A leftover from an earlier interrupted update: the container under
        // the real name is the one that counts.
        if let Ok(Some(leftover)) = engine.container_id_by_name(&parked_name).await {
            warn!(container = %parked.name, leftover = %leftover, "Removing a parked container left by an earlier update.");
            engine
                .remove(&leftover)
                .await
                .map_err(|e| format!("cannot remove leftover {parked_name}: {e}"))?;
        }
        // Off first, so the engine does not restart it while parked (or after a daemon restart).
        engine
            .set_restart_policy(&parked.id, None)
            .await
            .map_err(|e| format!("cannot change the restart policy: {e}"))?;
        if parked.was_running {
            if let Err(e) = engine.stop(&parked.id, stop_timeout).await {
                if let Err(again) = engine
                    .set_restart_policy(&parked.id, parked.restart_policy.as_ref())
                    .await
                {
                    warn!(container = %parked.name, error = %again, "Cannot restore the restart policy.");
                }
                return Err(format!("cannot stop the old container: {e}"));
            }
        }
        if let Err(e) = engine.rename(&parked.id, &parked_name).await {
            parked
                .bring_back(engine)
                .await
                .map_err(|again| format!("{e}; and then {again}"))?;
            return Err(format!("cannot rename the old container aside: {e}"));
        }
        Ok(parked)
    }

    /// The new container is up: the old one can go.
    async fn finish(self, engine: &Engine, old_digest: Option<Digest>) -> ContainerUpdate {
        if let Err(e) = engine.remove(&self.id).await {
            warn!(container = %self.name, error = %e, "Updated, but the old container could not be removed.");
        }
        info!(container = %self.name, "Container updated.");
        ContainerUpdate {
            outcome: Outcome::Updated,
            old_digest,
        }
    }

    /// The new container failed: remove it and bring the old one back.
    async fn restore(
        self,
        engine: &Engine,
        new_id: Option<&str>,
        reason: String,
        old_digest: Option<Digest>,
    ) -> ContainerUpdate {
        let mut log_tail = Vec::new();
        if let Some(new_id) = new_id {
            log_tail = engine.log_tail(new_id, LOG_TAIL_LINES).await;
            if let Err(e) = engine.remove(new_id).await {
                error!(container = %self.name, error = %e, "Cannot remove the failed new container; the old one stays parked.");
                return failed(
                    old_digest,
                    format!("{reason}; and the failed container could not be removed: {e}"),
                );
            }
        }
        if let Err(e) = engine.rename(&self.id, &self.name).await {
            error!(container = %self.name, error = %e, "Cannot give the old container its name back.");
            return failed(
                old_digest,
                format!("{reason}; and the old container could not be renamed back: {e}"),
            );
        }
        match self.bring_back(engine).await {
            Ok(()) => {
                warn!(container = %self.name, %reason, "Rolled back to the old container.");
                let outcome = match new_id {
                    Some(_) => Outcome::RolledBack { reason, log_tail },
                    None => Outcome::Failed { reason },
                };
                ContainerUpdate { outcome, old_digest }
            }
            Err(e) => {
                error!(container = %self.name, error = %e, "The old container did not come back after a failed update.");
                failed(
                    old_digest,
                    format!("{reason}; and the old container did not restart: {e}"),
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
        if self.was_running {
            engine
                .start(&self.id)
                .await
                .map_err(|e: EngineError| format!("cannot start the old container: {e}"))?;
        }
        Ok(())
    }
}
