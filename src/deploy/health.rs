//! The health gate: did the new container come up?
//!
//! With a healthcheck, "up" means healthy; without one, running (and not
//! restarting) for a grace period. Either way within a deadline. The answer
//! says why not, in words fit for a report.

use std::time::Duration;

use tokio::time::Instant;

use super::DeployError;
use crate::engine::{Engine, Health};

/// How a new container is judged to have come up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Without a healthcheck: how long the new container must stay running.
    pub grace: Duration,
    /// The most time a new container gets to become running (and healthy).
    pub deadline: Duration,
}

/// How often the container is inspected while waiting.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Waits until the container is up, or returns why it is not: a verdict on
/// the new container, or an engine fault that leaves the question open.
pub async fn wait_until_up(engine: &Engine, id: &str, settings: &HealthConfig) -> Result<(), DeployError> {
    check(engine, id, settings).await.map_err(|why| match why {
        Checked::Engine(e) => DeployError::from_engine("cannot inspect the new container", &e),
        Checked::Down(reason) => DeployError::Verdict(reason),
    })
}

/// Why the gate was not passed.
enum Checked {
    Engine(crate::engine::EngineError),
    Down(String),
}

impl From<String> for Checked {
    fn from(reason: String) -> Checked {
        Checked::Down(reason)
    }
}

async fn check(engine: &Engine, id: &str, settings: &HealthConfig) -> Result<(), Checked> {
    let started = Instant::now();
    // A deadline past the clock's end (an absurd setting) is no deadline, not a panic.
    let deadline = started.checked_add(settings.deadline);
    let mut running_since: Option<Instant> = None;
    let mut first_restart_count = None;
    loop {
        let details = engine.inspect_container(id).await.map_err(Checked::Engine)?;
        let restart_count = details.restart_count();
        let baseline = *first_restart_count.get_or_insert(restart_count);
        if details.restarting() || restart_count > baseline {
            return Err(format!(
                "the new container keeps restarting (exit code {})",
                details.exit_code().unwrap_or(-1)
            )
            .into());
        }
        if !details.running() {
            let mut reason = format!(
                "the new container exited with code {}",
                details.exit_code().unwrap_or(-1)
            );
            if let Some(error) = details.state_error() {
                reason.push_str(&format!(": {error}"));
            }
            return Err(reason.into());
        }
        match details.health() {
            Some(Health::Healthy) => return Ok(()),
            Some(Health::Unhealthy) => {
                let output = details.last_health_output().unwrap_or_default();
                return Err(format!("the new container is unhealthy: {output}")
                    .trim_end_matches(": ")
                    .to_string()
                    .into());
            }
            Some(Health::Starting) => {}
            None => {
                let since = *running_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= settings.grace {
                    return Ok(());
                }
            }
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(if details.has_healthcheck() {
                format!("the new container was not healthy within {:?}", settings.deadline)
            } else {
                format!(
                    "the new container did not stay up for {:?} within {:?}",
                    settings.grace, settings.deadline
                )
            }
            .into());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
