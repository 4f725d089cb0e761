//! Changing what runs.
//!
//! `engine` is the adapter to the Docker Engine API (bollard), with `pull`
//! (pulls, and the header fix that keeps credentials intact) and `recreate`
//! (the pure recreate spec: old inspect in, create body out); no other module
//! sees bollard. `container` recreates a standalone container with its
//! configuration intact and rolls back when the new one does not come up;
//! `health` decides whether it came up. `service` pins a Swarm service to the
//! pushed digest and follows Swarm's own rolling update to its end.

pub mod container;
pub mod engine;
pub mod health;
pub mod pull;
pub mod recreate;
pub mod service;

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
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records each step of an update in the journal before it is taken, so a
/// crash at any point can be repaired at the next start.
///
/// It also holds the crash-test hook: with `HOIST_FAULT_PAUSE_AFTER=<step>`,
/// hoist stops still right after that step (the tests then SIGKILL it). The
/// hook does nothing unless that variable is set.
#[derive(Clone)]
pub struct StepLog {
    journal: crate::job::Journal,
    job: crate::job::JobId,
    pause_after: Option<std::sync::Arc<str>>,
    /// When the push arrived, for the push-to-running and push-to-healthy metrics.
    received_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl StepLog {
    pub fn new(
        journal: crate::job::Journal,
        job: crate::job::JobId,
        pause_after: Option<std::sync::Arc<str>>,
    ) -> StepLog {
        StepLog {
            journal,
            job,
            pause_after,
            received_at: None,
        }
    }

    /// Adds when the push arrived, so the steps can be timed against it.
    pub fn with_received_at(mut self, received_at: chrono::DateTime<chrono::Utc>) -> StepLog {
        self.received_at = Some(received_at);
        self
    }

    /// Records `step` for `target`; the caller must not take the step if this fails.
    pub async fn before(&self, target: &str, step: &str, detail: Option<String>) -> Result<(), String> {
        self.journal
            .step(self.job, target, step, detail)
            .await
            .map_err(|e| format!("cannot record step {step}: {e}"))
    }

    /// A step was taken: the fault-injection point.
    pub async fn after(&self, step: &str) {
        if let Some(received_at) = self.received_at {
            crate::telemetry::step_reached(step, received_at);
        }
        if self.pause_after.as_deref() == Some(step) {
            tracing::warn!(job = %self.job, step, "Fault injection: paused after this step.");
            std::future::pending::<()>().await;
        }
    }
}
