//! Swarm services as targets: listed on managers, kept current from `type=service` events.
//!
//! `inventory::watch` calls in here next to its container listing, so the index
//! holds both kinds. A service is matched by its spec image without the digest
//! (`repo:tag`): Swarm pins services to a digest after their first deploy.

use tracing::{debug, warn};

use crate::engine::{Engine, EngineError, ServiceDetails, ServiceEvent};
use crate::event::pinned_digest;
use crate::event::ImageRef;
use crate::inventory::{Target, TargetId, TargetIndex, TargetKind};
use crate::labels::{TargetOptions, STACK_NAMESPACE};

/// Turns an inspected service into a target, or says why it is not one.
pub fn target_from(service: &ServiceDetails) -> Result<Target, String> {
    let labels = service.labels();
    let (options, problems) = TargetOptions::from_labels(&labels);
    for problem in problems {
        warn!(service = service.name(), "{problem}; ignoring that label.");
    }
    if !options.enabled {
        return Err("not labelled".into());
    }
    let image = ImageRef::parse(service.image()).map_err(|e| e.to_string())?;
    if image.tag().is_none() {
        return Err("its image is pinned by digest alone; no tag push can move it".into());
    }
    let stack = labels.get(STACK_NAMESPACE).cloned();
    let name = service.name().to_string();
    Ok(Target {
        id: TargetId(service.id().to_string()),
        kind: TargetKind::Service,
        compose_service: stack
            .as_ref()
            .and_then(|stack| name.strip_prefix(&format!("{stack}_")).map(str::to_string)),
        compose_project: stack,
        name,
        image: image.without_digest(),
        image_id: pinned_digest(service.image())
            .map(|d| d.to_string())
            .unwrap_or_default(),
        running: true,
        monitor_only: options.monitor_only,
        options,
    })
}

/// Every labelled service, when this engine is a swarm manager (else none:
/// workers cannot list services, and their hoist does not update them).
pub async fn list_targets(engine: &Engine) -> Result<Vec<Target>, EngineError> {
    if !engine.swarm_role().await?.manager {
        return Ok(Vec::new());
    }
    let services = engine.list_labelled_services().await?;
    Ok(services
        .iter()
        .filter_map(|service| match target_from(service) {
            Ok(target) => Some(target),
            Err(why) => {
                debug!(service = service.name(), why, "Not a target.");
                None
            }
        })
        .collect())
}

/// Applies one service event to the index.
pub async fn apply_event(engine: &Engine, index: &mut TargetIndex, event: &ServiceEvent) {
    let id = TargetId(event.service_id.clone());
    if event.action == "remove" {
        if let Some(target) = index.remove(&id) {
            debug!(service = %target.name, "Target removed.");
        }
        return;
    }
    match engine.inspect_service(&id.0).await {
        Ok(service) => match target_from(&service) {
            Ok(target) => {
                debug!(service = %target.name, image = %target.image, action = %event.action, "Target updated.");
                index.upsert(target);
            }
            Err(why) => {
                debug!(service = service.name(), why, "Not a target.");
                index.remove(&id);
            }
        },
        Err(EngineError::NotFound { .. }) => {
            index.remove(&id);
        }
        Err(e) => warn!(service = %id.0, error = %e, "Could not inspect a changed service."),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn service(labels: serde_json::Value, image: &str) -> ServiceDetails {
        ServiceDetails::from_json(json!({
            "ID": "svc1",
            "Version": { "Index": 3 },
            "Spec": {
                "Name": "shop_web",
                "Labels": labels,
                "TaskTemplate": { "ContainerSpec": { "Image": image } },
                "Mode": { "Replicated": { "Replicas": 2 } }
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_pinned_labelled_service_is_matched_by_its_tag() {
        let image = format!("registry.test:5000/team/web:1.4@{DIGEST}");
        let labels = json!({ "hoist.enable": "true", "com.docker.stack.namespace": "shop" });
        let target = target_from(&service(labels, &image)).unwrap();
        assert_eq!(target.kind, TargetKind::Service);
        assert_eq!(target.image.to_string(), "registry.test:5000/team/web:1.4");
        assert_eq!(target.image_id, DIGEST);
        assert_eq!(target.compose_project.as_deref(), Some("shop"));
        assert_eq!(target.compose_service.as_deref(), Some("web"));
    }

    #[test]
    fn unlabelled_and_digest_only_services_are_not_targets() {
        let image = format!("registry.test:5000/team/web:1.4@{DIGEST}");
        assert!(target_from(&service(json!({}), &image)).is_err());
        let digest_only = format!("registry.test:5000/team/web@{DIGEST}");
        assert!(target_from(&service(json!({ "hoist.enable": "true" }), &digest_only)).is_err());
    }
}
