//! Everything that produces [`ImageEvent`]s.
//!
//! Each wire format has a pure parser (`distribution`, `harbor`, `github`,
//! `gitea`, `dockerhub`, `quay`, `acr`, and `ci` for the CI call) that turns
//! a request body into [`RegistryEvent`]s, which keep every event the sender
//! described, updates or not. [`RegistryEvent::into_push`] then decides, with
//! one rule for every source, whether an event is an update: a manifest
//! pushed under a tag. `signature` checks the HMACs of signed sources, and
//! `webhook` holds the HTTP routes, which call the parsers and hand the
//! updates to the one intake path (`crate::intake`).

pub mod acr;
pub mod ci;
pub mod distribution;
pub mod dockerhub;
#[cfg(test)]
mod fuzz_tests;
pub mod gitea;
pub mod github;
pub mod harbor;
pub mod poll;
pub mod quay;
pub mod signature;
pub mod webhook;

use std::fmt;

use chrono::Utc;
use serde::Serialize;

use crate::event::{Digest, ImageEvent, ImageRef, SourceKind, TagPush};

/// What the sender says happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Pull,
    Mount,
    Delete,
    /// A vulnerability scan finished (Harbor).
    Scan,
    /// Anything else the sender may add later, kept verbatim for the log.
    Other(String),
}

/// One event as the sender described it, normalised but not yet judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryEvent {
    pub action: Action,
    /// Lower-case `host[:port]`, when the payload names one.
    pub registry_host: Option<String>,
    /// Path only, no host (`team/app`).
    pub repository: String,
    /// `None` when pushed by digest only or when the event has no tag.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
    /// The manifest media type, when the event carries one.
    pub media_type: Option<String>,
    /// The sender's event id, stable across its retries.
    pub event_id: Option<String>,
    pub actor: Option<String>,
}

/// Why an understood event is not an update. Answered with 200, never an error:
/// a registry that gets an error for these retries forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    NotAPush(Action),
    /// A blob (layer or config) push, not a manifest.
    Blob,
    /// A manifest pushed by digest alone (a platform manifest or a referrer).
    NoTag,
    /// A cosign-style signature/attestation tag (`sha256-<hex>.sig`).
    SignatureTag,
    NoDigest,
    /// The repository or tag does not form a valid image reference.
    BadReference(String),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NotAPush(action) => write!(f, "{action:?} event"),
            Ignored::Blob => f.write_str("blob push"),
            Ignored::NoTag => f.write_str("manifest pushed by digest only"),
            Ignored::SignatureTag => f.write_str("signature or attestation tag"),
            Ignored::NoDigest => f.write_str("push without a digest"),
            Ignored::BadReference(why) => write!(f, "bad reference: {why}"),
        }
    }
}

/// Manifest media types that make a push an image update.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

impl RegistryEvent {
    /// The one rule for every source: a manifest pushed under a tag is an
    /// update. Its digest may be missing (Docker Hub, Quay, Gitea and the CI
    /// call send none); intake resolves it. `default_host` is used when the
    /// payload names no registry host; with neither, the repository is on
    /// Docker Hub.
    pub fn into_push(self, source: SourceKind, default_host: Option<&str>) -> Result<TagPush, Ignored> {
        self.judge(source, default_host, false)
    }

    /// [`RegistryEvent::into_push`] for the sources that always send the
    /// digest (Distribution, Harbor, GitHub, ACR): a push without one is
    /// ignored, as a malformed event of a registry that knows better.
    pub fn into_update(self, source: SourceKind, default_host: Option<&str>) -> Result<ImageEvent, Ignored> {
        let push = self.judge(source, default_host, true)?;
        match push.digest.clone() {
            Some(digest) => Ok(push.with_digest(digest)),
            None => Err(Ignored::NoDigest),
        }
    }

    fn judge(
        self,
        source: SourceKind,
        default_host: Option<&str>,
        digest_required: bool,
    ) -> Result<TagPush, Ignored> {
        if self.action != Action::Push {
            return Err(Ignored::NotAPush(self.action));
        }
        if let Some(media_type) = &self.media_type {
            if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
                return Err(Ignored::Blob);
            }
        }
        let tag = self.tag.ok_or(Ignored::NoTag)?;
        if tag.starts_with("sha256-") {
            return Err(Ignored::SignatureTag);
        }
        if digest_required && self.digest.is_none() {
            return Err(Ignored::NoDigest);
        }
        // Host, repository and tag are checked each as what it is (ImageRef::from_event):
        // parsing them joined would let one spill into another.
        let host = self.registry_host.as_deref().or(default_host);
        let reference = ImageRef::from_event(host, &self.repository, &tag)
            .map_err(|e| Ignored::BadReference(e.to_string()))?;
        Ok(TagPush {
            reference,
            digest: self.digest,
            source,
            delivery_id: self.event_id,
            actor: self.actor,
            received_at: Utc::now(),
        })
    }
}

/// The trimmed text, or `None` when absent or blank.
pub(crate) fn non_empty(text: Option<String>) -> Option<String> {
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
pub(crate) fn url_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str().filter(|host| !host.is_empty())?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Some(host.to_ascii_lowercase())
}

/// A digest from a payload, lower-cased; an invalid one is dropped (and
/// logged) rather than failing the body, which the sender would retry forever.
pub(crate) fn lenient_digest(text: Option<String>, format: &'static str, repository: &str) -> Option<Digest> {
    let text = non_empty(text)?;
    match Digest::parse(&text.to_ascii_lowercase()) {
        Ok(digest) => Some(digest),
        Err(error) => {
            tracing::warn!(format, %repository, %error, "Dropped an invalid digest from an event.");
            None
        }
    }
}

/// The JSON of a body that may be form-encoded instead (`payload=<json>`), as
/// GitHub and Gitea send it when their webhook's content type says so.
pub(crate) fn json_or_form_payload(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let starts_like_form = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{' && *b != b'[');
    if starts_like_form {
        if let Some((_, payload)) = url::form_urlencoded::parse(body).find(|(key, _)| key == "payload") {
            return std::borrow::Cow::Owned(payload.into_owned().into_bytes());
        }
    }
    std::borrow::Cow::Borrowed(body)
}

/// A body that could not be understood at all (answered with 400).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed {format} payload: {detail}")]
    Malformed { format: &'static str, detail: String },
}

impl ParseError {
    /// A body `serde_json` could not read as `format`: say whether it was not
    /// JSON at all or JSON of the wrong shape, and what shape was expected.
    pub(crate) fn from_json(
        format: &'static str,
        expected: &str,
        body: &[u8],
        error: serde_json::Error,
    ) -> Self {
        let detail = if body.iter().all(u8::is_ascii_whitespace) {
            "empty body".to_string()
        } else if error.is_data() {
            format!("expected {expected}: {error}")
        } else {
            format!("not JSON: {error}")
        };
        ParseError::Malformed { format, detail }
    }
}

/// The bytes of a sample payload from the shared `payloads/` folder, which sits
/// beside the repository root (here and in CI).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    const PAYLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/payloads/");
    let path = format!("{PAYLOADS}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// A change to a sample payload, for the parsers' tables of variants.
#[cfg(test)]
pub(crate) type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// One row of a table of variants: its name, the change, what it must give.
#[cfg(test)]
pub(crate) type Variant = (&'static str, Edit, Result<&'static str, Ignored>);

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";

    fn push(host: Option<&str>, repository: &str, tag: &str) -> RegistryEvent {
        RegistryEvent {
            action: Action::Push,
            registry_host: host.map(str::to_string),
            repository: repository.to_string(),
            tag: Some(tag.to_string()),
            digest: Some(Digest::parse(DIGEST).unwrap()),
            media_type: None,
            event_id: None,
            actor: None,
        }
    }

    fn update(event: RegistryEvent, default_host: Option<&str>) -> Result<String, Ignored> {
        let update = event.into_update(SourceKind::Distribution, default_host)?;
        Ok(update.reference.to_string())
    }

    /// Found by the distribution fuzz target: the update named another
    /// repository than the event when host, repository and tag were joined
    /// into one text and parsed.
    #[test]
    fn an_update_names_the_host_and_repository_of_its_event() {
        assert_eq!(
            update(push(Some("registry:80"), "team/app", "1.0"), None).as_deref(),
            Ok("registry:80/team/app:1.0")
        );
        assert_eq!(
            update(push(None, "team/app", "1.0"), Some("localhost")).as_deref(),
            Ok("localhost/team/app:1.0")
        );
        // No host at all is Docker Hub, whatever the repository's first component looks like.
        assert_eq!(
            update(push(None, "a.b/app", "1.0"), None).as_deref(),
            Ok("docker.io/a.b/app:1.0")
        );
        assert_eq!(
            update(push(None, "app", "1.0"), None).as_deref(),
            Ok("docker.io/library/app:1.0")
        );
        // A host that is no host, or a tag that carries a digest, is a bad reference.
        // A registry reached by a bare host name (a compose service, say) was
        // read as a Docker Hub namespace: docker.io/registry/team/app.
        for event in [
            push(Some("registry"), "team/app", "1.0"),
            push(Some("true"), "team/app", "1.0"),
            push(Some("registry.example.test/evil"), "app", "1.0"),
            push(Some("registry.example.test"), "app", &format!("1.0@{DIGEST}")),
        ] {
            assert!(
                matches!(update(event.clone(), None), Err(Ignored::BadReference(_))),
                "{event:?}"
            );
        }
    }
}
