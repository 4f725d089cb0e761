//! The HTTP routes of the sources: one per registry, and the CI call.
//!
//! | route | authentication | parser | digest |
//! | --- | --- | --- | --- |
//! | `POST /v1/hooks/distribution` | bearer token | [`distribution`] | sent |
//! | `POST /v1/hooks/harbor` | bearer token | [`harbor`] | sent |
//! | `POST /v1/hooks/acr` | bearer token (a custom header) | [`acr`] | sent |
//! | `POST /v1/hooks/github` | `X-Hub-Signature-256`, `HOIST_GITHUB_WEBHOOK_SECRET` | [`github`] | sent |
//! | `POST /v1/hooks/gitea` | `X-Gitea-Signature` / `X-Forgejo-Signature`, `HOIST_GITEA_WEBHOOK_SECRET` | [`gitea`] | resolved |
//! | `POST /v1/hooks/dockerhub/{token}` | the token in the path | [`dockerhub`] | resolved |
//! | `POST /v1/hooks/quay/{token}` | the token in the path | [`quay`] | resolved |
//! | `POST /v1/update` | bearer token | [`ci`] | optional, else resolved |
//!
//! Each route authenticates first (a bearer or path token before reading the
//! body; a signature on the raw body before parsing it), in constant time,
//! then hands the body to its source's pure parser, judges each event
//! ([`RegistryEvent::into_update`], or [`RegistryEvent::into_push`] for the
//! sources that send no digest), and ends in [`Intake::admit`], which answers
//! for every route alike: 202 when the request holds an update, 200 when it
//! is understood but holds none, 400 malformed, 401 unauthorised, 404 unknown
//! source, 413 too large, 503 when the queue is full, the registry cannot
//! say a pushed tag's digest for now, or hoist is shutting down (the sender
//! sends again).
//!
//! A redelivery is recognised by the sender's delivery id (Distribution's
//! and ACR's event `id`, the CloudEvent `id` of Harbor, `X-GitHub-Delivery`,
//! `X-Gitea-Delivery`/`X-Forgejo-Delivery`, Docker Hub's push time) and runs
//! once.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{
    acr, ci, distribution, dockerhub, gitea, github, harbor, quay, signature, ParseError, RegistryEvent,
};
use crate::event::{SourceKind, TagPush};
use crate::intake::auth::{bearer_matches, path_token_matches, peer_ip};
use crate::intake::{IgnoredEntry, Intake, Refusal};
use crate::secret::Secret;

/// A source's pure parser.
type Parser = fn(&[u8]) -> Result<Vec<RegistryEvent>, ParseError>;

/// The longest delivery id kept (a header is the sender's to fill).
const MAX_DELIVERY_ID: usize = 200;

/// What the routes need. Cheap to clone.
#[derive(Clone)]
pub struct WebhookState {
    /// `HOIST_WEBHOOK_TOKEN`; `None` only when unauthenticated webhooks were
    /// explicitly allowed (then unsigned GitHub and Gitea hooks are accepted
    /// too when their secret is unset).
    pub token: Option<Arc<Secret<String>>>,
    /// `HOIST_GITHUB_WEBHOOK_SECRET`.
    pub github_secret: Option<Arc<Secret<String>>>,
    /// `HOIST_GITEA_WEBHOOK_SECRET` (Gitea and Forgejo).
    pub gitea_secret: Option<Arc<Secret<String>>>,
    /// The one intake path every route ends in.
    pub intake: Intake,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/v1/hooks/distribution", post(distribution_hook))
        .route("/v1/hooks/harbor", post(harbor_hook))
        .route("/v1/hooks/acr", post(acr_hook))
        .route("/v1/hooks/github", post(github_hook))
        .route("/v1/hooks/gitea", post(gitea_hook))
        .route("/v1/hooks/dockerhub/{token}", post(dockerhub_hook))
        .route("/v1/hooks/quay/{token}", post(quay_hook))
        .route("/v1/hooks/{source}", post(unknown_hook))
        .route("/v1/update", post(ci_update))
        .with_state(state)
}

/// Whether a source's pushes must carry their digest, or have it resolved.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Digests {
    /// The registry always sends it: a push without one is ignored.
    Sent,
    /// The registry sends none: intake asks the registry.
    Resolved,
}

/// The events of one request, judged: the pushes, and the rest with their reason.
fn judge(
    kind: SourceKind,
    events: Vec<RegistryEvent>,
    digests: Digests,
) -> (Vec<TagPush>, Vec<IgnoredEntry>) {
    let mut pushes = Vec::new();
    let mut ignored = Vec::new();
    for event in events {
        let repository = event.repository.clone();
        let judged = match digests {
            Digests::Sent => event.into_update(kind, None).map(TagPush::from),
            Digests::Resolved => event.into_push(kind, None),
        };
        match judged {
            Ok(push) => pushes.push(push),
            Err(reason) => ignored.push(IgnoredEntry {
                repository,
                reason: reason.to_string(),
            }),
        }
    }
    (pushes, ignored)
}

/// Parses an authenticated body and admits what it holds. `delivery` (a
/// header's delivery id) becomes each event's id, `#<n>` added when there are several.
async fn admit(
    intake: &Intake,
    kind: SourceKind,
    parse: Parser,
    digests: Digests,
    body: &[u8],
    delivery: Option<String>,
) -> Result<Response, Refusal> {
    let source = kind.as_str();
    let mut events = parse(body).map_err(|e| intake.malformed(source, e.to_string()))?;
    if let Some(delivery) = delivery {
        let several = events.len() > 1;
        for (index, event) in events.iter_mut().enumerate() {
            event.event_id = Some(if several {
                format!("{delivery}#{index}")
            } else {
                delivery.clone()
            });
        }
    }
    let (pushes, ignored) = judge(kind, events, digests);
    Ok(intake.admit(source, pushes, ignored).await?.into_response())
}

/// A request's delivery id from the first of `names` that carries a usable one.
fn delivery_id(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        let usable = !value.is_empty()
            && value.len() <= MAX_DELIVERY_ID
            && value.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| value.to_string())
    })
}

/// A header's text, trimmed; `None` when absent, not text, or blank.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

/// A request of a bearer-token route, authenticated and read.
async fn bearer_body(
    state: &WebhookState,
    kind: SourceKind,
    headers: &HeaderMap,
    extensions: &Extensions,
    body: Body,
) -> Result<Bytes, Refusal> {
    if !bearer_matches(state.token.as_deref(), headers) {
        return Err(state
            .intake
            .unauthorized(kind.as_str(), "bearer token", peer_ip(extensions)));
    }
    state.intake.read_body(kind.as_str(), body).await
}

async fn distribution_hook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = SourceKind::Distribution;
    let body = bearer_body(&state, kind, &headers, &extensions, body).await?;
    admit(
        &state.intake,
        kind,
        distribution::parse,
        Digests::Sent,
        &body,
        None,
    )
    .await
}

async fn harbor_hook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = SourceKind::Harbor;
    let body = bearer_body(&state, kind, &headers, &extensions, body).await?;
    admit(&state.intake, kind, harbor::parse, Digests::Sent, &body, None).await
}

async fn acr_hook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = SourceKind::Acr;
    let body = bearer_body(&state, kind, &headers, &extensions, body).await?;
    admit(&state.intake, kind, acr::parse, Digests::Sent, &body, None).await
}

/// How a signed route finds and names its signature.
struct Signed {
    kind: SourceKind,
    /// The headers that may carry it, the first present wins.
    headers: &'static [&'static str],
    /// What a rejection says is missing or wrong.
    what: &'static str,
    /// The same, when the secret to check it with is not configured.
    unset: &'static str,
}

const GITHUB: Signed = Signed {
    kind: SourceKind::Github,
    headers: &["x-hub-signature-256"],
    what: "X-Hub-Signature-256 signature",
    unset: "X-Hub-Signature-256 signature (HOIST_GITHUB_WEBHOOK_SECRET is not set)",
};

const GITEA: Signed = Signed {
    kind: SourceKind::Gitea,
    headers: &["x-gitea-signature", "x-forgejo-signature"],
    what: "X-Gitea-Signature or X-Forgejo-Signature",
    unset: "X-Gitea-Signature or X-Forgejo-Signature (HOIST_GITEA_WEBHOOK_SECRET is not set)",
};

/// A signed route's body, read and checked against its signature. Without a
/// secret configured, only an explicitly unauthenticated hoist
/// (`HOIST_INSECURE_NO_AUTH`) accepts it.
async fn signed_body(
    state: &WebhookState,
    signed: &Signed,
    secret: Option<&Secret<String>>,
    headers: &HeaderMap,
    extensions: &Extensions,
    body: Body,
) -> Result<Bytes, Refusal> {
    let source = signed.kind.as_str();
    let intake = &state.intake;
    let Some(secret) = secret else {
        if state.token.is_none() {
            return intake.read_body(source, body).await;
        }
        return Err(intake.unauthorized(source, signed.unset, peer_ip(extensions)));
    };
    let Some(signature) = signed
        .headers
        .iter()
        .find_map(|name| header_text(headers, name))
        .map(str::to_string)
    else {
        return Err(intake.unauthorized(source, signed.what, peer_ip(extensions)));
    };
    let body = intake.read_body(source, body).await?;
    if !signature::verify(secret, &body, &signature) {
        return Err(intake.unauthorized(source, signed.what, peer_ip(extensions)));
    }
    Ok(body)
}

async fn github_hook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = GITHUB.kind;
    let secret = state.github_secret.as_deref();
    let body = signed_body(&state, &GITHUB, secret, &headers, &extensions, body).await?;
    // `ping` is sent when the webhook is created; other events are not pushes.
    match header_text(&headers, "x-github-event") {
        None | Some("package" | "registry_package") => {}
        Some(event) => return not_a_push(&state.intake, kind, format!("GitHub {event} event")).await,
    }
    let delivery = delivery_id(&headers, &["x-github-delivery"]);
    admit(&state.intake, kind, github::parse, Digests::Sent, &body, delivery).await
}

async fn gitea_hook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = GITEA.kind;
    let secret = state.gitea_secret.as_deref();
    let body = signed_body(&state, &GITEA, secret, &headers, &extensions, body).await?;
    let event = header_text(&headers, "x-gitea-event").or_else(|| header_text(&headers, "x-forgejo-event"));
    match event {
        None | Some("package") => {}
        Some(event) => return not_a_push(&state.intake, kind, format!("Gitea {event} event")).await,
    }
    let delivery = delivery_id(&headers, &["x-gitea-delivery", "x-forgejo-delivery"]);
    admit(
        &state.intake,
        kind,
        gitea::parse,
        Digests::Resolved,
        &body,
        delivery,
    )
    .await
}

/// A path-token route's body: Docker Hub and Quay cannot send headers.
async fn path_token_body(
    state: &WebhookState,
    kind: SourceKind,
    token: &str,
    extensions: &Extensions,
    body: Body,
) -> Result<Bytes, Refusal> {
    if !path_token_matches(state.token.as_deref(), token) {
        return Err(state
            .intake
            .unauthorized(kind.as_str(), "token in the path", peer_ip(extensions)));
    }
    state.intake.read_body(kind.as_str(), body).await
}

async fn dockerhub_hook(
    State(state): State<WebhookState>,
    Path(token): Path<String>,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = SourceKind::DockerHub;
    let body = path_token_body(&state, kind, &token, &extensions, body).await?;
    admit(
        &state.intake,
        kind,
        dockerhub::parse,
        Digests::Resolved,
        &body,
        None,
    )
    .await
}

async fn quay_hook(
    State(state): State<WebhookState>,
    Path(token): Path<String>,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = SourceKind::Quay;
    let body = path_token_body(&state, kind, &token, &extensions, body).await?;
    admit(&state.intake, kind, quay::parse, Digests::Resolved, &body, None).await
}

/// `POST /v1/update`: `{"image", "digest"}`, or Watchtower's `?image=a,b`.
async fn ci_update(
    State(state): State<WebhookState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, Refusal> {
    let kind = SourceKind::Ci;
    let body = bearer_body(&state, kind, &headers, &extensions, body).await?;
    let images = query.as_deref().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "image")
            .map(|(_, value)| value.into_owned())
    });
    match images {
        Some(images) if body.iter().all(u8::is_ascii_whitespace) => {
            let events =
                ci::parse_query(&images).map_err(|e| state.intake.malformed(kind.as_str(), e.to_string()))?;
            let (pushes, ignored) = judge(kind, events, Digests::Resolved);
            Ok(state
                .intake
                .admit(kind.as_str(), pushes, ignored)
                .await?
                .into_response())
        }
        _ => admit(&state.intake, kind, ci::parse, Digests::Resolved, &body, None).await,
    }
}

/// An authenticated request that is understood and holds no push (a ping, another event kind).
async fn not_a_push(intake: &Intake, kind: SourceKind, reason: String) -> Result<Response, Refusal> {
    let ignored = vec![IgnoredEntry {
        repository: String::new(),
        reason,
    }];
    Ok(intake
        .admit(kind.as_str(), Vec::new(), ignored)
        .await?
        .into_response())
}

async fn unknown_hook(Path(source): Path<String>) -> Refusal {
    if source == "dockerhub" || source == "quay" {
        return Refusal::NotFound(format!(
            "{source} cannot send headers: put the webhook token in the path, /v1/hooks/{source}/<token>"
        ));
    }
    Refusal::NotFound(format!(
        "unknown source {source:?}; expected distribution, harbor, acr, github, gitea, dockerhub/<token> or quay/<token>"
    ))
}
