//! Talking to registries: the one client that pulls' credentials, polling,
//! digest resolution and base watching use.
//!
//! [`Client::digest`] asks a registry which digest a tag names, with a `HEAD`
//! on `/v2/<repository>/manifests/<tag>` (Docker Hub does not count HEADs
//! against its pull limit) accepting OCI indexes and manifests and Docker
//! manifest lists and v2 manifests, and reads `Docker-Content-Digest`. It
//! answers the registry's `Basic` or `Bearer` challenge with the credentials
//! of the docker config file ([`credentials`]), keeping tokens until they
//! expire and remembering each registry's challenge, so a later look-up goes
//! straight to the token (or to the manifest with a cached token).
//!
//! Rate limits are per registry: a 429 pauses that registry until its
//! `Retry-After` (plus jitter), and 5xx answers or no answer pause it by the
//! one backoff policy ([`crate::backoff::Backoff`]). While a registry is
//! paused, the client does not ask it at all: it answers at once with the
//! error and the time it may be asked again ([`RegistryError::retry_at`]).
//!
//! This is hoist's own client, not `oci-client`: the login must come from the
//! docker config file like the engine's pulls, and the 429 pauses must be
//! shared by every caller; see the README, "Digests for events that have none".
//!
//! Registries the engine treats as insecure (loopback, `localhost`, the
//! engine's `--insecure-registry` CIDRs and names) are spoken to over plain
//! http, every other one over https, as the engine pulls from them.

pub mod auth;
pub mod credentials;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::StatusCode;
use tokio::time::Instant;
use tracing::{debug, instrument, warn};

use self::auth::{error_chain, fetch_token, retry_after, Challenge, Token, TokenError};
pub use self::credentials::{Credentials, CredentialsError, RegistryAuth};
use crate::backoff::Backoff;
use crate::event::{Digest, ImageRef};
use crate::secret::Secret;

/// The manifest types a tag may name; an index or list is what a multi-arch
/// push tags, and its digest is what the engine records and pulls.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// Where Docker Hub's registry API is (its image references say `docker.io`).
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits after transient failures in a row (429 without `Retry-After`, 5xx, no answer).
pub const REGISTRY_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60));

/// Why a registry gave no digest. Every variant names the registry and repository.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry wants credentials it did not get, or refused those it got.
    #[error("registry {registry} refused access to {repository}: {reason}")]
    Unauthorized {
        registry: String,
        repository: String,
        reason: String,
    },
    /// No such tag (or repository).
    #[error("registry {registry} has no {repository}:{reference}")]
    NotFound {
        registry: String,
        repository: String,
        reference: String,
    },
    /// The registry answered 429: it is not asked again before `until`.
    #[error(
        "registry {registry} is rate-limiting requests (asked for {repository}); not asked again before {}",
        .until.format("%Y-%m-%dT%H:%M:%SZ")
    )]
    RateLimited {
        registry: String,
        repository: String,
        until: DateTime<Utc>,
        retry_at: Instant,
    },
    /// No answer, or a 5xx. `retry_at`: it is not asked again before then.
    #[error("registry {registry} unreachable (asked for {repository}): {reason}")]
    Unreachable {
        registry: String,
        repository: String,
        reason: String,
        retry_at: Option<Instant>,
    },
    /// An answer that makes no sense (no digest header, a bad token answer).
    #[error("registry {registry} gave an unusable answer for {repository}: {reason}")]
    Protocol {
        registry: String,
        repository: String,
        reason: String,
    },
}

impl RegistryError {
    /// Worth asking again later (see [`RegistryError::retry_at`]).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::RateLimited { .. } | RegistryError::Unreachable { .. }
        )
    }

    /// When the registry may be asked again, for transient errors.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            RegistryError::RateLimited { retry_at, .. } => Some(*retry_at),
            RegistryError::Unreachable { retry_at, .. } => *retry_at,
            _ => None,
        }
    }

    /// A short name for metrics: `unauthorized`, `not_found`, `rate_limited`, `unreachable`, `protocol`.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Unauthorized { .. } => "unauthorized",
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::RateLimited { .. } => "rate_limited",
            RegistryError::Unreachable { .. } => "unreachable",
            RegistryError::Protocol { .. } => "protocol",
        }
    }
}

/// The client could not be built (TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the registry client: {0}")]
pub struct BuildError(String);

/// Which registries are spoken to over plain http: those the engine treats as
/// insecure. Loopback (`127.0.0.0/8`, `::1`, `localhost`) always is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insecure {
    cidrs: Vec<(IpAddr, u8)>,
    /// `host[:port]` names, lower case.
    names: Vec<String>,
}

impl Default for Insecure {
    fn default() -> Self {
        Insecure::new(Vec::<String>::new(), Vec::<String>::new())
    }
}

impl Insecure {
    /// From the engine's `RegistryConfig`: its `InsecureRegistryCIDRs` and the
    /// `IndexConfigs` names marked not secure. Unreadable CIDRs are skipped.
    pub fn new(cidrs: impl IntoIterator<Item = String>, names: impl IntoIterator<Item = String>) -> Insecure {
        let mut parsed: Vec<(IpAddr, u8)> = vec![
            (IpAddr::from([127, 0, 0, 0]), 8),
            (IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 128),
        ];
        parsed.extend(cidrs.into_iter().filter_map(|cidr| {
            let (ip, bits) = cidr.trim().split_once('/')?;
            Some((ip.parse().ok()?, bits.parse().ok()?))
        }));
        Insecure {
            cidrs: parsed,
            names: names.into_iter().map(|n| n.trim().to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `registry` (`host[:port]`) is insecure by its name or address
    /// alone (no DNS look-up).
    pub fn by_name(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let host = host_part(&registry);
        host == "localhost"
            || self.names.iter().any(|n| *n == registry || *n == host)
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.contains(ip))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|(net, bits)| in_cidr(ip, *net, *bits))
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `host` of `host[:port]` (`[v6]:port` too).
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    }
}

/// What to send as `Authorization`.
#[derive(Clone)]
enum Authorization {
    Basic(String, Secret<String>),
    Bearer(Secret<String>),
}

/// Why a registry is paused.
#[derive(Clone, Debug)]
enum PauseReason {
    RateLimited,
    Unavailable(String),
}

#[derive(Clone, Debug)]
struct Pause {
    until: Instant,
    until_wall: DateTime<Utc>,
    reason: PauseReason,
}

/// What the client knows of one registry.
#[derive(Default)]
struct RegistryState {
    /// The scheme it asked for last, so a look-up can log in before asking.
    challenge: Option<Challenge>,
    /// Bearer tokens by scope (`repository:<name>:pull`).
    tokens: HashMap<String, Token>,
    /// Transient failures in a row; 0 after any answer that is not one.
    failures: u32,
    /// It is not asked again before this.
    paused: Option<Pause>,
    /// http or https, decided once (it may take a DNS look-up).
    plain_http: Option<bool>,
}

/// A registry client. Cheap to clone (everything is shared), `Send + Sync`:
/// build one and hand clones to every stage that needs a digest.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    credentials: Credentials,
    insecure: Insecure,
    backoff: Backoff,
    /// Per registry host as references name it. A std mutex: held to read or
    /// update a few fields, never across an `.await`.
    registries: Mutex<HashMap<String, RegistryState>>,
}

/// One manifest request's coordinates.
struct Target<'a> {
    registry: &'a str,
    repository: &'a str,
    /// The tag, or the digest when the reference has no tag.
    reference: String,
}

impl Target<'_> {
    fn scope(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }
    fn unauthorized(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            reason: reason.into(),
        }
    }
    fn protocol(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            reason: reason.into(),
        }
    }
}

/// What one attempt ended with, before the registry's pause state is updated.
enum Failure {
    /// Final for this request, no effect on the registry's state.
    Permanent(RegistryError),
    /// 429: `Retry-After` when it said.
    RateLimited(Option<Duration>),
    /// No answer or a 5xx.
    Unavailable(String),
}

impl Client {
    /// A client that logs in with `credentials` and speaks plain http to `insecure` registries.
    pub fn new(credentials: Credentials, insecure: Insecure) -> Result<Client, BuildError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError(error_chain(&e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                credentials,
                insecure,
                backoff: REGISTRY_BACKOFF,
                registries: Mutex::default(),
            }),
        })
    }

    /// The credentials this client logs in with.
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
    }

    /// The digest `image`'s tag names now (its digest when it has no tag).
    /// Fails at once, without asking, while the registry is paused by a rate
    /// limit or earlier failures.
    #[instrument(level = "debug", skip(self), fields(image = %image))]
    pub async fn digest(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        let reference = match (image.tag(), image.digest()) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(digest)) => digest.to_string(),
            (None, None) => "latest".to_string(),
        };
        let target = Target {
            registry: image.registry(),
            repository: image.repository(),
            reference,
        };
        if let Some(error) = self.paused(&target) {
            return Err(error);
        }
        let result = self.head_manifest(&target).await;
        self.settle(&target, result)
    }

    /// Like [`Client::digest`], but waits out rate limits and outages (never
    /// asking before the registry's `Retry-After`) for at most `within`.
    pub async fn digest_within(&self, image: &ImageRef, within: Duration) -> Result<Digest, RegistryError> {
        let deadline = Instant::now() + within;
        loop {
            match self.digest(image).await {
                Err(error) if error.is_transient() => match error.retry_at() {
                    Some(at) if at <= deadline => {
                        debug!(error = %error, "Waiting for the registry.");
                        tokio::time::sleep_until(at).await;
                    }
                    _ => return Err(error),
                },
                other => return other,
            }
        }
    }

    /// When `registry` may be asked again, while it is paused.
    pub fn paused_until(&self, registry: &str) -> Option<Instant> {
        let registries = lock(&self.inner.registries);
        let pause = registries.get(registry)?.paused.as_ref()?;
        (pause.until > Instant::now()).then_some(pause.until)
    }

    /// The error for a paused registry, without asking it.
    fn paused(&self, target: &Target<'_>) -> Option<RegistryError> {
        let registries = lock(&self.inner.registries);
        let pause = registries.get(target.registry)?.paused.clone()?;
        if pause.until <= Instant::now() {
            return None;
        }
        Some(self.pause_error(target, &pause))
    }

    fn pause_error(&self, target: &Target<'_>, pause: &Pause) -> RegistryError {
        match &pause.reason {
            PauseReason::RateLimited => RegistryError::RateLimited {
                registry: target.registry.to_string(),
                repository: target.repository.to_string(),
                until: pause.until_wall,
                retry_at: pause.until,
            },
            PauseReason::Unavailable(reason) => RegistryError::Unreachable {
                registry: target.registry.to_string(),
                repository: target.repository.to_string(),
                reason: format!(
                    "{reason}; not asked again before {}",
                    pause.until_wall.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                retry_at: Some(pause.until),
            },
        }
    }

    /// Records how the request went in the registry's state (failures in a
    /// row, pause) and turns it into the caller's answer.
    fn settle(&self, target: &Target<'_>, result: Result<Digest, Failure>) -> Result<Digest, RegistryError> {
        let mut registries = lock(&self.inner.registries);
        let state = registries.entry(target.registry.to_string()).or_default();
        let (wait, reason) = match result {
            Ok(digest) => {
                state.failures = 0;
                state.paused = None;
                return Ok(digest);
            }
            Err(Failure::Permanent(error)) => {
                state.failures = 0;
                return Err(error);
            }
            Err(Failure::RateLimited(retry_after)) => {
                state.failures = state.failures.saturating_add(1);
                // Never before Retry-After; jitter on top, so that many clients
                // told the same second do not all come back at once.
                let jitter = self.inner.backoff.wait(state.failures);
                let wait = match retry_after {
                    Some(after) => after + jitter.min(after / 10 + Duration::from_secs(1)),
                    None => jitter,
                };
                (wait, PauseReason::RateLimited)
            }
            Err(Failure::Unavailable(reason)) => {
                state.failures = state.failures.saturating_add(1);
                (
                    self.inner.backoff.wait(state.failures),
                    PauseReason::Unavailable(reason),
                )
            }
        };
        let pause = Pause {
            until: Instant::now() + wait,
            until_wall: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
            reason,
        };
        warn!(
            registry = target.registry,
            repository = target.repository,
            wait = ?wait,
            failures = state.failures,
            reason = ?pause.reason,
            "Registry paused: it is not asked again before the wait is over."
        );
        let error = self.pause_error(target, &pause);
        state.paused = Some(pause);
        Err(error)
    }

    /// HEADs the manifest, logging in as the registry asks.
    async fn head_manifest(&self, target: &Target<'_>) -> Result<Digest, Failure> {
        let base = self.base_url(target.registry).await;
        let url = format!("{base}/v2/{}/manifests/{}", target.repository, target.reference);
        let (mut authorization, mut fresh) = self.prepared_authorization(target).await?;
        // At most: the first try, then once more after logging in (or with a
        // fresh token, when a cached one was refused).
        for _ in 0..3 {
            let mut request = self
                .inner
                .http
                .head(&url)
                .header(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
            request = match &authorization {
                Some(Authorization::Basic(user, password)) => {
                    request.basic_auth(user, Some(password.expose()))
                }
                Some(Authorization::Bearer(token)) => request.bearer_auth(token.expose()),
                None => request,
            };
            let response = request
                .send()
                .await
                .map_err(|e| Failure::Unavailable(error_chain(&e)))?;
            let status = response.status();
            debug!(%status, registry = target.registry, repository = target.repository, "Manifest HEAD answered.");
            match status {
                s if s.is_success() => {
                    let header = response
                        .headers()
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| {
                            Failure::Permanent(
                                target.protocol("the answer has no Docker-Content-Digest header"),
                            )
                        })?;
                    return Digest::parse(header.trim())
                        .map_err(|e| Failure::Permanent(target.protocol(e.to_string())));
                }
                StatusCode::UNAUTHORIZED => {
                    if fresh {
                        return Err(Failure::Permanent(self.refusal(target, &authorization).await));
                    }
                    let challenge = Challenge::from_headers(response.headers()).ok_or_else(|| {
                        Failure::Permanent(target.protocol("401 without a WWW-Authenticate challenge"))
                    })?;
                    self.state(target.registry, |s| {
                        s.challenge = Some(challenge.clone());
                        s.tokens.remove(&target.scope());
                    });
                    authorization = Some(self.authorize(target, &challenge).await?);
                    fresh = true;
                }
                StatusCode::FORBIDDEN => {
                    return Err(Failure::Permanent(target.unauthorized("access denied (403)")));
                }
                StatusCode::NOT_FOUND => {
                    return Err(Failure::Permanent(RegistryError::NotFound {
                        registry: target.registry.to_string(),
                        repository: target.repository.to_string(),
                        reference: target.reference.clone(),
                    }));
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    return Err(Failure::RateLimited(retry_after(response.headers(), Utc::now())));
                }
                s if s.is_server_error() => return Err(Failure::Unavailable(format!("answered {s}"))),
                s => return Err(Failure::Permanent(target.protocol(format!("answered {s}")))),
            }
        }
        Err(Failure::Permanent(
            target.protocol("too many authentication rounds"),
        ))
    }

    /// What to send with the first try: a cached token, Basic credentials
    /// for a registry known to want them, or a token fetched now for a
    /// registry known to want one. The flag says whether it is fresh (a 401
    /// with it is then final).
    async fn prepared_authorization(
        &self,
        target: &Target<'_>,
    ) -> Result<(Option<Authorization>, bool), Failure> {
        let scope = target.scope();
        let (challenge, token) = {
            let registries = lock(&self.inner.registries);
            match registries.get(target.registry) {
                Some(state) => (
                    state.challenge.clone(),
                    state.tokens.get(&scope).filter(|t| t.usable()).cloned(),
                ),
                None => (None, None),
            }
        };
        if let Some(token) = token {
            return Ok((Some(Authorization::Bearer(token.value)), false));
        }
        let Some(challenge) = challenge else {
            return Ok((None, false));
        };
        match self.authorize(target, &challenge).await {
            Ok(authorization) => Ok((Some(authorization), true)),
            // No credentials (yet): ask anyway; the registry's answer is the one reported.
            Err(Failure::Permanent(_)) => Ok((None, false)),
            Err(other) => Err(other),
        }
    }

    /// Answers `challenge` for `target`: Basic credentials, or a token.
    async fn authorize(&self, target: &Target<'_>, challenge: &Challenge) -> Result<Authorization, Failure> {
        let (auth, lookup_problem) = self.lookup(target.registry).await;
        match challenge {
            Challenge::Basic => match auth.as_ref().and_then(RegistryAuth::basic) {
                Some((user, password)) => Ok(Authorization::Basic(
                    user.to_string(),
                    Secret::new(password.to_string()),
                )),
                None => Err(Failure::Permanent(
                    target.unauthorized(self.no_credentials(lookup_problem)),
                )),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let wanted = target.scope();
                // The challenge's own scope when it is for this repository (a registry may spell it its way).
                let scope = scope
                    .as_deref()
                    .filter(|s| s.contains(target.repository))
                    .unwrap_or(&wanted);
                match fetch_token(&self.inner.http, realm, service.as_deref(), scope, auth.as_ref()).await {
                    Ok(token) => {
                        let value = token.value.clone();
                        self.state(target.registry, |s| {
                            s.tokens.retain(|_, t| t.usable());
                            s.tokens.insert(wanted.clone(), token);
                        });
                        Ok(Authorization::Bearer(value))
                    }
                    Err(TokenError::Refused(status)) => {
                        Err(Failure::Permanent(target.unauthorized(match &auth {
                            Some(auth) => format!(
                                "the token service refused the credentials of {} ({status})",
                                auth.describe()
                            ),
                            None => format!(
                                "the token service refused anonymous access ({status}); {}",
                                self.no_credentials(lookup_problem)
                            ),
                        })))
                    }
                    Err(TokenError::RateLimited(after)) => Err(Failure::RateLimited(after)),
                    Err(TokenError::Unavailable(reason)) => Err(Failure::Unavailable(reason)),
                    Err(TokenError::Protocol(reason)) => Err(Failure::Permanent(target.protocol(reason))),
                }
            }
        }
    }

    /// The reason for a 401 that came with freshly obtained credentials.
    async fn refusal(&self, target: &Target<'_>, sent: &Option<Authorization>) -> RegistryError {
        let (auth, problem) = self.lookup(target.registry).await;
        match (sent, auth) {
            (Some(Authorization::Basic(user, _)), _) => {
                target.unauthorized(format!("the registry refused the credentials of user {user}"))
            }
            (_, Some(auth)) => target.unauthorized(format!("{} may not pull it", auth.describe())),
            (_, None) => target.unauthorized(self.no_credentials(problem)),
        }
    }

    /// "No credentials" in the operator's terms: where hoist looked.
    fn no_credentials(&self, problem: Option<CredentialsError>) -> String {
        match (problem, self.inner.credentials.path()) {
            (Some(problem), _) => {
                format!("it wants a login, and hoist has no credentials for it ({problem})")
            }
            (None, Some(path)) => format!(
                "it wants a login, and the docker config {} has no credentials for it",
                path.display()
            ),
            (None, None) => {
                "it wants a login, and no docker config file is set (HOIST_DOCKER_CONFIG)".to_string()
            }
        }
    }

    /// The credentials for `registry`, and the problem that kept them from being read.
    async fn lookup(&self, registry: &str) -> (Option<RegistryAuth>, Option<CredentialsError>) {
        match self.inner.credentials.lookup(registry).await {
            Ok(auth) => (auth, None),
            Err(e) => {
                warn!(registry, error = %e, "Asking the registry without credentials.");
                (None, Some(e))
            }
        }
    }

    /// `http://host` or `https://host` (Docker Hub's API host for `docker.io`).
    async fn base_url(&self, registry: &str) -> String {
        if registry == "docker.io" {
            return format!("https://{DOCKER_HUB_API}");
        }
        let known = lock(&self.inner.registries)
            .get(registry)
            .and_then(|s| s.plain_http);
        let plain = match known {
            Some(plain) => plain,
            None => {
                let plain = self.insecure(registry).await;
                self.state(registry, |s| s.plain_http = Some(plain));
                plain
            }
        };
        format!("{}://{registry}", if plain { "http" } else { "https" })
    }

    /// Insecure by name, or by an address the name resolves to (as the engine decides).
    async fn insecure(&self, registry: &str) -> bool {
        if self.inner.insecure.by_name(registry) {
            return true;
        }
        let host = host_part(registry).to_string();
        let lookup = tokio::net::lookup_host((host, 443));
        match tokio::time::timeout(Duration::from_secs(2), lookup).await {
            Ok(Ok(mut addresses)) => addresses.any(|a| self.inner.insecure.contains(a.ip())),
            _ => false,
        }
    }

    fn state<T>(&self, registry: &str, change: impl FnOnce(&mut RegistryState) -> T) -> T {
        change(
            lock(&self.inner.registries)
                .entry(registry.to_string())
                .or_default(),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_as_the_engine_decides() {
        let engine_default = Insecure::default();
        for insecure in [
            "127.0.0.1:5000",
            "127.9.9.9",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
        ] {
            assert!(engine_default.by_name(insecure), "{insecure}");
        }
        for secure in [
            "registry.example.com",
            "10.0.0.5:5000",
            "ghcr.io",
            "docker.io",
            "[::2]:5000",
        ] {
            assert!(!engine_default.by_name(secure), "{secure}");
        }
        let configured = Insecure::new(
            [
                "10.0.0.0/8".to_string(),
                "fd00::/8".to_string(),
                "not a cidr".to_string(),
            ],
            ["myregistry:5000".to_string(), "plain.example".to_string()],
        );
        assert!(configured.by_name("10.1.2.3:5000"));
        assert!(configured.by_name("[fd00::1]:5000"));
        assert!(configured.by_name("myregistry:5000"));
        assert!(configured.by_name("plain.example:443"));
        assert!(!configured.by_name("myregistry:6000"));
        assert!(!configured.by_name("11.0.0.1"));
    }

    #[test]
    fn errors_say_registry_repository_and_reason() {
        let error = RegistryError::RateLimited {
            registry: "ghcr.io".into(),
            repository: "org/app".into(),
            until: DateTime::parse_from_rfc3339("2030-01-02T03:04:05.678Z")
                .unwrap()
                .with_timezone(&Utc),
            retry_at: Instant::now(),
        };
        assert_eq!(
            error.to_string(),
            "registry ghcr.io is rate-limiting requests (asked for org/app); not asked again before 2030-01-02T03:04:05Z"
        );
        assert!(error.is_transient());
        assert_eq!(error.kind(), "rate_limited");
    }
}
