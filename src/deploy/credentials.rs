//! Registry credentials handed to Swarm with a service update, so that the
//! workers can pull a private image.
//!
//! They come from a docker CLI config file (`HOIST_DOCKER_CONFIG`, else
//! `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`): its static
//! `auths` entries (`auth`, `username`/`password`, `identitytoken`), found
//! under the names the CLI uses (`host`, `https://host`, `https://host/v1/`,
//! Docker Hub's `https://index.docker.io/v1/`). Credential helpers
//! (`credsStore`, `credHelpers`) are not run. Without credentials hoist sends
//! none, and Swarm keeps those stored with the service (from
//! `docker stack deploy --with-registry-auth`).

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::secret::Secret;

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry as the config names it (`serveraddress`).
    pub server: String,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// An OAuth refresh token from `docker login` (instead of a password).
    pub identity_token: Option<Secret<String>>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Why no credentials could be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("{path} is not a docker config file: {message}")]
    Malformed { path: String, message: String },
    /// The config keeps this registry's credentials in a helper program.
    #[error(
        "credentials for {registry} are kept by the credential helper {helper:?}, which hoist does not run"
    )]
    Helper { registry: String, helper: String },
}

/// The credentials `path` holds for `registry` (a host as in image
/// references: `docker.io`, `registry.example.com:5000`); `None` when it has none.
pub fn lookup(path: &Path, registry: &str) -> Result<Option<RegistryAuth>, CredentialsError> {
    let shown = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                path: shown,
                message: e.to_string(),
            })
        }
    };
    let config: ConfigFile = serde_json::from_slice(&text).map_err(|e| CredentialsError::Malformed {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let found = config
        .auths
        .iter()
        .find(|(key, _)| host_of(key) == canonical(registry))
        .map(|(key, entry)| (key.clone(), entry));
    if let Some((server, entry)) = found {
        let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| CredentialsError::Malformed {
                    path: shown.clone(),
                    message: format!("the auth of {server} is not base64 of user:password"),
                })?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| CredentialsError::Malformed {
                    path: shown.clone(),
                    message: format!("the auth of {server} is not base64 of user:password"),
                })?;
            username = Some(user.to_string());
            password = Some(pass.to_string());
        }
        let identity_token = entry.identitytoken.clone().filter(|t| !t.is_empty());
        if username.is_some() || identity_token.is_some() {
            return Ok(Some(RegistryAuth {
                server,
                username,
                password: password.map(Secret::new),
                identity_token: identity_token.map(Secret::new),
            }));
        }
    }
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| host_of(key) == canonical(registry))
        .map(|(_, helper)| helper.clone())
        .or(config.creds_store);
    match helper {
        Some(helper) => Err(CredentialsError::Helper {
            registry: registry.to_string(),
            helper,
        }),
        None => Ok(None),
    }
}

/// The host of a config key: `https://host/v1/` → `host`, Docker Hub's names → `docker.io`.
fn host_of(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    canonical(without_scheme.split('/').next().unwrap_or_default())
}

fn canonical(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn static_auths_are_found_under_every_name_the_cli_writes() {
        // "user:abc>>>def" — a password whose base64 holds '+' or '/'.
        let file = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "registry.example.com:5000": {"username": "u", "password": "abc>>>def"},
                "https://ghcr.io": {"identitytoken": "tok"}
            }}"#,
        );
        let hub = lookup(file.path(), "docker.io").unwrap().unwrap();
        assert_eq!(hub.username.as_deref(), Some("hub"));
        assert_eq!(hub.password.as_ref().map(|p| p.expose().as_str()), Some("secret"));
        assert_eq!(hub.server, "https://index.docker.io/v1/");
        let private = lookup(file.path(), "registry.example.com:5000").unwrap().unwrap();
        assert_eq!(private.password.unwrap().expose(), "abc>>>def");
        let ghcr = lookup(file.path(), "ghcr.io").unwrap().unwrap();
        assert_eq!(ghcr.identity_token.unwrap().expose(), "tok");
        assert_eq!(lookup(file.path(), "quay.io").unwrap(), None);
    }

    #[test]
    fn helpers_and_missing_files_are_told_apart() {
        let file =
            config(r#"{"auths": {}, "credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}"#);
        assert!(matches!(
            lookup(file.path(), "123.dkr.ecr.eu-west-1.amazonaws.com"),
            Err(CredentialsError::Helper { .. })
        ));
        assert_eq!(lookup(file.path(), "quay.io"), Ok(None));
        assert_eq!(lookup(Path::new("/nonexistent/config.json"), "quay.io"), Ok(None));
        let bad = config("not json");
        assert!(matches!(
            lookup(bad.path(), "quay.io"),
            Err(CredentialsError::Malformed { .. })
        ));
    }
}
