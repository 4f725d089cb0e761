//! Containers that depend on a target: they share its network namespace
//! (`--network container:<target>`, compose `network_mode: service:<target>`),
//! take its volumes (`--volumes-from`) or link to it (legacy `--link`).
//!
//! The engine resolves `container:<name>` to the target's ID when the
//! dependent is created, so a dependent left alone after its target is
//! recreated keeps the old namespace, which no longer reaches anything.
//! A dependent is therefore recreated after its target, pointing at the new
//! container, labelled or not, with the target's safety:
//! 1. [`park`], before the old target stops: each dependent is journaled,
//!    its restart policy turned off, stopped and renamed aside;
//! 2. [`Dependents::follow`], once the new target passed its health gate and
//!    before the target is journaled verified: each dependent is recreated
//!    from its own inspect, its references rewritten to the new target, and
//!    health-gated. A failure here fails the target, which then rolls back;
//! 3. [`Dependents::commit`] removes the parked ones; or
//!    [`Dependents::restore`], after the old target is back, removes the new
//!    ones and brings the parked ones back, attached to the restored target.
//!
//! The target's "verified" step is journaled only after every dependent
//! followed, so [`recover`] decides a dependent's fate from its target's:
//! a verified target keeps the new dependents, any other is rolled back.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::health::HealthConfig;
use super::{health, recreate, DeployError, Outcome, StepLog};
use crate::engine::{ContainerDetails, CreateSpec, Engine, EngineError, ImageDetails, RestartPolicyName};
use crate::inventory::PARKED_SUFFIX;
use crate::journal::StepRecord;

/// Journaled step names of a dependent (its own name is the record's target).
pub mod steps {
    /// Detail: the [`super::Record`] as JSON. Taken before the dependent is touched.
    pub const PARKING: &str = "dependent_parking";
    /// Detail: the new dependent's ID.
    pub const CREATED: &str = "dependent_created";
}

/// How many containers are inspected at once while looking for dependents.
const INSPECT_AT_ONCE: usize = 8;

/// Other targets of the same push, by container name, with the image each
/// goes to: a dependent that is one of them is recreated on that image, so
/// it is updated once (the runner then finds it current).
pub type CoTargets = std::sync::Arc<HashMap<String, ImageDetails>>;

/// What is journaled of a parked dependent: enough to put it back after a crash.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The target's name; its journaled steps decide the dependent's fate in recovery.
    pub of: String,
    /// The old target's ID, which the dependent's configuration names.
    pub old_target_id: String,
    pub was_running: bool,
    pub restart_policy: Option<RestartPolicyName>,
}

/// One dependent during an update.
#[derive(Debug)]
struct Dependent {
    record: Record,
    /// Its inspect before it was parked: the recreate's source.
    details: ContainerDetails,
    /// On the push's new image when it is one of its targets too.
    new_image: Option<ImageDetails>,
    /// The new container, once created.
    new_id: Option<String>,
    outcome: Option<Outcome>,
}

/// The dependents of one target, parked while it is updated.
#[derive(Debug, Default)]
pub struct Dependents {
    list: Vec<Dependent>,
    /// Whether this set has been committed or restored (nothing more to do).
    settled: bool,
}

/// A dependent's line under its target in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DependentReport {
    pub name: String,
    pub outcome: Outcome,
}

/// Whether `dependent`'s configuration names `target` (by name or ID).
pub fn depends_on(dependent: &ContainerDetails, target_id: &str, target_name: &str) -> bool {
    let Some(host) = dependent.raw.host_config.as_ref() else {
        return false;
    };
    let names = |reference: &str| {
        let reference = reference.trim_start_matches('/');
        reference == target_name || (reference.len() >= 12 && target_id.starts_with(reference))
    };
    let network = host
        .network_mode
        .as_deref()
        .and_then(|mode| mode.strip_prefix("container:"))
        .is_some_and(names);
    let volumes = host
        .volumes_from
        .iter()
        .flatten()
        .any(|v| names(v.split(':').next().unwrap_or_default()));
    // Inspect shows "/other:/this/alias".
    let links = host
        .links
        .iter()
        .flatten()
        .any(|l| names(l.split(':').next().unwrap_or_default()));
    network || volumes || links
}

/// Every container whose configuration names `target` (parked ones aside).
/// The list call narrows the search: only a container in another's network
/// namespace, one sharing a mount with the target, or one the target's
/// names show as linking to it (`/<linker>/<alias>`) is inspected.
pub async fn find(engine: &Engine, target: &ContainerDetails) -> Result<Vec<ContainerDetails>, EngineError> {
    let briefs = engine.list_briefs().await?;
    let (target_id, target_name) = (target.id().to_string(), target.name().to_string());
    let target_mounts = target.mount_keys();
    let linkers: Vec<String> = briefs
        .iter()
        .filter(|b| b.id == target_id)
        .flat_map(|b| b.names.iter())
        .filter_map(|n| {
            n.trim_start_matches('/')
                .split_once('/')
                .map(|(linker, _)| format!("/{linker}"))
        })
        .collect();
    let candidates: Vec<String> = briefs
        .into_iter()
        .filter(|b| b.id != target_id)
        .filter(|b| {
            b.network_mode
                .as_deref()
                .is_some_and(|m| m.starts_with("container:"))
                || b.mounts.iter().any(|m| target_mounts.contains(m))
                || b.names.iter().any(|n| linkers.contains(n))
        })
        .map(|b| b.id)
        .collect();
    let found: Vec<Result<Option<ContainerDetails>, EngineError>> = futures_util::stream::iter(candidates)
        .map(|id| {
            let (target_id, target_name) = (&target_id, &target_name);
            async move {
                match engine.inspect_container_full(&id).await {
                    Ok(c) if !c.name().ends_with(PARKED_SUFFIX) && depends_on(&c, target_id, target_name) => {
                        Ok(Some(c))
                    }
                    Ok(_) | Err(EngineError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(INSPECT_AT_ONCE)
        .collect()
        .await;
    let mut dependents = Vec::new();
    for item in found {
        if let Some(c) = item? {
            dependents.push(c);
        }
    }
    dependents.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(dependents)
}

/// Finds the dependents of `target` and parks them (journaled first), before
/// the target stops. On failure the ones already parked are put back and
/// nothing else was touched.
pub async fn park(
    engine: &Engine,
    target: &ContainerDetails,
    co_targets: &CoTargets,
    stop_timeout: Duration,
    log: &StepLog,
) -> Result<Dependents, DeployError> {
    let found = find(engine, target)
        .await
        .map_err(|e| DeployError::from_engine("cannot look for containers that depend on it", &e))?;
    let mut parked = Dependents::default();
    for details in found {
        let record = Record {
            id: details.id().to_string(),
            name: details.name().to_string(),
            of: target.name().to_string(),
            old_target_id: target.id().to_string(),
            was_running: details.running(),
            restart_policy: details.restart_policy(),
        };
        if details.auto_remove() {
            parked.restore(engine, log).await;
            return Err(DeployError::Verdict(format!(
                "{} depends on it and runs with --rm, so it cannot be kept for a rollback; nothing was changed",
                record.name
            )));
        }
        let detail = serde_json::to_string(&record).unwrap_or_default();
        if let Err(why) = log.before(&record.name, steps::PARKING, Some(detail)).await {
            parked.restore(engine, log).await;
            return Err(why);
        }
        let own_timeout = details.stop_timeout().unwrap_or(stop_timeout);
        let new_image = co_targets.get(&record.name).cloned();
        parked.list.push(Dependent {
            record,
            details,
            new_image,
            new_id: None,
            outcome: None,
        });
        let dependent = parked.list.last().expect("just pushed");
        if let Err(why) = park_one(engine, &dependent.record, own_timeout).await {
            let why = DeployError::from_engine(
                &format!("cannot park {}, which depends on it", dependent.record.name),
                &why,
            );
            parked.restore(engine, log).await;
            return Err(why);
        }
        info!(container = %dependent.record.name, target = %dependent.record.of, "Dependent parked while its target is updated.");
        log.after(steps::PARKING).await;
    }
    Ok(parked)
}

async fn park_one(engine: &Engine, record: &Record, stop_timeout: Duration) -> Result<(), EngineError> {
    let parked_name = format!("{}{PARKED_SUFFIX}", record.name);
    if let Ok(Some(leftover)) = engine.container_id_by_name(&parked_name).await {
        engine.remove(&leftover).await?;
    }
    engine.set_restart_policy(&record.id, None).await?;
    if record.was_running {
        engine.stop(&record.id, stop_timeout).await?;
    }
    engine.rename(&record.id, &parked_name).await
}

/// Puts a parked dependent back: its name, restart policy and running state.
async fn bring_back(engine: &Engine, record: &Record) -> Result<(), String> {
    let current = engine
        .inspect_container(&record.id)
        .await
        .map_err(|e| format!("cannot inspect {}: {e}", record.name))?;
    if current.name() != record.name {
        engine
            .rename(&record.id, &record.name)
            .await
            .map_err(|e| format!("cannot give {} its name back: {e}", record.name))?;
    }
    engine
        .set_restart_policy(&record.id, record.restart_policy.as_ref())
        .await
        .map_err(|e| format!("cannot restore the restart policy of {}: {e}", record.name))?;
    if record.was_running && !current.running() {
        engine
            .start(&record.id)
            .await
            .map_err(|e| format!("cannot start {} again: {e}", record.name))?;
    }
    Ok(())
}

/// A dependent that is not a target of the push keeps the very image it
/// ran: when its tag has moved since (a pull, or this very push of a tag it
/// shares with its target), it is recreated from the image ID instead.
async fn keep_own_image(engine: &Engine, details: &ContainerDetails, spec: &mut CreateSpec) {
    let reference = details.image_reference();
    let moved = match engine.inspect_image(reference).await {
        Ok(image) => image.id() != details.image_id(),
        Err(_) => true,
    };
    if moved {
        warn!(
            container = details.name(),
            image = reference,
            "Its tag now names another image; it is recreated on the image it ran."
        );
        spec.body.image = Some(details.image_id().to_string());
    }
}

/// Rewrites the dependent's references to the old target so they name the new one.
fn rewire(spec: &mut CreateSpec, old_target_id: &str, new_target_id: &str) {
    let Some(host) = spec.body.host_config.as_mut() else {
        return;
    };
    let swap = |reference: &str| -> Option<String> {
        (reference.len() >= 12 && old_target_id.starts_with(reference)).then(|| new_target_id.to_string())
    };
    if let Some(mode) = host.network_mode.as_mut() {
        if let Some(new) = mode.strip_prefix("container:").and_then(swap) {
            *mode = format!("container:{new}");
        }
    }
    for list in [host.volumes_from.as_mut(), host.links.as_mut()]
        .into_iter()
        .flatten()
    {
        for entry in list.iter_mut() {
            let (reference, rest) = entry
                .split_once(':')
                .map_or((entry.as_str(), None), |(r, s)| (r, Some(s)));
            if let Some(new) = swap(reference) {
                *entry = match rest {
                    Some(rest) => format!("{new}:{rest}"),
                    None => new,
                };
            }
        }
    }
}

impl Dependents {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Recreates every dependent against the new target (`new_target_id`),
    /// health-gated. The first failure stops it: the caller rolls the target
    /// back and then calls [`Dependents::restore`].
    pub async fn follow(
        &mut self,
        engine: &Engine,
        new_target_id: &str,
        health_settings: &HealthConfig,
        log: &StepLog,
    ) -> Result<(), DeployError> {
        for dependent in &mut self.list {
            let name = dependent.record.name.clone();
            let fail = |why: String| {
                DeployError::Verdict(format!("{name}, which depends on it, did not come back: {why}"))
            };
            let old_image = engine
                .inspect_image(dependent.details.image_id())
                .await
                .map_err(|e| DeployError::from_engine(&format!("cannot inspect the image of {name}"), &e))?;
            let new_image = dependent.new_image.clone().unwrap_or_else(|| old_image.clone());
            let mut spec = recreate::spec(&dependent.details, &old_image, &new_image)
                .map_err(|e| fail(format!("cannot read its configuration: {e}")))?;
            rewire(&mut spec, &dependent.record.old_target_id, new_target_id);
            if dependent.new_image.is_none() {
                keep_own_image(engine, &dependent.details, &mut spec).await;
            }
            let id = engine
                .create(&name, &spec)
                .await
                .map_err(|e| DeployError::from_engine(&format!("cannot create {name} again"), &e))?;
            dependent.new_id = Some(id.clone());
            log.before(&name, steps::CREATED, Some(id.clone())).await?;
            log.after(steps::CREATED).await;
            if dependent.record.was_running {
                engine
                    .start(&id)
                    .await
                    .map_err(|e| DeployError::from_engine(&format!("cannot start {name} again"), &e))?;
                if let Err(why) = health::wait_until_up(engine, &id, health_settings).await {
                    dependent.outcome = Some(Outcome::RolledBack {
                        reason: why.to_string(),
                        log_tail: engine.log_tail(&id, super::container::LOG_TAIL_LINES).await,
                    });
                    return Err(match why {
                        DeployError::Verdict(reason) => fail(reason),
                        other => other,
                    });
                }
            }
            info!(container = %name, target = %dependent.record.of, "Dependent recreated against the new target.");
        }
        Ok(())
    }

    /// The target is updated: the parked dependents go.
    pub async fn commit(&mut self, engine: &Engine, log: &StepLog) {
        if self.settled {
            return;
        }
        self.settled = true;
        for dependent in &mut self.list {
            if let Err(e) = engine.remove(&dependent.record.id).await {
                warn!(container = %dependent.record.name, error = %e, "Recreated, but its old container could not be removed.");
            }
            let outcome = Outcome::Updated;
            done(log, &dependent.record.name, &outcome).await;
            dependent.outcome = Some(outcome);
        }
    }

    /// The target rolled back (or never changed): remove the new dependents
    /// and bring the parked ones back, attached to the restored target.
    /// Returns false when one could not be put back (the journal keeps it
    /// open for [`recover`]).
    pub async fn restore(&mut self, engine: &Engine, log: &StepLog) -> bool {
        if self.settled {
            return true;
        }
        self.settled = true;
        let mut safe = true;
        for dependent in &mut self.list {
            let name = dependent.record.name.clone();
            let result = async {
                if let Some(new_id) = dependent.new_id.take() {
                    engine
                        .remove(&new_id)
                        .await
                        .map_err(|e| format!("cannot remove the new {name}: {e}"))?;
                }
                bring_back(engine, &dependent.record).await
            }
            .await;
            match result {
                Ok(()) => {
                    let outcome = dependent.outcome.take().unwrap_or(Outcome::RolledBack {
                        reason: format!("its target {} rolled back", dependent.record.of),
                        log_tail: Vec::new(),
                    });
                    done(log, &name, &outcome).await;
                    dependent.outcome = Some(outcome);
                }
                Err(why) => {
                    warn!(container = %name, %why, "A dependent could not be put back yet.");
                    dependent.outcome = Some(Outcome::Failed { reason: why });
                    safe = false;
                }
            }
        }
        safe
    }

    /// Each dependent and how it ended, for the target's report.
    pub fn reports(&self) -> Vec<DependentReport> {
        self.list
            .iter()
            .map(|d| DependentReport {
                name: d.record.name.clone(),
                outcome: d.outcome.clone().unwrap_or(Outcome::Failed {
                    reason: "left parked".into(),
                }),
            })
            .collect()
    }
}

async fn done(log: &StepLog, name: &str, outcome: &Outcome) {
    if let Err(why) = log
        .before(
            name,
            super::container::steps::DONE,
            Some(outcome.as_str().to_string()),
        )
        .await
    {
        warn!(container = name, %why, "Finished, but the journal could not record it.");
    }
}

/// After a crash: brings every dependent the journal shows parked and not
/// done to the state its target ended in (call it after the targets were
/// recovered). A target journaled verified keeps the new dependents; any
/// other had its old container restored, and gets its old dependents back.
/// Returns each dependent repaired, with whether it is safe now.
pub async fn recover(engine: &Engine, records: &[StepRecord], log: &StepLog) -> Vec<(String, Outcome, bool)> {
    let mut repaired = Vec::new();
    let mut names: Vec<&str> = records
        .iter()
        .filter(|r| r.step == steps::PARKING)
        .map(|r| r.target.as_str())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mine: Vec<&StepRecord> = records.iter().filter(|r| r.target == name).collect();
        let last = match mine.iter().rposition(|r| r.step == steps::PARKING) {
            Some(i) => &mine[i..],
            None => continue,
        };
        if last.iter().any(|r| r.step == super::container::steps::DONE) {
            continue;
        }
        let Some(record) = last[0]
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<Record>(d).ok())
        else {
            continue;
        };
        let target_verified = target_verified(records, &record.of);
        let new_id = last
            .iter()
            .rev()
            .find(|r| r.step == steps::CREATED)
            .and_then(|r| r.detail.clone());
        let result = if target_verified {
            // The new dependent was gated before the target was verified.
            engine
                .remove(&record.id)
                .await
                .map(|()| Outcome::Updated)
                .map_err(|e| e.to_string())
        } else {
            async {
                if let Some(new_id) = new_id.as_deref() {
                    engine.remove(new_id).await.map_err(|e| e.to_string())?;
                }
                bring_back(engine, &record).await?;
                Ok(Outcome::RolledBack {
                    reason: format!(
                        "hoist stopped while {} was updated; rolled back with it",
                        record.of
                    ),
                    log_tail: Vec::new(),
                })
            }
            .await
        };
        match result {
            Ok(outcome) => {
                done(log, name, &outcome).await;
                warn!(container = name, outcome = %outcome, "Interrupted dependent repaired.");
                repaired.push((name.to_string(), outcome, true));
            }
            Err(why) => repaired.push((name.to_string(), Outcome::Failed { reason: why }, false)),
        }
    }
    repaired
}

/// Whether the target's last attempt in the journal reached "verified".
fn target_verified(records: &[StepRecord], target: &str) -> bool {
    let mine: Vec<&StepRecord> = records.iter().filter(|r| r.target == target).collect();
    let start = mine
        .iter()
        .rposition(|r| r.step == super::container::steps::PARKING)
        .unwrap_or(0);
    mine[start..]
        .iter()
        .any(|r| r.step == super::container::steps::VERIFIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(host: serde_json::Value) -> ContainerDetails {
        ContainerDetails::from_json(serde_json::json!({
            "Id": "d".repeat(64), "Name": "/side", "HostConfig": host
        }))
        .unwrap()
    }

    #[test]
    fn a_dependent_names_its_target_by_namespace_volumes_or_link() {
        let target = "a".repeat(64);
        let by_namespace = details(serde_json::json!({ "NetworkMode": format!("container:{target}") }));
        let by_name = details(serde_json::json!({ "NetworkMode": "container:vpn" }));
        let by_volumes = details(serde_json::json!({ "VolumesFrom": ["vpn:ro"] }));
        let by_link = details(serde_json::json!({ "Links": ["/vpn:/side/v"] }));
        let other =
            details(serde_json::json!({ "NetworkMode": "container:vpn2", "Links": ["/vpn2:/side/v"] }));
        for dependent in [&by_namespace, &by_name, &by_volumes, &by_link] {
            assert!(
                depends_on(dependent, &target, "vpn"),
                "{:?}",
                dependent.raw.host_config
            );
        }
        assert!(!depends_on(&other, &target, "vpn"));
        // A short reference is no ID prefix.
        let short = details(serde_json::json!({ "NetworkMode": "container:aaa" }));
        assert!(!depends_on(&short, &target, "vpn"));
    }

    #[test]
    fn rewiring_points_id_references_at_the_new_target_and_keeps_names() {
        let (old, new) = ("a".repeat(64), "b".repeat(64));
        let mut spec = CreateSpec {
            body: bollard::models::ContainerCreateBody {
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some(format!("container:{old}")),
                    volumes_from: Some(vec![format!("{}:ro", &old[..12]), "data".into()]),
                    links: Some(vec!["vpn:v".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            extra_networks: Vec::new(),
            mac_address: None,
        };
        rewire(&mut spec, &old, &new);
        let host = spec.body.host_config.unwrap();
        assert_eq!(host.network_mode.unwrap(), format!("container:{new}"));
        assert_eq!(
            host.volumes_from.unwrap(),
            vec![format!("{new}:ro"), "data".into()]
        );
        assert_eq!(host.links.unwrap(), vec!["vpn:v".to_string()]);
    }
}
