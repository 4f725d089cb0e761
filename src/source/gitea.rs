//! Gitea and Forgejo package events (`X-Gitea-Event: package`).
//!
//! The body is `{"action": "created" | "deleted", "package": {"owner":
//! {"login"}, "type", "name", "version", "html_url"}, "sender": {...}}`, as
//! JSON or form-encoded (`payload=`). Headers (event name, delivery id,
//! signature) are the route's business.
//!
//! Choices:
//! * Only `type: "container"` packages are images; others are not pushes.
//! * The registry host is the host (and port) of `package.html_url`: Gitea
//!   serves its container registry on its own address.
//! * The repository is `<owner>/<name>`, lower-cased as Gitea stores it.
//! * `version` is the reference of the manifest PUT: a tag, or `sha256:<hex>`
//!   for a push by digest (not an update). Gitea sends **no digest** for a
//!   tag: intake resolves it against the registry.
//! * `created` fires on every manifest PUT, a re-push of a tag included.

use serde::Deserialize;

use super::{json_or_form_payload, lenient_digest, non_empty, url_host, Action, ParseError, RegistryEvent};

const FORMAT: &str = "gitea";

#[derive(Deserialize)]
struct Payload {
    action: Option<String>,
    package: Option<Package>,
    sender: Option<Login>,
}

#[derive(Deserialize)]
struct Package {
    owner: Option<Login>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    version: Option<String>,
    html_url: Option<String>,
    creator: Option<Login>,
}

#[derive(Deserialize)]
struct Login {
    login: Option<String>,
}

/// Parses a Gitea or Forgejo `package` event body.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let json = json_or_form_payload(body);
    let payload: Payload = serde_json::from_slice(&json).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "a Gitea package event {\"action\": ..., \"package\": {...}}",
            &json,
            e,
        )
    })?;
    let malformed = |detail: &str| ParseError::Malformed {
        format: FORMAT,
        detail: detail.to_string(),
    };
    let package = payload.package.ok_or_else(|| malformed("no `package`"))?;
    let action_name = non_empty(payload.action).ok_or_else(|| malformed("no `action`"))?;
    let name = non_empty(package.name).ok_or_else(|| malformed("no `package.name`"))?;
    let owner = package
        .owner
        .and_then(|owner| non_empty(owner.login))
        .ok_or_else(|| malformed("no `package.owner.login`"))?;
    let repository = format!("{owner}/{name}").to_ascii_lowercase();
    let kind = non_empty(package.kind).unwrap_or_default();
    let action = match action_name.as_str() {
        _ if kind != "container" => Action::Other(format!("{action_name} of a {kind:?} package")),
        "created" => Action::Push,
        "deleted" => Action::Delete,
        other => Action::Other(other.to_string()),
    };
    let version = non_empty(package.version);
    let (tag, digest) = match version {
        Some(version) if version.contains(':') => (None, lenient_digest(Some(version), FORMAT, &repository)),
        version => (version, None),
    };
    let registry_host = package.html_url.as_deref().and_then(url_host);
    if action == Action::Push && registry_host.is_none() {
        return Err(malformed(
            "no registry host: `package.html_url` is not an absolute URL",
        ));
    }
    Ok(vec![RegistryEvent {
        action,
        registry_host,
        repository,
        tag,
        digest,
        media_type: None,
        event_id: None,
        actor: payload
            .sender
            .and_then(|sender| non_empty(sender.login))
            .or_else(|| package.creator.and_then(|creator| non_empty(creator.login))),
    }])
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::event::SourceKind;
    use crate::source::{fixture, Ignored, Variant};

    fn sample() -> Value {
        serde_json::from_slice(&fixture("gitea-package.json")).unwrap()
    }

    fn push_of(edit: impl Fn(&mut Value)) -> Result<String, Ignored> {
        let mut body = sample();
        edit(&mut body);
        let event = parse(&serde_json::to_vec(&body).unwrap()).unwrap().remove(0);
        event.into_push(SourceKind::Gitea, None).map(|push| {
            assert_eq!(push.digest, None, "Gitea names no digest for a tag");
            push.reference.to_string()
        })
    }

    #[test]
    fn the_sample_is_a_push_without_a_digest() {
        let event = parse(&fixture("gitea-package.json")).unwrap().remove(0);
        assert_eq!(event.action, Action::Push);
        assert_eq!(event.registry_host.as_deref(), Some("gitea.example.test"));
        assert_eq!(event.repository, "example-org/app");
        assert_eq!(event.tag.as_deref(), Some("1.4.2"));
        assert_eq!(event.digest, None);
        assert_eq!(event.actor.as_deref(), Some("ci-bot"));
        // It is not an update for a source that must send digests, only a push to resolve.
        assert_eq!(
            event.clone().into_update(SourceKind::Gitea, None),
            Err(Ignored::NoDigest)
        );
        let push = event.into_push(SourceKind::Gitea, None).unwrap();
        assert_eq!(
            push.reference.to_string(),
            "gitea.example.test/example-org/app:1.4.2"
        );
    }

    #[test]
    fn table_of_variants() {
        let cases: Vec<Variant> = vec![
            (
                "sample",
                Box::new(|_| {}),
                Ok("gitea.example.test/example-org/app:1.4.2"),
            ),
            (
                "a Gitea on a port, mixed-case owner, nested name",
                Box::new(|b| {
                    b["package"]["html_url"] =
                        "http://Gitea.Local:3000/Example-Org/-/packages/container/team%2Fapp/1.4.2".into();
                    b["package"]["owner"]["login"] = "Example-Org".into();
                    b["package"]["name"] = "team/app".into();
                }),
                Ok("gitea.local:3000/example-org/team/app:1.4.2"),
            ),
            (
                "a push by digest",
                Box::new(|b| {
                    b["package"]["version"] =
                        "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c".into()
                }),
                Err(Ignored::NoTag),
            ),
            (
                "a deleted version",
                Box::new(|b| b["action"] = "deleted".into()),
                Err(Ignored::NotAPush(Action::Delete)),
            ),
            (
                "an npm package",
                Box::new(|b| b["package"]["type"] = "npm".into()),
                Err(Ignored::NotAPush(Action::Other(
                    "created of a \"npm\" package".into(),
                ))),
            ),
        ];
        for (name, edit, expected) in cases {
            assert_eq!(
                push_of(&*edit).as_deref().map_err(Clone::clone),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        let no_host = {
            let mut body = sample();
            body["package"]["html_url"] = json!("/example-org/-/packages/container/app/1.4.2");
            serde_json::to_vec(&body).unwrap()
        };
        let cases: [(&[u8], &str); 6] = [
            (b"", "empty body"),
            (b"{}", "no `package`"),
            (b"{\"action\":\"created\",\"package\":{}}", "no `package.name`"),
            (
                b"{\"action\":\"created\",\"package\":{\"name\":\"app\"}}",
                "no `package.owner.login`",
            ),
            (b"[1]", "expected a Gitea package event"),
            (&no_host, "no registry host"),
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
