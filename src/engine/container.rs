//! Containers and images: inspect, list, events, and the calls an update makes.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum,
    ContainerUpdateBody, EndpointSettings, EventMessage, HealthStatusEnum, ImageInspect,
    NetworkConnectRequest, NetworkDisconnectRequest, RestartPolicy,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::{Stream, StreamExt};

use super::{Engine, EngineError};
use crate::event::Digest;
use crate::labels;

/// The body of a container to create, and the networks to connect before start.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub(crate) body: ContainerCreateBody,
    pub(crate) extra_networks: Vec<(String, EndpointSettings)>,
    /// A MAC address the user chose, for engines before API 1.44, which take
    /// it in `Config.MacAddress` (a field the body's model lacks) and ignore
    /// the endpoint's. Newer engines read it from the primary endpoint, where
    /// the body has it too.
    pub(crate) mac_address: Option<String>,
}

impl CreateSpec {
    /// The same container with no network aliases, and the endpoints that
    /// have some, as they should end. A start-first update creates and gates
    /// the new container without them, so that the engine's DNS sends it no
    /// traffic before it is proven, then moves them over.
    pub fn without_aliases(&self) -> (CreateSpec, Aliased) {
        let mut quiet = self.clone();
        let mut aliased = Vec::new();
        let primary = quiet
            .body
            .networking_config
            .iter_mut()
            .flat_map(|n| n.endpoints_config.iter_mut().flatten());
        let extra = quiet.extra_networks.iter_mut().map(|(name, ep)| (&*name, ep));
        for (name, endpoint) in primary.chain(extra) {
            if endpoint.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
                aliased.push((name.clone(), endpoint.clone()));
                endpoint.aliases = None;
            }
        }
        (quiet, Aliased(aliased))
    }
}

/// The endpoints of a container that carry network aliases, as they should end.
#[derive(Clone, Debug, Default)]
pub struct Aliased(pub(crate) Vec<(String, EndpointSettings)>);

impl Aliased {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What hoist needs of one container, from a full inspect.
#[derive(Clone, Debug)]
pub struct ContainerDetails {
    pub(crate) raw: ContainerInspectResponse,
    /// `Config.MacAddress`: where engines before API 1.44 keep a MAC address
    /// the user chose. bollard's models lack the field, so it is only known
    /// when the inspect was read as plain JSON ([`Engine::inspect_container_full`]).
    pub(crate) config_mac_address: Option<String>,
}

impl ContainerDetails {
    fn from_model(raw: ContainerInspectResponse) -> ContainerDetails {
        ContainerDetails {
            raw,
            config_mac_address: None,
        }
    }

    /// Reads an inspect as the engine wrote it (`GET /containers/{id}/json`,
    /// `docker inspect`), keeping what bollard's models have no field for.
    pub fn from_json(value: serde_json::Value) -> Result<ContainerDetails, String> {
        let config_mac_address = value["Config"]["MacAddress"]
            .as_str()
            .filter(|mac| !mac.is_empty())
            .map(str::to_string);
        let raw = serde_json::from_value(value).map_err(|e| format!("not a container inspect: {e}"))?;
        Ok(ContainerDetails {
            raw,
            config_mac_address,
        })
    }

    pub fn id(&self) -> &str {
        self.raw.id.as_deref().unwrap_or_default()
    }

    /// The name without Docker's leading slash.
    pub fn name(&self) -> &str {
        self.raw
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
    }

    /// The image reference the user asked for (`Config.Image`), never the ID.
    pub fn image_reference(&self) -> &str {
        self.raw
            .config
            .as_ref()
            .and_then(|c| c.image.as_deref())
            .unwrap_or_default()
    }

    /// The ID of the image the container was created from.
    pub fn image_id(&self) -> &str {
        self.raw.image.as_deref().unwrap_or_default()
    }

    pub fn labels(&self) -> HashMap<String, String> {
        self.raw
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }

    pub fn running(&self) -> bool {
        self.state().and_then(|s| s.running).unwrap_or(false)
    }

    pub fn restarting(&self) -> bool {
        self.state().and_then(|s| s.restarting).unwrap_or(false)
    }

    pub fn restart_count(&self) -> i64 {
        self.raw.restart_count.unwrap_or(0)
    }

    pub fn exit_code(&self) -> Option<i64> {
        self.state().and_then(|s| s.exit_code)
    }

    /// The engine's own error for a container that could not run (bad entrypoint, ...).
    pub fn state_error(&self) -> Option<&str> {
        self.state()
            .and_then(|s| s.error.as_deref())
            .filter(|e| !e.is_empty())
    }

    /// Whether the container has a healthcheck the engine runs.
    pub fn has_healthcheck(&self) -> bool {
        self.health().is_some()
    }

    /// `None` without a healthcheck.
    pub fn health(&self) -> Option<Health> {
        let status = self.state()?.health.as_ref()?.status?;
        match status {
            HealthStatusEnum::HEALTHY => Some(Health::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
            HealthStatusEnum::STARTING => Some(Health::Starting),
            HealthStatusEnum::EMPTY | HealthStatusEnum::NONE => None,
        }
    }

    /// The last healthcheck output, for a report of why it failed.
    pub fn last_health_output(&self) -> Option<String> {
        let log = self.state()?.health.as_ref()?.log.as_ref()?;
        log.last()
            .and_then(|r| r.output.clone())
            .map(|o| o.trim().to_string())
    }

    pub fn restart_policy(&self) -> Option<RestartPolicyName> {
        let policy = self.raw.host_config.as_ref()?.restart_policy.as_ref()?;
        Some(RestartPolicyName(policy.clone()))
    }

    /// `--rm` containers vanish when stopped, so they cannot be parked for a rollback.
    pub fn auto_remove(&self) -> bool {
        self.raw
            .host_config
            .as_ref()
            .and_then(|h| h.auto_remove)
            .unwrap_or(false)
    }

    /// Network name → aliases, for comparisons and the `/v1/targets` view.
    pub fn network_aliases(&self) -> HashMap<String, Vec<String>> {
        let short_id = self.id().get(..12).unwrap_or_default().to_string();
        self.networks()
            .map(|(name, ep)| {
                let aliases = ep
                    .aliases
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|a| *a != short_id)
                    .collect();
                (name.clone(), aliases)
            })
            .collect()
    }

    /// The whole inspect document as JSON, for tests and diagnostics.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.raw).unwrap_or_default()
    }

    fn state(&self) -> Option<&bollard::models::ContainerState> {
        self.raw.state.as_ref()
    }

    fn networks(&self) -> impl Iterator<Item = (&String, &EndpointSettings)> {
        self.raw
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .into_iter()
            .flatten()
    }

    /// The container's own stop timeout (`--stop-timeout`), which `docker
    /// stop` uses when it is given no other; `None` when unset or negative
    /// (an engine's "wait for ever", which an update must not do).
    pub fn stop_timeout(&self) -> Option<Duration> {
        let seconds = self.raw.config.as_ref()?.stop_timeout?;
        u64::try_from(seconds).ok().map(Duration::from_secs)
    }
}

/// A container as the list call shows it.
#[derive(Clone, Debug)]
pub struct ContainerBrief {
    pub id: String,
    /// With a slash; a linked container also shows as `/<linker>/<alias>`.
    pub names: Vec<String>,
    pub network_mode: Option<String>,
    /// Volume names, and sources of binds.
    pub mounts: Vec<String>,
}

impl ContainerDetails {
    /// Volume names, and sources of binds (as [`ContainerBrief::mounts`]).
    pub fn mount_keys(&self) -> Vec<String> {
        self.raw
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| m.name.clone().filter(|n| !n.is_empty()).or(m.source.clone()))
            .collect()
    }
}

/// A container's restart policy, kept opaque so it can be put back as it was
/// (and journaled, so it can be put back after a crash).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RestartPolicyName(pub(crate) RestartPolicy);

/// Health as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// What hoist needs of one local image.
#[derive(Clone, Debug)]
pub struct ImageDetails {
    pub(crate) raw: ImageInspect,
}

impl ImageDetails {
    /// Reads an image inspect as the engine wrote it (`docker image inspect`).
    pub fn from_json(value: serde_json::Value) -> Result<ImageDetails, String> {
        serde_json::from_value(value)
            .map(|raw| ImageDetails { raw })
            .map_err(|e| format!("not an image inspect: {e}"))
    }

    pub fn id(&self) -> &str {
        self.raw.id.as_deref().unwrap_or_default()
    }

    /// `repo@sha256:...` entries: the digests the registry served this image under.
    pub fn repo_digests(&self) -> Vec<String> {
        self.raw.repo_digests.clone().unwrap_or_default()
    }

    /// The digest this image has in `repository` (as the engine names it, host included).
    pub fn digest_in(&self, repository: &str) -> Option<Digest> {
        self.repo_digests()
            .iter()
            .filter_map(|d| d.split_once('@'))
            .filter(|(repo, _)| *repo == repository)
            .find_map(|(_, digest)| Digest::parse(digest).ok())
    }

    pub fn label(&self, key: &str) -> Option<String> {
        self.raw.config.as_ref()?.labels.as_ref()?.get(key).cloned()
    }

    /// The image's configuration (`Config` of the inspect) as plain JSON.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.raw.config).unwrap_or_default()
    }
}

/// One container as the list call shows it.
#[derive(Clone, Debug)]
pub struct ContainerListing {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    /// The reference the container was created from, unless that reference
    /// now names another image (a pull moved the tag): then the engine shows
    /// the image ID (`sha256:…`) here, and only an inspect has the reference.
    pub image: String,
    pub image_id: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

impl ContainerListing {
    /// Whether the listing lacks the image reference (see [`ContainerListing::image`]).
    pub fn lacks_reference(&self) -> bool {
        self.image.is_empty() || self.image.starts_with("sha256:")
    }
}

/// A container change the index cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    pub container_id: String,
    /// `create`, `start`, `die`, `destroy`, `rename`, ...
    pub action: String,
}

impl Engine {
    /// IDs of every container (running or not) carrying an opt-in label key,
    /// whatever its value: the caller reads the value, and reports a bad one.
    /// Listed without a filter, because the engine's label filter matches
    /// exact keys only and the seed tool's form (`registry-docker-updater: true`)
    /// comes with any spacing.
    pub async fn list_labelled_ids(&self) -> Result<Vec<String>, EngineError> {
        let mut ids: Vec<String> = self.list_labelled().await?.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Every container, running or not (`all`), narrowed by the engine's
    /// unanchored `name` filter when `name_filter` is given: the one list call.
    async fn list_containers(&self, name_filter: Option<&str>) -> Result<Vec<ContainerSummary>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: name_filter.map(|name| HashMap::from([("name".to_string(), vec![name.to_string()])])),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list containers", e))
    }

    /// Every container carrying an opt-in label key, as the list call shows
    /// it: one call, enough for the index unless [`ContainerListing::image`]
    /// is an image ID (see there).
    pub async fn list_labelled(&self) -> Result<Vec<ContainerListing>, EngineError> {
        let found = self.list_containers(None).await?;
        Ok(found
            .into_iter()
            .filter(|c| c.labels.as_ref().is_some_and(labels::mentions_opt_in))
            .filter_map(|c| {
                // Legacy links add names such as `/other/alias`; the
                // container's own has one slash.
                let name = c
                    .names
                    .iter()
                    .flatten()
                    .find(|n| n.matches('/').count() == 1)?
                    .trim_start_matches('/')
                    .to_string();
                Some(ContainerListing {
                    id: c.id?,
                    name,
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The IDs of every container, labelled or not (for `hoist plan`).
    pub async fn list_all_ids(&self) -> Result<Vec<String>, EngineError> {
        let found = self.list_containers(None).await?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    /// Every container, running or not, as the list call shows it (to find a
    /// target's dependents without inspecting each container on the host).
    pub async fn list_briefs(&self) -> Result<Vec<ContainerBrief>, EngineError> {
        let found = self.list_containers(None).await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                Some(ContainerBrief {
                    id: c.id?,
                    names: c.names.unwrap_or_default(),
                    network_mode: c.host_config.and_then(|h| h.network_mode),
                    mounts: c
                        .mounts
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|m| m.name.filter(|n| !n.is_empty()).or(m.source))
                        .collect(),
                })
            })
            .collect())
    }

    pub async fn inspect_container(&self, id: &str) -> Result<ContainerDetails, EngineError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map(ContainerDetails::from_model)
            .map_err(|e| EngineError::from_bollard(format!("container {id}"), e))
    }

    /// The inspect of a container about to be recreated: read as plain JSON
    /// when the engine can be reached so, to keep the fields bollard's models
    /// lack ([`ContainerDetails::config_mac_address`]).
    pub async fn inspect_container_full(&self, id: &str) -> Result<ContainerDetails, EngineError> {
        let Some(raw) = &self.raw else {
            return self.inspect_container(id).await;
        };
        let value = raw.inspect_container(&self.api_version(), id).await?;
        ContainerDetails::from_json(value).map_err(|message| EngineError::Refused {
            action: format!("container {id}"),
            status: 200,
            message,
        })
    }

    pub async fn inspect_image(&self, name: &str) -> Result<ImageDetails, EngineError> {
        self.docker
            .inspect_image(name)
            .await
            .map(|raw| ImageDetails { raw })
            .map_err(|e| EngineError::from_bollard(format!("image {name}"), e))
    }

    /// Lifecycle events of containers that carry an opt-in label key (any
    /// value, so a label switched off is seen too), from now on. The stream
    /// ends or errors when the engine goes away; the caller resyncs and resubscribes.
    pub fn container_events(&self) -> impl Stream<Item = Result<EngineEvent, EngineError>> + Send + 'static {
        // Several `label` filter values must all match, so the opt-in labels
        // are checked here instead; several `event` values match any.
        let options = EventsOptions {
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "event".to_string(),
                    [
                        "create", "start", "die", "stop", "destroy", "rename", "update", "restart",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
            ])),
            ..Default::default()
        };
        self.docker.events(Some(options)).filter_map(|item| async move {
            match item {
                Ok(EventMessage {
                    action: Some(action),
                    actor: Some(actor),
                    ..
                }) => {
                    let attributes = actor.attributes.unwrap_or_default();
                    let labelled = labels::mentions_opt_in(&attributes);
                    match actor.id {
                        Some(container_id) if labelled => Some(Ok(EngineEvent { container_id, action })),
                        _ => None,
                    }
                }
                Ok(_) => None,
                Err(e) => Some(Err(EngineError::from_bollard("event stream", e))),
            }
        })
    }

    /// Stops the container, killing it after `timeout` if it has not exited.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), EngineError> {
        // The API takes whole seconds as an i32; a longer wait is capped, never wrapped.
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            t: Some(seconds),
            ..Default::default()
        };
        // The engine answers once the container is down: give the call that
        // long, and one call limit more for the kill and the answer.
        let call_timeout = timeout.saturating_add(self.call_limit);
        let docker = self.docker.clone().with_timeout(call_timeout);
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(format!("stop {id}"), e))
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| EngineError::from_bollard(format!("start {id}"), e))
    }

    pub async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptions {
            name: new_name.to_string(),
        };
        self.docker
            .rename_container(id, options)
            .await
            .map_err(|e| EngineError::from_bollard(format!("rename {id} to {new_name}"), e))
    }

    /// Removes a container but never its volumes: a parked container shares
    /// its anonymous volumes with its successor.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(format!("remove {id}"), e)),
        }
    }

    pub async fn set_restart_policy(
        &self,
        id: &str,
        policy: Option<&RestartPolicyName>,
    ) -> Result<(), EngineError> {
        let policy = policy.map(|p| p.0.clone()).unwrap_or(RestartPolicy {
            name: Some(bollard::models::RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        });
        let body = ContainerUpdateBody {
            restart_policy: Some(policy),
            ..Default::default()
        };
        self.docker
            .update_container(id, body)
            .await
            .map_err(|e| EngineError::from_bollard(format!("update restart policy of {id}"), e))
    }

    /// Creates the container and connects its other networks; returns its ID.
    pub async fn create(&self, name: &str, spec: &CreateSpec) -> Result<String, EngineError> {
        let id = match (&spec.mac_address, &self.raw) {
            // Before API 1.44 the engine takes a MAC address in `Config.MacAddress`
            // only, which bollard's create body has no field for.
            (Some(mac), Some(raw)) if !self.api_at_least(1, 44) => {
                let mut body = serde_json::to_value(&spec.body).map_err(|e| EngineError::Refused {
                    action: format!("create {name}"),
                    status: 400,
                    message: e.to_string(),
                })?;
                body["MacAddress"] = serde_json::Value::String(mac.clone());
                raw.create_container(&self.api_version(), name, &body).await?
            }
            (mac, raw) => {
                if mac.is_some() && raw.is_none() && !self.api_at_least(1, 44) {
                    tracing::warn!(container = name, "This engine takes a MAC address in a field hoist cannot send over this connection; the new container gets one of the engine's.");
                }
                let options = CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                };
                self.docker
                    .create_container(Some(options), spec.body.clone())
                    .await
                    .map_err(|e| EngineError::from_bollard(format!("create {name}"), e))?
                    .id
            }
        };
        for (network, endpoint) in &spec.extra_networks {
            let request = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(endpoint.clone()),
            };
            if let Err(e) = self.docker.connect_network(network, request).await {
                // A half-wired container must not be left behind.
                if let Err(again) = self.remove(&id).await {
                    tracing::warn!(container = name, error = %again, "Cannot remove a half-created container.");
                }
                return Err(EngineError::from_bollard(
                    format!("connect {name} to {network}"),
                    e,
                ));
            }
        }
        Ok(id)
    }

    /// Reconnects the container to each network of `aliased` with that
    /// endpoint (aliases are set when an endpoint joins, so this is how a
    /// running container gets them).
    pub async fn rejoin(&self, id: &str, aliased: &Aliased) -> Result<(), EngineError> {
        for (network, endpoint) in &aliased.0 {
            self.disconnect(network, id).await?;
            let request = NetworkConnectRequest {
                container: id.to_string(),
                endpoint_config: Some(endpoint.clone()),
            };
            self.docker
                .connect_network(network, request)
                .await
                .map_err(|e| EngineError::from_bollard(format!("connect {id} to {network}"), e))?;
        }
        Ok(())
    }

    /// Takes the container off one network, so that the engine's DNS stops
    /// answering with it there (its name and aliases).
    pub async fn disconnect(&self, network: &str, id: &str) -> Result<(), EngineError> {
        let request = NetworkDisconnectRequest {
            container: id.to_string(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .map_err(|e| EngineError::from_bollard(format!("disconnect {id} from {network}"), e))
    }

    /// Removes an image unless a container uses it (no force).
    pub async fn remove_image(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .remove_image(id, None::<bollard::query_parameters::RemoveImageOptions>, None)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::from_bollard(format!("remove image {id}"), e))
    }

    /// The last `lines` lines the container wrote (stdout and stderr).
    pub async fn log_tail(&self, id: &str, lines: usize) -> Vec<String> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let read = self.docker.logs(id, Some(options)).collect::<Vec<_>>();
        // Only for a report: an engine that stalls gets no more than one call limit.
        let chunks = tokio::time::timeout(self.call_limit, read)
            .await
            .unwrap_or_default();
        let text: String = chunks
            .into_iter()
            .filter_map(Result::ok)
            .map(|c| c.to_string())
            .collect();
        cap_log_tail(text.lines().map(str::to_string).collect())
    }

    /// The ID of the container called exactly `name` (without slash), if any.
    pub async fn container_id_by_name(&self, name: &str) -> Result<Option<String>, EngineError> {
        // The engine's `name` filter is an unanchored regular expression: it
        // narrows the list, and the exact comparison below decides ("a.b" also
        // matches "axb", and "web" matches "web-2").
        let found = self.list_containers(Some(name)).await?;
        let wanted = format!("/{name}");
        Ok(found
            .into_iter()
            .filter(|c| c.names.iter().flatten().any(|n| *n == wanted))
            .find_map(|c| c.id))
    }
}

/// The most bytes of log tail kept for a report (it is stored in the journal and sent in messages).
pub const LOG_TAIL_BYTES: usize = 4096;
/// The most bytes kept of one log line.
pub const LOG_LINE_BYTES: usize = 512;

/// Cuts each line to [`LOG_LINE_BYTES`] and keeps the last lines that fit in
/// [`LOG_TAIL_BYTES`]: a container that logs megabytes per line cannot fill
/// the journal or a message.
pub fn cap_log_tail(lines: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut total = 0;
    for mut line in lines.into_iter().rev() {
        if line.len() > LOG_LINE_BYTES {
            let mut cut = LOG_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" [cut]");
        }
        total += line.len() + 1;
        if total > LOG_TAIL_BYTES {
            break;
        }
        kept.push(line);
    }
    kept.reverse();
    kept
}

#[cfg(test)]
mod log_tail_tests {
    use super::*;

    #[test]
    fn log_tails_are_capped_in_bytes_per_line_and_in_all() {
        let lines = vec!["first".to_string(), "é".repeat(600), "last".to_string()];
        let capped = cap_log_tail(lines);
        assert_eq!(capped.len(), 3);
        assert!(capped[1].len() <= LOG_LINE_BYTES + " [cut]".len());
        assert!(capped[1].ends_with(" [cut]"));
        let many: Vec<String> = (0..100).map(|n| format!("{n}:{}", "x".repeat(200))).collect();
        let capped = cap_log_tail(many);
        assert!(capped.iter().map(|l| l.len() + 1).sum::<usize>() <= LOG_TAIL_BYTES);
        assert!(
            capped.last().unwrap().starts_with("99:"),
            "the last lines are the ones kept"
        );
    }
}
