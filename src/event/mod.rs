//! The normalised event: the contract between the sources and the rest.
//!
//! Every source (Distribution, Harbor, polling) turns what it receives into an
//! [`ImageEvent`]: "this repository on this registry now has this tag at this
//! digest". Nothing downstream knows which wire format it came from.

pub mod reference;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use reference::{Aliases, ImageRef, ReferenceError, TagKey};

/// A content digest such as `sha256:<64 hex>`, validated on construction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    /// Parses `algorithm:hex`. sha256 must have 64 lower-case hex digits and
    /// sha512 128; other algorithms need at least 32 hex digits.
    pub fn parse(text: &str) -> Result<Digest, ReferenceError> {
        let bad = || ReferenceError::BadDigest(text.to_string());
        let (algorithm, hex) = text.split_once(':').ok_or_else(bad)?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        let hex_ok = hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        let length_ok = match algorithm {
            "sha256" => hex.len() == 64,
            "sha512" => hex.len() == 128,
            _ => hex.len() >= 32,
        };
        if algorithm_ok && hex_ok && length_ok {
            Ok(Digest(text.to_string()))
        } else {
            Err(bad())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for log lines and messages.
    pub fn short(&self) -> &str {
        let hex = self.0.split_once(':').map_or(self.0.as_str(), |(_, hex)| hex);
        &hex[..hex.len().min(12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which kind of source produced an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Distribution,
    Harbor,
    /// GitHub `package` events for GHCR.
    Github,
    /// Gitea and Forgejo package events.
    Gitea,
    DockerHub,
    Quay,
    /// Azure Container Registry webhooks.
    Acr,
    /// `POST /v1/update`, called by a CI job.
    Ci,
    Poll,
    /// `hoist rollback NAME` (`POST /v1/rollback`): the image NAME ran before.
    Rollback,
}

impl SourceKind {
    /// Every kind, for parsing names back.
    pub const ALL: [SourceKind; 10] = [
        SourceKind::Distribution,
        SourceKind::Harbor,
        SourceKind::Github,
        SourceKind::Gitea,
        SourceKind::DockerHub,
        SourceKind::Quay,
        SourceKind::Acr,
        SourceKind::Ci,
        SourceKind::Poll,
        SourceKind::Rollback,
    ];

    /// The name in metrics (`source` label), the journal and the wire between peers.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Distribution => "distribution",
            SourceKind::Harbor => "harbor",
            SourceKind::Github => "github",
            SourceKind::Gitea => "gitea",
            SourceKind::DockerHub => "dockerhub",
            SourceKind::Quay => "quay",
            SourceKind::Acr => "acr",
            SourceKind::Ci => "ci",
            SourceKind::Poll => "poll",
            SourceKind::Rollback => "rollback",
        }
    }

    /// The kind [`SourceKind::as_str`] names.
    pub fn from_name(name: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// How a message says the push was heard ("GitHub webhook").
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::Distribution => "registry notification",
            SourceKind::Harbor => "Harbor webhook",
            SourceKind::Github => "GitHub webhook",
            SourceKind::Gitea => "Gitea webhook",
            SourceKind::DockerHub => "Docker Hub webhook",
            SourceKind::Quay => "Quay notification",
            SourceKind::Acr => "ACR webhook",
            SourceKind::Ci => "CI call",
            SourceKind::Poll => "polling",
            SourceKind::Rollback => "rollback",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One update: `reference` (registry/repository:tag, no digest) now points at `digest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageEvent {
    /// The tagged reference, normalised (registry host lower-case, tag set, no digest).
    pub reference: ImageRef,
    /// The manifest (or index) digest the tag now names.
    pub digest: Digest,
    pub source: SourceKind,
    /// The sender's id for this delivery (Distribution `events[].id`, CloudEvent `id`),
    /// stable across the sender's retries, so a redelivery can be recognised.
    pub delivery_id: Option<String>,
    /// Who pushed, where the sender says so.
    pub actor: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// The delivery id of a rollback job names its one target: `rollback/NAME/N`.
const ROLLBACK_PREFIX: &str = "rollback/";

impl ImageEvent {
    /// A rollback of the target `name` to `digest` of its tag `reference`: a
    /// job like any other, limited to that one target.
    pub fn rollback(
        reference: ImageRef,
        digest: Digest,
        name: &str,
        received_at: DateTime<Utc>,
    ) -> ImageEvent {
        ImageEvent {
            reference,
            digest,
            source: SourceKind::Rollback,
            // Unique per request (a second rollback is a job of its own); the
            // name survives a restart in the journal with the job.
            delivery_id: Some(format!(
                "{ROLLBACK_PREFIX}{name}/{}",
                received_at.timestamp_nanos_opt().unwrap_or_default()
            )),
            actor: None,
            received_at,
        }
    }

    /// The one target of a rollback job; `None` for a push (every target of the tag).
    pub fn only_target(&self) -> Option<&str> {
        if self.source != SourceKind::Rollback {
            return None;
        }
        let rest = self.delivery_id.as_deref()?.strip_prefix(ROLLBACK_PREFIX)?;
        rest.rsplit_once('/').map(|(name, _)| name)
    }
}

/// A tag push as its source reported it, before its digest is known for sure.
/// Docker Hub, Quay, Gitea and a CI call name no digest: intake asks the
/// registry the matching targets pull from (`intake::resolve`) before the
/// push becomes an [`ImageEvent`] and is journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPush {
    /// The tagged reference, normalised (no digest).
    pub reference: ImageRef,
    /// The digest the source named, if it named one.
    pub digest: Option<Digest>,
    pub source: SourceKind,
    pub delivery_id: Option<String>,
    pub actor: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl TagPush {
    /// The update, now that the tag's digest is known.
    pub fn with_digest(self, digest: Digest) -> ImageEvent {
        ImageEvent {
            reference: self.reference,
            digest,
            source: self.source,
            delivery_id: self.delivery_id,
            actor: self.actor,
            received_at: self.received_at,
        }
    }
}

impl From<ImageEvent> for TagPush {
    fn from(event: ImageEvent) -> Self {
        TagPush {
            reference: event.reference,
            digest: Some(event.digest),
            source: event.source,
            delivery_id: event.delivery_id,
            actor: event.actor,
            received_at: event.received_at,
        }
    }
}

/// The digest a service image is pinned to (`...@sha256:...`).
pub fn pinned_digest(image: &str) -> Option<Digest> {
    image
        .rsplit_once('@')
        .and_then(|(_, digest)| Digest::parse(digest).ok())
}

#[cfg(test)]
mod tests {
    use super::SourceKind;

    #[test]
    fn every_source_name_reads_back() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(SourceKind::from_name("gitlab"), None);
    }

    #[test]
    fn a_rollback_names_its_one_target() {
        use super::{Digest, ImageEvent, ImageRef};
        let reference = ImageRef::parse("127.0.0.1:5000/team/app:1.4").unwrap();
        let digest = Digest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap();
        let event = ImageEvent::rollback(reference.clone(), digest.clone(), "web-1", chrono::Utc::now());
        assert_eq!(event.only_target(), Some("web-1"));
        let push = ImageEvent {
            source: SourceKind::Ci,
            ..event
        };
        assert_eq!(
            push.only_target(),
            None,
            "only a rollback is limited to one target"
        );
    }
}
