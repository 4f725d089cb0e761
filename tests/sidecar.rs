//! The compose example, for real: hoist packaged FROM scratch runs as the
//! sidecar in compose/docker-compose.yml, and a push to the registry updates
//! the example app that compose started, which compose still owns afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    build_and_push, build_image, docker, free_port, image_id, inspect, push, unique, Behaviour, Cleanup,
    Registry, TOKEN,
};

fn compose(project: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/compose/docker-compose.yml");
    let output = Command::new("docker-compose")
        .args(["-f", file, "-p", project])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("docker-compose must be installed");
    assert!(
        output.status.success(),
        "docker-compose {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Removes the compose project (containers, network, volume) on drop.
struct Project {
    name: String,
    env: Vec<(&'static str, String)>,
}

impl Drop for Project {
    fn drop(&mut self) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/compose/docker-compose.yml");
        let down = Command::new("docker-compose")
            .args(["-f", file, "-p", &self.name, "down", "-v", "-t", "1"])
            .envs(env)
            .output();
        if !down.is_ok_and(|o| o.status.success()) {
            eprintln!("docker-compose down failed for project {}", self.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_sidecar_updates_the_compose_app() {
    crate::harness::init_logs();
    let mut clean = Cleanup::default();
    let hoist_image = format!("{}:local", unique("hoist-image"));
    clean.image(&hoist_image);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package-image.sh");
    let packaged = Command::new("bash")
        .args([script, env!("CARGO_BIN_EXE_hoist"), &hoist_image])
        .output()
        .unwrap();
    assert!(
        packaged.status.success(),
        "packaging failed: {}",
        String::from_utf8_lossy(&packaged.stderr)
    );

    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let tag = format!("{}:1.4", registry.repo(&unique("composed")));
    clean.image(&tag);
    // Built now, pushed once the sidecar listens: a notification sent before
    // would be retried by the registry, and could arrive late.
    build_image(&tag, "v1", Behaviour::Serve);

    let project = Project {
        name: unique("proj").replace('-', ""),
        env: vec![
            ("HOIST_IMAGE", hoist_image.clone()),
            ("HOIST_PUBLISH", format!("127.0.0.1:{port}")),
            ("HOIST_WEBHOOK_TOKEN", TOKEN.to_string()),
            ("APP_IMAGE", tag.clone()),
            ("RUST_LOG", "hoist=debug".to_string()),
        ],
    };
    let env: Vec<(&str, &str)> = project.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    compose(&project.name, &env, &["up", "-d"]);
    let app = compose(&project.name, &env, &["ps", "-q", "app"]);
    let hoist_container = compose(&project.name, &env, &["ps", "-q", "hoist"]);
    let app_before = inspect(&app);

    // Wait until the sidecar answers and lists the app as a target.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets = http
            .get(format!("http://127.0.0.1:{port}/v1/targets"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if let Ok(response) = targets {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if body["targets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["compose_service"] == "app"))
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "sidecar not ready; logs: {}",
            docker(&["logs", &hoist_container])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let v1 = push(&tag);
    wait_for_history(&http, port, &v1, &hoist_container).await;
    build_and_push(&tag, "v2", Behaviour::Serve);
    let deadline = Instant::now() + Duration::from_secs(60);
    let app_after = loop {
        // While the new one proves itself, the parked old one is listed too.
        let current = compose(&project.name, &env, &["ps", "-q", "app"]);
        if current.lines().count() == 1 && current != app && inspect(&current)["State"]["Running"] == true {
            break inspect(&current);
        }
        assert!(
            Instant::now() < deadline,
            "app not updated; hoist logs: {}",
            docker(&["logs", &hoist_container])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(app_after["Image"], image_id(&tag));
    assert_eq!(app_after["Name"], app_before["Name"]);
    for label in [
        "com.docker.compose.project",
        "com.docker.compose.service",
        "com.docker.compose.config-hash",
    ] {
        assert_eq!(
            app_after["Config"]["Labels"][label], app_before["Config"]["Labels"][label],
            "{label}"
        );
    }
    // compose still owns the app: a later `up` keeps it on the new image. (Compose
    // v1 hashes the image ID into config-hash, so it recreates the container once
    // more, on the same image; compose v2 reads com.docker.compose.image, which
    // hoist keeps current.)
    compose(&project.name, &env, &["up", "-d"]);
    let app_now = compose(&project.name, &env, &["ps", "-q", "app"]);
    assert_eq!(app_now.lines().count(), 1);
    assert_eq!(inspect(&app_now)["Image"], image_id(&tag));
    let health = docker(&[
        "inspect",
        "--format",
        "{{.State.Health.Status}}",
        &hoist_container,
    ]);
    assert!(
        health == "healthy" || health == "starting",
        "sidecar health: {health}"
    );
    drop(project);
    drop(registry);
}

/// Waits until the sidecar has finished a job for `digest`.
async fn wait_for_history(http: &reqwest::Client, port: u16, digest: &str, hoist_container: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/v1/history"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            let history: serde_json::Value = response.json().await.unwrap_or_default();
            if history["jobs"]
                .as_array()
                .is_some_and(|jobs| jobs.iter().any(|j| j["new_digest"] == digest))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no job for {digest}; logs: {}",
            docker(&["logs", hoist_container])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
