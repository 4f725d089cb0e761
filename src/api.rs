//! The admin routes: `/healthz`, `/metrics`, `/v1/targets`, `/v1/history`,
//! and [`guard`], which keeps every `GET /v1/*` (and `/metrics` when it has a
//! token of its own) behind the bearer token.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::Method;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::deploy::service::ServicesMode;
use crate::engine::Engine;
use crate::event::{Aliases, ImageRef};
use crate::intake::auth::bearer_matches;
use crate::inventory::IndexSnapshot;
use crate::job::{JobQueue, Journal};
use crate::secret::Secret;

/// Extra health detail from stages that have their own checks (notifiers).
pub type HealthDetail = Arc<dyn Fn() -> Value + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub snapshot: watch::Receiver<Arc<IndexSnapshot>>,
    pub journal: Journal,
    pub metrics: PrometheusHandle,
    pub notifiers: HealthDetail,
    /// The job queue: jobs waiting, the capacity, and tag keys with jobs in flight.
    pub jobs: HealthDetail,
    pub aliases: Aliases,
    /// Whether services are updated here (for the plan's reasons).
    pub services: ServicesMode,
    /// Where rollbacks are queued (straight to the runner: never forwarded to peers).
    pub queue: JobQueue,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/targets", get(targets))
        .route("/v1/history", get(history))
        .route("/v1/plan", get(plan))
        .route("/v1/rollback", post(rollback))
        .with_state(state)
}

/// 200 when the engine answers and the journal can be written; 503
/// otherwise (pushes are then refused with 503 too). Notifier problems are
/// shown but do not fail the check: deploys still work without them.
async fn healthz(State(state): State<ApiState>) -> Response {
    let engine = state.engine.ping().await;
    let journal = state.journal.check().await;
    let healthy = engine.is_ok() && journal.is_ok();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "engine": match &engine { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
        "journal": match &journal { Ok(()) => "ok".to_string(), Err(e) => format!("cannot be written: {e}") },
        "engine_api_version": state.engine.api_version(),
        "targets": state.snapshot.borrow().len(),
        "notifiers": (state.notifiers)(),
        "jobs": (state.jobs)(),
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn targets(State(state): State<ApiState>) -> Json<Value> {
    let snapshot = state.snapshot.borrow().clone();
    let mut targets: Vec<_> = snapshot.all().cloned().collect();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Json(json!({ "targets": targets }))
}

async fn history(State(state): State<ApiState>) -> Response {
    match state.journal.history().await {
        Ok(jobs) => Json(json!({ "jobs": jobs })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot read the history from the journal.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "cannot read the journal" })),
            )
                .into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct PlanQuery {
    image: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /v1/plan?image=`: what a push of the tag would redeploy, and why not the rest.
async fn plan(State(state): State<ApiState>, Query(query): Query<PlanQuery>) -> Response {
    let Some(text) = query.image.filter(|i| !i.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "name an image: /v1/plan?image=registry/repository:tag",
        );
    };
    let image = match ImageRef::parse(text.trim()) {
        Ok(image) if image.tag().is_some() && image.digest().is_none() => image,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{text:?}: name a tag (a push moves a tag), without a digest"),
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{text:?} is not an image reference: {e}"),
            )
        }
    };
    let snapshot = state.snapshot.borrow().clone();
    match crate::plan::plan(&state.engine, &snapshot, &state.aliases, state.services, &image).await {
        Ok(plan) => Json(plan).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot list the engine's containers: {e}"),
        ),
    }
}

#[derive(serde::Deserialize)]
struct RollbackBody {
    target: String,
}

/// `POST /v1/rollback {"target": NAME}`: queues a job that puts back the image NAME ran before.
async fn rollback(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let Ok(RollbackBody { target }) = serde_json::from_slice::<RollbackBody>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {\"target\": \"<container name>\"}",
        );
    };
    let snapshot = state.snapshot.borrow().clone();
    match crate::job::rollback::request(&state.journal, &state.queue, &snapshot, target.trim()).await {
        Ok(receipt) => (StatusCode::ACCEPTED, Json(receipt)).into_response(),
        Err(e) => error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::CONFLICT),
            e.to_string(),
        ),
    }
}

/// The tokens the read routes want.
#[derive(Clone, Default)]
pub struct ReadTokens {
    /// `HOIST_WEBHOOK_TOKEN`, for every `GET /v1/*` (the history holds log
    /// tails; the targets tell what runs where). `None` only with
    /// `HOIST_INSECURE_NO_AUTH=true`.
    pub api: Option<Arc<Secret<String>>>,
    /// `HOIST_METRICS_TOKEN`, for `/metrics`; open without one.
    pub metrics: Option<Arc<Secret<String>>>,
}

/// A layer over the whole router: `GET /v1/*` wants the webhook token,
/// `/metrics` its own when set; `/healthz` and the webhooks (which check
/// their own credentials) pass through. 401 with `WWW-Authenticate: Bearer`.
pub async fn guard(State(tokens): State<ReadTokens>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let read = request.method() == Method::GET && path.starts_with("/v1/");
    let wanted = if read || path == "/v1/rollback" {
        tokens.api.as_deref()
    } else if path == "/metrics" {
        tokens.metrics.as_deref()
    } else {
        None
    };
    if bearer_matches(wanted, request.headers()) {
        return next.run(request).await;
    }
    crate::telemetry::count_read_refused();
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": "missing or wrong bearer token" })),
    )
        .into_response()
}
