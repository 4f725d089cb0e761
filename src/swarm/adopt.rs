//! Orphaned service updates: a new leader follows what the old one started.
//!
//! Swarm itself carries a rolling update across a leader change (the new
//! leader's orchestrator resumes it). What would be lost is hoist's report: the
//! hoist that sent the update may have gone down with its node. So whenever
//! this hoist's engine *becomes* the leader (and once at start-up, when it
//! already is), it looks for labelled services whose update is under way and
//! follows each to its end, reporting it as a job. It never sends an update:
//! the target digest is read from the service itself.
//!
//! If the old leader's hoist is still alive it keeps following its own update
//! too, so such an update may be reported twice (at least once, never applied
//! twice).

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::deploy::service::ServicesMode;
use crate::engine::{Engine, ServiceDetails, UpdateState};
use crate::event::pinned_digest;
use crate::event::{ImageEvent, SourceKind};
use crate::inventory::services as discovery;
use crate::job::Runner;

/// How often the swarm role is checked for a change of leader.
pub const ROLE_CHECK: Duration = Duration::from_secs(5);

/// Runs until `cancel` fires.
pub async fn run(engine: Engine, runner: Runner, mode: ServicesMode, cancel: CancellationToken) {
    if mode == ServicesMode::Off {
        return;
    }
    let mut was_leader = false;
    loop {
        match engine.swarm_role().await {
            Ok(role) => {
                if role.leader && !was_leader {
                    info!(node = ?role.node_id, "This engine leads the swarm: hoist updates its labelled services.");
                    adopt_under_way(&engine, &runner).await;
                } else if !role.leader && was_leader {
                    info!(
                        "This engine no longer leads the swarm: services are left to the new leader's hoist."
                    );
                }
                was_leader = role.leader;
            }
            Err(e) => debug!(error = %e, "Cannot read the swarm role."),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ROLE_CHECK) => {}
        }
    }
}

/// Follows every labelled service update that is under way, each on its own task.
async fn adopt_under_way(engine: &Engine, runner: &Runner) {
    let services = match engine.list_labelled_services().await {
        Ok(services) => services,
        Err(e) => {
            warn!(error = %e, "Cannot list services to find updates under way.");
            return;
        }
    };
    for service in services {
        let Some(status) = service.update_status().filter(|s| s.state.in_progress()) else {
            continue;
        };
        let Some(image) = target_image(engine, &service, status.state, &status.message).await else {
            warn!(
                service = service.name(),
                "An update is under way, but its image cannot be told; not followed."
            );
            continue;
        };
        let Ok(mut target) = discovery::target_from(&service) else {
            continue;
        };
        let Some(digest) = pinned_digest(&image) else {
            continue;
        };
        target.image_id = digest.to_string();
        let event = ImageEvent {
            reference: target.image.clone(),
            digest,
            // No source carries this update any more; polling is the nearest:
            // hoist found it by reading the swarm.
            source: SourceKind::Poll,
            delivery_id: None,
            actor: None,
            received_at: Utc::now(),
        };
        let runner = runner.clone();
        tokio::spawn(async move { runner.adopt(event, target, image).await });
    }
}

/// The image the update under way goes to. While updating, it is the spec's;
/// once Swarm rolls back, the spec is the old one again and the image is the
/// failed task's (Swarm's message names it).
async fn target_image(
    engine: &Engine,
    service: &ServiceDetails,
    state: UpdateState,
    message: &str,
) -> Option<String> {
    if state == UpdateState::Updating {
        return Some(service.image().to_string());
    }
    let tasks = engine.service_tasks(service.id()).await.ok()?;
    let named = message.rsplit(' ').next().unwrap_or_default();
    tasks
        .iter()
        .find(|t| !named.is_empty() && t.id == named)
        .or_else(|| {
            tasks
                .iter()
                .filter(|t| t.image != service.image())
                .max_by_key(|t| t.timestamp)
        })
        .map(|t| t.image.clone())
}
