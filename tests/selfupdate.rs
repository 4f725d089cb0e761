//! hoist labelled for updates itself: packaged FROM scratch, running as a
//! container that publishes its port, with its journal on a volume. A push
//! of a good hoist image leaves the new hoist running under the name with
//! the same volume (and its journal carries on); a push of an image that
//! exits leaves the old hoist running again under its name.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    docker, docker_quiet, free_port, image_id, inspect, push, unique, Cleanup, Registry, TOKEN,
};

/// Builds `tag` FROM `base` with more Dockerfile lines.
fn derive(base: &str, tag: &str, lines: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\n{lines}\n")).unwrap();
    let output = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn history(http: &reqwest::Client, port: u16) -> Option<Value> {
    http.get(format!("http://127.0.0.1:{port}/v1/history"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until the hoist answering on `port` has a finished job for `digest`.
async fn wait_for_job(http: &reqwest::Client, port: u16, digest: &str, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(history) = history(http, port).await {
            if let Some(job) = history["jobs"]
                .as_array()
                .and_then(|jobs| jobs.iter().find(|j| j["new_digest"] == digest))
            {
                return job.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no job for {digest}; state {}; logs:\n{}",
            docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Names}} {{.Image}} {{.Status}}"
            ]),
            docker(&["logs", "--tail", "60", name])
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn target_outcome(job: &Value, name: &str) -> Value {
    job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {job}"))["outcome"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoist_updates_itself_and_survives_a_bad_image_of_itself() {
    crate::harness::init_logs();
    let mut clean = Cleanup::default();
    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let packaged = format!("{}:local", unique("hoist-self-base"));
    clean.image(&packaged);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package-image.sh");
    let output = Command::new("bash")
        .args([script, env!("CARGO_BIN_EXE_hoist"), &packaged])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "packaging failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tag = format!("{}:1", registry.repo(&unique("hoist")));
    clean.image(&tag);
    derive(&packaged, &tag, "LABEL hoist.test.version=v1");
    let (name, volume) = (unique("hoist-self"), unique("hoist-state"));
    clean.container(&name);
    clean.container(&format!("{name}-hoist-relay"));
    clean.volume(&volume);
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &format!("{volume}:/var/lib/hoist"),
        "-e",
        &format!("HOIST_WEBHOOK_TOKEN={TOKEN}"),
        "-e",
        "HOIST_HEALTH_DEADLINE=60s",
        "-e",
        "HOIST_STOP_TIMEOUT=5s",
        "-e",
        "RUST_LOG=hoist=debug",
        &tag,
    ]);
    let http = reqwest::Client::new();
    // Ready, and the first push (the image it already runs) is a job it finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    while history(&http, port).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "hoist did not start: {}",
            docker(&["logs", &name])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v1 = push(&tag);
    let job = wait_for_job(&http, port, &v1, &name).await;
    assert_eq!(target_outcome(&job, &name)["result"], "already_current", "{job}");

    // A good new hoist: it runs under the name, with the same volume, and records the job.
    derive(&packaged, &tag, "LABEL hoist.test.version=v2");
    let v2_id = image_id(&tag);
    let clock = Instant::now();
    let v2 = push(&tag);
    let job = wait_for_job(&http, port, &v2, &name).await;
    eprintln!(
        "self-update: push to the new hoist's record of it: {:?}",
        clock.elapsed()
    );
    assert_eq!(target_outcome(&job, &name)["result"], "updated", "{job}");
    let now = inspect(&name);
    assert_eq!(now["Image"], v2_id, "the new hoist runs under the name");
    assert_eq!(now["State"]["Running"], true);
    let volumes: Vec<&str> = now["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    assert!(
        volumes.contains(&volume.as_str()),
        "the same state volume: {volumes:?}"
    );
    let history_now = history(&http, port).await.unwrap();
    assert!(
        history_now["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["new_digest"] == v1),
        "the journal carried on: the earlier job is still in the history"
    );

    // A bad new hoist (it exits at once): the old one runs again under the name.
    derive(
        &packaged,
        &tag,
        "LABEL hoist.test.version=v3\nCMD [\"no-such-command\"]",
    );
    let clock = Instant::now();
    let v3 = push(&tag);
    let job = wait_for_job(&http, port, &v3, &name).await;
    eprintln!(
        "self-update, bad image: push to the old hoist's record of it: {:?}",
        clock.elapsed()
    );
    assert_eq!(target_outcome(&job, &name)["result"], "rolled_back", "{job}");
    let now = inspect(&name);
    assert_eq!(
        now["Image"], v2_id,
        "the hoist from before the push is back under the name"
    );
    assert_eq!(now["State"]["Running"], true);
    assert!(
        !docker_quiet(&["inspect", &format!("{name}-hoist-old")]),
        "nothing left parked"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while docker_quiet(&["inspect", &format!("{name}-hoist-relay")]) {
        assert!(Instant::now() < deadline, "the relay removed itself");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(registry);
}
