//! Every label hoist reads, and the per-target options they set.
//!
//! Label values are input: each is parsed by a fallible function, and a value
//! that does not parse (or is out of bounds) is a problem for that target,
//! reported in the log and, at its next update, in the report, never a panic.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use crate::event::{Digest, ImageRef};
use crate::secret::Secret;
use crate::settings::{parse_duration, parse_poll};

/// How a container is replaced (`hoist.order`, `HOIST_ORDER`), as Swarm's `update_config.order`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateOrder {
    /// The old container stops before the new one starts (the new one is
    /// created beforehand, so the outage is a stop and a start).
    #[default]
    StopFirst,
    /// The new container starts beside the old one and passes its health
    /// gate before the old one leaves its networks: no outage behind a
    /// network alias or a proxy. Containers with published host ports fall back to stop-first.
    StartFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

impl FromStr for UpdateOrder {
    type Err = String;

    fn from_str(text: &str) -> Result<UpdateOrder, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "stop-first" => Ok(UpdateOrder::StopFirst),
            "start-first" => Ok(UpdateOrder::StartFirst),
            _ => Err("expected stop-first or start-first".into()),
        }
    }
}

impl fmt::Display for UpdateOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// Update and gate one target of a push first, the rest only once it is healthy.
pub const CANARY: &str = "hoist.canary";

/// `<duration>|off`: how often the target's tag is polled (overrides `HOIST_POLL_INTERVAL`).
pub const POLL: &str = "hoist.poll";
/// `block`: refuse an update whose image changes exposed ports, volumes or
/// user (`deploy::contract`); `warn` (the default): only say so.
pub const CONTRACT: &str = "hoist.contract";

/// `stop-first|start-first`: how the container is replaced (overrides `HOIST_ORDER`).
pub const ORDER: &str = "hoist.order";
/// Under start-first: how long the old container stays off its networks,
/// still running, for requests in flight before it is stopped (default 2s).
pub const DRAIN: &str = "hoist.drain";
/// OCI image label (set when the image is built): the reference of the image it was built on.
pub const OCI_BASE_NAME: &str = "org.opencontainers.image.base.name";
/// OCI image label: the manifest digest of that base when the image was built.
pub const OCI_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// `<ref>` (optionally `@sha256:...`): the base of an image that records none.
pub const BASE: &str = "hoist.base";
/// `<url>`: where to ask for a rebuild of this target's image when its base moves
/// (overrides `HOIST_REBUILD_HOOK_URL`).
pub const REBUILD_HOOK: &str = "hoist.rebuild-hook";

/// Both opt-in labels; either one set to `true` opts in.
pub const OPT_IN: [&str; 2] = [ENABLE, LEGACY_ENABLE];

/// The longest duration a label may give: longer is taken for a typo.
pub const MAX_LABEL_DURATION: Duration = Duration::from_secs(24 * 3600);

pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// The image ID compose v2 recorded at `up`; kept in step by an update.
pub const COMPOSE_IMAGE: &str = "com.docker.compose.image";
/// The stack a Swarm service belongs to (`docker stack deploy`).
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

/// An opt-in label key: one of [`OPT_IN`], or the seed tool's form ([`is_seed_form_key`]).
pub fn is_opt_in(key: &str) -> bool {
    OPT_IN.contains(&key) || is_seed_form_key(key)
}

/// Whether any label key opts in, whatever its value: such a target is
/// inspected, and a bad value reported rather than silently skipped.
pub fn mentions_opt_in(labels: &HashMap<String, String>) -> bool {
    labels.keys().any(|key| is_opt_in(key))
}

/// registry-docker-updater's README writes its label in the list form of
/// compose `labels:` as `- 'registry-docker-updater: true'`. Compose (and
/// `docker stack deploy`) make that whole text the key, with an empty value.
/// This matches such a key, with any spacing around the colon and any case of `true`.
pub fn is_seed_form_key(key: &str) -> bool {
    key.split_once(':')
        .is_some_and(|(name, flag)| name.trim() == LEGACY_ENABLE && flag.trim().eq_ignore_ascii_case("true"))
}

/// What the labels of one target ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetOptions {
    pub enabled: bool,
    pub monitor_only: bool,
    pub health_grace: Option<Duration>,
    pub health_deadline: Option<Duration>,
    /// Opted in by the seed tool's key form (`registry-docker-updater: true`
    /// with an empty value), which the user most likely meant as the map form.
    pub seed_label_form: bool,
    /// `hoist.poll`: `None` when the label is absent (the global interval
    /// applies), `Some(None)` for `off` or a bad value, `Some(Some(d))` to poll every `d`.
    pub poll: Option<Option<Duration>>,
    /// `hoist.order`: `None` when absent (`HOIST_ORDER` applies).
    pub order: Option<UpdateOrder>,
    /// `hoist.drain`: `None` when absent (2s).
    pub drain: Option<Duration>,
    /// `hoist.contract=block`: refuse an image that changes ports, volumes or user.
    pub contract_block: bool,
    /// The image this target's image was built on, when known.
    pub base: Option<BaseImage>,
    /// `hoist.rebuild-hook`: a secret, since a URL may carry a trigger token.
    pub rebuild_hook: Option<Secret<Url>>,
    /// `hoist.canary=true`: a push of this target's image goes to one target first.
    pub canary: bool,
}

/// The base an image was built on: from the image's OCI labels (which the
/// engine copies onto the container), or from `hoist.base`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaseImage {
    /// The base's tagged reference, without digest.
    pub name: ImageRef,
    /// The base's digest when the image was built; `None` when not recorded
    /// (hoist then compares with the digest it first saw).
    pub digest: Option<Digest>,
    /// `image` (OCI labels) or `label` (`hoist.base`).
    pub from: &'static str,
}

/// `/v1/targets` shows the base of each target (the hook URL is a secret, and is not shown).
impl Serialize for TargetOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("base", &self.base)?;
        map.end()
    }
}

/// Reads the base from the labels: the OCI labels first (what the image
/// records), else `hoist.base`.
///
/// The OCI labels come with the image, from whoever built it: a value that
/// hoist cannot watch (no tag, not a reference, a bad digest) is passed over
/// without a problem, since a problem would fail the target's updates for a
/// label its owner may not control; `hoist.base` can name the base instead.
/// A bad `hoist.base` is a problem, as every hoist label is.
fn base_from(labels: &HashMap<String, String>, problems: &mut Vec<String>) -> Option<BaseImage> {
    let tagged = |text: &str| {
        ImageRef::parse(text.trim())
            .map_err(|e| e.to_string())
            .and_then(|r| {
                if r.tag().is_some() {
                    Ok(r)
                } else {
                    Err("the base must name a tag".into())
                }
            })
    };
    if let Some(name) = labels.get(OCI_BASE_NAME).and_then(|text| tagged(text).ok()) {
        let digest = labels
            .get(OCI_BASE_DIGEST)
            .and_then(|text| Digest::parse(text.trim()).ok())
            .or_else(|| name.digest().cloned());
        return Some(BaseImage {
            name: name.without_digest(),
            digest,
            from: "image",
        });
    }
    let text = labels.get(BASE)?;
    match tagged(text) {
        Ok(name) => Some(BaseImage {
            digest: name.digest().cloned(),
            name: name.without_digest(),
            from: "label",
        }),
        Err(why) => {
            problems.push(format!("label {BASE}={text:?}: {why}"));
            None
        }
    }
}

/// `hoist.rebuild-hook`: an http(s) URL. The problem text never repeats the
/// value (it may carry a token).
fn rebuild_hook_from(labels: &HashMap<String, String>, problems: &mut Vec<String>) -> Option<Secret<Url>> {
    let text = labels.get(REBUILD_HOOK)?;
    match Url::parse(text.trim()) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Some(Secret::new(url))
        }
        Ok(_) => {
            problems.push(format!(
                "label {REBUILD_HOOK}: expected an http(s) URL with a host"
            ));
            None
        }
        Err(e) => {
            problems.push(format!("label {REBUILD_HOOK}: not a valid URL ({e})"));
            None
        }
    }
}

impl TargetOptions {
    /// Reads the labels. A malformed value is returned as a problem and left
    /// unset, never fatal: one badly labelled container must not stop hoist
    /// from serving the rest. The caller logs problems, and an update of a
    /// target with problems fails with them as its reason.
    pub fn from_labels(labels: &HashMap<String, String>) -> (TargetOptions, Vec<String>) {
        let mut problems = Vec::new();
        let mut flag = |key: &str| {
            let value = labels.get(key)?;
            let parsed = parse_flag(value);
            if parsed.is_none() {
                problems.push(format!("label {key}={value:?}: expected true or false"));
            }
            parsed
        };
        // Both read, so that a bad value of either is reported.
        let opt_in: Vec<Option<bool>> = OPT_IN.iter().map(|key| flag(key)).collect();
        let labelled = opt_in.contains(&Some(true));
        let monitor_only = flag(MONITOR_ONLY).unwrap_or(false);
        let canary = flag(CANARY).unwrap_or(false);
        let seed_label_form = labels
            .iter()
            .any(|(key, value)| is_seed_form_key(key) && value.trim().is_empty());
        let mut duration = |key: &str| {
            let text = labels.get(key)?;
            let parsed = parse_label_duration(text);
            if parsed.is_none() {
                problems.push(format!(
                    "label {key}={text:?}: expected a duration such as 30s, 5m or 1h, up to 24h"
                ));
            }
            parsed
        };
        let health_grace = duration(HEALTH_GRACE);
        let health_deadline = duration(HEALTH_DEADLINE);
        let drain = duration(DRAIN);
        // A bad value turns polling off for this target: polling at an interval
        // the label did not mean would be worse than not polling.
        let poll = labels.get(POLL).map(|text| {
            parse_poll(text).unwrap_or_else(|why| {
                problems.push(format!("label {POLL}={text:?}: {why}; not polled"));
                None
            })
        });
        let order = labels.get(ORDER).and_then(|text| {
            text.parse::<UpdateOrder>()
                .map_err(|why| problems.push(format!("label {ORDER}={text:?}: {why}")))
                .ok()
        });
        let contract_block = match labels.get(CONTRACT).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(value) if value == "block" => true,
            Some(value) if value == "warn" || value.is_empty() => false,
            Some(value) => {
                problems.push(format!("label {CONTRACT}={value:?}: expected block or warn"));
                false
            }
        };
        let base = base_from(labels, &mut problems);
        let rebuild_hook = rebuild_hook_from(labels, &mut problems);
        (
            TargetOptions {
                enabled: labelled || seed_label_form,
                contract_block,
                monitor_only,
                health_grace,
                health_deadline,
                seed_label_form: seed_label_form && !labelled,
                poll,
                order,
                drain,
                base,
                rebuild_hook,
                canary,
            },
            problems,
        )
    }
}

/// `true`/`1`/`yes` and `false`/`0`/`no`/empty, in any case; anything else is `None`.
fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" | "" => Some(false),
        _ => None,
    }
}

/// A duration (`30s`, `500ms`, `5m`, `1h`) of at most [`MAX_LABEL_DURATION`].
fn parse_label_duration(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| *d <= MAX_LABEL_DURATION)
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

    /// Values a user, a typo or a fuzzer may put in a label.
    const ABSURD: &[&str] = &[
        "100000000000000000000",
        "18446744073709551615",
        "18446744073709551616s",
        "1e400",
        "-1",
        "-0",
        "NaN",
        "inf",
        "1.5.5s",
        "99999999999999999999h",
        "25h",
        "86401s",
        "1d",
        "ten seconds",
        " ",
        "\u{0}",
        "5s5s",
        "0x10",
        "🙂",
    ];

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
    fn absurd_durations_are_a_problem_for_each_duration_label() {
        for key in [HEALTH_GRACE, HEALTH_DEADLINE] {
            for value in ABSURD {
                let (options, problems) =
                    TargetOptions::from_labels(&labels(&[(ENABLE, "true"), (key, value)]));
                assert!(options.enabled, "{key}={value:?}");
                assert_eq!(options.health_grace, None, "{key}={value:?}");
                assert_eq!(options.health_deadline, None, "{key}={value:?}");
                assert_eq!(problems.len(), 1, "{key}={value:?}: {problems:?}");
                assert!(problems[0].contains(key), "{problems:?}");
            }
            let (options, problems) = TargetOptions::from_labels(&labels(&[(key, "24h")]));
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(
                options.health_grace.or(options.health_deadline),
                Some(MAX_LABEL_DURATION)
            );
        }
    }

    #[test]
    fn absurd_flags_are_a_problem_for_each_flag_label() {
        for key in [ENABLE, LEGACY_ENABLE, MONITOR_ONLY, CANARY] {
            for value in ABSURD.iter().filter(|v| !v.trim().is_empty()) {
                let (options, problems) = TargetOptions::from_labels(&labels(&[(key, value)]));
                assert!(
                    !options.enabled && !options.monitor_only && !options.canary,
                    "{key}={value:?}"
                );
                assert_eq!(problems.len(), 1, "{key}={value:?}: {problems:?}");
                assert!(problems[0].contains(key), "{problems:?}");
            }
        }
        // A key that only looks like the seed form is neither an opt-in nor a crash.
        for key in ABSURD {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(key, "")]));
            assert!(!options.enabled && problems.is_empty(), "{key:?}");
        }
    }

    #[test]
    fn the_seed_tools_list_form_opts_in_with_any_spacing_and_case() {
        for key in [
            "registry-docker-updater: true",
            "registry-docker-updater:true",
            "registry-docker-updater :  TRUE",
            "registry-docker-updater:\tTrue",
        ] {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(key, "")]));
            assert!(options.enabled && options.seed_label_form, "{key:?}");
            assert!(problems.is_empty());
            assert!(is_opt_in(key) && mentions_opt_in(&labels(&[(key, "")])));
        }
        for (key, value) in [
            ("registry-docker-updater: false", ""),
            ("registry-docker-updater: yes please", ""),
            ("registry-docker-updater: true", "false"),
            ("other-tool: true", ""),
            ("registry-docker-updater", ""),
        ] {
            let (options, _) = TargetOptions::from_labels(&labels(&[(key, value)]));
            assert!(!options.enabled, "{key:?}={value:?}");
        }
        // With the map form as well, there is nothing to point out.
        let (options, _) = TargetOptions::from_labels(&labels(&[
            ("registry-docker-updater: true", ""),
            (LEGACY_ENABLE, "true"),
        ]));
        assert!(options.enabled && !options.seed_label_form);
    }

    #[test]
    fn the_base_comes_from_the_images_oci_labels_else_from_hoist_base() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let (options, problems) = TargetOptions::from_labels(&labels(&[
            (ENABLE, "true"),
            (OCI_BASE_NAME, "registry.example.test/base/img:1"),
            (OCI_BASE_DIGEST, &digest),
            (BASE, "ignored/when:the-image-records-one"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        let base = options.base.unwrap();
        assert_eq!(
            (base.name.to_string(), base.digest.unwrap().to_string(), base.from),
            ("registry.example.test/base/img:1".into(), digest.clone(), "image")
        );
        let (options, _) = TargetOptions::from_labels(&labels(&[(BASE, "registry.example.test/base/img:1")]));
        let base = options.base.unwrap();
        assert_eq!((base.digest, base.from), (None, "label"));
        let pinned = format!("registry.example.test/base/img:1@{digest}");
        let (options, _) = TargetOptions::from_labels(&labels(&[(BASE, &pinned)]));
        assert_eq!(options.base.unwrap().digest.unwrap().to_string(), digest);
        assert_eq!(
            TargetOptions::from_labels(&labels(&[(ENABLE, "true")])).0.base,
            None
        );
    }

    #[test]
    fn bad_base_and_hook_labels_are_problems_that_never_echo_the_hook() {
        for (key, value) in [
            (BASE, "UPPER/Case:1"),
            (BASE, "registry.example.test/base@sha256:abc"),
            (BASE, "🙂"),
            (BASE, "\u{0}"),
            (BASE, "base/img:"),
            (BASE, "1.5.5s:x:y"),
        ] {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(ENABLE, "true"), (key, value)]));
            assert!(options.enabled && options.base.is_none(), "{key}={value:?}");
            assert_eq!(problems.len(), 1, "{key}={value:?}: {problems:?}");
        }
        // The image's own labels are never a problem (its owner may not control
        // them): what cannot be watched is passed over, and hoist.base may name the base.
        let (options, problems) = TargetOptions::from_labels(&labels(&[
            (OCI_BASE_NAME, "registry.example.test/base/img:1"),
            (OCI_BASE_DIGEST, "sha256:short"),
        ]));
        assert_eq!((options.base.unwrap().digest, problems.len()), (None, 0));
        for name in [
            "not a reference",
            "registry.example.test/base/img@sha256:abc",
            "🙂",
        ] {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(OCI_BASE_NAME, name)]));
            assert_eq!((options.base, problems.len()), (None, 0), "{name}");
            let (options, problems) = TargetOptions::from_labels(&labels(&[
                (OCI_BASE_NAME, name),
                (BASE, "registry.example.test/base/img:1"),
            ]));
            assert_eq!(
                (options.base.unwrap().from, problems.len()),
                ("label", 0),
                "{name}"
            );
        }
        for value in ["ftp://ci.example.test/x", "not a url s3cr3t", "http://"] {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(REBUILD_HOOK, value)]));
            assert!(options.rebuild_hook.is_none());
            assert_eq!(problems.len(), 1, "{value}");
            assert!(!problems[0].contains("s3cr3t"), "{problems:?}");
        }
        let (options, _) =
            TargetOptions::from_labels(&labels(&[(REBUILD_HOOK, "https://ci.example.test/x?token=t")]));
        assert_eq!(
            options.rebuild_hook.unwrap().expose().as_str(),
            "https://ci.example.test/x?token=t"
        );
        // Shown in /v1/targets: the base only, never the hook.
        let (options, _) = TargetOptions::from_labels(&labels(&[
            (BASE, "registry.example.test/base/img:1"),
            (REBUILD_HOOK, "https://ci.example.test/x?token=t"),
        ]));
        assert_eq!(
            serde_json::to_value(&options).unwrap(),
            serde_json::json!({"base": {"name": "registry.example.test/base/img:1", "digest": null, "from": "label"}})
        );
    }

    #[test]
    fn poll_label_is_a_duration_or_off_and_absurd_values_are_errors() {
        let poll = |value: &str| {
            let (options, problems) = TargetOptions::from_labels(&labels(&[(ENABLE, "true"), (POLL, value)]));
            (options.poll, problems.len())
        };
        assert_eq!(poll("5m"), (Some(Some(Duration::from_secs(300))), 0));
        assert_eq!(poll("off"), (Some(None), 0));
        // Every absurd duration (25h and 86401s are sane poll intervals), and more.
        let sane_polls = ["25h", "86401s"];
        let more = ["0.001", "169h", "every day", ""];
        for absurd in ABSURD
            .iter()
            .filter(|v| !sane_polls.contains(v))
            .chain(more.iter())
        {
            assert_eq!(poll(absurd), (Some(None), 1), "{absurd:?}");
        }
        assert_eq!(
            TargetOptions::from_labels(&labels(&[(ENABLE, "true")])).0.poll,
            None
        );
    }
}
