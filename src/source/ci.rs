//! `POST /v1/update`: a CI job says which image it pushed.
//!
//! The body is `{"image": "registry.example.com/team/app:1.4", "digest":
//! "sha256:..."}`, the digest optional. Watchtower's form of the same route,
//! `POST /v1/update?image=team/app:1.4,other:2` with no body, is accepted too
//! ([`parse_query`]). The caller authenticates with the bearer token, as
//! registries do.
//!
//! Unlike a registry's payload, the caller wrote this by hand, so everything
//! wrong in it is an error (400) that says what: an image that is not a
//! reference, an image with no tag, an invalid digest, or a digest in the
//! image that differs from `digest`. An image without a tag means `:latest`,
//! as with `docker pull`. Without a digest, intake resolves the tag's digest
//! against the registry.

use serde::Deserialize;

use super::{Action, ParseError, RegistryEvent};
use crate::event::{Digest, ImageRef};

const FORMAT: &str = "update";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    image: String,
    digest: Option<String>,
}

/// Parses `{"image": ..., "digest": ...}`.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let request: Request = serde_json::from_slice(body).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "{\"image\": \"<registry>/<repository>:<tag>\", \"digest\": \"sha256:...\" (optional)}",
            body,
            e,
        )
    })?;
    let digest = match request.digest.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(Digest::parse(text).map_err(|e| malformed(e.to_string()))?),
    };
    Ok(vec![event(&request.image, digest)?])
}

/// Parses Watchtower's `image=<ref>,<ref>` query value: one push each, no digest.
pub fn parse_query(images: &str) -> Result<Vec<RegistryEvent>, ParseError> {
    let events: Vec<RegistryEvent> = images
        .split(',')
        .map(str::trim)
        .filter(|image| !image.is_empty())
        .map(|image| event(image, None))
        .collect::<Result<_, _>>()?;
    if events.is_empty() {
        return Err(malformed("`image=` names no image".into()));
    }
    Ok(events)
}

fn malformed(detail: String) -> ParseError {
    ParseError::Malformed {
        format: FORMAT,
        detail,
    }
}

fn event(image: &str, digest: Option<Digest>) -> Result<RegistryEvent, ParseError> {
    let reference = ImageRef::parse(image.trim()).map_err(|e| malformed(e.to_string()))?;
    let Some(tag) = reference.tag() else {
        return Err(malformed(format!(
            "{image:?} names no tag: name the tag that was pushed (and its digest in \"digest\")"
        )));
    };
    let digest = match (reference.digest(), digest) {
        (Some(in_image), Some(given)) if *in_image != given => {
            return Err(malformed(format!(
                "the image's digest {in_image} differs from \"digest\" {given}"
            )))
        }
        (in_image, given) => given.or_else(|| in_image.cloned()),
    };
    Ok(RegistryEvent {
        action: Action::Push,
        registry_host: Some(reference.registry().to_string()),
        repository: reference.repository().to_string(),
        tag: Some(tag.to_string()),
        digest,
        media_type: None,
        event_id: None,
        actor: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;

    const DIGEST: &str = "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";
    const OTHER: &str = "sha256:61e2d055ca7c99791d17a1f7a49b3406c007356acdc1d728e26b389ce0dd6908";

    /// The reference and digest of a request's push, or the error.
    type Pushed = Result<(String, Option<String>), String>;

    fn push(body: &str) -> Pushed {
        let mut events = parse(body.as_bytes()).map_err(|e| e.to_string())?;
        assert_eq!(events.len(), 1);
        let push = events
            .remove(0)
            .into_push(SourceKind::Ci, None)
            .map_err(|e| e.to_string())?;
        Ok((push.reference.to_string(), push.digest.map(|d| d.to_string())))
    }

    #[test]
    fn table() {
        let ok = |reference: &str, digest: Option<&str>| -> Pushed {
            Ok((reference.to_string(), digest.map(String::from)))
        };
        #[rustfmt::skip]
        let cases: Vec<(String, Pushed)> = vec![
            (r#"{"image": "registry.example.com/team/app:1.4"}"#.into(), ok("registry.example.com/team/app:1.4", None)),
            (format!(r#"{{"image": "127.0.0.1:5000/app:1.4", "digest": "{DIGEST}"}}"#), ok("127.0.0.1:5000/app:1.4", Some(DIGEST))),
            (r#"{"image": "nginx", "digest": null}"#.into(), ok("docker.io/library/nginx:latest", None)),
            (format!(r#"{{"image": "ghcr.io/org/app:2@{DIGEST}"}}"#), ok("ghcr.io/org/app:2", Some(DIGEST))),
            (format!(r#"{{"image": "ghcr.io/org/app:2@{DIGEST}", "digest": "{DIGEST}"}}"#), ok("ghcr.io/org/app:2", Some(DIGEST))),
        ];
        for (body, expected) in cases {
            assert_eq!(push(&body), expected, "{body}");
        }
    }

    #[test]
    fn mistakes_are_errors_that_say_what() {
        #[rustfmt::skip]
        let cases: Vec<(String, &str)> = vec![
            ("".into(),                                           "empty body"),
            ("{}".into(),                                         "missing field `image`"),
            (r#"{"image": 5}"#.into(),                            "expected {\"image\""),
            (r#"{"image": "Team/App:1"}"#.into(),                 "invalid image reference"),
            (r#"{"image": "app:1", "digest": "sha256:12"}"#.into(), "invalid digest"),
            (format!(r#"{{"image": "app@{DIGEST}"}}"#),            "names no tag"),
            (format!(r#"{{"image": "app:1@{DIGEST}", "digest": "{OTHER}"}}"#), "differs"),
            (r#"{"image": "app:1", "tag": "2"}"#.into(),           "unknown field `tag`"),
        ];
        for (body, detail) in cases {
            let error = push(&body).unwrap_err();
            assert!(error.contains(detail), "{body}: {error}");
            assert!(error.starts_with("malformed update payload"), "{error}");
        }
    }

    #[test]
    fn watchtowers_query_names_several_images() {
        let events = parse_query("team/app:1.4, registry.example.com/other:2,").unwrap();
        let references: Vec<String> = events
            .into_iter()
            .map(|e| e.into_push(SourceKind::Ci, None).unwrap().reference.to_string())
            .collect();
        assert_eq!(
            references,
            ["docker.io/team/app:1.4", "registry.example.com/other:2"]
        );
        assert!(parse_query(" , ").is_err());
        assert!(parse_query("Bad/Name").is_err());
    }
}
