//! Engine faults and a journal that cannot be written: what a user whose
//! Docker daemon restarts, stalls, or whose disk fills up would live through.
//!
//! The machine's engine is shared and never restarted: the engine that is
//! killed is a dockerd of the test's own, in a network namespace of its own,
//! with a registry beside it ([`PrivateEngine`] describes the arrangement).
//! hoist runs in the test's namespace (in-process, or as a child process when
//! it must be restarted) with `DOCKER_HOST` at that engine's unix socket. It
//! never talks to the registry (the engine pulls), and the registry's
//! notifications cannot reach it across namespaces, so the test posts the
//! notification of each push itself. `HOIST_FAULT_PAUSE_AFTER` with
//! `HOIST_FAULT_PAUSE_FILE` stops hoist right after a step until the test,
//! having killed the engine (SIGKILL, that dockerd's pid only), lets it go on.
//!
//! Every case ends with one container under the name, running the pushed
//! image, nothing parked left over, the journal closed, and the report saying
//! what happened. The stalled engine (a loopback proxy that accepts and never
//! answers) and the full state dir (a small tmpfs) use the machine's engine:
//! nothing is killed there.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::private_engine::{post_notification, push_notification, PrivateEngine, REGISTRY};
use crate::harness::{
    build_and_push, docker, docker_quiet, free_port, inspect, unique, Behaviour, Cleanup, Hoist, Registry,
};
use crate::recovery::{open_jobs, wait_for_job, wait_for_target, HoistProcess};

/// A labelled container on the private engine, running `tag` (v1).
fn run_target(engine: &PrivateEngine, name: &str, tag: &str) {
    engine.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "hoist.enable=true",
        // `always`: a killed dockerd restarts it (it leaves `unless-stopped` ones stopped).
        "--restart",
        "always",
        "--network",
        "host",
        tag,
    ]);
}

/// The end state every case must reach on the private engine.
fn assert_one_container_running(engine: &PrivateEngine, name: &str, version: &str) {
    let after = engine
        .inspect(name)
        .unwrap_or_else(|| panic!("no container {name}; dockerd log:\n{}", engine.log()));
    assert_eq!(after["State"]["Running"], true, "{name} runs: {}", after["State"]);
    assert_eq!(
        after["Config"]["Labels"]["org.opencontainers.image.version"], version,
        "{name} runs the pushed image"
    );
    assert_eq!(after["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert!(
        engine.inspect(&format!("{name}-hoist-old")).is_none(),
        "no parked container left over"
    );
    let same_name = engine.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^/{name}"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(same_name, name, "exactly one container under the name");
}

/// The steps journaled for every job, as `step` names.
fn journaled_steps(state: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(state.join("hoist.db")).unwrap();
    let mut query = db.prepare("SELECT step FROM steps ORDER BY rowid").unwrap();
    let steps = query
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    steps
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The job of `digest` in hoist's history.
async fn finished_job(hoist: &Hoist, digest: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let history = hoist.get_json("/v1/history").await;
        if let Some(job) = history["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["new_digest"] == digest))
        {
            return job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no finished job for {digest}; history: {history}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn healthz(url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("/healthz answers, whatever the engine does");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Pauses hoist after `step`, kills the engine, lets hoist go on (into the
/// fault), starts the engine again, and checks the end state and the report.
async fn engine_killed_after(step: &str) {
    let mut engine = PrivateEngine::start();
    let repository = unique("app");
    let tag = format!("{REGISTRY}/{repository}:1");
    let name = unique("web");
    engine.build_and_push(&tag, "v1");
    run_target(&engine, &name, &tag);
    let pause = tempfile::tempdir().unwrap();
    let pause_file = pause.path().join("paused");
    let hoist = Hoist::start(&[
        ("DOCKER_HOST", &engine.host()),
        ("HOIST_FAULT_PAUSE_AFTER", step),
        ("HOIST_FAULT_PAUSE_FILE", &pause_file.display().to_string()),
        ("HOIST_ENGINE_RETRY_FOR", "5m"),
    ])
    .await;
    hoist.wait_for_target(&name).await;

    let digest = engine.build_and_push(&tag, "v2");
    let notification = push_notification(REGISTRY, &repository, "1", &digest);
    assert_eq!(post_notification(&hoist.hook_url(), &notification).await, 202);
    wait_until("hoist paused", Duration::from_secs(60), || pause_file.exists()).await;
    engine.kill();
    std::fs::remove_file(&pause_file).unwrap();

    // hoist meets the dead engine, rolls back as far as it can, and waits.
    let state = hoist.state.path().to_path_buf();
    wait_until("a rollback journaled", Duration::from_secs(60), || {
        journaled_steps(&state).iter().any(|s| s == "rolling_back")
    })
    .await;
    let (status, health) = healthz(&hoist.url("/healthz")).await;
    assert_eq!(status, 503, "the engine is down: {health}");
    assert_eq!(open_jobs(&state), 1, "the acknowledged push is kept open");

    engine.start_dockerd();
    let job = finished_job(&hoist, &digest).await;
    let target = &job["targets"][0];
    assert_eq!(
        target["outcome"]["result"], "updated",
        "after a kill after {step}: {job}"
    );
    let note = target["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("engine restarted during the update; rolled back, then updated at "),
        "the report says what happened: {job}"
    );
    assert_one_container_running(&engine, &name, "v2");
    assert_eq!(open_jobs(&state), 0, "the journal is closed");
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_after_the_park() {
    engine_killed_after("parked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_after_the_create() {
    engine_killed_after("created").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_during_the_health_gate() {
    engine_killed_after("verifying").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_down_past_the_retry_bound_fails_the_job_with_the_real_reason() {
    let mut engine = PrivateEngine::start();
    let repository = unique("app");
    let tag = format!("{REGISTRY}/{repository}:1");
    let name = unique("web");
    engine.build_and_push(&tag, "v1");
    run_target(&engine, &name, &tag);
    let hoist = Hoist::start(&[("DOCKER_HOST", &engine.host()), ("HOIST_ENGINE_RETRY_FOR", "3s")]).await;
    hoist.wait_for_target(&name).await;
    let digest = engine.build_and_push(&tag, "v2");
    engine.kill();

    let notification = push_notification(REGISTRY, &repository, "1", &digest);
    assert_eq!(post_notification(&hoist.hook_url(), &notification).await, 202);
    let job = finished_job(&hoist, &digest).await;
    let target = &job["targets"][0];
    assert_eq!(target["outcome"]["result"], "failed", "{job}");
    let reason = target["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("cannot pull the new image: docker engine unreachable")
            && reason.contains("still failing after"),
        "the real reason, not \"hoist stopped\": {job}"
    );
    assert_eq!(open_jobs(hoist.state.path()), 0);

    engine.start_dockerd();
    assert_one_container_running(&engine, &name, "v1");
    hoist.stop().await;
}

/// A TCP proxy inside the namespace, in front of the registry: while the
/// hold file exists, the first blob it relays (the pull is then under way)
/// is held, and dropped when the file goes.
const HOLDING_PROXY: &str = r#"
import os, socket, sys, threading, time
listen, upstream, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen))
server.listen(64)
print("listening", flush=True)
def pipe(source, target, watch):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            if watch and os.path.exists(hold) and b"application/octet-stream" in data:
                print("holding", flush=True)
                while os.path.exists(hold):
                    time.sleep(0.05)
                break
            target.sendall(data)
    except OSError:
        pass
    for end in (source, target):
        try:
            end.close()
        except OSError:
            pass
def serve(client):
    try:
        registry = socket.create_connection(("127.0.0.1", upstream))
    except OSError:
        client.close()
        return
    threading.Thread(target=pipe, args=(client, registry, False), daemon=True).start()
    threading.Thread(target=pipe, args=(registry, client, True), daemon=True).start()
while True:
    client, _ = server.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_during_the_pull() {
    use std::io::BufRead;

    let mut engine = PrivateEngine::start();
    let scratch = tempfile::tempdir().unwrap();
    let hold = scratch.path().join("hold");
    let proxy_host = "127.0.0.1:5001";
    let mut command = engine.inside("/usr/bin/python3");
    command
        .args(["-c", HOLDING_PROXY, "5001", "5000"])
        .arg(&hold)
        .stdout(std::process::Stdio::piped());
    let proxy = engine.spawn_inside(&mut command);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = proxy.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(20)).as_deref(),
        Ok("listening")
    );
    // Pushed straight to the registry, run (and so pulled) through the proxy.
    let repository = unique("app");
    let pushed = format!("{REGISTRY}/{repository}:1");
    let tag = format!("{proxy_host}/{repository}:1");
    let name = unique("web");
    engine.build_and_push(&pushed, "v1");
    engine.docker(&["tag", &pushed, &tag]);
    run_target(&engine, &name, &tag);
    let hoist = Hoist::start(&[("DOCKER_HOST", &engine.host()), ("HOIST_ENGINE_RETRY_FOR", "5m")]).await;
    hoist.wait_for_target(&name).await;

    let digest = engine.build_and_push(&pushed, "v2");
    // Only the registry has v2 now: hoist's pull has blobs to fetch.
    engine.docker(&["rmi", &pushed]);
    std::fs::write(&hold, "").unwrap();
    let notification = push_notification(proxy_host, &repository, "1", &digest);
    assert_eq!(post_notification(&hoist.hook_url(), &notification).await, 202);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(60)).as_deref(),
        Ok("holding"),
        "the pull is under way"
    );
    engine.kill();
    std::fs::remove_file(&hold).unwrap();
    let (status, _) = healthz(&hoist.url("/healthz")).await;
    assert_eq!(status, 503);

    engine.start_dockerd();
    let job = finished_job(&hoist, &digest).await;
    let target = &job["targets"][0];
    assert_eq!(target["outcome"]["result"], "updated", "{job}");
    let note = target["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("engine restarted during the update; updated at "),
        "nothing had been changed, so nothing was rolled back: {job}"
    );
    assert_one_container_running(&engine, &name, "v2");
    assert_eq!(open_jobs(hoist.state.path()), 0);
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoist_restarted_while_the_engine_is_down() {
    let mut engine = PrivateEngine::start();
    let repository = unique("app");
    let tag = format!("{REGISTRY}/{repository}:1");
    let name = unique("web");
    engine.build_and_push(&tag, "v1");
    run_target(&engine, &name, &tag);
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/v1/hooks/distribution");
    let host = engine.host();
    let env = [("DOCKER_HOST", host.as_str()), ("HOIST_ENGINE_RETRY_FOR", "5m")];

    let first = HoistProcess::start_with(port, state.path(), Some("created"), &env);
    wait_for_target(port, &name, &first).await;
    let v2 = engine.build_and_push(&tag, "v2");
    let v2_push = push_notification(REGISTRY, &repository, "1", &v2);
    assert_eq!(post_notification(&hook, &v2_push).await, 202);
    first.wait_for_line(
        "Fault injection: paused after this step.",
        Duration::from_secs(60),
    );
    // A newer push, made while hoist is stuck; its notification comes later.
    let v3 = engine.build_and_push(&tag, "v3");
    engine.kill();
    first.kill();

    // The engine is still down: hoist starts anyway, keeps the open job,
    // and accepts (journals) a push although it cannot tell who runs it.
    let second = HoistProcess::start_with(port, state.path(), None, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "hoist did not start:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status().as_u16(), 503, "{}", second.log());
    let v3_push = push_notification(REGISTRY, &repository, "1", &v3);
    assert_eq!(post_notification(&hook, &v3_push).await, 202);
    assert_eq!(open_jobs(state.path()), 2, "both pushes are kept");

    engine.start_dockerd();
    let job = wait_for_job(port, &v3, &second).await;
    assert_eq!(
        job["targets"][0]["outcome"]["result"],
        "updated",
        "{job}\nlog:\n{}",
        second.log()
    );
    assert!(
        second.log().contains("Interrupted update repaired."),
        "the half-done update was repaired first:\n{}",
        second.log()
    );
    assert_one_container_running(&engine, &name, "v3");
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_jobs(state.path()) > 0 {
        assert!(Instant::now() < deadline, "the v2 job is closed (superseded)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
}

/// A proxy on a unix socket in front of the machine's engine that, once
/// stalled, takes connections and requests and never answers (nothing sent
/// meanwhile reaches the engine, not even later).
struct StallingProxy {
    path: PathBuf,
    stalled: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl StallingProxy {
    async fn start() -> StallingProxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stalled = flag.clone();
                tokio::spawn(async move {
                    let Ok(engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (engine_read, engine_write) = engine.into_split();
                    tokio::join!(
                        relay(client_read, engine_write, stalled.clone()),
                        relay(engine_read, client_write, stalled)
                    );
                });
            }
        });
        StallingProxy {
            path,
            stalled,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

/// Copies one way until either end closes; a chunk that arrives while
/// stalled is never delivered, and the connection is dropped when the stall ends.
async fn relay(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            while stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_engine_is_a_fault_not_a_hang() {
    let proxy = StallingProxy::start().await;
    let pause = tempfile::tempdir().unwrap();
    let pause_file = pause.path().join("paused");
    let hoist = Hoist::start(&[
        ("DOCKER_HOST", &proxy.host()),
        ("HOIST_ENGINE_TIMEOUT", "2s"),
        ("HOIST_STOP_TIMEOUT", "2s"),
        ("HOIST_FAULT_PAUSE_AFTER", "parked"),
        ("HOIST_FAULT_PAUSE_FILE", &pause_file.display().to_string()),
        ("HOIST_ENGINE_RETRY_FOR", "5m"),
    ])
    .await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("stall")));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("web");
    clean.container(&name);
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        "--restart",
        "always",
        &tag,
    ]);
    hoist.wait_for_target(&name).await;
    let digest = build_and_push(&tag, "v2", Behaviour::Serve);
    wait_until("hoist paused", Duration::from_secs(60), || pause_file.exists()).await;

    proxy.stall(true);
    std::fs::remove_file(&pause_file).unwrap();
    // Every call now meets an engine that never answers: each runs out of
    // time (nothing holds the tag for ever), the rollback too, and hoist keeps
    // trying; /healthz answers all along.
    let state = hoist.state.path().to_path_buf();
    wait_until("a rollback journaled", Duration::from_secs(60), || {
        journaled_steps(&state).iter().any(|s| s == "rolling_back")
    })
    .await;
    let (status, health) = healthz(&hoist.url("/healthz")).await;
    assert_eq!(status, 503, "{health}");
    assert!(
        health["engine"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer"),
        "{health}"
    );
    assert_eq!(open_jobs(&state), 1);

    proxy.stall(false);
    let job = finished_job(&hoist, &digest).await;
    let target = &job["targets"][0];
    assert_eq!(target["outcome"]["result"], "updated", "{job}");
    assert!(
        target["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("engine stopped answering during the update; rolled back, then updated at "),
        "{job}"
    );
    let after = inspect(&name);
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["Config"]["Labels"]["org.opencontainers.image.version"],
        "v2"
    );
    assert!(!docker_quiet(&["inspect", &format!("{name}-hoist-old")]));
    assert_eq!(open_jobs(&state), 0);
    hoist.stop().await;
}

/// A tmpfs the test mounts, unmounted (and its mount point removed) on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs (the tests run as root)");
        assert!(status.success(), "mount a tmpfs on {}", dir.path().display());
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        if !unmounted.is_ok_and(|s| s.success()) {
            eprintln!(
                "could not unmount the test's tmpfs at {}",
                self.dir.path().display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_dir_answers_503_until_it_has_room() {
    let disk = SmallDisk::mount("4m");
    let state = disk.path().join("state");
    let hoist = Hoist::start(&[("HOIST_STATE_DIR", &state.display().to_string())]).await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let repository = unique("full");
    let tag = format!("{}:1", registry.repo(&repository));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("web");
    clean.container(&name);
    docker(&["run", "-d", "--name", &name, "--label", "hoist.enable=true", &tag]);
    hoist.wait_for_target(&name).await;

    let filler = disk.fill();
    // The registry is told 503 and sends again; so is this test's own copy.
    let digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let notification = push_notification(&registry.host, &repository, "1", &digest);
    assert_eq!(post_notification(&hoist.hook_url(), &notification).await, 503);
    let (status, health) = healthz(&hoist.url("/healthz")).await;
    assert_eq!(status, 503, "{health}");
    assert!(
        health["journal"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cannot be written"),
        "{health}"
    );
    assert!(hoist.get_json("/v1/history").await["jobs"]
        .as_array()
        .unwrap()
        .is_empty());

    std::fs::remove_file(filler).unwrap();
    let (status, health) = healthz(&hoist.url("/healthz")).await;
    assert_eq!(status, 200, "room again, and nothing else to do: {health}");
    // The registry's own retry gets through now; the push is not lost.
    let job = finished_job(&hoist, &digest).await;
    assert_eq!(job["targets"][0]["outcome"]["result"], "updated", "{job}");
    assert_eq!(
        inspect(&name)["Config"]["Labels"]["org.opencontainers.image.version"],
        "v2"
    );
    hoist.stop().await;
    drop(registry);
}
