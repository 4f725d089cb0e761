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
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{distribution, harbor, ParseError, RegistryEvent};
use crate::event::SourceKind;
use crate::intake::auth::bearer_matches;
use crate::intake::{IgnoredEntry, Intake, Refusal};
use crate::secret::Secret;

/// A source's pure parser.
type Parser = fn(&[u8]) -> Result<Vec<RegistryEvent>, ParseError>;

/// What the routes need. Cheap to clone.
#[derive(Clone)]
pub struct WebhookState {
    /// `None` only when unauthenticated webhooks were explicitly allowed.
    pub token: Option<Arc<Secret<String>>>,
    /// The one intake path every route ends in.
    pub intake: Intake,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/v1/hooks/{source}", post(receive))
        .with_state(state)
}

async fn receive(
    State(state): State<WebhookState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let (kind, parse): (SourceKind, Parser) = match source.as_str() {
        "distribution" => (SourceKind::Distribution, distribution::parse),
        "harbor" => (SourceKind::Harbor, harbor::parse),
        _ => {
            return Err(Refusal::NotFound(format!(
                "unknown source {source:?}; expected distribution or harbor"
            )))
        }
    };
    let source_name = kind.as_str();
    let intake = &state.intake;
    if !bearer_matches(state.token.as_deref(), &headers) {
        return Err(intake.unauthorized(source_name, "bearer token"));
    }
    let body = intake.read_body(source_name, body).await?;
    let events = parse(&body).map_err(|e| intake.malformed(source_name, e.to_string()))?;

    let mut updates = Vec::new();
    let mut ignored = Vec::new();
    for event in events {
        let repository = event.repository.clone();
        match event.into_update(kind, None) {
            Ok(update) => updates.push(update),
            Err(reason) => ignored.push(IgnoredEntry {
                repository,
                reason: reason.to_string(),
            }),
        }
    }
    Ok(intake.admit(source_name, updates, ignored).await?.into_response())
}
