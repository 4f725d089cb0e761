//! Pulls: one image by digest, tagged locally, within `HOIST_PULL_TIMEOUT`;
//! and the fix that lets registry credentials reach the engine intact.

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{CreateImageOptions, TagImageOptions};
use futures_util::StreamExt;

use crate::engine::{docker_credentials, Engine, EngineError, ImageDetails};
use crate::event::Digest;
use crate::registry::credentials::RegistryAuth;

impl Engine {
    /// Pulls `repository@digest` and points `repository:tag` at it locally, so
    /// the tag names exactly the pushed image even if the registry has moved on.
    ///
    /// The whole pull (the engine answers at once, then streams its progress
    /// until the last layer is in) gets the engine's pull timeout; when it runs
    /// out, the pull is abandoned (the engine cancels it when the stream is
    /// dropped) and nothing is tagged.
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
        // The engine logs in to the registry with `auth` (X-Registry-Auth).
        let mut progress = self
            .docker
            .create_image(Some(options), None, auth.map(docker_credentials));
        // The pull is the stream: it must be drained to the end. The last
        // progress line says where a pull that ran out of time stood.
        let mut last_progress: Option<String> = None;
        let drained = tokio::time::timeout(self.pull_timeout, async {
            while let Some(step) = progress.next().await {
                let info = step.map_err(|e| match e {
                    // The engine's (or the registry's) own words: a verdict on this pull.
                    BollardError::DockerStreamError { error } => PullStopped::Refused(error),
                    BollardError::DockerResponseServerError { message, .. } => PullStopped::Refused(message),
                    // A broken stream, a reset connection: the engine went away mid-pull.
                    other => {
                        PullStopped::Engine(EngineError::from_bollard(format!("pull of {image}"), other))
                    }
                })?;
                if let Some(status) = info.status {
                    last_progress = Some(match info.id {
                        Some(id) => format!("{id}: {status}"),
                        None => status,
                    });
                }
            }
            Ok::<(), PullStopped>(())
        })
        .await;
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(PullStopped::Refused(message))) => return Err(EngineError::Pull { image, message }),
            Ok(Err(PullStopped::Engine(e))) => return Err(e),
            Err(_) => {
                let stood = last_progress.map_or_else(
                    || "the engine had not answered".to_string(),
                    |line| format!("last progress: {line}"),
                );
                return Err(EngineError::Pull {
                    image,
                    message: format!(
                        "it did not finish within {:?} (HOIST_PULL_TIMEOUT; {stood}); nothing was changed",
                        self.pull_timeout
                    ),
                });
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
}

/// Why a pull's stream ended early.
enum PullStopped {
    /// The engine reported an error of the pull: its message.
    Refused(String),
    /// The engine itself failed (the stream broke).
    Engine(EngineError),
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::engine::{Engine, ServiceDetails};
    use crate::registry::credentials::RegistryAuth;
    use crate::secret::Secret;

    /// A stand-in engine on loopback: answers `/version` and service updates,
    /// and hands over the head of every request it gets.
    async fn fake_engine() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        fake_engine_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn fake_engine_on(
        listener: tokio::net::TcpListener,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
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
    async fn an_engine_down_at_connect_is_negotiated_with_when_it_answers() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Nothing listens yet: connecting is no error.
        let engine = Engine::connect(
            Some(&format!("tcp://127.0.0.1:{port}")),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(engine.ping().await.unwrap_err().is_transient());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (_, mut heads) = fake_engine_on(listener);
        // Before negotiation, bollard's calls reach the engine (they carry no version prefix).
        let _answer = engine.inspect_container("web").await;
        let head = heads.recv().await.unwrap();
        assert!(head.starts_with("GET /containers/web/json"), "{head}");
        engine.ping().await.unwrap();
        assert!(heads.recv().await.unwrap().starts_with("GET /version"));
        assert_eq!(engine.api_version(), "1.41");
    }

    #[tokio::test]
    async fn an_engine_that_takes_the_call_and_never_answers_times_out() {
        use crate::engine::EngineError;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let limit = std::time::Duration::from_millis(300);
        let engine = Engine::connect(Some(&format!("tcp://{addr}")), limit)
            .await
            .unwrap();
        let error = engine.inspect_container("web").await.unwrap_err();
        assert!(matches!(error, EngineError::TimedOut(_)), "{error}");
        assert!(error.is_transient());
        assert!(matches!(
            crate::deploy::DeployError::from_engine("cannot inspect", &error),
            crate::deploy::DeployError::EngineStalled(_)
        ));
        let stopped = engine.stop("web", limit).await.unwrap_err();
        assert!(matches!(stopped, EngineError::TimedOut(_)), "{stopped}");
        // The plain-JSON calls have the same limit.
        let full = engine.inspect_container_full("web").await.unwrap_err();
        assert!(matches!(full, EngineError::TimedOut(_)), "{full}");
    }

    #[tokio::test]
    async fn registry_auth_reaches_the_engine_in_url_safe_base64() {
        let (host, mut heads) = fake_engine().await;
        let engine = Engine::connect(Some(&host), std::time::Duration::from_secs(10))
            .await
            .unwrap();
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
