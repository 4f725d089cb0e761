//! The queue, the journal and the runner of update jobs.
//!
//! A job is one push: every target running the pushed tag, one pull, then
//! each target. Jobs for the same tag run one at a time, and a newer push of a
//! tag supersedes an older one still waiting; different tags run in parallel
//! up to a limit. Every job is journaled before it is acknowledged, and every
//! step that changes the engine before it is taken.

pub mod queue;
pub mod rollback;
pub mod rollout;
pub mod runner;

use crate::deploy::Outcome;
use crate::event::ImageEvent;
pub use crate::journal::{JobId, Journal};
pub use queue::{JobQueue, JobReceiver, QueueError};
pub use runner::{Runner, RunnerSettings};

/// One accepted push, as the runner takes it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub event: ImageEvent,
    /// Outcomes already reached for some targets by crash recovery at start-up
    /// (a re-run finds those targets current, and reports these instead).
    pub recovered: Vec<(String, Outcome)>,
}
