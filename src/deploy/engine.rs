//! The Docker Engine adapter: the only file that speaks bollard.
//!
//! Everything else sees hoist's own types: [`ContainerDetails`],
//! [`ImageDetails`], [`CreateSpec`], [`EngineEvent`] and [`EngineError`]. The
//! translation of an inspected container into the body that recreates it lives
//! here too, because it is bollard's models in, bollard's models out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, EndpointSettings, EventMessage,
    HealthStatusEnum, ImageInspect, LocalNodeState, Mount, MountType, NetworkConnectRequest,
    NetworkingConfig, RestartPolicy, Service, ServiceUpdateStatusStateEnum, Task, TaskState,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    InspectServiceOptions, ListContainersOptions, ListServicesOptions, ListTasksOptions, LogsOptions,
    RemoveContainerOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
    TagImageOptions, UpdateServiceOptions,
};
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};

use crate::event::{Digest, ImageRef};
use crate::inventory::labels;
use crate::registry::credentials::RegistryAuth;

/// A failed engine call, sorted so callers know whether to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine cannot be reached (socket missing, daemon down, timeout).
    #[error("docker engine unreachable: {0}")]
    Unreachable(String),
    /// The object does not exist (any more).
    #[error("{what} not found")]
    NotFound { what: String },
    /// The engine refused the request; `message` is the engine's own words.
    #[error("docker engine refused {action}: {message}")]
    Refused {
        action: String,
        status: u16,
        message: String,
    },
    /// Pulling failed: registry down, manifest unknown, access denied.
    #[error("pull of {image} failed: {message}")]
    Pull { image: String, message: String },
}

impl EngineError {
    /// Worth another try later (the daemon or the registry may come back).
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Unreachable(_) => true,
            EngineError::Refused { status, .. } => *status >= 500,
            EngineError::Pull { .. } | EngineError::NotFound { .. } => false,
        }
    }

    /// Swarm refused a service update because the service changed since it
    /// was read (its version index moved on): read it again and retry.
    pub fn is_out_of_sequence(&self) -> bool {
        matches!(self, EngineError::Refused { message, .. } if message.contains("update out of sequence"))
    }

    fn from_bollard(action: impl Into<String>, error: BollardError) -> EngineError {
        let action = action.into();
        match error {
            BollardError::DockerResponseServerError { status_code: 404, .. } => {
                EngineError::NotFound { what: action }
            }
            BollardError::DockerResponseServerError { status_code, message } => EngineError::Refused {
                action,
                status: status_code,
                message,
            },
            other => EngineError::Unreachable(format!("{action}: {other}")),
        }
    }
}

/// What hoist needs of one container, from a full inspect.
#[derive(Clone, Debug)]
pub struct ContainerDetails {
    raw: ContainerInspectResponse,
}

impl ContainerDetails {
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

    /// Builds the body that recreates this container from `new_image`,
    /// carrying over what was set on the container and letting the new image's
    /// defaults apply where the container only inherited the old image's.
    pub fn recreate_spec(
        &self,
        old_image: &ImageDetails,
        new_image: &ImageDetails,
        image_reference: &str,
    ) -> Result<CreateSpec, String> {
        let config = self.raw.config.clone().ok_or("inspect has no Config")?;
        let mut host_config = self.raw.host_config.clone().ok_or("inspect has no HostConfig")?;
        let image_defaults = old_image.raw.config.clone().unwrap_or_default();
        let id = self.id();

        // Run-time overrides only: whatever equals the old image's value came
        // from the image, and the new image's value should replace it.
        let env = subtract(config.env, image_defaults.env.as_ref());
        let labels = config.labels.map(|labels| {
            let inherited = image_defaults.labels.unwrap_or_default();
            labels
                .into_iter()
                .filter(|(k, v)| labels::is_opt_in(k) || inherited.get(k) != Some(v))
                .map(|(k, v)| {
                    // Compose v2 recreates a container whose recorded image
                    // differs from the local one; record the new image.
                    if k == labels::COMPOSE_IMAGE {
                        (k, new_image.id().to_string())
                    } else {
                        (k, v)
                    }
                })
                .collect::<HashMap<_, _>>()
        });
        let volumes = subtract(config.volumes, image_defaults.volumes.as_ref());
        let entrypoint_inherited = config.entrypoint == image_defaults.entrypoint;
        let entrypoint = if entrypoint_inherited {
            None
        } else {
            config.entrypoint
        };
        // Cmd is only reset to the image's when the entrypoint is too: a
        // custom entrypoint makes the image's Cmd an argument the user chose.
        let cmd = if entrypoint_inherited && config.cmd == image_defaults.cmd {
            None
        } else {
            config.cmd
        };
        let keep_unless_inherited = |value: Option<String>, image: Option<&String>| match value {
            Some(v) if v.is_empty() || Some(&v) == image => None,
            other => other,
        };
        let user = keep_unless_inherited(config.user, image_defaults.user.as_ref());
        let working_dir = keep_unless_inherited(config.working_dir, image_defaults.working_dir.as_ref());
        let stop_signal = keep_unless_inherited(config.stop_signal, image_defaults.stop_signal.as_ref());
        let healthcheck = if config.healthcheck == image_defaults.healthcheck {
            None
        } else {
            config.healthcheck
        };
        let mut exposed_ports =
            subtract(config.exposed_ports, image_defaults.exposed_ports.as_ref()).unwrap_or_default();
        for port in host_config.port_bindings.iter().flat_map(|b| b.keys()) {
            if !exposed_ports.contains(port) {
                exposed_ports.push(port.clone());
            }
        }
        // The daemon sets the hostname to the short ID; keeping it would give
        // the new container the old one's ID as its name (watchtower#1251).
        let network_mode = host_config.network_mode.clone().unwrap_or_default();
        let shares_namespace = network_mode.starts_with("container:") || host_config.uts_mode.is_some();
        let hostname = config
            .hostname
            .filter(|h| !shares_namespace && !h.is_empty() && !id.starts_with(h.as_str()));

        // Inspect reports legacy links as "/other:/this/alias"; create wants "other:alias".
        if let Some(links) = host_config.links.as_mut() {
            for link in links.iter_mut() {
                if let Some((other, alias)) = link.split_once(':') {
                    let alias = alias.rsplit('/').next().unwrap_or(alias);
                    *link = format!("{}:{}", other.trim_start_matches('/'), alias);
                }
            }
        }

        // Anonymous volumes are not named in Binds or Mounts; a plain recreate
        // would give the new container fresh empty ones. Attach the old ones.
        let named_destinations: HashSet<String> = host_config
            .binds
            .iter()
            .flatten()
            .filter_map(|b| b.split(':').nth(1).map(str::to_string))
            .chain(
                host_config
                    .mounts
                    .iter()
                    .flatten()
                    .filter_map(|m| m.target.clone()),
            )
            .collect();
        let anonymous: Vec<Mount> = self
            .raw
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter(|m| {
                m.destination
                    .as_ref()
                    .is_some_and(|d| !named_destinations.contains(d))
            })
            .map(|m| Mount {
                target: m.destination.clone(),
                source: m.name.clone(),
                typ: Some(MountType::VOLUME),
                read_only: m.rw.map(|rw| !rw),
                ..Default::default()
            })
            .collect();
        if !anonymous.is_empty() {
            host_config.mounts.get_or_insert_with(Vec::new).extend(anonymous);
        }

        // API < 1.44 takes one endpoint at create; the others are connected
        // before start. The primary one is the network the mode names.
        let mut endpoints: Vec<(String, EndpointSettings)> = self
            .networks()
            .map(|(name, ep)| (name.clone(), endpoint_for_create(ep, id)))
            .collect();
        endpoints.sort_by_key(|(name, _)| name.clone());
        let takes_endpoints =
            !(network_mode == "host" || network_mode == "none" || network_mode.starts_with("container:"));
        let (primary, secondary) = if takes_endpoints {
            let primary_name = if network_mode.is_empty() || network_mode == "default" {
                "bridge".to_string()
            } else {
                network_mode.clone()
            };
            let position = endpoints.iter().position(|(name, _)| *name == primary_name);
            let primary = position.map(|i| endpoints.remove(i));
            (primary, endpoints)
        } else {
            (None, Vec::new())
        };

        let body = ContainerCreateBody {
            hostname,
            domainname: config.domainname.filter(|d| !d.is_empty()),
            user,
            attach_stdin: config.attach_stdin,
            attach_stdout: config.attach_stdout,
            attach_stderr: config.attach_stderr,
            exposed_ports: Some(exposed_ports).filter(|p| !p.is_empty()),
            tty: config.tty,
            open_stdin: config.open_stdin,
            stdin_once: config.stdin_once,
            env,
            cmd,
            healthcheck,
            args_escaped: None,
            image: Some(image_reference.to_string()),
            volumes,
            working_dir,
            entrypoint,
            network_disabled: config.network_disabled,
            on_build: None,
            labels,
            stop_signal,
            stop_timeout: config.stop_timeout,
            shell: None,
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: primary.map(|(name, ep)| HashMap::from([(name, ep)])),
            }),
        };
        Ok(CreateSpec {
            body,
            extra_networks: secondary,
        })
    }
}

/// Keeps the user-configurable part of an endpoint; drops what the engine
/// assigns (IDs, addresses it chose) and the old container's short-ID alias.
fn endpoint_for_create(ep: &EndpointSettings, old_id: &str) -> EndpointSettings {
    let short_id = old_id.get(..12).unwrap_or_default();
    EndpointSettings {
        ipam_config: ep.ipam_config.clone(),
        links: ep.links.clone(),
        aliases: ep
            .aliases
            .clone()
            .map(|aliases| aliases.into_iter().filter(|a| a != short_id).collect::<Vec<_>>())
            .filter(|a| !a.is_empty()),
        driver_opts: ep.driver_opts.clone(),
        ..Default::default()
    }
}

fn subtract(values: Option<Vec<String>>, inherited: Option<&Vec<String>>) -> Option<Vec<String>> {
    let inherited: HashSet<&String> = inherited.into_iter().flatten().collect();
    values.map(|v| {
        v.into_iter()
            .filter(|x| !inherited.contains(x))
            .collect::<Vec<_>>()
    })
}

/// A container's restart policy, kept opaque so it can be put back as it was
/// (and journaled, so it can be put back after a crash).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RestartPolicyName(RestartPolicy);

/// The body of a container to create, and the networks to connect before start.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    body: ContainerCreateBody,
    extra_networks: Vec<(String, EndpointSettings)>,
}

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
    raw: ImageInspect,
}

impl ImageDetails {
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
}

/// A container change the index cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    pub container_id: String,
    /// `create`, `start`, `die`, `destroy`, `rename`, ...
    pub action: String,
}

/// The Docker Engine, with the API version negotiated at connect.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects to `docker_host` (`unix://...`, `tcp://...`; the configured
    /// `DOCKER_HOST`), or the local socket, and negotiates the API version.
    pub async fn connect(docker_host: Option<&str>) -> Result<Engine, EngineError> {
        let docker = match docker_host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_local_defaults(),
        };
        let docker = docker
            .map_err(|e| EngineError::Unreachable(e.to_string()))?
            // Longer than the longest stop grace: a stop answers only once done.
            .with_timeout(Duration::from_secs(300))
            // bollard encodes `X-Registry-Auth` as standard base64, but the
            // engine decodes it as URL-safe base64 and silently ignores a header
            // it cannot read (moby#33434), which loses credentials whose JSON
            // encodes to `+` or `/`. Rewrite it into the engine's alphabet.
            .with_request_modifier(|mut request| {
                for name in ["x-registry-auth", "x-registry-config"] {
                    if let Some(value) = request.headers_mut().get_mut(name) {
                        let fixed = value.to_str().map(|v| v.replace('+', "-").replace('/', "_"));
                        if let Ok(Ok(fixed)) = fixed.map(|f| f.parse()) {
                            *value = fixed;
                        }
                    }
                }
                request
            });
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(Engine { docker })
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| EngineError::from_bollard("ping", e))
    }

    /// The registries the engine pulls from over plain http: its
    /// `InsecureRegistryCIDRs` and the `IndexConfigs` names marked not secure.
    pub async fn insecure_registries(&self) -> Result<(Vec<String>, Vec<String>), EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| EngineError::from_bollard("info", e))?;
        let config = info.registry_config.unwrap_or_default();
        let names = config
            .index_configs
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, index)| index.secure == Some(false))
            .map(|(name, _)| name)
            .collect();
        Ok((config.insecure_registry_cidrs.unwrap_or_default(), names))
    }

    /// IDs of every container (running or not) carrying an opt-in label.
    pub async fn list_labelled_ids(&self) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        for label in labels::OPT_IN {
            let options = ListContainersOptions {
                all: true,
                filters: Some(opt_in_filter(label)),
                ..Default::default()
            };
            let found = self
                .docker
                .list_containers(Some(options))
                .await
                .map_err(|e| EngineError::from_bollard("list containers", e))?;
            ids.extend(found.into_iter().filter_map(|c| c.id));
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    pub async fn inspect_container(&self, id: &str) -> Result<ContainerDetails, EngineError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map(|raw| ContainerDetails { raw })
            .map_err(|e| EngineError::from_bollard(format!("container {id}"), e))
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
                    let labelled = labels::OPT_IN.iter().any(|label| attributes.contains_key(*label));
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

    /// Pulls `repository@digest` and points `repository:tag` at it locally, so
    /// the tag names exactly the pushed image even if the registry has moved on.
    /// `auth` goes to the engine, which logs in to the registry with it.
    pub async fn pull_digest(
        &self,
        repository: &str,
        digest: &Digest,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageDetails, EngineError> {
        let image = format!("{repository}@{digest}");
        let options = CreateImageOptions {
            from_image: Some(repository.to_string()),
            // The API takes a digest in `tag`; an empty tag would pull every tag.
            tag: Some(digest.to_string()),
            ..Default::default()
        };
        let mut progress = self
            .docker
            .create_image(Some(options), None, auth.map(docker_credentials));
        // The pull is the stream: it must be drained to the end.
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                let message = match e {
                    BollardError::DockerStreamError { error } => error,
                    BollardError::DockerResponseServerError { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(EngineError::Pull { image, message });
            }
        }
        let details = self.inspect_image(&image).await?;
        let tag_options = TagImageOptions {
            repo: Some(repository.to_string()),
            tag: Some(tag.to_string()),
        };
        self.docker
            .tag_image(&image, Some(tag_options))
            .await
            .map_err(|e| EngineError::from_bollard(format!("tag {repository}:{tag}"), e))?;
        Ok(details)
    }

    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), EngineError> {
        let options = StopContainerOptions {
            t: Some(timeout.as_secs() as i32),
            ..Default::default()
        };
        self.docker
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
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), spec.body.clone())
            .await
            .map_err(|e| EngineError::from_bollard(format!("create {name}"), e))?;
        for (network, endpoint) in &spec.extra_networks {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint.clone()),
            };
            if let Err(e) = self.docker.connect_network(network, request).await {
                // A half-wired container must not be left behind.
                if let Err(again) = self.remove(&created.id).await {
                    tracing::warn!(container = name, error = %again, "Cannot remove a half-created container.");
                }
                return Err(EngineError::from_bollard(
                    format!("connect {name} to {network}"),
                    e,
                ));
            }
        }
        Ok(created.id)
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
        let chunks: Vec<_> = self.docker.logs(id, Some(options)).collect().await;
        let text: String = chunks
            .into_iter()
            .filter_map(Result::ok)
            .map(|c| c.to_string())
            .collect();
        text.lines().map(str::to_string).collect()
    }

    /// Full names (`name` without slash) of all containers, to find parked leftovers.
    pub async fn container_id_by_name(&self, name: &str) -> Result<Option<String>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("name".to_string(), vec![format!("^/{name}$")])])),
            ..Default::default()
        };
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list containers", e))?;
        Ok(found.into_iter().find_map(|c| c.id))
    }
}

/// The list filter for objects that carry `label=true` (one label: several
/// `label` values would all have to match).
fn opt_in_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{label}=true")])])
}

/// The repository part of a reference as the engine names it (`host/repo`),
/// as found in `RepoDigests`: Docker Hub images are shown without `docker.io/`.
pub fn engine_repository(reference: &ImageRef) -> String {
    match reference.registry() {
        "docker.io" => reference.repository().trim_start_matches("library/").to_string(),
        host => format!("{host}/{}", reference.repository()),
    }
}

// === Swarm ===

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

    /// Every service carrying an opt-in label (managers only).
    pub async fn list_labelled_services(&self) -> Result<Vec<ServiceDetails>, EngineError> {
        let mut services: Vec<ServiceDetails> = Vec::new();
        for label in labels::OPT_IN {
            let options = ListServicesOptions {
                filters: Some(opt_in_filter(label)),
                ..Default::default()
            };
            let found = self
                .docker
                .list_services(Some(options))
                .await
                .map_err(|e| EngineError::from_bollard("list services", e))?;
            for raw in found {
                let service = ServiceDetails { raw };
                if !services.iter().any(|s| s.id() == service.id()) {
                    services.push(service);
                }
            }
        }
        Ok(services)
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
        let options = UpdateServiceOptions {
            // The API's index is a u64; bollard's query parameter an i32.
            version: current.version() as i32,
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

/// Registry credentials as the engine takes them (`X-Registry-Auth`).
fn docker_credentials(auth: &RegistryAuth) -> bollard::auth::DockerCredentials {
    bollard::auth::DockerCredentials {
        username: auth.username.clone(),
        password: auth.password.as_ref().map(|p| p.expose().clone()),
        identitytoken: auth.identity_token.as_ref().map(|t| t.expose().clone()),
        serveraddress: Some(auth.server.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::secret::Secret;

    /// A stand-in engine on loopback: answers `/version` and service updates,
    /// and hands over the head of every request it gets.
    async fn fake_engine() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (heads, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let heads = heads.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buffer.len() < end + 4 + length {
                            continue;
                        }
                        buffer.drain(..end + 4 + length);
                        let body = if head.contains("/version") {
                            r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24"}"#
                        } else {
                            r#"{"Warnings":null}"#
                        };
                        heads.send(head).ok();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("tcp://{addr}"), received)
    }

    #[tokio::test]
    async fn registry_auth_reaches_the_engine_in_url_safe_base64() {
        let (host, mut heads) = fake_engine().await;
        let engine = Engine::connect(Some(&host)).await.unwrap();
        let service = ServiceDetails::from_json(json!({
            "ID": "svc1",
            "Version": { "Index": 7 },
            "Spec": { "Name": "web", "TaskTemplate": { "ContainerSpec": { "Image": "reg.test/web:1" } } }
        }))
        .unwrap();
        let auth = RegistryAuth {
            server: "reg.test".into(),
            username: Some("deploy".into()),
            password: Some(Secret::new("abc>>>def???".into())),
            identity_token: None,
        };
        engine
            .update_service_image(&service, "reg.test/web:1@sha256:abc", false, Some(&auth))
            .await
            .unwrap();
        let update = loop {
            let head = heads.recv().await.unwrap();
            if head.starts_with("POST") {
                break head;
            }
        };
        assert!(update.contains("/services/svc1/update?version=7"), "{update}");
        let header = update
            .lines()
            .find_map(|l| l.strip_prefix("x-registry-auth: "))
            .unwrap_or_else(|| panic!("no X-Registry-Auth in {update}"));
        let json = base64::engine::general_purpose::URL_SAFE.decode(header).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(&json);
        assert!(
            standard.contains('+') || standard.contains('/'),
            "the test needs a header that standard base64 would break"
        );
        let credentials: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(credentials["password"], "abc>>>def???");
        assert_eq!(credentials["serveraddress"], "reg.test");
    }
}
