//! `GET /v1/plan?image=`: what a push of an image tag would redeploy, and for
//! every other container or service running that tag, why it would not.
//!
//! Read-only: it lists the engine's containers (every one, labelled or not)
//! and the index's services, and decides as the runner would.

use futures_util::StreamExt;
use serde::Serialize;

use crate::deploy::service::{acts_on_services, ServicesMode};
use crate::engine::{Engine, EngineError};
use crate::event::{Aliases, ImageRef};
use crate::inventory::{watch::target_from, IndexSnapshot, TargetKind, PARKED_SUFFIX};
use crate::matcher::targets_running;

/// One container or service running the tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    pub name: String,
    /// `container` or `service`.
    pub kind: &'static str,
    /// The reference it runs, as it was started.
    pub image: String,
    /// Why a push would not redeploy it; `None` when it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of `GET /v1/plan`.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The tag asked about, normalised.
    pub image: String,
    /// What a push of it would redeploy.
    pub redeploy: Vec<PlanEntry>,
    /// What runs it and would not be redeployed, each with why.
    pub skipped: Vec<PlanEntry>,
}

/// Why a container running the tag is no target, in an operator's words.
pub fn why_not(reason: &str) -> String {
    match reason {
        "not labelled" => "not labelled (hoist.enable=true)".into(),
        other => other.into(),
    }
}

/// Works out the plan for `image` (a tagged reference).
pub async fn plan(
    engine: &Engine,
    snapshot: &IndexSnapshot,
    aliases: &Aliases,
    services: ServicesMode,
    image: &ImageRef,
) -> Result<Plan, EngineError> {
    let key = aliases.key(image);
    let mut plan = Plan {
        image: image.to_string(),
        redeploy: Vec::new(),
        skipped: Vec::new(),
    };
    let ids = engine.list_all_ids().await?;
    let mut inspections = futures_util::stream::iter(ids)
        .map(|id| async move { engine.inspect_container(&id).await })
        .buffer_unordered(8);
    while let Some(result) = inspections.next().await {
        let details = match result {
            Ok(details) => details,
            Err(EngineError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let Ok(runs) = ImageRef::parse(details.image_reference()) else {
            continue;
        };
        if key.is_none() || aliases.key(&runs.without_digest()) != key {
            continue;
        }
        let entry = |reason: Option<String>| PlanEntry {
            name: details.name().to_string(),
            kind: "container",
            image: runs.to_string(),
            reason,
        };
        let reason = match target_from(&details) {
            Err(why) => Some(why_not(&why)),
            Ok(_) if details.name().ends_with(PARKED_SUFFIX) => {
                Some("parked by an update in progress".into())
            }
            Ok(_) if runs.digest().is_some() => {
                Some("pinned by digest: a push to the tag cannot move it".into())
            }
            Ok(target) if target.monitor_only => {
                Some("monitor-only (hoist.monitor-only=true): the update is reported, not applied".into())
            }
            Ok(_) => None,
        };
        match reason {
            None => plan.redeploy.push(entry(None)),
            Some(why) => plan.skipped.push(entry(Some(why))),
        }
    }
    let services_here = acts_on_services(engine, services).await;
    for service in targets_running(image, snapshot, aliases)
        .iter()
        .filter(|t| t.kind == TargetKind::Service)
    {
        let reason = if service.monitor_only {
            Some("monitor-only (hoist.monitor-only=true): the update is reported, not applied".to_string())
        } else if services == ServicesMode::Off {
            Some("a service, and HOIST_SERVICES=off".to_string())
        } else if !services_here {
            Some(
                "a service, and this engine is not the swarm's leader: the leader's hoist updates it"
                    .to_string(),
            )
        } else {
            None
        };
        let entry = PlanEntry {
            name: service.name.clone(),
            kind: "service",
            image: service.image.to_string(),
            reason: reason.clone(),
        };
        match reason {
            None => plan.redeploy.push(entry),
            Some(_) => plan.skipped.push(entry),
        }
    }
    plan.redeploy.sort_by(|a, b| a.name.cmp(&b.name));
    plan.skipped.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(plan)
}
