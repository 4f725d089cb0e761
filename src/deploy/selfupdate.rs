//! hoist updating its own container.
//!
//! A process cannot replace its own container and watch the result: the old
//! hoist must stop before the new one can bind the published port, and then
//! nobody would be left to roll back. So the old hoist hands the update to a
//! relay ([`hand_over`]): a short-lived container from the old, known-good
//! image, running the hidden `hoist relay` command, with the engine's socket
//! and no ports. The relay ([`relay`]) runs the usual container update on
//! hoist's container (park the old one, create the new one under the name
//! with the same configuration and volumes, start it, health-gate it, roll
//! back to the old one when it fails) and removes itself (`--rm`).
//!
//! The old hoist journals the hand-over before it starts the relay, and
//! leaves the job open. Whichever hoist then runs under the name (the new
//! one, or the old one put back) finds the open job at start-up and records
//! its outcome ([`recover`]): once the relay is gone, the image that runs
//! under the name says whether the update held.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HealthConfig as ImageHealth, HostConfig, MountType};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{DeployError, Outcome, StepLog};
use crate::engine::{ContainerDetails, CreateSpec, Engine, EngineError, ImageDetails};
use crate::journal::StepRecord;

/// The relay container's name: `<hoist's name>-hoist-relay`.
pub const RELAY_SUFFIX: &str = "-hoist-relay";

/// The journaled step: detail is a [`HandOver`] as JSON.
pub const HANDING_OVER: &str = "handing_over";

/// How long a recovering hoist waits for a relay still at work.
const RELAY_WAIT: Duration = Duration::from_secs(15 * 60);

/// What the old hoist journals before the relay starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandOver {
    pub relay: String,
    pub old_image_id: String,
    pub new_image_id: String,
}

/// Which container hoist runs in, when it runs in one.
#[derive(Clone, Debug, Default)]
pub struct OwnContainer {
    /// Names, full IDs or ID prefixes (at least 12 hex digits).
    hints: Vec<String>,
}

impl OwnContainer {
    /// `HOIST_SELF_CONTAINER` when set; else the container ID in
    /// `/proc/self/mountinfo` (the engine bind-mounts `/etc/hostname` from
    /// the container's directory) or `/proc/self/cgroup` (cgroup v1); else a
    /// hostname that is a short container ID (the engine's default).
    pub fn detect(configured: Option<&str>) -> OwnContainer {
        if let Some(configured) = configured.map(str::trim).filter(|c| !c.is_empty()) {
            return OwnContainer {
                hints: vec![configured.trim_start_matches('/').to_string()],
            };
        }
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let mut hints = ids_in_mountinfo(&read("/proc/self/mountinfo"));
        hints.extend(ids_in_cgroup(&read("/proc/self/cgroup")));
        let hostname = read("/proc/sys/kernel/hostname").trim().to_string();
        if hostname.len() == 12 && hostname.bytes().all(|b| b.is_ascii_hexdigit()) {
            hints.push(hostname);
        }
        hints.dedup();
        OwnContainer { hints }
    }

    /// Whether the container `id` (full ID) called `name` is hoist's own.
    pub fn is(&self, id: &str, name: &str) -> bool {
        self.hints.iter().any(|hint| {
            hint == name
                || (hint.len() >= 12
                    && hint.bytes().all(|b| b.is_ascii_hexdigit())
                    && id.starts_with(hint.as_str()))
        })
    }

    pub fn is_known(&self) -> bool {
        !self.hints.is_empty()
    }
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Only the mounts of `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`
/// count: on the host itself, mountinfo lists other containers' directories.
fn ids_in_mountinfo(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (root, mount_point) = (fields.get(3)?, fields.get(4)?);
            if !matches!(*mount_point, "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf") {
                return None;
            }
            root.split('/')
                .find(|part| is_container_id(part))
                .map(str::to_string)
        })
        .collect()
}

/// cgroup v1 paths such as `/docker/<id>` or `/system.slice/docker-<id>.scope`.
fn ids_in_cgroup(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let path = line.splitn(3, ':').nth(2)?;
            path.split('/')
                .map(|part| part.trim_start_matches("docker-").trim_end_matches(".scope"))
                .find(|part| is_container_id(part))
                .map(str::to_string)
        })
        .collect()
}

/// The old hoist's part: journal the hand-over, start the relay. On `Ok`
/// the relay is running and will stop this hoist; the job stays open.
pub async fn hand_over(
    engine: &Engine,
    name: &str,
    new_image: &ImageDetails,
    log: &StepLog,
) -> Result<(), DeployError> {
    let own = engine
        .inspect_container_full(name)
        .await
        .map_err(|e| DeployError::from_engine("cannot inspect hoist's own container", &e))?;
    let relay_name = format!("{name}{RELAY_SUFFIX}");
    let spec = relay_spec(&own, new_image.id(), &relay_name);
    let detail = HandOver {
        relay: relay_name.clone(),
        old_image_id: own.image_id().to_string(),
        new_image_id: new_image.id().to_string(),
    };
    if let Ok(Some(leftover)) = engine.container_id_by_name(&relay_name).await {
        let running = engine
            .inspect_container(&leftover)
            .await
            .is_ok_and(|c| c.running());
        if running {
            return Err(DeployError::Verdict(format!(
                "{relay_name} is still at work on an earlier update"
            )));
        }
        engine
            .remove(&leftover)
            .await
            .map_err(|e| DeployError::from_engine("cannot remove a leftover relay", &e))?;
    }
    log.before(
        name,
        HANDING_OVER,
        Some(serde_json::to_string(&detail).unwrap_or_default()),
    )
    .await?;
    let id = engine
        .create(&relay_name, &spec)
        .await
        .map_err(|e| DeployError::from_engine("cannot create the relay that updates hoist", &e))?;
    if let Err(e) = engine.start(&id).await {
        if let Err(again) = engine.remove(&id).await {
            warn!(container = %relay_name, error = %again, "Cannot remove the relay that did not start.");
        }
        return Err(DeployError::from_engine(
            "cannot start the relay that updates hoist",
            &e,
        ));
    }
    log.after(HANDING_OVER).await;
    info!(container = name, relay = %relay_name, "hoist's own update handed to the relay; this hoist stops now.");
    Ok(())
}

/// The relay: the old image, its entrypoint with `relay`, hoist's
/// environment (so it reaches the same engine, with the same health
/// settings), the engine's socket, no ports, no healthcheck, no labels that
/// would make it a target, removed when it exits.
fn relay_spec(own: &ContainerDetails, new_image_id: &str, relay_name: &str) -> CreateSpec {
    let config = own.raw.config.clone().unwrap_or_default();
    let host = own.raw.host_config.clone().unwrap_or_default();
    let is_socket = |path: &str| path.ends_with(".sock");
    let binds: Vec<String> = host
        .binds
        .iter()
        .flatten()
        .filter(|b| b.split(':').take(2).any(is_socket))
        .cloned()
        .collect();
    let mounts: Vec<bollard::models::Mount> = host
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ == Some(MountType::BIND) && m.source.as_deref().is_some_and(is_socket))
        .cloned()
        .collect();
    let network_mode = host.network_mode.clone().filter(|m| m == "host");
    let mut entrypoint = config.entrypoint.clone().unwrap_or_default();
    if entrypoint.is_empty() {
        entrypoint.push("/usr/local/bin/hoist".into());
    }
    let body = ContainerCreateBody {
        image: Some(own.image_id().to_string()),
        entrypoint: Some(entrypoint),
        cmd: Some(vec![
            "relay".into(),
            "--container".into(),
            own.name().to_string(),
            "--image".into(),
            new_image_id.to_string(),
        ]),
        env: config.env.clone(),
        user: config.user.clone(),
        labels: Some(HashMap::from([(
            "hoist.relay-for".to_string(),
            own.name().to_string(),
        )])),
        healthcheck: Some(ImageHealth {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            binds: Some(binds).filter(|b| !b.is_empty()),
            mounts: Some(mounts).filter(|m| !m.is_empty()),
            network_mode,
            group_add: host.group_add.clone(),
            security_opt: host.security_opt.clone(),
            auto_remove: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    tracing::debug!(relay = relay_name, "Relay spec built.");
    CreateSpec {
        body,
        extra_networks: Vec::new(),
        mac_address: None,
    }
}

/// The relay's own work, in its container: update hoist's container `name`
/// to `new_image_id` with the usual safety. Returns the outcome.
pub async fn relay(
    engine: &Engine,
    name: &str,
    new_image_id: &str,
    settings: &super::container::UpdateSettings,
    scratch: &Path,
) -> Outcome {
    let new_image = match engine.inspect_image(new_image_id).await {
        Ok(image) => image,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("cannot inspect the new image: {e}"),
            }
        }
    };
    // Its own journal: the update's steps only matter while it runs.
    let journal = match crate::journal::Journal::open(scratch) {
        Ok(journal) => journal,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("the relay cannot keep its steps: {e}"),
            }
        }
    };
    // Steps belong to a job: one for this update, in the relay's own journal.
    let job = async {
        let reference = crate::event::ImageRef::parse("hoist").map_err(|e| e.to_string())?;
        let digest = crate::event::Digest::parse(new_image.id()).map_err(|e| e.to_string())?;
        let event = crate::event::ImageEvent {
            reference,
            digest,
            source: crate::event::SourceKind::Ci,
            delivery_id: None,
            actor: None,
            received_at: chrono::Utc::now(),
        };
        match journal.accept(&event).await.map_err(|e| e.to_string())? {
            crate::journal::Acceptance::New(id) | crate::journal::Acceptance::Duplicate(id) => {
                Ok::<_, String>(id)
            }
        }
    }
    .await;
    let job = match job {
        Ok(job) => job,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("the relay cannot keep its steps: {e}"),
            }
        }
    };
    let log = StepLog::new(journal, job, None);
    info!(container = name, image = new_image_id, "Relay: updating hoist.");
    let done = super::container::update(engine, name, &new_image, "", settings, &log).await;
    info!(container = name, outcome = ?done.outcome, "Relay: done.");
    done.outcome
}

/// At start-up, for a job whose journal shows a hand-over not done: waits
/// for the relay to finish, then reads the outcome from what runs under the
/// name. `None` when the target has no open hand-over.
pub async fn recover(
    engine: &Engine,
    target: &str,
    records: &[StepRecord],
    log: &StepLog,
) -> Option<Outcome> {
    let mine: Vec<&StepRecord> = records.iter().filter(|r| r.target == target).collect();
    let at = mine.iter().rposition(|r| r.step == HANDING_OVER)?;
    if mine[at..].iter().any(|r| r.step == super::container::steps::DONE) {
        return None;
    }
    let hand_over: HandOver = mine[at]
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())?;
    let deadline = tokio::time::Instant::now() + RELAY_WAIT;
    loop {
        let relay_running = match engine.container_id_by_name(&hand_over.relay).await {
            Ok(Some(id)) => engine.inspect_container(&id).await.is_ok_and(|c| c.running()),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "Cannot look for the relay yet.");
                true
            }
        };
        if !relay_running || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = match engine.inspect_container(target).await {
        Ok(c) => Some(c.image_id().to_string()),
        Err(EngineError::NotFound { .. }) => None,
        Err(e) => {
            warn!(error = %e, "Cannot inspect hoist's own container after the hand-over.");
            None
        }
    };
    let outcome = if now.as_deref() == Some(hand_over.new_image_id.as_str()) {
        info!(container = target, "hoist updated itself.");
        Outcome::Updated
    } else {
        warn!(
            container = target,
            "The new hoist did not pass its health gate; the relay put the old one back."
        );
        Outcome::RolledBack {
            reason: "the new hoist did not come up; the relay put the old one back under the name".into(),
            log_tail: Vec::new(),
        }
    };
    if let Err(why) = log
        .before(
            target,
            super::container::steps::DONE,
            Some(outcome.as_str().to_string()),
        )
        .await
    {
        warn!(container = target, %why, "Recorded hoist's own update, but the journal could not write it.");
    }
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_container_is_found_in_mountinfo_and_cgroup_but_not_from_the_host() {
        let id = "4f".repeat(32);
        let inside = format!(
            "613 595 0:26 /containers/{id}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n\
             614 595 0:26 /containers/{id}/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(ids_in_mountinfo(&inside)[0], id);
        // The host lists every container's shm mount: none is hoist's.
        let host = format!("88 25 0:50 / /var/lib/docker/containers/{id}/mounts/shm rw - tmpfs shm rw\n");
        assert!(ids_in_mountinfo(&host).is_empty());
        assert_eq!(
            ids_in_cgroup(&format!("12:pids:/docker/{id}\n")),
            vec![id.clone()]
        );
        assert_eq!(
            ids_in_cgroup(&format!("1:name=systemd:/system.slice/docker-{id}.scope\n")),
            vec![id.clone()]
        );
        assert!(ids_in_cgroup("0::/\n").is_empty());
        let own = OwnContainer {
            hints: vec![id[..12].to_string()],
        };
        assert!(own.is(&id, "hoist"));
        assert!(!own.is(&"5a".repeat(32), "other"));
        let named = OwnContainer::detect(Some("hoist"));
        assert!(named.is("anything", "hoist"));
        assert!(!named.is("anything", "hoist-2"));
    }
}
