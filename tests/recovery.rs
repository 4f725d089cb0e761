//! Crash injection: hoist runs as a child process, is SIGKILLed at each step
//! of an update, and is started again on the same state directory. Each time
//! the end state must be one running container under the name, no leftover,
//! the journal closed, and the push acted on.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    build_and_push, docker, docker_quiet, free_port, inspect, unique, Behaviour, Cleanup, Registry, TOKEN,
};

/// hoist as a child process, its output collected line by line.
pub(crate) struct HoistProcess {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl HoistProcess {
    fn start(port: u16, state: &Path, pause_after: Option<&str>) -> HoistProcess {
        HoistProcess::start_with(port, state, pause_after, &[])
    }

    /// With more variables (`DOCKER_HOST`, ...).
    pub(crate) fn start_with(
        port: u16,
        state: &Path,
        pause_after: Option<&str>,
        env: &[(&str, &str)],
    ) -> HoistProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hoist"));
        command
            .arg("run")
            .env("HOIST_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOIST_WEBHOOK_TOKEN", TOKEN)
            .env("HOIST_STATE_DIR", state)
            .env("HOIST_HEALTH_GRACE", "1s")
            .env("HOIST_HEALTH_DEADLINE", "20s")
            .env("HOIST_STOP_TIMEOUT", "3s")
            .env("RUST_LOG", "hoist=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(step) = pause_after {
            command.env("HOIST_FAULT_PAUSE_AFTER", step);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("the hoist binary runs");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        HoistProcess { child, output }
    }

    pub(crate) fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub(crate) fn wait_for_line(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for HoistProcess {
    fn drop(&mut self) {
        // Already gone when the test killed it; nothing else to do.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub(crate) async fn get(port: u16, path: &str) -> Option<Value> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

pub(crate) async fn wait_for_target(port: u16, name: &str, child: &HoistProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(targets) = get(port, "/v1/targets").await {
            if targets["targets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == name))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became a target; log:\n{}",
            child.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn wait_for_job(port: u16, digest: &str, child: &HoistProcess) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(history) = get(port, "/v1/history").await {
            if let Some(job) = history["jobs"]
                .as_array()
                .and_then(|jobs| jobs.iter().find(|j| j["new_digest"] == digest))
            {
                return job.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no finished job for {digest}; log:\n{}",
            child.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn open_jobs(state: &Path) -> i64 {
    let db = rusqlite::Connection::open(state.join("hoist.db")).unwrap();
    db.query_row(
        "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Kills hoist right after `step` of an update, restarts it, and checks the end state.
async fn killed_after(step: &str) {
    killed_after_in(step, "stop-first").await;
}

/// As [`killed_after`], with the container labelled `hoist.order=<order>`.
async fn killed_after_in(step: &str, order: &str) {
    crate::harness::init_logs();
    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("crash")));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let (name, network, volume) = (unique("victim"), unique("net"), unique("vol"));
    clean.container(&name);
    clean.network(&network);
    clean.volume(&volume);
    docker(&["network", "create", &network]);
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        "--label",
        &format!("hoist.order={order}"),
        "--restart",
        "unless-stopped",
        "--network",
        &network,
        "--network-alias",
        "svc",
        "-v",
        &format!("{volume}:/named"),
        &tag,
    ]);
    let state = tempfile::tempdir().unwrap();

    let first = HoistProcess::start(port, state.path(), Some(step));
    wait_for_target(port, &name, &first).await;
    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    first.wait_for_line(
        "Fault injection: paused after this step.",
        Duration::from_secs(60),
    );
    first.kill();
    assert!(
        open_jobs(state.path()) >= 1,
        "the interrupted job is open in the journal"
    );

    let second = HoistProcess::start(port, state.path(), None);
    let job = wait_for_job(port, &new_digest, &second).await;
    let outcome = job["targets"][0]["outcome"]["result"].clone();
    assert_eq!(
        outcome,
        "updated",
        "after a crash at {step}: {job}\nlog:\n{}",
        second.log()
    );
    // The registry redelivers notifications hoist did not answer (the v1 push,
    // made before hoist listened, and maybe v2): such a job may still be
    // running when the v2 job ends. Each ends quickly (the target is current).
    let closed_by = std::time::Instant::now() + Duration::from_secs(30);
    while open_jobs(state.path()) > 0 && std::time::Instant::now() < closed_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        open_jobs(state.path()),
        0,
        "the journal is closed; log:\n{}",
        second.log()
    );
    if step != "pulled" {
        // The engine had been changed: recovery repaired it before the job ran again.
        assert!(
            second.log().contains("Interrupted update repaired."),
            "no repair after {step}:\n{}",
            second.log()
        );
    }

    let after = inspect(&name);
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["Config"]["Labels"]["org.opencontainers.image.version"],
        "v2"
    );
    assert_eq!(after["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    let aliases = after["NetworkSettings"]["Networks"][&network]["Aliases"].to_string();
    assert!(aliases.contains("\"svc\""), "network alias kept: {aliases}");
    assert!(
        !docker_quiet(&["inspect", &format!("{name}-hoist-old")]),
        "no parked container left after {step}"
    );
    assert!(
        !docker_quiet(&["inspect", &format!("{name}-hoist-new")]),
        "no new container left under the temporary name after {step} ({order})"
    );
    let same_name = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^/{name}"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(same_name, name, "exactly one container under the name");
    drop(second);
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_pull() {
    killed_after("pulled").await;
}

/// The new container exists under `<name>-hoist-new`; the old one still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_create() {
    killed_after("created").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_rename() {
    killed_after("parked").await;
}

/// The new container took the name, not started yet; the old one is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_new_one_took_the_name() {
    killed_after("named").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_start() {
    killed_after("started").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_health_wait() {
    killed_after("verifying").await;
}

/// start-first: the new container runs beside the old one, not gated yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_first_killed_beside_the_old_one() {
    killed_after_in("started", "start-first").await;
}

/// start-first: the new container passed its gate; the old one still has the
/// name and its networks. The repair finishes forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_first_killed_after_the_gate() {
    killed_after_in("verified", "start-first").await;
}

/// start-first: the old container is off its networks and renamed aside,
/// still running (the drain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_first_killed_while_draining() {
    killed_after_in("detached", "start-first").await;
}

/// start-first: the gated new container just got the network aliases (the
/// engine's DNS answers with both); not yet recorded as verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_first_killed_after_the_aliases_moved() {
    killed_after_in("joined", "start-first").await;
}

/// A target with a sidecar in its network namespace, hoist killed right after
/// a step of the sidecar's part: at the restart the target and its sidecar
/// are rolled back together (the sidecar attached to the old target), then
/// the job runs again and both end on the new target.
async fn killed_with_a_sidecar_after(step: &str) {
    crate::harness::init_logs();
    let port = free_port();
    let registry = Registry::start(&format!("http://127.0.0.1:{port}/v1/hooks/distribution"));
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("crash-vpn")));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let (vpn, sidecar) = (unique("vpn"), unique("sidecar"));
    clean.container(&sidecar);
    clean.container(&vpn);
    docker(&["run", "-d", "--name", &vpn, "--label", "hoist.enable=true", &tag]);
    docker(&[
        "run",
        "-d",
        "--name",
        &sidecar,
        "--network",
        &format!("container:{vpn}"),
        &tag,
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM; sleep 100000 & wait",
    ]);
    let sidecar_image = inspect(&sidecar)["Image"].clone();
    let state = tempfile::tempdir().unwrap();

    let first = HoistProcess::start(port, state.path(), Some(step));
    wait_for_target(port, &vpn, &first).await;
    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    first.wait_for_line(
        "Fault injection: paused after this step.",
        Duration::from_secs(60),
    );
    first.kill();

    let second = HoistProcess::start(port, state.path(), None);
    let job = wait_for_job(port, &new_digest, &second).await;
    assert_eq!(
        job["targets"][0]["outcome"]["result"], "updated",
        "after a crash at {step}: {job}"
    );
    assert!(
        second.log().contains("Interrupted dependent repaired."),
        "the sidecar was repaired after {step}:\n{}",
        second.log()
    );
    assert_eq!(open_jobs(state.path()), 0, "the journal is closed");
    let target = inspect(&vpn);
    let after = inspect(&sidecar);
    assert_eq!(
        after["HostConfig"]["NetworkMode"],
        format!("container:{}", target["Id"].as_str().unwrap()),
        "the sidecar is in the updated target's namespace"
    );
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["Image"], sidecar_image,
        "an unlabelled dependent keeps its image"
    );
    for leftover in [format!("{vpn}-hoist-old"), format!("{sidecar}-hoist-old")] {
        assert!(
            !docker_quiet(&["inspect", &leftover]),
            "{leftover} left after {step}"
        );
    }
    drop(second);
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_parking_a_dependent() {
    killed_with_a_sidecar_after("dependent_parking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_recreating_a_dependent() {
    killed_with_a_sidecar_after("dependent_created").await;
}
