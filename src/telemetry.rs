//! Logs and metrics: the tracing subscriber, every metric name, and one emit
//! function per notable occurrence, so that what is logged is also counted.

use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

pub const EVENTS_RECEIVED: &str = "hoist_events_received_total";
pub const JOBS: &str = "hoist_jobs_total";
pub const PUSH_TO_RUNNING: &str = "hoist_push_to_running_seconds";
pub const PUSH_TO_HEALTHY: &str = "hoist_push_to_healthy_seconds";
pub const JOB_DURATION: &str = "hoist_job_duration_seconds";
pub const QUEUE_DEPTH: &str = "hoist_queue_depth";
pub const QUEUE_FULL: &str = "hoist_queue_full_total";
pub const FORWARDS: &str = "hoist_forwards_total";
pub const POLLS: &str = "hoist_polls_total";
pub const READS_REFUSED: &str = "hoist_read_requests_refused_total";

/// Installs the log subscriber. `RUST_LOG` overrides the default `info`
/// level, as a level (`debug`) or per module (`hoist::deploy=debug,info`).
/// The filter is tracing-subscriber's `Targets`, not `EnvFilter`: the latter's
/// span and field matching pulls in the regex engine (about 0.5 MB of binary)
/// for a feature an agent's logs don't need.
pub fn init_logging(format: LogFormat) {
    let (filter, bad_filter) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let ansi = use_colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi);
    // Fails only when a subscriber is already set (tests): keep that one.
    let installed = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(fmt.json())
            .with(filter)
            .try_init()
            .is_ok(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(fmt)
            .with(filter)
            .try_init()
            .is_ok(),
    };
    if let (true, Some(error)) = (installed, bad_filter) {
        tracing::warn!(%error, "RUST_LOG is not a level or a list of module=level; logging at info.");
    }
}

/// The log filter `RUST_LOG` asks for (`info` when unset or empty), and why
/// it could not be read when it could not (then `info`).
fn log_filter(text: Option<&str>) -> (Targets, Option<String>) {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => (info(), None),
        Some(text) => match text.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(e) => (info(), Some(e.to_string())),
        },
    }
}

/// Colour codes only for a person at a terminal: `docker logs`, journald and
/// files get plain text. `NO_COLOR` set to anything non-empty turns colour off
/// (<https://no-color.org>).
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The process-wide Prometheus recorder, installed on first use (several
/// in-process instances, as in tests, share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was set first; the handle still renders ours.
            metrics::set_global_recorder(recorder).ok();
            handle
        })
        .clone()
}

/// A webhook request was read; `verdict` is `update`, `ignored`, `malformed`,
/// `unauthorized`, `too_large` or `queue_full`.
pub fn event_received(source: &'static str, verdict: &'static str) {
    metrics::counter!(EVENTS_RECEIVED, "source" => source, "verdict" => verdict).increment(1);
}

pub fn queue_full() {
    metrics::counter!(QUEUE_FULL).increment(1);
}

pub fn queue_depth(depth: usize) {
    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
}

/// A target's update ended.
pub fn job_outcome(outcome: &'static str, took: Duration) {
    metrics::counter!(JOBS, "outcome" => outcome).increment(1);
    metrics::histogram!(JOB_DURATION).record(took.as_secs_f64());
}

/// A new container started (`started`) or passed its health gate (`verified`).
pub fn step_reached(step: &str, received_at: DateTime<Utc>) {
    let since_push = (Utc::now() - received_at)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    match step {
        "started" => metrics::histogram!(PUSH_TO_RUNNING).record(since_push),
        "verified" => metrics::histogram!(PUSH_TO_HEALTHY).record(since_push),
        _ => {}
    }
}

/// A `GET /v1/*` (or `/metrics` with its own token) came without the right token.
pub fn count_read_refused() {
    metrics::counter!(READS_REFUSED).increment(1);
}

/// One forward of an update to a peer hoist ended; `outcome` is `delivered`,
/// `retried` (an attempt failed, another follows) or `failed` (given up).
pub fn forward(outcome: &'static str) {
    metrics::counter!(FORWARDS, "outcome" => outcome).increment(1);
}

/// One poll of a tag ended. `outcome`: `unchanged`, `changed` (queued as an
/// update), `current` (new, but every target runs it already or a job for it
/// is queued), `queue_failed`, or the registry error's kind (`unauthorized`,
/// `not_found`, `rate_limited`, `unreachable`, `protocol`).
pub fn poll(registry: &str, outcome: &'static str) {
    metrics::counter!(POLLS, "registry" => registry.to_string(), "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None), "a file or a pipe gets plain text");
        assert!(!use_colour(true, Some("1".into())), "NO_COLOR turns colour off");
        assert!(use_colour(true, Some("".into())), "an empty NO_COLOR is unset");
    }

    #[test]
    fn log_filter_reads_levels_and_modules_and_refuses_nonsense() {
        use tracing::Level;
        use tracing_subscriber::filter::LevelFilter;
        let (filter, bad) = super::log_filter(None);
        assert!(bad.is_none());
        assert_eq!(filter.default_level(), Some(LevelFilter::INFO));
        let (filter, bad) = super::log_filter(Some("hoist::deploy=debug,warn"));
        assert!(bad.is_none());
        assert!(filter.would_enable("hoist::deploy::container", &Level::DEBUG));
        assert!(!filter.would_enable("hoist::job", &Level::INFO));
        let (filter, bad) = super::log_filter(Some("hoist=[{"));
        assert!(bad.is_some());
        assert_eq!(filter.default_level(), Some(LevelFilter::INFO));
    }
}
