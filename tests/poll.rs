//! Polling on the real engine: a registry that wants a login and sends no
//! notifications; a push is found by polling and redeploys the containers.

use std::time::{Duration, Instant};

use crate::harness::{
    build_image, docker, inspect, unique, Behaviour, Cleanup, DockerConfig, Hoist, Registry,
};

const JOB_WAIT: Duration = Duration::from_secs(90);

/// The value of the `hoist_polls_total` series for `registry` and `outcome` (0 when absent).
async fn polls(hoist: &Hoist, registry: &str, outcome: &str) -> u64 {
    let metrics = hoist
        .http
        .get(hoist.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("hoist_polls_total{"))
        .filter(|l| {
            l.contains(&format!("registry=\"{registry}\"")) && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_redeploys_from_a_registry_with_a_login_and_no_notifications() {
    let login = DockerConfig::new();
    // No notifications: the registry tells hoist nothing.
    let registry = Registry::start_with_login(None, "poller", "pa+ss/wo=rd");
    login.login(&registry.host, "poller", "pa+ss/wo=rd");
    let tag = format!("{}:1", registry.repo(&format!("team/{}", unique("polled"))));
    let (web, worker) = (unique("web"), unique("worker"));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    clean.container(&web);
    clean.container(&worker);
    build_image(&tag, "v1", Behaviour::Serve);
    login.push(&tag);
    // Two containers of one tag, polled by their labels (the shortest interval
    // wins). Not HOIST_POLL_INTERVAL: the engine is shared, and a global
    // interval would have this hoist poll (and update) other tests' containers.
    for (name, every) in [(&web, "hoist.poll=1h"), (&worker, "hoist.poll=1s")] {
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "hoist.enable=true",
            "--label",
            every,
            &tag,
        ]);
    }
    let config_file = login.file().display().to_string();
    let hoist = Hoist::start(&[("HOIST_DOCKER_CONFIG", config_file.as_str())]).await;
    hoist.wait_for_target(&web).await;
    hoist.wait_for_target(&worker).await;

    // The first poll records the digest the containers run: no job.
    let deadline = Instant::now() + Duration::from_secs(30);
    while polls(&hoist, &registry.host, "unchanged").await < 2 {
        assert!(Instant::now() < deadline, "no poll recorded the running digest");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(hoist.get_json("/v1/history").await["jobs"], serde_json::json!([]));
    // (Other tests' hoists, without this login, may poll these containers too:
    // they are refused, and count as `unauthorized`, so that count is not checked.)

    build_image(&tag, "v2", Behaviour::Serve);
    let digest = login.push(&tag);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    assert_eq!(job["source"], "poll", "{job}");
    for name in [&web, &worker] {
        assert_eq!(
            crate::container::outcome(&job, name)["result"],
            "updated",
            "{job}"
        );
        assert_eq!(inspect(name)["State"]["Running"], true);
    }
    assert_eq!(
        polls(&hoist, &registry.host, "changed").await,
        1,
        "one change, one job, for two containers"
    );
    // Later polls find the containers current: still one job.
    let seen = polls(&hoist, &registry.host, "unchanged").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while polls(&hoist, &registry.host, "unchanged").await < seen + 2 {
        assert!(Instant::now() < deadline, "polling stopped after the update");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs = hoist.get_json("/v1/history").await["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(jobs, 1);
    hoist.stop().await;
}
