//! Docker Distribution (registry:2 and 3.x) notifications.
//!
//! The body is an envelope `{"events": [...]}`. 2.x sends it as
//! `application/vnd.docker.distribution.events.v1+json`, 3.x as `…v2+json`;
//! the fields hoist reads are the same in both, so the parser decides on the
//! body alone. Every event in the array is returned, updates or not, and
//! [`RegistryEvent::into_update`] judges them.
//!
//! Choices:
//! * The registry host is `request.host` (what the client pushed to), else the
//!   host of an absolute `target.url`; relative URLs (`http.relativeurls`)
//!   give none, and the caller's default host applies.
//! * A `target.digest` that is not a valid digest does not fail the body: that
//!   event keeps `digest: None` (so it is ignored as "no digest") and a warning
//!   is logged. Rejecting the whole body would make the registry retry it
//!   forever, and registries always send valid digests anyway.
//! * An event without an `action` or a `target.repository` is malformed: the
//!   body is not a Distribution notification.

use serde::Deserialize;

use super::{Action, ParseError, RegistryEvent};
use crate::event::Digest;

const FORMAT: &str = "distribution";

#[derive(Deserialize)]
struct Envelope {
    /// Kept as raw values so an error can say which event was wrong.
    events: Vec<serde_json::Value>,
}

/// The same envelope read straight into typed events: one pass and far fewer
/// allocations than going through `Value`s, for the bodies that are fine.
#[derive(Deserialize)]
struct TypedEnvelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    id: Option<String>,
    action: Option<String>,
    target: Option<Target>,
    request: Option<Request>,
    actor: Option<Actor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    media_type: Option<String>,
    digest: Option<String>,
    repository: Option<String>,
    url: Option<String>,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    host: Option<String>,
}

#[derive(Deserialize)]
struct Actor {
    name: Option<String>,
}

/// Parses a notification envelope (v1 or v2 media type) into every event it holds.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    // Fast path. A body it cannot read is read again through `Value`s, which
    // accept the same bodies or more, and say which event is wrong.
    match serde_json::from_slice::<TypedEnvelope>(body) {
        Ok(envelope) => envelope
            .events
            .into_iter()
            .enumerate()
            .map(|(index, event)| event_from(event).map_err(|why| malformed(index, why)))
            .collect(),
        Err(_) => parse_via_values(body),
    }
}

fn malformed(index: usize, why: String) -> ParseError {
    ParseError::Malformed {
        format: FORMAT,
        detail: format!("events[{index}]: {why}"),
    }
}

/// The envelope as `Value`s first, then each event: slower, but an error names the event.
fn parse_via_values(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| ParseError::from_json(FORMAT, "a notification envelope {\"events\": [...]}", body, e))?;
    envelope
        .events
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let event: Event = serde_json::from_value(value).map_err(|e| malformed(index, e.to_string()))?;
            event_from(event).map_err(|why| malformed(index, why))
        })
        .collect()
}

fn event_from(event: Event) -> Result<RegistryEvent, String> {
    let action = match non_empty(event.action).as_deref() {
        None => return Err("no action".to_string()),
        Some("push") => Action::Push,
        Some("pull") => Action::Pull,
        Some("mount") => Action::Mount,
        Some("delete") => Action::Delete,
        Some(other) => Action::Other(other.to_string()),
    };
    let target = event.target.ok_or("no target")?;
    let repository = non_empty(target.repository).ok_or("no target.repository")?;
    let request_host = event.request.and_then(|request| non_empty(request.host));
    let registry_host = match request_host {
        Some(host) => Some(host.to_ascii_lowercase()),
        None => target.url.as_deref().and_then(url_host),
    };
    let digest = non_empty(target.digest).and_then(|text| match Digest::parse(&text.to_ascii_lowercase()) {
        Ok(digest) => Some(digest),
        Err(error) => {
            tracing::warn!(%repository, %error, "Dropped an invalid digest from a Distribution event.");
            None
        }
    });
    Ok(RegistryEvent {
        action,
        registry_host,
        repository,
        tag: non_empty(target.tag),
        digest,
        media_type: non_empty(target.media_type),
        event_id: non_empty(event.id),
        actor: event.actor.and_then(|actor| non_empty(actor.name)),
    })
}

/// The trimmed text, or `None` when absent or blank.
fn non_empty(text: Option<String>) -> Option<String> {
    let text = text?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_string())
    }
}

/// `host[:port]` of an absolute URL, lower-case; `None` for a relative one.
fn url_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str().filter(|host| !host.is_empty())?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;
    use crate::source::{fixture, Ignored};

    const MANIFEST: &str = "sha256:8174f92e800085ab984673fccde5a93e8cb0a4983914502c4575bbd71a6e0516";
    const INDEX: &str = "sha256:e387fc99da36fec6e53168222106fba0531d980a5a2bbd8b59142ae70ca9e03a";
    const PLATFORM: &str = "sha256:cf6d545e4dd1db5d3fb0dd1c992a9242b183f97d9193c13fd439e3dec6ce13c9";
    const LAYER: &str = "sha256:f72d9b1ae0d102ccca4093ceda7095b99016e1a8f2577de23c8ee48796837098";
    const CONFIG: &str = "sha256:afadeb5ddf6ad43400a563ccc7daf58bce2769d993b6e944df55746da15a0d74";
    const V3_INDEX: &str = "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";

    const HOST: Option<&str> = Some("registry.example.test");
    const OCTET: Option<&str> = Some("application/octet-stream");
    const DOCKER_MANIFEST: Option<&str> = Some("application/vnd.docker.distribution.manifest.v2+json");
    const OCI_INDEX: Option<&str> = Some("application/vnd.oci.image.index.v1+json");
    const OCI_MANIFEST: Option<&str> = Some("application/vnd.oci.image.manifest.v1+json");

    /// What one sample must parse to.
    struct Expected {
        file: &'static str,
        action: Action,
        repository: &'static str,
        tag: Option<&'static str>,
        digest: Option<&'static str>,
        media_type: Option<&'static str>,
        event_id: &'static str,
        actor: Option<&'static str>,
        /// The update's reference, or why the event is not one.
        update: Result<&'static str, Ignored>,
    }

    #[rustfmt::skip]
    fn samples() -> Vec<Expected> {
        use Action::*;
        vec![
            Expected { file: "distribution-push-manifest.json", action: Push, repository: "team/app",
                tag: Some("1.0"), digest: Some(MANIFEST), media_type: DOCKER_MANIFEST,
                event_id: "19cbf5d3-3d57-44b2-b35d-c578eb991099", actor: None,
                update: Ok("registry.example.test/team/app:1.0") },
            Expected { file: "distribution-push-tag-only.json", action: Push, repository: "team/app",
                tag: Some("latest"), digest: Some(MANIFEST), media_type: DOCKER_MANIFEST,
                event_id: "89c5b340-42a8-4f79-bbc1-58ef80a432f9", actor: None,
                update: Ok("registry.example.test/team/app:latest") },
            Expected { file: "distribution-push-index.json", action: Push, repository: "team/app",
                tag: Some("2.0"), digest: Some(INDEX), media_type: OCI_INDEX,
                event_id: "030a9e7b-2da9-4068-b11e-ac70c76f6222", actor: None,
                update: Ok("registry.example.test/team/app:2.0") },
            Expected { file: "distribution-push-platform-manifest.json", action: Push, repository: "team/app",
                tag: None, digest: Some(PLATFORM), media_type: OCI_MANIFEST,
                event_id: "6bdd0b96-d58d-4bbf-8a8e-4c12d0d41bd5", actor: None,
                update: Err(Ignored::NoTag) },
            Expected { file: "distribution-push-layer.json", action: Push, repository: "team/app",
                tag: None, digest: Some(LAYER), media_type: OCTET,
                event_id: "293ae5ae-433b-4dad-86b3-f902867151d6", actor: None,
                update: Err(Ignored::Blob) },
            Expected { file: "distribution-push-config-blob.json", action: Push, repository: "team/app",
                tag: None, digest: Some(CONFIG), media_type: OCTET,
                event_id: "1e1b791d-0057-456b-9dbe-8f9c7a05357d", actor: None,
                update: Err(Ignored::Blob) },
            Expected { file: "distribution-pull.json", action: Pull, repository: "team/app",
                tag: Some("2.0"), digest: Some(INDEX), media_type: OCI_INDEX,
                event_id: "c591d445-b730-4397-960a-452e26d0d8f7", actor: None,
                update: Err(Ignored::NotAPush(Pull)) },
            Expected { file: "distribution-pull-blob-head.json", action: Pull, repository: "team/app",
                tag: None, digest: Some(CONFIG), media_type: OCTET,
                event_id: "c6ffef38-070f-487b-b32c-830780edc9f1", actor: None,
                update: Err(Ignored::NotAPush(Pull)) },
            Expected { file: "distribution-mount.json", action: Mount, repository: "team/other",
                tag: None, digest: Some(LAYER), media_type: OCTET,
                event_id: "77569706-5ed7-4e0b-82f6-5f9b67901121", actor: None,
                update: Err(Ignored::NotAPush(Mount)) },
            Expected { file: "distribution-delete-manifest.json", action: Delete, repository: "team/app",
                tag: None, digest: Some(MANIFEST), media_type: None,
                event_id: "ffa4e63f-4db0-4cb5-8885-913a913e8986", actor: None,
                update: Err(Ignored::NotAPush(Delete)) },
            Expected { file: "distribution-delete-tag.json", action: Delete, repository: "team/app",
                tag: Some("latest"), digest: None, media_type: None,
                event_id: "d1dc788b-4acb-45ff-a2fd-4b429915c415", actor: None,
                update: Err(Ignored::NotAPush(Delete)) },
            Expected { file: "distribution-v3-push-index.json", action: Push, repository: "team/app",
                tag: Some("1.4.2"), digest: Some(V3_INDEX), media_type: OCI_INDEX,
                event_id: "7d3c6f3e-9a51-4c84-8f0e-2f1b8d5f0a11", actor: Some("ci-bot"),
                update: Ok("registry.example.test/team/app:1.4.2") },
            Expected { file: "distribution-v3-delete-tag.json", action: Delete, repository: "team/app",
                tag: Some("1.4.1"), digest: None, media_type: None,
                event_id: "2b1f0c9e-5d3a-4e8b-a7c6-1f2e3d4c5b6a", actor: Some("ci-bot"),
                update: Err(Ignored::NotAPush(Delete)) },
        ]
    }

    #[test]
    fn every_sample_parses_to_its_normalised_event() {
        for expected in samples() {
            let file = expected.file;
            let events = parse(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let [event] = <[RegistryEvent; 1]>::try_from(events).expect("one event per sample");
            assert_eq!(event.action, expected.action, "{file}");
            assert_eq!(event.registry_host.as_deref(), HOST, "{file}");
            assert_eq!(event.repository, expected.repository, "{file}");
            assert_eq!(event.tag.as_deref(), expected.tag, "{file}");
            assert_eq!(
                event.digest.as_ref().map(Digest::as_str),
                expected.digest,
                "{file}"
            );
            assert_eq!(event.media_type.as_deref(), expected.media_type, "{file}");
            assert_eq!(event.event_id.as_deref(), Some(expected.event_id), "{file}");
            assert_eq!(event.actor.as_deref(), expected.actor, "{file}");

            let update = event.into_update(SourceKind::Distribution, None);
            match (update, expected.update) {
                (Ok(update), Ok(reference)) => {
                    assert_eq!(update.reference.to_string(), reference, "{file}");
                    assert_eq!(Some(update.digest.as_str()), expected.digest, "{file}");
                    assert_eq!(update.source, SourceKind::Distribution, "{file}");
                    assert_eq!(update.delivery_id.as_deref(), Some(expected.event_id), "{file}");
                    assert_eq!(update.actor.as_deref(), expected.actor, "{file}");
                }
                (Err(ignored), Err(expected)) => assert_eq!(ignored, expected, "{file}"),
                (got, want) => panic!("{file}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// A one-event envelope around `target`, with `rest` spliced into the event.
    fn envelope(target: &str, rest: &str) -> Vec<u8> {
        format!(r#"{{"events":[{{"id":"e1","action":"push","target":{target}{rest}}}]}}"#).into_bytes()
    }

    #[test]
    fn every_event_of_an_envelope_is_returned_in_order() {
        let body = format!(
            r#"{{"events":[
                {{"action":"push","target":{{"repository":"team/app","digest":"{LAYER}",
                  "mediaType":"application/octet-stream"}}}},
                {{"action":"push","target":{{"repository":"team/app","digest":"{MANIFEST}","tag":"1.0",
                  "mediaType":"application/vnd.docker.distribution.manifest.v2+json"}},
                  "request":{{"host":"127.0.0.1:5000"}}}},
                {{"action":"frobnicate","target":{{"repository":"team/app"}}}}
            ]}}"#
        );
        let events = parse(body.as_bytes()).unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.action.clone()).collect();
        assert_eq!(
            actions,
            [Action::Push, Action::Push, Action::Other("frobnicate".into())]
        );
        assert_eq!(events[1].registry_host.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(events[0].registry_host, None);
        assert_eq!(events[0].event_id, None);
        assert_eq!(parse(br#"{"events":[]}"#).unwrap(), []);
    }

    #[test]
    fn the_host_comes_from_the_request_else_from_an_absolute_url() {
        let url = |url: &str| format!(r#"{{"repository":"team/app","url":"{url}"}}"#);
        #[rustfmt::skip]
        let cases = [
            (envelope(&url("https://x.example/v2/"), r#","request":{"host":"Registry.Example.TEST:5000"}"#),
                Some("registry.example.test:5000")),
            (envelope(&url("https://Public.Example.Test/v2/team/app/manifests/sha256:x"), r#","request":{}"#),
                Some("public.example.test")),
            (envelope(&url("http://10.0.0.5:5000/v2/team/app/blobs/sha256:x"), r#","request":{"host":""}"#),
                Some("10.0.0.5:5000")),
            (envelope(&url("https://[::1]:5000/v2/"), ""),              Some("[::1]:5000")),
            (envelope(&url("https://registry.example.test:443/v2/"), ""), Some("registry.example.test")),
            (envelope(&url("/v2/team/app/manifests/sha256:x"), ""),   None),
            (envelope(&url("not a url"), r#","request":null"#),        None),
            (envelope(r#"{"repository":"team/app"}"#, ""),             None),
        ];
        for (body, host) in cases {
            let events = parse(&body).unwrap();
            assert_eq!(
                events[0].registry_host.as_deref(),
                host,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn without_a_host_the_default_host_is_used() {
        let target = format!(
            r#"{{"repository":"team/app","tag":"1.0","digest":"{MANIFEST}",
                "mediaType":"application/vnd.oci.image.manifest.v1+json"}}"#
        );
        let event = parse(&envelope(&target, "")).unwrap().remove(0);
        let update = event
            .into_update(SourceKind::Distribution, Some("localhost:5000"))
            .unwrap();
        assert_eq!(update.reference.to_string(), "localhost:5000/team/app:1.0");
    }

    #[test]
    fn lenient_with_absent_null_and_blank_fields() {
        let target = format!(
            r#"{{"repository":" team/app ","tag":"","digest":"{}","mediaType":null,"size":1.5,
                "length":"odd","references":[{{"platform":{{}}}}],"somethingNew":[1,2]}}"#,
            MANIFEST.to_uppercase().replacen("SHA256", "sha256", 1)
        );
        let body = envelope(
            &target,
            r#","actor":null,"source":{},"timestamp":"2026-11-22T22:20:59-08:00""#,
        );
        let event = parse(&body).unwrap().remove(0);
        assert_eq!(event.repository, "team/app");
        assert_eq!(event.tag, None);
        assert_eq!(event.media_type, None);
        assert_eq!(event.actor, None);
        // Upper-case hex is accepted and normalised.
        assert_eq!(event.digest.as_ref().map(Digest::as_str), Some(MANIFEST));
        let event = parse(&envelope(
            r#"{"repository":"team/app"}"#,
            r#","actor":{"name":""}"#,
        ))
        .unwrap()
        .remove(0);
        assert_eq!(event.actor, None);
    }

    #[test]
    fn an_invalid_digest_drops_the_digest_not_the_body() {
        let target = r#"{"repository":"team/app","tag":"1.0","digest":"sha256:short",
            "mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        let event = parse(&envelope(target, "")).unwrap().remove(0);
        assert_eq!(event.digest, None);
        assert_eq!(event.tag.as_deref(), Some("1.0"));
        assert_eq!(
            event.into_update(SourceKind::Distribution, HOST),
            Err(Ignored::NoDigest)
        );
    }

    #[test]
    fn a_bad_repository_is_ignored_not_fatal() {
        let target = format!(
            r#"{{"repository":"Team/App","tag":"1.0","digest":"{MANIFEST}",
                "mediaType":"application/vnd.oci.image.manifest.v1+json"}}"#
        );
        let event = parse(&envelope(&target, "")).unwrap().remove(0);
        match event.into_update(SourceKind::Distribution, HOST) {
            Err(Ignored::BadReference(why)) => assert!(why.contains("lower-case"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        #[rustfmt::skip]
        let cases: [(&[u8], &str); 16] = [
            (b"",                                   "empty body"),
            (b"  \n",                               "empty body"),
            (b"{}",                                 "missing field `events`"),
            (b"[]",                                 "expected a notification envelope"),
            (b"null",                               "expected a notification envelope"),
            (b"42",                                 "expected a notification envelope"),
            (br#"{"events":"x"}"#,                  "invalid type: string"),
            (br#"{"events":null}"#,                 "invalid type: null"),
            (br#"{"events":[1]}"#,                  "events[0]: invalid type: integer"),
            (br#"{"events":[{}]}"#,                 "events[0]: no action"),
            (br#"{"events":[{"action":"push"}]}"#,  "events[0]: no target"),
            (br#"{"events":[{"action":"push","target":{}}]}"#, "events[0]: no target.repository"),
            (br#"{"events":[{"action":"push","target":{"repository":"a"}}, {"action":7}]}"#,
                                                    "events[1]: invalid type: integer `7`"),
            (br#"{"events":[{"action":"push","target":{"repository":"a""#, "not JSON: EOF"),
            (b"\x00\xff\xfe garbage \x80",          "not JSON"),
            (b"<html>502 Bad Gateway</html>",       "not JSON"),
        ];
        for (body, fragment) in cases {
            match parse(body) {
                Err(ParseError::Malformed { format, detail }) => {
                    assert_eq!(format, "distribution");
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
    fn the_fast_path_reads_every_body_as_the_value_path_does() {
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/payloads/"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("distribution-") && name.ends_with(".json"));
        let mut compared = 0;
        for file in files {
            let body = fixture(&file);
            for position in (0..body.len()).step_by(7) {
                for byte in [b'"', b'}', b'A', b' '] {
                    let mut corrupted = body.clone();
                    corrupted[position] = byte;
                    assert_eq!(
                        format!("{:?}", parse(&corrupted)),
                        format!("{:?}", parse_via_values(&corrupted)),
                        "{file} with {:?} at {position}",
                        byte as char
                    );
                    compared += 1;
                }
            }
            assert_eq!(parse(&body).unwrap(), parse_via_values(&body).unwrap(), "{file}");
        }
        assert!(compared > 1000);
        // A duplicate key fails the typed read; the value path keeps the last one, as before.
        let body = br#"{"events":[{"id":"a","id":"b","action":"pull","target":{"repository":"r"}}]}"#;
        assert_eq!(parse(body).unwrap()[0].event_id.as_deref(), Some("b"));
    }

    #[test]
    fn truncated_and_corrupted_samples_never_panic() {
        let body = fixture("distribution-v3-push-index.json");
        for end in 0..body.trim_ascii_end().len() {
            assert!(parse(&body[..end]).is_err(), "a body cut at {end} parsed");
        }
        let mut updates = 0;
        for position in 0..body.len() {
            for byte in [b'"', b'{', b']', 0xff, b'0', b'A'] {
                let mut corrupted = body.clone();
                corrupted[position] = byte;
                for event in parse(&corrupted).unwrap_or_default() {
                    updates += usize::from(event.into_update(SourceKind::Distribution, None).is_ok());
                }
            }
        }
        // Most single-byte changes inside strings still leave a valid update.
        assert!(updates > 0);
    }
}
