//! Reading configuration values: the [`Vars`] source, a [`Reader`] that
//! collects every problem, and the value parsers (durations, poll intervals).
//!
//! It sits below every stage: each stage defines its own settings type and
//! reads it with a [`Reader`]; `crate::config` assembles them into one
//! `Config`. So no stage depends on `config`, and `config` depends on them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::Secret;

/// Where configuration values come from.
pub trait Vars {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct EnvVars;

impl Vars for EnvVars {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Vars for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Vars for HashMap<&str, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// One bad key. `value` is `None` for secrets, so they are never echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: &'static str,
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={:?}: {}", self.key, value, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in one read of the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct ConfigError(pub Vec<ConfigProblem>);

/// A reader that remembers every problem it meets, so all are reported at once.
pub struct Reader<'a> {
    vars: &'a dyn Vars,
    pub problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    pub fn new(vars: &'a dyn Vars) -> Self {
        Reader {
            vars,
            problems: Vec::new(),
        }
    }

    /// The raw value, with surrounding white space removed; empty counts as unset.
    pub fn string(&self, key: &str) -> Option<String> {
        self.vars
            .var(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A secret value: problems with it never echo it.
    pub fn secret(&self, key: &str) -> Option<Secret<String>> {
        self.string(key).map(Secret::new)
    }

    /// Parses a value with `FromStr`, recording a problem (and returning the default) when it fails.
    pub fn parsed<T: FromStr>(&mut self, key: &'static str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        match self.string(key) {
            None => default,
            Some(text) => match text.parse() {
                Ok(value) => value,
                Err(e) => {
                    self.problem(key, Some(text), e.to_string());
                    default
                }
            },
        }
    }

    pub fn flag(&mut self, key: &'static str) -> bool {
        match self.string(key).map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => false,
            Some(v) => {
                self.problem(key, Some(v), "expected true or false".into());
                false
            }
        }
    }

    /// A duration in humane form: `500ms`, `30s`, `2m`, or plain seconds.
    pub fn duration(&mut self, key: &'static str, default: Duration) -> Duration {
        match self.string(key) {
            None => default,
            Some(text) => match parse_duration(&text) {
                Some(d) => d,
                None => {
                    self.problem(
                        key,
                        Some(text),
                        "expected a duration such as 500ms, 30s or 2m".into(),
                    );
                    default
                }
            },
        }
    }

    pub fn problem(&mut self, key: &'static str, value: Option<String>, message: String) {
        self.problems.push(ConfigProblem { key, value, message });
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    // Fallible: an absurd value (a label such as `100000000000000000000`) is an error, not a panic.
    Duration::try_from_secs_f64(seconds).ok()
}

/// The shortest poll interval: more often would be a load on the registry, not a poll.
pub const POLL_MIN: Duration = Duration::from_secs(1);
/// The longest poll interval (a week).
pub const POLL_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a poll interval (`HOIST_POLL_INTERVAL`, the `hoist.poll` label):
/// `off` (also `false`, `0`, `none`) is `None`; else a duration from
/// [`POLL_MIN`] to [`POLL_MAX`].
pub fn parse_poll(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if matches!(
        text.to_ascii_lowercase().as_str(),
        "off" | "false" | "no" | "none" | "0"
    ) {
        return Ok(None);
    }
    match parse_duration(text) {
        Some(d) if (POLL_MIN..=POLL_MAX).contains(&d) => Ok(Some(d)),
        Some(_) => Err("expected off, or a poll interval from 1s to 168h".to_string()),
        None => Err("expected off, or a duration such as 30s, 5m or 1h".to_string()),
    }
}
