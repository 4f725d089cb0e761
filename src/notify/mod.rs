//! Telling people what changed.
//!
//! A [`Notification`] is one message per push, built after every target of
//! that push has an outcome. It is rendered once per channel (`render` holds the
//! shared wording) and sent off the deploy path.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::deploy::Outcome;
use crate::event::{Digest, ImageRef, SourceKind};

/// One push, and what became of each target it matched.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    /// The tagged reference that was pushed (no digest).
    pub image: ImageRef,
    pub new_digest: Digest,
    pub source: SourceKind,
    /// Who pushed, where the event says so.
    pub actor: Option<String>,
    /// OCI labels of the new image (`org.opencontainers.image.version`, `.revision`, `.source`).
    pub image_version: Option<String>,
    pub image_revision: Option<String>,
    pub image_source: Option<String>,
    pub targets: Vec<TargetReport>,
    pub started_at: DateTime<Utc>,
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

/// One target's part in a [`Notification`].
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// Container (or service) name.
    pub name: String,
    /// `com.docker.compose.project` and `.service`, when present.
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    /// The digest the target ran before, when known.
    pub old_digest: Option<Digest>,
    pub outcome: Outcome,
}

mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_millis() as u64)
    }
}

/// Which channels are on. STUB: filled by the notify module's author.
#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {}

impl NotifyConfig {
    /// Reads `HOIST_SLACK_WEBHOOK_URL`, `HOIST_TEAMS_WEBHOOK_URL`, `HOIST_SMTP_URL`,
    /// `HOIST_EMAIL_FROM`, `HOIST_EMAIL_TO`, recording problems in the reader.
    pub fn from_reader(reader: &mut crate::config::Reader<'_>) -> NotifyConfig {
        let _ = reader;
        NotifyConfig {}
    }
}
