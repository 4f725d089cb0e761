//! Updating a Swarm service to a pushed digest, through Swarm's own rolling update.
//!
//! 1. Inspect the service (spec without defaults) and read its version index.
//! 2. Already pinned to the pushed digest? Then nothing is sent again: an
//!    update in progress toward it is followed to its end (a leader change or
//!    a redelivered event must not issue it twice), a paused one is reported,
//!    and a finished one is `AlreadyCurrent`.
//! 3. Otherwise send the same spec with the image pinned to
//!    `repo:tag@sha256:<pushed digest>` (the form the docker CLI writes, so the
//!    service never flips between tag and digest), quoting the version index.
//!    "update out of sequence" means the spec changed since step 1: read it
//!    again and retry, a few times. `ForceUpdate` is bumped only when the spec
//!    would not change, so that Swarm still replaces the tasks.
//! 4. Follow `UpdateStatus` (ignoring a status left by an earlier update) and
//!    the tasks until the update completed and the tasks run the new image,
//!    Swarm paused it, or rolled it back, within a deadline.
//!
//! Swarm does the rolling, the health checks and the rollback as the service's
//! own `update_config` and `rollback_config` say; hoist never scales to zero
//! nor rolls back by itself. The failed tasks' messages go into the report.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Outcome;
use crate::backoff::Backoff;
use crate::engine::{Engine, EngineError, ServiceDetails, TaskDetails, UpdateState, UpdateStatus};
use crate::event::{Digest, ImageRef};
use crate::registry::credentials::{Credentials, RegistryAuth};

/// How many times an update is sent again after "update out of sequence".
pub const ATTEMPTS: u32 = 5;
/// How many failed tasks are listed in a report.
pub const FAILED_TASKS_REPORTED: usize = 10;
/// Clock difference tolerated between hoist and the manager when telling our
/// update's status from an earlier one (they run on the same host: the leader).
const CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(2);

/// The wait before reading a service again after its version moved under an
/// update (another manager, or `docker service update`, wrote it meanwhile).
const OUT_OF_SEQUENCE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(800));

/// The engine calls a service update needs; [`Engine`] in production, a fake in tests.
pub trait ServiceEngine: Sync {
    fn inspect_service(&self, id: &str) -> impl Future<Output = Result<ServiceDetails, EngineError>> + Send;
    fn update_service_image(
        &self,
        current: &ServiceDetails,
        image: &str,
        force: bool,
        auth: Option<&RegistryAuth>,
    ) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    fn service_tasks(&self, id: &str) -> impl Future<Output = Result<Vec<TaskDetails>, EngineError>> + Send;
}

impl ServiceEngine for Engine {
    fn inspect_service(&self, id: &str) -> impl Future<Output = Result<ServiceDetails, EngineError>> + Send {
        Engine::inspect_service(self, id)
    }
    fn update_service_image(
        &self,
        current: &ServiceDetails,
        image: &str,
        force: bool,
        auth: Option<&RegistryAuth>,
    ) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send {
        Engine::update_service_image(self, current, image, force, auth)
    }
    fn service_tasks(&self, id: &str) -> impl Future<Output = Result<Vec<TaskDetails>, EngineError>> + Send {
        Engine::service_tasks(self, id)
    }
}

/// Settings for one service update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// The most time the rolling update (and a rollback) gets to finish.
    pub deadline: Duration,
    /// How often the service and its tasks are read while the update runs.
    pub poll: Duration,
    /// The docker config file whose registry credentials go with the update
    /// (`registry::credentials`); none found sends none.
    pub credentials: Credentials,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            deadline: Duration::from_secs(600),
            poll: Duration::from_millis(500),
            credentials: Credentials::default(),
        }
    }
}

/// What one service update did.
#[derive(Clone, Debug)]
pub struct ServiceUpdate {
    pub outcome: Outcome,
    /// The digest the service was pinned to before, when it was pinned.
    pub old_digest: Option<Digest>,
}

/// Updates service `id` to `digest` (the pushed image of the tag it runs).
pub async fn update<E: ServiceEngine>(
    engine: &E,
    id: &str,
    digest: &Digest,
    settings: &ServiceSettings,
) -> ServiceUpdate {
    let mut attempt = 0;
    let (image, issued_at, old_digest) = loop {
        attempt += 1;
        let current = match engine.inspect_service(id).await {
            Ok(current) => current,
            Err(e) => return failed(None, format!("cannot inspect the service: {e}")),
        };
        let old_digest = pinned_digest(current.image());
        // A bad label fails this target before anything is sent (the index only logged it).
        let (_, problems) = crate::inventory::TargetOptions::from_labels(&current.labels());
        if !problems.is_empty() {
            let reason = format!("bad label, nothing was changed: {}", problems.join("; "));
            warn!(service = current.name(), %reason, "Not updated.");
            return failed(old_digest, reason);
        }
        if old_digest.as_ref() == Some(digest) {
            return already_pinned(engine, &current, settings).await;
        }
        let image = pinned_image(current.image(), digest);
        // Only when the spec would be the same does Swarm need a push to replace the tasks.
        let force = image == current.image();
        let auth = registry_auth(&current, settings).await;
        let issued_at = Utc::now();
        match engine
            .update_service_image(&current, &image, force, auth.as_ref())
            .await
        {
            Ok(warnings) => {
                for warning in warnings {
                    warn!(service = current.name(), %warning, "Swarm warns about the update.");
                }
                info!(service = current.name(), %image, version = current.version(), "Service update sent.");
                break (image, issued_at, old_digest);
            }
            Err(e) if e.is_out_of_sequence() && attempt < ATTEMPTS => {
                debug!(
                    service = current.name(),
                    attempt, "The service changed since it was read; reading it again."
                );
                tokio::time::sleep(OUT_OF_SEQUENCE_BACKOFF.wait(attempt)).await;
            }
            Err(e) => return failed(old_digest, format!("swarm refused the update: {e}")),
        }
    };
    let outcome = follow(engine, id, &image, Some(issued_at), settings).await;
    ServiceUpdate { outcome, old_digest }
}

/// The credentials the configured docker config file holds for the service's registry.
async fn registry_auth(service: &ServiceDetails, settings: &ServiceSettings) -> Option<RegistryAuth> {
    let registry = ImageRef::parse(service.image()).ok()?.registry().to_string();
    match settings.credentials.lookup(&registry).await {
        Ok(auth) => auth,
        Err(e) => {
            warn!(service = service.name(), error = %e, "Sending the update without registry credentials; Swarm keeps those stored with the service.");
            None
        }
    }
}

/// The service already names the pushed digest: never send it again.
async fn already_pinned<E: ServiceEngine>(
    engine: &E,
    current: &ServiceDetails,
    settings: &ServiceSettings,
) -> ServiceUpdate {
    match current.update_status() {
        Some(status) if status.state.in_progress() => {
            info!(service = current.name(), state = ?status.state, "An update to this digest is under way; following it.");
            let outcome = follow(engine, current.id(), current.image(), None, settings).await;
            ServiceUpdate {
                outcome,
                old_digest: None,
            }
        }
        Some(UpdateStatus {
            state: UpdateState::Paused,
            message,
            ..
        }) => failed(
            None,
            format!(
                "an update to this digest is paused by swarm ({message}); resume it with \
                 `docker service update` or roll it back with `docker service rollback`"
            ),
        ),
        _ => ServiceUpdate {
            outcome: Outcome::AlreadyCurrent,
            old_digest: pinned_digest(current.image()),
        },
    }
}

/// Follows the rolling update of service `id` toward `image` to its end.
/// `issued_at` is when hoist sent it: an `UpdateStatus` that started before
/// is an earlier update's and is ignored. `None` follows whatever update is
/// under way (one started by another hoist, before a leader change).
pub async fn follow<E: ServiceEngine>(
    engine: &E,
    id: &str,
    image: &str,
    issued_at: Option<DateTime<Utc>>,
    settings: &ServiceSettings,
) -> Outcome {
    // A deadline past the clock's end (an absurd setting) is no deadline, not a panic.
    let deadline = Instant::now().checked_add(settings.deadline);
    let mut last_seen = String::from("not started");
    loop {
        match engine.inspect_service(id).await {
            Ok(service) => {
                let status = service.update_status().filter(|s| is_current(s, issued_at));
                if let Some(status) = &status {
                    last_seen = format!("{:?}: {}", status.state, status.message);
                }
                match status.map(|s| (s.state, s.message)) {
                    Some((UpdateState::RollbackCompleted, message)) => {
                        let tasks = failed_tasks(engine, id, image).await;
                        warn!(service = service.name(), %message, "Swarm rolled the update back.");
                        return Outcome::RolledBack {
                            reason: format!("swarm rolled back the update: {message}"),
                            log_tail: tasks,
                        };
                    }
                    Some((UpdateState::RollbackPaused, message)) => {
                        let tasks = failed_tasks(engine, id, image).await;
                        return Outcome::Failed {
                            reason: with_tasks(
                                format!("swarm paused the rollback of the update: {message}"),
                                &tasks,
                            ),
                        };
                    }
                    Some((UpdateState::Paused, message)) => {
                        let tasks = failed_tasks(engine, id, image).await;
                        return Outcome::Failed {
                            reason: with_tasks(format!("swarm paused the update: {message}"), &tasks),
                        };
                    }
                    Some((UpdateState::RollbackStarted, _)) => {}
                    _ if service.image() != image => {
                        return Outcome::Failed {
                            reason: format!(
                                "the service was changed by someone else during the update; it now runs {}",
                                service.image()
                            ),
                        };
                    }
                    // Completed, or no status of this update: done once the tasks run the image.
                    Some((UpdateState::Completed, _)) | None => match engine.service_tasks(id).await {
                        Ok(tasks) if converged(&service, &tasks, image) => {
                            info!(service = service.name(), %image, "Service updated.");
                            return Outcome::Updated;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(service = service.name(), error = %e, "Cannot list the service's tasks; trying again.")
                        }
                    },
                    Some((UpdateState::Updating, _)) => {}
                }
            }
            Err(EngineError::NotFound { .. }) => {
                return Outcome::Failed {
                    reason: "the service was removed during the update".into(),
                }
            }
            Err(e) => warn!(service = id, error = %e, "Cannot inspect the service; trying again."),
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            let tasks = failed_tasks(engine, id, image).await;
            return Outcome::Failed {
                reason: with_tasks(
                    format!(
                        "the update did not finish within {:?} (swarm: {last_seen}); it was left to swarm",
                        settings.deadline
                    ),
                    &tasks,
                ),
            };
        }
        tokio::time::sleep(settings.poll).await;
    }
}

/// Whether `status` belongs to the update sent at `issued_at` (any, when `None`).
fn is_current(status: &UpdateStatus, issued_at: Option<DateTime<Utc>>) -> bool {
    match (issued_at, status.started_at) {
        (Some(issued), Some(started)) => started >= issued - CLOCK_SLACK,
        _ => true,
    }
}

/// Every task Swarm wants running runs `image`, and there are as many as it wants.
fn converged(service: &ServiceDetails, tasks: &[TaskDetails], image: &str) -> bool {
    let wanted: Vec<&TaskDetails> = tasks.iter().filter(|t| t.desired_running).collect();
    let all_new = wanted.iter().all(|t| t.image == image && t.state == "running");
    let enough = match service.replicas() {
        Some(replicas) => wanted.len() as u64 >= replicas,
        None => !wanted.is_empty(),
    };
    all_new && enough
}

/// One line per task of `image` that failed or was rejected, oldest first.
async fn failed_tasks<E: ServiceEngine>(engine: &E, id: &str, image: &str) -> Vec<String> {
    let mut tasks = match engine.service_tasks(id).await {
        Ok(tasks) => tasks,
        Err(e) => return vec![format!("(the tasks could not be listed: {e})")],
    };
    tasks.retain(|t| {
        t.image == image && (matches!(t.state.as_str(), "failed" | "rejected") || t.error.is_some())
    });
    tasks.sort_by_key(|t| t.timestamp);
    let skip = tasks.len().saturating_sub(FAILED_TASKS_REPORTED);
    tasks.iter().skip(skip).map(describe_task).collect()
}

fn describe_task(task: &TaskDetails) -> String {
    let short = |id: &str| id.get(..12).unwrap_or(id).to_string();
    let name = match task.slot {
        Some(slot) => format!("task {slot} ({})", short(&task.id)),
        None => format!("task {}", short(&task.id)),
    };
    let why = task.error.as_deref().unwrap_or(&task.message);
    let mut line = format!("{name} on node {}: {}: {why}", short(&task.node_id), task.state);
    if let Some(code) = task.exit_code.filter(|c| *c != 0) {
        line.push_str(&format!(" (exit code {code})"));
    }
    line
}

fn with_tasks(reason: String, tasks: &[String]) -> String {
    if tasks.is_empty() {
        reason
    } else {
        format!("{reason}; failed tasks: {}", tasks.join("; "))
    }
}

fn failed(old_digest: Option<Digest>, reason: String) -> ServiceUpdate {
    ServiceUpdate {
        outcome: Outcome::Failed { reason },
        old_digest,
    }
}

pub use crate::event::pinned_digest;

/// `image` as the service names it (registry and repository as written, tag
/// kept, `latest` when there is none), pinned to `digest`.
pub fn pinned_image(image: &str, digest: &Digest) -> String {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        format!("{name}@{digest}")
    } else {
        format!("{name}:latest@{digest}")
    }
}

/// Whether this hoist may update Swarm services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServicesMode {
    /// When this engine is the swarm's leader manager (the default).
    #[default]
    Leader,
    /// Never: containers only (another tool, or another hoist, owns the services).
    Off,
}

impl FromStr for ServicesMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "leader" => Ok(ServicesMode::Leader),
            "off" => Ok(ServicesMode::Off),
            _ => Err("expected leader or off".into()),
        }
    }
}

/// Whether this hoist may update services now: the mode allows it and this
/// engine is the swarm's leader. Asked per job, because leadership moves.
pub async fn acts_on_services(engine: &Engine, mode: ServicesMode) -> bool {
    if mode == ServicesMode::Off {
        return false;
    }
    match engine.swarm_role().await {
        Ok(role) => role.leader,
        Err(e) => {
            warn!(error = %e, "Cannot tell whether this engine leads the swarm; leaving services alone.");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn digest(text: &str) -> Digest {
        Digest::parse(text).unwrap()
    }

    /// What the fake swarm does when an update arrives.
    #[derive(Clone, Copy)]
    enum Then {
        /// The update completes and the tasks run the new image.
        Completes,
        /// A task of the new image fails and Swarm rolls back.
        RollsBack,
        /// Swarm pauses the update (failure_action=pause).
        Pauses,
    }

    /// A swarm with one service, answering like the engine's API.
    struct FakeSwarm {
        state: Mutex<FakeState>,
    }

    struct FakeState {
        service: Value,
        tasks: Vec<TaskDetails>,
        /// Out-of-band spec changes made just before each of the next updates arrive.
        changes_before_update: VecDeque<&'static str>,
        then: Then,
        /// (version quoted, image, force) of every update accepted or refused.
        updates: Vec<(u64, String, bool)>,
    }

    impl FakeSwarm {
        fn new(image: &str, then: Then) -> FakeSwarm {
            let service = json!({
                "ID": "svc1",
                "Version": { "Index": 10 },
                "Spec": {
                    "Name": "web",
                    "Labels": { "hoist.enable": "true" },
                    "TaskTemplate": { "ContainerSpec": { "Image": image, "Env": ["A=1"] }, "ForceUpdate": 0 },
                    "Mode": { "Replicated": { "Replicas": 2 } }
                },
                "UpdateStatus": { "State": "completed", "StartedAt": "2020-01-01T00:00:00Z", "Message": "update completed" }
            });
            let tasks = (1..=2).map(|slot| task(slot, image, "running", true)).collect();
            FakeSwarm {
                state: Mutex::new(FakeState {
                    service,
                    tasks,
                    changes_before_update: VecDeque::new(),
                    then,
                    updates: Vec::new(),
                }),
            }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }
    }

    fn task(slot: i64, image: &str, state: &str, desired_running: bool) -> TaskDetails {
        TaskDetails {
            id: format!("task{slot}-{state}-{}", &image[image.len() - 4..]),
            slot: Some(slot),
            node_id: "node1".into(),
            image: image.into(),
            state: state.into(),
            desired_running,
            message: "started".into(),
            error: (state == "failed").then(|| "task: non-zero exit (3)".to_string()),
            exit_code: (state == "failed").then_some(3),
            timestamp: Some(Utc::now()),
        }
    }

    fn version(service: &Value) -> u64 {
        service["Version"]["Index"].as_u64().unwrap()
    }

    impl ServiceEngine for FakeSwarm {
        async fn inspect_service(&self, id: &str) -> Result<ServiceDetails, EngineError> {
            assert_eq!(id, "svc1");
            ServiceDetails::from_json(self.state().service.clone()).map_err(EngineError::Unreachable)
        }

        async fn update_service_image(
            &self,
            current: &ServiceDetails,
            image: &str,
            force: bool,
            _auth: Option<&RegistryAuth>,
        ) -> Result<Vec<String>, EngineError> {
            let mut state = self.state();
            state.updates.push((current.version(), image.to_string(), force));
            if let Some(env) = state.changes_before_update.pop_front() {
                // Someone ran `docker service update --env-add` meanwhile.
                let next = version(&state.service) + 1;
                state.service["Version"]["Index"] = json!(next);
                state.service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(env));
            }
            if current.version() != version(&state.service) {
                return Err(EngineError::Refused {
                    action: "update of service svc1".into(),
                    status: 500,
                    message: "rpc error: code = Unknown desc = update out of sequence".into(),
                });
            }
            // The spec sent is the one read, with the image changed: out-of-band changes are kept.
            let old_image = current.image().to_string();
            let now = Utc::now().to_rfc3339();
            let service = &mut state.service;
            service["Version"]["Index"] = json!(current.version() + 1);
            service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = json!(image);
            let (status, message, spec_image) = match state.then {
                Then::Completes => ("completed", "update completed", image.to_string()),
                Then::RollsBack => (
                    "rollback_completed",
                    "update rolled back due to failure or early termination of task x",
                    old_image.clone(),
                ),
                Then::Pauses => (
                    "paused",
                    "update paused due to failure or early termination of task x",
                    image.to_string(),
                ),
            };
            let service = &mut state.service;
            service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = json!(spec_image);
            service["UpdateStatus"] = json!({ "State": status, "StartedAt": now, "Message": message });
            state.tasks = match state.then {
                Then::Completes => (1..=2).map(|slot| task(slot, image, "running", true)).collect(),
                Then::RollsBack => vec![
                    task(1, image, "failed", false),
                    task(1, &old_image, "running", true),
                    task(2, &old_image, "running", true),
                ],
                Then::Pauses => vec![
                    task(1, image, "failed", false),
                    task(2, &old_image, "running", true),
                ],
            };
            Ok(Vec::new())
        }

        async fn service_tasks(&self, _id: &str) -> Result<Vec<TaskDetails>, EngineError> {
            Ok(self.state().tasks.clone())
        }
    }

    fn settings() -> ServiceSettings {
        ServiceSettings {
            deadline: Duration::from_secs(5),
            poll: Duration::from_millis(1),
            credentials: Credentials::default(),
        }
    }

    fn image(digest: &str) -> String {
        format!("registry.test:5000/team/web:1.4@{digest}")
    }

    #[tokio::test]
    async fn pins_the_pushed_digest_and_reports_the_old_one() {
        let swarm = FakeSwarm::new(&image(OLD), Then::Completes);
        let done = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        assert_eq!(done.outcome, Outcome::Updated);
        assert_eq!(done.old_digest, Some(digest(OLD)));
        let state = swarm.state();
        assert_eq!(state.updates, vec![(10, image(NEW), false)]);
        assert_eq!(state.service["Spec"]["TaskTemplate"]["ForceUpdate"], 0);
    }

    #[tokio::test]
    async fn an_out_of_sequence_update_is_read_again_and_retried_keeping_the_new_spec() {
        let swarm = FakeSwarm::new(&image(OLD), Then::Completes);
        swarm.state().changes_before_update.extend(["B=2", "C=3"]);
        let done = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        assert_eq!(done.outcome, Outcome::Updated);
        let state = swarm.state();
        let versions: Vec<u64> = state.updates.iter().map(|u| u.0).collect();
        assert_eq!(
            versions,
            vec![10, 11, 12],
            "each retry quotes the version read again"
        );
        assert_eq!(
            state.service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"],
            json!(["A=1", "B=2", "C=3"]),
            "the out-of-band changes survive the update"
        );
        assert_eq!(
            state.service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            image(NEW)
        );
    }

    #[tokio::test]
    async fn gives_up_after_repeated_out_of_sequence_answers() {
        let swarm = FakeSwarm::new(&image(OLD), Then::Completes);
        swarm
            .state()
            .changes_before_update
            .extend(["B=2"; ATTEMPTS as usize]);
        let done = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        match done.outcome {
            Outcome::Failed { reason } => assert!(reason.contains("update out of sequence"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(swarm.state().updates.len(), ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn a_rollback_is_reported_with_the_failed_tasks() {
        let swarm = FakeSwarm::new(&image(OLD), Then::RollsBack);
        let done = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        match done.outcome {
            Outcome::RolledBack { reason, log_tail } => {
                assert!(
                    reason.starts_with("swarm rolled back the update: update rolled back"),
                    "{reason}"
                );
                assert_eq!(log_tail.len(), 1, "{log_tail:?}");
                assert!(
                    log_tail[0].contains("task 1")
                        && log_tail[0].contains("failed: task: non-zero exit (3) (exit code 3)"),
                    "{log_tail:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_paused_update_fails_and_is_left_as_swarm_paused_it() {
        let swarm = FakeSwarm::new(&image(OLD), Then::Pauses);
        let done = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        match done.outcome {
            Outcome::Failed { reason } => {
                assert!(reason.starts_with("swarm paused the update"), "{reason}");
                assert!(reason.contains("non-zero exit (3)"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            swarm.state().updates.len(),
            1,
            "hoist does not roll back by itself"
        );
        // The same push again: the paused update is reported, not sent again.
        let again = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        assert!(matches!(again.outcome, Outcome::Failed { ref reason } if reason.contains("paused")));
        assert_eq!(swarm.state().updates.len(), 1);
    }

    #[tokio::test]
    async fn a_service_pinned_to_the_digest_is_already_current() {
        let swarm = FakeSwarm::new(&image(NEW), Then::Completes);
        let done = update(&swarm, "svc1", &digest(NEW), &settings()).await;
        assert_eq!(done.outcome, Outcome::AlreadyCurrent);
        assert!(swarm.state().updates.is_empty());
    }

    #[tokio::test]
    async fn an_update_under_way_to_the_digest_is_followed_not_sent_again() {
        let swarm = FakeSwarm::new(&image(NEW), Then::Completes);
        {
            let mut state = swarm.state();
            state.service["UpdateStatus"] = json!({ "State": "updating", "StartedAt": "2020-01-01T00:00:00Z", "Message": "update in progress" });
            state.tasks = vec![
                task(1, &image(NEW), "running", true),
                task(2, &image(OLD), "running", true),
            ];
        }
        let finish = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut state = swarm.state();
            state.service["UpdateStatus"]["State"] = json!("completed");
            state.tasks = vec![
                task(1, &image(NEW), "running", true),
                task(2, &image(NEW), "running", true),
            ];
        };
        let (new, settings) = (digest(NEW), settings());
        let (done, ()) = tokio::join!(update(&swarm, "svc1", &new, &settings), finish);
        assert_eq!(done.outcome, Outcome::Updated);
        assert!(swarm.state().updates.is_empty(), "never sent twice");
    }

    #[tokio::test]
    async fn a_stale_status_of_an_earlier_update_is_not_taken_for_this_one() {
        let swarm = FakeSwarm::new(&image(OLD), Then::Completes);
        let issued_at = Utc::now();
        {
            // Our update was accepted, but Swarm has not started it: the old
            // "completed" is still there and the tasks run the old image.
            let mut state = swarm.state();
            state.service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = json!(image(NEW));
        }
        let short = ServiceSettings {
            deadline: Duration::from_millis(50),
            ..settings()
        };
        match follow(&swarm, "svc1", &image(NEW), Some(issued_at), &short).await {
            Outcome::Failed { reason } => assert!(reason.contains("did not finish"), "{reason}"),
            other => panic!("a stale status was taken for this update: {other:?}"),
        }
    }

    #[test]
    fn pinned_images_keep_the_name_as_written() {
        let new = digest(NEW);
        assert_eq!(
            pinned_image(&format!("nginx:1.25@{OLD}"), &new),
            format!("nginx:1.25@{NEW}")
        );
        assert_eq!(
            pinned_image("localhost:5000/team/web:1.4", &new),
            format!("localhost:5000/team/web:1.4@{NEW}")
        );
        assert_eq!(
            pinned_image("localhost:5000/team/web", &new),
            format!("localhost:5000/team/web:latest@{NEW}")
        );
        assert_eq!(pinned_digest(&format!("nginx:1.25@{OLD}")), Some(digest(OLD)));
        assert_eq!(pinned_digest("nginx:1.25"), None);
    }
}
