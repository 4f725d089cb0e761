//! The receiving side: `POST /v1/hooks/forwarded` (through the one intake
//! path) and `GET /v1/peers`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::debug;

use super::{Forwarded, Forwarder, FORWARDED_HEADER, ROUTE};
use crate::event::TagPush;
use crate::intake::auth::{bearer_matches, peer_ip};
use crate::intake::{Intake, Refusal};
use crate::secret::Secret;

/// The source name forwarded updates are counted under.
const SOURCE: &str = "forwarded";

/// What the forwarded route needs. Cheap to clone.
#[derive(Clone)]
pub struct ForwardState {
    /// The same token the registry's webhooks carry; `None` only when
    /// unauthenticated webhooks were explicitly allowed.
    pub token: Option<Arc<Secret<String>>>,
    /// Straight to the runner, never to the tee: forwarded events stop here.
    /// Every forwarded update is queued (`queue_all`), whether or not a
    /// local target runs it.
    pub intake: Intake,
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

async fn receive(
    State(state): State<ForwardState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let intake = &state.intake;
    if !bearer_matches(state.token.as_deref(), &headers) {
        return Err(intake.unauthorized(SOURCE, "bearer token", peer_ip(&extensions)));
    }
    if headers.get(FORWARDED_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Err(intake.malformed(
            SOURCE,
            "only peer hoists post here, with X-Hoist-Forwarded: 1; registries post to /v1/hooks/<source>"
                .into(),
        ));
    }
    let bytes = intake.read_body(SOURCE, body).await?;
    let forwarded: Forwarded = serde_json::from_slice(&bytes)
        .map_err(|e| intake.malformed(SOURCE, format!("malformed forwarded body: {e}")))?;
    if forwarded.origin == state.forwarder.instance() {
        state.forwarder.stats().own_dropped += forwarded.events.len() as u64;
        debug!("A forward of this hoist's own came back; dropped.");
        return Ok((StatusCode::OK, Json(json!({ "accepted": [], "own": true }))).into_response());
    }
    let events: Vec<TagPush> = forwarded
        .events
        .into_iter()
        .map(|wire| wire.into_event().map(TagPush::from))
        .collect::<Result<_, _>>()
        .map_err(|e| intake.malformed(SOURCE, format!("bad forwarded event: {e}")))?;
    let count = events.len() as u64;
    let receipt = intake.admit(SOURCE, events, Vec::new()).await?;
    state.forwarder.stats().received += count;
    Ok(receipt.into_response())
}

async fn peers(State(state): State<ForwardState>) -> Json<serde_json::Value> {
    let forwarder = &state.forwarder;
    let stats = forwarder.stats();
    Json(json!({
        "instance": forwarder.instance(),
        "configured": forwarder.configured(),
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
    use crate::event::{Digest, ImageEvent, ImageRef, SourceKind};
    use crate::swarm::forward::WireEvent;
    use crate::swarm::Peers;
    use chrono::Utc;
    use url::Url;

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
        let token = Some(Arc::new(Secret::new(TOKEN.to_string())));
        let forwarder = Forwarder::new("me".into(), Peers::default(), token.clone(), 1).unwrap();
        let state = ForwardState {
            token,
            intake: Intake {
                queue_all: true,
                ..Intake::for_tests(tx)
            },
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
