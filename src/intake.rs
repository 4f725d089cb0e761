//! The one intake path: every route that hears of a push ends in [`Intake::admit`].
//!
//! A route (a registry's webhook in `source::webhook`, a peer's forward in
//! `swarm::forward::route`) authenticates the request, reads its body with
//! [`Intake::read_body`], and turns it into updates with its own parser. From
//! there every route is the same:
//!
//! 0. hand every push to the base-image watch ([`crate::base`]), which
//!    compares the pushes of targets' base images with what they were built on;
//! 1. keep the updates some target runs (all of them when peers are
//!    configured: they are forwarded, and a peer's targets may run them);
//! 2. give each kept update that names no digest (Docker Hub, Quay, Gitea, a
//!    CI call) the digest its tag names now, asked of the registry the
//!    matching targets pull from ([`resolve`]);
//! 3. reserve room in the queue for every one of them, or refuse the whole
//!    request with 503 (the sender retries it whole);
//! 4. journal each one (durable before acknowledged; a redelivery with a
//!    known delivery id is recognised and not queued again);
//! 5. queue it, and answer 202 with a [`Receipt`] (200 when nothing in the
//!    request was an update).
//!
//! Every refusal is a [`Refusal`], answered with the same status, JSON body
//! and headers on every route, and counted in
//! `hoist_events_received_total{source,verdict}`.

pub mod auth;
pub mod resolve;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::base::BaseWatch;
use crate::event::{Aliases, ImageEvent, ImageRef, TagPush};
use crate::inventory::IndexSnapshot;
use crate::job::{Job, JobQueue, Journal, QueueError};
use crate::journal::Acceptance;
use crate::matcher::{may_concern, targets_running};
use crate::telemetry;
use auth::RejectionLog;
use resolve::{DigestResolver, ResolveError};

/// How long a refused sender is asked to wait before sending again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The most time one digest look-up may take. Senders want an answer within
/// seconds (GitHub gives up after 10 s); a slower registry is a transient
/// failure, answered 503 so the sender tries again.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(8);

/// What every route needs to admit updates. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    /// The bounded queue the admitted jobs go to. A full queue answers 503.
    pub jobs: JobQueue,
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
    /// Asks a registry for the digest of a push that names none; `None`
    /// until a registry client is wired, and then such pushes are ignored
    /// with a reason that says so.
    pub resolver: Option<Arc<dyn DigestResolver>>,
    /// Rejected requests, logged at most once a minute per address.
    pub rejections: Arc<RejectionLog>,
    /// Told of every push, to compare with the targets' base images.
    pub bases: Option<BaseWatch>,
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
    /// The updates understood, whether or not a target runs them: full
    /// references with their digest (without, for a push that named none and
    /// that no target runs, so nobody asked the registry).
    pub accepted: Vec<String>,
    /// How many of them were queued (the rest run nowhere here).
    pub queued: usize,
    /// How many were deliveries seen before (a sender's retry), not queued again.
    pub duplicates: usize,
    /// How many digests were asked of a registry (pushes that named none).
    pub resolved: usize,
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
    /// 503: the registry could not say which digest a pushed tag names, for
    /// now; `Retry-After` is the registry's wish, if it said one.
    Unresolved {
        detail: String,
        retry_after: Option<Duration>,
    },
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::QueueFull | Refusal::Stopping | Refusal::Journal | Refusal::Unresolved { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
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
            Refusal::Unresolved { detail, .. } => {
                format!("cannot ask the registry for the pushed digest ({detail}); send again later")
            }
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
                let wait = match &self {
                    Refusal::Unresolved {
                        retry_after: Some(wait),
                        ..
                    } => *wait,
                    _ => RETRY_AFTER,
                };
                // Whole seconds, never 0 (that would ask for a retry at once).
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
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
    pub(crate) fn for_tests(jobs: JobQueue) -> Intake {
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
            resolver: None,
            rejections: Arc::default(),
            bases: None,
        }
    }

    /// A refusal for a request from `peer` without the right credential
    /// (`what`), counted, and logged at most once a minute per address.
    pub fn unauthorized(&self, source: &'static str, what: &'static str, peer: Option<IpAddr>) -> Refusal {
        telemetry::event_received(source, "unauthorized");
        if let Some(unlogged) = self.rejections.should_log(peer) {
            let peer = peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
            warn!(source, %peer, unlogged, "Request rejected: missing or wrong {what}.");
        }
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
        pushes: Vec<TagPush>,
        mut ignored: Vec<IgnoredEntry>,
    ) -> Result<Receipt, Refusal> {
        for entry in &ignored {
            debug!(repository = %entry.repository, reason = %entry.reason, "Event is not an update.");
        }
        // Any push may be a target's base, whether or not a target runs it.
        if let Some(bases) = &self.bases {
            bases.heard(&pushes);
        }
        // Only pushes that some target runs become jobs; the rest are understood
        // and acknowledged, with nothing to record (this keeps intake fast).
        // Until the index has been synced once (the engine down at start-up),
        // that is not known, and every push is kept.
        // Each kept push remembers the reference to resolve its digest against:
        // the first matching target's own (a target pulls under its own name,
        // which may be an alias of the one the registry reported).
        let snapshot = self.snapshot.borrow().clone();
        let mut accepted = Vec::with_capacity(pushes.len());
        let mut kept: Vec<(TagPush, ImageRef)> = Vec::new();
        for push in pushes {
            let targets = targets_running(&push.reference, &snapshot, &self.aliases);
            if !self.queue_all && !may_concern(&push.reference, &snapshot, &self.aliases) {
                accepted.push(shown(&push));
                continue;
            }
            let pulled_as = targets
                .first()
                .map_or_else(|| push.reference.clone(), |t| t.image.without_digest());
            kept.push((push, pulled_as));
        }
        let resolved = kept.iter().filter(|(push, _)| push.digest.is_none()).count();
        let wanted = self
            .resolve_digests(source, kept, &mut accepted, &mut ignored)
            .await?;
        // Room for every job of the request, or none: the sender retries the whole request.
        let permits = match self.jobs.try_reserve_many(wanted.len()) {
            Ok(permits) => permits,
            Err(QueueError::Full) => {
                telemetry::event_received(source, "queue_full");
                telemetry::queue_full();
                warn!("Request refused: queue full.");
                return Err(Refusal::QueueFull);
            }
            Err(QueueError::Closed) => return Err(Refusal::Stopping),
        };
        let (mut queued, mut duplicates) = (0, 0);
        for (permit, event) in permits.into_iter().zip(wanted) {
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
            resolved,
            ignored,
        })
    }

    /// Each push as an update: with the digest it named, or the one its tag
    /// names now on the registry it is pulled from. Asked all at once.
    ///
    /// A transient failure refuses the whole request with 503 and
    /// `Retry-After`, before anything is journaled: the registry sends the
    /// webhook again (Quay, Harbor, Distribution retry 5xx; Docker Hub and
    /// Gitea show the failure in their delivery history for a manual
    /// redelivery), whereas acknowledging it would lose the push, since a job
    /// must name the digest it pulls. A permanent failure (no such tag there,
    /// credentials refused) is answered as an ignored event with the reason:
    /// sending it again would not help.
    async fn resolve_digests(
        &self,
        source: &'static str,
        kept: Vec<(TagPush, ImageRef)>,
        accepted: &mut Vec<String>,
        ignored: &mut Vec<IgnoredEntry>,
    ) -> Result<Vec<ImageEvent>, Refusal> {
        let lookups = kept.iter().map(|(push, pulled_as)| async move {
            match &push.digest {
                Some(digest) => Ok(digest.clone()),
                None => self.resolve(pulled_as).await,
            }
        });
        let digests = futures_util::future::join_all(lookups).await;
        let mut events = Vec::with_capacity(kept.len());
        // The first failure's text, and the longest wait a registry asked for.
        let mut transient: Option<(String, Option<Duration>)> = None;
        for ((push, pulled_as), digest) in kept.into_iter().zip(digests) {
            match digest {
                Ok(digest) => {
                    let event = push.with_digest(digest);
                    accepted.push(event.reference.with_digest(event.digest.clone()).to_string());
                    events.push(event);
                }
                Err(ResolveError::Transient { message, retry_after }) => {
                    telemetry::event_received(source, "unresolved_retry");
                    warn!(image = %pulled_as, error = %message, "Cannot resolve the pushed tag's digest; asking the sender to retry.");
                    transient = Some(match transient.take() {
                        Some((first, wait)) => (first, wait.max(retry_after)),
                        None => (format!("{pulled_as}: {message}"), retry_after),
                    });
                }
                Err(ResolveError::Permanent(message)) => {
                    telemetry::event_received(source, "unresolved");
                    warn!(image = %pulled_as, error = %message, "Cannot resolve the pushed tag's digest; the push is ignored.");
                    ignored.push(IgnoredEntry {
                        repository: push.reference.to_string(),
                        reason: format!("cannot resolve the tag's digest on {pulled_as}: {message}"),
                    });
                }
            }
        }
        match transient {
            Some((detail, retry_after)) => Err(Refusal::Unresolved { detail, retry_after }),
            None => Ok(events),
        }
    }

    /// One look-up, bounded in time.
    #[instrument(skip(self), fields(image = %image))]
    async fn resolve(&self, image: &ImageRef) -> Result<crate::event::Digest, ResolveError> {
        let Some(resolver) = &self.resolver else {
            return Err(ResolveError::Permanent(
                "this hoist has no registry client to ask for digests".into(),
            ));
        };
        match tokio::time::timeout(RESOLVE_TIMEOUT, resolver.resolve(image)).await {
            Ok(Ok(digest)) => {
                debug!(digest = %digest.short(), "Resolved the pushed tag's digest.");
                Ok(digest)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ResolveError::Transient {
                message: format!("no answer within {RESOLVE_TIMEOUT:?}"),
                retry_after: None,
            }),
        }
    }
}

/// A push as a receipt lists it: with its digest when it named one.
fn shown(push: &TagPush) -> String {
    match &push.digest {
        Some(digest) => push.reference.with_digest(digest.clone()).to_string(),
        None => push.reference.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use chrono::Utc;
    use tokio::sync::mpsc;

    use super::resolve::ResolveFuture;
    use super::*;
    use crate::event::{Digest, SourceKind};
    use crate::inventory::{Target, TargetId, TargetIndex, TargetKind, TargetOptions};

    const DIGEST: &str = "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";

    /// Answers from a table, and remembers what it was asked.
    #[derive(Default)]
    struct Table {
        answers: HashMap<String, Result<Digest, ResolveError>>,
        asked: Mutex<Vec<String>>,
    }

    impl DigestResolver for Table {
        fn resolve<'a>(&'a self, image: &'a ImageRef) -> ResolveFuture<'a> {
            Box::pin(async move {
                self.asked.lock().unwrap().push(image.to_string());
                match self.answers.get(&image.to_string()) {
                    Some(answer) => answer.clone(),
                    // Never answers: the intake's own time limit applies.
                    None => std::future::pending().await,
                }
            })
        }
    }

    /// A container running `127.0.0.1:5000/team/app:1.4`, which the registry
    /// calls `registry.example.test`.
    fn intake(resolver: Option<Arc<Table>>) -> (Intake, mpsc::Receiver<Job>) {
        let aliases = Aliases::parse("registry.example.test=127.0.0.1:5000").unwrap();
        let mut index = TargetIndex::new(aliases.clone());
        index.upsert(Target {
            id: TargetId("c1".into()),
            kind: TargetKind::Container,
            name: "web".into(),
            image: ImageRef::parse("127.0.0.1:5000/team/app:1.4").unwrap(),
            image_id: "sha256:old".into(),
            running: true,
            monitor_only: false,
            options: TargetOptions::default(),
            compose_project: None,
            compose_service: None,
        });
        let (tx, rx) = crate::job::queue::channel(8);
        let (_, snapshot) = watch::channel(index.snapshot());
        let intake = Intake {
            snapshot,
            aliases,
            resolver: resolver.map(|table| table as Arc<dyn DigestResolver>),
            ..Intake::for_tests(tx)
        };
        (intake, rx.jobs)
    }

    fn push(reference: &str, digest: Option<&str>) -> TagPush {
        TagPush {
            reference: ImageRef::parse(reference).unwrap(),
            digest: digest.map(|d| Digest::parse(d).unwrap()),
            source: SourceKind::Quay,
            delivery_id: None,
            actor: None,
            received_at: Utc::now(),
        }
    }

    fn table(answers: &[(&str, Result<&str, ResolveError>)]) -> Arc<Table> {
        Arc::new(Table {
            answers: answers
                .iter()
                .map(|(image, answer)| {
                    let answer = answer.clone().map(|d| Digest::parse(d).unwrap());
                    (image.to_string(), answer)
                })
                .collect(),
            asked: Mutex::default(),
        })
    }

    #[tokio::test]
    async fn a_push_without_a_digest_is_resolved_where_the_target_pulls_before_it_is_journaled() {
        let resolver = table(&[("127.0.0.1:5000/team/app:1.4", Ok(DIGEST))]);
        let (intake, mut jobs) = intake(Some(resolver.clone()));
        let receipt = intake
            .admit(
                "quay",
                vec![push("registry.example.test/team/app:1.4", None)],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            receipt.accepted,
            [format!("registry.example.test/team/app:1.4@{DIGEST}")]
        );
        assert_eq!((receipt.queued, receipt.resolved), (1, 1));
        // Asked under the target's own name (the alias it pulls from), once.
        assert_eq!(*resolver.asked.lock().unwrap(), ["127.0.0.1:5000/team/app:1.4"]);
        let job = jobs.try_recv().unwrap();
        assert_eq!(job.event.digest.as_str(), DIGEST);
        assert_eq!(
            job.event.reference.to_string(),
            "registry.example.test/team/app:1.4"
        );
        assert_eq!(job.event.source, SourceKind::Quay);
    }

    #[tokio::test]
    async fn a_push_that_names_its_digest_or_runs_nowhere_asks_nothing() {
        let resolver = table(&[]);
        let (intake, mut jobs) = intake(Some(resolver.clone()));
        let receipt = intake
            .admit(
                "quay",
                vec![
                    push("registry.example.test/team/app:1.4", Some(DIGEST)),
                    push("registry.example.test/team/other:1.4", None),
                ],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!((receipt.queued, receipt.resolved), (1, 0));
        assert_eq!(receipt.accepted.len(), 2, "both are updates: {receipt:?}");
        assert!(receipt
            .accepted
            .contains(&"registry.example.test/team/other:1.4".to_string()));
        assert!(resolver.asked.lock().unwrap().is_empty());
        assert_eq!(jobs.try_recv().unwrap().event.digest.as_str(), DIGEST);
        assert!(jobs.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_transient_failure_answers_503_with_the_registrys_retry_after_and_records_nothing() {
        let busy = ResolveError::Transient {
            message: "429 Too Many Requests".into(),
            retry_after: Some(Duration::from_millis(30_500)),
        };
        let (intake, mut jobs) = intake(Some(table(&[("127.0.0.1:5000/team/app:1.4", Err(busy))])));
        let refusal = intake
            .admit(
                "dockerhub",
                vec![push("registry.example.test/team/app:1.4", None)],
                Vec::new(),
            )
            .await
            .unwrap_err();
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "31");
        assert!(jobs.try_recv().is_err());
        assert!(intake.journal.history().await.unwrap().is_empty());
        assert!(
            intake.journal.unfinished().await.unwrap().is_empty(),
            "nothing journaled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_that_does_not_answer_in_time_is_a_transient_failure() {
        let (intake, mut jobs) = intake(Some(table(&[])));
        let refusal = intake
            .admit(
                "gitea",
                vec![push("registry.example.test/team/app:1.4", None)],
                Vec::new(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Unresolved { retry_after: None, detail } if detail.contains("no answer within")),
            "{refusal:?}"
        );
        assert_eq!(refusal.into_response().headers()[header::RETRY_AFTER], "5");
        assert!(jobs.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_permanent_failure_or_no_registry_client_is_ignored_with_its_reason() {
        let unknown = ResolveError::Permanent("manifest unknown".into());
        for resolver in [
            Some(table(&[("127.0.0.1:5000/team/app:1.4", Err(unknown))])),
            None,
        ] {
            let (intake, mut jobs) = intake(resolver);
            let receipt = intake
                .admit(
                    "ci",
                    vec![push("registry.example.test/team/app:1.4", None)],
                    Vec::new(),
                )
                .await
                .unwrap();
            assert!(receipt.accepted.is_empty(), "{receipt:?}");
            assert_eq!(receipt.ignored.len(), 1);
            let reason = &receipt.ignored[0].reason;
            assert!(
                reason.starts_with("cannot resolve the tag's digest on 127.0.0.1:5000/team/app:1.4: "),
                "{reason}"
            );
            assert_eq!(receipt.into_response().status(), StatusCode::OK);
            assert!(jobs.try_recv().is_err());
        }
    }

    #[tokio::test]
    async fn with_peers_a_push_no_local_target_runs_is_resolved_on_its_own_registry() {
        let resolver = table(&[("registry.example.test/team/other:2", Ok(DIGEST))]);
        let (intake, mut jobs) = intake(Some(resolver));
        let intake = Intake {
            queue_all: true,
            ..intake
        };
        let receipt = intake
            .admit(
                "quay",
                vec![push("registry.example.test/team/other:2", None)],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!((receipt.queued, receipt.resolved), (1, 1));
        assert_eq!(jobs.try_recv().unwrap().event.digest.as_str(), DIGEST);
    }
}
