//! Least privilege: hoist through an allow-list proxy (HAProxy with
//! compose/socket-proxy.cfg, the file the compose variant ships) that permits
//! only the Engine API calls the README lists, and denies the rest: a push
//! still redeploys, and what is not on the list is refused.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    build_and_push, free_port, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry,
};
use crate::operator::run_labelled;

/// HAProxy in the foreground with the shipped configuration, bound to 127.0.0.1:`port`.
struct SocketProxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl SocketProxy {
    fn start(port: u16) -> SocketProxy {
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/compose/socket-proxy.cfg"))
                .unwrap();
        assert!(shipped.contains("    bind :2375\n"));
        let config = shipped.replace("    bind :2375\n", &format!("    bind 127.0.0.1:{port}\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy must be installed (Debian package haproxy; scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SocketProxy { child, _dir: dir }
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_redeploys_through_an_allow_list_socket_proxy() {
    crate::harness::init_logs();
    let port = free_port();
    let _proxy = SocketProxy::start(port);
    let engine = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // The proxy itself: what hoist needs passes, the rest is denied.
    let status = |method: reqwest::Method, path: &str| {
        let request = http.request(method, format!("{engine}{path}"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(reqwest::Method::GET, "/v1.41/_ping").await, 200);
    assert_eq!(status(reqwest::Method::GET, "/v1.41/containers/json").await, 200);
    for (method, path) in [
        (reqwest::Method::GET, "/v1.41/volumes"),
        (reqwest::Method::GET, "/v1.41/secrets"),
        (reqwest::Method::POST, "/v1.41/containers/x/exec"),
        (reqwest::Method::GET, "/v1.41/containers/x/archive"),
        (reqwest::Method::POST, "/v1.41/build"),
        (reqwest::Method::POST, "/v1.41/containers/x/kill"),
        (reqwest::Method::DELETE, "/v1.41/networks/x"),
        (reqwest::Method::POST, "/v1.41/swarm/leave"),
    ] {
        assert_eq!(
            status(method.clone(), path).await,
            403,
            "{method} {path} must be denied"
        );
    }

    let docker_host = format!("tcp://127.0.0.1:{port}");
    let hoist = Hoist::start(&[("DOCKER_HOST", &docker_host)]).await;
    let health = hoist.get_json("/healthz").await;
    assert_eq!(health["engine"], "ok", "{health}");
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.0", registry.repo(&unique("proxied")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Healthy);
    let name = unique("proxied");
    run_labelled(&mut clean, &name, &tag, &["-e", "KEEP=me"]);
    hoist.wait_for_target(&name).await;
    let v2 = build_and_push(&tag, "v2", Behaviour::Healthy);
    let job = hoist.wait_for_job(&tag, &v2, Duration::from_secs(90)).await;
    assert_eq!(job["targets"][0]["outcome"]["result"], "updated", "{job}");
    let after = inspect(&name);
    assert_eq!(after["Image"], image_id(&tag).as_str());
    assert_eq!(after["State"]["Running"], true);
    assert!(after["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "KEEP=me"));

    // A rollback needs nothing more from the engine.
    let response = hoist
        .http
        .post(hoist.url("/v1/rollback"))
        .bearer_auth(crate::harness::TOKEN)
        .json(&serde_json::json!({ "target": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{}",
        response.text().await.unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let jobs = crate::operator::jobs_of(&hoist, &tag).await;
        if jobs.len() >= 2 {
            assert_eq!(jobs[0]["source"], "rollback");
            assert_eq!(jobs[0]["targets"][0]["outcome"]["result"], "updated", "{jobs:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the rollback did not finish: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hoist.stop().await;
}
