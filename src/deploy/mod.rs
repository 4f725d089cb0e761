//! Changing what runs.
//!
//! `pull` pulls (with the registry's credentials) and `recreate` is the pure
//! recreate spec (old inspect in, create body out); both go through
//! [`crate::engine`], the adapter to the Docker Engine API. `container`
//! recreates a standalone container with its configuration intact and rolls back when the new one does not come up;
//! `health` decides whether it came up. `service` pins a Swarm service to the
//! pushed digest and follows Swarm's own rolling update to its end.
//! [`DeployError`] sorts what goes wrong into verdicts on the push and faults
//! of the engine (or journal) that call for another try.

pub mod container;
pub mod contract;
pub mod dependents;
pub mod health;
pub mod pull;
pub mod recreate;
pub mod selfupdate;
pub mod service;
pub mod slots;

use std::fmt;

use serde::Serialize;

/// How one target's update ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The target now runs the new image.
    Updated,
    /// The new container did not come up; the old one runs again under its name.
    RolledBack {
        reason: String,
        /// The last lines the failed container wrote, for the report.
        log_tail: Vec<String>,
    },
    /// Nothing could be done (pull failed, bad configuration...). The old
    /// container was not touched, or was restored.
    Failed { reason: String },
    /// The target asked to be told of updates, not to have them applied.
    MonitorOnly,
    /// The target already runs this digest.
    AlreadyCurrent,
    /// `hoist.contract=block`: the new image changes its ports, volumes or
    /// user; nothing was touched (the changes are in the target's report).
    Blocked { reason: String },
}

impl Outcome {
    /// Short lower-case word for logs, metrics labels and messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::RolledBack { .. } => "rolled_back",
            Outcome::Failed { .. } => "failed",
            Outcome::MonitorOnly => "monitor_only",
            Outcome::AlreadyCurrent => "already_current",
            Outcome::Blocked { .. } => "blocked",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an update did not get where it was going.
///
/// Only [`DeployError::Verdict`] is a verdict on the push for this target (the
/// new container did not come up, its configuration cannot be carried over,
/// the registry refused the pull...). The others say the engine or the
/// journal let the update down half-way: the target is brought back to a
/// safe state and the job runs again once they answer
/// ([`DeployError::is_transient`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The engine went away: connection refused or reset, a stream broken mid-way.
    #[error("{0}")]
    EngineGone(String),
    /// The engine answered with a server error (5xx).
    #[error("{0}")]
    EngineFailed(String),
    /// An engine call or stream ran out of time (`HOIST_ENGINE_TIMEOUT`).
    #[error("{0}")]
    EngineStalled(String),
    /// The journal could not record a step (disk full, read-only state dir),
    /// so the step was not taken.
    #[error("{0}")]
    Journal(String),
    /// Anything else: the outcome stands.
    #[error("{0}")]
    Verdict(String),
}

impl DeployError {
    /// Not a verdict on the push: run the job again later.
    pub fn is_transient(&self) -> bool {
        !matches!(self, DeployError::Verdict(_))
    }

    /// An engine error, sorted; `context` says what was being done.
    pub fn from_engine(context: &str, error: &crate::engine::EngineError) -> DeployError {
        let message = format!("{context}: {error}");
        match error {
            crate::engine::EngineError::TimedOut(_) => DeployError::EngineStalled(message),
            crate::engine::EngineError::Unreachable(_) => DeployError::EngineGone(message),
            _ if error.is_transient() => DeployError::EngineFailed(message),
            _ => DeployError::Verdict(message),
        }
    }

    /// What happened, in words for a report: "engine restarted", ...
    pub fn what_happened(&self) -> &'static str {
        match self {
            DeployError::EngineGone(_) => "engine restarted",
            DeployError::EngineFailed(_) => "engine failed",
            DeployError::EngineStalled(_) => "engine stopped answering",
            DeployError::Journal(_) => "journal could not be written",
            DeployError::Verdict(_) => "update failed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DeployError::EngineGone(m)
            | DeployError::EngineFailed(m)
            | DeployError::EngineStalled(m)
            | DeployError::Journal(m)
            | DeployError::Verdict(m) => m,
        }
    }
}

/// The fault-test hook (`HOIST_FAULT_PAUSE_AFTER`, `HOIST_FAULT_PAUSE_FILE`):
/// stop still right after one step. Without a file, for ever (the crash
/// tests then SIGKILL hoist); with one, once: the file is created on pausing
/// and the update goes on when the test removes it (after it has done
/// something to the engine). Does nothing unless those variables are set.
#[derive(Debug)]
pub struct FaultPause {
    pub step: String,
    pub file: Option<std::path::PathBuf>,
    /// Set on the first pause, so a job run again does not pause again.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    fired: std::sync::atomic::AtomicBool,
}

impl FaultPause {
    pub fn new(step: String, file: Option<std::path::PathBuf>) -> FaultPause {
        FaultPause {
            step,
            file,
            fired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A release build (without the `fault-injection` feature) never pauses.
    #[cfg(not(feature = "fault-injection"))]
    async fn pause(&self, _job: crate::journal::JobId, _step: &str) {}

    #[cfg(feature = "fault-injection")]
    async fn pause(&self, job: crate::journal::JobId, step: &str) {
        if self.step != step {
            return;
        }
        if self.file.is_some() && self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tracing::warn!(job = %job, step, "Fault injection: paused after this step.");
        let Some(file) = &self.file else {
            return std::future::pending::<()>().await;
        };
        if let Err(e) = std::fs::write(file, step) {
            tracing::warn!(error = %e, "Fault injection: cannot create the pause file; not pausing.");
            return;
        }
        while file.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!(job = %job, step, "Fault injection: resumed.");
    }
}

/// Records each step of an update in the journal before it is taken, so a
/// crash at any point can be repaired at the next start.
///
/// It also holds the fault-test hook ([`FaultPause`]).
#[derive(Clone)]
pub struct StepLog {
    journal: crate::journal::Journal,
    job: crate::journal::JobId,
    pause: Option<std::sync::Arc<FaultPause>>,
    /// When the push arrived, for the push-to-running and push-to-healthy metrics.
    received_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl StepLog {
    pub fn new(
        journal: crate::journal::Journal,
        job: crate::journal::JobId,
        pause: Option<std::sync::Arc<FaultPause>>,
    ) -> StepLog {
        StepLog {
            journal,
            job,
            pause,
            received_at: None,
        }
    }

    /// Adds when the push arrived, so the steps can be timed against it.
    pub fn with_received_at(mut self, received_at: chrono::DateTime<chrono::Utc>) -> StepLog {
        self.received_at = Some(received_at);
        self
    }

    /// The job the steps are recorded for.
    pub fn job(&self) -> crate::journal::JobId {
        self.job
    }

    /// Records `step` for `target`; the caller must not take the step if this fails.
    pub async fn before(&self, target: &str, step: &str, detail: Option<String>) -> Result<(), DeployError> {
        self.journal
            .step(self.job, target, step, detail)
            .await
            .map_err(|e| DeployError::Journal(format!("cannot record step {step}: {e}")))
    }

    /// A step was taken: the fault-injection point.
    pub async fn after(&self, step: &str) {
        if let Some(received_at) = self.received_at {
            crate::telemetry::step_reached(step, received_at);
        }
        if let Some(pause) = &self.pause {
            pause.pause(self.job, step).await;
        }
    }
}
