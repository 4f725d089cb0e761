//! Docker Hub repository webhooks.
//!
//! The body is `{"push_data": {"tag", "pusher", "pushed_at"}, "repository":
//! {"repo_name", "namespace", "name", ...}, "callback_url"}`. Docker Hub
//! sends one per pushed tag and nothing else (no event type), with no
//! signature and no custom header: the route takes the token from its path.
//!
//! Choices:
//! * The registry is Docker Hub (`docker.io`); the repository is
//!   `repo_name`, else `namespace/name`.
//! * There is **no digest**: intake resolves it against the registry.
//! * The event id is `dockerhub:<repo_name>:<tag>:<pushed_at>`: Docker Hub
//!   has no delivery id, and a redelivery of one push keeps these three.
//!   `pushed_at` is read as a number (old payloads wrote floats such as
//!   `1.417566161e+09`) and truncated to whole seconds.
//! * `callback_url` (the legacy "webhook chain") is never called.

use serde::Deserialize;

use super::{non_empty, Action, ParseError, RegistryEvent};

const FORMAT: &str = "dockerhub";
/// Docker Hub's canonical registry name.
pub const HOST: &str = "docker.io";

#[derive(Deserialize)]
struct Payload {
    push_data: Option<PushData>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct PushData {
    tag: Option<String>,
    pusher: Option<String>,
    pushed_at: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

/// Parses a Docker Hub webhook body.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "a Docker Hub webhook {\"push_data\": {...}, \"repository\": {...}}",
            body,
            e,
        )
    })?;
    let malformed = |detail: &str| ParseError::Malformed {
        format: FORMAT,
        detail: detail.to_string(),
    };
    let push = payload.push_data.ok_or_else(|| malformed("no `push_data`"))?;
    let repository = payload.repository.ok_or_else(|| malformed("no `repository`"))?;
    let repository = non_empty(repository.repo_name)
        .or_else(|| {
            let namespace = non_empty(repository.namespace)?;
            let name = non_empty(repository.name)?;
            Some(format!("{namespace}/{name}"))
        })
        .ok_or_else(|| malformed("no `repository.repo_name`"))?;
    let tag = non_empty(push.tag);
    let pushed_at = push
        .pushed_at
        .and_then(|at| at.as_f64())
        .filter(|at| at.is_finite())
        .map(|at| at.trunc() as i64);
    let event_id = match (&tag, pushed_at) {
        (Some(tag), Some(at)) => Some(format!("dockerhub:{repository}:{tag}:{at}")),
        _ => None,
    };
    Ok(vec![RegistryEvent {
        action: Action::Push,
        registry_host: Some(HOST.to_string()),
        repository,
        tag,
        digest: None,
        media_type: None,
        event_id,
        actor: non_empty(push.pusher),
    }])
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::event::SourceKind;
    use crate::source::{fixture, Edit, Ignored};

    /// A variant, what it must give, and its event id.
    type Row = (
        &'static str,
        Edit,
        Result<&'static str, Ignored>,
        Option<&'static str>,
    );

    #[test]
    fn the_sample_is_a_push_of_a_docker_hub_tag_without_a_digest() {
        let event = parse(&fixture("dockerhub-push.json")).unwrap().remove(0);
        assert_eq!(event.action, Action::Push);
        assert_eq!(event.repository, "exampleorg/app");
        assert_eq!(event.tag.as_deref(), Some("1.4.2"));
        assert_eq!(event.digest, None);
        assert_eq!(event.actor.as_deref(), Some("exampleci"));
        assert_eq!(
            event.event_id.as_deref(),
            Some("dockerhub:exampleorg/app:1.4.2:1795386107")
        );
        let push = event.into_push(SourceKind::DockerHub, None).unwrap();
        assert_eq!(push.reference.to_string(), "docker.io/exampleorg/app:1.4.2");
        assert_eq!(push.digest, None);
    }

    #[test]
    fn table_of_variants() {
        let sample: Value = serde_json::from_slice(&fixture("dockerhub-push.json")).unwrap();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut body = sample.clone();
            edit(&mut body);
            let event = parse(&serde_json::to_vec(&body).unwrap()).unwrap().remove(0);
            let id = event.event_id.clone();
            (
                event
                    .into_push(SourceKind::DockerHub, None)
                    .map(|p| p.reference.to_string()),
                id,
            )
        };
        let cases: Vec<Row> = vec![
            (
                "an official image",
                Box::new(|b| b["repository"]["repo_name"] = "nginx".into()),
                Ok("docker.io/library/nginx:1.4.2"),
                Some("dockerhub:nginx:1.4.2:1795386107"),
            ),
            (
                "namespace and name only, float timestamp",
                Box::new(|b| {
                    b["repository"]["repo_name"].take();
                    b["push_data"]["pushed_at"] = json!(1.417566161e9);
                }),
                Ok("docker.io/exampleorg/app:1.4.2"),
                Some("dockerhub:exampleorg/app:1.4.2:1417566161"),
            ),
            (
                "no timestamp: no event id",
                Box::new(|b| {
                    b["push_data"]["pushed_at"].take();
                }),
                Ok("docker.io/exampleorg/app:1.4.2"),
                None,
            ),
            (
                "no tag",
                Box::new(|b| b["push_data"]["tag"] = "".into()),
                Err(Ignored::NoTag),
                None,
            ),
        ];
        for (name, edit, expected, id) in cases {
            let (reference, event_id) = with(&*edit);
            assert_eq!(reference.as_deref().map_err(Clone::clone), expected, "{name}");
            assert_eq!(event_id.as_deref(), id, "{name}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty body"),
            (b"{}", "no `push_data`"),
            (b"{\"push_data\":{}}", "no `repository`"),
            (
                b"{\"push_data\":{},\"repository\":{}}",
                "no `repository.repo_name`",
            ),
            (b"{\"push_data\":[]}", "expected a Docker Hub webhook"),
        ];
        for (body, detail) in cases {
            let error = parse(body).unwrap_err().to_string();
            assert!(
                error.contains(detail),
                "{:?}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
