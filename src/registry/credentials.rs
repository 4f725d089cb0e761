//! Registry credentials, found as the docker CLI finds them.
//!
//! One docker config file serves pulls, digest look-ups and service updates:
//! `HOIST_DOCKER_CONFIG`, else `$DOCKER_CONFIG/config.json`, else
//! `$HOME/.docker/config.json` (the path is decided in `config`). For a
//! registry host it holds, in the CLI's order:
//!
//! 1. a credential helper named in `credHelpers` for that host, else the one
//!    in `credsStore`: hoist runs `docker-credential-<name> get` with the
//!    server on stdin and reads `{"Username", "Secret"}` from stdout, as the
//!    CLI does. A helper that is not on `PATH` (the FROM-scratch image has
//!    none) or that knows nothing of the host falls through to:
//! 2. a static `auths` entry (`auth` = base64 of `user:password`, or
//!    `username`/`password`, or `identitytoken`).
//!
//! Keys are matched by host the way the CLI writes them: `host[:port]`,
//! `https://host`, `https://host/v1/`, and `https://index.docker.io/v1/` for
//! Docker Hub. Names that `HOIST_REGISTRY_ALIASES` makes one registry share
//! credentials; an exact name wins over an alias.
//!
//! The file is read again whenever its size, mtime or inode change (checked
//! at each look-up: one `stat`), so a `docker login` made after hoist started
//! is used without a restart.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tracing::{debug, instrument};

use crate::event::Aliases;
use crate::secret::Secret;

/// The name the CLI stores Docker Hub's credentials under (and hands to helpers).
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// The most time a credential helper gets to answer.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Words of an engine's pull error that mean the registry wanted (other) credentials.
const REFUSAL_WORDS: &[&str] = &[
    "no basic auth credentials",
    "unauthorized",
    "authentication required",
    "access to the resource is denied",
    "access denied",
    "incorrect username or password",
];
/// The user name a helper returns for an identity (refresh) token.
const HELPER_TOKEN_USER: &str = "<token>";

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

impl RegistryAuth {
    /// Who these credentials log in as, for messages (never the secret).
    pub fn describe(&self) -> String {
        match (&self.username, &self.identity_token) {
            (Some(user), _) if user != HELPER_TOKEN_USER => format!("user {user}"),
            (_, Some(_)) => "an identity token".to_string(),
            _ => "credentials without a user name".to_string(),
        }
    }

    /// `user:password`, when these are a user and a password.
    pub(crate) fn basic(&self) -> Option<(&str, &str)> {
        let user = self.username.as_deref()?;
        let password = self.password.as_ref()?.expose();
        Some((user, password.as_str()))
    }
}

#[derive(Deserialize, Default, Debug)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize, Default, Debug)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Why no credentials could be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("{path} is not a docker config file: {message}")]
    Malformed { path: String, message: String },
    /// The config keeps this registry's credentials in a helper that is not on `PATH`.
    #[error(
        "credentials for {registry} are kept by docker-credential-{helper}, which is not on PATH \
         (mount a config file with static auths instead)"
    )]
    HelperMissing { registry: String, helper: String },
    /// The helper ran and failed.
    #[error("docker-credential-{helper} failed for {registry}: {message}")]
    HelperFailed {
        registry: String,
        helper: String,
        message: String,
    },
}

/// The docker config file, read again when it changes. Cheap to clone; shared by
/// pulls, the registry client and service updates.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: no file configured (no `HOME` either); no credentials at all.
    path: Option<PathBuf>,
    aliases: Aliases,
    /// Where helpers are looked for; `None` is the process's `PATH`.
    helper_path: Option<OsString>,
    /// The file as last read, with the stamp it had then. A std mutex: held
    /// only to compare and swap, never across an `.await`.
    cached: Mutex<Option<(Stamp, Arc<ConfigFile>)>>,
}

/// What tells a changed file from the one read before.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stamp {
    Missing,
    Present {
        len: u64,
        modified_ns: i128,
        changed_ns: i128,
        inode: u64,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Two stores are the same when they read the same file the same way.
impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.inner.path == other.inner.path
            && self.inner.aliases == other.inner.aliases
            && self.inner.helper_path == other.inner.helper_path
    }
}

impl Eq for Credentials {}

impl Default for Credentials {
    /// No config file: every look-up finds nothing.
    fn default() -> Self {
        Credentials::new(None, Aliases::default())
    }
}

impl Credentials {
    /// Credentials from the docker config file at `path` (which need not exist yet).
    pub fn new(path: Option<PathBuf>, aliases: Aliases) -> Credentials {
        Credentials {
            inner: Arc::new(Inner {
                path,
                aliases,
                helper_path: None,
                cached: Mutex::new(None),
            }),
        }
    }

    /// Looks for credential helpers in `path` (a `PATH`-style list) instead of the process's `PATH`.
    pub fn with_helper_path(self, path: impl Into<OsString>) -> Credentials {
        Credentials {
            inner: Arc::new(Inner {
                path: self.inner.path.clone(),
                aliases: self.inner.aliases.clone(),
                helper_path: Some(path.into()),
                cached: Mutex::new(None),
            }),
        }
    }

    /// The config file read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The credentials for `registry` (a host as in image references:
    /// `docker.io`, `registry.example.com:5000`); `None` when there are none.
    #[instrument(level = "debug", skip(self))]
    pub async fn lookup(&self, registry: &str) -> Result<Option<RegistryAuth>, CredentialsError> {
        let Some(config) = self.current()? else {
            return Ok(None);
        };
        let wanted = self
            .inner
            .aliases
            .canonical(&normalise_host(registry))
            .to_string();
        let mut helper_error = None;
        let helper = best_match(config.cred_helpers.keys(), registry, &wanted, &self.inner.aliases)
            .map(|key| (server_name(&host_of(key)), config.cred_helpers[key].clone()))
            .or_else(|| {
                config
                    .creds_store
                    .clone()
                    .filter(|store| !store.is_empty())
                    .map(|store| (server_name(&normalise_host(registry)), store))
            });
        if let Some((server, helper)) = helper {
            match self.run_helper(&helper, &server).await {
                Ok(Some(auth)) => return Ok(Some(auth)),
                Ok(None) => debug!(
                    helper,
                    server, "The credential helper knows nothing of this registry."
                ),
                Err(e) => {
                    debug!(error = %e, "The credential helper gave nothing; trying the static auths.");
                    helper_error = Some(e);
                }
            }
        }
        let found = best_match(config.auths.keys(), registry, &wanted, &self.inner.aliases);
        if let Some(server) = found {
            let shown = self.shown_path();
            if let Some(auth) = static_auth(&shown, server, &config.auths[server])? {
                return Ok(Some(auth));
            }
        }
        match helper_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// A pull's failure in the operator's terms, when the engine's `message`
    /// says the registry refused it for want of (valid) credentials: which
    /// registry, which repository, which credentials (never the secret).
    /// `None` when the failure is about something else.
    pub fn explain_refusal(
        &self,
        message: &str,
        registry: &str,
        repository: &str,
        used: Option<&RegistryAuth>,
        problem: Option<&CredentialsError>,
    ) -> Option<String> {
        let lower = message.to_ascii_lowercase();
        if !REFUSAL_WORDS.iter().any(|w| lower.contains(w)) {
            return None;
        }
        let source = match self.inner.path.as_deref() {
            Some(path) => format!("the docker config {}", path.display()),
            None => "no docker config file (HOIST_DOCKER_CONFIG)".to_string(),
        };
        Some(match (used, problem) {
            (Some(auth), _) => format!(
                "registry {registry} refused the credentials of {} for {repository} (from {source}); nothing was changed. The engine said: {message}",
                auth.describe()
            ),
            (None, Some(problem)) => format!(
                "registry {registry} wants a login to pull {repository}, and hoist could not read credentials for it: {problem}; nothing was changed. The engine said: {message}"
            ),
            (None, None) => format!(
                "registry {registry} wants a login to pull {repository}, and {source} has no credentials for it (docker login, then hoist reads the file again); nothing was changed. The engine said: {message}"
            ),
        })
    }

    fn shown_path(&self) -> String {
        self.inner
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// The parsed file, read again if it changed since the last look-up.
    fn current(&self) -> Result<Option<Arc<ConfigFile>>, CredentialsError> {
        let Some(path) = self.inner.path.as_deref() else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let stamp = match std::fs::metadata(path) {
            Ok(meta) => Stamp::Present {
                len: meta.len(),
                modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                changed_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                inode: meta.ino(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stamp::Missing,
            Err(e) => {
                return Err(CredentialsError::Unreadable {
                    path: shown,
                    message: e.to_string(),
                })
            }
        };
        {
            let cached = lock(&self.inner.cached);
            if let Some((known, config)) = cached.as_ref() {
                if *known == stamp {
                    return Ok(Some(config.clone()));
                }
            }
        }
        let config = match stamp {
            Stamp::Missing => ConfigFile::default(),
            Stamp::Present { .. } => {
                let text = std::fs::read(path).map_err(|e| CredentialsError::Unreadable {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
                serde_json::from_slice(&text).map_err(|e| CredentialsError::Malformed {
                    path: shown.clone(),
                    message: e.to_string(),
                })?
            }
        };
        debug!(path = %shown, present = stamp != Stamp::Missing, "Docker config file read.");
        let config = Arc::new(config);
        *lock(&self.inner.cached) = Some((stamp, config.clone()));
        Ok(Some(config))
    }

    /// Runs `docker-credential-<helper> get` for `server`; `Ok(None)` when it has nothing for it.
    async fn run_helper(&self, helper: &str, server: &str) -> Result<Option<RegistryAuth>, CredentialsError> {
        let program = format!("docker-credential-{helper}");
        let search = self
            .inner
            .helper_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        let Some(executable) = find_on_path(&program, &search) else {
            return Err(CredentialsError::HelperMissing {
                registry: server.to_string(),
                helper: helper.to_string(),
            });
        };
        let failed = |message: String| CredentialsError::HelperFailed {
            registry: server.to_string(),
            helper: helper.to_string(),
            message,
        };
        let mut child = tokio::process::Command::new(&executable)
            .arg("get")
            .env("PATH", &search)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", executable.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its stdin is not an error here.
            stdin.write_all(server.as_bytes()).await.ok();
        }
        let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| failed(format!("no answer within {HELPER_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            // The helpers' protocol: "credentials not found in native keychain" on stdout.
            if stdout.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = if stderr.trim().is_empty() { stdout } else { stderr };
            return Err(failed(format!("{}: {}", output.status, first_line(&said))));
        }
        #[derive(Deserialize)]
        struct HelperAnswer {
            #[serde(rename = "ServerURL", default)]
            server_url: String,
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
            .map_err(|e| failed(format!("answer is not the helpers' JSON: {e}")))?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        let server = if answer.server_url.is_empty() {
            server.to_string()
        } else {
            answer.server_url
        };
        Ok(Some(if answer.username == HELPER_TOKEN_USER {
            RegistryAuth {
                server,
                username: None,
                password: None,
                identity_token: Some(Secret::new(answer.secret)),
            }
        } else {
            RegistryAuth {
                server,
                username: Some(answer.username),
                password: Some(Secret::new(answer.secret)),
                identity_token: None,
            }
        }))
    }
}

/// The key among `keys` that names `registry`: the same host first, then the
/// canonical name the aliases give it (`wanted`), then any other alias of it.
fn best_match<'a>(
    keys: impl Iterator<Item = &'a String>,
    registry: &str,
    wanted: &str,
    aliases: &Aliases,
) -> Option<&'a String> {
    let registry = normalise_host(registry);
    let rank = |key: &String| {
        let host = host_of(key);
        if host == registry {
            Some(0)
        } else if host == wanted {
            Some(1)
        } else if aliases.canonical(&host) == wanted {
            Some(2)
        } else {
            None
        }
    };
    // Several spellings of one host (`host`, `https://host/v1/`): the same pick every time.
    keys.filter_map(|key| Some((rank(key)?, key)))
        .min()
        .map(|(_, key)| key)
}

/// Reads one static `auths` entry; `None` when it holds no credentials (a
/// marker the CLI leaves beside `credsStore`).
fn static_auth(
    path: &str,
    server: &str,
    entry: &AuthEntry,
) -> Result<Option<RegistryAuth>, CredentialsError> {
    let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.trim().is_empty()) {
        let malformed = || CredentialsError::Malformed {
            path: path.to_string(),
            message: format!("the auth of {server} is not base64 of user:password"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(malformed)?;
        let (user, pass) = decoded.split_once(':').ok_or_else(malformed)?;
        username = Some(user.to_string());
        password = Some(pass.to_string());
    }
    let identity_token = entry.identitytoken.clone().filter(|t| !t.is_empty());
    if username.as_deref().is_some_and(|u| !u.is_empty()) || identity_token.is_some() {
        return Ok(Some(RegistryAuth {
            server: server.to_string(),
            username: username.filter(|u| !u.is_empty()),
            password: password.map(Secret::new),
            identity_token: identity_token.map(Secret::new),
        }));
    }
    Ok(None)
}

/// What the CLI hands a helper for a host: Docker Hub's legacy URL, else `host[:port]`.
fn server_name(host: &str) -> String {
    if host == "docker.io" {
        DOCKER_HUB_SERVER.to_string()
    } else {
        host.to_string()
    }
}

/// The host of a config key: `https://host/v1/` → `host`, Docker Hub's names → `docker.io`.
fn host_of(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    normalise_host(without_scheme.split('/').next().unwrap_or_default())
}

/// Lower case, and every name of Docker Hub as `docker.io` (as references have it).
fn normalise_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        _ => host,
    }
}

fn find_on_path(program: &str, search: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(search)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    line.chars().take(200).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir, text: &str) -> Credentials {
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        Credentials::new(Some(path), Aliases::default())
    }

    #[tokio::test]
    async fn static_auths_are_found_under_every_name_the_cli_writes() {
        let dir = tempfile::tempdir().unwrap();
        // "u:abc>>>def" and a password with '+', '/' and '=' (as `docker login` writes them).
        let plus_slash = base64::engine::general_purpose::STANDARD.encode("alice:p+a/ss=w0rd");
        let credentials = store(
            &dir,
            &format!(
                r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "aHViOnNlY3JldA=="}},
                "registry.example.com:5000": {{"username": "u", "password": "abc>>>def"}},
                "https://ghcr.io": {{"identitytoken": "tok"}},
                "127.0.0.1:5917": {{"auth": "{plus_slash}"}},
                "quay.io": {{}}
            }}}}"#
            ),
        );
        let hub = credentials.lookup("docker.io").await.unwrap().unwrap();
        assert_eq!(hub.username.as_deref(), Some("hub"));
        assert_eq!(hub.password.as_ref().map(|p| p.expose().as_str()), Some("secret"));
        assert_eq!(hub.server, DOCKER_HUB_SERVER);
        let private = credentials
            .lookup("registry.example.com:5000")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(private.password.unwrap().expose(), "abc>>>def");
        let ghcr = credentials.lookup("ghcr.io").await.unwrap().unwrap();
        assert_eq!(ghcr.describe(), "an identity token");
        assert_eq!(ghcr.identity_token.unwrap().expose(), "tok");
        let loopback = credentials.lookup("127.0.0.1:5917").await.unwrap().unwrap();
        assert_eq!(loopback.basic(), Some(("alice", "p+a/ss=w0rd")));
        assert_eq!(loopback.describe(), "user alice");
        // An empty entry (what the CLI leaves beside a credsStore) is no credentials.
        assert_eq!(credentials.lookup("quay.io").await.unwrap(), None);
        assert_eq!(credentials.lookup("gcr.io").await.unwrap(), None);
    }

    #[tokio::test]
    async fn aliases_share_credentials_and_an_exact_name_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {
                "registry.example.test": {"username": "public", "password": "a"},
                "127.0.0.1:5000": {"username": "loopback", "password": "b"}
            }}"#,
        )
        .unwrap();
        let aliases =
            Aliases::parse("registry.example.test=127.0.0.1:5000,registry.example.test=10.0.0.1:5000")
                .unwrap();
        let credentials = Credentials::new(Some(path), aliases);
        let user = |auth: Option<RegistryAuth>| auth.and_then(|a| a.username);
        assert_eq!(
            user(credentials.lookup("127.0.0.1:5000").await.unwrap()).as_deref(),
            Some("loopback")
        );
        assert_eq!(
            user(credentials.lookup("10.0.0.1:5000").await.unwrap()).as_deref(),
            Some("public")
        );
        assert_eq!(
            user(credentials.lookup("registry.example.test").await.unwrap()).as_deref(),
            Some("public")
        );
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_missing_one_is_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let credentials = Credentials::new(Some(path.clone()), Aliases::default());
        assert_eq!(credentials.lookup("127.0.0.1:5000").await.unwrap(), None);
        // Written the way `docker login` writes it: a new file renamed into place.
        let write = |user: &str| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
            let temp = dir.path().join("config.json.tmp");
            std::fs::write(
                &temp,
                format!(r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#),
            )
            .unwrap();
            std::fs::rename(&temp, &path).unwrap();
        };
        write("first");
        let found = credentials.lookup("127.0.0.1:5000").await.unwrap().unwrap();
        assert_eq!(found.username.as_deref(), Some("first"));
        write("other");
        let found = credentials.lookup("127.0.0.1:5000").await.unwrap().unwrap();
        assert_eq!(found.username.as_deref(), Some("other"));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            credentials.lookup("127.0.0.1:5000").await,
            Err(CredentialsError::Malformed { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(credentials.lookup("127.0.0.1:5000").await.unwrap(), None);
        assert_eq!(Credentials::default().lookup("docker.io").await.unwrap(), None);
    }

    /// A `docker-credential-test` script on a PATH of its own: it records what
    /// it was asked on stdin and answers as real helpers do.
    fn helper(dir: &Path) -> OsString {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = bin.join("docker-credential-test");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 [ \"$1\" = get ] || exit 2\n\
                 read -r server\n\
                 echo \"$server\" >> {asked}\n\
                 case \"$server\" in\n\
                 127.0.0.1:5000) echo '{{\"ServerURL\":\"127.0.0.1:5000\",\"Username\":\"helper-user\",\"Secret\":\"s3cr+t/=\"}}' ;;\n\
                 https://index.docker.io/v1/) echo '{{\"ServerURL\":\"https://index.docker.io/v1/\",\"Username\":\"<token>\",\"Secret\":\"refresh\"}}' ;;\n\
                 broken.example) echo 'the keychain is locked' >&2; exit 1 ;;\n\
                 *) echo 'credentials not found in native keychain'; exit 1 ;;\n\
                 esac\n",
                asked = dir.join("asked").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The helper runs with this PATH too, so it must find `sh`'s tools.
        std::env::join_paths([bin, PathBuf::from("/usr/bin"), PathBuf::from("/bin")]).unwrap()
    }

    #[tokio::test]
    async fn credential_helpers_run_as_the_cli_runs_them() {
        let dir = tempfile::tempdir().unwrap();
        let search = helper(dir.path());
        let credentials = store(
            &dir,
            r#"{"auths": {"quay.io": {"username": "static", "password": "p"}},
                "credHelpers": {"broken.example": "test", "quay.io": "test"},
                "credsStore": "test"}"#,
        )
        .with_helper_path(search);
        let found = credentials.lookup("127.0.0.1:5000").await.unwrap().unwrap();
        assert_eq!(found.basic(), Some(("helper-user", "s3cr+t/=")));
        let hub = credentials.lookup("docker.io").await.unwrap().unwrap();
        assert_eq!(hub.identity_token.unwrap().expose(), "refresh");
        assert_eq!(hub.username, None);
        // The helper has nothing for quay.io: the static entry is used.
        let quay = credentials.lookup("quay.io").await.unwrap().unwrap();
        assert_eq!(quay.username.as_deref(), Some("static"));
        // Nothing anywhere: no credentials, not an error.
        assert_eq!(credentials.lookup("ghcr.io").await.unwrap(), None);
        let broken = credentials.lookup("broken.example").await.unwrap_err();
        assert!(broken.to_string().contains("the keychain is locked"), "{broken}");
        let asked = std::fs::read_to_string(dir.path().join("asked")).unwrap();
        assert_eq!(
            asked.lines().collect::<Vec<_>>(),
            vec![
                "127.0.0.1:5000",
                DOCKER_HUB_SERVER,
                "quay.io",
                "ghcr.io",
                "broken.example"
            ]
        );
    }

    #[tokio::test]
    async fn a_helper_that_is_not_on_path_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = store(
            &dir,
            r#"{"auths": {}, "credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}"#,
        )
        .with_helper_path(dir.path().join("empty"));
        let error = credentials
            .lookup("123.dkr.ecr.eu-west-1.amazonaws.com")
            .await
            .unwrap_err();
        assert!(matches!(error, CredentialsError::HelperMissing { ref helper, .. } if helper == "ecr-login"));
        assert!(error.to_string().contains("docker-credential-ecr-login"));
        assert_eq!(credentials.lookup("quay.io").await, Ok(None));
    }
}
