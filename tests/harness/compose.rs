//! The shipped compose files, brought up for real with `docker-compose` (v1),
//! with hoist packaged FROM scratch (scripts/package-image.sh) and, for
//! compose/socket-proxy.yml, a local socket proxy image
//! (scripts/socket-proxy-image.sh).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{docker, unique, Cleanup, TOKEN};

/// Runs a script of scripts/ with `args`; returns its stdout, panicking with
/// its stderr when it fails.
fn script(name: &str, args: &[&str]) -> String {
    let path = format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash").arg(&path).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The test build of hoist packaged FROM scratch (with its shared
/// libraries), under a unique tag that `clean` removes.
pub fn hoist_image(clean: &mut Cleanup) -> String {
    let tag = format!("{}:local", unique("hoist-image"));
    clean.image(&tag);
    script("package-image.sh", &[env!("CARGO_BIN_EXE_hoist"), &tag]);
    tag
}

/// The stand-in for haproxy:2.6-alpine (Debian's haproxy FROM scratch, the
/// official image's paths, command and user), under a unique tag that `clean`
/// removes.
pub fn socket_proxy_image(clean: &mut Cleanup) -> String {
    let tag = format!("{}:local", unique("socket-proxy"));
    clean.image(&tag);
    script("socket-proxy-image.sh", &[&tag]);
    tag
}

/// A project of one of the files in compose/, with its environment; `down -v`
/// on drop (containers, networks, volumes), also when the test fails.
pub struct Project {
    pub name: String,
    file: String,
    env: Vec<(&'static str, String)>,
}

impl Project {
    /// `file` is relative to compose/; the project name is unique.
    pub fn new(file: &str, env: Vec<(&'static str, String)>) -> Project {
        Project {
            name: unique("proj").replace('-', ""),
            file: format!("{}/compose/{file}", env!("CARGO_MANIFEST_DIR")),
            env,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(["-f", &self.file, "-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    }

    /// `docker-compose ARGS`: its stdout, panicking with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self
            .command(args)
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

    /// The ID of the one container of `service`.
    pub fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service])
    }

    /// The name the engine knows the project's network `network` by.
    pub fn network(&self, network: &str) -> String {
        format!("{}_{network}", self.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let down = self.command(&["down", "-v", "-t", "1"]).output();
        if !down.is_ok_and(|o| o.status.success()) {
            eprintln!("docker-compose down failed for project {}", self.name);
        }
    }
}

/// `GET http://127.0.0.1:<port><path>` with the token; `None` while hoist
/// does not answer.
async fn get(http: &reqwest::Client, port: u16, path: &str) -> Option<Value> {
    let response = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// Waits until hoist in `container`, published on `port`, lists a target
/// that `is_it` picks.
pub async fn wait_for_target(
    http: &reqwest::Client,
    port: u16,
    container: &str,
    is_it: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = get(http, port, "/v1/targets").await {
            if body["targets"].as_array().is_some_and(|t| t.iter().any(&is_it)) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "hoist not ready; logs: {}",
            docker(&["logs", container])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until hoist in `container`, published on `port`, has finished a job
/// for `digest`; returns it (from /v1/history).
pub async fn wait_for_job(http: &reqwest::Client, port: u16, digest: &str, container: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(history) = get(http, port, "/v1/history").await {
            if let Some(job) = history["jobs"]
                .as_array()
                .and_then(|jobs| jobs.iter().find(|j| j["new_digest"] == digest))
            {
                return job.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no job for {digest}; logs: {}",
            docker(&["logs", container])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
