//! The health gate: did the new container come up?
//!
//! With a healthcheck, "up" means healthy; without one, running (and not
//! restarting) for a grace period. Either way within a deadline. The answer
//! says why not, in words fit for a report.

use std::time::Duration;

use tokio::time::Instant;

use super::engine::{Engine, Health};
use crate::config::HealthConfig;

/// How often the container is inspected while waiting.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Waits until the container is up, or returns why it is not.
pub async fn wait_until_up(engine: &Engine, id: &str, settings: &HealthConfig) -> Result<(), String> {
    let started = Instant::now();
    // A deadline past the clock's end (an absurd setting) is no deadline, not a panic.
    let deadline = started.checked_add(settings.deadline);
    let mut running_since: Option<Instant> = None;
    let mut first_restart_count = None;
    loop {
        let details = engine.inspect_container(id).await.map_err(|e| e.to_string())?;
        let restart_count = details.restart_count();
        let baseline = *first_restart_count.get_or_insert(restart_count);
        if details.restarting() || restart_count > baseline {
            return Err(format!(
                "the new container keeps restarting (exit code {})",
                details.exit_code().unwrap_or(-1)
            ));
        }
        if !details.running() {
            let mut reason = format!(
                "the new container exited with code {}",
                details.exit_code().unwrap_or(-1)
            );
            if let Some(error) = details.state_error() {
                reason.push_str(&format!(": {error}"));
            }
            return Err(reason);
        }
        match details.health() {
            Some(Health::Healthy) => return Ok(()),
            Some(Health::Unhealthy) => {
                let output = details.last_health_output().unwrap_or_default();
                return Err(format!("the new container is unhealthy: {output}")
                    .trim_end_matches(": ")
                    .to_string());
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
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
