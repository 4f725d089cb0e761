//! Which channels are on, and how hard to try: read from the environment.

use std::time::Duration;

use url::Url;

use super::{email, keys, webhook};
use crate::secret::Secret;
use crate::settings::Reader;

/// The most retries `HOIST_NOTIFY_RETRIES` may ask for.
pub(super) const MAX_RETRIES: u32 = 10;
/// No backoff wait (nor a receiver's `Retry-After`) is honoured past this.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

// === Configuration ===

/// Which channels are on, and how hard to try.
#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {
    /// `HOIST_SLACK_WEBHOOK_URL`: a Slack incoming-webhook URL.
    pub slack: Option<Secret<Url>>,
    /// `HOIST_TEAMS_WEBHOOK_URL`: a Teams Workflows ("When a Teams webhook
    /// request is received") URL; it is sent Adaptive Cards.
    pub teams: Option<Secret<Url>>,
    /// `HOIST_SMTP_URL` with `HOIST_EMAIL_FROM`, `HOIST_EMAIL_TO` and `HOIST_SMTP_CA_FILE`.
    pub email: Option<email::EmailConfig>,
    pub delivery: Delivery,
}

/// How each channel's messages are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `HOIST_NOTIFY_TIMEOUT` (default 10s): the limit on one attempt.
    pub timeout: Duration,
    /// `HOIST_NOTIFY_RETRIES` (default 3): further attempts after a transient failure.
    pub retries: u32,
    /// The wait before the first retry; it doubles for each further one.
    /// Not read from the environment: 1s suits every receiver; tests shorten it.
    pub backoff: Duration,
    /// Messages that may wait per channel; past it new ones are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_secs(1),
            queue_capacity: 64,
        }
    }
}

impl NotifyConfig {
    /// Reads `HOIST_SLACK_WEBHOOK_URL`, `HOIST_TEAMS_WEBHOOK_URL`, `HOIST_SMTP_URL`,
    /// `HOIST_SMTP_CA_FILE`, `HOIST_EMAIL_FROM`, `HOIST_EMAIL_TO`,
    /// `HOIST_NOTIFY_TIMEOUT` and `HOIST_NOTIFY_RETRIES`, recording problems in
    /// the reader. Problems with a URL never echo it.
    pub fn from_reader(reader: &mut Reader<'_>) -> NotifyConfig {
        let slack = webhook_url(reader, keys::SLACK_WEBHOOK_URL);
        let teams = webhook_url(reader, keys::TEAMS_WEBHOOK_URL);
        let email = email::EmailConfig::from_reader(reader);
        let defaults = Delivery::default();
        let timeout = reader.duration(keys::NOTIFY_TIMEOUT, defaults.timeout);
        if timeout.is_zero() {
            reader.problem(
                keys::NOTIFY_TIMEOUT,
                Some("0".into()),
                "must be more than zero".into(),
            );
        }
        let retries = reader.parsed(keys::NOTIFY_RETRIES, defaults.retries);
        if retries > MAX_RETRIES {
            reader.problem(
                keys::NOTIFY_RETRIES,
                Some(retries.to_string()),
                format!("must be at most {MAX_RETRIES}"),
            );
        }
        NotifyConfig {
            slack,
            teams,
            email,
            delivery: Delivery {
                timeout,
                retries: retries.min(MAX_RETRIES),
                ..defaults
            },
        }
    }

    /// True when no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.slack.is_none() && self.teams.is_none() && self.email.is_none()
    }
}

fn webhook_url(reader: &mut Reader<'_>, key: &'static str) -> Option<Secret<Url>> {
    let text = reader.secret(key)?;
    match webhook::parse_url(text.expose()) {
        Ok(url) => Some(Secret::new(url)),
        Err(message) => {
            reader.problem(key, None, message);
            None
        }
    }
}
