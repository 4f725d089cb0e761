//! What a new image changes about how it runs: its "contract" with the host.
//!
//! Pure: image configurations in (the `Config` of `docker image inspect`,
//! as JSON), differences out. Compared: exposed ports, volumes, user,
//! entrypoint and cmd, healthcheck, stop signal, working dir, and the
//! *names* of environment variables added or removed (never their values:
//! they may be secrets). The label `hoist.contract=block` refuses an update
//! that changes ports, volumes or user ([`Change::blocks`]).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

/// The parts of an image's configuration a deployment depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contract {
    pub ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub healthcheck: Vec<String>,
    pub stop_signal: String,
    pub working_dir: String,
    pub env_names: BTreeSet<String>,
}

/// One difference, in an operator's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `ports`, `volumes`, `user`, `entrypoint`, `cmd`, `healthcheck`,
    /// `stop_signal`, `working_dir` or `env`.
    pub field: &'static str,
    /// "exposed ports: +9090/tcp, -8080/tcp", "user: (root) → app".
    pub text: String,
}

impl Change {
    /// Whether `hoist.contract=block` refuses an update with this change.
    pub fn blocks(&self) -> bool {
        matches!(self.field, "ports" | "volumes" | "user")
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

impl Contract {
    /// Reads an image's `Config` object (engine JSON names); missing parts are empty.
    /// What an image's configuration promises the host (ports, volumes, user...).
    pub fn of_image(image: &crate::engine::ImageDetails) -> Contract {
        Contract::from_config(&image.config_json())
    }

    pub fn from_config(config: &Value) -> Contract {
        Contract {
            ports: keys(&config["ExposedPorts"]),
            volumes: keys(&config["Volumes"]),
            user: string(&config["User"]),
            entrypoint: strings(&config["Entrypoint"]),
            cmd: strings(&config["Cmd"]),
            healthcheck: strings(&config["Healthcheck"]["Test"]),
            stop_signal: string(&config["StopSignal"]),
            working_dir: string(&config["WorkingDir"]),
            env_names: strings(&config["Env"])
                .iter()
                .map(|e| e.split_once('=').map_or(e.as_str(), |(name, _)| name).to_string())
                .collect(),
        }
    }
}

fn set_change(
    field: &'static str,
    what: &str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Option<Change> {
    let added: Vec<String> = new.difference(old).map(|p| format!("+{p}")).collect();
    let removed: Vec<String> = old.difference(new).map(|p| format!("-{p}")).collect();
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let parts: Vec<String> = added.into_iter().chain(removed).collect();
    Some(Change {
        field,
        text: format!("{what}: {}", parts.join(", ")),
    })
}

fn shown(value: &str, empty: &str) -> String {
    if value.is_empty() {
        empty.to_string()
    } else {
        value.to_string()
    }
}

fn value_change(field: &'static str, what: &str, old: &str, new: &str, empty: &str) -> Option<Change> {
    (old != new).then(|| Change {
        field,
        text: format!("{what}: {} → {}", shown(old, empty), shown(new, empty)),
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{items:?}")
    }
}

/// Every difference from `old` to `new`, in a fixed order.
pub fn diff(old: &Contract, new: &Contract) -> Vec<Change> {
    [
        set_change("ports", "exposed ports", &old.ports, &new.ports),
        set_change("volumes", "volumes", &old.volumes, &new.volumes),
        value_change("user", "user", &old.user, &new.user, "(root)"),
        value_change(
            "entrypoint",
            "entrypoint",
            &list(&old.entrypoint),
            &list(&new.entrypoint),
            "(none)",
        ),
        value_change("cmd", "cmd", &list(&old.cmd), &list(&new.cmd), "(none)"),
        value_change(
            "healthcheck",
            "healthcheck",
            &list(&old.healthcheck),
            &list(&new.healthcheck),
            "(none)",
        ),
        value_change(
            "stop_signal",
            "stop signal",
            &old.stop_signal,
            &new.stop_signal,
            "(SIGTERM)",
        ),
        value_change(
            "working_dir",
            "working dir",
            &old.working_dir,
            &new.working_dir,
            "/",
        ),
        set_change("env", "env variables", &old.env_names, &new.env_names),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "User": "",
            "Entrypoint": null,
            "Cmd": ["/bin/sh", "-c", "serve"],
            "Healthcheck": {"Test": ["CMD", "/bin/true"], "Interval": 1000000000},
            "WorkingDir": "",
            "Env": ["PATH=/bin", "API_KEY=hunter2"],
        })
    }

    #[test]
    fn an_identical_image_changes_nothing() {
        let c = Contract::from_config(&config());
        assert_eq!(diff(&c, &c), vec![]);
        assert_eq!(
            diff(&Contract::default(), &Contract::from_config(&json!({}))),
            vec![]
        );
    }

    #[test]
    fn every_field_is_compared_and_env_values_never_shown() {
        let old = Contract::from_config(&config());
        let new = Contract::from_config(&json!({
            "ExposedPorts": {"9090/tcp": {}},
            "Volumes": {"/data": {}, "/cache": {}},
            "User": "app",
            "Entrypoint": ["/entry"],
            "Cmd": ["serve"],
            "Healthcheck": {"Test": ["NONE"]},
            "StopSignal": "SIGQUIT",
            "WorkingDir": "/srv",
            "Env": ["PATH=/bin", "API_KEY=changed-secret", "DATABASE_URL=postgres://u:p@db/x"],
        }));
        let changes = diff(&old, &new);
        let texts: Vec<&str> = changes.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "exposed ports: +9090/tcp, -8080/tcp",
                "volumes: +/cache",
                "user: (root) → app",
                "entrypoint: (none) → [\"/entry\"]",
                "cmd: [\"/bin/sh\", \"-c\", \"serve\"] → [\"serve\"]",
                "healthcheck: [\"CMD\", \"/bin/true\"] → [\"NONE\"]",
                "stop signal: (SIGTERM) → SIGQUIT",
                "working dir: / → /srv",
                "env variables: +DATABASE_URL",
            ]
        );
        let all = format!("{changes:?}");
        for secret in ["hunter2", "changed-secret", "postgres://"] {
            assert!(!all.contains(secret), "{all}");
        }
        let blocking: Vec<&str> = changes.iter().filter(|c| c.blocks()).map(|c| c.field).collect();
        assert_eq!(blocking, vec!["ports", "volumes", "user"]);
    }

    #[test]
    fn a_changed_env_value_alone_is_no_change() {
        let old = Contract::from_config(&json!({"Env": ["A=1", "B"]}));
        let new = Contract::from_config(&json!({"Env": ["A=2", "B"]}));
        assert_eq!(diff(&old, &new), vec![]);
        let removed = Contract::from_config(&json!({"Env": ["A=2"]}));
        assert_eq!(diff(&old, &removed)[0].text, "env variables: -B");
    }
}
