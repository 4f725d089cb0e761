//! Base images on the real engine and the real Distribution registry: a base
//! pushed (or polled) with a new digest asks the rebuild hook (a loopback
//! recorder that checks the exact request) once per app image; the running
//! containers are not touched.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::recorder::{Recorded, Recorder};
use crate::harness::{
    build_image, docker, free_port, inspect, push, unique, Behaviour, Cleanup, DockerConfig, Hoist, Registry,
};

const CALL_WAIT: Duration = Duration::from_secs(60);

/// Builds `tag` FROM `base` with the README's two lines (ARG, LABEL) recording the base.
fn build_on(tag: &str, base: &str, base_digest: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {base}\n\
             ARG BASE_DIGEST\n\
             LABEL org.opencontainers.image.base.name=\"{base}\" org.opencontainers.image.base.digest=\"$BASE_DIGEST\"\n"
        ),
    )
    .unwrap();
    let output = Command::new("docker")
        .args(["build", "-q", "--build-arg"])
        .arg(format!("BASE_DIGEST={base_digest}"))
        .args(["-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The entry of `/v1/targets` named `name`.
async fn target(hoist: &Hoist, name: &str) -> Value {
    let targets = hoist.get_json("/v1/targets").await;
    targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not a target: {targets}"))
}

/// The digest hoist's journal last saw of `base` (an image that names its base without one).
fn seen_digest(state: &Path, base: &str) -> Option<String> {
    let db = rusqlite::Connection::open(state.join("hoist.db")).ok()?;
    db.query_row("SELECT digest FROM base_digests WHERE base = ?1", [base], |r| {
        r.get(0)
    })
    .ok()
}

async fn wait_for_seen(state: &Path, base: &str, digest: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen_digest(state, base).as_deref() != Some(digest) {
        assert!(
            Instant::now() < deadline,
            "hoist never saw {base}@{digest} (saw {:?})",
            seen_digest(state, base)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts the exact request: method, path, content type, token, body.
fn assert_call(request: &Recorded, path: &str, token: Option<&str>, body: &Value) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, path);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("authorization"),
        token.map(|t| format!("Bearer {t}")).as_deref()
    );
    assert_eq!(
        &request.json(),
        body,
        "{}",
        String::from_utf8_lossy(&request.body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_base_asks_for_one_rebuild_retried_while_the_hook_is_down_and_not_again_after_a_restart() {
    // The hook is down for the first call (503), then takes it.
    let hook = Recorder::statuses(&[503]).await;
    let slack = Recorder::always(200).await;
    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let base = format!("{}:1", registry.repo(&format!("base/{}", unique("img"))));
    let app = format!("{}:1", registry.repo(&format!("app/{}", unique("web"))));
    let name = unique("web");
    let mut clean = Cleanup::default();
    clean.container(&name);
    clean.image(&app);
    clean.image(&base);
    build_image(&base, "b1", Behaviour::Serve);
    let b1 = push(&base);
    // The README's way to learn the digest to build on.
    let readme_digest = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker image inspect --format '{{{{index .RepoDigests 0}}}}' {base} | cut -d@ -f2"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&readme_digest.stdout).trim(), b1);
    build_on(&app, &base, &b1);
    docker(&["run", "-d", "--name", &name, "--label", "hoist.enable=true", &app]);
    let container_id = inspect(&name)["Id"].clone();

    let state = tempfile::tempdir().unwrap();
    let (listen, state_dir, hook_url, slack_url) = (
        format!("127.0.0.1:{port}"),
        state.path().display().to_string(),
        hook.url("/rebuild?project=web"),
        slack.url("/slack"),
    );
    let vars = [
        ("HOIST_LISTEN", listen.as_str()),
        ("HOIST_STATE_DIR", state_dir.as_str()),
        ("HOIST_REBUILD_HOOK_URL", hook_url.as_str()),
        ("HOIST_REBUILD_HOOK_TOKEN", "rebuild-s3cret"),
        ("HOIST_SLACK_WEBHOOK_URL", slack_url.as_str()),
    ];
    let hoist = Hoist::start(&vars).await;
    hoist.wait_for_target(&name).await;
    // The image records its base: shown in /v1/targets.
    assert_eq!(
        target(&hoist, &name).await["base"],
        json!({ "name": base, "digest": b1, "from": "image" })
    );

    // The same base digest pushed again asks nothing; then a new one. The
    // registry notifies in push order and hoist compares in that order, so
    // once the second is answered the first was compared before it.
    push(&base);
    build_image(&base, "b2", Behaviour::Serve);
    let b2 = push(&base);
    assert_ne!(b1, b2);
    let calls = hook.wait_for(2, CALL_WAIT).await;
    let body = json!({
        "image": app,
        "targets": [name],
        "base": base,
        "old_base_digest": b1,
        "new_base_digest": b2,
    });
    for call in &calls {
        assert_call(call, "/rebuild?project=web", Some("rebuild-s3cret"), &body);
    }
    eprintln!(
        "hook body from this run: {}",
        String::from_utf8_lossy(&calls[1].body)
    );
    // Called again after a backoff, not at once.
    assert!(
        calls[1].at - calls[0].at >= Duration::from_millis(400),
        "{:?}",
        calls[1].at - calls[0].at
    );
    let message = slack.wait_for(1, CALL_WAIT).await;
    let text = String::from_utf8_lossy(&message[0].body);
    let said =
        format!("base image moved: {app} is built on {base} at {b1}, which is now {b2}; rebuild requested");
    assert!(text.contains(&said), "{text}");
    assert!(!text.contains("rebuild-s3cret"));

    // Restarted on the same journal: the same digest pushed again asks
    // nothing; the next digest asks once (and shows the first was compared).
    hoist.stop().await;
    let hoist = Hoist::start(&vars).await;
    hoist.wait_for_target(&name).await;
    push(&base);
    build_image(&base, "b3", Behaviour::Serve);
    let b3 = push(&base);
    let calls = hook.wait_for(3, CALL_WAIT).await;
    assert_call(
        &calls[2],
        "/rebuild?project=web",
        Some("rebuild-s3cret"),
        &json!({
            "image": app,
            "targets": [name],
            "base": base,
            "old_base_digest": b1,
            "new_base_digest": b3,
        }),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.requests().len(), 3, "{:?}", hook.requests());

    // The container was not touched: same container, still running, no job.
    assert_eq!(inspect(&name)["Id"], container_id);
    assert_eq!(inspect(&name)["State"]["Running"], true);
    assert_eq!(hoist.get_json("/v1/history").await["jobs"], json!([]));
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_finds_a_moved_base_in_a_silent_registry_for_the_container_that_names_it() {
    let hook = Recorder::always(200).await;
    let login = DockerConfig::new();
    // No notifications: only polling can tell.
    let registry = Registry::start_with_login(None, "based", "pa55word");
    login.login(&registry.host, "based", "pa55word");
    let base = format!("{}:1", registry.repo(&format!("base/{}", unique("img"))));
    let app = format!("{}:1", registry.repo(&format!("app/{}", unique("plain"))));
    let (named, plain) = (unique("named"), unique("plain"));
    let mut clean = Cleanup::default();
    clean.container(&named);
    clean.container(&plain);
    clean.image(&app);
    clean.image(&base);
    build_image(&base, "b1", Behaviour::Serve);
    let b1 = login.push(&base);
    // An image that records no base: left out unless the container names one.
    build_image(&app, "a1", Behaviour::Serve);
    let own_hook = format!("hoist.rebuild-hook={}", hook.url("/own"));
    let names_base = format!("hoist.base={base}");
    docker(&[
        "run",
        "-d",
        "--name",
        &named,
        "--label",
        "hoist.enable=true",
        "--label",
        &names_base,
        "--label",
        &own_hook,
        &app,
    ]);
    docker(&[
        "run",
        "-d",
        "--name",
        &plain,
        "--label",
        "hoist.enable=true",
        &app,
    ]);
    let ids = [inspect(&named)["Id"].clone(), inspect(&plain)["Id"].clone()];

    let config_file = login.file().display().to_string();
    let hoist = Hoist::start(&[
        ("HOIST_DOCKER_CONFIG", config_file.as_str()),
        ("HOIST_BASE_POLL_INTERVAL", "1s"),
    ])
    .await;
    hoist.wait_for_target(&named).await;
    hoist.wait_for_target(&plain).await;
    assert_eq!(
        target(&hoist, &named).await["base"],
        json!({ "name": base, "digest": null, "from": "label" })
    );
    assert_eq!(target(&hoist, &plain).await["base"], Value::Null);
    // The first digest seen of the base is what the next is compared with.
    wait_for_seen(hoist.state.path(), &base, &b1).await;

    build_image(&base, "b2", Behaviour::Serve);
    let b2 = login.push(&base);
    let calls = hook.wait_for(1, CALL_WAIT).await;
    assert_call(
        &calls[0],
        "/own",
        None,
        &json!({
            "image": app,
            "targets": [named],
            "base": base,
            "old_base_digest": b1,
            "new_base_digest": b2,
        }),
    );
    // Later polls find the same digest: nothing more.
    wait_for_seen(hoist.state.path(), &base, &b2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.requests().len(), 1, "{:?}", hook.requests());
    assert_eq!(
        [inspect(&named)["Id"].clone(), inspect(&plain)["Id"].clone()],
        ids
    );
    let metrics = hoist
        .http
        .get(hoist.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "hoist_rebuild_calls_total{outcome=\"ok\"}",
        "hoist_base_digests_total{outcome=\"requested\"}",
        "hoist_base_digests_total{outcome=\"unchanged\"}",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    hoist.stop().await;
}
