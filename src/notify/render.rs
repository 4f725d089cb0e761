//! The shared wording of every notification, as plain values.
//!
//! Slack, Teams and email all say the same thing; only the markup differs.
//! Deciding *what* to say (title, facts, per-target lines, short digests,
//! durations, how much of a log tail to keep) happens once here, in pure
//! functions, so the channels cannot drift apart and table tests cover the
//! wording without a runtime.

use std::time::Duration;

use crate::deploy::Outcome;
use crate::event::{Digest, SourceKind};

use super::{Notification, TargetReport};

/// The most log lines of a rolled-back container a message carries.
pub const MAX_LOG_LINES: usize = 20;
/// Longer log lines are cut, so one runaway line cannot fill a message.
pub const MAX_LOG_LINE_CHARS: usize = 300;
/// Longer failure reasons are cut.
pub const MAX_REASON_CHARS: usize = 1000;

/// How a message should look: colour and emoji follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Everything that was to be done was done.
    Good,
    /// Something was rolled back, or only some targets were updated.
    Warning,
    /// Nothing could be updated.
    Bad,
    /// Nothing was applied on purpose (monitor-only, already current).
    Info,
}

/// One labelled value, such as `Image: registry.example.test/team/app:1.4`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// What became of one target, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLine {
    /// `web-1`, or `app-web-1 (compose app/web)`.
    pub name: String,
    /// `updated`, `rolled back`, `failed`, ...
    pub outcome: &'static str,
    pub tone: Tone,
    /// The reason of a rollback or failure, cut to [`MAX_REASON_CHARS`].
    pub reason: Option<String>,
    /// The last lines the failed container wrote, oldest first, cleaned of
    /// control characters and cut to [`MAX_LOG_LINES`] × [`MAX_LOG_LINE_CHARS`].
    pub log_tail: Vec<String>,
    /// Set when lines before `log_tail` were left out.
    pub log_truncated: bool,
    /// The digest this target ran before, shown per target only when the
    /// targets of one push ran different digests.
    pub old_digest: Option<String>,
}

impl TargetLine {
    /// `web-1: rolled back: health check failed` (no log tail).
    pub fn one_line(&self) -> String {
        let mut line = format!("{}: {}", self.name, self.outcome);
        if let Some(old) = &self.old_digest {
            line.push_str(&format!(" (was {old})"));
        }
        if let Some(reason) = &self.reason {
            line.push_str(": ");
            line.push_str(reason);
        }
        line
    }
}

/// Everything a channel needs to say about one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub tone: Tone,
    /// `Updated registry.example.test/team/app:1.4 (2 targets)`.
    pub title: String,
    /// A sentence under the title when the title alone could mislead
    /// (monitor-only targets: "an update is available and was not applied").
    pub summary: Option<String>,
    /// Image, digest change, who pushed, image labels, duration, start time, in that order.
    pub facts: Vec<Fact>,
    pub targets: Vec<TargetLine>,
    /// The full new digest, for the channels with room for it (email).
    pub new_digest: String,
}

/// Puts a notification into words.
pub fn message(n: &Notification) -> Message {
    let image = n.image.without_digest().to_string();
    let (title, tone, summary) = match &n.headline {
        // Not a redeploy: nothing was done to the targets.
        Some(title) => (clean(title, MAX_REASON_CHARS), Tone::Info, None),
        None => headline(&image, &n.targets),
    };
    let common_old = common_old_digest(&n.targets);

    let mut facts = vec![Fact {
        label: "Image",
        value: image,
    }];
    let old = match &common_old {
        OldDigest::One(digest) => short_digest(digest),
        OldDigest::Unknown => "unknown".to_string(),
        OldDigest::Several => "several (see targets)".to_string(),
    };
    facts.push(Fact {
        label: "Digest",
        value: format!("{old} → {}", short_digest(&n.new_digest)),
    });
    facts.push(Fact {
        label: "Pushed",
        value: pushed(n.actor.as_deref(), n.image.registry(), n.source),
    });
    for (label, value) in [
        ("Version", &n.image_version),
        ("Revision", &n.image_revision),
        ("Source", &n.image_source),
    ] {
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            facts.push(Fact {
                label,
                value: clean(value, MAX_LOG_LINE_CHARS),
            });
        }
    }
    facts.push(Fact {
        label: "Took",
        value: duration(n.duration),
    });
    facts.push(Fact {
        label: "Started",
        value: n.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    });

    let per_target_old = matches!(common_old, OldDigest::Several);
    let targets = n.targets.iter().map(|t| target_line(t, per_target_old)).collect();

    Message {
        tone,
        title,
        summary,
        facts,
        targets,
        new_digest: n.new_digest.to_string(),
    }
}

/// The message as plain text: the email's text part, and a readable fallback anywhere.
pub fn plain_text(m: &Message) -> String {
    let mut out = String::new();
    out.push_str(&m.title);
    out.push('\n');
    if let Some(summary) = &m.summary {
        out.push('\n');
        out.push_str(summary);
        out.push('\n');
    }
    out.push('\n');
    let width = m
        .facts
        .iter()
        .map(|f| f.label.len())
        .chain(["New digest".len()])
        .max()
        .unwrap_or(0)
        + 1;
    for fact in &m.facts {
        out.push_str(&format!(
            "{:<width$} {}\n",
            format!("{}:", fact.label),
            fact.value
        ));
    }
    out.push_str(&format!("{:<width$} {}\n", "New digest:", m.new_digest));
    out.push_str("\nTargets:\n");
    for target in &m.targets {
        out.push_str(&format!("  - {}\n", target.one_line()));
        if target.log_truncated {
            out.push_str("      | ...\n");
        }
        for line in &target.log_tail {
            out.push_str(&format!("      | {line}\n"));
        }
    }
    out.push_str("\n-- \nSent by hoist\n");
    out
}

/// Up to `max` targets for a channel with limited room: those with problems
/// first (failed, then rolled back), shown in their original order.
pub fn pick_targets(targets: &[TargetLine], max: usize) -> Vec<&TargetLine> {
    if targets.len() <= max {
        return targets.iter().collect();
    }
    let rank = |t: &TargetLine| match t.tone {
        Tone::Bad => 0,
        Tone::Warning => 1,
        Tone::Good => 2,
        Tone::Info => 3,
    };
    let mut picked: Vec<usize> = (0..targets.len()).collect();
    picked.sort_by_key(|&i| (rank(&targets[i]), i));
    picked.truncate(max);
    picked.sort_unstable();
    picked.into_iter().map(|i| &targets[i]).collect()
}

/// `sha256:0123456789ab`: the algorithm and the first 12 hex digits.
pub fn short_digest(digest: &Digest) -> String {
    match digest.as_str().split_once(':') {
        Some((algorithm, _)) => format!("{algorithm}:{}", digest.short()),
        None => digest.short().to_string(),
    }
}

/// `850 ms`, `12.3 s`, `2 min 5 s`, `1 h 2 min`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        let s = d.as_secs();
        format!("{} min {} s", s / 60, s % 60)
    } else {
        let s = d.as_secs();
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// Cuts `text` to at most `max` characters (ending in `…` when cut), and
/// replaces control characters (ANSI colour codes, carriage returns) so a log
/// line cannot break the markup of any channel.
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut chars = strip_ansi(text).into_iter().peekable();
    let mut count = 0;
    while let Some(c) = chars.next() {
        if count + 1 == max && chars.peek().is_some() {
            out.push('…');
            return out;
        }
        out.push(if c == '\t' {
            ' '
        } else if c.is_control() {
            '\u{fffd}'
        } else {
            c
        });
        count += 1;
    }
    out
}

/// Drops `ESC [ ... letter` sequences, which containers write for colour.
fn strip_ansi(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The title, the tone, and a summary when monitor-only targets need one.
fn headline(image: &str, targets: &[TargetReport]) -> (String, Tone, Option<String>) {
    let total = targets.len();
    let count = |f: fn(&Outcome) -> bool| targets.iter().filter(|t| f(&t.outcome)).count();
    let updated = count(|o| matches!(o, Outcome::Updated));
    let rolled_back = count(|o| matches!(o, Outcome::RolledBack { .. }));
    // A blocked update is one not made: it counts as failed, but says why.
    let blocked = count(|o| matches!(o, Outcome::Blocked { .. }));
    let failed = count(|o| matches!(o, Outcome::Failed { .. } | Outcome::Blocked { .. }));
    let monitor = count(|o| matches!(o, Outcome::MonitorOnly));
    let current = count(|o| matches!(o, Outcome::AlreadyCurrent));
    let n = format!("{total} target{}", plural(total));

    let monitor_summary = match monitor {
        0 => None,
        m if m == total => Some(format!(
            "An update is available and was not applied: the target{} {} monitor-only.",
            plural(m),
            if m == 1 { "is" } else { "are" }
        )),
        m => Some(format!(
            "{m} monitor-only target{} {} an update available that was not applied.",
            plural(m),
            if m == 1 { "has" } else { "have" }
        )),
    };

    if total == 0 {
        return (format!("No targets for {image}"), Tone::Info, None);
    }
    if monitor == total {
        return (
            format!("Update available for {image} (not applied)"),
            Tone::Info,
            monitor_summary,
        );
    }
    if current == total {
        return (format!("Already up to date: {image} ({n})"), Tone::Info, None);
    }
    let (title, tone) = if blocked == total {
        (
            format!("Blocked {image} ({n}): the new image changes what hoist.contract=block guards"),
            Tone::Bad,
        )
    } else if rolled_back + failed == 0 {
        (format!("Updated {image} ({n})"), Tone::Good)
    } else if updated == 0 && failed == 0 {
        (format!("Rolled back {image} ({n})"), Tone::Warning)
    } else if updated == 0 {
        (format!("Failed to update {image} ({n})"), Tone::Bad)
    } else {
        (
            format!("Partly updated {image} ({updated} of {n})"),
            Tone::Warning,
        )
    };
    (title, tone, monitor_summary)
}

enum OldDigest {
    One(Digest),
    Unknown,
    Several,
}

fn common_old_digest(targets: &[TargetReport]) -> OldDigest {
    let mut known = targets.iter().filter_map(|t| t.old_digest.as_ref());
    let Some(first) = known.next() else {
        return OldDigest::Unknown;
    };
    if known.all(|d| d == first) {
        OldDigest::One(first.clone())
    } else {
        OldDigest::Several
    }
}

fn pushed(actor: Option<&str>, registry: &str, source: SourceKind) -> String {
    let actor = actor.map(str::trim).filter(|a| !a.is_empty());
    let by = actor
        .map(|a| format!("by {} ", clean(a, 200)))
        .unwrap_or_default();
    match source {
        SourceKind::Distribution => format!("{by}to {registry} (registry notification)"),
        SourceKind::Harbor => format!("{by}to {registry} (Harbor webhook)"),
        // A poll has no pusher to name.
        SourceKind::Poll => format!("found by polling {registry}"),
        SourceKind::Rollback => {
            format!("{by}put back by `hoist rollback` (the image it ran before, from {registry})")
        }
        other => format!("{by}to {registry} ({})", other.describe()),
    }
}

fn target_line(t: &TargetReport, show_old: bool) -> TargetLine {
    let mut name = clean(&t.name, 200);
    match (&t.compose_project, &t.compose_service) {
        (Some(project), Some(service)) => name.push_str(&format!(
            " (compose {}/{})",
            clean(project, 100),
            clean(service, 100)
        )),
        (Some(project), None) => name.push_str(&format!(" (compose {})", clean(project, 100))),
        (None, Some(service)) => name.push_str(&format!(" (compose service {})", clean(service, 100))),
        (None, None) => {}
    }
    // Containers recreated with the target (its network namespace, volumes, links).
    if !t.dependents.is_empty() {
        let list: Vec<String> = t
            .dependents
            .iter()
            .map(|d| format!("{} ({})", clean(&d.name, 200), d.outcome))
            .collect();
        name.push_str(&format!("; dependents: {}", list.join(", ")));
    }
    let (outcome, tone, reason, log) = match &t.outcome {
        // An update that got there the long way says how (an engine restart on the way).
        Outcome::Updated => ("updated", Tone::Good, t.note.as_ref(), &[][..]),
        Outcome::RolledBack { reason, log_tail } => {
            ("rolled back", Tone::Warning, Some(reason), log_tail.as_slice())
        }
        Outcome::Failed { reason } => ("failed", Tone::Bad, Some(reason), &[][..]),
        Outcome::MonitorOnly => (
            "update available, not applied (monitor-only)",
            Tone::Info,
            None,
            &[][..],
        ),
        Outcome::AlreadyCurrent => ("already up to date", Tone::Info, None, &[][..]),
        Outcome::Blocked { reason } => ("blocked (hoist.contract=block)", Tone::Bad, Some(reason), &[][..]),
    };
    // Any other outcome keeps its reason first, then the note.
    let noted;
    let reason = match (reason, &t.note) {
        (Some(reason), Some(note)) if !matches!(t.outcome, Outcome::Updated) => {
            noted = format!("{reason} ({note})");
            Some(&noted)
        }
        (reason, _) => reason,
    };
    // What the new image changes is said in every message, whatever the outcome.
    let changed;
    let reason = match (reason, t.contract.is_empty()) {
        (_, true) => reason,
        (Some(reason), false) => {
            changed = format!("{reason}; the new image changes {}", t.contract.join("; "));
            Some(&changed)
        }
        (None, false) => {
            changed = format!("the new image changes {}", t.contract.join("; "));
            Some(&changed)
        }
    };
    let skip = log.len().saturating_sub(MAX_LOG_LINES);
    TargetLine {
        name,
        outcome,
        tone,
        reason: reason.map(|r| clean(r.trim(), MAX_REASON_CHARS)),
        log_tail: log[skip..]
            .iter()
            .map(|l| clean(l.trim_end(), MAX_LOG_LINE_CHARS))
            .collect(),
        log_truncated: skip > 0,
        old_digest: if show_old {
            t.old_digest.as_ref().map(short_digest)
        } else {
            None
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::event::ImageRef;

    pub(crate) fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    pub(crate) fn target(name: &str, outcome: Outcome) -> TargetReport {
        TargetReport {
            name: name.into(),
            compose_project: None,
            compose_service: None,
            old_digest: Some(digest('a')),
            outcome,
            note: None,
            contract: Vec::new(),
            dependents: Vec::new(),
        }
    }

    /// A push of registry.example.test/team/app:1.4 with the given targets.
    pub(crate) fn notification(targets: Vec<TargetReport>) -> Notification {
        Notification {
            image: ImageRef::from_parts("registry.example.test", "team/app", Some("1.4"), None),
            new_digest: digest('b'),
            source: SourceKind::Distribution,
            actor: Some("alice".into()),
            image_version: Some("1.4.2".into()),
            image_revision: Some("0f3c2a1".into()),
            image_source: None,
            targets,
            started_at: Utc.with_ymd_and_hms(2026, 5, 4, 12, 30, 0).unwrap(),
            duration: Duration::from_millis(12_345),
            headline: None,
        }
    }

    use chrono::Utc;

    #[test]
    fn titles() {
        let rb = || Outcome::RolledBack {
            reason: "health check failed".into(),
            log_tail: vec![],
        };
        let failed = || Outcome::Failed {
            reason: "pull failed".into(),
        };
        let cases: Vec<(Vec<Outcome>, &str, Tone)> = vec![
            (
                vec![Outcome::Updated, Outcome::Updated],
                "Updated registry.example.test/team/app:1.4 (2 targets)",
                Tone::Good,
            ),
            (
                vec![Outcome::Updated],
                "Updated registry.example.test/team/app:1.4 (1 target)",
                Tone::Good,
            ),
            (
                vec![rb()],
                "Rolled back registry.example.test/team/app:1.4 (1 target)",
                Tone::Warning,
            ),
            (
                vec![rb(), failed()],
                "Failed to update registry.example.test/team/app:1.4 (2 targets)",
                Tone::Bad,
            ),
            (
                vec![Outcome::Updated, rb(), failed()],
                "Partly updated registry.example.test/team/app:1.4 (1 of 3 targets)",
                Tone::Warning,
            ),
            (
                vec![Outcome::MonitorOnly],
                "Update available for registry.example.test/team/app:1.4 (not applied)",
                Tone::Info,
            ),
            (
                vec![Outcome::AlreadyCurrent],
                "Already up to date: registry.example.test/team/app:1.4 (1 target)",
                Tone::Info,
            ),
            (
                vec![Outcome::Updated, Outcome::MonitorOnly],
                "Updated registry.example.test/team/app:1.4 (2 targets)",
                Tone::Good,
            ),
        ];
        for (outcomes, title, tone) in cases {
            let targets = outcomes.into_iter().map(|o| target("web", o)).collect();
            let m = message(&notification(targets));
            assert_eq!(m.title, title);
            assert_eq!(m.tone, tone, "{title}");
        }
    }

    #[test]
    fn monitor_only_says_an_update_is_available_and_not_applied() {
        let m = message(&notification(vec![target("web", Outcome::MonitorOnly)]));
        assert_eq!(
            m.summary.as_deref(),
            Some("An update is available and was not applied: the target is monitor-only.")
        );
        assert_eq!(
            m.targets[0].one_line(),
            "web: update available, not applied (monitor-only)"
        );
        let m = message(&notification(vec![
            target("web", Outcome::Updated),
            target("db", Outcome::MonitorOnly),
        ]));
        assert_eq!(
            m.summary.as_deref(),
            Some("1 monitor-only target has an update available that was not applied.")
        );
    }

    #[test]
    fn facts_in_order() {
        let mut n = notification(vec![target("web", Outcome::Updated)]);
        n.image_source = Some("https://git.example.test/team/app".into());
        let m = message(&n);
        let facts: Vec<(&str, &str)> = m.facts.iter().map(|f| (f.label, f.value.as_str())).collect();
        assert_eq!(
            facts,
            vec![
                ("Image", "registry.example.test/team/app:1.4"),
                ("Digest", "sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"),
                (
                    "Pushed",
                    "by alice to registry.example.test (registry notification)"
                ),
                ("Version", "1.4.2"),
                ("Revision", "0f3c2a1"),
                ("Source", "https://git.example.test/team/app"),
                ("Took", "12.3 s"),
                ("Started", "2026-05-04 12:30:00 UTC"),
            ]
        );
        assert_eq!(m.new_digest, format!("sha256:{}", "b".repeat(64)));
    }

    #[test]
    fn pushed_wording() {
        assert_eq!(
            pushed(None, "reg.test", SourceKind::Harbor),
            "to reg.test (Harbor webhook)"
        );
        assert_eq!(
            pushed(Some("bob"), "reg.test", SourceKind::Harbor),
            "by bob to reg.test (Harbor webhook)"
        );
        assert_eq!(
            pushed(None, "reg.test", SourceKind::Poll),
            "found by polling reg.test"
        );
        assert_eq!(
            pushed(Some(" "), "r", SourceKind::Distribution),
            "to r (registry notification)"
        );
    }

    #[test]
    fn old_digests_that_differ_are_shown_per_target() {
        let mut other = target("worker", Outcome::Updated);
        other.old_digest = Some(digest('c'));
        let mut unknown = target("cron", Outcome::Updated);
        unknown.old_digest = None;
        let m = message(&notification(vec![
            target("web", Outcome::Updated),
            other,
            unknown,
        ]));
        assert_eq!(m.facts[1].value, "several (see targets) → sha256:bbbbbbbbbbbb");
        assert_eq!(m.targets[0].one_line(), "web: updated (was sha256:aaaaaaaaaaaa)");
        assert_eq!(
            m.targets[1].one_line(),
            "worker: updated (was sha256:cccccccccccc)"
        );
        assert_eq!(m.targets[2].one_line(), "cron: updated");

        let mut unknown = target("web", Outcome::Updated);
        unknown.old_digest = None;
        let m = message(&notification(vec![unknown]));
        assert_eq!(m.facts[1].value, "unknown → sha256:bbbbbbbbbbbb");
    }

    #[test]
    fn target_names_with_compose_labels() {
        let mut t = target("app-web-1", Outcome::Updated);
        t.compose_project = Some("app".into());
        t.compose_service = Some("web".into());
        assert_eq!(target_line(&t, false).name, "app-web-1 (compose app/web)");
        t.compose_service = None;
        assert_eq!(target_line(&t, false).name, "app-web-1 (compose app)");
    }

    #[test]
    fn rollback_keeps_reason_and_last_log_lines() {
        let log: Vec<String> = (1..=30).map(|i| format!("line {i}\r")).collect();
        let t = target(
            "web",
            Outcome::RolledBack {
                reason: "container exited with code 1 ".into(),
                log_tail: log,
            },
        );
        let line = target_line(&t, false);
        assert_eq!(line.outcome, "rolled back");
        assert_eq!(line.reason.as_deref(), Some("container exited with code 1"));
        assert_eq!(line.log_tail.len(), MAX_LOG_LINES);
        assert_eq!(line.log_tail[0], "line 11");
        assert_eq!(line.log_tail.last().unwrap(), "line 30");
        assert!(line.log_truncated);
    }

    #[test]
    fn dependents_are_listed_under_their_target() {
        let mut vpn = target("vpn", Outcome::Updated);
        vpn.dependents = vec![crate::deploy::dependents::DependentReport {
            name: "sidecar".into(),
            outcome: Outcome::Updated,
        }];
        assert_eq!(
            target_line(&vpn, false).name,
            "vpn; dependents: sidecar (updated)"
        );
    }

    #[test]
    fn a_note_says_how_an_update_got_there() {
        let note = "engine restarted during the update; rolled back, then updated at 2026-12-02 10:42:13 UTC";
        let mut updated = target("web", Outcome::Updated);
        updated.note = Some(note.into());
        assert_eq!(
            target_line(&updated, false).one_line(),
            format!("web: updated: {note}")
        );
        let mut failed = target(
            "web",
            Outcome::Failed {
                reason: "docker engine unreachable".into(),
            },
        );
        failed.note = Some("rolled back".into());
        assert_eq!(
            target_line(&failed, false).reason.as_deref(),
            Some("docker engine unreachable (rolled back)")
        );
        assert_eq!(target_line(&target("web", Outcome::Updated), false).reason, None);
    }

    #[test]
    fn picking_targets_shows_problems_first_in_original_order() {
        let m = message(&notification(vec![
            target("a", Outcome::Updated),
            target("b", Outcome::Failed { reason: "x".into() }),
            target("c", Outcome::Updated),
            target(
                "d",
                Outcome::RolledBack {
                    reason: "y".into(),
                    log_tail: vec![],
                },
            ),
        ]));
        let names = |max| -> Vec<String> {
            pick_targets(&m.targets, max)
                .iter()
                .map(|t| t.name.clone())
                .collect()
        };
        assert_eq!(names(2), vec!["b", "d"]);
        assert_eq!(names(3), vec!["a", "b", "d"]);
        assert_eq!(names(9), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(duration(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(duration(Duration::from_secs(3720)), "1 h 2 min");
    }

    #[test]
    fn short_digests() {
        assert_eq!(short_digest(&digest('f')), "sha256:ffffffffffff");
    }

    #[test]
    fn clean_cuts_and_strips_control_characters() {
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m\tok", 100), "red ok");
        assert_eq!(clean("abcdef", 4), "abc…");
        assert_eq!(clean("abcd", 4), "abcd");
        assert_eq!(clean("a\u{7}b", 10), "a\u{fffd}b");
        assert_eq!(clean("ééééé", 3), "éé…");
    }

    #[test]
    fn plain_text_has_everything() {
        let n = notification(vec![
            target("web", Outcome::Updated),
            target(
                "worker",
                Outcome::RolledBack {
                    reason: "health check failed".into(),
                    log_tail: vec!["panic: boom".into()],
                },
            ),
        ]);
        let text = plain_text(&message(&n));
        assert!(text.starts_with("Partly updated registry.example.test/team/app:1.4 (1 of 2 targets)\n"));
        assert!(text.contains("Image:      registry.example.test/team/app:1.4\n"));
        assert!(text.contains("  - web: updated\n"));
        assert!(text.contains("  - worker: rolled back: health check failed\n      | panic: boom\n"));
        assert!(text.contains(&format!("New digest: sha256:{}", "b".repeat(64))));
    }
}
