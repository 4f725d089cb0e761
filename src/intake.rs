//! The one intake path: every route that hears of a push ends in [`Intake::admit`].
//!
//! A route (a registry's webhook in `source::webhook`, a peer's forward in
//! `swarm::forward::route`) authenticates the request, reads its body with
//! [`Intake::read_body`], and turns it into updates with its own parser. From
//! there every route is the same:
//!
//! 1. keep the updates some target runs (all of them when peers are
//!    configured: they are forwarded, and a peer's targets may run them);
//! 2. reserve room in the queue for every one of them, or refuse the whole
//!    request with 503 (the sender retries it whole);
//! 3. journal each one (durable before acknowledged; a redelivery with a
//!    known delivery id is recognised and not queued again);
//! 4. queue it, and answer 202 with a [`Receipt`] (200 when nothing in the
//!    request was an update).
//!
//! Every refusal is a [`Refusal`], answered with the same status, JSON body
//! and headers on every route, and counted in
//! `hoist_events_received_total{source,verdict}`.

pub mod auth;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::event::{Aliases, ImageEvent};
use crate::inventory::IndexSnapshot;
use crate::job::journal::Acceptance;
use crate::job::{Job, Journal};
use crate::matcher::matching_targets;
use crate::telemetry;

/// Seconds a refused sender is asked to wait before sending again.
const RETRY_AFTER_SECONDS: &str = "5";

/// What every route needs to admit updates. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    /// The bounded queue the admitted jobs go to. A full queue answers 503.
    pub jobs: mpsc::Sender<Job>,
    /// Where a push is recorded before it is acknowledged.
    pub journal: Journal,
    /// The target index, to skip journaling pushes that no target runs.
    pub snapshot: watch::Receiver<Arc<IndexSnapshot>>,
    pub aliases: Aliases,
    /// Queue every update, even one no local target runs: peers are
    /// configured (the update is forwarded), or the update came from a peer.
    pub queue_all: bool,
    /// Cancelled when shutdown starts: from then on every route answers 503.
    pub stopping: CancellationToken,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
}

/// An understood event that is not an update, and why.
#[derive(Clone, Debug, Serialize)]
pub struct IgnoredEntry {
    pub repository: String,
    pub reason: String,
}

/// What a successful answer lists.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// The updates understood (full references with digest), whether or not a target runs them.
    pub accepted: Vec<String>,
    /// How many of them were queued (the rest run nowhere here).
    pub queued: usize,
    /// How many were deliveries seen before (a sender's retry), not queued again.
    pub duplicates: usize,
    /// Understood events that are not updates, and why.
    pub ignored: Vec<IgnoredEntry>,
}

impl IntoResponse for Receipt {
    /// 202 when the request carried an update, 200 when it carried none.
    fn into_response(self) -> Response {
        let status = if self.accepted.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        (status, Json(self)).into_response()
    }
}

/// Why a request was refused. Each answers with its status and a JSON body
/// `{"error": "..."}`; 401 adds `WWW-Authenticate`, 503 adds `Retry-After`.
#[derive(Debug)]
pub enum Refusal {
    /// 401: the credential the route expects is missing or wrong (the text says which).
    Unauthorized(&'static str),
    /// 404.
    NotFound(String),
    /// 413: the body is larger than this many bytes.
    TooLarge(usize),
    /// 400: the body (or a header the route needs) cannot be understood.
    Malformed(String),
    /// 503: no room in the queue for every update of the request.
    QueueFull,
    /// 503: hoist is shutting down.
    Stopping,
    /// 503: the journal cannot record the push.
    Journal,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::QueueFull | Refusal::Stopping | Refusal::Journal => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Unauthorized(what) => format!("missing or wrong {what}"),
            Refusal::NotFound(message) | Refusal::Malformed(message) => message.clone(),
            Refusal::TooLarge(limit) => format!("body larger than {limit} bytes"),
            Refusal::QueueFull => "queue full; send again later".into(),
            Refusal::Stopping => "shutting down; send again later".into(),
            Refusal::Journal => "cannot record the event; send again later".into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": self.message() }))).into_response();
        let headers = response.headers_mut();
        match self.status() {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

impl Intake {
    /// An intake with an empty target index and a journal in a fresh temporary
    /// directory, queueing into `jobs`: for the routes' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(jobs: mpsc::Sender<Job>) -> Intake {
        let journal = Journal::open(&tempfile::tempdir().unwrap().keep()).unwrap();
        let (_, snapshot) = watch::channel(Arc::new(IndexSnapshot::default()));
        Intake {
            jobs,
            journal,
            snapshot,
            aliases: Aliases::default(),
            queue_all: false,
            stopping: CancellationToken::new(),
            max_body_bytes: 64 * 1024,
        }
    }

    /// A refusal for a request without the right credential, counted and logged.
    pub fn unauthorized(&self, source: &'static str, what: &'static str) -> Refusal {
        telemetry::event_received(source, "unauthorized");
        warn!(source, "Request rejected: missing or wrong {what}.");
        Refusal::Unauthorized(what)
    }

    /// A refusal for a body that cannot be understood, counted and logged.
    pub fn malformed(&self, source: &'static str, detail: String) -> Refusal {
        telemetry::event_received(source, "malformed");
        warn!(source, error = %detail, "Request rejected: malformed body.");
        Refusal::Malformed(detail)
    }

    /// The whole body, at most `max_body_bytes` of it; 503 once shutdown has started.
    pub async fn read_body(&self, source: &'static str, body: Body) -> Result<Bytes, Refusal> {
        if self.stopping.is_cancelled() {
            return Err(Refusal::Stopping);
        }
        axum::body::to_bytes(body, self.max_body_bytes)
            .await
            .map_err(|_| {
                telemetry::event_received(source, "too_large");
                warn!(
                    source,
                    limit = self.max_body_bytes,
                    "Request rejected: body too large."
                );
                Refusal::TooLarge(self.max_body_bytes)
            })
    }

    /// Queues the updates of one request, all or none (see the module docs).
    #[instrument(skip_all, fields(source))]
    pub async fn admit(
        &self,
        source: &'static str,
        updates: Vec<ImageEvent>,
        ignored: Vec<IgnoredEntry>,
    ) -> Result<Receipt, Refusal> {
        for entry in &ignored {
            debug!(repository = %entry.repository, reason = %entry.reason, "Event is not an update.");
        }
        let accepted: Vec<String> = updates
            .iter()
            .map(|u| u.reference.with_digest(u.digest.clone()).to_string())
            .collect();
        // Only pushes that some target runs become jobs; the rest are understood
        // and acknowledged, with nothing to record (this keeps intake fast).
        let snapshot = self.snapshot.borrow().clone();
        let wanted: Vec<ImageEvent> = updates
            .into_iter()
            .filter(|u| self.queue_all || !matching_targets(u, &snapshot, &self.aliases).is_empty())
            .collect();
        // Room for every job of the request, or none: the sender retries the whole request.
        let permits = match self.jobs.try_reserve_many(wanted.len()) {
            Ok(permits) => permits,
            Err(mpsc::error::TrySendError::Full(())) => {
                telemetry::event_received(source, "queue_full");
                telemetry::queue_full();
                warn!("Request refused: queue full.");
                return Err(Refusal::QueueFull);
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Refusal::Stopping),
        };
        let (mut queued, mut duplicates) = (0, 0);
        for (permit, event) in permits.zip(wanted) {
            // Durable before acknowledged: a crash after this line loses nothing.
            match self.journal.accept(&event).await {
                Ok(Acceptance::New(id)) => {
                    info!(image = %event.reference, digest = %event.digest.short(), job = %id, "Push received.");
                    permit.send(Job {
                        id,
                        event,
                        recovered: Vec::new(),
                    });
                    queued += 1;
                }
                Ok(Acceptance::Duplicate(id)) => {
                    info!(image = %event.reference, job = %id, "Redelivered push ignored.");
                    duplicates += 1;
                }
                Err(e) => {
                    warn!(error = %e, "Request refused: the journal cannot record it.");
                    return Err(Refusal::Journal);
                }
            }
        }
        for _ in &accepted {
            telemetry::event_received(source, "update");
        }
        for _ in &ignored {
            telemetry::event_received(source, "ignored");
        }
        Ok(Receipt {
            accepted,
            queued,
            duplicates,
            ignored,
        })
    }
}
