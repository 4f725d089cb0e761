//! The order of one push's updates.
//!
//! The targets of a push are laid out in lanes. A lane's targets are updated
//! one after the other, each health-gated before the next starts, and the
//! first failure stops the lane (the rest stay on the old image); lanes run
//! side by side, up to `HOIST_MAX_PARALLEL`. A lane holds:
//! - the replicas of one compose service (same `com.docker.compose.project`
//!   and `com.docker.compose.service`), so they are rolled, never all parked
//!   at once;
//! - a target and the targets of the same push that depend on it (its
//!   network namespace, volumes or links), which its update recreates on the
//!   new image, so they are updated once;
//! - any other target alone.
//!
//! With a canary (`HOIST_CANARY=true`, or `hoist.canary=true` on a target) and
//! several targets, the first lane's first target goes alone first; the rest
//! start only when it is healthy, and are not touched when it is not.
//! hoist's own container goes last, alone: its update hands hoist over to
//! its successor ([`crate::deploy::selfupdate`]).

use std::collections::HashMap;
use std::future::Future;

use futures_util::StreamExt;

use crate::inventory::{Target, TargetKind};

/// The order in which one push's targets are updated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Updated first, alone; the rest wait for its verdict.
    pub canary: Option<Target>,
    /// Each lane in order; lanes side by side.
    pub lanes: Vec<Vec<Target>>,
    /// hoist's own container: after everything else.
    pub own: Option<Target>,
}

/// A compose service: project and service name.
type Service = (String, String);

/// Lays the targets out. `owner_of` maps a target's name to the name of
/// another target of the push it depends on; `is_own` tells hoist's own container.
pub fn plan(
    targets: Vec<Target>,
    canary: bool,
    owner_of: &HashMap<String, String>,
    is_own: impl Fn(&Target) -> bool,
) -> Plan {
    let mut plan = Plan::default();
    let mut lanes: Vec<(Option<Service>, Vec<Target>)> = Vec::new();
    let mut carried: Vec<Target> = Vec::new();
    let mut targets = targets;
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    for target in targets {
        if target.kind == TargetKind::Container && plan.own.is_none() && is_own(&target) {
            plan.own = Some(target);
            continue;
        }
        if owner_of.contains_key(&target.name) {
            carried.push(target);
            continue;
        }
        let group = match (&target.compose_project, &target.compose_service, target.kind) {
            (Some(project), Some(service), TargetKind::Container) => Some((project.clone(), service.clone())),
            _ => None,
        };
        match lanes.iter_mut().find(|(g, _)| group.is_some() && *g == group) {
            Some((_, lane)) => lane.push(target),
            None => lanes.push((group, vec![target])),
        }
    }
    let mut lanes: Vec<Vec<Target>> = lanes.into_iter().map(|(_, lane)| lane).collect();
    // A dependent target goes right after its owner, in the owner's lane
    // (or alone, when its owner is not laid out: hoist itself, a chain).
    for target in carried {
        let owner = &owner_of[&target.name];
        match lanes.iter_mut().find_map(|lane| {
            let at = lane.iter().position(|t| t.name == *owner)?;
            Some((lane, at))
        }) {
            Some((lane, at)) => lane.insert(at + 1, target),
            None => lanes.push(vec![target]),
        }
    }
    let updatable = lanes.iter().flatten().filter(|t| !t.monitor_only).count();
    let canary = canary || lanes.iter().flatten().any(|t| t.options.canary);
    if canary && updatable > 1 {
        if let Some(lane) = lanes
            .iter_mut()
            .find(|lane| lane.first().is_some_and(|t| !t.monitor_only))
        {
            plan.canary = Some(lane.remove(0));
        }
        lanes.retain(|lane| !lane.is_empty());
    }
    plan.lanes = lanes;
    plan
}

/// How the runner sees one target's result here.
pub trait Verdict {
    /// It went as it should (or needed nothing): the next may start.
    fn passed(&self) -> bool;
}

/// Runs the plan: `update` updates one target; `held` is the result of a
/// target not touched because `reason`.
pub async fn run<R, F, Fut>(
    plan: Plan,
    max_parallel: usize,
    update: F,
    held: impl Fn(&Target, String) -> R,
) -> Vec<R>
where
    R: Verdict,
    F: Fn(Target) -> Fut,
    Fut: Future<Output = R>,
{
    let mut results = Vec::new();
    let Plan { canary, lanes, own } = plan;
    if let Some(canary) = canary {
        let name = canary.name.clone();
        let result = update(canary).await;
        let passed = result.passed();
        results.push(result);
        if !passed {
            let reason =
                format!("not updated: the canary {name} failed first, so this target was not touched");
            results.extend(
                lanes
                    .iter()
                    .flatten()
                    .chain(own.iter())
                    .map(|t| held(t, reason.clone())),
            );
            return results;
        }
    }
    let (update, held) = (&update, &held);
    let lanes = futures_util::stream::iter(lanes)
        .map(|lane| async move {
            let mut results = Vec::new();
            let mut failed: Option<String> = None;
            for target in lane {
                if let Some(first) = &failed {
                    results.push(held(
                        &target,
                        format!("not updated: {first} failed before it (one at a time), so this one stays on the old image"),
                    ));
                    continue;
                }
                let name = target.name.clone();
                let result = update(target).await;
                if !result.passed() {
                    failed = Some(name);
                }
                results.push(result);
            }
            results
        })
        .buffer_unordered(max_parallel.max(1))
        .collect::<Vec<_>>()
        .await;
    results.extend(lanes.into_iter().flatten());
    if let Some(own) = own {
        results.push(update(own).await);
    }
    results
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::ImageRef;
    use crate::inventory::{TargetId, TargetOptions};

    fn target(name: &str, service: Option<&str>) -> Target {
        Target {
            id: TargetId(format!("{name}-id")),
            kind: TargetKind::Container,
            name: name.into(),
            image: ImageRef::parse("127.0.0.1:5000/app:1").unwrap(),
            image_id: "sha256:x".into(),
            running: true,
            monitor_only: false,
            options: TargetOptions::default(),
            compose_project: service.map(|_| "proj".to_string()),
            compose_service: service.map(str::to_string),
        }
    }

    fn names(lane: &[Target]) -> Vec<&str> {
        lane.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn replicas_of_one_service_share_a_lane_and_others_run_beside_them() {
        let targets = vec![
            target("proj_web_2", Some("web")),
            target("other", None),
            target("proj_web_1", Some("web")),
            target("proj_worker_1", Some("worker")),
            target("proj_web_3", Some("web")),
        ];
        let plan = plan(targets, false, &HashMap::new(), |_| false);
        let lanes: Vec<Vec<&str>> = plan.lanes.iter().map(|l| names(l)).collect();
        assert_eq!(
            lanes,
            vec![
                vec!["other"],
                vec!["proj_web_1", "proj_web_2", "proj_web_3"],
                vec!["proj_worker_1"]
            ]
        );
        assert!(plan.canary.is_none());
    }

    #[test]
    fn a_canary_goes_first_and_hoist_itself_last() {
        let targets = vec![target("a", None), target("b", None), target("hoist", None)];
        let plan = plan(targets, true, &HashMap::new(), |t| t.name == "hoist");
        assert_eq!(plan.canary.unwrap().name, "a");
        assert_eq!(plan.lanes.len(), 1);
        assert_eq!(plan.own.unwrap().name, "hoist");
        // One target: no canary (nothing to spare).
        let one = super::plan(vec![target("a", None)], true, &HashMap::new(), |_| false);
        assert!(one.canary.is_none());
        // The label turns it on too.
        let mut labelled = target("b", None);
        labelled.options.canary = true;
        let by_label = super::plan(vec![target("a", None), labelled], false, &HashMap::new(), |_| {
            false
        });
        assert_eq!(by_label.canary.unwrap().name, "a");
    }

    #[test]
    fn a_dependent_target_follows_its_owner_in_one_lane() {
        let owner_of = HashMap::from([("sidecar".to_string(), "vpn".to_string())]);
        let plan = plan(
            vec![target("sidecar", None), target("vpn", None), target("x", None)],
            false,
            &owner_of,
            |_| false,
        );
        let lanes: Vec<Vec<&str>> = plan.lanes.iter().map(|l| names(l)).collect();
        assert_eq!(lanes, vec![vec!["vpn", "sidecar"], vec!["x"]]);
    }

    struct R(String, bool);
    impl Verdict for R {
        fn passed(&self) -> bool {
            self.1
        }
    }

    #[tokio::test]
    async fn lanes_run_side_by_side() {
        // Each of two lanes' first target waits for the other: sequential lanes would never finish.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let targets = vec![
            target("w1", Some("web")),
            target("w2", Some("web")),
            target("x", None),
        ];
        let plan = plan(targets, false, &HashMap::new(), |_| false);
        let update = |t: Target| {
            let barrier = barrier.clone();
            async move {
                if t.name != "w2" {
                    barrier.wait().await;
                }
                R(t.name, true)
            }
        };
        let held = |t: &Target, _: String| R(t.name.clone(), false);
        let done = tokio::time::timeout(std::time::Duration::from_secs(5), run(plan, 4, update, held)).await;
        assert_eq!(done.expect("lanes ran side by side").len(), 3);
    }

    #[tokio::test]
    async fn a_failure_stops_its_lane_and_a_failed_canary_stops_everything() {
        let targets = vec![
            target("w1", Some("web")),
            target("w2", Some("web")),
            target("w3", Some("web")),
            target("x", None),
        ];
        let fails = |t: Target| async move {
            let ok = t.name != "w1";
            R(t.name, ok)
        };
        let held = |t: &Target, why: String| R(format!("{}:held:{why}", t.name), false);
        let plan1 = plan(targets.clone(), false, &HashMap::new(), |_| false);
        let mut results: Vec<String> = run(plan1, 4, fails, held)
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
        results.sort();
        assert_eq!(results[0], "w1");
        assert!(
            results[1].starts_with("w2:held:not updated: w1 failed"),
            "{results:?}"
        );
        assert!(results[2].starts_with("w3:held:"));
        assert_eq!(results[3], "x");

        let plan2 = plan(targets, true, &HashMap::new(), |_| false);
        let results: Vec<String> = run(plan2, 4, fails, held)
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(results[0], "w1");
        assert_eq!(results.len(), 4);
        assert!(results[1..]
            .iter()
            .all(|r| r.contains(":held:not updated: the canary w1 failed")));
    }
}
