//! Fan-out: every update a registry sends to one hoist reaches every hoist.
//!
//! In a swarm the registry calls one address and the routing mesh hands the
//! request to one node. That hoist queues the update for itself and passes it
//! on to its peers:
//!
//! ```text
//! POST <peer>/v1/hooks/forwarded
//! Authorization: Bearer <HOIST_WEBHOOK_TOKEN>
//! X-Hoist-Forwarded: 1
//! Content-Type: application/json
//!
//! {"origin": "<sender's instance id>",
//!  "events": [{"reference": "registry:5000/team/app:1.4", "digest": "sha256:...",
//!              "source": "distribution", "delivery_id": "...", "actor": "ci",
//!              "received_at": "2026-11-23T13:20:50Z"}]}
//! ```
//!
//! The body is the normalised [`ImageEvent`], not the registry's payload, so
//! a peer needs no parser and a Harbor push forwards like a Distribution one.
//! The delivery id travels along, so a peer that hears of a push twice (a
//! registry retry that the mesh sent to another node) runs it once.
//!
//! Events that arrive on this route go to the local runner only: they are
//! never forwarded again. An event whose origin is this very hoist (it is in
//! its own peer list, as with `tasks.<service>`) is acknowledged and dropped.
//! A peer that does not answer, or answers 5xx, is tried again with backoff
//! ([`SwarmConfig::forward_attempts`](super::SwarmConfig) times); a peer that
//! is given up on is logged as an error and counted (`hoist_forwards_total{outcome="failed"}`),
//! and `GET /v1/peers` shows each peer's last result.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use url::Url;

use super::Peers;
use crate::event::{Digest, ImageEvent, ImageRef, SourceKind};
use crate::job::journal::Acceptance;
use crate::job::{Job, JobQueue, Journal, QueueError};
use crate::secret::Secret;
use crate::source::webhook::bearer_matches;
use crate::telemetry;

/// The header that marks a request as forwarded by a peer.
pub const FORWARDED_HEADER: &str = "x-hoist-forwarded";
/// The route peers post to.
pub const ROUTE: &str = "/v1/hooks/forwarded";
/// How long one forward attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before the second attempt; doubled before each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// One update as it travels between hoists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub reference: String,
    pub digest: String,
    pub source: String,
    pub delivery_id: Option<String>,
    pub actor: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl From<&ImageEvent> for WireEvent {
    fn from(event: &ImageEvent) -> Self {
        WireEvent {
            reference: event.reference.to_string(),
            digest: event.digest.to_string(),
            source: event.source.as_str().to_string(),
            delivery_id: event.delivery_id.clone(),
            actor: event.actor.clone(),
            received_at: event.received_at,
        }
    }
}

impl WireEvent {
    /// Back to an event, checked as strictly as one from a registry.
    pub fn into_event(self) -> Result<ImageEvent, String> {
        let reference = ImageRef::parse(&self.reference).map_err(|e| e.to_string())?;
        if reference.tag().is_none() || reference.digest().is_some() {
            return Err(format!("{}: expected repository:tag", self.reference));
        }
        let digest = Digest::parse(&self.digest).map_err(|e| e.to_string())?;
        let source = match self.source.as_str() {
            "distribution" => SourceKind::Distribution,
            "harbor" => SourceKind::Harbor,
            "poll" => SourceKind::Poll,
            other => return Err(format!("unknown source {other:?}")),
        };
        Ok(ImageEvent {
            reference,
            digest,
            source,
            delivery_id: self.delivery_id,
            actor: self.actor,
            received_at: self.received_at,
        })
    }
}

/// The body of a forward.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forwarded {
    /// The instance id of the hoist that received the events from the registry.
    pub origin: String,
    pub events: Vec<WireEvent>,
}

/// A random id for this hoist process, so that it recognises its own forwards.
pub fn new_instance_id() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{random:016x}")
}

/// What `GET /v1/peers` shows of one peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerStatus {
    /// Updates this peer accepted.
    pub delivered: u64,
    /// Updates given up on after every attempt.
    pub failed: u64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// The forwarding counters, shared by the sender and the route. A std mutex is
/// right: it is held to bump a counter or copy the map, never across `.await`.
#[derive(Default)]
struct Stats {
    peers: BTreeMap<String, PeerStatus>,
    /// Forwarded updates this hoist accepted from peers.
    received: u64,
    /// Forwards of its own that came back to this hoist and were dropped.
    own_dropped: u64,
}

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

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
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
        let mut backoff = FIRST_BACKOFF;
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
                    warn!(peers = %name, attempt, retry_in = ?backoff, error = %e, "Cannot resolve the peers' DNS name; trying again.");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
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
        let mut backoff = FIRST_BACKOFF;
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
                    warn!(%peer, attempt, retry_in = ?backoff, %error, "Forward to a peer hoist failed; trying again.");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
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

/// What the forwarded route needs. Cheap to clone.
#[derive(Clone)]
pub struct ForwardState {
    /// The same token the registry's webhooks carry; `None` only when
    /// unauthenticated webhooks were explicitly allowed.
    pub token: Option<Arc<Secret<String>>>,
    /// Straight to the runner, never to the tee: forwarded events stop here.
    pub jobs: JobQueue,
    /// Forwarded pushes are journaled before they are acknowledged, like any other.
    pub journal: Journal,
    /// Cancelled when shutdown starts: from then on the route answers 503.
    pub stopping: CancellationToken,
    pub max_body_bytes: usize,
    /// This hoist's forwarder, for its instance id and its counters.
    pub forwarder: Forwarder,
}

/// `POST /v1/hooks/forwarded` and `GET /v1/peers`.
pub fn router(state: ForwardState) -> Router {
    Router::new()
        .route(ROUTE, post(receive))
        .route("/v1/peers", get(peers))
        .with_state(state)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    match status {
        StatusCode::UNAUTHORIZED => {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        _ => {}
    }
    response
}

async fn receive(State(state): State<ForwardState>, headers: HeaderMap, body: Body) -> Response {
    const SOURCE: &str = "forwarded";
    if !bearer_matches(state.token.as_deref(), &headers) {
        telemetry::event_received(SOURCE, "unauthorized");
        warn!("Forwarded update rejected: missing or wrong bearer token.");
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    if headers.get(FORWARDED_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        telemetry::event_received(SOURCE, "malformed");
        return refuse(
            StatusCode::BAD_REQUEST,
            "only peer hoists post here, with X-Hoist-Forwarded: 1; registries post to /v1/hooks/distribution or /v1/hooks/harbor",
        );
    }
    if state.stopping.is_cancelled() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down; send again later");
    }
    let Ok(bytes) = axum::body::to_bytes(body, state.max_body_bytes).await else {
        telemetry::event_received(SOURCE, "too_large");
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {} bytes", state.max_body_bytes),
        );
    };
    let forwarded: Forwarded = match serde_json::from_slice(&bytes) {
        Ok(forwarded) => forwarded,
        Err(e) => {
            telemetry::event_received(SOURCE, "malformed");
            return refuse(StatusCode::BAD_REQUEST, &format!("malformed forwarded body: {e}"));
        }
    };
    if forwarded.origin == state.forwarder.instance() {
        state.forwarder.stats().own_dropped += forwarded.events.len() as u64;
        debug!("A forward of this hoist's own came back; dropped.");
        return (StatusCode::OK, Json(json!({ "accepted": [], "own": true }))).into_response();
    }
    let events: Result<Vec<ImageEvent>, String> =
        forwarded.events.into_iter().map(WireEvent::into_event).collect();
    let events = match events {
        Ok(events) => events,
        Err(e) => {
            telemetry::event_received(SOURCE, "malformed");
            return refuse(StatusCode::BAD_REQUEST, &format!("bad forwarded event: {e}"));
        }
    };
    let permits = match state.jobs.try_reserve_many(events.len()) {
        Ok(permits) => permits,
        Err(QueueError::Full) => {
            telemetry::event_received(SOURCE, "queue_full");
            telemetry::queue_full();
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "queue full; send again later");
        }
        Err(QueueError::Closed) => {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down; send again later")
        }
    };
    let accepted: Vec<String> = events
        .iter()
        .map(|e| e.reference.with_digest(e.digest.clone()).to_string())
        .collect();
    state.forwarder.stats().received += events.len() as u64;
    for (permit, event) in permits.into_iter().zip(events) {
        telemetry::event_received(SOURCE, "update");
        match state.journal.accept(&event).await {
            Ok(Acceptance::New(id)) => {
                info!(origin = %forwarded.origin, image = %event.reference, digest = %event.digest.short(), job = %id, "Forwarded push received.");
                permit.send(Job {
                    id,
                    event,
                    recovered: Vec::new(),
                });
            }
            Ok(Acceptance::Duplicate(id)) => {
                info!(origin = %forwarded.origin, image = %event.reference, job = %id, "Forwarded push seen before; ignored.");
            }
            Err(e) => {
                warn!(error = %e, "Forwarded update refused: the journal cannot record it.");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot record the event; send again later",
                );
            }
        }
    }
    (StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response()
}

async fn peers(State(state): State<ForwardState>) -> Json<serde_json::Value> {
    let forwarder = &state.forwarder;
    let stats = forwarder.stats();
    Json(json!({
        "instance": forwarder.instance(),
        "configured": forwarder.peers.to_string(),
        "received_forwarded": stats.received,
        "own_forwards_dropped": stats.own_dropped,
        "peers": stats.peers,
    }))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    const TOKEN: &str = "peer-token";

    fn event() -> ImageEvent {
        ImageEvent {
            reference: ImageRef::parse("registry.test:5000/team/web:1.4").unwrap(),
            digest: Digest::parse("sha256:2222222222222222222222222222222222222222222222222222222222222222")
                .unwrap(),
            source: SourceKind::Harbor,
            delivery_id: Some("delivery-1".into()),
            actor: Some("ci".into()),
            received_at: Utc::now(),
        }
    }

    fn state(capacity: usize) -> (ForwardState, crate::job::JobReceiver) {
        let (tx, rx) = crate::job::queue::channel(capacity);
        let journal = Journal::open(&tempfile::tempdir().unwrap().keep()).unwrap();
        let token = Some(Arc::new(Secret::new(TOKEN.to_string())));
        let forwarder = Forwarder::new("me".into(), Peers::default(), token.clone(), 1).unwrap();
        let state = ForwardState {
            token,
            jobs: tx,
            journal,
            stopping: CancellationToken::new(),
            max_body_bytes: 64 * 1024,
            forwarder,
        };
        (state, rx)
    }

    async fn post(
        state: ForwardState,
        token: &str,
        marked: bool,
        body: &Forwarded,
    ) -> (u16, serde_json::Value) {
        let mut request = axum::http::Request::post(ROUTE)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"));
        if marked {
            request = request.header(FORWARDED_HEADER, "1");
        }
        let request = request
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        let response = router(state).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn from(origin: &str) -> Forwarded {
        Forwarded {
            origin: origin.into(),
            events: vec![WireEvent::from(&event())],
        }
    }

    #[test]
    fn an_event_survives_the_wire() {
        let original = event();
        let text = serde_json::to_string(&WireEvent::from(&original)).unwrap();
        let back: WireEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_event().unwrap(), original);
    }

    #[tokio::test]
    async fn a_peer_forward_goes_to_the_runner_once() {
        let (state, mut rx) = state(4);
        let original = event();
        let body = Forwarded {
            origin: "peer".into(),
            events: vec![WireEvent::from(&original)],
        };
        let (status, answer) = post(state.clone(), TOKEN, true, &body).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(rx.jobs.try_recv().unwrap().event, original);
        assert!(rx.jobs.try_recv().is_err());
        // The same forward again (a retry): journaled once, not run twice.
        let (status, _) = post(state.clone(), TOKEN, true, &body).await;
        assert_eq!(status, 202);
        assert!(rx.jobs.try_recv().is_err());
        assert_eq!(state.forwarder.stats().received, 2);
    }

    #[tokio::test]
    async fn wrong_token_unmarked_and_own_forwards_are_refused_or_dropped() {
        let (state, mut rx) = state(4);
        assert_eq!(post(state.clone(), "wrong", true, &from("peer")).await.0, 401);
        assert_eq!(post(state.clone(), TOKEN, false, &from("peer")).await.0, 400);
        let (status, body) = post(state.clone(), TOKEN, true, &from("me")).await;
        assert_eq!((status, body["own"].as_bool()), (200, Some(true)));
        assert!(rx.jobs.try_recv().is_err(), "nothing reached the runner");
        assert_eq!(state.forwarder.stats().own_dropped, 1);
    }

    #[tokio::test]
    async fn a_peer_name_that_does_not_resolve_is_tried_again_then_reported() {
        let peers = Peers {
            urls: Vec::new(),
            dns: Some(("hoist-peers.invalid".into(), 8080)),
        };
        let forwarder = Forwarder::new("me".into(), peers, None, 2).unwrap();
        forwarder.forward(&event()).await;
        let stats = forwarder.stats();
        let entry = &stats.peers["dns:hoist-peers.invalid:8080"];
        assert_eq!((entry.delivered, entry.failed), (0, 1));
        assert!(entry.last_error.is_some());
    }

    #[tokio::test]
    async fn a_forward_that_reaches_this_very_hoist_is_dropped_and_not_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (mut state, mut rx) = state(4);
        let peers = Peers {
            urls: vec![own],
            dns: None,
        };
        state.forwarder = Forwarder::new("me".into(), peers, state.token.clone(), 1).unwrap();
        let forwarder = state.forwarder.clone();
        let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
        forwarder.forward(&event()).await;
        server.abort();
        let stats = forwarder.stats();
        assert!(stats.peers.is_empty(), "its own address is not listed as a peer");
        assert_eq!((stats.own_dropped, stats.received), (1, 0));
        assert!(rx.jobs.try_recv().is_err(), "the runner got nothing twice");
    }

    #[tokio::test]
    async fn a_full_queue_answers_503() {
        let (state, _rx) = state(1);
        assert_eq!(post(state.clone(), TOKEN, true, &from("peer")).await.0, 202);
        assert_eq!(post(state, TOKEN, true, &from("peer")).await.0, 503);
    }
}
