//! Telling people what changed.
//!
//! A [`Notification`] is one message per push, built after every target of
//! that push has an outcome. It is rendered once per channel (`render` holds the
//! shared wording) and sent off the deploy path.
//!
//! This module owns the [`Channel`] contract (Slack, Teams and email each
//! implement it in their own file), the channel configuration read from the
//! environment (`config`), and the [`Notifier`] (`dispatch`): one task per channel, fed by
//! a bounded queue, that sends with a time limit per attempt and retries
//! transient failures on `crate::backoff::Backoff`. [`Notifier::notify`] never
//! waits on the network, so a slow or dead receiver cannot delay a deploy or a
//! rollback; every final failure is logged and counted instead.
//!
//! Secrets (webhook URLs, the SMTP password) live in [`crate::secret::Secret`] and are only
//! exposed where a request is made; error texts are scrubbed of them before
//! they reach a log line or a [`ChannelStatus`].

pub mod email;
pub mod render;
pub mod slack;
pub mod teams;
mod webhook;

mod config;
mod dispatch;

pub use config::{Delivery, NotifyConfig};
pub use dispatch::{ChannelStatus, Notifier};

use std::future::Future;
use std::pin::Pin;
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
    /// A title of its own, for a message that is not about a push's
    /// redeploy (a base image moved: `crate::base`); `None` for a push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
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
    /// What happened on the way that the outcome alone does not say, e.g.
    /// "engine restarted during the update; rolled back, then updated at ...".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Containers that depend on this target (its network namespace, volumes
    /// or links) and were recreated with it, each with its outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<crate::deploy::dependents::DependentReport>,
    /// What the new image changes against the one the target ran (ports,
    /// volumes, user, entrypoint and cmd, healthcheck, stop signal, working
    /// dir, env variable names): `deploy::contract`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contract: Vec<String>,
}

impl Notification {
    /// Every target already ran the pushed digest (a redelivery, a repeated
    /// poll): nothing to tell unless `HOIST_NOTIFY_UNCHANGED` asks for it.
    pub fn changed_nothing(&self) -> bool {
        // A message with a title of its own (a base image moved) is not a redeploy.
        self.headline.is_none()
            && !self.targets.is_empty()
            && self
                .targets
                .iter()
                .all(|t| t.outcome == crate::deploy::Outcome::AlreadyCurrent)
    }
}

mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_millis() as u64)
    }
}

/// Names of the variables this module reads.
pub mod keys {
    pub const SLACK_WEBHOOK_URL: &str = "HOIST_SLACK_WEBHOOK_URL";
    pub const TEAMS_WEBHOOK_URL: &str = "HOIST_TEAMS_WEBHOOK_URL";
    pub const SMTP_URL: &str = "HOIST_SMTP_URL";
    pub const SMTP_CA_FILE: &str = "HOIST_SMTP_CA_FILE";
    pub const EMAIL_FROM: &str = "HOIST_EMAIL_FROM";
    pub const EMAIL_TO: &str = "HOIST_EMAIL_TO";
    pub const NOTIFY_TIMEOUT: &str = "HOIST_NOTIFY_TIMEOUT";
    pub const NOTIFY_RETRIES: &str = "HOIST_NOTIFY_RETRIES";
}

/// Metric names, each labelled `channel`.
pub mod metric {
    /// Messages a receiver accepted.
    pub const SENT: &str = "hoist_notify_sent_total";
    /// Messages given up on after the last attempt (or at once, for permanent errors).
    pub const FAILURES: &str = "hoist_notify_failures_total";
    /// Messages never attempted: the queue was full, or the notifier was shut down.
    pub const DROPPED: &str = "hoist_notify_dropped_total";
    /// Attempts that failed transiently and were tried again.
    pub const RETRIES: &str = "hoist_notify_retries_total";
}

/// A boxed future, so that [`Channel`] can be used as `dyn Channel`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way of telling people: Slack, Teams, email.
///
/// The methods return boxed futures rather than being `async fn`, because the
/// notifier holds its channels as `Arc<dyn Channel>` (and the app's tests may
/// hand it their own).
pub trait Channel: Send + Sync + 'static {
    /// Short lower-case name for logs, metrics labels and status: `slack`, `teams`, `email`.
    fn name(&self) -> &'static str;

    /// Renders and sends one message, once. The [`Notifier`] adds the time
    /// limit and the retries.
    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>>;

    /// A cheap check that the receiver is reachable, without sending a
    /// message. `Ok` carries a short detail for the status page.
    fn check(&self) -> BoxFuture<'_, Result<String, SendError>>;
}

/// Why one attempt to send failed. The texts never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No answer within the limit.
    #[error("timed out after {}", render::duration(*.0))]
    Timeout(Duration),
    /// The connection could not be made, or broke off.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The webhook answered with an error status.
    #[error("http status {status}{}{}", reason_phrase(*.status), body_suffix(.body))]
    Status {
        status: u16,
        /// The receiver's `Retry-After`, when it sent one (Slack does with 429).
        retry_after: Option<Duration>,
        /// The start of the response body (Slack says `invalid_payload`, ...).
        body: String,
    },
    /// The SMTP server refused, or the SMTP session failed.
    #[error("smtp: {detail}")]
    Smtp { transient: bool, detail: String },
    /// The message or request could not be built; sending again would not help.
    #[error("invalid message: {0}")]
    Invalid(String),
}

fn reason_phrase(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl SendError {
    /// Whether trying again later may succeed: time-outs, connection errors,
    /// HTTP 429 and 5xx, SMTP 4xx replies. Other HTTP 4xx, SMTP 5xx (a wrong
    /// password) and bad messages are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Timeout(_) | SendError::Connect(_) => true,
            SendError::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            SendError::Smtp { transient, .. } => *transient,
            SendError::Invalid(_) => false,
        }
    }

    /// How long the receiver asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Why the notifier could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The HTTP client for a webhook channel could not be built.
    #[error("could not build the http client for {channel}: {detail}")]
    Client { channel: &'static str, detail: String },
    /// `HOIST_SMTP_CA_FILE` could not be read or holds no certificate.
    #[error("could not use the smtp ca file {path:?}: {detail}")]
    CaFile {
        path: std::path::PathBuf,
        detail: String,
    },
    /// The SMTP transport could not be set up (TLS parameters).
    #[error("could not set up the smtp transport: {0}")]
    Smtp(String),
}

/// Replaces every occurrence of each secret (4 characters or more, so that a
/// `/` path cannot blank a whole text) with `***`.
pub(crate) fn scrub(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets {
        if secret.len() >= 4 && text.contains(secret) {
            text = text.replace(secret, "***");
        }
    }
    text
}

/// An error and its causes on one line. Display impls differ on whether
/// they include their cause (reqwest does not, lettre does, and repeats its
/// kind: "Connection error: Connection error: ..."), so each cause is added
/// only when not already shown, and repeated parts are dropped.
pub(crate) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}
