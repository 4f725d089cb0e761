//! Swarm services on a real single-node swarm, and fan-out between two hoists.
//!
//! `docker swarm init` and `leave` change the whole engine, which other test
//! binaries share, so every test here holds a [`SwarmLease`]: a process-wide
//! async mutex plus a lock directory in the temp dir (for other test binaries
//! on the same engine). The lease initialises the swarm only when it is not
//! active, and leaves it on drop only when it initialised it. A failed
//! `docker swarm init` fails the test with docker's own words; nothing is
//! skipped. Standalone containers keep working on a swarm manager, so the
//! container tests may run meanwhile.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::container::outcome;
use crate::harness::{
    build_and_push, docker, docker_quiet, free_port, unique, Behaviour, Cleanup, Hoist, Registry, TOKEN,
};

const JOB_WAIT: Duration = Duration::from_secs(180);

/// Serialises the swarm tests of this process.
static LOCAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The right to use the engine's swarm for one test, or (from
/// [`SwarmLease::without_swarm`]) to run while no test inits or leaves one.
pub(crate) struct SwarmLease {
    _local: tokio::sync::MutexGuard<'static, ()>,
    lock_dir: PathBuf,
    initialised: bool,
}

impl SwarmLease {
    async fn take() -> SwarmLease {
        let mut lease = SwarmLease::without_swarm().await;
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        lease.initialised = state != "active";
        if lease.initialised {
            let output = Command::new("docker")
                .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
                .output()
                .expect("the docker CLI must be installed");
            assert!(
                output.status.success(),
                "docker swarm init --advertise-addr 127.0.0.1 failed (swarm state was {state:?}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        lease
    }

    /// The lease without a swarm: for a test that `docker swarm init` or
    /// `leave` would disturb. They rebuild the engine's networking, and its
    /// DNS on user networks can stop answering for seconds meanwhile (seen by
    /// the start-first test's prober).
    pub(crate) async fn without_swarm() -> SwarmLease {
        let local = LOCAL.lock().await;
        let lock_dir = std::env::temp_dir().join("hoist-swarm-tests.lock");
        let deadline = Instant::now() + Duration::from_secs(20 * 60);
        loop {
            match std::fs::create_dir(&lock_dir) {
                Ok(()) => {
                    std::fs::write(lock_dir.join("pid"), std::process::id().to_string()).unwrap();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A holder that died leaves its directory: take it over.
                    let holder = std::fs::read_to_string(lock_dir.join("pid")).unwrap_or_default();
                    let alive = holder
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                    if !holder.is_empty() && !alive {
                        std::fs::remove_dir_all(&lock_dir).ok();
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} has been held by process {holder} for 20 minutes",
                        lock_dir.display()
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("cannot create {}: {e}", lock_dir.display()),
            }
        }
        SwarmLease {
            _local: local,
            lock_dir,
            initialised: false,
        }
    }
}

impl Drop for SwarmLease {
    fn drop(&mut self) {
        if self.initialised {
            docker_quiet(&["swarm", "leave", "--force"]);
        }
        std::fs::remove_dir_all(&self.lock_dir).ok();
    }
}

/// The engine, seen through a loopback proxy that says this node is a manager
/// but not the leader: `GET /nodes/{id}` answers with `ManagerStatus.Leader`
/// false; everything else goes to the engine's socket untouched. A hoist
/// pointed at it (`DOCKER_HOST=tcp://...`) is a follower manager's hoist.
struct FollowerEngine {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FollowerEngine {
    async fn start() -> FollowerEngine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Err(e) = FollowerEngine::serve(client).await {
                        eprintln!("follower engine proxy: {e}");
                    }
                });
            }
        });
        FollowerEngine { addr, task }
    }

    fn docker_host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    async fn serve(mut client: tokio::net::TcpStream) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut request_line = head.lines().next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default();
        let path = request_line.next().unwrap_or_default();
        let node = path
            .split('?')
            .next()
            .unwrap_or_default()
            .split_once("/nodes/")
            .map(|(_, id)| id.to_string())
            .filter(|id| !id.is_empty() && !id.contains('/'));
        if let (Some(node), "GET") = (node, method) {
            let text = tokio::task::spawn_blocking(move || docker(&["node", "inspect", &node])).await?;
            let mut nodes: Vec<Value> = serde_json::from_str(&text).map_err(std::io::Error::other)?;
            let mut body = nodes.remove(0);
            body["ManagerStatus"]["Leader"] = json!(false);
            let body = body.to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return client.write_all(response.as_bytes()).await;
        }
        // One request per connection, so that every request passes through here.
        let mut forwarded: String = head
            .trim_end_matches("\r\n")
            .split("\r\n")
            .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
            .map(|line| format!("{line}\r\n"))
            .collect();
        forwarded.push_str("Connection: close\r\n\r\n");
        let mut engine = tokio::net::UnixStream::connect("/var/run/docker.sock").await?;
        engine.write_all(forwarded.as_bytes()).await?;
        engine.write_all(&buffer[head_end..]).await?;
        tokio::io::copy_bidirectional(&mut client, &mut engine).await?;
        Ok(())
    }
}

impl Drop for FollowerEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes a service on drop.
struct ServiceGuard(String);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        docker_quiet(&["service", "rm", &self.0]);
    }
}

/// Creates a service (waiting until it runs) and returns its guard.
fn create_service(name: &str, image: &str, extra: &[&str]) -> ServiceGuard {
    let guard = ServiceGuard(name.to_string());
    let mut args = vec!["service", "create", "--quiet", "--detach=false", "--name", name];
    args.extend(extra);
    args.push(image);
    docker(&args);
    guard
}

fn service(name: &str) -> Value {
    let text = docker(&["service", "inspect", name]);
    let mut all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.remove(0)
}

fn spec_image(name: &str) -> String {
    service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// (image, state) of every task Swarm wants running.
fn running_tasks(name: &str) -> Vec<(String, String)> {
    let ids = docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        name,
    ]);
    ids.lines()
        .map(|id| {
            let text = docker(&["inspect", id]);
            let task: Vec<Value> = serde_json::from_str(&text).unwrap();
            (
                task[0]["Spec"]["ContainerSpec"]["Image"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                task[0]["Status"]["State"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn target_names(job: &Value) -> Vec<String> {
    job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// A Distribution notification for `tag` (`host:port/repo:tag`) at `digest`.
fn push_event(tag: &str, digest: &str) -> Value {
    let (host, rest) = tag.split_once('/').unwrap();
    let (repository, tag_name) = rest.rsplit_once(':').unwrap();
    json!({ "events": [{
        "id": unique("event"),
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": 100, "repository": repository, "tag": tag_name
        },
        "request": { "host": host, "method": "PUT" }
    }]})
}

/// Waits until `hoist`'s `/v1/peers` counts `count` for `peer`'s `field`; returns the page.
async fn wait_for_peer(hoist: &Hoist, peer: &str, field: &str, count: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = hoist.get_json("/v1/peers").await;
        if peers["peers"][peer][field] == count {
            return peers;
        }
        assert!(
            Instant::now() < deadline,
            "{peer} never had {field}={count}: {peers}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn jobs_for(hoist: &Hoist, image: &str, digest: &str) -> Vec<Value> {
    hoist.get_json("/v1/history").await["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["image"] == image && job["new_digest"] == digest)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_pins_the_labelled_service_to_the_digest_and_leaves_others_alone() {
    let _lease = SwarmLease::take().await;
    let hoist = Hoist::start(&[("HOIST_SERVICE_DEADLINE", "150s")]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("svc")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    let old_digest = build_and_push(&tag, "v1", Behaviour::Serve);

    let (labelled, plain) = (unique("web"), unique("plain"));
    let _labelled = create_service(
        &labelled,
        &tag,
        &[
            "--replicas",
            "2",
            "--label",
            "hoist.enable=true",
            "--update-monitor",
            "2s",
        ],
    );
    let _plain = create_service(&plain, &tag, &["--replicas", "1"]);
    hoist.wait_for_target(&labelled).await;
    assert_eq!(
        spec_image(&labelled),
        format!("{tag}@{old_digest}"),
        "the CLI pinned it at create"
    );
    let plain_before = service(&plain);

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    assert_eq!(
        target_names(&job),
        vec![labelled.clone()],
        "only the labelled service is a target: {job}"
    );
    assert_eq!(outcome(&job, &labelled)["result"], "updated", "{job}");
    assert_eq!(job["targets"][0]["old_digest"], old_digest);

    let pinned = format!("{tag}@{new_digest}");
    assert_eq!(spec_image(&labelled), pinned);
    let tasks = running_tasks(&labelled);
    assert_eq!(
        tasks,
        vec![(pinned.clone(), "running".to_string()); 2],
        "both replicas run the pushed digest"
    );
    let plain_after = service(&plain);
    assert_eq!(
        plain_after["Version"], plain_before["Version"],
        "the unlabelled service was not touched"
    );

    // The registry sends the same push again (a new delivery id): nothing is re-issued.
    let version = service(&labelled)["Version"].clone();
    let response = hoist
        .http
        .post(hoist.hook_url())
        .bearer_auth(TOKEN)
        .json(&push_event(&tag, &new_digest))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        let jobs = jobs_for(&hoist, &tag, &new_digest).await;
        if jobs.len() == 2 {
            break jobs[0].clone();
        }
        assert!(Instant::now() < deadline, "no second job: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(outcome(&again, &labelled)["result"], "already_current", "{again}");
    assert_eq!(
        service(&labelled)["Version"],
        version,
        "the spec was not sent again"
    );
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_fails_to_start_is_rolled_back_by_swarm_and_reported() {
    let _lease = SwarmLease::take().await;
    let hoist = Hoist::start(&[("HOIST_SERVICE_DEADLINE", "150s")]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("crashsvc")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    let old_digest = build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("crashy");
    let _service = create_service(
        &name,
        &tag,
        &[
            "--replicas",
            "2",
            "--label",
            "hoist.enable=true",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "2s",
            "--rollback-monitor",
            "2s",
        ],
    );
    hoist.wait_for_target(&name).await;

    let bad_digest = build_and_push(&tag, "v2-crash", Behaviour::Crash);
    let job = hoist.wait_for_job(&tag, &bad_digest, JOB_WAIT).await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "rolled_back", "{job}");
    assert!(
        result["reason"].as_str().unwrap().contains("rolled back"),
        "{result}"
    );
    let failed_tasks = result["log_tail"].as_array().unwrap();
    assert!(
        failed_tasks
            .iter()
            .any(|l| l.as_str().unwrap().contains("non-zero exit (3)")),
        "the failed task says why: {result}"
    );
    let old = format!("{tag}@{old_digest}");
    assert_eq!(spec_image(&name), old, "Swarm restored the previous spec");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = running_tasks(&name);
        if tasks == vec![(old.clone(), "running".to_string()); 2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old image does not run again: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_changed_out_of_band_before_the_event_is_kept_and_still_updated() {
    let _lease = SwarmLease::take().await;
    let hoist = Hoist::start(&[("HOIST_SERVICE_DEADLINE", "150s")]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("envsvc")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("envy");
    let _service = create_service(
        &name,
        &tag,
        &[
            "--replicas",
            "2",
            "--label",
            "hoist.enable=true",
            "--update-monitor",
            "1s",
        ],
    );
    hoist.wait_for_target(&name).await;

    // The push's notification and an operator's change race: whichever spec
    // version hoist reads, the change must survive and the digest must land.
    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    // The operator's CLI can lose the race too ("update out of sequence");
    // like an operator, it tries again.
    let mut attempts = 0;
    loop {
        let output = std::process::Command::new("docker")
            .args([
                "service",
                "update",
                "--detach",
                "--env-add",
                "OPERATOR=was-here",
                &name,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        if output.status.success() {
            break;
        }
        attempts += 1;
        assert!(
            attempts < 10 && stderr.contains("out of sequence"),
            "docker service update failed: {stderr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    let spec = service(&name)["Spec"].clone();
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{tag}@{new_digest}")
    );
    assert!(
        spec["TaskTemplate"]["ContainerSpec"]["Env"]
            .as_array()
            .is_some_and(|env| env.contains(&json!("OPERATOR=was-here"))),
        "the out-of-band change was kept: {spec}"
    );
    assert_eq!(
        running_tasks(&name),
        vec![(format!("{tag}@{new_digest}"), "running".to_string()); 2]
    );
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_every_hoist_once_and_only_the_leader_updates_services() {
    let _lease = SwarmLease::take().await;
    let (port_a, port_b, nobody) = (free_port(), free_port(), free_port());
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let listen_a = format!("127.0.0.1:{port_a}");
    let listen_b = format!("127.0.0.1:{port_b}");
    // A hears from the registry and forwards to B, and to a peer that is down.
    // B's engine is a manager that does not lead the swarm, so B leaves
    // services alone; B lists A as a peer, to show that a forwarded event is
    // not forwarded again.
    let peers_a = format!("{url_b},http://127.0.0.1:{nobody}");
    let follower = FollowerEngine::start().await;
    let hoist_b = Hoist::start(&[
        ("HOIST_LISTEN", &listen_b),
        ("HOIST_PEERS", &url_a),
        ("DOCKER_HOST", &follower.docker_host()),
    ])
    .await;
    let hoist_a = Hoist::start(&[
        ("HOIST_LISTEN", &listen_a),
        ("HOIST_PEERS", &peers_a),
        ("HOIST_FORWARD_ATTEMPTS", "2"),
        ("HOIST_SERVICE_DEADLINE", "150s"),
    ])
    .await;
    let registry = Registry::start(&hoist_a.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("fan")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);

    let service_name = unique("fansvc");
    let _service = create_service(
        &service_name,
        &tag,
        &[
            "--replicas",
            "1",
            "--label",
            "hoist.enable=true",
            "--update-monitor",
            "1s",
        ],
    );
    // Both hoists share this engine, so the container they both see is
    // monitor-only: each reports it, neither recreates it.
    let container = unique("watched");
    clean.container(&container);
    docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--label",
        "hoist.enable=true",
        "--label",
        "hoist.monitor-only=true",
        &tag,
    ]);
    for hoist in [&hoist_a, &hoist_b] {
        hoist.wait_for_target(&service_name).await;
        hoist.wait_for_target(&container).await;
    }
    let down = format!("http://127.0.0.1:{nobody}");
    // The push of v1 was forwarded too: once to B, and given up on for the down peer.
    wait_for_peer(&hoist_a, &down, "failed", 1).await;
    wait_for_peer(&hoist_a, &url_b, "delivered", 1).await;

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job_a = hoist_a.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    let job_b = hoist_b.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    let mut expected_a = vec![service_name.clone(), container.clone()];
    expected_a.sort();
    assert_eq!(target_names(&job_a), expected_a, "{job_a}");
    assert_eq!(outcome(&job_a, &service_name)["result"], "updated", "{job_a}");
    assert_eq!(outcome(&job_a, &container)["result"], "monitor_only");
    assert_eq!(
        target_names(&job_b),
        vec![container.clone()],
        "B, a manager but not the leader, lists the service and leaves it alone: {job_b}"
    );
    assert_eq!(outcome(&job_b, &container)["result"], "monitor_only");
    assert_eq!(spec_image(&service_name), format!("{tag}@{new_digest}"));

    // The forward to the peer that is down is tried again, then reported.
    let peers_a = wait_for_peer(&hoist_a, &down, "failed", 2).await;
    assert_eq!(peers_a["peers"][&url_b]["delivered"], 2, "{peers_a}");
    assert!(
        peers_a["peers"][&down]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach")),
        "{peers_a}"
    );
    let metrics = hoist_a
        .http
        .get(hoist_a.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hoist_forwards_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hoist_forwards_total{outcome=\"retried\"}"),
        "{metrics}"
    );

    // Each hoist acted once, and B did not send the event back to A.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(jobs_for(&hoist_a, &tag, &new_digest).await.len(), 1);
    assert_eq!(jobs_for(&hoist_b, &tag, &new_digest).await.len(), 1);
    let peers_b = hoist_b.get_json("/v1/peers").await;
    assert_eq!(peers_b["received_forwarded"], 2, "v1 and v2: {peers_b}");
    assert_eq!(peers_b["peers"], json!({}), "B forwarded nothing: {peers_b}");
    let peers_a = hoist_a.get_json("/v1/peers").await;
    assert_eq!(
        peers_a["received_forwarded"], 0,
        "nothing came back to A: {peers_a}"
    );

    // The forwarded route wants the token and the forwarded mark.
    let body = json!({ "origin": "someone", "events": [] });
    let forwarded = hoist_b.url("/v1/hooks/forwarded");
    let wrong = hoist_b
        .http
        .post(&forwarded)
        .bearer_auth("wrong-token")
        .header("x-hoist-forwarded", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let unmarked = hoist_b
        .http
        .post(&forwarded)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unmarked.status().as_u16(), 400);

    hoist_a.stop().await;
    hoist_b.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_follows_an_update_under_way_instead_of_sending_it_again() {
    let _lease = SwarmLease::take().await;
    // The registry notifies nobody: the update is started by "the old leader's
    // hoist", played here by a hand-run `docker service update`.
    let registry = Registry::start("http://127.0.0.1:9/unused");
    let tag = format!("{}:1.4", registry.repo(&unique("adopt")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    let old_digest = build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("adopted");
    let _service = create_service(
        &name,
        &tag,
        &[
            "--replicas",
            "2",
            "--label",
            "hoist.enable=true",
            "--update-monitor",
            "4s",
        ],
    );
    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let pinned = format!("{tag}@{new_digest}");
    docker(&[
        "service", "update", "--detach", "--quiet", "--image", &pinned, &name,
    ]);

    // This hoist starts on the leader while the update runs.
    let hoist = Hoist::start(&[("HOIST_SERVICE_DEADLINE", "150s")]).await;
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    assert_eq!(
        job["source"], "poll",
        "an adopted update has no registry source: {job}"
    );
    assert_eq!(spec_image(&name), pinned);
    assert_eq!(
        running_tasks(&name),
        vec![(pinned.clone(), "running".to_string()); 2]
    );
    // Had hoist sent the update again, the previous spec would be the pinned one.
    let after = service(&name);
    assert_eq!(
        after["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{tag}@{old_digest}"),
        "the spec before the update is still the one before the hand-run update"
    );
    assert_eq!(after["Spec"]["TaskTemplate"]["ForceUpdate"], json!(0));
    hoist.stop().await;
    drop(registry);
}
