//! Least privilege: hoist through an allow-list proxy (HAProxy with
//! compose/socket-proxy.cfg, the file the compose variant ships) that permits
//! only the Engine API calls the README lists, and denies the rest: a push
//! still redeploys, and what is not on the list is refused. Once with the
//! configuration run by a host haproxy, once with compose/socket-proxy.yml
//! itself brought up by docker-compose.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::compose::{self, Project};
use crate::harness::{
    build_and_push, build_image, docker, free_port, image_id, inspect, push, unique, Behaviour, Cleanup,
    Hoist, Registry, TOKEN,
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
    assert_runs_with_its_env(&after, &tag);

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

/// `wget` in a throwaway container of `image` (busybox) on `network`: its
/// output and error output, and whether it succeeded.
fn wget_from(clean: &mut Cleanup, network: &str, image: &str, args: &[&str]) -> (bool, String) {
    let name = unique("probe");
    clean.container(&name);
    let output = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--name",
            &name,
            "--network",
            network,
            image,
            "wget",
            "-q",
            "-O",
            "-",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// compose/socket-proxy.yml as shipped, brought up by docker-compose: the
/// proxy is a stand-in for haproxy:2.6-alpine built FROM scratch out of
/// Debian's haproxy (scripts/socket-proxy-image.sh; same version, paths,
/// command and user as the official image), hoist is the packaged test build.
/// hoist has no socket, the proxy is reachable only on the internal network
/// and denies what is off the list there, and a push still redeploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_socket_proxy_variant_redeploys_and_denies_the_rest() {
    crate::harness::init_logs();
    let mut clean = Cleanup::default();
    let hoist_image = compose::hoist_image(&mut clean);
    let proxy_image = compose::socket_proxy_image(&mut clean);
    // As the official image: it runs as haproxy, so the compose file's
    // `user: root` is what lets it open the socket (root:docker, 0660).
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Config.User}}", &proxy_image]),
        "haproxy"
    );

    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let tag = format!("{}:1.0", registry.repo(&unique("proxycomposed")));
    clean.image(&tag);
    // Pushed once hoist listens (as in the sidecar test): a notification sent
    // before would be retried by the registry, and could arrive late.
    build_image(&tag, "v1", Behaviour::Healthy);
    let name = unique("proxycomposed");
    run_labelled(&mut clean, &name, &tag, &["-e", "KEEP=me"]);
    let before = inspect(&name);

    let project = Project::new(
        "socket-proxy.yml",
        vec![
            ("SOCKET_PROXY_IMAGE", proxy_image.clone()),
            ("HOIST_IMAGE", hoist_image.clone()),
            ("HOIST_PUBLISH", format!("127.0.0.1:{port}")),
            ("HOIST_WEBHOOK_TOKEN", TOKEN.to_string()),
            ("RUST_LOG", "hoist=debug".to_string()),
        ],
    );
    project.run(&["up", "-d"]);
    let hoist_container = project.container("hoist");
    let proxy_container = project.container("socket-proxy");
    let engine_network = project.network("engine");

    // Only the proxy has the socket, read-only; it publishes nothing and is
    // on the internal network alone.
    let hoist_inspect = inspect(&hoist_container);
    assert!(
        hoist_inspect["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["Destination"] != "/var/run/docker.sock"),
        "{}",
        hoist_inspect["Mounts"]
    );
    let proxy = inspect(&proxy_container);
    assert_eq!(proxy["Config"]["User"], "root");
    assert!(
        proxy["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Destination"] == "/var/run/docker.sock" && m["RW"] == false),
        "{}",
        proxy["Mounts"]
    );
    assert_eq!(proxy["NetworkSettings"]["Ports"], serde_json::json!({}));
    let proxy_networks: Vec<&String> = proxy["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(proxy_networks, [&engine_network]);
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Internal}}", &engine_network]),
        "true"
    );

    // hoist finds the labelled container through the proxy.
    let http = reqwest::Client::new();
    compose::wait_for_target(&http, port, &hoist_container, |t| t["name"] == name.as_str()).await;

    // On the internal network, the proxy answers what is on the list and
    // refuses the rest with 403 (the engine would answer exec on hoist's own
    // container, and list volumes).
    let proxy_url = "http://socket-proxy:2375/v1.41";
    let (ok, text) = wget_from(
        &mut clean,
        &engine_network,
        &tag,
        &[&format!("{proxy_url}/_ping")],
    );
    assert!(ok && text == "OK", "{text}");
    for (what, args) in [
        (
            "exec",
            vec![
                "--post-data".to_string(),
                r#"{"Cmd":["id"]}"#.to_string(),
                "--header".to_string(),
                "Content-Type: application/json".to_string(),
                format!("{proxy_url}/containers/{hoist_container}/exec"),
            ],
        ),
        ("volumes", vec![format!("{proxy_url}/volumes")]),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = wget_from(&mut clean, &engine_network, &tag, &args);
        assert!(!ok && text.contains("403 Forbidden"), "{what}: {text}");
    }

    // A push redeploys, through the proxy.
    let v1 = push(&tag);
    compose::wait_for_job(&http, port, &v1, &hoist_container).await;
    let v2 = build_and_push(&tag, "v2", Behaviour::Healthy);
    let job = compose::wait_for_job(&http, port, &v2, &hoist_container).await;
    assert_eq!(job["image"], tag.as_str(), "{job}");
    assert_eq!(job["targets"].as_array().map(Vec::len), Some(1), "{job}");
    assert_eq!(job["targets"][0]["outcome"]["result"], "updated", "{job}");
    let after = inspect(&name);
    assert_ne!(after["Id"], before["Id"]);
    assert_ne!(after["Image"], before["Image"]);
    assert_runs_with_its_env(&after, &tag);
    drop(project);
    drop(registry);
}

/// The recreated container (its inspect) runs `tag`'s image and kept its env.
fn assert_runs_with_its_env(after: &serde_json::Value, tag: &str) {
    assert_eq!(after["Image"], image_id(tag).as_str());
    assert_eq!(after["State"]["Running"], true);
    assert!(after["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "KEEP=me"));
}
