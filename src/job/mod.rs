//! The queue and the runner of update jobs.
//!
//! A job is one push: every target running the pushed tag, one pull, then
//! each target. Jobs for the same tag run one at a time, and a newer push of a
//! tag supersedes an older one still waiting; different tags run in parallel
//! up to a limit.

pub mod runner;

pub use runner::{Runner, RunnerSettings};
