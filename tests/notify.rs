//! Notifications end to end: Slack and Teams payloads as a loopback recorder
//! receives them, email through a real SMTP server (aiosmtpd), retries and
//! time-outs against misbehaving receivers, and secrets kept out of logs and
//! status details. Configuration goes through `NotifyConfig::from_reader`, so
//! the environment variables are exercised too.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::TimeZone;
use hoist::config::Reader;
use hoist::deploy::Outcome;
use hoist::event::{Digest, ImageRef, SourceKind};
use hoist::notify::{keys, ChannelStatus, Notification, Notifier, NotifyConfig, TargetReport};
use serde_json::Value;

use crate::harness::recorder::{Recorder, Reply};
use crate::harness::smtp::{SmtpOptions, SmtpServer};

const WAIT: Duration = Duration::from_secs(10);
const SLACK_PATH: &str = "/services/T000/B000/SECRETPATH123";
const TEAMS_PATH: &str = "/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=SECRETSIG456";

// === Fixtures ===

fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn target(name: &str, outcome: Outcome) -> TargetReport {
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

fn push(targets: Vec<TargetReport>) -> Notification {
    Notification {
        image: ImageRef::from_parts("registry.example.test", "team/app", Some("1.4"), None),
        new_digest: digest('b'),
        source: SourceKind::Harbor,
        actor: Some("alice".into()),
        image_version: Some("1.4.2".into()),
        image_revision: Some("0f3c2a1".into()),
        image_source: Some("https://git.example.test/team/app".into()),
        targets,
        started_at: chrono::Utc.with_ymd_and_hms(2026, 5, 4, 12, 30, 0).unwrap(),
        duration: Duration::from_millis(12_345),
        headline: None,
    }
}

/// Two targets updated, one of them a compose service.
fn update() -> Notification {
    let mut web = target("app-web-1", Outcome::Updated);
    web.compose_project = Some("app".into());
    web.compose_service = Some("web".into());
    push(vec![web, target("worker", Outcome::Updated)])
}

fn rollback() -> Notification {
    push(vec![target(
        "web",
        Outcome::RolledBack {
            reason: "health check failed: container exited with code 1 & <unhealthy>".into(),
            log_tail: vec![
                "listening on :8080".into(),
                "panic: config file /etc/app.toml not found".into(),
            ],
        },
    )])
}

fn monitor_only() -> Notification {
    push(vec![target("web", Outcome::MonitorOnly)])
}

/// A configuration read from these variables, as the app would; retries
/// wait 20 ms instead of 1 s so tests stay fast.
fn config(pairs: &[(&'static str, String)]) -> NotifyConfig {
    let vars: HashMap<&'static str, String> = pairs.iter().cloned().collect();
    let mut reader = Reader::new(&vars);
    let mut config = NotifyConfig::from_reader(&mut reader);
    assert!(reader.problems.is_empty(), "{:?}", reader.problems);
    config.delivery.backoff = Duration::from_millis(20);
    config
}

fn only(statuses: Vec<ChannelStatus>, channel: &str) -> ChannelStatus {
    statuses
        .into_iter()
        .find(|s| s.channel == channel)
        .expect("the channel is on")
}

/// Waits until `channel` has finished (sent or given up on) `count` messages.
async fn finished(notifier: &Notifier, channel: &str, count: u64) -> ChannelStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = only(notifier.status(), channel);
        if status.sent + status.failed >= count {
            return status;
        }
        assert!(Instant::now() < deadline, "{channel} did not finish: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes a rendered message to `$HOIST_NOTIFY_DUMP/<name>` when that is set,
/// so a person can read what the receivers got.
fn dump(name: &str, text: &str) {
    if let Ok(dir) = std::env::var("HOIST_NOTIFY_DUMP") {
        std::fs::write(std::path::Path::new(&dir).join(name), text).unwrap();
    }
}

fn texts(value: &Value) -> String {
    // Every string in the payload, to look for content regardless of layout.
    match value {
        Value::String(s) => format!("{s}\n"),
        Value::Array(a) => a.iter().map(texts).collect(),
        Value::Object(o) => o.values().map(texts).collect(),
        _ => String::new(),
    }
}

// === Slack ===

async fn slack_receives(notification: Notification) -> (Recorder, Value) {
    let recorder = Recorder::always(200).await;
    let notifier = Notifier::start(&config(&[(keys::SLACK_WEBHOOK_URL, recorder.url(SLACK_PATH))])).unwrap();
    notifier.notify(notification);
    let requests = recorder.wait_for(1, WAIT).await;
    notifier.shutdown(WAIT).await;
    assert_eq!(recorder.requests().len(), 1, "one message per push");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, SLACK_PATH);
    assert_eq!(request.header("content-type"), Some("application/json"));
    let status = only(notifier.status(), "slack");
    assert_eq!((status.sent, status.failed), (1, 0));
    let body = request.json();
    (recorder, body)
}

#[tokio::test]
async fn slack_update_has_every_fact_and_target() {
    let (_recorder, body) = slack_receives(update()).await;
    dump("slack-update.json", &serde_json::to_string_pretty(&body).unwrap());
    assert_eq!(
        body["text"],
        "Updated registry.example.test/team/app:1.4 (2 targets)"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":white_check_mark: Updated registry.example.test/team/app:1.4 (2 targets)"
    );
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "*Image*\n`registry.example.test/team/app:1.4`",
            "*Digest*\n`sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb`",
            "*Pushed*\nby alice to registry.example.test (Harbor webhook)",
            "*Version*\n1.4.2",
            "*Revision*\n`0f3c2a1`",
            "*Source*\nhttps://git.example.test/team/app",
            "*Took*\n12.3 s",
            "*Started*\n2026-05-04 12:30:00 UTC",
        ]
    );
    assert_eq!(blocks[2]["type"], "divider");
    assert_eq!(
        blocks[3]["text"]["text"],
        ":white_check_mark: `app-web-1 (compose app/web)` updated"
    );
    assert_eq!(blocks[4]["text"]["text"], ":white_check_mark: `worker` updated");
    assert_eq!(blocks[5]["type"], "context");
    assert!(blocks[5]["elements"][0]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("sha256:{}", "b".repeat(64))));
    assert_eq!(blocks.len(), 6);
}

#[tokio::test]
async fn slack_rollback_has_reason_and_log_tail() {
    let (_recorder, body) = slack_receives(rollback()).await;
    dump(
        "slack-rollback.json",
        &serde_json::to_string_pretty(&body).unwrap(),
    );
    assert_eq!(
        body["text"],
        "Rolled back registry.example.test/team/app:1.4 (1 target)"
    );
    assert_eq!(
        body["blocks"][3]["text"]["text"],
        ":warning: `web` rolled back: health check failed: container exited with code 1 &amp; &lt;unhealthy&gt;\n\
         ```\nlistening on :8080\npanic: config file /etc/app.toml not found\n```"
    );
}

#[tokio::test]
async fn slack_monitor_only_says_an_update_is_available() {
    let (_recorder, body) = slack_receives(monitor_only()).await;
    assert_eq!(
        body["text"],
        "Update available for registry.example.test/team/app:1.4 (not applied)"
    );
    assert_eq!(
        body["blocks"][1]["text"]["text"],
        "An update is available and was not applied: the target is monitor-only."
    );
    assert_eq!(
        body["blocks"][4]["text"]["text"],
        ":information_source: `web` update available, not applied (monitor-only)"
    );
}

// === Teams ===

async fn teams_receives(notification: Notification) -> Value {
    let recorder = Recorder::always(202).await;
    let notifier = Notifier::start(&config(&[(keys::TEAMS_WEBHOOK_URL, recorder.url(TEAMS_PATH))])).unwrap();
    notifier.notify(notification);
    let requests = recorder.wait_for(1, WAIT).await;
    notifier.shutdown(WAIT).await;
    assert_eq!(recorder.requests().len(), 1, "one message per push");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, TEAMS_PATH);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(only(notifier.status(), "teams").sent, 1);
    let body = request.json();
    assert_eq!(body["type"], "message");
    let attachments = body["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    body
}

fn facts(card_body: &Value) -> Vec<(String, String)> {
    card_body
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "FactSet")
        .unwrap()["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn teams_update_card() {
    let body = teams_receives(update()).await;
    dump("teams-update.json", &serde_json::to_string_pretty(&body).unwrap());
    let card_body = &body["attachments"][0]["content"]["body"];
    assert_eq!(card_body[0]["type"], "TextBlock");
    assert_eq!(
        card_body[0]["text"],
        "Updated registry.example.test/team/app:1.4 (2 targets)"
    );
    assert_eq!(card_body[0]["color"], "Good");
    let facts = facts(card_body);
    let expect = [
        ("Image", "registry.example.test/team/app:1.4"),
        ("Digest", "sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"),
        ("Pushed", "by alice to registry.example.test (Harbor webhook)"),
        ("Version", "1.4.2"),
        ("Revision", "0f3c2a1"),
        ("Source", "https://git.example.test/team/app"),
        ("Took", "12.3 s"),
        ("Started", "2026-05-04 12:30:00 UTC"),
    ];
    for (i, (title, value)) in expect.iter().enumerate() {
        assert_eq!((facts[i].0.as_str(), facts[i].1.as_str()), (*title, *value));
    }
    assert_eq!(
        facts[8],
        ("New digest".into(), format!("sha256:{}", "b".repeat(64)))
    );
    let line = |i: usize| {
        let inlines = &card_body[i]["items"][0]["inlines"];
        format!(
            "{}{}",
            inlines[0]["text"].as_str().unwrap(),
            inlines[1]["text"].as_str().unwrap()
        )
    };
    assert_eq!(line(3), "app-web-1 (compose app/web) updated");
    assert_eq!(line(4), "worker updated");
}

#[tokio::test]
async fn teams_rollback_card_has_reason_and_log_tail() {
    let body = teams_receives(rollback()).await;
    dump(
        "teams-rollback.json",
        &serde_json::to_string_pretty(&body).unwrap(),
    );
    let card_body = &body["attachments"][0]["content"]["body"];
    assert_eq!(
        card_body[0]["text"],
        "Rolled back registry.example.test/team/app:1.4 (1 target)"
    );
    assert_eq!(card_body[0]["color"], "Warning");
    let items = &card_body[3]["items"];
    assert_eq!(items[0]["inlines"][1]["text"], " rolled back");
    assert_eq!(
        items[1]["inlines"][0]["text"],
        "health check failed: container exited with code 1 & <unhealthy>"
    );
    let log: Vec<&str> = items[2]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["inlines"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        log,
        vec!["listening on :8080", "panic: config file /etc/app.toml not found"]
    );
}

#[tokio::test]
async fn teams_monitor_only_card_says_not_applied() {
    let body = teams_receives(monitor_only()).await;
    let all = texts(&body);
    assert!(all.contains("Update available for registry.example.test/team/app:1.4 (not applied)\n"));
    assert!(all.contains("An update is available and was not applied: the target is monitor-only.\n"));
    assert!(all.contains(" update available, not applied (monitor-only)\n"));
}

#[tokio::test]
async fn teams_payload_stays_under_the_size_limit() {
    let log: Vec<String> = (0..50).map(|i| format!("{i:03} {}", "x".repeat(400))).collect();
    let targets = (0..200)
        .map(|i| {
            target(
                &format!("web-{i}"),
                Outcome::RolledBack {
                    reason: "health check failed".into(),
                    log_tail: log.clone(),
                },
            )
        })
        .collect();
    let body = teams_receives(push(targets)).await;
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size <= hoist::notify::teams::MAX_PAYLOAD_BYTES, "{size} bytes");
    assert!(size < 28 * 1024);
    let all = texts(&body);
    assert!(all.contains("Rolled back registry.example.test/team/app:1.4 (200 targets)\n"));
    assert!(all.contains("more targets not shown\n"));
}

// === Faults ===

#[tokio::test]
async fn transient_errors_are_retried_and_the_message_delivered_once() {
    let slack = Recorder::statuses(&[500, 500]).await;
    let teams = Recorder::start(vec![Reply::Status(503), Reply::Status(429)], Reply::Status(202)).await;
    let notifier = Notifier::start(&config(&[
        (keys::SLACK_WEBHOOK_URL, slack.url(SLACK_PATH)),
        (keys::TEAMS_WEBHOOK_URL, teams.url(TEAMS_PATH)),
    ]))
    .unwrap();
    notifier.notify(update());
    for (recorder, channel, last) in [(&slack, "slack", 200), (&teams, "teams", 202)] {
        let status = finished(&notifier, channel, 1).await;
        assert_eq!((status.sent, status.failed), (1, 0), "{channel}");
        let requests = recorder.requests();
        assert_eq!(requests.len(), 3, "{channel}");
        assert_eq!(requests[2].reply, Reply::Status(last));
        // The same message each time, and not again after it was accepted.
        assert!(requests.iter().all(|r| r.body == requests[0].body));
        // Backoff with jitter: at least half of 20 ms, then of 40 ms.
        assert!(requests[1].at - requests[0].at >= Duration::from_millis(10));
        assert!(requests[2].at - requests[1].at >= Duration::from_millis(20));
    }
    notifier.shutdown(WAIT).await;
    assert_eq!(slack.requests().len(), 3);
}

#[tokio::test]
async fn a_permanent_error_is_not_retried() {
    let slack = Recorder::always(400).await;
    let teams = Recorder::always(403).await;
    let notifier = Notifier::start(&config(&[
        (keys::SLACK_WEBHOOK_URL, slack.url(SLACK_PATH)),
        (keys::TEAMS_WEBHOOK_URL, teams.url(TEAMS_PATH)),
    ]))
    .unwrap();
    notifier.notify(update());
    let status = finished(&notifier, "slack", 1).await;
    assert_eq!((status.sent, status.failed), (0, 1));
    assert!(!status.ok);
    assert_eq!(
        status.detail,
        "last message failed after 1 attempt(s): http status 400 Bad Request: error 400"
    );
    let status = finished(&notifier, "teams", 1).await;
    assert_eq!((status.sent, status.failed), (0, 1));
    // Well past every backoff: still one request each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(teams.requests().len(), 1);
    notifier.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_hanging_receiver_does_not_block_and_times_out() {
    let recorder = Recorder::hanging().await;
    let mut config = config(&[
        (keys::SLACK_WEBHOOK_URL, recorder.url(SLACK_PATH)),
        (keys::NOTIFY_TIMEOUT, "300ms".into()),
        (keys::NOTIFY_RETRIES, "0".into()),
    ]);
    config.delivery.queue_capacity = 2;
    let notifier = Notifier::start(&config).unwrap();

    let started = Instant::now();
    notifier.notify(update());
    let took = started.elapsed();
    assert!(took < Duration::from_millis(50), "notify took {took:?}");

    // The receiver has the request and is still not answering...
    let requests = recorder.wait_for(1, WAIT).await;
    assert_eq!(requests[0].reply, Reply::Hang);
    // ...and notify still returns at once, even with the queue filling up.
    let started = Instant::now();
    for _ in 0..5 {
        notifier.notify(update());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(50), "notify took {took:?}");
    assert_eq!(only(notifier.status(), "slack").dropped, 3);

    let status = finished(&notifier, "slack", 1).await;
    assert_eq!(status.failed, 1);
    assert_eq!(
        status.detail,
        "last message failed after 1 attempt(s): timed out after 300 ms"
    );
    // It gave up only after the time limit.
    assert!(requests[0].at.elapsed() >= Duration::from_millis(290));
    notifier.shutdown(Duration::from_millis(100)).await;
    let status = only(notifier.status(), "slack");
    assert_eq!(status.queued, 0);
}

#[tokio::test]
async fn check_finds_a_dead_webhook_and_a_live_one() {
    let live = Recorder::always(200).await;
    // A port that was free a moment ago and has no listener now.
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let notifier = Notifier::start(&config(&[
        (keys::SLACK_WEBHOOK_URL, live.url(SLACK_PATH)),
        (
            keys::TEAMS_WEBHOOK_URL,
            format!("http://127.0.0.1:{dead_port}{TEAMS_PATH}"),
        ),
    ]))
    .unwrap();
    let checked = notifier.check().await;
    let slack = only(checked.clone(), "slack");
    assert!(slack.ok, "{slack:?}");
    assert_eq!(slack.detail, "webhook host accepts connections");
    let teams = only(checked.clone(), "teams");
    assert!(!teams.ok);
    assert!(
        teams
            .detail
            .starts_with("check failed: connection failed: tcp connect failed:"),
        "{}",
        teams.detail
    );
    assert_eq!(notifier.status(), checked);
    // A check posts nothing.
    assert!(live.requests().is_empty());
    notifier.shutdown(WAIT).await;
}

// === Email ===

fn email_vars(url: String) -> Vec<(&'static str, String)> {
    vec![
        (keys::SMTP_URL, url),
        (keys::EMAIL_FROM, "hoist <hoist@example.test>".into()),
        (
            keys::EMAIL_TO,
            "ops@example.test, Dev Team <dev@example.test>".into(),
        ),
    ]
}

#[tokio::test]
async fn email_through_a_local_relay_has_headers_and_both_bodies() {
    let server = SmtpServer::start(SmtpOptions::default());
    let notifier = Notifier::start(&config(&email_vars(format!(
        "smtp://127.0.0.1:{}?tls=none",
        server.port()
    ))))
    .unwrap();
    let checked = only(notifier.check().await, "email");
    assert!(checked.ok, "{checked:?}");
    notifier.notify(rollback());
    let mail = server.wait_for(1, WAIT).await.remove(0);
    notifier.shutdown(WAIT).await;
    dump("email-rollback.txt", mail.part("text/plain").unwrap_or_default());
    dump("email-rollback.html", mail.part("text/html").unwrap_or_default());

    assert_eq!(mail.mail_from, "hoist@example.test");
    assert_eq!(mail.rcpt_tos, vec!["ops@example.test", "dev@example.test"]);
    assert_eq!(mail.header("From"), Some("hoist <hoist@example.test>"));
    assert_eq!(
        mail.header("To"),
        Some("ops@example.test, Dev Team <dev@example.test>")
    );
    assert_eq!(
        mail.header("Subject"),
        Some("Rolled back registry.example.test/team/app:1.4 (1 target)")
    );
    assert_eq!(mail.content_type, "multipart/alternative");
    assert!(mail.raw.contains("Content-Type: multipart/alternative;"));
    assert_eq!(mail.parts.len(), 2);

    let text = mail.part("text/plain").unwrap();
    assert!(text.starts_with("Rolled back registry.example.test/team/app:1.4 (1 target)\n"));
    for expected in [
        "Digest:     sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb\n",
        "Pushed:     by alice to registry.example.test (Harbor webhook)\n",
        "Version:    1.4.2\n",
        "Revision:   0f3c2a1\n",
        "Source:     https://git.example.test/team/app\n",
        "Took:       12.3 s\n",
        "  - web: rolled back: health check failed: container exited with code 1 & <unhealthy>\n",
        "      | listening on :8080\n      | panic: config file /etc/app.toml not found\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }

    let html = mail.part("text/html").unwrap();
    assert!(html.contains(
        "<h2 style=\"color: #9a6700;\">Rolled back registry.example.test/team/app:1.4 (1 target)</h2>"
    ));
    assert!(html.contains(": health check failed: container exited with code 1 &amp; &lt;unhealthy&gt;"));
    assert!(!html.contains("<unhealthy>"));
    assert!(html.contains("<pre style=\"background: #f6f8fa; padding: 8px;\">listening on :8080\npanic: config file /etc/app.toml not found</pre>"));
    assert!(html.contains("<code>sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb</code>"));
    assert_eq!(only(notifier.status(), "email").sent, 1);
}

#[tokio::test]
async fn email_monitor_only_subject() {
    let server = SmtpServer::start(SmtpOptions::default());
    let notifier = Notifier::start(&config(&email_vars(format!(
        "smtp://127.0.0.1:{}?tls=none",
        server.port()
    ))))
    .unwrap();
    notifier.notify(monitor_only());
    let mail = server.wait_for(1, WAIT).await.remove(0);
    notifier.shutdown(WAIT).await;
    assert_eq!(
        mail.header("Subject"),
        Some("Update available for registry.example.test/team/app:1.4 (not applied)")
    );
    let text = mail.part("text/plain").unwrap();
    assert!(text.contains("An update is available and was not applied: the target is monitor-only."));
}

fn tls_server(password: &str) -> SmtpServer {
    SmtpServer::start(SmtpOptions {
        starttls: true,
        login: Some(("hoist".into(), password.into())),
    })
}

fn tls_vars(server: &SmtpServer, password: &str) -> Vec<(&'static str, String)> {
    let mut vars = email_vars(format!("smtp://hoist:{password}@127.0.0.1:{}", server.port()));
    vars.push((
        keys::SMTP_CA_FILE,
        server.ca_file().unwrap().display().to_string(),
    ));
    vars
}

#[tokio::test]
async fn email_with_login_over_starttls() {
    let server = tls_server("s3cret-pass");
    let notifier = Notifier::start(&config(&tls_vars(&server, "s3cret-pass"))).unwrap();
    let checked = only(notifier.check().await, "email");
    assert!(checked.ok, "{checked:?}\n{}", server.log());
    assert_eq!(
        checked.detail,
        "smtp server accepted the connection and the login"
    );
    notifier.notify(update());
    let mail = server.wait_for(1, WAIT).await.remove(0);
    notifier.shutdown(WAIT).await;
    assert!(mail.tls, "the session was not upgraded");
    assert_eq!(mail.login.as_deref(), Some("hoist"));
    assert_eq!(
        mail.header("Subject"),
        Some("Updated registry.example.test/team/app:1.4 (2 targets)")
    );
    dump("email-update.txt", mail.part("text/plain").unwrap_or_default());
}

#[tokio::test]
async fn email_without_the_ca_does_not_trust_the_server() {
    let server = tls_server("s3cret-pass");
    let mut vars = tls_vars(&server, "s3cret-pass");
    vars.retain(|(k, _)| *k != keys::SMTP_CA_FILE);
    let notifier = Notifier::start(&config(&vars)).unwrap();
    let checked = only(notifier.check().await, "email");
    assert!(!checked.ok);
    assert!(
        checked
            .detail
            .contains("Connection error: invalid peer certificate: UnknownIssuer"),
        "{}",
        checked.detail
    );
    notifier.shutdown(WAIT).await;
}

#[tokio::test]
async fn email_with_a_wrong_password_fails_once_without_showing_it() {
    let server = tls_server("right-password");
    let notifier = Notifier::start(&config(&tls_vars(&server, "hunter2-SECRET"))).unwrap();
    let checked = only(notifier.check().await, "email");
    assert!(!checked.ok);
    assert!(checked.detail.contains("535"), "{}", checked.detail);
    notifier.notify(update());
    let status = finished(&notifier, "email", 1).await;
    notifier.shutdown(WAIT).await;
    assert_eq!((status.sent, status.failed), (0, 1));
    // 535 is permanent: one attempt, no retry.
    assert!(
        status
            .detail
            .starts_with("last message failed after 1 attempt(s): smtp: permanent error (535)"),
        "{}",
        status.detail
    );
    assert!(!status.detail.contains("hunter2"));
    assert!(!checked.detail.contains("hunter2"));
    assert!(server.messages().is_empty());
}

// === Secrets ===

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs failing then succeeding sends and checks on all three channels with
/// every log level captured. `set_default` is per thread, so this runs on a
/// current-thread runtime where the notifier's tasks run too.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_logs_or_status() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // With a single scoped dispatcher, tracing-core caches a callsite's
    // interest from whichever thread hits it first: another test's thread,
    // with no subscriber, would switch our events off for good. A second live
    // dispatcher makes it ask every dispatcher instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let server = tls_server("hunter2-SECRET");
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut statuses: Vec<ChannelStatus> = Vec::new();

    // Failing: Slack 500 until retries run out, Teams 400, email wrong password.
    let slack = Recorder::always(500).await;
    let teams = Recorder::always(400).await;
    let mut vars = tls_vars(&server, "wrong-hunter2-SECRET");
    vars.push((keys::SLACK_WEBHOOK_URL, slack.url(SLACK_PATH)));
    vars.push((keys::TEAMS_WEBHOOK_URL, teams.url(TEAMS_PATH)));
    vars.push((keys::NOTIFY_RETRIES, "1".into()));
    let notifier = Notifier::start(&config(&vars)).unwrap();
    statuses.extend(notifier.check().await);
    notifier.notify(rollback());
    for channel in ["slack", "teams", "email"] {
        assert_eq!(finished(&notifier, channel, 1).await.failed, 1, "{channel}");
    }
    statuses.extend(notifier.status());
    notifier.shutdown(WAIT).await;

    // Unreachable webhooks.
    let notifier = Notifier::start(&config(&[
        (
            keys::SLACK_WEBHOOK_URL,
            format!("http://127.0.0.1:{dead_port}{SLACK_PATH}"),
        ),
        (
            keys::TEAMS_WEBHOOK_URL,
            format!("http://127.0.0.1:{dead_port}{TEAMS_PATH}"),
        ),
        (keys::NOTIFY_RETRIES, "0".into()),
    ]))
    .unwrap();
    statuses.extend(notifier.check().await);
    notifier.notify(update());
    for channel in ["slack", "teams"] {
        assert_eq!(finished(&notifier, channel, 1).await.failed, 1, "{channel}");
    }
    statuses.extend(notifier.status());
    notifier.shutdown(WAIT).await;

    // Succeeding.
    let slack = Recorder::always(200).await;
    let teams = Recorder::always(202).await;
    let mut vars = tls_vars(&server, "hunter2-SECRET");
    vars.push((keys::SLACK_WEBHOOK_URL, slack.url(SLACK_PATH)));
    vars.push((keys::TEAMS_WEBHOOK_URL, teams.url(TEAMS_PATH)));
    let notifier = Notifier::start(&config(&vars)).unwrap();
    statuses.extend(notifier.check().await);
    notifier.notify(update());
    for channel in ["slack", "teams", "email"] {
        assert_eq!(finished(&notifier, channel, 1).await.sent, 1, "{channel}");
    }
    statuses.extend(notifier.status());
    notifier.shutdown(WAIT).await;
    assert_eq!(server.wait_for(1, WAIT).await.len(), 1);

    let logs = logs.text();
    let details = format!("{statuses:?}");
    for secret in [
        "SECRETPATH123",
        "SECRETSIG456",
        "hunter2",
        "/services/T000",
        "sig=",
    ] {
        assert!(!logs.contains(secret), "{secret:?} in the logs:\n{logs}");
        assert!(!details.contains(secret), "{secret:?} in a status:\n{details}");
    }
    for channel in ["slack", "teams", "email"] {
        assert!(
            logs.contains(&format!("channel=\"{channel}\"")),
            "{channel} not in the logs:\n{logs}"
        );
    }
    assert!(logs.contains("Notification could not be sent."), "{logs}");
    assert!(logs.contains("Notification sent."), "{logs}");
    assert!(logs.contains("WARN"), "{logs}");
    dump("secrets-test-logs.txt", &logs);
}
