//! The rebuild hook: the request that asks CI to rebuild an image whose base moved.
//!
//! hoist's own body is JSON `{"image", "targets", "base", "old_base_digest",
//! "new_base_digest"}`. Receivers that want another shape get one of a small
//! fixed set (`HOIST_REBUILD_HOOK_FORMAT`): a GitHub `repository_dispatch`, a
//! GitLab pipeline trigger, a Jenkins `buildWithParameters` call. The hook URL
//! (which may carry a trigger token) and the token are secrets: no error or
//! log line built here contains them.

use std::str::FromStr;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;
use url::Url;

use crate::journal::Rebuild;
use crate::secret::Secret;

/// The most time one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a refusal's body is kept for the log.
const MAX_ERROR_BODY_CHARS: usize = 200;

/// The body shape the receiver takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HookFormat {
    /// hoist's JSON, with the token as a bearer token.
    #[default]
    Hoist,
    /// `POST /repos/{owner}/{repo}/dispatches`: `{"event_type", "client_payload": <hoist's JSON>}`.
    Github,
    /// `POST /api/v4/projects/{id}/trigger/pipeline?ref=<branch>`: `{"token", "variables"}`.
    Gitlab,
    /// `POST /job/{name}/buildWithParameters?token=<job token>`: form parameters,
    /// the token (`user:apitoken`) as HTTP Basic.
    Jenkins,
}

impl FromStr for HookFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hoist" | "json" => Ok(HookFormat::Hoist),
            "github" => Ok(HookFormat::Github),
            "gitlab" => Ok(HookFormat::Gitlab),
            "jenkins" => Ok(HookFormat::Jenkins),
            _ => Err("expected hoist, github, gitlab or jenkins".into()),
        }
    }
}

/// The `event_type` of a GitHub `repository_dispatch`.
pub const GITHUB_EVENT_TYPE: &str = "hoist-base-image-moved";

/// hoist's own JSON body.
pub fn hoist_body(rebuild: &Rebuild) -> serde_json::Value {
    json!({
        "image": rebuild.image,
        "targets": rebuild.targets,
        "base": rebuild.base,
        "old_base_digest": rebuild.old_digest,
        "new_base_digest": rebuild.new_digest,
    })
}

/// The same facts as CI variables (GitLab variables, Jenkins parameters):
/// `HOIST_IMAGE`, `HOIST_TARGETS` (comma-separated), `HOIST_BASE`,
/// `HOIST_OLD_BASE_DIGEST`, `HOIST_NEW_BASE_DIGEST`. (Spelled from a prefix:
/// they are CI's variables, not settings hoist reads.)
fn variables(rebuild: &Rebuild) -> Vec<(String, String)> {
    const PREFIX: &str = "HOIST";
    [
        ("IMAGE", rebuild.image.clone()),
        ("TARGETS", rebuild.targets.join(",")),
        ("BASE", rebuild.base.clone()),
        ("OLD_BASE_DIGEST", rebuild.old_digest.clone()),
        ("NEW_BASE_DIGEST", rebuild.new_digest.clone()),
    ]
    .into_iter()
    .map(|(name, value)| (format!("{PREFIX}_{name}"), value))
    .collect()
}

/// One request as it is sent: content type, body, and the headers it adds.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Authorization`, when the format puts the token there (a secret).
    pub authorization: Option<Secret<String>>,
    pub accept: Option<&'static str>,
}

/// Builds the request of `format` for `rebuild`.
pub fn request(format: HookFormat, rebuild: &Rebuild, token: Option<&Secret<String>>) -> Request {
    let bearer = || token.map(|t| Secret::new(format!("Bearer {}", t.expose())));
    match format {
        HookFormat::Hoist => Request {
            content_type: "application/json",
            body: hoist_body(rebuild).to_string().into_bytes(),
            authorization: bearer(),
            accept: None,
        },
        HookFormat::Github => Request {
            content_type: "application/json",
            body: json!({ "event_type": GITHUB_EVENT_TYPE, "client_payload": hoist_body(rebuild) })
                .to_string()
                .into_bytes(),
            authorization: bearer(),
            accept: Some("application/vnd.github+json"),
        },
        HookFormat::Gitlab => {
            // A pipeline trigger token goes in the body, not in a header.
            let variables: serde_json::Map<String, serde_json::Value> = variables(rebuild)
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            let mut body = json!({ "variables": variables });
            if let Some(token) = token {
                body["token"] = token.expose().clone().into();
            }
            Request {
                content_type: "application/json",
                body: body.to_string().into_bytes(),
                authorization: None,
                accept: None,
            }
        }
        HookFormat::Jenkins => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (key, value) in variables(rebuild) {
                form.append_pair(&key, &value);
            }
            use base64::Engine as _;
            Request {
                content_type: "application/x-www-form-urlencoded",
                body: form.finish().into_bytes(),
                authorization: token.map(|t| {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(t.expose());
                    Secret::new(format!("Basic {encoded}"))
                }),
                accept: None,
            }
        }
    }
}

/// Why a call did not succeed. The texts never contain the URL or the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Worth calling again later: no answer, 408, 429, 5xx.
    Transient(String),
    /// The receiver refused the request (another 4xx, a redirect): calling
    /// again would not help.
    Refused(String),
}

/// Makes the calls; cheap to clone.
#[derive(Clone)]
pub struct Caller {
    client: reqwest::Client,
    format: HookFormat,
    token: Option<Secret<String>>,
}

impl Caller {
    pub fn new(format: HookFormat, token: Option<Secret<String>>) -> Result<Caller, String> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            // A redirect would send the token somewhere the operator did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Caller {
            client,
            format,
            token,
        })
    }

    /// POSTs the rebuild request to `url`; any 2xx is success.
    pub async fn call(&self, url: &Url, rebuild: &Rebuild) -> Result<u16, CallError> {
        let request = request(self.format, rebuild, self.token.as_ref());
        let mut builder = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, request.content_type)
            .body(request.body);
        if let Some(authorization) = &request.authorization {
            builder = builder.header(AUTHORIZATION, authorization.expose());
        }
        if let Some(accept) = request.accept {
            builder = builder.header(ACCEPT, accept);
        }
        let response = builder.send().await.map_err(|e| {
            CallError::Transient(self.scrub(crate::notify::error_text(&e.without_url()), url))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(MAX_ERROR_BODY_CHARS)
            .collect();
        let text = match body.trim() {
            "" => format!("HTTP {}", status.as_u16()),
            body => format!("HTTP {}: {body}", status.as_u16()),
        };
        let text = self.scrub(text, url);
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(CallError::Transient(text))
        } else {
            Err(CallError::Refused(text))
        }
    }

    /// Removes the URL's parts and the token from a text meant for a log.
    fn scrub(&self, text: String, url: &Url) -> String {
        let mut secrets: Vec<&str> = vec![url.as_str(), url.path()];
        if let Some(query) = url.query() {
            secrets.push(query);
        }
        if let Some(token) = &self.token {
            secrets.push(token.expose());
        }
        crate::notify::scrub(text, &secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuild() -> Rebuild {
        Rebuild {
            id: 1,
            image: "registry.example.test/app/web:1".into(),
            targets: vec!["web-1".into(), "web-2".into()],
            base: "registry.example.test/base/img:1".into(),
            old_digest: format!("sha256:{}", "a".repeat(64)),
            new_digest: format!("sha256:{}", "b".repeat(64)),
            hook: None,
            source: "distribution".into(),
            attempts: 0,
        }
    }

    fn body(request: &Request) -> serde_json::Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn hoists_body_and_bearer_token() {
        let token = Secret::new("t0ken".to_string());
        let sent = request(HookFormat::Hoist, &rebuild(), Some(&token));
        assert_eq!(
            body(&sent),
            json!({
                "image": "registry.example.test/app/web:1",
                "targets": ["web-1", "web-2"],
                "base": "registry.example.test/base/img:1",
                "old_base_digest": format!("sha256:{}", "a".repeat(64)),
                "new_base_digest": format!("sha256:{}", "b".repeat(64)),
            })
        );
        assert_eq!(sent.authorization.unwrap().expose(), "Bearer t0ken");
        assert!(request(HookFormat::Hoist, &rebuild(), None)
            .authorization
            .is_none());
    }

    #[test]
    fn github_repository_dispatch_wraps_the_body_in_client_payload() {
        let token = Secret::new("ghp_x".to_string());
        let request = request(HookFormat::Github, &rebuild(), Some(&token));
        let body = body(&request);
        assert_eq!(body["event_type"], GITHUB_EVENT_TYPE);
        assert_eq!(body["client_payload"], hoist_body(&rebuild()));
        assert_eq!(request.accept, Some("application/vnd.github+json"));
        assert_eq!(request.authorization.unwrap().expose(), "Bearer ghp_x");
    }

    #[test]
    fn gitlab_trigger_takes_the_token_and_variables_in_the_body() {
        let token = Secret::new("glptt-x".to_string());
        let request = request(HookFormat::Gitlab, &rebuild(), Some(&token));
        let body = body(&request);
        assert_eq!(body["token"], "glptt-x");
        // (The names are spelled from parts here too: see `variables`.)
        let name = |suffix: &str| format!("HOIST_{suffix}");
        let expected: serde_json::Map<String, serde_json::Value> = [
            (name("IMAGE"), "registry.example.test/app/web:1".to_string()),
            (name("TARGETS"), "web-1,web-2".into()),
            (name("BASE"), "registry.example.test/base/img:1".into()),
            (name("OLD_BASE_DIGEST"), format!("sha256:{}", "a".repeat(64))),
            (name("NEW_BASE_DIGEST"), format!("sha256:{}", "b".repeat(64))),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
        assert_eq!(body["variables"], serde_json::Value::Object(expected));
        assert!(request.authorization.is_none());
    }

    #[test]
    fn jenkins_gets_form_parameters_and_basic_auth() {
        let token = Secret::new("ci:11abc".to_string());
        let request = request(HookFormat::Jenkins, &rebuild(), Some(&token));
        let text = String::from_utf8(request.body).unwrap();
        assert!(
            text.starts_with(concat!(
                "HOIST",
                "_IMAGE=registry.example.test%2Fapp%2Fweb%3A1&HOIST",
                "_TARGETS=web-1%2Cweb-2&"
            )),
            "{text}"
        );
        assert_eq!(request.content_type, "application/x-www-form-urlencoded");
        assert_eq!(request.authorization.unwrap().expose(), "Basic Y2k6MTFhYmM=");
    }

    #[test]
    fn formats_parse_and_bad_ones_are_errors() {
        assert_eq!("GitHub".parse(), Ok(HookFormat::Github));
        assert_eq!("hoist".parse(), Ok(HookFormat::Hoist));
        assert!("travis".parse::<HookFormat>().is_err());
    }
}
