//! A Docker engine of the test's own, to kill and start again: the machine's
//! engine is shared with other work and is never restarted.
//!
//! The arrangement, the simplest found that is correct here:
//! - A holder process (`sleep`) started by `unshare --net` owns a network
//!   namespace of the test's own, with `lo` up. dockerd and the registry join
//!   it with `nsenter --net=/proc/<holder>/ns/net`. (`ip netns exec` would
//!   remount /sys, and dockerd then finds no cgroups. A dockerd with
//!   `--bridge none` in the host's namespace would delete the host's
//!   `docker0` and break the machine's engine.)
//! - dockerd has its own socket, `--data-root`, `--exec-root`, `--pidfile`
//!   and `--cgroup-parent` under one directory, `--storage-driver vfs
//!   --bridge none --iptables=false --ip-masq=false`, and `--config-file`
//!   pointing at an empty `{}` (the host's daemon.json sets keys that are
//!   given here as flags, which dockerd refuses).
//! - The registry (Debian's docker-registry) listens on 127.0.0.1:5000 in
//!   the namespace, where that engine pulls from it. Test images are built by
//!   this engine itself (legacy builder, `FROM scratch` with busybox) and
//!   pushed from it: the machine's engine cannot reach that registry.
//! - hoist stays in the test's namespace (in-process, or as a child process)
//!   and reaches the engine through its unix socket, which is a path and so
//!   crosses namespaces. hoist never talks to the registry (the engine pulls),
//!   and the registry's notifications cannot reach hoist, so the test posts
//!   the notification of each push itself ([`push_notification`]).
//! - Containers there use `--network host`, the namespace's.
//!
//! [`PrivateEngine`]'s drop kills every process in the namespace and in its
//! cgroup parent (dockerd, containerd, shims, containers, the registry),
//! unmounts what dockerd mounted under its directory, and removes the
//! cgroups, the shims' sockets and the directory: on failure too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{unique, TOKEN};

/// The registry's address inside the namespace.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// `sh -c` script: exec `$0 "$@"` only in a namespace whose one link is `lo`.
const ONLY_IN_A_PRIVATE_NAMESPACE: &str = "[ \"$(ip -o link show | wc -l)\" = 1 ] || { echo 'not in the test network namespace: refusing to run' >&2; exit 97; }; exec \"$0\" \"$@\"";

/// A dockerd in a network namespace of its own, with a registry beside it.
pub struct PrivateEngine {
    dir: PathBuf,
    holder: Child,
    dockerd: Option<Child>,
    registry: Option<Child>,
    /// Other processes started in the namespace ([`PrivateEngine::spawn_inside`]).
    others: Vec<Child>,
    cgroup_parent: String,
}

impl PrivateEngine {
    /// Starts the namespace, dockerd and the registry; panics (after cleaning
    /// up) when one does not come up.
    pub fn start() -> PrivateEngine {
        let dir = tempfile::Builder::new()
            .prefix("hoist-engine-")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let holder = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec sleep 100000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) and ip (iproute2) must be installed");
        let mut engine = PrivateEngine {
            dir,
            holder,
            dockerd: None,
            registry: None,
            others: Vec::new(),
            cgroup_parent: unique("engine"),
        };
        engine.wait_for("the namespace's loopback", |engine| {
            engine
                .inside("ip")
                .args(["-o", "addr", "show", "lo"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("127.0.0.1"))
        });
        engine.start_dockerd();
        engine.start_registry();
        engine
    }

    /// `unix://<dir>/docker.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// The namespace, for `nsenter --net=`.
    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// A command run inside the namespace. It runs only if the namespace it
    /// joined has no interface but `lo`: a dockerd with `--bridge none` in the
    /// machine's namespace (were the holder's pid ever reused) would delete
    /// the machine's `docker0`, so this is checked where it runs, not before.
    pub fn inside(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.netns())).args([
            "sh",
            "-c",
            ONLY_IN_A_PRIVATE_NAMESPACE,
            program,
        ]);
        command
    }

    /// Starts `command` (from [`PrivateEngine::inside`]); it is killed on drop.
    pub fn spawn_inside(&mut self, command: &mut Command) -> &mut Child {
        let child = command.spawn().expect("nsenter runs");
        self.others.push(child);
        self.others.last_mut().unwrap()
    }

    /// Starts dockerd (again, after [`PrivateEngine::kill`]) and waits until it answers.
    pub fn start_dockerd(&mut self) {
        assert!(self.dockerd.is_none(), "dockerd is running");
        let dir = &self.dir;
        // A stale pidfile (of a killed dockerd) is refused if its pid is reused.
        let _ = std::fs::remove_file(dir.join("docker.pid"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .unwrap();
        // Never outside the namespace: a dockerd with --bridge=none in the
        // host's namespace deletes the host's docker0 (and breaks every other
        // test). A dead holder (or a reused pid) would put it there.
        if let Ok(Some(status)) = self.holder.try_wait() {
            panic!("the namespace holder exited ({status}); not starting dockerd");
        }
        {
            use std::os::unix::fs::MetadataExt;
            let host = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino());
            let private = std::fs::metadata(self.netns()).map(|m| m.ino());
            assert!(
                matches!((&host, &private), (Ok(a), Ok(b)) if a != b),
                "refusing to start a private dockerd outside its own network namespace ({host:?} vs {private:?})"
            );
        }
        let child = self
            .inside("dockerd")
            .arg(format!("--host={}", self.host()))
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("docker.pid").display()))
            .arg(format!("--config-file={}", dir.join("daemon.json").display()))
            .arg(format!("--cgroup-parent={}", self.cgroup_parent))
            .args([
                "--storage-driver=vfs",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd must be installed");
        self.dockerd = Some(child);
        self.wait_for("the private dockerd", |engine| {
            if let Some(Ok(Some(status))) = engine.dockerd.as_mut().map(Child::try_wait) {
                panic!(
                    "the private dockerd exited ({status}); its log:\n{}",
                    engine.log()
                );
            }
            Command::new("docker")
                .args(["-H", &engine.host(), "version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// SIGKILL to this dockerd only (its containerd goes with it; the
    /// containers' shims stay, as after a crash).
    pub fn kill(&mut self) {
        let containerd_pidfile = self.dir.join("exec/containerd/containerd.pid");
        let containerd = std::fs::read_to_string(&containerd_pidfile)
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        let mut dockerd = self.dockerd.take().expect("dockerd is running");
        dockerd.kill().unwrap();
        dockerd.wait().unwrap();
        // Its containerd dies with it, a moment later, and may stay a zombie
        // for a while (this machine's pid 1 reaps late). A dockerd started
        // while the pidfile names it would wait for its socket, in vain.
        if let Some(pid) = containerd {
            self.wait_for("the killed dockerd's containerd to go", |_| {
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|stat| stat.contains(") Z "))
            });
            let _ = std::fs::remove_file(&containerd_pidfile);
        }
    }

    fn start_registry(&mut self) {
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY}\n",
            self.dir.join("registry").display()
        );
        std::fs::write(self.dir.join("registry.yml"), config).unwrap();
        let log = std::fs::File::create(self.dir.join("registry.log")).unwrap();
        let child = self
            .inside("docker-registry")
            .arg("serve")
            .arg(self.dir.join("registry.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry must be installed (Debian package docker-registry)");
        self.registry = Some(child);
        let url = format!("http://{REGISTRY}/v2/");
        self.wait_for("the registry in the namespace", |engine| {
            engine
                .inside("busybox")
                .args(["wget", "-q", "-O", "/dev/null", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    fn wait_for(&mut self, what: &str, mut ready: impl FnMut(&mut PrivateEngine) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "{what} did not come up; dockerd log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The end of dockerd's log, for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs `docker -H <this engine> ARGS`, panicking with its output (and
    /// the engine's and the registry's logs) when it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = Command::new("docker")
            .args(["-H", &self.host()])
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("the docker CLI must be installed");
        assert!(
            output.status.success(),
            "docker {} failed: {}{}\ndockerd log:\n{}\nregistry log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log(),
            std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default(),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `docker inspect` of a container, or `None` when there is none by that name.
    pub fn inspect(&self, name: &str) -> Option<Value> {
        let output = Command::new("docker")
            .args(["-H", &self.host(), "inspect", "--type", "container", name])
            .output()
            .unwrap();
        if !output.status.success() {
            return None;
        }
        let mut all: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        Some(all.remove(0))
    }

    /// Builds `tag` `FROM scratch` with busybox: it runs until SIGTERM, has
    /// `version` in a label (and a layer of its own), and pushes it to the
    /// namespace's registry. Returns the pushed digest.
    pub fn build_and_push(&self, tag: &str, version: &str) -> String {
        let context = self.dir.join(format!("build-{version}"));
        std::fs::create_dir_all(&context).unwrap();
        std::fs::copy(super::busybox(), context.join("busybox")).unwrap();
        let run = "trap 'exit 0' TERM; echo started $(cat /version); sleep 100000 & wait";
        std::fs::write(
            context.join("Dockerfile"),
            format!(
                "FROM scratch\n\
                 COPY busybox /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 RUN [\"/bin/sh\", \"-c\", \"echo {version} > /version\"]\n\
                 ENV PATH=/bin\n\
                 LABEL org.opencontainers.image.version={version}\n\
                 CMD [\"/bin/sh\", \"-c\", {run:?}]\n"
            ),
        )
        .unwrap();
        self.docker(&["build", "-q", "-t", tag, &context.display().to_string()]);
        let out = self.docker(&["push", tag]);
        out.lines()
            .find_map(|l| l.split("digest: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in push output: {out}"))
            .to_string()
    }

    /// Every process in `namespace` (the engine's), and in the engine's cgroups.
    fn processes(&self, namespace: Option<&PathBuf>) -> BTreeSet<u32> {
        let mut pids = BTreeSet::new();
        if let Some(namespace) = namespace {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if std::fs::read_link(entry.path().join("ns/net")).ok().as_ref() == Some(namespace) {
                    pids.insert(pid);
                }
            }
        }
        for group in self.cgroups() {
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|p| p.trim().parse::<u32>().ok()));
        }
        pids.remove(&std::process::id());
        // The holder goes last: while it lives, its namespace stays this
        // engine's (a namespace's inode number is reused once it is gone,
        // and another test's namespace may then carry it).
        pids.remove(&self.holder.id());
        pids
    }

    /// The engine's cgroup directories, deepest first.
    fn cgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), found);
                }
            }
            found.push(dir.to_path_buf());
        }
        let mut found = Vec::new();
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = controller.path().join(&self.cgroup_parent);
            if parent.is_dir() {
                walk(&parent, &mut found);
            }
        }
        found
    }

    /// Mount points under the engine's directory, deepest first.
    fn mounts(&self) -> Vec<String> {
        let prefix = self.dir.display().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        points
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        // The shims' sockets live in /run/containerd/s, outside the directory.
        let sockets: Vec<String> = std::fs::read_to_string(format!("/proc/{}/net/unix", self.holder.id()))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(7))
            .filter(|p| p.starts_with("/run/containerd/s/"))
            .map(str::to_string)
            .collect();
        // Never the test's own namespace (the machine's), whatever the holder's pid names now.
        let namespace = std::fs::read_link(self.netns())
            .ok()
            .filter(|ns| std::fs::read_link("/proc/self/ns/net").ok().as_ref() != Some(ns));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pids = self.processes(namespace.as_ref());
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            let _ = Command::new("kill")
                .arg("-9")
                .args(pids.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
            // Reap the ones that are our children, so they stop counting.
            for child in self
                .dockerd
                .iter_mut()
                .chain(self.registry.iter_mut())
                .chain(self.others.iter_mut())
            {
                let _ = child.try_wait();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for child in self
            .dockerd
            .iter_mut()
            .chain(self.registry.iter_mut())
            .chain(self.others.iter_mut())
            .chain(std::iter::once(&mut self.holder))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Only now, with the holder, may the namespace go.
        for point in self.mounts() {
            let _ = Command::new("umount").args(["-l", &point]).status();
        }
        for group in self.cgroups() {
            let _ = std::fs::remove_dir(group);
        }
        for socket in sockets {
            let _ = std::fs::remove_file(socket);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The notification the registry sends for a push of `repository:tag` at
/// `digest` by way of `host` (what the test posts to hoist in its place).
pub fn push_notification(host: &str, repository: &str, tag: &str, digest: &str) -> Value {
    json!({ "events": [{
        "id": unique("event"),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": 736, "repository": repository, "tag": tag,
            "url": format!("http://{host}/v2/{repository}/manifests/{digest}"),
        },
        "request": { "id": unique("request"), "host": host, "method": "PUT", "useragent": "docker/20.10" },
        "actor": { "name": "ci" },
        "source": { "addr": host }
    }]})
}

/// Posts `body` to hoist's Distribution hook and returns the status.
pub async fn post_notification(hook_url: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(hook_url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .json(body)
        .send()
        .await
        .expect("hoist answers")
        .status()
        .as_u16()
}
