//! The sending side: [`Forwarder`] posts each update to every peer, with
//! retries, and [`run`] tees the intake queue into the runner and the peers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};
use url::Url;

use super::{Forwarded, Stats, WireEvent, FORWARDED_HEADER, ROUTE};
use crate::backoff::Backoff;
use crate::event::ImageEvent;
use crate::job::{Job, JobQueue};
use crate::secret::Secret;
use crate::swarm::Peers;
use crate::telemetry;

/// How long one forward attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The waits between attempts (a DNS lookup or a send): from 0.5 s, doubling, jittered.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// Sends updates to the peers. Cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    instance: Arc<str>,
    peers: Arc<Peers>,
    token: Option<Arc<Secret<String>>>,
    attempts: u32,
    http: reqwest::Client,
    stats: Arc<Mutex<Stats>>,
}

impl Forwarder {
    pub fn new(
        instance: String,
        peers: Peers,
        token: Option<Arc<Secret<String>>>,
        attempts: u32,
    ) -> Result<Forwarder, reqwest::Error> {
        // reqwest is built without a default TLS provider (hoist uses ring);
        // installing it again is refused harmlessly.
        rustls::crypto::ring::default_provider().install_default().ok();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .build()?;
        Ok(Forwarder {
            instance: instance.into(),
            peers: Arc::new(peers),
            token,
            attempts: attempts.max(1),
            http,
            stats: Arc::default(),
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The peers as configured, for `GET /v1/peers`.
    pub fn configured(&self) -> String {
        self.peers.to_string()
    }

    pub(super) fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peers' base URLs now: the static list, and what the DNS name resolves to.
    async fn resolve(&self) -> Vec<Url> {
        let mut urls = self.peers.urls.clone();
        let Some((name, port)) = &self.peers.dns else {
            return urls;
        };
        // Swarm's DNS may not know a task for a moment after it starts (a push
        // that arrives as hoist comes up): a failed lookup is tried again too.
        for attempt in 1..=self.attempts {
            match tokio::net::lookup_host((name.as_str(), *port)).await {
                Ok(addresses) => {
                    let mut addresses: Vec<_> = addresses.collect();
                    addresses.sort();
                    addresses.dedup();
                    urls.extend(
                        addresses
                            .into_iter()
                            .filter_map(|a| Url::parse(&format!("http://{a}/")).ok()),
                    );
                    return urls;
                }
                Err(e) if attempt < self.attempts => {
                    telemetry::forward("retried");
                    let backoff = BACKOFF.wait(attempt);
                    warn!(peers = %name, attempt, retry_in = ?backoff, error = %e, "Cannot resolve the peers' DNS name; trying again.");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    telemetry::forward("failed");
                    error!(peers = %name, error = %e, "Cannot resolve the peers' DNS name; no peer hears of this update.");
                    let mut stats = self.stats();
                    let entry = stats.peers.entry(format!("dns:{name}:{port}")).or_default();
                    entry.failed += 1;
                    entry.last_error = Some(e.to_string());
                    entry.last_attempt_at = Some(Utc::now());
                }
            }
        }
        urls
    }

    /// Sends `event` to every peer at once, each with its own retries.
    pub async fn forward(&self, event: &ImageEvent) {
        let urls = self.resolve().await;
        let body = Forwarded {
            origin: self.instance.to_string(),
            events: vec![WireEvent::from(event)],
        };
        let sends = urls.iter().map(|url| self.send_with_retries(url, &body, event));
        futures_util::future::join_all(sends).await;
    }

    async fn send_with_retries(&self, base: &Url, body: &Forwarded, event: &ImageEvent) {
        let peer = base.as_str().trim_end_matches('/').to_string();
        let Ok(url) = base.join(ROUTE.trim_start_matches('/')) else {
            return;
        };
        for attempt in 1..=self.attempts {
            let result = self.send_once(&url, body).await;
            let now = Utc::now();
            match result {
                Ok(true) => {
                    debug!(%peer, "The peer address is this hoist's own; not counted.");
                    return;
                }
                Ok(false) => {
                    telemetry::forward("delivered");
                    debug!(%peer, image = %event.reference, digest = %event.digest.short(), "Update forwarded.");
                    let mut stats = self.stats();
                    let entry = stats.peers.entry(peer).or_default();
                    entry.delivered += 1;
                    entry.last_error = None;
                    entry.last_attempt_at = Some(now);
                    return;
                }
                Err((error, retry)) => {
                    {
                        let mut stats = self.stats();
                        let entry = stats.peers.entry(peer.clone()).or_default();
                        entry.last_error = Some(error.clone());
                        entry.last_attempt_at = Some(now);
                    }
                    if !retry || attempt == self.attempts {
                        telemetry::forward("failed");
                        self.stats().peers.entry(peer.clone()).or_default().failed += 1;
                        error!(%peer, image = %event.reference, digest = %event.digest.short(), attempts = attempt, %error, "A peer hoist did not take the update; its node's containers stay as they are.");
                        return;
                    }
                    telemetry::forward("retried");
                    let backoff = BACKOFF.wait(attempt);
                    warn!(%peer, attempt, retry_in = ?backoff, %error, "Forward to a peer hoist failed; trying again.");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// One attempt: `Ok(true)` when the peer turned out to be this hoist
    /// itself; the error says what went wrong and whether to try again.
    async fn send_once(&self, url: &Url, body: &Forwarded) -> Result<bool, (String, bool)> {
        let mut request = self
            .http
            .post(url.clone())
            .header(FORWARDED_HEADER, "1")
            .json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| (format!("cannot reach the peer: {}", error_chain(&e)), true))?;
        let status = response.status();
        if status.is_success() {
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            return Ok(answer["own"].as_bool().unwrap_or(false));
        }
        let text = response.text().await.unwrap_or_default();
        let retry = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err((format!("the peer answered {status}: {}", text.trim()), retry))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The tee between the webhook route and the runner: every event goes to the
/// runner and, on `tracker`, to the peers. Ends when the intake side closes.
pub async fn run(
    mut intake: mpsc::Receiver<Job>,
    runner: JobQueue,
    forwarder: Option<Forwarder>,
    tracker: TaskTracker,
) {
    while let Some(job) = intake.recv().await {
        if let Some(forwarder) = &forwarder {
            let (forwarder, event) = (forwarder.clone(), job.event.clone());
            tracker.spawn(async move { forwarder.forward(&event).await });
        }
        if runner.pass_on(job).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Digest, ImageRef, SourceKind};

    #[tokio::test]
    async fn a_peer_name_that_does_not_resolve_is_tried_again_then_reported() {
        let peers = Peers {
            urls: Vec::new(),
            dns: Some(("hoist-peers.invalid".into(), 8080)),
        };
        let forwarder = Forwarder::new("me".into(), peers, None, 2).unwrap();
        let event = ImageEvent {
            reference: ImageRef::parse("registry.test:5000/team/web:1.4").unwrap(),
            digest: Digest::parse("sha256:2222222222222222222222222222222222222222222222222222222222222222")
                .unwrap(),
            source: SourceKind::Harbor,
            delivery_id: None,
            actor: None,
            received_at: Utc::now(),
        };
        forwarder.forward(&event).await;
        let stats = forwarder.stats();
        let entry = &stats.peers["dns:hoist-peers.invalid:8080"];
        assert_eq!((entry.delivered, entry.failed), (0, 1));
        assert!(entry.last_error.is_some());
    }
}
