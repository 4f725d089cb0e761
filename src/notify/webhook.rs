//! HTTP plumbing shared by the webhook channels (Slack, Teams).
//!
//! Owns the one place where a webhook URL is used: the POST and the start-up
//! reachability check. The URL is the secret, so nothing that leaves this
//! file (errors, details) is allowed to carry it: reqwest errors are stripped
//! with `without_url()` and then scrubbed of the URL's parts, and response
//! bodies are cut short and scrubbed the same way.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use url::Url;

use super::{error_text, scrub, BoxFuture, Channel, Notification, NotifyError, SendError};
use crate::secret::Secret;
use crate::tls::install_crypto_provider;

/// How much of an error response body is kept for the log (Slack answers
/// `invalid_payload`, `no_text`, ...: short codes worth seeing).
const MAX_ERROR_BODY_CHARS: usize = 200;
/// The start-up check only opens a TCP connection; it should not wait long.
const CHECK_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks what a webhook URL must be; the message never contains the URL.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("the URL must start with https:// (or http://)".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

/// A client bound to one secret webhook URL.
pub struct WebhookClient {
    url: Secret<Url>,
    client: reqwest::Client,
    /// The whole-request limit given to reqwest, reported when it fires.
    timeout: Duration,
}

impl WebhookClient {
    /// `timeout` bounds each request as a whole; `Notifier` also bounds each attempt.
    pub fn new(channel: &'static str, url: Secret<Url>, timeout: Duration) -> Result<Self, NotifyError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(CHECK_CONNECT_TIMEOUT * 2))
            // A redirect would send the payload somewhere the operator did not
            // configure; webhook receivers do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client {
                channel,
                detail: e.without_url().to_string(),
            })?;
        Ok(WebhookClient { url, client, timeout })
    }

    /// POSTs `body` as JSON; any 2xx is success.
    pub async fn post_json(&self, body: Vec<u8>) -> Result<(), SendError> {
        let response = self
            .client
            .post(self.url.expose().clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.request_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The body is only for the log; if it cannot be read, the status says enough.
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(MAX_ERROR_BODY_CHARS).collect();
        Err(SendError::Status {
            status: status.as_u16(),
            retry_after,
            body: self.scrub(body),
        })
    }

    /// The URL is well-formed (checked at configuration) and its host accepts
    /// TCP connections. Cheap and without side effects: posting a test message
    /// would show up in the channel.
    pub async fn check(&self) -> Result<String, SendError> {
        let url = self.url.expose();
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(SendError::Invalid("the webhook URL has no host or port".into()));
        };
        // `host_str` keeps the brackets of an IPv6 literal; connect wants it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match tokio::time::timeout(
            CHECK_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(_stream)) => Ok("webhook host accepts connections".into()),
            Ok(Err(e)) => Err(SendError::Connect(self.scrub(format!("tcp connect failed: {e}")))),
            Err(_) => Err(SendError::Timeout(CHECK_CONNECT_TIMEOUT)),
        }
    }

    fn request_error(&self, error: reqwest::Error) -> SendError {
        if error.is_timeout() {
            return SendError::Timeout(self.timeout);
        }
        let builder = error.is_builder();
        let error = error.without_url();
        // reqwest's Display stops at the top error; the cause (refused,
        // reset, certificate) is in the source chain.
        let text = self.scrub(error_text(&error));
        if builder {
            SendError::Invalid(text)
        } else {
            SendError::Connect(text)
        }
    }

    /// Removes the URL and its secret-bearing parts from `text`.
    fn scrub(&self, text: String) -> String {
        let url = self.url.expose();
        let full = url.as_str();
        let path = url.path();
        let query = url.query().unwrap_or("");
        let password = url.password().unwrap_or("");
        scrub(text, &[full, path, query, password])
    }
}

/// A channel that posts one JSON body per notification to a webhook. Slack
/// and Teams differ only in their name and in how the body is built.
pub struct JsonWebhook {
    name: &'static str,
    client: WebhookClient,
    payload: fn(&Notification) -> serde_json::Value,
}

impl JsonWebhook {
    pub fn new(
        name: &'static str,
        url: Secret<Url>,
        timeout: Duration,
        payload: fn(&Notification) -> serde_json::Value,
    ) -> Result<JsonWebhook, NotifyError> {
        Ok(JsonWebhook {
            name,
            client: WebhookClient::new(name, url, timeout)?,
            payload,
        })
    }
}

impl Channel for JsonWebhook {
    fn name(&self) -> &'static str {
        self.name
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&(self.payload)(notification))
                .map_err(|e| SendError::Invalid(e.to_string()))?;
            self.client.post_json(body).await
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SendError>> {
        Box::pin(self.client.check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(parse_url("https://hooks.slack.com/services/T0/B0/xyz").is_ok());
        assert!(parse_url("http://127.0.0.1:9/hook").is_ok());
        let e = parse_url("ftp://example.test/SECRET").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let e = parse_url("hooks.slack.com/services/SECRET").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(parse_url("mailto:ops@example.test").is_err());
    }

    #[test]
    fn scrub_removes_url_parts() {
        let url = parse_url("https://u:pw-SECRET@hooks.example.test/services/SECRETPATH?sig=SIG123").unwrap();
        let client = WebhookClient::new("slack", Secret::new(url), Duration::from_secs(1)).unwrap();
        let text = client.scrub(
            "error for https://u:pw-SECRET@hooks.example.test/services/SECRETPATH?sig=SIG123 and /services/SECRETPATH and sig=SIG123 pw-SECRET".into(),
        );
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains("SIG123"), "{text}");
    }
}
