//! The Docker Engine adapter: with `deploy::recreate` and `deploy::pull`, the
//! only code that speaks bollard.
//!
//! Everything else sees hoist's own types: [`ContainerDetails`],
//! [`ImageDetails`], [`ServiceDetails`], [`EngineEvent`] and [`EngineError`].
//! `container` holds the container and image calls, `swarm` the service and
//! task calls; `raw` the two calls whose fields bollard's models lack; this
//! file the connection and the error every call returns.

mod container;
mod raw;
mod swarm;

use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

use crate::event::ImageRef;

pub use container::{ContainerDetails, EngineEvent, Health, ImageDetails, RestartPolicyName};
/// The time one engine call may take unless it says otherwise.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// `HOIST_PULL_TIMEOUT`'s default.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(600);

pub use swarm::{ServiceDetails, ServiceEvent, SwarmRole, TaskDetails, UpdateState, UpdateStatus};

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

    pub(in crate::deploy) fn from_bollard(action: impl Into<String>, error: BollardError) -> EngineError {
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

/// The Docker Engine, with the API version negotiated at connect.
#[derive(Clone)]
pub struct Engine {
    pub(in crate::deploy) docker: Docker,
    /// The same engine as plain JSON, for fields bollard's models lack; `None`
    /// when it is reached in a way only bollard speaks (TLS, SSH).
    raw: Option<raw::RawApi>,
    /// The most a whole pull may take (`HOIST_PULL_TIMEOUT`).
    pub(in crate::deploy) pull_timeout: Duration,
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
            // Per call; a stop, which answers only once done, sets its own.
            .with_timeout(DEFAULT_CALL_TIMEOUT)
            .with_request_modifier(super::pull::registry_auth_in_url_safe_base64);
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(Engine {
            docker,
            raw: raw::RawApi::new(docker_host),
            pull_timeout: DEFAULT_PULL_TIMEOUT,
        })
    }

    /// Sets the most a whole pull may take, stream included.
    pub fn with_pull_timeout(mut self, timeout: Duration) -> Engine {
        self.pull_timeout = timeout;
        self
    }

    /// Whether the negotiated API version is at least `major.minor`.
    fn api_at_least(&self, major: usize, minor: usize) -> bool {
        let version = self.docker.client_version();
        (version.major_version, version.minor_version) >= (major, minor)
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
}

/// The repository part of a reference as the engine names it (`host/repo`),
/// as found in `RepoDigests`: Docker Hub images are shown without `docker.io/`.
pub fn engine_repository(reference: &ImageRef) -> String {
    match reference.registry() {
        "docker.io" => reference.repository().trim_start_matches("library/").to_string(),
        host => format!("{host}/{}", reference.repository()),
    }
}
