//! The operator's surface: the read API behind the token, /metrics behind
//! its own token when set, and a warning for a short webhook token.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::recorder::Recorder;
use crate::harness::{build_and_push, docker, unique, Behaviour, Cleanup, Hoist, Registry, TOKEN};

const JOB_WAIT: Duration = Duration::from_secs(90);

/// Runs a labelled container `name` of `tag` (with extra `docker run` arguments).
pub(crate) fn run_labelled(clean: &mut Cleanup, name: &str, tag: &str, extra: &[&str]) {
    clean.container(name);
    let mut args = vec!["run", "-d", "--name", name, "--label", "hoist.enable=true"];
    args.extend(extra);
    args.push(tag);
    docker(&args);
}

/// Finished jobs of `image` in the history, newest first.
pub(crate) async fn jobs_of(hoist: &Hoist, image: &str) -> Vec<Value> {
    hoist.get_json("/v1/history").await["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["image"] == image)
        .cloned()
        .collect()
}

/// Waits until the history holds `count` jobs of `image`; returns them, newest first.
pub(crate) async fn wait_for_jobs(hoist: &Hoist, image: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + JOB_WAIT;
    loop {
        let jobs = jobs_of(hoist, image).await;
        if jobs.len() >= count {
            return jobs;
        }
        assert!(Instant::now() < deadline, "no {count} jobs of {image}: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /v1/update` of `image` at `digest`, as a CI job would (a redelivery here).
pub(crate) async fn post_update(hoist: &Hoist, image: &str, digest: &str) {
    let response = hoist
        .http
        .post(hoist.url("/v1/update"))
        .bearer_auth(TOKEN)
        .json(&json!({ "image": image, "digest": digest }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{}",
        response.text().await.unwrap()
    );
}

/// `GET path` on `hoist` with `token` (none when `None`): the status code.
async fn status(hoist: &Hoist, path: &str, token: Option<&str>) -> u16 {
    let mut request = hoist.http.get(hoist.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_read_api_wants_the_token_and_health_stays_open() {
    let hoist = Hoist::start(&[]).await;
    for path in ["/v1/targets", "/v1/history", "/v1/peers", "/v1/plan?image=x:y"] {
        assert_eq!(status(&hoist, path, None).await, 401, "{path} without a token");
        assert_eq!(
            status(&hoist, path, Some("test-token-012345678")).await,
            401,
            "{path} with a wrong token (one character short)"
        );
    }
    let refused = hoist.http.get(hoist.url("/v1/history")).send().await.unwrap();
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let body = refused.text().await.unwrap();
    assert!(!body.contains("jobs"), "a refusal shows nothing: {body}");
    for path in ["/v1/targets", "/v1/history", "/v1/peers"] {
        assert_eq!(
            status(&hoist, path, Some(TOKEN)).await,
            200,
            "{path} with the token"
        );
    }
    assert_eq!(status(&hoist, "/healthz", None).await, 200);
    assert_eq!(
        status(&hoist, "/metrics", None).await,
        200,
        "open without HOIST_METRICS_TOKEN"
    );
    hoist.stop().await;
}

#[tokio::test]
async fn metrics_want_their_own_token_when_one_is_set() {
    let metrics_token = "metrics-token-abcdefghij";
    let hoist = Hoist::start(&[("HOIST_METRICS_TOKEN", metrics_token)]).await;
    assert_eq!(status(&hoist, "/metrics", None).await, 401);
    assert_eq!(
        status(&hoist, "/metrics", Some(TOKEN)).await,
        401,
        "the webhook token is not the metrics token"
    );
    assert_eq!(status(&hoist, "/metrics", Some(metrics_token)).await, 200);
    assert_eq!(
        status(&hoist, "/v1/history", Some(metrics_token)).await,
        401,
        "the metrics token does not open the history"
    );
    let metrics = hoist
        .http
        .get(hoist.url("/metrics"))
        .bearer_auth(metrics_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hoist_read_requests_refused_total"),
        "refused reads are counted: {metrics}"
    );
    assert_eq!(status(&hoist, "/healthz", None).await, 200);
    hoist.stop().await;
}

/// Runs the binary until ready with `token`; returns its log.
fn log_at_start(token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("hoist.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOIST_WEBHOOK_TOKEN", token)
        .env("HOIST_LISTEN", "127.0.0.1:0")
        .env("HOIST_STATE_DIR", dir.path())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("hoist is ready") || child.try_wait().unwrap().is_some() {
            break text;
        }
        assert!(Instant::now() < deadline, "hoist never got ready:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().ok();
    child.wait().ok();
    text
}

#[test]
fn a_short_webhook_token_is_warned_about_at_start() {
    let short = log_at_start("short-tok");
    assert!(
        short.contains("HOIST_WEBHOOK_TOKEN is shorter than 16 characters"),
        "{short}"
    );
    assert!(
        !short.contains("short-tok"),
        "the token itself is never logged:\n{short}"
    );
    let long = log_at_start("a-long-enough-token-0123");
    assert!(long.contains("hoist is ready"), "{long}");
    assert!(!long.contains("shorter than"), "{long}");
}

/// Whether `needle` occurs in the file at `path` (what `strings | grep` finds).
fn binary_contains(path: &str, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The crash-test hooks live behind the `fault-injection` feature, which
/// only the test builds turn on: the release binary that
/// scripts/package-image.sh builds by default (the one CI's benchmark smoke
/// run packages too, so this is not a second release build) never names them.
#[test]
fn the_release_binary_has_no_crash_test_hooks() {
    let test_build = env!("CARGO_BIN_EXE_hoist");
    assert!(
        binary_contains(test_build, "HOIST_FAULT_PAUSE_AFTER"),
        "the test build has the hook (else this scan proves nothing)"
    );
    let tag = format!("{}:local", crate::harness::unique("release-scan"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package-image.sh");
    let packaged = Command::new("bash").args([script, "", &tag]).output().unwrap();
    crate::harness::docker_quiet(&["rmi", "-f", &tag]);
    let said = String::from_utf8_lossy(&packaged.stderr).to_string();
    assert!(packaged.status.success(), "packaging failed: {said}");
    // "package-image: TAG: BINARY (N bytes, ...)"
    let binary = said
        .lines()
        .find_map(|l| l.strip_prefix(&format!("package-image: {tag}: ")))
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("package-image.sh did not say what it packaged: {said}"));
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(binary);
    let binary = binary.to_str().unwrap();
    for needle in ["HOIST_FAULT_PAUSE", "Fault injection"] {
        assert!(!binary_contains(binary, needle), "{binary} contains {needle:?}");
    }
}

/// A redelivered push that every target already runs is journaled, not
/// announced; with HOIST_NOTIFY_UNCHANGED=true it is announced too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_changes_nothing_sends_no_message() {
    for notify_unchanged in [false, true] {
        let slack = Recorder::always(200).await;
        let slack_url = slack.url("/services/T0/B0/quiet");
        let mut vars = vec![("HOIST_SLACK_WEBHOOK_URL", slack_url.as_str())];
        if notify_unchanged {
            vars.push(("HOIST_NOTIFY_UNCHANGED", "true"));
        }
        let hoist = Hoist::start(&vars).await;
        let registry = Registry::start(&hoist.hook_url());
        let tag = format!("{}:1.0", registry.repo(&unique("quiet")));
        let mut clean = Cleanup::default();
        clean.image(&tag);
        build_and_push(&tag, "v1", Behaviour::Serve);
        let name = unique("quiet");
        run_labelled(&mut clean, &name, &tag, &[]);
        hoist.wait_for_target(&name).await;

        let v2 = build_and_push(&tag, "v2", Behaviour::Serve);
        let job = hoist.wait_for_job(&tag, &v2, JOB_WAIT).await;
        assert_eq!(job["targets"][0]["outcome"]["result"], "updated", "{job}");
        slack.wait_for(1, Duration::from_secs(10)).await;

        // The registry redelivers the same push (as after a restart of hoist).
        post_update(&hoist, &tag, &v2).await;
        let jobs = wait_for_jobs(&hoist, &tag, 2).await;
        assert_eq!(
            jobs[0]["targets"][0]["outcome"]["result"], "already_current",
            "{jobs:?}"
        );
        if notify_unchanged {
            slack.wait_for(2, Duration::from_secs(10)).await;
        } else {
            // Messages go out right after the job is journaled; give one a moment.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(
                slack.requests().len(),
                1,
                "no message for a push that changed nothing"
            );
        }
        hoist.stop().await;
    }
}

/// HOIST_HISTORY_RETENTION prunes the journal at start: an old finished job
/// is gone from the history, a recent one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_jobs_are_pruned_from_the_history_at_start() {
    use hoist::event::{Digest, ImageEvent, ImageRef, SourceKind};
    use hoist::journal::{Acceptance, Journal};
    let state = tempfile::tempdir().unwrap();
    let journal = Journal::open(state.path()).unwrap();
    let mut ids = Vec::new();
    for (n, c) in ["old", "recent"].iter().zip(['a', 'b']) {
        let event = ImageEvent {
            reference: ImageRef::parse("127.0.0.1:5999/team/pruned:1").unwrap(),
            digest: Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap(),
            source: SourceKind::Ci,
            delivery_id: Some(format!("retention-{n}")),
            actor: None,
            received_at: chrono::Utc::now(),
        };
        let Acceptance::New(id) = journal.accept(&event).await.unwrap() else {
            panic!("a new job")
        };
        journal
            .finish(
                id,
                "done",
                Some(json!({ "image": event.reference.to_string(), "which": n })),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    drop(journal);
    let db = rusqlite::Connection::open(state.path().join("hoist.db")).unwrap();
    db.execute(
        "UPDATE jobs SET finished_at = '2020-01-01T00:00:00+00:00' WHERE delivery_id = 'retention-old'",
        [],
    )
    .unwrap();
    drop(db);

    let hoist = Hoist::start_in(state, &[("HOIST_HISTORY_RETENTION", "30d")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history = hoist.get_json("/v1/history").await;
        let which: Vec<&str> = history["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["which"].as_str())
            .collect();
        if which == ["recent"] {
            break;
        }
        assert!(Instant::now() < deadline, "the old job was not pruned: {history}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hoist.stop().await;
}
