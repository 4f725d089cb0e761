//! Swarm: this engine's role, services, their tasks and their events.

use std::collections::HashMap;

use bollard::models::{EventMessage, LocalNodeState, Service, ServiceUpdateStatusStateEnum, Task, TaskState};
use bollard::query_parameters::{
    EventsOptions, InspectServiceOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};

use super::docker_credentials;
use super::{Engine, EngineError};
use crate::labels;
use crate::registry::credentials::RegistryAuth;

/// This engine's place in a swarm.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwarmRole {
    /// The swarm's ID for this node; `None` outside a swarm.
    pub node_id: Option<String>,
    /// A manager can list and update services.
    pub manager: bool,
    /// The manager that leads the raft group: the one hoist instance that acts on services.
    pub leader: bool,
}

/// A Swarm service update's state (`UpdateStatus.State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    /// Swarm is still working on it.
    pub fn in_progress(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }
}

/// A service's `UpdateStatus`: the last (or current) rolling update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Option<DateTime<Utc>>,
    /// Swarm's own words, e.g. "update rolled back due to failure or early termination of task ...".
    pub message: String,
}

/// What hoist needs of one Swarm service, from an inspect (spec without defaults,
/// so that it can be sent back as the user wrote it).
#[derive(Clone, Debug)]
pub struct ServiceDetails {
    raw: Service,
}

impl ServiceDetails {
    /// Reads a service as the engine's API returns it (`GET /services/{id}`);
    /// lets tests and fakes describe services without bollard's types.
    pub fn from_json(value: serde_json::Value) -> Result<ServiceDetails, String> {
        serde_json::from_value(value)
            .map(|raw| ServiceDetails { raw })
            .map_err(|e| e.to_string())
    }

    pub fn id(&self) -> &str {
        self.raw.id.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.spec().and_then(|s| s.name.as_deref()).unwrap_or_default()
    }

    /// The object version index an update must quote.
    pub fn version(&self) -> u64 {
        self.raw.version.as_ref().and_then(|v| v.index).unwrap_or(0)
    }

    /// The task template's image, usually `repo:tag@sha256:...`.
    pub fn image(&self) -> &str {
        self.container_spec()
            .and_then(|c| c.image.as_deref())
            .unwrap_or_default()
    }

    /// The service's own labels (compose `deploy.labels`), not its containers'.
    pub fn labels(&self) -> HashMap<String, String> {
        self.spec().and_then(|s| s.labels.clone()).unwrap_or_default()
    }

    /// The replica count of a replicated service; `None` for global services and jobs.
    pub fn replicas(&self) -> Option<u64> {
        let replicated = self.spec()?.mode.as_ref()?.replicated.as_ref()?;
        Some(replicated.replicas.unwrap_or(1).max(0) as u64)
    }

    pub fn update_status(&self) -> Option<UpdateStatus> {
        let status = self.raw.update_status.as_ref()?;
        let state = match status.state? {
            ServiceUpdateStatusStateEnum::EMPTY => return None,
            ServiceUpdateStatusStateEnum::UPDATING => UpdateState::Updating,
            ServiceUpdateStatusStateEnum::PAUSED => UpdateState::Paused,
            ServiceUpdateStatusStateEnum::COMPLETED => UpdateState::Completed,
            ServiceUpdateStatusStateEnum::ROLLBACK_STARTED => UpdateState::RollbackStarted,
            ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => UpdateState::RollbackPaused,
            ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => UpdateState::RollbackCompleted,
        };
        Some(UpdateStatus {
            state,
            started_at: status.started_at.as_deref().and_then(parse_time),
            message: status.message.clone().unwrap_or_default(),
        })
    }

    fn spec(&self) -> Option<&bollard::models::ServiceSpec> {
        self.raw.spec.as_ref()
    }

    fn container_spec(&self) -> Option<&bollard::models::TaskSpecContainerSpec> {
        self.spec()?.task_template.as_ref()?.container_spec.as_ref()
    }

    /// The spec to send back: the same, with only the image changed, and
    /// `ForceUpdate` bumped when asked (so that Swarm replaces the tasks even
    /// though the spec is otherwise the same).
    fn spec_with_image(&self, image: &str, force: bool) -> Result<bollard::models::ServiceSpec, String> {
        let mut spec = self.raw.spec.clone().ok_or("inspect has no Spec")?;
        let template = spec
            .task_template
            .as_mut()
            .ok_or("the service has no task template")?;
        if force {
            template.force_update = Some(template.force_update.unwrap_or(0) + 1);
        }
        let container = template
            .container_spec
            .as_mut()
            .ok_or("the service runs no container (a plugin or network attachment)")?;
        container.image = Some(image.to_string());
        Ok(spec)
    }
}

/// One task of a service, as hoist reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskDetails {
    pub id: String,
    /// The replica slot (replicated services); `None` for global services.
    pub slot: Option<i64>,
    pub node_id: String,
    /// The image of the spec this task runs.
    pub image: String,
    /// `running`, `failed`, `rejected`, `shutdown`, ...
    pub state: String,
    /// The orchestrator wants this task running (not being replaced or shut down).
    pub desired_running: bool,
    pub message: String,
    /// Why the task failed, in the engine's words (`task: non-zero exit (3)`).
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub timestamp: Option<DateTime<Utc>>,
}

impl TaskDetails {
    fn from_task(task: Task) -> TaskDetails {
        let status = task.status.unwrap_or_default();
        let state = |s: Option<TaskState>| {
            s.and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        TaskDetails {
            id: task.id.unwrap_or_default(),
            slot: task.slot,
            node_id: task.node_id.unwrap_or_default(),
            image: task
                .spec
                .and_then(|s| s.container_spec)
                .and_then(|c| c.image)
                .unwrap_or_default(),
            state: state(status.state),
            desired_running: task.desired_state == Some(TaskState::RUNNING),
            message: status.message.unwrap_or_default(),
            error: status.err.filter(|e| !e.is_empty()),
            exit_code: status.container_status.and_then(|c| c.exit_code),
            timestamp: status.timestamp.as_deref().and_then(parse_time),
        }
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A change to a Swarm service (`type=service` events reach managers only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEvent {
    pub service_id: String,
    /// `create`, `update` or `remove`.
    pub action: String,
}

impl Engine {
    /// Whether this engine is in a swarm, a manager, and the leader.
    pub async fn swarm_role(&self) -> Result<SwarmRole, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| EngineError::from_bollard("info", e))?;
        let swarm = info.swarm.unwrap_or_default();
        let active = swarm.local_node_state == Some(LocalNodeState::ACTIVE);
        let node_id = swarm.node_id.filter(|id| active && !id.is_empty());
        let manager = node_id.is_some() && swarm.control_available == Some(true);
        let leader = match (&node_id, manager) {
            (Some(id), true) => self
                .docker
                .inspect_node(id)
                .await
                .map_err(|e| EngineError::from_bollard(format!("node {id}"), e))?
                .manager_status
                .and_then(|m| m.leader)
                .unwrap_or(false),
            _ => false,
        };
        Ok(SwarmRole {
            node_id,
            manager,
            leader,
        })
    }

    /// Every service carrying an opt-in label key, whatever its value
    /// (managers only). Listed without a filter, for the same reason as
    /// containers ([`Engine::list_labelled_ids`]).
    pub async fn list_labelled_services(&self) -> Result<Vec<ServiceDetails>, EngineError> {
        let found = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(|e| EngineError::from_bollard("list services", e))?;
        Ok(found
            .into_iter()
            .map(|raw| ServiceDetails { raw })
            .filter(|service| labels::mentions_opt_in(&service.labels()))
            .collect())
    }

    pub async fn inspect_service(&self, id: &str) -> Result<ServiceDetails, EngineError> {
        let options = InspectServiceOptions {
            // The spec goes back to the engine as read: no defaults filled in.
            insert_defaults: false,
        };
        self.docker
            .inspect_service(id, Some(options))
            .await
            .map(|raw| ServiceDetails { raw })
            .map_err(|e| EngineError::from_bollard(format!("service {id}"), e))
    }

    /// Sends `current`'s spec back with `image`, quoting `current`'s version
    /// index; returns the engine's warnings. `auth` goes to Swarm, which hands
    /// it to the workers that pull; without it Swarm keeps the credentials
    /// stored with the service (`registryAuthFrom=spec`).
    pub async fn update_service_image(
        &self,
        current: &ServiceDetails,
        image: &str,
        force: bool,
        auth: Option<&RegistryAuth>,
    ) -> Result<Vec<String>, EngineError> {
        let id = current.id();
        let spec = current
            .spec_with_image(image, force)
            .map_err(|message| EngineError::Refused {
                action: format!("update of service {id}"),
                status: 400,
                message,
            })?;
        // The API's index is a u64; bollard's query parameter an i32.
        let version = i32::try_from(current.version()).map_err(|_| EngineError::Refused {
            action: format!("update of service {id}"),
            status: 400,
            message: format!(
                "the service's version index {} is beyond what this client can send",
                current.version()
            ),
        })?;
        let options = UpdateServiceOptions {
            version,
            registry_auth_from: "spec".to_string(),
            rollback: None,
        };
        let credentials = auth.map(docker_credentials);
        self.docker
            .update_service(id, spec, options, credentials)
            .await
            .map(|response| response.warnings.unwrap_or_default())
            .map_err(|e| EngineError::from_bollard(format!("update of service {id}"), e))
    }

    /// Every task the service `id` (a full ID) has: running, failed and shut down.
    pub async fn service_tasks(&self, id: &str) -> Result<Vec<TaskDetails>, EngineError> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([("service".to_string(), vec![id.to_string()])])),
        };
        let tasks = self
            .docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(format!("tasks of service {id}"), e))?;
        Ok(tasks
            .into_iter()
            // The filter also takes names and ID prefixes: keep this service's own.
            .filter(|t| t.service_id.as_deref() == Some(id))
            .map(TaskDetails::from_task)
            .collect())
    }

    /// Service changes, from now on (nothing arrives on a worker or outside a swarm).
    pub fn service_events(&self) -> impl Stream<Item = Result<ServiceEvent, EngineError>> + Send + 'static {
        let options = EventsOptions {
            filters: Some(HashMap::from([("type".to_string(), vec!["service".to_string()])])),
            ..Default::default()
        };
        self.docker.events(Some(options)).filter_map(|item| async move {
            match item {
                Ok(EventMessage {
                    action: Some(action),
                    actor: Some(actor),
                    ..
                }) => actor.id.map(|service_id| Ok(ServiceEvent { service_id, action })),
                Ok(_) => None,
                Err(e) => Some(Err(EngineError::from_bollard("service event stream", e))),
            }
        })
    }
}
