//! Slack incoming webhooks: the payload (pure) and the send.
//!
//! A message is `text` (the fallback Slack shows in notifications and
//! clients without blocks) plus `blocks` that lay out the shared wording of
//! [`render`]. Slack's limits are kept here: 50 blocks per message, 150
//! characters per header, 3000 per section text, and `&`, `<`, `>` escaped in
//! every mrkdwn text.

use serde_json::{json, Value};

use super::render::{self, Message, TargetLine, Tone};
use super::Notification;

/// Target sections per message; the rest are summed up in one line, so the
/// message stays under Slack's 50 blocks.
pub const MAX_TARGET_BLOCKS: usize = 40;
/// Slack's limit on the text of one section.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Log text across all targets of one message, so a push that rolled back
/// many targets still makes a readable (and accepted) message.
const MAX_LOG_CHARS_TOTAL: usize = 24_000;
const MAX_HEADER_CHARS: usize = 150;

/// The JSON body for one notification.
pub fn payload(notification: &Notification) -> Value {
    let m = render::message(notification);
    json!({
        "text": m.title,
        "blocks": blocks(&m),
    })
}

fn blocks(m: &Message) -> Vec<Value> {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": render::clean(&format!("{} {}", emoji(m.tone), m.title), MAX_HEADER_CHARS),
            "emoji": true,
        },
    })];
    if let Some(summary) = &m.summary {
        blocks.push(section(escape(summary)));
    }
    let fields: Vec<Value> = m
        .facts
        .iter()
        .map(|f| {
            let value = match f.label {
                "Image" | "Digest" | "Revision" => code(&f.value),
                _ => escape(&f.value),
            };
            json!({"type": "mrkdwn", "text": format!("*{}*\n{}", f.label, value)})
        })
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    blocks.push(json!({"type": "divider"}));

    let shown = render::pick_targets(&m.targets, MAX_TARGET_BLOCKS);
    let log_budget = MAX_LOG_CHARS_TOTAL / shown.len().max(1);
    for target in &shown {
        blocks.push(section(target_text(target, log_budget.min(MAX_SECTION_CHARS))));
    }
    let mut footer = format!("New digest {}", code(&m.new_digest));
    let hidden = m.targets.len() - shown.len();
    if hidden > 0 {
        footer = format!(
            "…and {hidden} more target{} not shown · {footer}",
            if hidden == 1 { "" } else { "s" }
        );
    }
    footer.push_str(" · sent by hoist");
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": footer}],
    }));
    blocks
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// `:warning: `web-1` rolled back: reason` and, for a rollback, the log tail
/// in a code block, cut from the oldest line so the section fits `max` characters.
fn target_text(t: &TargetLine, max: usize) -> String {
    let mut text = format!("{} {} {}", emoji(t.tone), code(&t.name), t.outcome);
    if let Some(old) = &t.old_digest {
        text.push_str(&format!(" (was {})", code(old)));
    }
    if let Some(reason) = &t.reason {
        text.push_str(&format!(": {}", escape(reason)));
    }
    // Leave room for the log block below and for the cut mark.
    let text = render::clean(&text, MAX_SECTION_CHARS / 2);
    if t.log_tail.is_empty() {
        return text;
    }
    let fence = "\n```\n";
    let mut lines: Vec<String> = Vec::new();
    let mut used = text.chars().count() + 2 * fence.len() + "…\n".len();
    for line in t.log_tail.iter().rev() {
        let line = escape(&line.replace("```", "'''"));
        let cost = line.chars().count() + 1;
        if used + cost > max {
            break;
        }
        used += cost;
        lines.push(line);
    }
    if lines.is_empty() {
        return text;
    }
    lines.reverse();
    let cut = if t.log_truncated || lines.len() < t.log_tail.len() {
        "…\n"
    } else {
        ""
    };
    format!("{text}{fence}{cut}{}{fence}", lines.join("\n"))
        .trim_end()
        .to_string()
}

fn emoji(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => ":white_check_mark:",
        Tone::Warning => ":warning:",
        Tone::Bad => ":x:",
        Tone::Info => ":information_source:",
    }
}

/// Escapes the three characters Slack's mrkdwn reserves.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Inline code; a backquote inside would end it early, so it becomes a quote.
fn code(text: &str) -> String {
    format!("`{}`", escape(&text.replace('`', "'")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::Outcome;
    use crate::notify::render::tests::{notification, target};

    #[test]
    fn update_payload_exact_structure() {
        let mut web = target("app-web-1", Outcome::Updated);
        web.compose_project = Some("app".into());
        web.compose_service = Some("web".into());
        let p = payload(&notification(vec![web, target("worker", Outcome::Updated)]));
        assert_eq!(
            p,
            json!({
                "text": "Updated registry.example.test/team/app:1.4 (2 targets)",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "emoji": true,
                        "text": ":white_check_mark: Updated registry.example.test/team/app:1.4 (2 targets)"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Image*\n`registry.example.test/team/app:1.4`"},
                        {"type": "mrkdwn", "text": "*Digest*\n`sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb`"},
                        {"type": "mrkdwn", "text": "*Pushed*\nby alice to registry.example.test (registry notification)"},
                        {"type": "mrkdwn", "text": "*Version*\n1.4.2"},
                        {"type": "mrkdwn", "text": "*Revision*\n`0f3c2a1`"},
                        {"type": "mrkdwn", "text": "*Took*\n12.3 s"},
                        {"type": "mrkdwn", "text": "*Started*\n2026-05-04 12:30:00 UTC"},
                    ]},
                    {"type": "divider"},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": ":white_check_mark: `app-web-1 (compose app/web)` updated"}},
                    {"type": "section", "text": {"type": "mrkdwn",
                        "text": ":white_check_mark: `worker` updated"}},
                    {"type": "context", "elements": [{"type": "mrkdwn",
                        "text": format!("New digest `sha256:{}` · sent by hoist", "b".repeat(64))}]},
                ]
            })
        );
    }

    #[test]
    fn rollback_has_reason_and_log_in_a_code_block() {
        let p = payload(&notification(vec![target(
            "web",
            Outcome::RolledBack {
                reason: "health check failed: <unhealthy> & exited".into(),
                log_tail: vec!["starting".into(), "panic: ```boom```".into()],
            },
        )]));
        assert_eq!(
            p["text"],
            "Rolled back registry.example.test/team/app:1.4 (1 target)"
        );
        assert_eq!(
            p["blocks"][3]["text"]["text"],
            ":warning: `web` rolled back: health check failed: &lt;unhealthy&gt; &amp; exited\n```\nstarting\npanic: '''boom'''\n```"
        );
    }

    #[test]
    fn monitor_only_says_not_applied() {
        let p = payload(&notification(vec![target("web", Outcome::MonitorOnly)]));
        assert_eq!(
            p["text"],
            "Update available for registry.example.test/team/app:1.4 (not applied)"
        );
        assert_eq!(
            p["blocks"][1]["text"]["text"],
            "An update is available and was not applied: the target is monitor-only."
        );
        assert_eq!(
            p["blocks"][4]["text"]["text"],
            ":information_source: `web` update available, not applied (monitor-only)"
        );
    }

    #[test]
    fn many_targets_stay_within_slack_limits() {
        let log: Vec<String> = (0..50).map(|i| format!("{i:03} {}", "x".repeat(290))).collect();
        let targets = (0..120)
            .map(|i| {
                target(
                    &format!("web-{i}"),
                    if i % 2 == 0 {
                        Outcome::Updated
                    } else {
                        Outcome::RolledBack {
                            reason: "unhealthy".into(),
                            log_tail: log.clone(),
                        }
                    },
                )
            })
            .collect();
        let p = payload(&notification(targets));
        let blocks = p["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50, "{} blocks", blocks.len());
        for block in blocks {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= MAX_SECTION_CHARS);
            }
        }
        // Problems are shown first when not every target fits.
        let shown_rollbacks = blocks
            .iter()
            .filter(|b| {
                b["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("rolled back"))
            })
            .count();
        assert_eq!(shown_rollbacks, MAX_TARGET_BLOCKS);
        let footer = blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap();
        assert!(footer.starts_with("…and 80 more targets not shown"), "{footer}");
        assert!(serde_json::to_vec(&p).unwrap().len() < 40_000);
    }

    #[test]
    fn a_long_log_is_cut_from_the_oldest_line() {
        let log: Vec<String> = (0..20).map(|i| format!("{i:02} {}", "y".repeat(290))).collect();
        let t = render::message(&notification(vec![target(
            "web",
            Outcome::RolledBack {
                reason: "unhealthy".into(),
                log_tail: log,
            },
        )]))
        .targets
        .remove(0);
        let text = target_text(&t, 1000);
        assert!(text.chars().count() <= 1000, "{}", text.chars().count());
        assert!(text.contains("\n```\n…\n"));
        assert!(text.contains("19 yyy"));
        assert!(!text.contains("00 yyy"));
    }
}
