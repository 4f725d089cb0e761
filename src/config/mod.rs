//! Configuration, read from an injectable [`Vars`] source and validated at once.
//!
//! `Config::from_vars` is the whole contract: the process environment and a
//! `HashMap` both implement [`Vars`], so tests never touch the real
//! environment. Every problem is collected and reported together, each naming
//! its key (and its value, unless the value is a secret).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::deploy::health::HealthConfig;
use crate::event::Aliases;
use crate::labels::UpdateOrder;
use crate::notify::NotifyConfig;
use crate::secret::Secret;
use crate::swarm::SwarmConfig;
use crate::telemetry::LogFormat;

pub mod variables;
pub use variables::{Variable, VARIABLES};

// Reading and validating values is a layer below every stage (`crate::settings`);
// this module only assembles each stage's settings into one `Config`.
pub use crate::settings::{
    parse_duration, parse_poll, ConfigError, ConfigProblem, EnvVars, Reader, Vars, POLL_MAX, POLL_MIN,
};

/// A retention: a number of days (`90d`), or any [`parse_duration`].
pub fn parse_retention(text: &str) -> Option<Duration> {
    match text.trim().strip_suffix('d') {
        Some(days) => {
            let days: f64 = days.trim().parse().ok()?;
            if !days.is_finite() || days < 0.0 {
                return None;
            }
            Duration::try_from_secs_f64(days * 86400.0).ok()
        }
        None => parse_duration(text),
    }
}

/// A webhook token shorter than this gets a warning at start.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Everything hoist needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOIST_LISTEN`: the address the HTTP server binds.
    pub listen: SocketAddr,
    /// `HOIST_WEBHOOK_TOKEN`: the bearer token webhooks must carry; `None` only
    /// when `HOIST_INSECURE_NO_AUTH=true`.
    pub webhook_token: Option<Secret<String>>,
    /// `HOIST_METRICS_TOKEN`: the bearer token `GET /metrics` wants; open without one.
    pub metrics_token: Option<Secret<String>>,
    /// `HOIST_GITHUB_WEBHOOK_SECRET`: the secret GitHub signs its webhooks with.
    pub github_webhook_secret: Option<Secret<String>>,
    /// `HOIST_GITEA_WEBHOOK_SECRET`: the secret Gitea and Forgejo sign their webhooks with.
    pub gitea_webhook_secret: Option<Secret<String>>,
    /// `HOIST_REGISTRY_ALIASES`: host names that are one registry.
    pub registry_aliases: Aliases,
    /// `DOCKER_HOST`: the engine to manage (`unix://...` or `tcp://...`); the local socket when unset.
    pub docker_host: Option<String>,
    /// `HOIST_STATE_DIR`: where the history is kept.
    pub state_dir: PathBuf,
    /// `HOIST_MAX_BODY_BYTES`: larger webhook bodies get 413.
    pub max_body_bytes: usize,
    /// `HOIST_QUEUE_CAPACITY`: events waiting for the matcher; past it webhooks get 503.
    pub queue_capacity: usize,
    /// `HOIST_MAX_PARALLEL`: engine operations (pull, create, stop, start,
    /// rename, remove) in flight at once; health gates are waited for without one.
    pub max_parallel: usize,
    /// `HOIST_ORDER`: the update order of targets without `hoist.order`.
    pub order: UpdateOrder,
    pub health: HealthConfig,
    /// `HOIST_STOP_TIMEOUT`: how long the old container gets to stop, unless it has its own stop timeout.
    pub stop_timeout: Duration,
    /// `HOIST_PULL_TIMEOUT`: the most a whole pull (its progress stream included) may take.
    pub pull_timeout: Duration,
    /// `HOIST_SHUTDOWN_GRACE`: how long running updates get to finish on SIGTERM.
    pub shutdown_grace: Duration,
    pub notify: NotifyConfig,
    /// Services, peers and forwarding (`HOIST_SERVICES`, `HOIST_PEERS`, ...; see `swarm`).
    pub swarm: SwarmConfig,
    pub log_format: LogFormat,
    /// `HOIST_REMOVE_OLD_IMAGES`: after a successful update, remove the image
    /// the container ran before if nothing else uses it.
    pub remove_old_images: bool,
    /// `HOIST_NOTIFY_UNCHANGED`: also send a message when every target of a
    /// push already ran its digest (a redelivery); off, such a push is only in the history.
    pub notify_unchanged: bool,
    /// `HOIST_HISTORY_RETENTION`: finished jobs older than this are pruned
    /// from the journal at start and daily.
    pub history_retention: Duration,
    /// `HOIST_CANARY`: one target of a push first, the rest once it is healthy.
    pub canary: bool,
    /// `HOIST_SELF_CONTAINER`: hoist's own container (name or ID), when it runs in one.
    pub self_container: Option<String>,
    /// `HOIST_FAULT_PAUSE_AFTER`, for crash tests only: stop still after this update step.
    pub fault_pause_after: Option<String>,
    /// `HOIST_FAULT_PAUSE_FILE`, for fault tests only: with `HOIST_FAULT_PAUSE_AFTER`,
    /// pause once, keep this file while paused, and go on when it is removed.
    pub fault_pause_file: Option<PathBuf>,
    /// `HOIST_ENGINE_RETRY_FOR`: how long a job cut off by engine faults is
    /// run again (once the engine answers) before it is reported failed.
    pub engine_retry_for: Duration,
    /// `HOIST_ENGINE_TIMEOUT`: the most time one engine call may take to be
    /// answered; a stop gets its stop timeout more, a pull `HOIST_PULL_TIMEOUT`.
    pub engine_timeout: Duration,
    /// `HOIST_DOCKER_CONFIG` (else `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`): the registry credentials for pulls,
    /// digest look-ups and service updates (`registry::credentials`).
    pub docker_config: Option<PathBuf>,
    /// `HOIST_POLL_INTERVAL`: how often every target's tag is polled; `None` (the default) is off.
    pub poll_interval: Option<Duration>,
    /// `HOIST_REBUILD_HOOK_*`, `HOIST_BASE_POLL_INTERVAL`: base images (`crate::base`).
    pub base: crate::base::BaseConfig,
}

/// Names of every variable, in one place for `--help` and the README.
pub mod keys {
    pub const LISTEN: &str = "HOIST_LISTEN";
    pub const WEBHOOK_TOKEN: &str = "HOIST_WEBHOOK_TOKEN";
    pub const INSECURE_NO_AUTH: &str = "HOIST_INSECURE_NO_AUTH";
    pub const METRICS_TOKEN: &str = "HOIST_METRICS_TOKEN";
    pub const GITHUB_WEBHOOK_SECRET: &str = "HOIST_GITHUB_WEBHOOK_SECRET";
    pub const GITEA_WEBHOOK_SECRET: &str = "HOIST_GITEA_WEBHOOK_SECRET";
    pub const REGISTRY_ALIASES: &str = "HOIST_REGISTRY_ALIASES";
    pub const STATE_DIR: &str = "HOIST_STATE_DIR";
    pub const MAX_BODY_BYTES: &str = "HOIST_MAX_BODY_BYTES";
    pub const QUEUE_CAPACITY: &str = "HOIST_QUEUE_CAPACITY";
    pub const MAX_PARALLEL: &str = "HOIST_MAX_PARALLEL";
    pub const HEALTH_GRACE: &str = "HOIST_HEALTH_GRACE";
    pub const HEALTH_DEADLINE: &str = "HOIST_HEALTH_DEADLINE";
    pub const STOP_TIMEOUT: &str = "HOIST_STOP_TIMEOUT";
    pub const PULL_TIMEOUT: &str = "HOIST_PULL_TIMEOUT";
    pub const SHUTDOWN_GRACE: &str = "HOIST_SHUTDOWN_GRACE";
    pub const LOG_FORMAT: &str = "HOIST_LOG_FORMAT";
    pub const FAULT_PAUSE_AFTER: &str = "HOIST_FAULT_PAUSE_AFTER";
    pub const FAULT_PAUSE_FILE: &str = "HOIST_FAULT_PAUSE_FILE";
    pub const ENGINE_RETRY_FOR: &str = "HOIST_ENGINE_RETRY_FOR";
    pub const ENGINE_TIMEOUT: &str = "HOIST_ENGINE_TIMEOUT";
    pub const REMOVE_OLD_IMAGES: &str = "HOIST_REMOVE_OLD_IMAGES";
    pub const NOTIFY_UNCHANGED: &str = "HOIST_NOTIFY_UNCHANGED";
    pub const HISTORY_RETENTION: &str = "HOIST_HISTORY_RETENTION";
    pub const CANARY: &str = "HOIST_CANARY";
    pub const SELF_CONTAINER: &str = "HOIST_SELF_CONTAINER";
    pub const DOCKER_HOST: &str = "DOCKER_HOST";
    pub const DOCKER_CONFIG_FILE: &str = "HOIST_DOCKER_CONFIG";
    pub const POLL_INTERVAL: &str = "HOIST_POLL_INTERVAL";
    pub const ORDER: &str = "HOIST_ORDER";
}

impl Config {
    /// Reads and validates every key; all problems are returned together.
    pub fn from_vars(vars: &dyn Vars) -> Result<Config, ConfigError> {
        let mut r = Reader::new(vars);
        let listen = r.parsed(keys::LISTEN, SocketAddr::from(([0, 0, 0, 0], 8080)));
        let insecure = r.flag(keys::INSECURE_NO_AUTH);
        let webhook_token = r.secret(keys::WEBHOOK_TOKEN);
        if webhook_token.is_none() && !insecure {
            r.problem(
                keys::WEBHOOK_TOKEN,
                None,
                format!(
                    "required: set a token, or {}=true to accept unauthenticated webhooks",
                    keys::INSECURE_NO_AUTH
                ),
            );
        }
        let metrics_token = r.secret(keys::METRICS_TOKEN);
        let github_webhook_secret = r.secret(keys::GITHUB_WEBHOOK_SECRET);
        let gitea_webhook_secret = r.secret(keys::GITEA_WEBHOOK_SECRET);
        let registry_aliases = match r.string(keys::REGISTRY_ALIASES) {
            None => Aliases::default(),
            Some(text) => Aliases::parse(&text).unwrap_or_else(|e| {
                r.problem(keys::REGISTRY_ALIASES, Some(text.clone()), e.to_string());
                Aliases::default()
            }),
        };
        let docker_host = r.string(keys::DOCKER_HOST);
        let state_dir = PathBuf::from(
            r.string(keys::STATE_DIR)
                .unwrap_or_else(|| "/var/lib/hoist".into()),
        );
        let max_body_bytes = r.parsed(keys::MAX_BODY_BYTES, 1024 * 1024);
        let queue_capacity = r.parsed(keys::QUEUE_CAPACITY, 1024);
        let max_parallel = r.parsed(keys::MAX_PARALLEL, 4);
        for (key, value) in [
            (keys::QUEUE_CAPACITY, queue_capacity),
            (keys::MAX_PARALLEL, max_parallel),
            (keys::MAX_BODY_BYTES, max_body_bytes),
        ] {
            if value == 0 {
                r.problem(key, Some("0".into()), "must be at least 1".into());
            }
        }
        let health = HealthConfig {
            grace: r.duration(keys::HEALTH_GRACE, Duration::from_secs(5)),
            deadline: r.duration(keys::HEALTH_DEADLINE, Duration::from_secs(60)),
        };
        let stop_timeout = r.duration(keys::STOP_TIMEOUT, Duration::from_secs(10));
        let order = r.parsed(keys::ORDER, UpdateOrder::StopFirst);
        let pull_timeout = r.duration(keys::PULL_TIMEOUT, Duration::from_secs(600));
        let shutdown_grace = r.duration(keys::SHUTDOWN_GRACE, Duration::from_secs(60));
        let log_format = r.parsed(keys::LOG_FORMAT, LogFormat::Text);
        let notify = NotifyConfig::from_reader(&mut r);
        // Crash-test hooks exist only in test builds: a release binary neither
        // reads nor names these variables.
        #[cfg(feature = "fault-injection")]
        let (fault_pause_after, fault_pause_file) = (
            r.string(keys::FAULT_PAUSE_AFTER),
            r.string(keys::FAULT_PAUSE_FILE).map(PathBuf::from),
        );
        #[cfg(not(feature = "fault-injection"))]
        let (fault_pause_after, fault_pause_file) = (None, None);
        let engine_retry_for = r.duration(keys::ENGINE_RETRY_FOR, Duration::from_secs(30 * 60));
        let engine_timeout = r.duration(keys::ENGINE_TIMEOUT, Duration::from_secs(120));
        if engine_timeout.is_zero() {
            r.problem(
                keys::ENGINE_TIMEOUT,
                Some("0".into()),
                "must be more than 0".into(),
            );
        }
        let remove_old_images = r.flag(keys::REMOVE_OLD_IMAGES);
        let notify_unchanged = r.flag(keys::NOTIFY_UNCHANGED);
        let retention_text = r.string(keys::HISTORY_RETENTION);
        let history_retention = match retention_text.as_deref().map(parse_retention) {
            None => Duration::from_secs(90 * 86400),
            Some(Some(retention)) if retention >= Duration::from_secs(3600) => retention,
            Some(_) => {
                r.problem(
                    keys::HISTORY_RETENTION,
                    retention_text,
                    "expected a duration of at least 1h, e.g. 90d or 36h".into(),
                );
                Duration::from_secs(90 * 86400)
            }
        };
        let canary = r.flag(keys::CANARY);
        let self_container = r.string(keys::SELF_CONTAINER);
        let swarm = SwarmConfig::from_reader(&mut r, listen.port());
        let docker_config = r
            .string(keys::DOCKER_CONFIG_FILE)
            .map(PathBuf::from)
            .or_else(|| {
                r.string("DOCKER_CONFIG")
                    .map(|dir| PathBuf::from(dir).join("config.json"))
            })
            .or_else(|| {
                r.string("HOME")
                    .map(|home| PathBuf::from(home).join(".docker/config.json"))
            });
        let poll_interval = match r.string(keys::POLL_INTERVAL) {
            None => None,
            Some(text) => match parse_poll(&text) {
                Ok(interval) => interval,
                Err(message) => {
                    r.problem(keys::POLL_INTERVAL, Some(text), message);
                    None
                }
            },
        };
        let base = crate::base::BaseConfig::from_reader(&mut r);
        if !r.problems.is_empty() {
            return Err(ConfigError(r.problems));
        }
        Ok(Config {
            listen,
            webhook_token,
            metrics_token,
            github_webhook_secret,
            gitea_webhook_secret,
            registry_aliases,
            docker_host,
            state_dir,
            max_body_bytes,
            queue_capacity,
            max_parallel,
            order,
            health,
            stop_timeout,
            pull_timeout,
            shutdown_grace,
            notify,
            swarm,
            log_format,
            fault_pause_after,
            fault_pause_file,
            engine_retry_for,
            engine_timeout,
            remove_old_images,
            notify_unchanged,
            history_retention,
            canary,
            self_container,
            docker_config,
            poll_interval,
            base,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn token_is_required_unless_insecure() {
        let err = Config::from_vars(&vars(&[])).unwrap_err();
        assert_eq!(err.0[0].key, keys::WEBHOOK_TOKEN);
        assert!(Config::from_vars(&vars(&[(keys::INSECURE_NO_AUTH, "true")])).is_ok());
    }

    #[test]
    fn every_problem_is_reported_and_secrets_are_not_echoed() {
        let err = Config::from_vars(&vars(&[
            (keys::LISTEN, "nowhere"),
            (keys::MAX_PARALLEL, "0"),
            (keys::HEALTH_GRACE, "soon"),
        ]))
        .unwrap_err();
        let keys_found: Vec<_> = err.0.iter().map(|p| p.key).collect();
        assert_eq!(
            keys_found,
            vec![
                keys::LISTEN,
                keys::WEBHOOK_TOKEN,
                keys::MAX_PARALLEL,
                keys::HEALTH_GRACE
            ]
        );
        assert!(err.to_string().contains("\"nowhere\""));
    }

    #[test]
    fn poll_intervals_are_off_or_sane() {
        assert_eq!(parse_poll("off"), Ok(None));
        assert_eq!(parse_poll(" OFF "), Ok(None));
        assert_eq!(parse_poll("0"), Ok(None));
        assert_eq!(parse_poll("5m"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(parse_poll("1s"), Ok(Some(Duration::from_secs(1))));
        for absurd in [
            "100ms",
            "169h",
            "100000000000000000000",
            "1e400",
            "-5s",
            "soon",
            "",
        ] {
            assert!(parse_poll(absurd).is_err(), "{absurd}");
        }
        let config = Config::from_vars(&vars(&[(keys::INSECURE_NO_AUTH, "true")])).unwrap();
        assert_eq!(config.poll_interval, None, "polling is off by default");
        let config = Config::from_vars(&vars(&[
            (keys::INSECURE_NO_AUTH, "true"),
            (keys::POLL_INTERVAL, "2m"),
        ]))
        .unwrap();
        assert_eq!(config.poll_interval, Some(Duration::from_secs(120)));
        let err = Config::from_vars(&vars(&[
            (keys::INSECURE_NO_AUTH, "true"),
            (keys::POLL_INTERVAL, "10ms"),
        ]))
        .unwrap_err();
        assert_eq!(err.0[0].key, keys::POLL_INTERVAL);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retention("90d"), Some(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_retention("36h"), Some(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_retention("-1d"), None);
        assert_eq!(parse_retention("99999999999999999999d"), None);
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3 days"), None);
        assert_eq!(parse_duration("100000000000000000000"), None);
        assert_eq!(parse_duration("1e400"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }
}
