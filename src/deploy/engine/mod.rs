//! The Docker Engine adapter: with `deploy::recreate` and `deploy::pull`, the
//! only code that speaks bollard.
//!
//! Everything else sees hoist's own types: [`ContainerDetails`],
//! [`ImageDetails`], [`ServiceDetails`], [`EngineEvent`] and [`EngineError`].
//! `container` holds the container and image calls, `swarm` the service and
//! task calls; this file the connection and the error every call returns.

mod container;
mod swarm;

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

use crate::event::ImageRef;

pub use container::{ContainerDetails, EngineEvent, Health, ImageDetails, RestartPolicyName};
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
            .with_request_modifier(super::pull::registry_auth_in_url_safe_base64);
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
