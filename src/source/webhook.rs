//! The webhook route: `POST /v1/hooks/{source}`.
//!
//! Checks the bearer token (in constant time) before reading the body, reads
//! at most the configured number of bytes, hands the body to the source's
//! pure parser, and queues the updates. Answers: 202 when the request holds
//! an update, 200 when it is understood but not an update, 400 malformed, 401
//! unauthorised, 404 unknown source, 413 too large, 503 when the queue is
//! full or hoist is shutting down (the registry will send again).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{distribution, harbor, ParseError, RegistryEvent};

/// A source's pure parser.
type Parser = fn(&[u8]) -> Result<Vec<RegistryEvent>, ParseError>;
use crate::event::{Aliases, ImageEvent, SourceKind};
use crate::inventory::IndexSnapshot;
use crate::job::journal::Acceptance;
use crate::job::{Job, JobQueue, Journal, QueueError};
use crate::matcher::matching_targets;
use crate::secret::Secret;
use crate::telemetry;

/// What the route needs. Cheap to clone.
#[derive(Clone)]
pub struct IntakeState {
    /// `None` only when unauthenticated webhooks were explicitly allowed.
    pub token: Option<Arc<Secret<String>>>,
    /// The bounded queue to the runner. A full queue answers 503.
    pub jobs: JobQueue,
    /// Where a push is recorded before it is acknowledged.
    pub journal: Journal,
    /// The target index, to skip journaling pushes that no target runs.
    pub snapshot: watch::Receiver<Arc<IndexSnapshot>>,
    pub aliases: Aliases,
    /// Peers are configured: every update is queued (and so forwarded), even
    /// one that no local target runs.
    pub forward_all: bool,
    /// Cancelled when shutdown starts: from then on the route answers 503.
    pub stopping: CancellationToken,
    pub max_body_bytes: usize,
}

pub fn router(state: IntakeState) -> Router {
    Router::new()
        .route("/v1/hooks/{source}", post(receive))
        .with_state(state)
}

/// The error answers, each with a JSON body `{"error": "..."}`.
#[derive(Debug)]
enum IntakeError {
    Unauthorized,
    UnknownSource(String),
    TooLarge(usize),
    Malformed(ParseError),
    QueueFull,
    Stopping,
    Journal,
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            IntakeError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".to_string(),
            ),
            IntakeError::UnknownSource(name) => (
                StatusCode::NOT_FOUND,
                format!("unknown source {name:?}; expected distribution or harbor"),
            ),
            IntakeError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {limit} bytes"),
            ),
            IntakeError::Malformed(e) => (StatusCode::BAD_REQUEST, e.to_string()),
            IntakeError::QueueFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "queue full; send again later".to_string(),
            ),
            IntakeError::Stopping => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down; send again later".to_string(),
            ),
            IntakeError::Journal => (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the event; send again later".to_string(),
            ),
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        let headers = response.headers_mut();
        match self {
            IntakeError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            IntakeError::QueueFull | IntakeError::Stopping | IntakeError::Journal => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

/// What a successful answer lists.
#[derive(Serialize)]
struct Receipt {
    /// The updates understood (full references with digest), whether or not a target runs them.
    accepted: Vec<String>,
    /// How many of them were queued for a target (the rest run nowhere here).
    queued: usize,
    /// How many were deliveries seen before (a sender's retry), not queued again.
    duplicates: usize,
    /// Understood events that are not updates, and why.
    ignored: Vec<IgnoredEntry>,
}

#[derive(Serialize)]
struct IgnoredEntry {
    repository: String,
    reason: String,
}

async fn receive(
    State(state): State<IntakeState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IntakeError> {
    let (kind, parse): (SourceKind, Parser) = match source.as_str() {
        "distribution" => (SourceKind::Distribution, distribution::parse),
        "harbor" => (SourceKind::Harbor, harbor::parse),
        _ => return Err(IntakeError::UnknownSource(source)),
    };
    let source_name = kind.as_str();
    if !authorized(&state, &headers) {
        telemetry::event_received(source_name, "unauthorized");
        warn!(
            source = source_name,
            "Webhook rejected: missing or wrong bearer token."
        );
        return Err(IntakeError::Unauthorized);
    }
    if state.stopping.is_cancelled() {
        return Err(IntakeError::Stopping);
    }
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            telemetry::event_received(source_name, "too_large");
            warn!(
                source = source_name,
                limit = state.max_body_bytes,
                "Webhook rejected: body too large."
            );
            return Err(IntakeError::TooLarge(state.max_body_bytes));
        }
    };
    let events = parse(&body).map_err(|e| {
        telemetry::event_received(source_name, "malformed");
        warn!(source = source_name, error = %e, "Webhook rejected: malformed body.");
        IntakeError::Malformed(e)
    })?;

    let mut updates = Vec::new();
    let mut ignored = Vec::new();
    for event in events {
        let repository = event.repository.clone();
        match event.into_update(kind, None) {
            Ok(update) => updates.push(update),
            Err(reason) => {
                debug!(source = source_name, %repository, %reason, "Event is not an update.");
                ignored.push(IgnoredEntry {
                    repository,
                    reason: reason.to_string(),
                });
            }
        }
    }
    let accepted: Vec<String> = updates
        .iter()
        .map(|u| u.reference.with_digest(u.digest.clone()).to_string())
        .collect();
    // Only pushes that some target runs become jobs; the rest are understood
    // and acknowledged, with nothing to record (this keeps intake fast).
    let snapshot = state.snapshot.borrow().clone();
    let wanted: Vec<ImageEvent> = updates
        .into_iter()
        .filter(|u| state.forward_all || !matching_targets(u, &snapshot, &state.aliases).is_empty())
        .collect();
    // Room for every job of the request, or none: the sender retries the whole request.
    let permits = match state.jobs.try_reserve_many(wanted.len()) {
        Ok(permits) => permits,
        Err(QueueError::Full) => {
            telemetry::event_received(source_name, "queue_full");
            telemetry::queue_full();
            warn!(source = source_name, "Webhook refused: queue full.");
            return Err(IntakeError::QueueFull);
        }
        Err(QueueError::Closed) => return Err(IntakeError::Stopping),
    };
    let (mut queued, mut duplicates) = (0, 0);
    for (permit, event) in permits.into_iter().zip(wanted) {
        // Durable before acknowledged: a crash after this line loses nothing.
        match state.journal.accept(&event).await {
            Ok(Acceptance::New(id)) => {
                info!(source = source_name, image = %event.reference, digest = %event.digest.short(), job = %id, "Push received.");
                permit.send(Job {
                    id,
                    event,
                    recovered: Vec::new(),
                });
                queued += 1;
            }
            Ok(Acceptance::Duplicate(id)) => {
                info!(source = source_name, image = %event.reference, job = %id, "Redelivered push ignored.");
                duplicates += 1;
            }
            Err(e) => {
                warn!(source = source_name, error = %e, "Webhook refused: the journal cannot record it.");
                return Err(IntakeError::Journal);
            }
        }
    }
    for _ in &accepted {
        telemetry::event_received(source_name, "update");
    }
    for _ in &ignored {
        telemetry::event_received(source_name, "ignored");
    }
    let status = if accepted.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(Receipt {
            accepted,
            queued,
            duplicates,
            ignored,
        }),
    )
        .into_response())
}

fn authorized(state: &IntakeState, headers: &HeaderMap) -> bool {
    bearer_matches(state.token.as_deref(), headers)
}

/// Whether `headers` carry `Authorization: Bearer <token>` (always, without a token).
pub(crate) fn bearer_matches(token: Option<&Secret<String>>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    presented.is_some_and(|p| token.matches(p))
}
