//! The compose example, for real: hoist packaged FROM scratch runs as the
//! sidecar in compose/docker-compose.yml, and a push to the registry updates
//! the example app that compose started, which compose still owns afterwards.

use std::time::{Duration, Instant};

use crate::harness::compose::{self, Project};
use crate::harness::{
    build_and_push, build_image, docker, free_port, image_id, inspect, push, unique, Behaviour, Cleanup,
    Registry, TOKEN,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_sidecar_updates_the_compose_app() {
    crate::harness::init_logs();
    let mut clean = Cleanup::default();
    let hoist_image = compose::hoist_image(&mut clean);

    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let tag = format!("{}:1.4", registry.repo(&unique("composed")));
    clean.image(&tag);
    // Built now, pushed once the sidecar listens: a notification sent before
    // would be retried by the registry, and could arrive late.
    build_image(&tag, "v1", Behaviour::Serve);

    let project = Project::new(
        "docker-compose.yml",
        vec![
            ("HOIST_IMAGE", hoist_image.clone()),
            ("HOIST_PUBLISH", format!("127.0.0.1:{port}")),
            ("HOIST_WEBHOOK_TOKEN", TOKEN.to_string()),
            ("APP_IMAGE", tag.clone()),
            ("RUST_LOG", "hoist=debug".to_string()),
        ],
    );
    project.run(&["up", "-d"]);
    let app = project.container("app");
    let hoist_container = project.container("hoist");
    let app_before = inspect(&app);

    // Wait until the sidecar answers and lists the app as a target.
    let http = reqwest::Client::new();
    compose::wait_for_target(&http, port, &hoist_container, |t| t["compose_service"] == "app").await;

    let v1 = push(&tag);
    compose::wait_for_job(&http, port, &v1, &hoist_container).await;
    build_and_push(&tag, "v2", Behaviour::Serve);
    let deadline = Instant::now() + Duration::from_secs(60);
    let app_after = loop {
        // While the new one proves itself, the parked old one is listed too.
        let current = project.container("app");
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
    project.run(&["up", "-d"]);
    let app_now = project.container("app");
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
