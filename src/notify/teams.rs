//! Microsoft Teams, through a Workflows webhook: the Adaptive Card (pure) and the send.
//!
//! Office 365 connectors (`MessageCard`) are retired; a Workflows webhook
//! takes a `message` whose one attachment is an Adaptive Card (1.4). Teams
//! refuses messages over about 28 KB, so [`payload`] shrinks the card until
//! it fits: first the log tails, then the number of targets shown (problems
//! first), then long texts. Untrusted text (container names, reasons, log
//! lines) goes into `TextRun`s, which Teams does not read as markdown.

use serde_json::{json, Value};

use super::render::{self, Message, TargetLine, Tone};
use super::Notification;

/// The largest body sent, in bytes: under Teams' 28 KB with room to spare.
pub const MAX_PAYLOAD_BYTES: usize = 27 * 1024;
pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// How much of the message a card shows; shrunk step by step until it fits.
#[derive(Clone, Copy, Debug)]
struct Room {
    log_lines: usize,
    targets: usize,
    text_chars: usize,
}

/// The JSON body for one notification, at most [`MAX_PAYLOAD_BYTES`] long.
pub fn payload(notification: &Notification) -> Value {
    let m = render::message(notification);
    let mut room = Room {
        log_lines: render::MAX_LOG_LINES,
        targets: m.targets.len(),
        text_chars: render::MAX_REASON_CHARS,
    };
    loop {
        let body = envelope(card(&m, room));
        if size(&body) <= MAX_PAYLOAD_BYTES {
            return body;
        }
        room = if room.log_lines > 0 {
            Room {
                log_lines: room.log_lines / 2,
                ..room
            }
        } else if room.targets > 1 {
            Room {
                targets: room.targets / 2,
                ..room
            }
        } else if room.text_chars > 60 {
            Room {
                text_chars: room.text_chars / 2,
                ..room
            }
        } else {
            // Nothing left to shrink; everything shown is already cut short.
            return body;
        };
    }
}

fn size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

fn envelope(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CARD_CONTENT_TYPE,
            "contentUrl": null,
            "content": card,
        }],
    })
}

fn card(m: &Message, room: Room) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": render::clean(&m.title, room.text_chars),
        "size": "Medium",
        "weight": "Bolder",
        "color": color(m.tone),
        "wrap": true,
    })];
    if let Some(summary) = &m.summary {
        body.push(json!({"type": "TextBlock", "text": summary, "wrap": true}));
    }
    let mut facts: Vec<Value> = m
        .facts
        .iter()
        .map(|f| json!({"title": f.label, "value": render::clean(&f.value, room.text_chars)}))
        .collect();
    facts.push(json!({"title": "New digest", "value": m.new_digest}));
    body.push(json!({"type": "FactSet", "facts": facts}));
    body.push(json!({
        "type": "TextBlock",
        "text": "Targets",
        "weight": "Bolder",
        "spacing": "Medium",
    }));
    let shown = render::pick_targets(&m.targets, room.targets);
    for target in &shown {
        body.push(target_block(target, room));
    }
    let hidden = m.targets.len() - shown.len();
    if hidden > 0 {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("…and {hidden} more target{} not shown", if hidden == 1 { "" } else { "s" }),
            "isSubtle": true,
            "wrap": true,
        }));
    }
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    })
}

fn target_block(t: &TargetLine, room: Room) -> Value {
    let mut outcome = format!(" {}", t.outcome);
    if let Some(old) = &t.old_digest {
        outcome.push_str(&format!(" (was {old})"));
    }
    let mut items = vec![json!({
        "type": "RichTextBlock",
        "inlines": [
            {"type": "TextRun", "text": render::clean(&t.name, room.text_chars), "weight": "Bolder"},
            {"type": "TextRun", "text": outcome, "color": color(t.tone)},
        ],
    })];
    if let Some(reason) = &t.reason {
        items.push(json!({
            "type": "RichTextBlock",
            "spacing": "None",
            "inlines": [{"type": "TextRun", "text": render::clean(reason, room.text_chars)}],
        }));
    }
    let skip = t.log_tail.len().saturating_sub(room.log_lines);
    let lines = &t.log_tail[skip..];
    if !lines.is_empty() {
        let mut log: Vec<Value> = Vec::new();
        if skip > 0 || t.log_truncated {
            log.push(log_line("…"));
        }
        log.extend(lines.iter().map(|l| log_line(&render::clean(l, room.text_chars))));
        items.push(json!({"type": "Container", "style": "emphasis", "spacing": "Small", "items": log}));
    }
    json!({"type": "Container", "spacing": "Small", "items": items})
}

/// One log line: a block of its own (line breaks inside a `TextRun` are not
/// reliable across Teams clients), in a fixed-width font.
fn log_line(text: &str) -> Value {
    json!({
        "type": "RichTextBlock",
        "spacing": "None",
        "inlines": [{"type": "TextRun", "text": text, "fontType": "Monospace", "size": "Small"}],
    })
}

fn color(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "Good",
        Tone::Warning => "Warning",
        Tone::Bad => "Attention",
        Tone::Info => "Accent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::Outcome;
    use crate::notify::render::tests::{notification, target};

    #[test]
    fn update_card_exact_structure() {
        let p = payload(&notification(vec![target("web", Outcome::Updated)]));
        assert_eq!(
            p,
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "msteams": {"width": "Full"},
                        "body": [
                            {"type": "TextBlock", "text": "Updated registry.example.test/team/app:1.4 (1 target)",
                             "size": "Medium", "weight": "Bolder", "color": "Good", "wrap": true},
                            {"type": "FactSet", "facts": [
                                {"title": "Image", "value": "registry.example.test/team/app:1.4"},
                                {"title": "Digest", "value": "sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"},
                                {"title": "Pushed", "value": "by alice to registry.example.test (registry notification)"},
                                {"title": "Version", "value": "1.4.2"},
                                {"title": "Revision", "value": "0f3c2a1"},
                                {"title": "Took", "value": "12.3 s"},
                                {"title": "Started", "value": "2026-05-04 12:30:00 UTC"},
                                {"title": "New digest", "value": format!("sha256:{}", "b".repeat(64))},
                            ]},
                            {"type": "TextBlock", "text": "Targets", "weight": "Bolder", "spacing": "Medium"},
                            {"type": "Container", "spacing": "Small", "items": [
                                {"type": "RichTextBlock", "inlines": [
                                    {"type": "TextRun", "text": "web", "weight": "Bolder"},
                                    {"type": "TextRun", "text": " updated", "color": "Good"},
                                ]},
                            ]},
                        ],
                    },
                }],
            })
        );
    }

    #[test]
    fn rollback_card_has_reason_and_log_lines() {
        let p = payload(&notification(vec![target(
            "web",
            Outcome::RolledBack {
                reason: "health check failed".into(),
                log_tail: vec!["starting".into(), "panic: *boom*".into()],
            },
        )]));
        let body = &p["attachments"][0]["content"]["body"];
        assert_eq!(body[0]["color"], "Warning");
        let items = &body[3]["items"];
        assert_eq!(items[0]["inlines"][1]["text"], " rolled back");
        assert_eq!(items[1]["inlines"][0]["text"], "health check failed");
        let log = &items[2]["items"];
        assert_eq!(log.as_array().unwrap().len(), 2);
        assert_eq!(log[0]["inlines"][0]["text"], "starting");
        assert_eq!(log[1]["inlines"][0]["text"], "panic: *boom*");
        assert_eq!(log[1]["inlines"][0]["fontType"], "Monospace");
    }

    #[test]
    fn monitor_only_card_says_not_applied() {
        let p = payload(&notification(vec![target("web", Outcome::MonitorOnly)]));
        let body = &p["attachments"][0]["content"]["body"];
        assert_eq!(
            body[0]["text"],
            "Update available for registry.example.test/team/app:1.4 (not applied)"
        );
        assert_eq!(
            body[1]["text"],
            "An update is available and was not applied: the target is monitor-only."
        );
        assert_eq!(
            body[4]["items"][0]["inlines"][1]["text"],
            " update available, not applied (monitor-only)"
        );
    }

    fn rollbacks(count: usize, lines: usize, width: usize) -> Notification {
        let log: Vec<String> = (0..lines)
            .map(|i| format!("{i:03} {}", "z".repeat(width)))
            .collect();
        notification(
            (0..count)
                .map(|i| {
                    target(
                        &format!("web-{i}"),
                        Outcome::RolledBack {
                            reason: "health check failed".into(),
                            log_tail: log.clone(),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn small_messages_are_not_cut() {
        let n = rollbacks(2, 20, 100);
        let p = payload(&n);
        let body = &p["attachments"][0]["content"]["body"];
        assert_eq!(body[3]["items"][2]["items"].as_array().unwrap().len(), 20);
        assert_eq!(body[4]["items"][2]["items"].as_array().unwrap().len(), 20);
    }

    #[test]
    fn log_tails_are_cut_first_to_fit() {
        let n = rollbacks(6, 20, 290);
        let full = size(&envelope(card(
            &render::message(&n),
            Room {
                log_lines: 20,
                targets: 6,
                text_chars: 1000,
            },
        )));
        assert!(
            full > MAX_PAYLOAD_BYTES,
            "the test needs an oversized card, got {full}"
        );
        let p = payload(&n);
        assert!(size(&p) <= MAX_PAYLOAD_BYTES);
        let body = p["attachments"][0]["content"]["body"].as_array().unwrap();
        // Every target is still there, each with its newest log lines and a cut mark.
        let targets: Vec<&Value> = body.iter().filter(|b| b["type"] == "Container").collect();
        assert_eq!(targets.len(), 6);
        let log = targets[0]["items"][2]["items"].as_array().unwrap();
        assert_eq!(log[0]["inlines"][0]["text"], "…");
        assert!(log.last().unwrap()["inlines"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("019 "));
        assert!(log.len() < 21);
    }

    #[test]
    fn many_targets_are_cut_to_fit_and_counted() {
        let n = rollbacks(300, 50, 300);
        let p = payload(&n);
        let bytes = serde_json::to_vec(&p).unwrap();
        assert!(bytes.len() <= MAX_PAYLOAD_BYTES, "{} bytes", bytes.len());
        assert!(bytes.len() < 28 * 1024);
        let body = p["attachments"][0]["content"]["body"].as_array().unwrap();
        assert_eq!(
            body[0]["text"],
            "Rolled back registry.example.test/team/app:1.4 (300 targets)"
        );
        let shown = body.iter().filter(|b| b["type"] == "Container").count();
        assert!(shown > 0 && shown < 300);
        assert_eq!(
            body.last().unwrap()["text"],
            format!("…and {} more targets not shown", 300 - shown)
        );
    }
}
