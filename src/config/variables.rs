//! Every environment variable hoist reads, with its default and meaning: the
//! one list that `hoist run --help` prints and the README's tables are
//! checked against (`tests::every_variable_is_in_the_help_and_the_readme`).
//! A variable the code reads and this list lacks fails
//! `tests::every_variable_the_code_reads_is_listed`.

/// One environment variable.
#[derive(Clone, Copy, Debug)]
pub struct Variable {
    pub name: &'static str,
    /// The default, as a user would write it; `None` when unset means "off" or "required".
    pub default: Option<&'static str>,
    /// What it does, in a line or two (the help wraps it).
    pub meaning: &'static str,
}

const fn var(name: &'static str, default: Option<&'static str>, meaning: &'static str) -> Variable {
    Variable {
        name,
        default,
        meaning,
    }
}

/// Every variable, in the order `--help` lists them.
pub const VARIABLES: &[Variable] = &[
    var("HOIST_LISTEN", Some("0.0.0.0:8080"), "address to serve on"),
    var(
        "HOIST_WEBHOOK_TOKEN",
        None,
        "bearer token webhooks, POST /v1/update and every GET /v1/* must send (Authorization: Bearer <token>), or put in the path for Docker Hub and Quay; required",
    ),
    var(
        "HOIST_METRICS_TOKEN",
        None,
        "bearer token GET /metrics wants (what Prometheus sends as its bearer token); unset, /metrics is open",
    ),
    var(
        "HOIST_URL",
        Some("http://127.0.0.1:8080"),
        "the running hoist the CLI subcommands (status, history, plan, rollback) talk to, with HOIST_WEBHOOK_TOKEN",
    ),
    var(
        "HOIST_INSECURE_NO_AUTH",
        Some("false"),
        "true to accept webhooks without a token (not recommended)",
    ),
    var(
        "HOIST_GITHUB_WEBHOOK_SECRET",
        None,
        "secret of the GitHub webhook (package events): POST /v1/hooks/github checks X-Hub-Signature-256 with it",
    ),
    var(
        "HOIST_GITEA_WEBHOOK_SECRET",
        None,
        "secret of the Gitea or Forgejo webhook: POST /v1/hooks/gitea checks X-Gitea-Signature/X-Forgejo-Signature with it",
    ),
    var(
        "HOIST_REGISTRY_ALIASES",
        None,
        "name=alias,... registry host names that are one registry, e.g. registry.example.com=127.0.0.1:5000",
    ),
    var(
        "HOIST_STATE_DIR",
        Some("/var/lib/hoist"),
        "where the job journal (hoist.db, SQLite) is kept: keep it on a volume",
    ),
    var(
        "HOIST_HEALTH_GRACE",
        Some("5s"),
        "without a healthcheck, how long a new container must stay running",
    ),
    var(
        "HOIST_HEALTH_DEADLINE",
        Some("60s"),
        "how long a new container gets to be running (and healthy)",
    ),
    var(
        "HOIST_STOP_TIMEOUT",
        Some("10s"),
        "how long the old container gets to stop, unless it has its own stop timeout (--stop-timeout)",
    ),
    var(
        "HOIST_PULL_TIMEOUT",
        Some("10m"),
        "the most a whole pull may take (the engine's progress stream included); past it the push fails and nothing is changed",
    ),
    var(
        "HOIST_ENGINE_TIMEOUT",
        Some("2m"),
        "most time one engine call may take to be answered before it counts as an engine fault (a stop gets its stop timeout more; a pull has HOIST_PULL_TIMEOUT)",
    ),
    var(
        "HOIST_ENGINE_RETRY_FOR",
        Some("30m"),
        "how long an update cut off by engine faults (engine restarted, unreachable, stalled, 5xx) is run again once the engine answers, before it is reported failed",
    ),
    var(
        "HOIST_MAX_PARALLEL",
        Some("4"),
        "engine operations (pull, create, stop, start, rename, remove) in flight at once, over every job; a health gate is waited for without holding one",
    ),
    var(
        "HOIST_ORDER",
        Some("stop-first"),
        "update order of containers without a hoist.order label: stop-first (the new container is created before the old one stops, so the outage is a stop and a start) or start-first (the new one starts and passes its health gate beside the old one; containers with published host ports fall back to stop-first)",
    ),
    var(
        "HOIST_QUEUE_CAPACITY",
        Some("1024"),
        "jobs accepted and waiting to run; past it webhooks get 503 with Retry-After",
    ),
    var("HOIST_MAX_BODY_BYTES", Some("1048576"), "largest webhook body accepted"),
    var(
        "HOIST_SHUTDOWN_GRACE",
        Some("60s"),
        "on SIGTERM, how long running updates get to finish",
    ),
    var(
        "HOIST_CANARY",
        Some("false"),
        "true to update one target of a push first, and the others only once it passed its health gate (also the label hoist.canary=true)",
    ),
    var(
        "HOIST_SELF_CONTAINER",
        None,
        "the name or ID of hoist's own container, so that it updates itself safely; found from /proc/self or the hostname when unset",
    ),
    var(
        "HOIST_REMOVE_OLD_IMAGES",
        Some("false"),
        "true to remove, after a successful update, the images older than the one the target ran before (that one stays, for a rollback) when nothing uses them",
    ),
    var(
        "HOIST_NOTIFY_UNCHANGED",
        Some("false"),
        "true to send a message also when every target of a push already runs its digest (a redelivery); otherwise such a push is only in the history",
    ),
    var(
        "HOIST_HISTORY_RETENTION",
        Some("90d"),
        "finished jobs older than this are pruned from the journal, at start and daily (at least 1h)",
    ),
    var(
        "HOIST_LOG_FORMAT",
        Some("text"),
        "text or json; RUST_LOG sets the level; colour only on a terminal, never with NO_COLOR set",
    ),
    var(
        "HOIST_SERVICES",
        Some("leader"),
        "leader: update labelled Swarm services when this engine leads the swarm; off: never",
    ),
    var(
        "HOIST_SERVICE_DEADLINE",
        Some("10m"),
        "most time a service's rolling update (or its rollback) gets before it is reported failed",
    ),
    var("HOIST_PEERS", None, "http://host:port,... other hoists every update is forwarded to"),
    var(
        "HOIST_PEERS_DNS",
        None,
        "name[:port] resolved to the other hoists before each forward, e.g. tasks.hoist_hoist (port: this hoist's)",
    ),
    var(
        "HOIST_FORWARD_ATTEMPTS",
        Some("5"),
        "tries per peer before a forward is given up and reported",
    ),
    var(
        "HOIST_DOCKER_CONFIG",
        Some("$DOCKER_CONFIG/config.json, else $HOME/.docker/config.json"),
        "docker config file with the registry credentials for pulls, digest look-ups and service updates \
         (static auths, or credHelpers/credsStore through docker-credential-<name> on PATH); re-read when it changes",
    ),
    var(
        "HOIST_POLL_INTERVAL",
        Some("off"),
        "how often every target's tag is asked for its digest (one HEAD per tag), e.g. 5m; a change redeploys \
         as a push would. The label hoist.poll overrides it per target",
    ),
    var(
        "HOIST_REBUILD_HOOK_URL",
        None,
        "where to POST a rebuild request when the base image of a target's image moves (a secret: never logged). \
         The label hoist.rebuild-hook overrides it per target",
    ),
    var(
        "HOIST_REBUILD_HOOK_TOKEN",
        None,
        "sent with each rebuild request, as a bearer token (gitlab: in the body; jenkins: user:apitoken as Basic); a secret",
    ),
    var(
        "HOIST_REBUILD_HOOK_FORMAT",
        Some("hoist"),
        "body of a rebuild request: hoist (JSON image, targets, base, old_base_digest, new_base_digest), github \
         (repository_dispatch), gitlab (pipeline trigger) or jenkins (buildWithParameters)",
    ),
    var(
        "HOIST_BASE_POLL_INTERVAL",
        Some("off"),
        "how often each distinct base image is asked for its digest (one HEAD per base), e.g. 1h, for registries that send no webhooks",
    ),
    var(
        "HOIST_SLACK_WEBHOOK_URL",
        None,
        "Slack incoming-webhook URL (a secret: never logged)",
    ),
    var(
        "HOIST_TEAMS_WEBHOOK_URL",
        None,
        "Microsoft Teams Workflows webhook URL (a secret: never logged)",
    ),
    var(
        "HOIST_SMTP_URL",
        None,
        "email notifications: smtp://user:pass@host:port?tls=starttls|implicit|none",
    ),
    var("HOIST_SMTP_CA_FILE", None, "PEM file of an extra CA to trust for SMTP"),
    var("HOIST_EMAIL_FROM", None, "sender address of email notifications"),
    var("HOIST_EMAIL_TO", None, "recipients of email notifications, comma-separated"),
    var(
        "HOIST_NOTIFY_TIMEOUT",
        Some("10s"),
        "how long one notification attempt may take",
    ),
    var(
        "HOIST_NOTIFY_RETRIES",
        Some("3"),
        "retries of a notification after a timeout, 429 or 5xx",
    ),
    var("DOCKER_HOST", Some("the local socket"), "the engine to manage (API version negotiated)"),
];

/// Variables read only by test builds, left out of `--help` and the README on purpose.
pub const TEST_ONLY: &[&str] = &["HOIST_FAULT_PAUSE_AFTER", "HOIST_FAULT_PAUSE_FILE"];

/// The variables' part of `--help`: one entry each, meanings wrapped at `width`.
pub fn help_text(width: usize) -> String {
    let name_width = VARIABLES.iter().map(|v| v.name.len()).max().unwrap_or(0) + 2;
    let indent = 2 + name_width;
    let mut out = String::from("Configuration (environment variables):\n");
    for variable in VARIABLES {
        let mut meaning = variable.meaning.to_string();
        if let Some(default) = variable.default {
            meaning.push_str(&format!(" [default: {default}]"));
        }
        let mut line = format!("  {:<name_width$}", variable.name);
        let mut column = indent;
        for word in meaning.split(' ') {
            if column + word.len() + 1 > width && column > indent {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(indent);
                column = indent;
            }
            line.push_str(word);
            line.push(' ');
            column += word.len() + 1;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every `"HOIST_..."` string literal in the source: the variables the code reads.
    fn variables_in_source() -> BTreeSet<String> {
        fn walk(dir: &Path, found: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (start, _) in text.match_indices("\"HOIST_") {
                        let rest = &text[start + 1..];
                        let end = rest
                            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                            .unwrap_or(rest.len());
                        if end > "HOIST_".len() && rest[end..].starts_with('"') {
                            found.insert(rest[..end].to_string());
                        }
                    }
                }
            }
        }
        let mut found = BTreeSet::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut found);
        found
    }

    #[test]
    fn every_variable_the_code_reads_is_listed() {
        let listed: BTreeSet<&str> = VARIABLES
            .iter()
            .map(|v| v.name)
            .chain(TEST_ONLY.iter().copied())
            .collect();
        let missing: Vec<String> = variables_in_source()
            .into_iter()
            .filter(|name| !listed.contains(name.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "read by the code but not in config::variables::VARIABLES: {missing:?}"
        );
    }

    #[test]
    fn every_variable_is_in_the_help_and_the_readme() {
        let help = help_text(100);
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
        let mut problems = Vec::new();
        for variable in VARIABLES {
            if !help.contains(&format!("  {} ", variable.name))
                && !help.contains(&format!("  {}\n", variable.name))
            {
                problems.push(format!("{} is not in --help", variable.name));
            }
            // A README table row names the variable in its first cell.
            let in_table = readme.lines().any(|line| {
                line.starts_with('|')
                    && line
                        .split('|')
                        .nth(1)
                        .is_some_and(|cell| cell.contains(&format!("`{}`", variable.name)))
            });
            if !in_table {
                problems.push(format!("{} has no row in a README table", variable.name));
            }
        }
        for name in TEST_ONLY {
            if help.contains(name) || readme.contains(name) {
                problems.push(format!(
                    "{name} is test-only and must not be documented for users"
                ));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn help_wraps_and_shows_defaults() {
        let help = help_text(80);
        assert!(
            help.lines().all(|l| l.len() <= 80 || !l.trim().contains(' ')),
            "{help}"
        );
        assert!(help.contains("[default: 4]"));
        assert!(help.contains("HOIST_NOTIFY_TIMEOUT"));
    }
}
