//! Plain JSON over HTTP to the same engine, for what bollard's models cannot say.
//!
//! bollard's models follow API 1.53. An engine older than API 1.44 (Docker
//! 20.10 speaks 1.41) keeps a MAC address the user chose only in
//! `Config.MacAddress`, a field those models no longer have: an inspect read
//! through them loses it, and a create sent through them cannot set it. The
//! inspect of a container about to be recreated, and a create that must set
//! such a field, go through here instead, on the socket bollard uses.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::EngineError;

/// The engine's socket or address, and a client for it.
#[derive(Clone, Debug)]
pub(super) struct RawApi {
    http: reqwest::Client,
    /// `http://engine` over a unix socket, `http://host:port` over TCP.
    base: String,
}

impl RawApi {
    /// For `docker_host` as bollard reads it (`unix://`, `tcp://`, `http://`, or
    /// unset for the local socket); `None` for a host reached otherwise
    /// (TLS, SSH), where only bollard's own calls are made.
    /// Each call gets `call_limit` in all (`HOIST_ENGINE_TIMEOUT`).
    pub(super) fn new(docker_host: Option<&str>, call_limit: Duration) -> Option<RawApi> {
        // reqwest is built without a default TLS provider; hoist uses ring.
        rustls::crypto::ring::default_provider().install_default().ok();
        let builder = reqwest::Client::builder().timeout(call_limit);
        let (builder, base) = match docker_host {
            None => (builder.unix_socket(local_socket()), "http://engine".to_string()),
            Some(host) if host.starts_with("unix://") => (
                builder.unix_socket(PathBuf::from(host.trim_start_matches("unix://"))),
                "http://engine".to_string(),
            ),
            Some(host) if host.starts_with("tcp://") || host.starts_with("http://") => {
                if std::env::var_os("DOCKER_TLS_VERIFY").is_some() {
                    return None;
                }
                let address = host.split_once("://").map_or(host, |(_, rest)| rest);
                (builder, format!("http://{}", address.trim_end_matches('/')))
            }
            Some(_) => return None,
        };
        builder.build().ok().map(|http| RawApi { http, base })
    }

    /// `GET /containers/{id}/json`: the inspect as the engine wrote it.
    pub(super) async fn inspect_container(&self, version: &str, id: &str) -> Result<Value, EngineError> {
        let url = format!("{}/v{version}/containers/{id}/json", self.base);
        let action = format!("container {id}");
        let response = self.http.get(url).send().await;
        read(action, response).await
    }

    /// `POST /containers/create?name=`: returns the new container's ID.
    pub(super) async fn create_container(
        &self,
        version: &str,
        name: &str,
        body: &Value,
    ) -> Result<String, EngineError> {
        let action = format!("create {name}");
        let mut url = url::Url::parse(&format!("{}/v{version}/containers/create", self.base))
            .map_err(|e| EngineError::Unreachable(format!("{action}: {e}")))?;
        url.query_pairs_mut().append_pair("name", name);
        let response = self.http.post(url).json(body).send().await;
        let created = read(action.clone(), response).await?;
        created["Id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| EngineError::Refused {
                action,
                status: 200,
                message: "the engine answered without the new container's ID".into(),
            })
    }
}

/// bollard's local default: `DOCKER_HOST` when it names a unix socket, else the usual path.
fn local_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// The JSON of a 2xx answer; otherwise the error, sorted as bollard's are.
async fn read(action: String, response: reqwest::Result<reqwest::Response>) -> Result<Value, EngineError> {
    // A call that ran out of time is a stalled engine, as with bollard's calls.
    let unanswered = |e: reqwest::Error, what: &str| {
        if e.is_timeout() {
            EngineError::TimedOut(action.clone())
        } else {
            EngineError::Unreachable(format!("{action}: {what}{e}"))
        }
    };
    let response = response.map_err(|e| unanswered(e, ""))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| unanswered(e, "unreadable answer: "))?;
    if status.is_success() {
        return Ok(body);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(EngineError::NotFound { what: action });
    }
    Err(EngineError::Refused {
        action,
        status: status.as_u16(),
        message: body["message"].as_str().unwrap_or_default().to_string(),
    })
}
