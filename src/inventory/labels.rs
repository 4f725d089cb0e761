//! Every label hoist reads, and the per-target options they set.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{parse_duration, parse_poll};

/// Opts a container (or Swarm service) in.
pub const ENABLE: &str = "hoist.enable";
/// The older opt-in label, accepted as a synonym.
pub const LEGACY_ENABLE: &str = "registry-docker-updater";
/// Notify of updates without applying them.
pub const MONITOR_ONLY: &str = "hoist.monitor-only";
/// Without a healthcheck: how long the new container must stay up (overrides `HOIST_HEALTH_GRACE`).
pub const HEALTH_GRACE: &str = "hoist.health.grace";
/// The most time the new container gets to come up (overrides `HOIST_HEALTH_DEADLINE`).
pub const HEALTH_DEADLINE: &str = "hoist.health.deadline";

/// `<duration>|off`: how often the target's tag is polled (overrides `HOIST_POLL_INTERVAL`).
pub const POLL: &str = "hoist.poll";

/// Both opt-in labels; either one set to `true` opts in.
pub const OPT_IN: [&str; 2] = [ENABLE, LEGACY_ENABLE];

pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// The image ID compose v2 recorded at `up`; kept in step by an update.
pub const COMPOSE_IMAGE: &str = "com.docker.compose.image";
/// The stack a Swarm service belongs to (`docker stack deploy`).
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

pub fn is_opt_in(key: &str) -> bool {
    OPT_IN.contains(&key)
}

/// What the labels of one target ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetOptions {
    pub enabled: bool,
    pub monitor_only: bool,
    pub health_grace: Option<Duration>,
    pub health_deadline: Option<Duration>,
    /// `hoist.poll`: `None` when the label is absent (the global interval
    /// applies), `Some(None)` for `off` or a bad value, `Some(Some(d))` to poll every `d`.
    pub poll: Option<Option<Duration>>,
}

impl TargetOptions {
    /// Reads the labels; a malformed value is reported and ignored, never fatal
    /// (one badly labelled container must not stop hoist from serving the rest).
    pub fn from_labels(labels: &HashMap<String, String>) -> (TargetOptions, Vec<String>) {
        let mut problems = Vec::new();
        let mut flag = |key: &str| match labels.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" || v == "1" || v == "yes" => true,
            Some(v) if v == "false" || v == "0" || v == "no" || v.is_empty() => false,
            Some(v) => {
                problems.push(format!("label {key}={v:?}: expected true or false"));
                false
            }
        };
        let enabled = OPT_IN.iter().any(|key| flag(key));
        let monitor_only = flag(MONITOR_ONLY);
        let mut duration = |key: &str| {
            let text = labels.get(key)?;
            let parsed = parse_duration(text);
            if parsed.is_none() {
                problems.push(format!("label {key}={text:?}: expected a duration such as 30s"));
            }
            parsed
        };
        let health_grace = duration(HEALTH_GRACE);
        let health_deadline = duration(HEALTH_DEADLINE);
        // A bad value turns polling off for this target: polling at an interval
        // the label did not mean would be worse than not polling.
        let poll = labels.get(POLL).map(|text| {
            parse_poll(text).unwrap_or_else(|why| {
                problems.push(format!("label {POLL}={text:?}: {why}; not polled"));
                None
            })
        });
        (
            TargetOptions {
                enabled,
                monitor_only,
                health_grace,
                health_deadline,
                poll,
            },
            problems,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn either_label_opts_in() {
        assert!(TargetOptions::from_labels(&labels(&[(ENABLE, "true")])).0.enabled);
        assert!(
            TargetOptions::from_labels(&labels(&[(LEGACY_ENABLE, "TRUE")]))
                .0
                .enabled
        );
        assert!(
            !TargetOptions::from_labels(&labels(&[(ENABLE, "false")]))
                .0
                .enabled
        );
        assert!(!TargetOptions::from_labels(&labels(&[])).0.enabled);
    }

    #[test]
    fn bad_values_are_reported_not_fatal() {
        let (options, problems) = TargetOptions::from_labels(&labels(&[
            (ENABLE, "true"),
            (MONITOR_ONLY, "maybe"),
            (HEALTH_GRACE, "soon"),
        ]));
        assert!(options.enabled && !options.monitor_only && options.health_grace.is_none());
        assert_eq!(problems.len(), 2);
        let (options, _) = TargetOptions::from_labels(&labels(&[(ENABLE, "true"), (HEALTH_DEADLINE, "90s")]));
        assert_eq!(options.health_deadline, Some(Duration::from_secs(90)));
    }

    #[test]
    fn poll_label_is_a_duration_or_off_and_absurd_values_are_errors() {
        let poll = |value: &str| {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(ENABLE, "true"), (POLL, value)]));
            (options.poll, problems.len())
        };
        assert_eq!(poll("5m"), (Some(Some(Duration::from_secs(300))), 0));
        assert_eq!(poll("off"), (Some(None), 0));
        for absurd in [
            "100000000000000000000",
            "99999999999999999999h",
            "1e400",
            "0.001",
            "-1s",
            "NaN",
            "every day",
            "",
            "\u{0}",
        ] {
            assert_eq!(poll(absurd), (Some(None), 1), "{absurd:?}");
        }
        assert_eq!(
            TargetOptions::from_labels(&labels(&[(ENABLE, "true")])).0.poll,
            None
        );
    }
}
