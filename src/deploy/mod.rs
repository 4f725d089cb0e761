//! Changing what runs.
//!
//! `engine` is the only place bollard appears. `container` recreates a
//! standalone container with its configuration intact and rolls back when the
//! new one does not come up; `health` decides whether it came up. `service`
//! pins a Swarm service to the pushed digest and follows Swarm's own rolling
//! update to its end.

pub mod container;
pub mod credentials;
pub mod engine;
pub mod health;
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
