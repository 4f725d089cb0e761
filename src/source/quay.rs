//! Quay (quay.io and Red Hat Quay) `repo_push` notifications.
//!
//! The body is `{"repository": "team/app", "namespace", "name", "docker_url":
//! "quay.example.test/team/app", "homepage", "updated_tags": ["1.4.2"]}`. A
//! notification is configured for one event kind and the body does not name
//! it: the route (`/v1/hooks/quay/{token}`) is for `repo_push` only. Quay
//! sends no signature and no custom header, so the token is in the path.
//!
//! Choices:
//! * Each entry of `updated_tags` is an event. Very old payloads sent an
//!   object `{tag: image_id}`; its keys are the tags.
//! * The registry host is the first segment of `docker_url` (it has no
//!   scheme; one is skipped should it appear); the repository is
//!   `repository`, else the rest of `docker_url`.
//! * There is **no digest** (and no delivery id): intake resolves the digest
//!   against the registry.

use serde::Deserialize;

use super::{non_empty, Action, ParseError, RegistryEvent};

const FORMAT: &str = "quay";

#[derive(Deserialize)]
struct Payload {
    repository: Option<String>,
    docker_url: Option<String>,
    updated_tags: Option<UpdatedTags>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UpdatedTags {
    List(Vec<Option<String>>),
    /// Old quay.io payloads: tag → image id.
    Map(serde_json::Map<String, serde_json::Value>),
}

/// Parses a `repo_push` notification body into one event per updated tag.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "a Quay repo_push notification {\"docker_url\": ..., \"updated_tags\": [...]}",
            body,
            e,
        )
    })?;
    let malformed = |detail: &str| ParseError::Malformed {
        format: FORMAT,
        detail: detail.to_string(),
    };
    let docker_url = non_empty(payload.docker_url).ok_or_else(|| malformed("no `docker_url`"))?;
    let without_scheme = docker_url
        .split_once("://")
        .map_or(docker_url.as_str(), |(_, rest)| rest);
    let (host, url_repository) = without_scheme
        .split_once('/')
        .ok_or_else(|| malformed("`docker_url` is not <host>/<repository>"))?;
    let repository = non_empty(payload.repository)
        .or_else(|| non_empty(Some(url_repository.to_string())))
        .ok_or_else(|| malformed("no `repository`"))?;
    let tags: Vec<String> = match payload.updated_tags {
        None => {
            return Err(malformed(
                "no `updated_tags`: hoist takes Quay's repo_push notifications only",
            ))
        }
        Some(UpdatedTags::List(tags)) => tags.into_iter().filter_map(non_empty).collect(),
        Some(UpdatedTags::Map(tags)) => tags
            .into_iter()
            .filter_map(|(tag, _)| non_empty(Some(tag)))
            .collect(),
    };
    let registry_host = non_empty(Some(host.to_ascii_lowercase()));
    Ok(tags
        .into_iter()
        .map(|tag| RegistryEvent {
            action: Action::Push,
            registry_host: registry_host.clone(),
            repository: repository.clone(),
            tag: Some(tag),
            digest: None,
            media_type: None,
            event_id: None,
            actor: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;
    use crate::source::fixture;

    fn pushes(body: &[u8]) -> Vec<String> {
        parse(body)
            .unwrap()
            .into_iter()
            .map(|event| {
                let push = event.into_push(SourceKind::Quay, None).unwrap();
                assert_eq!(push.digest, None);
                push.reference.to_string()
            })
            .collect()
    }

    #[test]
    fn the_sample_is_one_push_per_updated_tag() {
        assert_eq!(
            pushes(&fixture("quay-push.json")),
            ["quay.example.test/team/app:1.4.2"]
        );
        let several = br#"{"repository": "team/app", "docker_url": "Quay.Example.Test:8443/team/app",
            "updated_tags": ["latest", "foo", ""]}"#;
        assert_eq!(
            pushes(several),
            [
                "quay.example.test:8443/team/app:latest",
                "quay.example.test:8443/team/app:foo"
            ]
        );
        let old_map = br#"{"docker_url": "https://quay.io/team/app",
            "updated_tags": {"1.0": "0123abcd"}, "pushed_image_count": 1}"#;
        assert_eq!(pushes(old_map), ["quay.io/team/app:1.0"]);
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty body"),
            (b"{}", "no `docker_url`"),
            (b"{\"docker_url\": \"quay.io\"}", "not <host>/<repository>"),
            (b"{\"docker_url\": \"quay.io/team/app\"}", "no `updated_tags`"),
            (b"{\"updated_tags\": 5}", "expected a Quay repo_push"),
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
