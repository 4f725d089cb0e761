//! `hoist rollback NAME` (`POST /v1/rollback`): puts back the image a target
//! ran before its last successful update, as a job like any other: journaled
//! before it is acknowledged, queued behind the jobs of the target's tag
//! (the runner takes one job per tag at a time), health-gated and rolled
//! back itself when the old image does not come up, and notified.

use chrono::Utc;
use serde::Serialize;

use crate::event::{Digest, ImageEvent};
use crate::inventory::{IndexSnapshot, TargetKind};
use crate::job::{Job, JobId, JobQueue, Journal, QueueError};
use crate::journal::Acceptance;

/// What a rollback request was answered with.
#[derive(Debug, Serialize)]
pub struct RollbackReceipt {
    pub job: JobId,
    pub target: String,
    /// The tag the target runs, and the digest it goes back to.
    pub image: String,
    pub digest: String,
    /// When the target was moved off that digest.
    pub replaced_at: chrono::DateTime<Utc>,
}

/// Why a rollback was refused; each maps to a status and a message.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no target is called {0:?} (see `hoist status`)")]
    NoSuchTarget(String),
    #[error("{0:?} is a Swarm service: roll it back with `docker service rollback {0}`")]
    Service(String),
    #[error("{0:?} is monitor-only: hoist does not change it")]
    MonitorOnly(String),
    #[error("no update of {0:?} is recorded, so there is nothing to put back")]
    NothingRecorded(String),
    #[error("the image {0:?} ran before is not known by digest; it cannot be put back")]
    NoDigest(String),
    #[error("the job queue is full; try again shortly")]
    QueueFull,
    #[error("hoist is shutting down")]
    Closed,
    #[error("cannot journal the rollback: {0}")]
    Journal(String),
}

impl RollbackError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RollbackError::NoSuchTarget(_) | RollbackError::NothingRecorded(_) => 404,
            RollbackError::Service(_) | RollbackError::MonitorOnly(_) | RollbackError::NoDigest(_) => 409,
            RollbackError::QueueFull | RollbackError::Closed | RollbackError::Journal(_) => 503,
        }
    }
}

/// Journals and queues a rollback of `name`.
pub async fn request(
    journal: &Journal,
    queue: &JobQueue,
    snapshot: &IndexSnapshot,
    name: &str,
) -> Result<RollbackReceipt, RollbackError> {
    let target = snapshot
        .all()
        .find(|t| t.name == name)
        .ok_or_else(|| RollbackError::NoSuchTarget(name.to_string()))?;
    if target.kind == TargetKind::Service {
        return Err(RollbackError::Service(name.to_string()));
    }
    if target.monitor_only {
        return Err(RollbackError::MonitorOnly(name.to_string()));
    }
    let previous = journal
        .previous(name)
        .await
        .map_err(|e| RollbackError::Journal(e.to_string()))?
        .ok_or_else(|| RollbackError::NothingRecorded(name.to_string()))?;
    let digest = previous
        .digest
        .as_deref()
        .and_then(|d| Digest::parse(d).ok())
        .ok_or_else(|| RollbackError::NoDigest(name.to_string()))?;
    let mut reservations = queue.try_reserve_many(1).map_err(|e| match e {
        QueueError::Full => RollbackError::QueueFull,
        QueueError::Closed => RollbackError::Closed,
    })?;
    let reference = target.image.without_digest();
    let event = ImageEvent::rollback(reference.clone(), digest.clone(), name, Utc::now());
    let id = match journal.accept(&event).await {
        Ok(Acceptance::New(id)) | Ok(Acceptance::Duplicate(id)) => id,
        Err(e) => return Err(RollbackError::Journal(e.to_string())),
    };
    if let Some(reservation) = reservations.pop() {
        reservation.send(Job {
            id,
            event,
            recovered: Vec::new(),
        });
    }
    tracing::info!(target = name, image = %reference, digest = %digest.short(), job = %id, "Rollback queued.");
    Ok(RollbackReceipt {
        job: id,
        target: name.to_string(),
        image: reference.to_string(),
        digest: digest.as_str().to_string(),
        replaced_at: previous.at,
    })
}
