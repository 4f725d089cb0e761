//! Harbor webhooks.
//!
//! Three shapes carry the same `event_data`:
//! * the Default format of Harbor 2.x: `{"type": "PUSH_ARTIFACT", "operator",
//!   "event_data": {"resources": [...], "repository": {...}}}`;
//! * the same shape with Harbor 1.x type names (`pushImage`, `pullImage`,
//!   `deleteImage`, `scanningCompleted`, `scanningFailed`);
//! * the CloudEvents format of Harbor ≥ 2.8 (structured mode): `specversion`,
//!   `id`, `type` such as `harbor.artifact.pushed`, `operator`, and the
//!   `event_data` object under `data`.
//!
//! Each `event_data.resources[]` entry becomes one [`RegistryEvent`] (Harbor
//! sends one). Choices:
//! * The registry host is the part of `resource_url` before the first `/`
//!   (Harbor's external URL without its scheme, port included).
//! * The repository is `repository.repo_full_name`, else `namespace/name`,
//!   else the path of `resource_url`.
//! * Harbor puts the digest in `tag` when the artifact has no tag (child
//!   manifests of a multi-arch push, pulls by digest). A `tag` with a `:` in
//!   it cannot be a tag, so it becomes `None`.
//! * Harbor sends no media type (only manifests fire webhooks, never blobs),
//!   so `media_type` is `None`.
//! * `event_id` is the CloudEvent `id`; the Default format has none. Should a
//!   payload ever list several resources, `#<index>` is appended to each id so
//!   that every event keeps an id of its own, still stable across retries.
//! * An invalid digest drops that resource's digest (logged), as in
//!   `distribution`.

use serde::Deserialize;

use super::{Action, ParseError, RegistryEvent};
use crate::event::Digest;

const FORMAT: &str = "harbor";

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Present only in the CloudEvents format.
    specversion: Option<serde_json::Value>,
    /// CloudEvents only.
    id: Option<String>,
    operator: Option<String>,
    /// Default format.
    event_data: Option<EventData>,
    /// CloudEvents format.
    data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    resources: Option<Vec<Resource>>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Resource {
    digest: Option<String>,
    tag: Option<String>,
    resource_url: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    name: Option<String>,
    namespace: Option<String>,
    repo_full_name: Option<String>,
}

/// Parses a Harbor webhook (Default format, legacy `pushImage`, or CloudEvents).
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "a Harbor webhook {\"type\": ..., \"event_data\": {...}} or CloudEvent",
            body,
            e,
        )
    })?;
    let malformed = |detail: &str| ParseError::Malformed {
        format: FORMAT,
        detail: detail.to_string(),
    };
    let kind = non_empty(payload.kind).ok_or_else(|| malformed("no `type`"))?;
    let action = action(&kind);
    let cloud_event = payload.specversion.is_some_and(|v| !v.is_null());
    let (data, id) = if cloud_event {
        let data = payload
            .data
            .ok_or_else(|| malformed("CloudEvent without `data`"))?;
        (data, non_empty(payload.id))
    } else {
        let data = payload.event_data.ok_or_else(|| malformed("no `event_data`"))?;
        (data, None)
    };
    let actor = non_empty(payload.operator);
    let repository = data.repository.and_then(|repository| {
        non_empty(repository.repo_full_name).or_else(|| {
            let namespace = non_empty(repository.namespace)?;
            let name = non_empty(repository.name)?;
            Some(format!("{namespace}/{name}"))
        })
    });
    let resources = data.resources.unwrap_or_default();
    let several = resources.len() > 1;
    Ok(resources
        .into_iter()
        .enumerate()
        .map(|(index, resource)| {
            let (registry_host, url_repository) = match non_empty(resource.resource_url) {
                Some(url) => split_resource_url(&url),
                None => (None, None),
            };
            let repository = repository.clone().or(url_repository).unwrap_or_default();
            let digest =
                non_empty(resource.digest).and_then(|text| match Digest::parse(&text.to_ascii_lowercase()) {
                    Ok(digest) => Some(digest),
                    Err(error) => {
                        tracing::warn!(%repository, %error, "Dropped an invalid digest from a Harbor event.");
                        None
                    }
                });
            RegistryEvent {
                action: action.clone(),
                registry_host,
                repository,
                tag: non_empty(resource.tag).filter(|tag| !tag.contains(':')),
                digest,
                media_type: None,
                event_id: match &id {
                    Some(id) if several => Some(format!("{id}#{index}")),
                    id => id.clone(),
                },
                actor: actor.clone(),
            }
        })
        .collect())
}

/// Harbor 2.x, Harbor 1.x and CloudEvents type names.
fn action(kind: &str) -> Action {
    match kind {
        "PUSH_ARTIFACT" | "pushImage" | "harbor.artifact.pushed" => Action::Push,
        "PULL_ARTIFACT" | "pullImage" | "harbor.artifact.pulled" => Action::Pull,
        "DELETE_ARTIFACT" | "deleteImage" | "harbor.artifact.deleted" => Action::Delete,
        "SCANNING_COMPLETED"
        | "SCANNING_FAILED"
        | "SCANNING_STOPPED"
        | "scanningCompleted"
        | "scanningFailed"
        | "harbor.scan.completed"
        | "harbor.scan.failed"
        | "harbor.scan.stopped" => Action::Scan,
        other => Action::Other(other.to_string()),
    }
}

/// `(host, repository)` of `host[:port]/repository(:tag|@digest)`; a scheme,
/// should one appear, is skipped. The host is lower-cased.
fn split_resource_url(url: &str) -> (Option<String>, Option<String>) {
    let url = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some((host, path)) = url.split_once('/') else {
        return (None, None);
    };
    let name = path.split_once('@').map_or(path, |(name, _)| name);
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
    (non_empty(&host.to_ascii_lowercase()), non_empty(name))
}

/// The trimmed text, or `None` when absent or blank.
fn non_empty(text: Option<String>) -> Option<String> {
    let text = text?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;
    use crate::source::{fixture, Ignored};

    const DIGEST: &str = "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";
    const CLOUD_EVENT_ID: &str = "4b2f89a6-548d-4c12-9993-a1f5790b97d2";

    /// `(file, action, tag, event id, actor, digest, the update's reference or why there is none)`.
    type Sample = (
        &'static str,
        Action,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
        Result<&'static str, Ignored>,
    );

    #[rustfmt::skip]
    fn samples() -> Vec<Sample> {
        use Action::*;
        vec![
            ("harbor-push-artifact.json",      Push,   Some("1.4.2"), None,                 "robot$team+ci", Some(DIGEST), Ok("harbor.example.test/team/app:1.4.2")),
            ("harbor-cloudevents-push.json",   Push,   Some("1.4.2"), Some(CLOUD_EVENT_ID), "robot$team+ci", Some(DIGEST), Ok("harbor.example.test/team/app:1.4.2")),
            ("harbor-pull-artifact.json",      Pull,   None,          None,                 "admin",         Some(DIGEST), Err(Ignored::NotAPush(Pull))),
            ("harbor-delete-artifact.json",    Delete, Some("1.4.2"), None,                 "admin",         Some(DIGEST), Err(Ignored::NotAPush(Delete))),
            ("harbor-scanning-completed.json", Scan,   Some("1.4.2"), None,                 "robot$team+ci", Some(DIGEST), Err(Ignored::NotAPush(Scan))),
        ]
    }

    #[test]
    fn every_sample_parses_to_its_normalised_event() {
        for (file, action, tag, event_id, actor, digest, update) in samples() {
            let events = parse(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let [event] = <[RegistryEvent; 1]>::try_from(events).expect("one event per sample");
            assert_eq!(event.action, action, "{file}");
            assert_eq!(
                event.registry_host.as_deref(),
                Some("harbor.example.test"),
                "{file}"
            );
            assert_eq!(event.repository, "team/app", "{file}");
            assert_eq!(event.tag.as_deref(), tag, "{file}");
            assert_eq!(event.digest.as_ref().map(Digest::as_str), digest, "{file}");
            assert_eq!(event.media_type, None, "{file}");
            assert_eq!(event.event_id.as_deref(), event_id, "{file}");
            assert_eq!(event.actor.as_deref(), Some(actor), "{file}");

            match (event.into_update(SourceKind::Harbor, None), update) {
                (Ok(got), Ok(reference)) => {
                    assert_eq!(got.reference.to_string(), reference, "{file}");
                    assert_eq!(Some(got.digest.as_str()), digest, "{file}");
                    assert_eq!(got.source, SourceKind::Harbor, "{file}");
                    assert_eq!(got.delivery_id.as_deref(), event_id, "{file}");
                    assert_eq!(got.actor.as_deref(), Some(actor), "{file}");
                }
                (Err(got), Err(want)) => assert_eq!(got, want, "{file}"),
                (got, want) => panic!("{file}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn both_formats_give_the_same_event_but_for_the_id() {
        let default = parse(&fixture("harbor-push-artifact.json")).unwrap();
        let cloud = parse(&fixture("harbor-cloudevents-push.json")).unwrap();
        let without_id = |mut events: Vec<RegistryEvent>| {
            events[0].event_id = None;
            events
        };
        assert_eq!(without_id(cloud), default);
    }

    /// A Default-format body with one resource.
    fn default_body(kind: &str, resource: &str, repository: &str) -> Vec<u8> {
        format!(
            r#"{{"type":"{kind}","occur_at":1795386107,"operator":"ci",
                "event_data":{{"resources":[{resource}],"repository":{repository}}}}}"#
        )
        .into_bytes()
    }

    const TEAM_APP: &str = r#"{"name":"app","namespace":"team","repo_full_name":"team/app"}"#;

    fn pushed(tag: &str, url: &str) -> String {
        format!(r#"{{"digest":"{DIGEST}","tag":"{tag}","resource_url":"{url}"}}"#)
    }

    #[test]
    fn a_push_by_digest_has_no_tag_and_is_not_an_update() {
        let resource = pushed(DIGEST, &format!("harbor.example.test/team/app@{DIGEST}"));
        let event = parse(&default_body("PUSH_ARTIFACT", &resource, TEAM_APP))
            .unwrap()
            .remove(0);
        assert_eq!(event.action, Action::Push);
        assert_eq!(event.tag, None);
        assert_eq!(event.registry_host.as_deref(), Some("harbor.example.test"));
        assert_eq!(event.into_update(SourceKind::Harbor, None), Err(Ignored::NoTag));
        // Any digest in `tag`, even of another algorithm, and a blank tag.
        for tag in ["sha512:abc", "  "] {
            let body = default_body("PUSH_ARTIFACT", &pushed(tag, "h.example/team/app"), TEAM_APP);
            assert_eq!(parse(&body).unwrap()[0].tag, None, "{tag}");
        }
    }

    #[test]
    fn type_names_of_every_format_map_to_actions() {
        use Action::*;
        #[rustfmt::skip]
        let cases = [
            ("PUSH_ARTIFACT", Push), ("pushImage", Push), ("harbor.artifact.pushed", Push),
            ("PULL_ARTIFACT", Pull), ("pullImage", Pull), ("harbor.artifact.pulled", Pull),
            ("DELETE_ARTIFACT", Delete), ("deleteImage", Delete), ("harbor.artifact.deleted", Delete),
            ("SCANNING_COMPLETED", Scan), ("SCANNING_FAILED", Scan), ("SCANNING_STOPPED", Scan),
            ("scanningCompleted", Scan), ("scanningFailed", Scan),
            ("harbor.scan.completed", Scan), ("harbor.scan.failed", Scan), ("harbor.scan.stopped", Scan),
            ("QUOTA_EXCEED", Other("QUOTA_EXCEED".into())),
            ("harbor.quota.warned", Other("harbor.quota.warned".into())),
            ("uploadChart", Other("uploadChart".into())),
            ("push_artifact", Other("push_artifact".into())),
        ];
        for (kind, action) in cases {
            let body = default_body(
                kind,
                &pushed("1.4.2", "harbor.example.test/team/app:1.4.2"),
                TEAM_APP,
            );
            assert_eq!(parse(&body).unwrap()[0].action, action, "{kind}");
        }
    }

    #[test]
    fn a_legacy_harbor_1_push_is_an_update() {
        let body = format!(
            r#"{{"type":"pushImage","occur_at":1582640688,"operator":"admin",
                "event_data":{{"resources":[{{"digest":"{DIGEST}","tag":"v1.0",
                "resource_url":"hub.harbor.example.test/test-webhook/debian:v1.0"}}],
                "repository":{{"date_created":1582634337,"name":"debian","namespace":"test-webhook",
                "repo_full_name":"test-webhook/debian","repo_type":"private"}}}}}}"#
        );
        let event = parse(body.as_bytes()).unwrap().remove(0);
        let update = event.into_update(SourceKind::Harbor, None).unwrap();
        assert_eq!(
            update.reference.to_string(),
            "hub.harbor.example.test/test-webhook/debian:v1.0"
        );
        assert_eq!(update.digest.as_str(), DIGEST);
        assert_eq!(update.actor.as_deref(), Some("admin"));
    }

    #[test]
    fn host_and_repository_fall_back_sensibly() {
        #[rustfmt::skip]
        let cases = [
            // (resource_url, repository object, host, repository)
            ("Harbor.Example.TEST:8443/team/sub/app:1.4.2", r#"{"name":"sub/app","namespace":"team","repo_full_name":"team/sub/app"}"#,
                Some("harbor.example.test:8443"), "team/sub/app"),
            ("harbor.example.test/team/sub/app:1.4.2", r#"{"name":"sub/app","namespace":"team"}"#,
                Some("harbor.example.test"), "team/sub/app"),
            ("https://harbor.example.test/team/app:1.4.2", "null",
                Some("harbor.example.test"), "team/app"),
            ("10.0.0.5:8080/team/app@sha256:abc", "{}",
                Some("10.0.0.5:8080"), "team/app"),
            ("[::1]:8443/team/app", r#"{"repo_full_name":""}"#,
                Some("[::1]:8443"), "team/app"),
            ("", TEAM_APP, None, "team/app"),
            ("no-slash", TEAM_APP, None, "team/app"),
            ("", "{}", None, ""),
        ];
        for (url, repository, host, name) in cases {
            let body = default_body("PUSH_ARTIFACT", &pushed("1.4.2", url), repository);
            let event = parse(&body).unwrap().remove(0);
            assert_eq!(event.registry_host.as_deref(), host, "{url}");
            assert_eq!(event.repository, name, "{url}");
        }
        // No host anywhere: the caller's default host applies.
        let body = default_body("PUSH_ARTIFACT", &pushed("1.4.2", ""), TEAM_APP);
        let update = parse(&body)
            .unwrap()
            .remove(0)
            .into_update(SourceKind::Harbor, Some("harbor.internal:8080"))
            .unwrap();
        assert_eq!(
            update.reference.to_string(),
            "harbor.internal:8080/team/app:1.4.2"
        );
    }

    #[test]
    fn one_event_per_resource_each_with_its_own_id() {
        let body = format!(
            r#"{{"specversion":"1.0","id":"abc","type":"harbor.artifact.pushed","operator":"ci",
                "data":{{"resources":[{},{}],"repository":{TEAM_APP}}}}}"#,
            pushed("1.4.2", "harbor.example.test/team/app:1.4.2"),
            pushed("latest", "harbor.example.test/team/app:latest"),
        );
        let events = parse(body.as_bytes()).unwrap();
        let tags: Vec<_> = events.iter().map(|e| e.tag.as_deref()).collect();
        let ids: Vec<_> = events.iter().map(|e| e.event_id.as_deref()).collect();
        assert_eq!(tags, [Some("1.4.2"), Some("latest")]);
        assert_eq!(ids, [Some("abc#0"), Some("abc#1")]);
    }

    #[test]
    fn events_without_resources_give_no_events() {
        let replication = br#"{"type":"REPLICATION","occur_at":1,"operator":"admin",
            "event_data":{"replication":{"harbor_hostname":"harbor.example.test"}}}"#;
        assert_eq!(parse(replication).unwrap(), []);
        let empty = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#;
        assert_eq!(parse(empty).unwrap(), []);
        let cloud = br#"{"specversion":"1.0","id":"x","type":"harbor.tag_retention.finished","data":{}}"#;
        assert_eq!(parse(cloud).unwrap(), []);
    }

    #[test]
    fn lenient_with_absent_null_and_odd_fields() {
        let body = format!(
            r#"{{"type":" PUSH_ARTIFACT ","operator":null,"occur_at":1.5,"extra":[1],
                "event_data":{{"resources":[{{"digest":"{}","tag":"1.4.2","resource_url":null,
                "sbom_overview":{{}}}}],"repository":{TEAM_APP},"custom_attributes":{{"a":"b"}}}}}}"#,
            DIGEST.to_uppercase().replacen("SHA256", "sha256", 1)
        );
        let event = parse(body.as_bytes()).unwrap().remove(0);
        assert_eq!(event.action, Action::Push);
        assert_eq!(event.actor, None);
        assert_eq!(event.registry_host, None);
        assert_eq!(event.digest.as_ref().map(Digest::as_str), Some(DIGEST));

        let bad_digest = default_body(
            "PUSH_ARTIFACT",
            &pushed("1.4.2", "h.example/team/app").replace(DIGEST, "md5:x"),
            TEAM_APP,
        );
        let event = parse(&bad_digest).unwrap().remove(0);
        assert_eq!(event.digest, None);
        assert_eq!(
            event.into_update(SourceKind::Harbor, None),
            Err(Ignored::NoDigest)
        );
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        #[rustfmt::skip]
        let cases: [(&[u8], &str); 14] = [
            (b"",                                                      "empty body"),
            (b"{}",                                                    "no `type`"),
            (b"[]",                                                    "expected a Harbor webhook"),
            (br#"{"events":"x"}"#,                                     "no `type`"),
            (br#"{"type":"PUSH_ARTIFACT"}"#,                           "no `event_data`"),
            (br#"{"type":"","event_data":{}}"#,                        "no `type`"),
            (br#"{"type":7,"event_data":{}}"#,                         "invalid type: integer `7`"),
            (br#"{"type":"PUSH_ARTIFACT","event_data":"x"}"#,          "invalid type: string"),
            (br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":"x"}}"#, "invalid type: string"),
            (br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[1]}}"#, "invalid type: integer"),
            (br#"{"specversion":"1.0","type":"harbor.artifact.pushed","event_data":{}}"#, "without `data`"),
            (br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"#, "not JSON: EOF"),
            (b"\x00\xff\xfe garbage \x80",                             "not JSON"),
            (b"\xef\xbb\xbf{}",                                        "not JSON"),
        ];
        for (body, fragment) in cases {
            match parse(body) {
                Err(ParseError::Malformed { format, detail }) => {
                    assert_eq!(format, "harbor");
                    assert!(
                        detail.contains(fragment),
                        "{body:?}: {detail:?} lacks {fragment:?}"
                    );
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_and_corrupted_samples_never_panic() {
        for file in ["harbor-cloudevents-push.json", "harbor-scanning-completed.json"] {
            let body = fixture(file);
            for end in 0..body.trim_ascii_end().len() {
                assert!(parse(&body[..end]).is_err(), "{file} cut at {end} parsed");
            }
            for position in 0..body.len() {
                for byte in [b'"', b'{', b']', 0xff, b'0', b'A', b'/'] {
                    let mut corrupted = body.clone();
                    corrupted[position] = byte;
                    for event in parse(&corrupted).unwrap_or_default() {
                        assert!(event.tag.as_deref().is_none_or(|tag| !tag.contains(':')));
                        drop(event.into_update(SourceKind::Harbor, None));
                    }
                }
            }
        }
    }
}
