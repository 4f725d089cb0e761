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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

use crate::event::ImageRef;

pub use container::{
    ContainerBrief, ContainerDetails, CreateSpec, EngineEvent, Health, ImageDetails, RestartPolicyName,
};
/// `HOIST_PULL_TIMEOUT`'s default.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(600);

pub use swarm::{ServiceDetails, ServiceEvent, SwarmRole, TaskDetails, UpdateState, UpdateStatus};

/// A failed engine call, sorted so callers know whether to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine cannot be reached (socket missing, daemon down, connection
    /// reset, a stream broken mid-way).
    #[error("docker engine unreachable: {0}")]
    Unreachable(String),
    /// The engine took the call but did not answer within the limit
    /// (`HOIST_ENGINE_TIMEOUT`).
    #[error("docker engine did not answer: {0}")]
    TimedOut(String),
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
            EngineError::Unreachable(_) | EngineError::TimedOut(_) => true,
            EngineError::Refused { status, .. } => *status >= 500,
            EngineError::Pull { .. } | EngineError::NotFound { .. } => false,
        }
    }

    /// Swarm refused a service update because the service changed since it
    /// was read (its version index moved on): read it again and retry.
    pub fn is_out_of_sequence(&self) -> bool {
        matches!(self, EngineError::Refused { message, .. } if message.contains("update out of sequence"))
    }

    pub(crate) fn from_bollard(action: impl Into<String>, error: BollardError) -> EngineError {
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
            BollardError::RequestTimeoutError => EngineError::TimedOut(action),
            other => EngineError::Unreachable(format!("{action}: {other}")),
        }
    }
}

/// The Docker Engine, with the API version negotiated once it answers.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    /// The same engine as plain JSON, for fields bollard's models lack; `None`
    /// when it is reached in a way only bollard speaks (TLS, SSH).
    raw: Option<raw::RawApi>,
    /// The most a whole pull may take (`HOIST_PULL_TIMEOUT`).
    pub(crate) pull_timeout: Duration,
    /// How long one call may take to be answered (`HOIST_ENGINE_TIMEOUT`):
    /// the one place engine calls are bounded (bollard's client timeout, and
    /// the plain-JSON client's). A stop gets its stop grace on top; a pull
    /// has `pull_timeout` in all; a log read for a report, this long in all.
    pub(crate) call_limit: Duration,
    /// Set once the API version is negotiated (bollard shares the version
    /// between clones). bollard's own calls carry no version prefix (the
    /// engine serves them at its own version), so they work before; the
    /// plain-JSON calls name the version, and are made only after
    /// [`Engine::ready`].
    negotiated: Arc<AtomicBool>,
}

impl Engine {
    /// Connects to `docker_host` (`unix://...`, `tcp://...`; the configured
    /// `DOCKER_HOST`), or the local socket, and negotiates the API version.
    /// An engine that does not answer yet is no error: the version is
    /// negotiated at the first [`Engine::ping`] (or [`Engine::ready`]) that
    /// works. Every call gets `call_limit` to be answered; one that runs out
    /// of time fails with [`EngineError::TimedOut`], an engine fault like a
    /// refused connection.
    pub async fn connect(docker_host: Option<&str>, call_limit: Duration) -> Result<Engine, EngineError> {
        let docker = match docker_host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_local_defaults(),
        };
        let docker = docker
            .map_err(|e| EngineError::Unreachable(e.to_string()))?
            // Per call; a stop, which answers only once done, sets its own.
            .with_timeout(call_limit)
            .with_request_modifier(registry_auth_in_url_safe_base64);
        let engine = Engine {
            docker,
            raw: raw::RawApi::new(docker_host, call_limit),
            pull_timeout: DEFAULT_PULL_TIMEOUT,
            call_limit,
            negotiated: Arc::new(AtomicBool::new(false)),
        };
        if let Err(e) = engine.ready().await {
            tracing::debug!(error = %e, "API version not negotiated yet.");
        }
        Ok(engine)
    }

    /// Negotiates the API version if that is not done yet (no call otherwise).
    pub async fn ready(&self) -> Result<(), EngineError> {
        if self.negotiated.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.docker
            .clone()
            .negotiate_version()
            .await
            .map_err(|e| EngineError::from_bollard("version", e))?;
        self.negotiated.store(true, Ordering::Relaxed);
        Ok(())
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

    /// Whether the engine answers; negotiates the API version the first time it does.
    pub async fn ping(&self) -> Result<(), EngineError> {
        if !self.negotiated.load(Ordering::Relaxed) {
            return self.ready().await;
        }
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

/// bollard encodes `X-Registry-Auth` as standard base64, but the engine
/// decodes it as URL-safe base64 and silently ignores a header it cannot read
/// (moby#33434), which loses credentials whose JSON encodes to `+` or `/`.
/// Installed on every engine request: rewrites the header into the engine's alphabet.
pub(crate) fn registry_auth_in_url_safe_base64(
    mut request: bollard::BollardRequest,
) -> bollard::BollardRequest {
    for name in ["x-registry-auth", "x-registry-config"] {
        if let Some(value) = request.headers_mut().get_mut(name) {
            let fixed = value.to_str().map(|v| v.replace('+', "-").replace('/', "_"));
            if let Ok(Ok(fixed)) = fixed.map(|f| f.parse()) {
                *value = fixed;
            }
        }
    }
    request
}

/// Registry credentials as the engine takes them (`X-Registry-Auth`), for pulls and service updates.
pub(crate) fn docker_credentials(
    auth: &crate::registry::credentials::RegistryAuth,
) -> bollard::auth::DockerCredentials {
    bollard::auth::DockerCredentials {
        username: auth.username.clone(),
        password: auth.password.as_ref().map(|p| p.expose().clone()),
        identitytoken: auth.identity_token.as_ref().map(|t| t.expose().clone()),
        serveraddress: Some(auth.server.clone()),
        ..Default::default()
    }
}
