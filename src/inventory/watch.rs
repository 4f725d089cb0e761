//! The watch task: keeps the target index current from the engine.
//!
//! At start it lists every labelled container (and, on a swarm manager, every
//! labelled service: `inventory::services`); then it follows the engine's event
//! streams, re-inspecting a container or service whenever it changes. When a
//! stream drops (engine restart), it reconnects with backoff and resyncs from
//! a full list, because events missed meanwhile are gone. It resyncs too when
//! the engine joins, leaves or is promoted in a swarm (checked every
//! [`ROLE_CHECK`]), since services can be listed on managers only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{IndexSnapshot, Target, TargetId, TargetIndex, TargetKind, PARKED_SUFFIX};
use crate::backoff::Backoff;
use crate::engine::{ContainerDetails, Engine, EngineError, EngineEvent, ServiceEvent};
use crate::event::ImageRef;
use crate::inventory::services as discovery;
use crate::labels::{TargetOptions, COMPOSE_PROJECT, COMPOSE_SERVICE, LEGACY_ENABLE};

/// How often the swarm role is checked for a change that needs a resync.
pub const ROLE_CHECK: Duration = Duration::from_secs(30);

/// Waits between resyncs after the engine went away.
const RESYNC_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

/// A change from either event stream.
enum Change {
    Container(EngineEvent),
    Service(ServiceEvent),
}

/// Turns an inspected container into a target, or says why it is not one.
pub fn target_from(details: &ContainerDetails) -> Result<Target, String> {
    let labels = details.labels();
    let (options, problems) = TargetOptions::from_labels(&labels);
    for problem in problems {
        warn!(container = details.name(), "{problem}; ignoring that label.");
    }
    if !options.enabled {
        return Err("not labelled".into());
    }
    if details.name().ends_with(PARKED_SUFFIX) {
        return Err("parked by an update in progress".into());
    }
    let image = ImageRef::parse(details.image_reference()).map_err(|e| e.to_string())?;
    Ok(Target {
        id: TargetId(details.id().to_string()),
        kind: TargetKind::Container,
        name: details.name().to_string(),
        image,
        image_id: details.image_id().to_string(),
        running: details.running(),
        monitor_only: options.monitor_only,
        options,
        compose_project: labels.get(COMPOSE_PROJECT).cloned(),
        compose_service: labels.get(COMPOSE_SERVICE).cloned(),
    })
}

/// Lists and inspects every labelled container, and every labelled service on a manager.
pub async fn list_targets(engine: &Engine) -> Result<Vec<Target>, EngineError> {
    let ids = engine.list_labelled_ids().await?;
    let mut targets = Vec::with_capacity(ids.len());
    let mut inspections = futures_util::stream::iter(ids)
        .map(|id| async move { engine.inspect_container(&id).await })
        .buffer_unordered(16);
    while let Some(result) = inspections.next().await {
        match result {
            Ok(details) => match target_from(&details) {
                Ok(target) => targets.push(target),
                Err(why) => debug!(container = details.name(), why, "Not a target."),
            },
            // Removed between list and inspect.
            Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    targets.extend(discovery::list_targets(engine).await?);
    Ok(targets)
}

/// Targets opted in by the seed tool's label form, told about it once each.
#[derive(Default)]
struct SeedFormNotices {
    told: HashSet<TargetId>,
}

impl SeedFormNotices {
    /// Logs, once per target, that compose means the map form of the label;
    /// returns the names of the targets told this time.
    fn point_out(&mut self, snapshot: &IndexSnapshot) -> Vec<String> {
        let mut told = Vec::new();
        for target in snapshot.all().filter(|t| t.options.seed_label_form) {
            if self.told.insert(target.id.clone()) {
                told.push(target.name.clone());
                warn!(
                    target = %target.name,
                    kind = ?target.kind,
                    "Opted in by a label whose key is `{LEGACY_ENABLE}: true` and whose value is empty: \
                     that is what compose makes of the list form `- '{LEGACY_ENABLE}: true'`. \
                     The map form `{LEGACY_ENABLE}: \"true\"` (or the list form `- {LEGACY_ENABLE}=true`) \
                     is the label compose means; hoist accepts both."
                );
            }
        }
        told
    }
}

/// Publishes a new snapshot of the index, pointing out what needs it first.
fn publish_snapshot(
    index: &TargetIndex,
    publish: &watch::Sender<Arc<IndexSnapshot>>,
    notices: &mut SeedFormNotices,
) {
    let snapshot = index.snapshot();
    notices.point_out(&snapshot);
    publish.send_replace(snapshot);
}

/// Whether the engine is a swarm manager; `None` when it cannot be told.
async fn is_manager(engine: &Engine) -> Option<bool> {
    engine.swarm_role().await.ok().map(|role| role.manager)
}

/// Runs until `cancel` fires, publishing a new snapshot after every change.
pub async fn run(
    engine: Engine,
    mut index: TargetIndex,
    publish: watch::Sender<Arc<IndexSnapshot>>,
    cancel: CancellationToken,
) {
    // Failed resyncs in a row; a successful list starts the count again.
    let mut attempt: u32 = 0;
    let mut notices = SeedFormNotices::default();
    loop {
        // Subscribe before listing, so a change made during the list is not missed.
        let mut events = Box::pin(futures_util::stream::select(
            engine.container_events().map(|e| e.map(Change::Container)),
            engine.service_events().map(|e| e.map(Change::Service)),
        ));
        let manager = is_manager(&engine).await;
        let mut role_check = tokio::time::interval(ROLE_CHECK);
        role_check.tick().await;
        match list_targets(&engine).await {
            Ok(targets) => {
                let count = targets.len();
                index.replace_all(targets);
                publish_snapshot(&index, &publish, &mut notices);
                info!(targets = count, "Target index synced with the engine.");
                attempt = 0;
            }
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let wait = RESYNC_BACKOFF.wait(attempt);
                warn!(error = %e, retry_in = ?wait, "Could not list containers; retrying.");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = events.next() => next,
                _ = role_check.tick() => {
                    let now = is_manager(&engine).await;
                    // The event stream has no limit of its own (it may be
                    // quiet for hours); an engine that does not answer this
                    // bounded call may have stalled it: reconnect and resync.
                    if now.is_none() {
                        warn!("The engine did not answer the periodic check; reconnecting to its events.");
                        break;
                    }
                    if now != manager {
                        info!(manager = ?now, "The engine's swarm role changed; resyncing the targets.");
                        break;
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(Change::Container(event))) => {
                    debug!(container = %event.container_id, action = %event.action, "Engine event.");
                    apply_event(&engine, &mut index, &event.container_id, &event.action).await;
                    publish_snapshot(&index, &publish, &mut notices);
                }
                Some(Ok(Change::Service(event))) => {
                    debug!(service = %event.service_id, action = %event.action, "Service event.");
                    discovery::apply_event(&engine, &mut index, &event).await;
                    publish_snapshot(&index, &publish, &mut notices);
                }
                Some(Err(e)) => {
                    warn!(error = %e, "Engine event stream failed; reconnecting.");
                    tracing::debug!(error = ?e, "Event stream error detail.");
                    break;
                }
                None => {
                    warn!("Engine event stream ended; reconnecting.");
                    break;
                }
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RESYNC_BACKOFF.wait(attempt)) => {}
        }
    }
}

async fn apply_event(engine: &Engine, index: &mut TargetIndex, id: &str, action: &str) {
    let id = TargetId(id.to_string());
    if action == "destroy" {
        if let Some(target) = index.remove(&id) {
            debug!(container = %target.name, "Target removed.");
        }
        return;
    }
    match engine.inspect_container(&id.0).await {
        Ok(details) => match target_from(&details) {
            Ok(target) => {
                debug!(container = %target.name, image = %target.image, action, "Target updated.");
                index.upsert(target);
            }
            Err(why) => {
                debug!(container = details.name(), why, "Not a target.");
                index.remove(&id);
            }
        },
        Err(EngineError::NotFound { .. }) => {
            index.remove(&id);
        }
        Err(e) => warn!(container = %id.0, error = %e, "Could not inspect a changed container."),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::event::Aliases;

    fn target(id: &str, labels: &[(&str, &str)]) -> Target {
        let labels: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (options, _) = TargetOptions::from_labels(&labels);
        Target {
            id: TargetId(id.into()),
            kind: TargetKind::Container,
            name: format!("name-{id}"),
            image: ImageRef::parse("registry.test/app:1").unwrap(),
            image_id: "sha256:1".into(),
            running: true,
            monitor_only: false,
            options,
            compose_project: None,
            compose_service: None,
        }
    }

    #[test]
    fn the_seed_label_form_is_pointed_out_once_per_target() {
        let mut index = TargetIndex::new(Aliases::default());
        let mut notices = SeedFormNotices::default();
        index.upsert(target("a", &[("registry-docker-updater: true", "")]));
        index.upsert(target("b", &[("hoist.enable", "true")]));
        assert_eq!(notices.point_out(&index.snapshot()), ["name-a"]);
        // Every later snapshot (an event, a resync) says nothing more of it.
        index.upsert(target("c", &[("registry-docker-updater :TRUE", "")]));
        assert_eq!(notices.point_out(&index.snapshot()), ["name-c"]);
        index.replace_all([target("a", &[("registry-docker-updater: true", "")])]);
        assert!(notices.point_out(&index.snapshot()).is_empty());
    }
}
