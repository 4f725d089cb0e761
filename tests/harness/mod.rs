//! Test harness: real engine, real Distribution registry, hoist in-process.
//!
//! Every name a test creates carries a unique prefix, and everything is
//! removed on drop. A missing engine or registry binary fails the test: it
//! never skips.

#![allow(dead_code, clippy::let_underscore_must_use)]

/// A dockerd of the test's own in a network namespace of its own, to kill.
pub mod private_engine;
/// The shipped compose files brought up with docker-compose (hoist and proxy images packaged locally).
pub mod compose;
/// HTTP receiver recording exact requests (Slack and Teams stand-ins).
pub mod recorder;
/// aiosmtpd on 127.0.0.1:0, optionally with STARTTLS and AUTH.
pub mod smtp;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789";

/// A name unique to this test run and call: `h<pid>-<n>-<label>`.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "h{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        label
    )
}

pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // reqwest is built without a default TLS provider; tests use ring, like hoist.
        let _ = rustls::crypto::ring::default_provider().install_default();
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // RUST_LOG as hoist reads it (levels and module=level), else hoist's debug lines.
        let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                tracing_subscriber::filter::Targets::new().with_target("hoist", tracing::Level::DEBUG)
            });
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .finish()
            .with(filter)
            .try_init();
    });
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `docker ARGS`, panicking with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed");
    assert!(
        output.status.success(),
        "docker {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Runs `docker ARGS` and returns whether it succeeded (for cleanup).
pub fn docker_quiet(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn inspect(name: &str) -> Value {
    let text = docker(&["inspect", "--type", "container", name]);
    let mut all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.remove(0)
}

pub fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
}

/// The Distribution registry (Debian's docker-registry) on 127.0.0.1, sending
/// its notifications to `notify_url` with the test token.
pub struct Registry {
    pub port: u16,
    pub host: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(notify_url: &str) -> Registry {
        Registry::start_on(free_port(), notify_url)
    }

    pub fn start_on(port: u16, notify_url: &str) -> Registry {
        Registry::start_configured(port, Some(notify_url), None)
    }

    /// A registry that wants a login for everything (htpasswd, bcrypt, as
    /// `htpasswd -B` writes it), notifying `notify_url` when there is one.
    pub fn start_with_login(notify_url: Option<&str>, user: &str, password: &str) -> Registry {
        Registry::start_configured(free_port(), notify_url, Some((user, password)))
    }

    fn start_configured(port: u16, notify_url: Option<&str>, login: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let notifications = notify_url.map_or(String::new(), |notify_url| format!(
            "notifications:\n  endpoints:\n    - name: hoist\n      url: {notify_url}\n      headers:\n        Authorization: [Bearer {TOKEN}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n      ignore:\n        mediatypes: [application/octet-stream]\n        actions: [pull, mount]\n"
        ));
        let auth = login.map_or(String::new(), |(user, password)| {
            let htpasswd = dir.path().join("htpasswd");
            let output = Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(&htpasswd)
                .args([user, password])
                .output()
                .expect(
                    "htpasswd must be installed (Debian package apache2-utils; scripts/setup.sh installs it)",
                );
            assert!(
                output.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            format!(
                "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
                htpasswd.display()
            )
        });
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             {auth}{notifications}",
            root = dir.path().join("data").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = Registry {
            port,
            host: format!("127.0.0.1:{port}"),
            child: None,
            dir,
        };
        registry.spawn();
        registry
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(
                "docker-registry must be installed (Debian package docker-registry; .ci/run installs it)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start; log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Stops the registry (its data stay), as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `127.0.0.1:<port>/<repository>`.
    pub fn repo(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A docker CLI config directory of the test's own (the machine's
/// `~/.docker` is never touched), holding logins as `docker login` writes them.
pub struct DockerConfig {
    dir: tempfile::TempDir,
}

impl DockerConfig {
    pub fn new() -> DockerConfig {
        DockerConfig {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `<dir>/config.json`, for `HOIST_DOCKER_CONFIG`.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Writes `config.json` with one static login, as `docker login` does:
    /// `"auth"` is the base64 of `user:password`, and the file is replaced
    /// (written aside, then renamed), not rewritten in place.
    pub fn login(&self, registry: &str, user: &str, password: &str) {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let text = serde_json::json!({ "auths": { registry: { "auth": auth } } });
        let temp = self.dir.path().join("config.json.tmp");
        std::fs::write(&temp, serde_json::to_string_pretty(&text).unwrap()).unwrap();
        std::fs::rename(&temp, self.file()).unwrap();
    }

    /// `docker --config <dir> push tag`: returns the pushed digest.
    pub fn push(&self, tag: &str) -> String {
        let dir = self.dir.path().display().to_string();
        let out = docker(&["--config", &dir, "push", tag]);
        out.lines()
            .find_map(|l| l.split("digest: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in push output: {out}"))
            .to_string()
    }
}

/// What the test image's process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves HTTP on 8080 and stops cleanly on SIGTERM.
    Serve,
    /// Exits with code 3 at once.
    Crash,
    /// Runs, but its healthcheck always fails.
    Unhealthy,
    /// Runs, with a healthcheck that passes.
    Healthy,
}

/// Builds a tiny image `FROM scratch` with busybox, tagged `tag`. `version`
/// goes into a file and a label, so each version has its own digest; the tag
/// goes into a label, so no two tests share an image (one test's clean-up
/// would otherwise remove another's image).
pub fn build_image(tag: &str, version: &str, behaviour: Behaviour) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(busybox(), dir.path().join("busybox")).unwrap();
    let run = "trap 'exit 0' TERM; echo started $(cat /version); httpd -f -p 8080 -h /www & wait";
    let (cmd, healthcheck) = match behaviour {
        Behaviour::Serve => (run.to_string(), String::new()),
        Behaviour::Crash => ("echo crashing on purpose >&2; exit 3".to_string(), String::new()),
        Behaviour::Unhealthy => (run.to_string(), "HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/bin/false\"]\n".into()),
        Behaviour::Healthy => {
            (run.to_string(), "HEALTHCHECK --interval=1s --timeout=1s --retries=3 CMD [\"/bin/wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/\"]\n".into())
        }
    };
    let dockerfile = format!(
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN [\"/bin/sh\", \"-c\", \"mkdir -p /www /data /tmp && echo {version} > /version && cp /version /www/index.html\"]\n\
         ENV IMAGE_VERSION={version} PATH=/bin\n\
         LABEL org.opencontainers.image.version={version} org.opencontainers.image.revision=rev-{version} org.opencontainers.image.source=https://example.test/app\n\
         LABEL hoist.test.tag={tag:?}\n\
         VOLUME /data\n\
         EXPOSE 8080\n\
         {healthcheck}\
         CMD [\"/bin/sh\", \"-c\", {cmd:?}]\n"
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let output = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn busybox() -> PathBuf {
    for candidate in ["/usr/bin/busybox", "/bin/busybox"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("busybox must be installed (Debian package busybox-static; .ci/run installs it)");
}

/// Builds and pushes; returns the pushed digest.
pub fn build_and_push(tag: &str, version: &str, behaviour: Behaviour) -> String {
    build_image(tag, version, behaviour);
    push(tag)
}

pub fn push(tag: &str) -> String {
    let out = docker(&["push", tag]);
    out.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in push output: {out}"))
        .to_string()
}

/// hoist running in this process, on 127.0.0.1 with a random port.
pub struct Hoist {
    pub addr: SocketAddr,
    /// The state directory (journal); removed on drop.
    pub state: tempfile::TempDir,
    pub app: Option<hoist::RunningApp>,
    pub http: reqwest::Client,
}

impl Hoist {
    pub async fn start(extra: &[(&str, &str)]) -> Hoist {
        Hoist::start_in(tempfile::tempdir().unwrap(), extra).await
    }

    /// As [`Hoist::start`], with `state` (a journal prepared by the test) as HOIST_STATE_DIR.
    pub async fn start_in(state: tempfile::TempDir, extra: &[(&str, &str)]) -> Hoist {
        init_logs();
        let mut vars: HashMap<String, String> = [
            ("HOIST_LISTEN", "127.0.0.1:0"),
            ("HOIST_WEBHOOK_TOKEN", TOKEN),
            ("HOIST_HEALTH_GRACE", "1s"),
            ("HOIST_HEALTH_DEADLINE", "20s"),
            ("HOIST_STOP_TIMEOUT", "3s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.insert("HOIST_STATE_DIR".into(), state.path().display().to_string());
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = hoist::Config::from_vars(&vars).expect("test config is valid");
        let app = hoist::start(config)
            .await
            .expect("hoist starts (is the docker engine running?)");
        Hoist {
            addr: app.local_addr,
            state,
            app: Some(app),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hook_url(&self) -> String {
        self.url("/v1/hooks/distribution")
    }

    /// `GET path` with the token, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits for a finished job of `image` (tagged reference) with `digest`, and returns it.
    pub async fn wait_for_job(&self, image: &str, digest: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let history = self.get_json("/v1/history").await;
            let found = history["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|job| job["image"] == image && job["new_digest"] == digest)
                .cloned();
            if let Some(job) = found {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "no job for {image}@{digest} within {within:?}; history: {history}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/v1/targets` lists a container called `name`.
    pub async fn wait_for_target(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let targets = self.get_json("/v1/targets").await;
            if targets["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == name)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became a target: {targets}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// Removes containers, images, networks and volumes a test made, on drop.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) {
        self.containers.push(name.to_string());
        // A parked leftover would carry this suffix, a new one the other.
        self.containers.push(format!("{name}-hoist-old"));
        self.containers.push(format!("{name}-hoist-new"));
    }
    pub fn image(&mut self, name: &str) {
        self.images.push(name.to_string());
    }
    pub fn network(&mut self, name: &str) {
        self.networks.push(name.to_string());
    }
    pub fn volume(&mut self, name: &str) {
        self.volumes.push(name.to_string());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.containers {
            // -v removes the anonymous volumes with the container.
            docker_quiet(&["rm", "-f", "-v", name]);
        }
        for name in &self.networks {
            docker_quiet(&["network", "rm", name]);
        }
        for name in &self.volumes {
            docker_quiet(&["volume", "rm", "-f", name]);
        }
        for name in &self.images {
            // Every tag and digest of the repository.
            let repository = name.rsplit_once(':').map_or(name.as_str(), |(r, _)| r);
            let ids = Command::new("docker")
                .args(["images", "-q", "--no-trunc", repository])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            for id in ids.lines().collect::<std::collections::BTreeSet<_>>() {
                docker_quiet(&["rmi", "-f", id]);
            }
        }
    }
}
