//! GitHub `package` events for the GitHub container registry (ghcr.io).
//!
//! The body is `{"action": "published" | "updated", "package": {...}}`
//! (`registry_package` instead of `package` for GitHub App webhooks), as
//! JSON, or form-encoded in a `payload=` field when the webhook's content
//! type says so. The event name (`X-GitHub-Event`), the delivery id
//! (`X-GitHub-Delivery`) and the signature (`X-Hub-Signature-256`) are
//! headers, which the route reads; this parser reads the body alone.
//!
//! Choices:
//! * The registry host is always `ghcr.io`.
//! * The repository is `<owner>/<name>`, **lower-cased**: logins and package
//!   names keep their case in the payload, ghcr.io references cannot. The
//!   owner is `package.owner.login`, else `package.namespace`; nested names
//!   (`team/app`) keep their slashes.
//! * A multi-arch push sends one event per manifest. Only the tagged one
//!   (`container_metadata.tag.name` not empty) is an update; the platform
//!   manifests and attestations come untagged and are ignored as pushes by
//!   digest.
//! * The digest is `container_metadata.tag.digest`, else the version's `name`
//!   (GitHub names container versions by their digest).
//! * A package that is not a container (npm, maven, ...) is not a push.

use serde::Deserialize;

use super::{json_or_form_payload, lenient_digest, non_empty, Action, ParseError, RegistryEvent};

const FORMAT: &str = "github";
/// The only registry GitHub container packages live on.
pub const HOST: &str = "ghcr.io";

#[derive(Deserialize)]
struct Payload {
    action: Option<String>,
    package: Option<Package>,
    registry_package: Option<Package>,
    sender: Option<Login>,
}

#[derive(Deserialize)]
struct Package {
    name: Option<String>,
    namespace: Option<String>,
    package_type: Option<String>,
    owner: Option<Login>,
    package_version: Option<Version>,
}

#[derive(Deserialize)]
struct Login {
    login: Option<String>,
}

#[derive(Deserialize)]
struct Version {
    name: Option<String>,
    version: Option<String>,
    container_metadata: Option<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    tag: Option<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: Option<String>,
    digest: Option<String>,
}

/// Parses a `package` (or `registry_package`) event body.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let json = json_or_form_payload(body);
    let payload: Payload = serde_json::from_slice(&json).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "a GitHub package event {\"action\": ..., \"package\": {...}}",
            &json,
            e,
        )
    })?;
    let malformed = |detail: &str| ParseError::Malformed {
        format: FORMAT,
        detail: detail.to_string(),
    };
    let package = payload
        .package
        .or(payload.registry_package)
        .ok_or_else(|| malformed("no `package`"))?;
    let action_name = non_empty(payload.action).ok_or_else(|| malformed("no `action`"))?;
    let name = non_empty(package.name).ok_or_else(|| malformed("no `package.name`"))?;
    let owner = package
        .owner
        .and_then(|owner| non_empty(owner.login))
        .or_else(|| non_empty(package.namespace))
        .ok_or_else(|| malformed("no `package.owner.login`"))?;
    let repository = format!("{owner}/{name}").to_ascii_lowercase();
    let package_type = non_empty(package.package_type).unwrap_or_default();
    let is_container =
        package_type.eq_ignore_ascii_case("container") || package_type.eq_ignore_ascii_case("docker");
    let action = match action_name.as_str() {
        "published" | "updated" if is_container => Action::Push,
        _ if !is_container => Action::Other(format!("{action_name} of a {package_type:?} package")),
        other => Action::Other(other.to_string()),
    };
    let version = package.package_version;
    let (tag, tag_digest, version_name) = match version {
        Some(version) => {
            let (tag, digest) = match version.container_metadata.and_then(|m| m.tag) {
                Some(tag) => (non_empty(tag.name), tag.digest),
                None => (None, None),
            };
            (tag, digest, version.name.or(version.version))
        }
        None => (None, None, None),
    };
    let digest = lenient_digest(tag_digest, FORMAT, &repository)
        .or_else(|| lenient_digest(version_name.filter(|n| n.contains(':')), FORMAT, &repository));
    Ok(vec![RegistryEvent {
        action,
        registry_host: Some(HOST.to_string()),
        repository,
        tag,
        digest,
        media_type: None,
        event_id: None,
        actor: payload.sender.and_then(|sender| non_empty(sender.login)),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;
    use crate::source::{fixture, Ignored, Variant};

    const DIGEST: &str = "sha256:61e2d055ca7c99791d17a1f7a49b3406c007356acdc1d728e26b389ce0dd6908";
    const CHILD: &str = "sha256:cf6d545e4dd1db5d3fb0dd1c992a9242b183f97d9193c13fd439e3dec6ce13c9";

    fn sample() -> serde_json::Value {
        serde_json::from_slice(&fixture("github-package-published.json")).unwrap()
    }

    fn events(body: &serde_json::Value) -> Vec<RegistryEvent> {
        parse(&serde_json::to_vec(body).unwrap()).unwrap()
    }

    #[test]
    fn the_sample_is_a_push_of_the_lowercased_image() {
        let events = parse(&fixture("github-package-published.json")).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.action, Action::Push);
        assert_eq!(event.registry_host.as_deref(), Some("ghcr.io"));
        assert_eq!(event.repository, "example-org/app");
        assert_eq!(event.tag.as_deref(), Some("1.4.2"));
        assert_eq!(event.digest.as_ref().map(|d| d.as_str()), Some(DIGEST));
        assert_eq!(event.actor.as_deref(), Some("example-ci[bot]"));
        let update = event.clone().into_update(SourceKind::Github, None).unwrap();
        assert_eq!(update.reference.to_string(), "ghcr.io/example-org/app:1.4.2");
        assert_eq!(update.digest.as_str(), DIGEST);
    }

    /// A multi-arch push: the index comes tagged, each platform manifest
    /// untagged (`tag.name` empty, `package_url` ending in `:`).
    #[test]
    fn only_the_tagged_manifest_of_a_multi_arch_push_is_an_update() {
        let mut child = sample();
        let version = &mut child["package"]["package_version"];
        version["name"] = CHILD.into();
        version["version"] = CHILD.into();
        version["container_metadata"]["tag"] = serde_json::json!({"name": "", "digest": CHILD});
        version["package_url"] = "ghcr.io/Example-Org/app:".into();
        let event = events(&child).remove(0);
        assert_eq!(event.tag, None);
        assert_eq!(event.into_update(SourceKind::Github, None), Err(Ignored::NoTag));
    }

    #[test]
    fn table_of_variants() {
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut body = sample();
            edit(&mut body);
            events(&body)
                .remove(0)
                .into_update(SourceKind::Github, None)
                .map(|u| format!("{}@{}", u.reference, u.digest.short()))
        };
        let cases: Vec<Variant> = vec![
            (
                "sample",
                Box::new(|_| {}),
                Ok("ghcr.io/example-org/app:1.4.2@61e2d055ca7c"),
            ),
            (
                "a GitHub App's registry_package",
                Box::new(|b| {
                    let package = b["package"].take();
                    b["registry_package"] = package;
                }),
                Ok("ghcr.io/example-org/app:1.4.2@61e2d055ca7c"),
            ),
            (
                "action updated",
                Box::new(|b| b["action"] = "updated".into()),
                Ok("ghcr.io/example-org/app:1.4.2@61e2d055ca7c"),
            ),
            (
                "legacy docker package type, nested mixed-case name",
                Box::new(|b| {
                    b["package"]["package_type"] = "docker".into();
                    b["package"]["name"] = "Team/App".into();
                }),
                Ok("ghcr.io/example-org/team/app:1.4.2@61e2d055ca7c"),
            ),
            (
                "no tag digest: the version's name is the digest",
                Box::new(|b| {
                    b["package"]["package_version"]["container_metadata"]["tag"]["digest"].take();
                }),
                Ok("ghcr.io/example-org/app:1.4.2@61e2d055ca7c"),
            ),
            (
                "an npm package",
                Box::new(|b| b["package"]["package_type"] = "npm".into()),
                Err(Ignored::NotAPush(Action::Other(
                    "published of a \"npm\" package".into(),
                ))),
            ),
            (
                "no digest anywhere",
                Box::new(|b| {
                    let version = &mut b["package"]["package_version"];
                    version["container_metadata"]["tag"]["digest"].take();
                    version["name"] = "1.4.2".into();
                }),
                Err(Ignored::NoDigest),
            ),
            (
                "an attestation tag",
                Box::new(|b| {
                    b["package"]["package_version"]["container_metadata"]["tag"]["name"] =
                        "sha256-61e2d055.att".into()
                }),
                Err(Ignored::SignatureTag),
            ),
        ];
        for (name, edit, expected) in cases {
            assert_eq!(with(&*edit).as_deref().map_err(Clone::clone), expected, "{name}");
        }
    }

    #[test]
    fn a_form_encoded_body_is_read_from_its_payload_field() {
        let json = fixture("github-package-published.json");
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&json).unwrap())
            .finish();
        assert_eq!(parse(form.as_bytes()).unwrap(), parse(&json).unwrap());
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        #[rustfmt::skip]
        let cases: [(&[u8], &str); 7] = [
            (b"",                                               "empty body"),
            (b"nonsense",                                       "not JSON"),
            (b"{}",                                             "no `package`"),
            (b"{\"action\":\"published\",\"package\":{}}",     "no `package.name`"),
            (b"{\"action\":\"published\",\"package\":{\"name\":\"app\"}}", "no `package.owner.login`"),
            (b"{\"package\":{\"name\":\"app\"}}",              "no `action`"),
            (b"{\"action\":1,\"package\":{}}",                 "expected a GitHub package event"),
        ];
        for (body, detail) in cases {
            let error = parse(body).unwrap_err().to_string();
            assert!(
                error.contains(detail),
                "{:?}: {error}",
                String::from_utf8_lossy(body)
            );
            assert!(error.starts_with("malformed github payload"), "{error}");
        }
    }
}
