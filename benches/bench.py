#!/usr/bin/env python3
"""hoist's benchmark suite. Run it through scripts/bench.sh (which builds hoist).

Measures, in one run, on this machine, against the real Docker engine and a
Distribution registry on 127.0.0.1:

1. push-to-running latency (and to healthy) of hoist vs. the floor, a script
   that pulls, stops, removes and runs by hand right after the push;
2. fan-out: one push matching 1, 10 and 50 containers, vs. the same by hand;
3. intake: webhook requests/s and latency under wrk, with 1,000 labelled
   (created, not started) containers in hoist's index;
4. footprint: idle RSS, RSS peak during fan-out, start-up time to ready,
   binary and image size;
5. a peer, ouroboros-cli (polls), on the same registry: detection latency and
   idle RSS;
6. downtime of one update: hoist's default (create before stop) vs. the floor
   on a twin container, by the engine's clock (old `die` → new `start`) and by
   an HTTP prober every 5 ms (longest gap); and hoist's start-first behind a
   network alias, probed from a container on that network (failed requests).

Everything it creates carries the prefix `hbench-<pid>-` and the label
`hbench.run=hbench-<pid>`, and is removed at the end, also on failure or ^C.
Only the Python standard library is used.
"""

import argparse
import csv
import datetime
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- helpers


def run(args, check=True, timeout=300, env=None, capture=True):
    """Runs a command; returns its stdout (stripped)."""
    result = subprocess.run(
        args,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return (result.stdout or "").strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(text):
    """RFC 3339 with up to nanoseconds ('...Z' or '+00:00') → epoch seconds (float)."""
    if not text or text.startswith("0001-"):
        return None
    text = text.strip()
    offset = 0.0
    if text.endswith("Z"):
        text = text[:-1]
    else:
        m = re.search(r"([+-])(\d\d):(\d\d)$", text)
        if m:
            sign = 1 if m.group(1) == "+" else -1
            offset = sign * (int(m.group(2)) * 3600 + int(m.group(3)) * 60)
            text = text[: m.start()]
    main, _, frac = text.partition(".")
    base = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + (float("0." + frac) if frac else 0.0) - offset


def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    values = sorted(values)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    k = (len(values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_rss_kib(pid):
    """RSS of a process and its children (ouroboros is one process, but be safe)."""
    total = rss_kib(pid) or 0
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    for child in children:
        total += tree_rss_kib(int(child))
    return total


def cpu_seconds(pid):
    """User + system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise BenchError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- engine API


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Engine:
    """The few Engine API calls the bench makes directly (fast polling, bulk create)."""

    def __init__(self):
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not host.startswith("unix://"):
            raise BenchError(f"DOCKER_HOST={host}: the bench talks to a local unix socket only")
        self.path = host[len("unix://"):]
        self.local = threading.local()

    def call(self, method, path, body=None):
        conn = getattr(self.local, "conn", None)
        for attempt in range(2):
            if conn is None:
                conn = UnixHTTPConnection(self.path)
                self.local.conn = conn
            try:
                data = json.dumps(body).encode() if body is not None else None
                headers = {"Content-Type": "application/json"} if data is not None else {}
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                return response.status, (json.loads(raw) if raw and raw[:1] in b"{[" else raw.decode(errors="replace"))
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                self.local.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def inspect(self, name):
        status, body = self.call("GET", f"/containers/{name}/json")
        return body if status == 200 else None

    def create(self, name, image, labels, cmd=None):
        body = {"Image": image, "Labels": labels}
        if cmd:
            body["Cmd"] = cmd
        status, answer = self.call("POST", f"/containers/create?name={name}", body)
        if status != 201:
            raise BenchError(f"create {name}: {status} {answer}")
        return answer["Id"]

    def remove(self, id_or_name):
        status, _ = self.call("DELETE", f"/containers/{id_or_name}?force=1&v=1")
        return status in (204, 404)


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, args):
        self.args = args
        self.prefix = f"hbench-{os.getpid()}"
        self.tmp = tempfile.mkdtemp(prefix=self.prefix + "-")
        self.engine = Engine()
        self.processes = []  # Popen objects to stop at the end
        self.rows = []  # CSV rows
        self.notes = []  # free-text findings for the report
        self.failures = []  # limits broken (the run exits 1 after writing its report)
        self.sections = {}  # name -> markdown
        self.hoist = None
        self.hoist_port = free_port()
        self.registry_port = free_port()
        self.registry = None
        # Containers run images by 127.0.0.1:PORT; pushes go to localhost:PORT,
        # the same registry under another name, so a push does not move the
        # tag the containers run on this engine (the deployer must pull, as on
        # a real host), and hoist is told the names are one registry.
        self.run_host = f"127.0.0.1:{self.registry_port}"
        self.push_host = f"localhost:{self.registry_port}"
        self.hoist_env = {
            "HOIST_LISTEN": f"127.0.0.1:{self.hoist_port}",
            "HOIST_WEBHOOK_TOKEN": TOKEN,
            "HOIST_STATE_DIR": os.path.join(self.tmp, "state"),
            "HOIST_REGISTRY_ALIASES": f"{self.run_host}={self.push_host}",
        }
        self.hoist_env.update(args.hoist_env)
        os.makedirs(self.hoist_env["HOIST_STATE_DIR"], exist_ok=True)
        self.label = {"hbench.run": self.prefix}
        # The 1-minute load average every 5 s: how busy the shared machine was.
        self.loads = []
        self.sampling = threading.Event()
        threading.Thread(target=self.sample_load, daemon=True).start()
        self.versions = {}  # (variant, i) -> local source tag

    def sample_load(self):
        while not self.sampling.is_set():
            try:
                with open("/proc/loadavg") as f:
                    self.loads.append(float(f.read().split()[0]))
            except OSError:
                pass
            self.sampling.wait(5)

    # ------------------------------------------------------------ cleanup

    def cleanup(self):
        log("cleaning up")
        if self.args.keep_logs:
            os.makedirs(self.args.keep_logs, exist_ok=True)
            for name in os.listdir(self.tmp):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(self.tmp, name), self.args.keep_logs)
        for p in reversed(self.processes):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        ids = run(["docker", "ps", "-aq", "--filter", f"label=hbench.run={self.prefix}"], check=False).split()
        ids += run(["docker", "ps", "-aq", "--filter", f"name=^/{self.prefix}-"], check=False).split()
        ids = sorted(set(ids))
        if ids:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(self.engine.remove, ids))
        images = run(["docker", "images", "-q", "--no-trunc", "--filter", f"label=hbench.run={self.prefix}"], check=False).split()
        images += [
            line.split()[1]
            for line in run(["docker", "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"], check=False).splitlines()
            if self.prefix in line.split()[0]
        ]
        images = sorted(set(images))
        # Children before parents: a parent with children is refused even with -f,
        # so go round until nothing more goes.
        for _ in range(4):
            if not images:
                break
            for chunk in range(0, len(images), 50):
                run(["docker", "rmi", "-f"] + images[chunk : chunk + 50], check=False)
            present = set(run(["docker", "images", "-q", "--no-trunc"], check=False).split())
            images = [i for i in images if i in present]
        run(["docker", "image", "prune", "-f", "--filter", f"label=hbench.run={self.prefix}"], check=False)
        for network in run(["docker", "network", "ls", "-q", "--filter", f"name={self.prefix}-"], check=False).split():
            run(["docker", "network", "rm", network], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, args, log_name, env=None):
        out = open(os.path.join(self.tmp, log_name), "ab")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes.append(p)
        return p

    def stop_process(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def record(self, section, metric, subject, value, unit, n="", notes=""):
        if isinstance(value, float):
            value = round(value, 4)
        self.rows.append([section, metric, subject, value, unit, n, notes])

    # ------------------------------------------------------------ images

    def build(self, tag, dockerfile, context=None):
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        if context:
            with open(os.path.join(context, "Dockerfile"), "w") as f:
                f.write(dockerfile)
            run(["docker", "build", "-q", "-t", tag, context], env=env)
        else:
            result = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, env=env, capture_output=True, timeout=300)
            if result.returncode != 0:
                raise BenchError(f"docker build {tag} failed: {result.stderr.strip()[-2000:]}")
        return run(["docker", "image", "inspect", "-f", "{{.Id}}", tag])

    def build_images(self, count):
        """Two bases (plain; with a healthcheck), then `count` versions of each,
        which differ only by a label: distinct image IDs and digests, same layers."""
        busybox = next((p for p in ("/usr/bin/busybox", "/bin/busybox") if os.path.exists(p)), None)
        if not busybox:
            raise BenchError("busybox is not installed (scripts/setup.sh installs busybox-static)")
        context = os.path.join(self.tmp, "image")
        os.makedirs(context)
        shutil.copy(busybox, os.path.join(context, "busybox"))
        # Stops at once on SIGTERM, so stop timeouts never count.
        cmd = "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
        base = self.build(
            f"{self.prefix}-base:plain",
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'RUN ["/bin/sh", "-c", "mkdir -p /www /tmp && echo hoist bench > /www/index.html"]\n'
            "ENV PATH=/bin\n"
            f"LABEL hbench.run={self.prefix}\n"
            "EXPOSE 8080\n"
            f"CMD {json.dumps(['/bin/sh', '-c', cmd])}\n",
            context,
        )
        self.build(
            f"{self.prefix}-base:health",
            f"FROM {self.prefix}-base:plain\n"
            'HEALTHCHECK --interval=1s --timeout=1s --retries=3 CMD ["/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]\n',
        )
        log(f"base image {base[7:19]}; building {count} versions of each variant")
        # The peer gets images of its own: ouroboros recreates a container from
        # the first of its new image's tags, so an image shared with another
        # repository would move its container there (see the report's notes).
        self.build(f"{self.prefix}-base:peer", f"FROM {self.prefix}-base:plain\nLABEL hbench.peer=true\n")
        for variant in ("plain", "health", "peer"):
            for i in range(count if variant != "peer" else self.args.peer_iterations + 1):
                tag = f"{self.prefix}-src-{variant}:v{i}"
                self.build(tag, f"FROM {self.prefix}-base:{variant}\nLABEL hbench.version={i}\n")
                self.versions[(variant, i)] = tag

    def image_id(self, tag):
        return run(["docker", "image", "inspect", "-f", "{{.Id}}", tag])

    def push(self, source_tag, repository):
        """Tags `source_tag` as localhost:PORT/repository:latest and pushes it.
        Returns (digest, the moment the push returned)."""
        ref = f"{self.push_host}/{repository}:latest"
        run(["docker", "tag", source_tag, ref])
        out = run(["docker", "push", ref], timeout=120)
        returned = time.time()
        m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
        if not m:
            raise BenchError(f"no digest in push output: {out}")
        return m.group(1), returned

    def seed(self, source_tag, repository):
        """First version of a repository: pushed, then pulled under the run name."""
        self.push(source_tag, repository)
        ref = f"{self.run_host}/{repository}:latest"
        run(["docker", "pull", "-q", ref], timeout=120)
        return ref

    def docker_run(self, name, image, labels):
        args = ["docker", "run", "-d", "--name", name]
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        run(args + [image])

    def run_labels(self, hoist):
        labels = dict(self.label)
        if hoist:
            labels["hoist.enable"] = "true"
        return labels

    # ------------------------------------------------------------ registry, hoist

    def start_registry(self):
        root = os.path.join(self.tmp, "registry")
        os.makedirs(root)
        config = (
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.registry_port}\n"
            "notifications:\n  endpoints:\n"
            f"    - name: hoist\n      url: http://127.0.0.1:{self.hoist_port}/v1/hooks/distribution\n"
            f"      headers:\n        Authorization: [Bearer {TOKEN}]\n"
            "      timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
            "      ignore:\n        mediatypes: [application/octet-stream]\n        actions: [pull, mount]\n"
        )
        path = os.path.join(root, "config.yml")
        with open(path, "w") as f:
            f.write(config)
        self.registry_config = config
        self.registry = self.spawn(["docker-registry", "serve", path], "registry.log")

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.registry_port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(up, 15, what="the registry")

    def hoist_get(self, path, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.hoist_port, timeout=timeout)
        try:
            # The read API wants the webhook token (/healthz ignores it).
            conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            body = response.read()
            return response.status, body
        finally:
            conn.close()

    def hoist_json(self, path):
        status, body = self.hoist_get(path)
        if status != 200:
            raise BenchError(f"GET {path}: {status}")
        return json.loads(body)

    def start_hoist(self, log_name="hoist.log", extra_env=None):
        """Starts hoist; returns the seconds from process start to /healthz 200."""
        env = dict(os.environ)
        env.update(self.hoist_env)
        env.update(extra_env or {})
        env.setdefault("RUST_LOG", "hoist=info")
        started = time.time()
        p = self.spawn([self.args.hoist, "run"], log_name, env=env)

        def ready():
            if p.poll() is not None:
                raise BenchError(f"hoist exited with {p.returncode}; see {log_name}: {self.tail(log_name)}")
            try:
                status, _ = self.hoist_get("/healthz", timeout=2)
                return status == 200
            except OSError:
                return False

        wait_until(ready, 90, interval=0.005, what="hoist /healthz")
        self.hoist = p
        self.hoist_log = log_name
        return time.time() - started

    def log_window(self, log_name, since, until, name):
        """hoist's log lines about `name` stamped between since and until, as offsets from since."""
        out = []
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        try:
            with open(os.path.join(self.tmp, log_name), errors="replace") as f:
                for line in f:
                    line = ansi.sub("", line.rstrip())
                    stamp, _, rest = line.partition(" ")
                    try:
                        t = parse_time(stamp)
                    except ValueError:
                        continue
                    if t is not None and since - 1.0 <= t <= until and re.search(f"{re.escape(name)}(:|=|\"|-hoist-old|$| )", rest):
                        out.append(f"{t - since:+8.3f}s  {rest.strip()}")
        except OSError:
            pass
        return out

    def stop_hoist(self):
        if self.hoist:
            self.stop_process(self.hoist)
            self.hoist = None

    def tail(self, log_name, lines=20):
        try:
            with open(os.path.join(self.tmp, log_name), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def wait_targets(self, names, timeout=60):
        names = set(names)

        def listed():
            targets = self.hoist_json("/v1/targets")["targets"]
            return names <= {t["name"] for t in targets}

        wait_until(listed, timeout, interval=0.1, what=f"hoist to index {len(names)} containers")

    def wait_job(self, digest, repository, timeout):
        """hoist's finished job for this push (the same image pushed to two
        repositories has one digest, so the repository must match too)."""

        def found():
            for job in self.hoist_json("/v1/history")["jobs"]:
                if job["new_digest"] == digest and f"/{repository}:" in job["image"]:
                    return job
            return None

        return wait_until(found, timeout, interval=0.1, what=f"hoist's job for {digest[:19]}")

    def wait_running(self, name, image_id, timeout):
        def check():
            c = self.engine.inspect(name)
            if c and c["Image"] == image_id and c["State"]["Running"]:
                return c
            return None

        return wait_until(check, timeout, interval=0.05, what=f"{name} to run {image_id[7:19]}")

    def wait_healthy(self, name, timeout):
        def check():
            c = self.engine.inspect(name)
            health = (c or {}).get("State", {}).get("Health") or {}
            if health.get("Status") == "healthy":
                return c
            if health.get("Status") == "unhealthy":
                raise BenchError(f"{name} became unhealthy")
            return None

        c = wait_until(check, timeout, interval=0.05, what=f"{name} to be healthy")
        passed = [parse_time(e["End"]) for e in c["State"]["Health"]["Log"] if e.get("ExitCode") == 0]
        return min(passed)

    def engine_timeline(self, since, until, names):
        """The engine's events for these containers (and image pulls), as seconds after `since`."""
        out = run(
            ["docker", "events", "--since", f"{since - 0.5:.3f}", "--until", f"{until + 0.5:.3f}", "--format", "{{json .}}"],
            check=False,
            timeout=30,
        )
        lines = []
        for line in out.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            attrs = (e.get("Actor") or {}).get("Attributes") or {}
            name = attrs.get("name", "")
            if e.get("Type") == "container" and not any(name in (n, n + "-hoist-old") for n in names):
                continue
            if e.get("Type") == "image" and (e.get("Action") not in ("pull", "tag") or not any(re.search(f"/{re.escape(n)}(:|@|$)", e.get("id", "")) for n in names)):
                continue
            if e.get("Type") not in ("container", "image"):
                continue
            if e.get("Action", "").startswith(("exec_", "health_status")):
                continue
            t = e["timeNano"] / 1e9 - since
            lines.append(f"{t:+8.3f}s  {e['Type']:9} {e['Action']:8} {name or e.get('id', '')[:60]}")
        return lines

    # ------------------------------------------------------------ 1. latency

    def latency(self):
        n = self.args.iterations
        results = {key: [] for key in ("hoist", "floor", "hoist_h", "floor_h")}
        subjects = {
            "hoist": (f"{self.prefix}-lat", "plain", True),
            "floor": (f"{self.prefix}-latfloor", "plain", False),
            "hoist_h": (f"{self.prefix}-lath", "health", True),
            "floor_h": (f"{self.prefix}-latfloorh", "health", False),
        }
        for key, (name, variant, hoisted) in subjects.items():
            image = self.seed(self.versions[(variant, 0)], name)
            self.docker_run(name, image, self.run_labels(hoisted))
        self.wait_targets([subjects["hoist"][0], subjects["hoist_h"][0]])
        timelines = {}
        log(f"latency: {n} pushes each to hoist's and the floor's container (plain, then with a healthcheck)")
        for i in range(1, n + 1):
            # Interleaved, so drift (other load on the engine) hits both alike.
            for key, (name, variant, hoisted) in subjects.items():
                source = self.versions[(variant, i)]
                new_id = self.image_id(source)
                digest, t0 = self.push(source, name)
                sample = {}
                if not hoisted:
                    run([os.path.join(ROOT, "benches", "floor.sh"), f"{self.run_host}/{name}:latest", name, "--"] + [f"--label=hbench.run={self.prefix}"])
                    sample["script_done"] = time.time() - t0
                c = self.wait_running(name, new_id, 120)
                sample["running"] = parse_time(c["State"]["StartedAt"]) - t0
                if variant == "health":
                    sample["healthy"] = self.wait_healthy(name, 60) - t0
                if hoisted:
                    job = self.wait_job(digest, name, 180)
                    outcomes = [t["outcome"]["result"] for t in job["targets"]]
                    if outcomes != ["updated"]:
                        raise BenchError(f"hoist's job for {name}: {outcomes} {job}")
                    start = parse_time(job["started_at"])
                    sample["job_started"] = start - t0
                    sample["job_finished"] = start + job["duration"] / 1000.0 - t0
                results[key].append(sample)
                if key in ("hoist", "floor"):
                    # The engine's own account of every plain push, to explain outliers.
                    tl = self.engine_timeline(t0, time.time(), [name])
                    tl.insert(0, f"   0.000s  (push returned; digest {digest[:19]}…)")
                    if key == "hoist":
                        tl += ["", "hoist's log (seconds after the push returned):"] + self.log_window(self.hoist_log, t0, t0 + sample["job_finished"] + 0.5, name)
                    timelines.setdefault(key, []).append((sample["running"], i, tl))
            log(
                f"  push {i}/{n}: hoist running {results['hoist'][-1]['running']:.3f}s (job done {results['hoist'][-1]['job_finished']:.3f}s), "
                f"floor {results['floor'][-1]['running']:.3f}s; healthy: hoist {results['hoist_h'][-1]['healthy']:.3f}s, floor {results['floor_h'][-1]['healthy']:.3f}s"
            )
        self.latency_results = results
        self.latency_timelines = timelines

        def stat(key, field):
            values = [s[field] for s in results[key]]
            return statistics.median(values), percentile(values, 95), values

        table = [
            "| Measure (seconds after `docker push` returned) | hoist median | hoist p95 | floor median | floor p95 | hoist/floor (median) |",
            "|---|---:|---:|---:|---:|---:|",
        ]

        def line(label, hk, hf, fk, ff, metric):
            hm, hp, hv = stat(hk, hf)
            fm, fp, fv = stat(fk, ff)
            ratio = hm / fm if fm > 0 else float("nan")
            table.append(f"| {label} | {hm:.3f} | {hp:.3f} | {fm:.3f} | {fp:.3f} | {ratio:.2f} |")
            self.record("latency", metric + "_median", "hoist", hm, "s", len(hv))
            self.record("latency", metric + "_p95", "hoist", hp, "s", len(hv))
            self.record("latency", metric + "_median", "floor", fm, "s", len(fv))
            self.record("latency", metric + "_p95", "floor", fp, "s", len(fv))
            self.record("latency", metric + "_ratio", "hoist/floor", ratio, "x", len(hv))
            return ratio

        r_run = line("New image running (plain image)", "hoist", "running", "floor", "running", "push_to_running")
        line("New image running (image with healthcheck)", "hoist_h", "running", "floor_h", "running", "push_to_running_hc")
        line("Healthy (image with healthcheck)", "hoist_h", "healthy", "floor_h", "healthy", "push_to_healthy")
        for key, label in (("hoist", "plain"), ("hoist_h", "healthcheck")):
            for field, what in (("job_started", "job started"), ("job_finished", "job finished")):
                m, p, v = stat(key, field)
                table.append(f"| hoist {what} ({label} image; `/v1/history`) | {m:.3f} | {p:.3f} | | | |")
                self.record("latency", f"{field}_{label}_median", "hoist", m, "s", len(v))
                self.record("latency", f"{field}_{label}_p95", "hoist", p, "s", len(v))
        for key, label in (("floor", "plain"), ("floor_h", "healthcheck")):
            m, p, v = stat(key, "script_done")
            table.append(f"| floor script returned ({label} image) | | | {m:.3f} | {p:.3f} | |")
            self.record("latency", f"script_done_{label}_median", "floor", m, "s", len(v))
        self.sections["latency"] = "\n".join(table)
        self.latency_ratio = r_run
        raw = ["| push | " + " | ".join(["hoist running", "hoist job done", "floor running", "hoist(hc) running", "hoist(hc) healthy", "hoist(hc) job done", "floor(hc) running", "floor(hc) healthy"]) + " |", "|---" * 9 + "|"]
        for i in range(n):
            h, f, hh, fh = (results[k][i] for k in ("hoist", "floor", "hoist_h", "floor_h"))
            raw.append(
                f"| {i + 1} | {h['running']:.3f} | {h['job_finished']:.3f} | {f['running']:.3f} | {hh['running']:.3f} | {hh['healthy']:.3f} | {hh['job_finished']:.3f} | {fh['running']:.3f} | {fh['healthy']:.3f} |"
            )
        self.sections["latency_raw"] = "\n".join(raw)
        for key, (name, _, _) in subjects.items():
            self.engine.remove(name)
        if self.args.keep_logs:
            os.makedirs(self.args.keep_logs, exist_ok=True)
            with open(os.path.join(self.args.keep_logs, "latency-timelines.txt"), "w") as f:
                for key, entries in timelines.items():
                    for running, i, tl in entries:
                        f.write(f"== {key} push {i}: running after {running:.3f}s\n" + "\n".join(tl) + "\n\n")

    # ------------------------------------------------------------ 6. downtime

    def run_with(self, name, image, labels, options):
        args = ["docker", "run", "-d", "--name", name]
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        return run(args + options + [image])

    def container_events(self, since, until, ids):
        """(time, action, id) of the engine's events for these container IDs."""
        out = run(
            ["docker", "events", "--since", f"{since - 0.5:.3f}", "--until", f"{until:.3f}", "--filter", "type=container", "--format", "{{json .}}"],
            check=False,
            timeout=30,
        )
        events = []
        for line in out.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("id") in ids and not e.get("Action", "").startswith(("exec_", "health_status")):
                events.append((e["timeNano"] / 1e9, e.get("Action", ""), e["id"]))
        return events

    @staticmethod
    def http_prober(port, stop, samples):
        """GET http://127.0.0.1:port/ every 5 ms until `stop`; appends (time, ok)."""
        while not stop.is_set():
            ok = False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                conn.close()
            except (OSError, http.client.HTTPException):
                pass
            samples.append((time.time(), ok))
            time.sleep(0.005)

    @staticmethod
    def longest_gap(samples, since):
        """The longest time between two successful responses, from the last one before `since`."""
        oks = [t for t, ok in samples if ok]
        before = [t for t in oks if t < since]
        oks = ([before[-1]] if before else []) + [t for t in oks if t >= since]
        return max((b - a for a, b in zip(oks, oks[1:])), default=float("nan"))

    def one_outage(self, name, port, source, hoisted, floor_options):
        """One update of `name` (published on `port`): the engine's outage
        (old die → new start) and the prober's longest gap, in seconds."""
        old_id = self.engine.inspect(name)["Id"]
        new_image = self.image_id(source)
        samples, stop = [], threading.Event()
        prober = threading.Thread(target=self.http_prober, args=(port, stop, samples), daemon=True)
        prober.start()
        wait_until(lambda: any(ok for _, ok in samples), 10, interval=0.01, what=f"{name} to answer on {port}")
        digest, t0 = self.push(source, name)
        if not hoisted:
            run([os.path.join(ROOT, "benches", "floor.sh"), f"{self.run_host}/{name}:latest", name, "--"] + floor_options)
        c = self.wait_running(name, new_image, 120)
        if hoisted:
            job = self.wait_job(digest, name, 180)
            if [t["outcome"]["result"] for t in job["targets"]] != ["updated"]:
                raise BenchError(f"hoist's job for {name}: {job}")
        # The prober sees the new container answer, then stops.
        settle = time.time()
        wait_until(lambda: any(ok and t > settle for t, ok in samples), 10, interval=0.01, what=f"{name} to answer again")
        stop.set()
        prober.join(5)
        events = self.container_events(t0, time.time(), {old_id, c["Id"]})
        died = min((t for t, a, i in events if a == "die" and i == old_id), default=None)
        started = min((t for t, a, i in events if a == "start" and i == c["Id"]), default=None)
        created = min((t for t, a, i in events if a == "create" and i == c["Id"]), default=None)
        if died is None or started is None:
            raise BenchError(f"no die/start events for {name}: {events}")
        failed = sum(1 for t, ok in samples if not ok and t >= t0)
        who = {old_id: "old", c["Id"]: "new"}
        timeline = [f"{t - died:+8.3f}s  {who[i]:3} {a}" for t, a, i in sorted(events)]
        return {
            "timeline": timeline,
            "outage": started - died,
            "gap": self.longest_gap(samples, t0),
            "create_before_die": created is not None and created < died,
            "failed": failed,
            "requests": sum(1 for t, _ in samples if t >= t0),
        }

    def start_first_push(self, name, prober, source):
        """One start-first update; returns (failed requests, requests) in its window."""
        def counts():
            log = run(["docker", "logs", prober], check=False)
            lines = log.splitlines()
            return sum(1 for l in lines if l.startswith("FAIL")), len(lines)

        failed0, total0 = counts()
        digest, t0 = self.push(source, name)
        job = self.wait_job(digest, name, 180)
        if [t["outcome"]["result"] for t in job["targets"]] != ["updated"]:
            raise BenchError(f"hoist's start-first job for {name}: {job}")
        time.sleep(0.5)
        failed1, total1 = counts()
        return failed1 - failed0, total1 - total0, parse_time(job["started_at"]) + job["duration"] / 1000.0 - t0, t0

    def downtime(self):
        n = self.args.iterations
        down, floor = f"{self.prefix}-down", f"{self.prefix}-downfloor"
        port_h, port_f = free_port(), free_port()
        floor_options = [f"--label=hbench.run={self.prefix}", "-p", f"127.0.0.1:{port_f}:8080"]
        self.run_with(down, self.seed(self.versions[("plain", 0)], down), self.run_labels(True), ["-p", f"127.0.0.1:{port_h}:8080"])
        self.run_with(floor, self.seed(self.versions[("plain", 0)], floor), self.run_labels(False), ["-p", f"127.0.0.1:{port_f}:8080"])
        # start-first behind a network alias, and a prober on that network.
        network, sf, prober = f"{self.prefix}-net", f"{self.prefix}-sf", f"{self.prefix}-sfprobe"
        run(["docker", "network", "create", "--label", f"hbench.run={self.prefix}", network])
        labels = dict(self.run_labels(True), **{"hoist.order": "start-first"})
        self.run_with(sf, self.seed(self.versions[("plain", 0)], sf), labels, ["--network", network, "--network-alias", "sfsvc"])
        # busybox's own resolver (the static busybox's wget cannot resolve in a
        # scratch image), then one request to the address it got; like
        # tests/strategies.rs.
        script = (
            "while :; do "
            "ip=$(nslookup sfsvc 127.0.0.11 2>/dev/null | awk '/^Address/ && !/127.0.0.11/ {print $NF; exit}'); "
            "if [ -n \"$ip\" ] && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 \"$ip\" 8080 | grep -q '200 OK'; "
            "then echo ok; else echo \"FAIL $ip\"; fi; usleep 5000; done"
        )
        run(["docker", "run", "-d", "--name", prober, "--label", f"hbench.run={self.prefix}", "--network", network, "--entrypoint", "/bin/sh", f"{self.prefix}-base:plain", "-c", script])
        self.wait_targets([down, sf])
        log(f"downtime: {n} updates each of hoist's default, the floor and hoist's start-first")
        results = {"hoist": [], "floor": [], "sf": []}
        for i in range(1, n + 1):
            source = self.versions[("plain", i)]
            results["hoist"].append(self.one_outage(down, port_h, source, True, None))
            results["floor"].append(self.one_outage(floor, port_f, source, False, floor_options))
            results["sf"].append(self.start_first_push(sf, prober, source))
            h, f, (sf_failed, sf_total, sf_job, _) = results["hoist"][-1], results["floor"][-1], results["sf"][-1]
            log(
                f"  update {i}/{n}: outage hoist {h['outage'] * 1000:.0f} ms (gap {h['gap'] * 1000:.0f} ms), floor {f['outage'] * 1000:.0f} ms (gap {f['gap'] * 1000:.0f} ms); "
                f"start-first {sf_failed} failed of {sf_total} requests (job {sf_job:.1f} s)"
            )
        # Every request the prober made from the first update on, between
        # updates too (a fault may outlast an update's window).
        probe_log = run(["docker", "logs", "-t", prober], check=False).splitlines()
        first_push = min(r[3] for r in results["sf"])
        whole = []
        for line in probe_log:
            try:
                t = parse_time(line.split()[0])
            except (ValueError, IndexError):
                continue
            if t is not None and t >= first_push:
                whole.append(line)
        whole_failed = [l for l in whole if " FAIL" in l]
        ms = lambda v: v * 1000
        med = lambda key, field: statistics.median(r[field] for r in results[key])
        p95 = lambda key, field: percentile([r[field] for r in results[key]], 95)
        h_out, f_out = med("hoist", "outage"), med("floor", "outage")
        h_gap, f_gap = med("hoist", "gap"), med("floor", "gap")
        ratio = h_out / f_out if f_out > 0 else float("nan")
        gap_ratio = h_gap / f_gap if f_gap > 0 else float("nan")
        sf_failed = sum(r[0] for r in results["sf"])
        sf_total = sum(r[1] for r in results["sf"])
        sf_job = statistics.median(r[2] for r in results["sf"])
        cbs = sum(1 for r in results["hoist"] if r["create_before_die"])
        table = [
            f"| Measure ({n} updates each, interleaved) | hoist default (create before stop) | floor (pull; stop; rm; run) | hoist/floor | target |",
            "|---|---:|---:|---:|---|",
            f"| Outage by the engine's clock (old `die` → new `start`), median | {ms(h_out):.0f} ms | {ms(f_out):.0f} ms | {ratio:.2f} | ≤ 0.50: {'met' if ratio <= 0.5 else '**missed**'} |",
            f"| … p95 | {ms(p95('hoist', 'outage')):.0f} ms | {ms(p95('floor', 'outage')):.0f} ms | | |",
            f"| Longest gap seen by an HTTP prober every 5 ms on the published port, median | {ms(h_gap):.0f} ms | {ms(f_gap):.0f} ms | {gap_ratio:.2f} | (reported beside; noisy here) |",
            f"| … p95 | {ms(p95('hoist', 'gap')):.0f} ms | {ms(p95('floor', 'gap')):.0f} ms | | |",
            f"| Updates whose new container was created before the old one died | {cbs} of {n} | 0 of {n} | | |",
            "",
            "| start-first behind a network alias (prober container on the network, every 5 ms) | hoist | target |",
            "|---|---:|---|",
            f"| Failed requests in the updates' windows (push → job finished + 0.5 s), {n} updates | {sf_failed} of {sf_total} | 0: {'met' if sf_failed == 0 else '**missed**'} |",
            f"| Failed requests from the first push to the end, between updates too | {len(whole_failed)} of {len(whole)} | 0: {'met' if not whole_failed else '**missed**'} |",
            f"| Job finished (push → old removed; 5 s gate, 2 s drain), median | {sf_job:.2f} s | |",
        ]
        self.sections["downtime"] = "\n".join(table)
        raw = ["| update | hoist outage | hoist gap | floor outage | floor gap | start-first failed / requests |", "|---|---:|---:|---:|---:|---:|"]
        for i in range(n):
            h, f, sfr = results["hoist"][i], results["floor"][i], results["sf"][i]
            raw.append(f"| {i + 1} | {ms(h['outage']):.0f} ms | {ms(h['gap']):.0f} ms | {ms(f['outage']):.0f} ms | {ms(f['gap']):.0f} ms | {sfr[0]} / {sfr[1]} |")
        self.sections["downtime_raw"] = "\n".join(raw)
        self.downtime_targets = {"ratio": ratio, "sf_failed": sf_failed}
        self.downtime_timelines = [("hoist", results["hoist"][0]["timeline"]), ("the floor", results["floor"][0]["timeline"])]
        for who, tl in self.downtime_timelines:
            log(f"  first update, {who}: " + "; ".join(line.strip() for line in tl))
        self.record("downtime", "outage_median", "hoist", h_out, "s", n)
        self.record("downtime", "outage_median", "floor", f_out, "s", n)
        self.record("downtime", "outage_ratio", "hoist/floor", ratio, "x", n)
        self.record("downtime", "prober_gap_median", "hoist", h_gap, "s", n)
        self.record("downtime", "prober_gap_median", "floor", f_gap, "s", n)
        self.record("downtime", "failed_requests", "hoist:start-first", sf_failed, "requests", n, f"of {sf_total}")
        self.record("downtime", "failed_requests_whole_run", "hoist:start-first", len(whole_failed), "requests", n, f"of {len(whole)}")
        if whole_failed:
            self.notes.append(
                f"start-first: {len(whole_failed)} failed requests over the run; the first and last: {whole_failed[0].strip()} … {whole_failed[-1].strip()} "
                "(`FAIL` with no address: the engine's DNS did not answer the alias)."
            )
        self.record("downtime", "job_finished_median", "hoist:start-first", sf_job, "s", n)
        for name in (down, floor, sf, prober):
            self.engine.remove(name)
        run(["docker", "network", "rm", network], check=False)

    # ------------------------------------------------------------ 2. fan-out

    def fanout_one(self, who, count, repo_suffix):
        """One push to a repository `count` containers run; returns the measurements."""
        hoisted = who != "floor"
        repo = f"{self.prefix}-fan{count}{repo_suffix}"
        image = self.seed(self.versions[("plain", 0)], repo)
        names = [f"{repo}-{k:02d}" for k in range(count)]
        labels = self.run_labels(hoisted)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda nm: self.docker_run(nm, image, labels), names))
        res = {}
        if hoisted:
            self.wait_targets(names)
            # Peak RSS from here on: clear_refs 5 resets VmHWM.
            try:
                with open(f"/proc/{self.hoist.pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError as e:
                self.notes.append(f"could not reset hoist's VmHWM ({e}); the fan-out peak includes start-up")
        source = self.versions[("plain", 1)]
        new_id = self.image_id(source)
        digest, t0 = self.push(source, repo)
        if not hoisted:
            run([os.path.join(ROOT, "benches", "floor.sh"), image] + names + ["--", f"--label=hbench.run={self.prefix}"], timeout=900)
            res["script"] = time.time() - t0
        started = [parse_time(self.wait_running(nm, new_id, 900)["State"]["StartedAt"]) for nm in names]
        res["running"] = max(started) - t0
        if hoisted:
            job = self.wait_job(digest, repo, 900)
            outcomes = {t["outcome"]["result"] for t in job["targets"]}
            if outcomes != {"updated"} or len(job["targets"]) != count:
                raise BenchError(f"fan-out {count}: {outcomes}, {len(job['targets'])} targets")
            res["job"] = parse_time(job["started_at"]) + job["duration"] / 1000.0 - t0
            res["peak"] = rss_kib(self.hoist.pid, "VmHWM")
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(self.engine.remove, names))
        return res

    def fanout(self):
        """Per count: hoist with its defaults, the floor, then hoist with
        HOIST_HEALTH_GRACE=0s (only "is it running?", like the floor), to show
        what the health gate costs."""
        counts = self.args.fanout
        table = [
            "| Containers | hoist: all running new image | hoist: job finished | floor (sequential script): all running | hoist/floor (all running) | hoist with `HOIST_HEALTH_GRACE=0s`: all running / job finished | hoist RSS peak | targets: all running ≤ 0.5 × floor; job ≤ floor's script + 5 s (one health grace) |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        peak_overall = 0
        for count in counts:
            h = self.fanout_one("hoist", count, "")
            f = self.fanout_one("floor", count, "floor")
            self.restart_hoist({"HOIST_HEALTH_GRACE": "0s"})
            g = self.fanout_one("hoist", count, "nograce")
            self.restart_hoist({})
            peak_overall = max(peak_overall, h["peak"] or 0)
            ratio = h["running"] / f["running"] if f["running"] > 0 else float("nan")
            log(
                f"fan-out {count}: hoist all running {h['running']:.2f}s (job {h['job']:.2f}s), floor {f['running']:.2f}s, "
                f"hoist grace 0s {g['running']:.2f}s (job {g['job']:.2f}s); peak RSS {h['peak']} KiB"
            )
            met = lambda ok: "met" if ok else "**missed**"
            table.append(
                f"| {count} | {h['running']:.2f} s | {h['job']:.2f} s | {f['running']:.2f} s | {ratio:.2f} | {g['running']:.2f} s / {g['job']:.2f} s | {h['peak'] / 1024:.1f} MiB | "
                f"{met(ratio <= 0.5)} ({ratio:.2f}); {met(h['job'] <= f['script'] + 5.0)} ({h['job']:.2f} s vs {f['script'] + 5.0:.2f} s) |"
            )
            self.record("fanout", "all_running", f"hoist:{count}", h["running"], "s", 1)
            self.record("fanout", "job_finished", f"hoist:{count}", h["job"], "s", 1)
            self.record("fanout", "all_running", f"floor:{count}", f["running"], "s", 1)
            self.record("fanout", "script_done", f"floor:{count}", f["script"], "s", 1)
            self.record("fanout", "ratio", f"hoist/floor:{count}", ratio, "x", 1)
            self.record("fanout", "all_running", f"hoist-grace0:{count}", g["running"], "s", 1)
            self.record("fanout", "job_finished", f"hoist-grace0:{count}", g["job"], "s", 1)
            self.record("fanout", "rss_peak", f"hoist:{count}", h["peak"], "KiB", 1)
        self.sections["fanout"] = "\n".join(table)
        self.fanout_peak = peak_overall

    def restart_hoist(self, extra_env):
        self.stop_hoist()
        self.start_hoist(f"hoist-main-{len(self.processes)}.log", extra_env)

    # ------------------------------------------------------------ 3+4. intake and idle footprint

    def make_targets(self, count):
        """`count` labelled containers, created but not started, on 20 image tags nobody pushes."""
        tags = []
        for k in range(20):
            tag = f"{self.run_host}/{self.prefix}-idx{k}:1"
            run(["docker", "tag", f"{self.prefix}-base:plain", tag])
            tags.append(tag)
        labels = dict(self.label, **{"hoist.enable": "true"})
        started = time.time()
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda k: self.engine.create(f"{self.prefix}-idx-{k:04d}", tags[k % len(tags)], labels), range(count)))
        log(f"created {count} labelled containers in {time.time() - started:.1f}s")
        return ids

    def remove_targets(self, ids):
        started = time.time()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self.engine.remove, ids))
        log(f"removed {len(ids)} containers in {time.time() - started:.1f}s")

    def metric_values(self):
        status, body = self.hoist_get("/metrics")
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    values[key] = float(value)
                except ValueError:
                    pass
        return values

    def intake_and_idle(self):
        count = self.args.targets
        # Start-up and idle RSS with none of our containers (other users' labelled
        # containers on this engine, if any, are indexed too and counted).
        startups_empty, idle_empty = [], []
        for k in range(self.args.startups):
            startups_empty.append(self.start_hoist(f"hoist-empty-{k}.log"))
            time.sleep(2)
            idle_empty.append(rss_kib(self.hoist.pid))
            targets_seen = len(self.hoist_json("/v1/targets")["targets"])
            self.stop_hoist()
        ids = self.make_targets(count)
        try:
            startups, idle = [], []
            for k in range(self.args.startups):
                startups.append(self.start_hoist(f"hoist-{count}-{k}.log"))
                indexed = len(self.hoist_json("/v1/targets")["targets"])
                if indexed < count:
                    raise BenchError(f"hoist indexed {indexed} of {count} containers")
                time.sleep(2)
                idle.append(rss_kib(self.hoist.pid))
                if k < self.args.startups - 1:
                    self.stop_hoist()
            self.idle = {
                "startup_empty": statistics.median(startups_empty),
                "idle_empty": statistics.median(idle_empty),
                "targets_seen_empty": targets_seen,
                "startup": statistics.median(startups),
                "startups": startups,
                "idle": statistics.median(idle),
                "indexed": indexed,
            }
            log(f"start-up to ready: {self.idle['startup']:.3f}s with {indexed} targets ({self.idle['startup_empty']:.3f}s with {targets_seen}); idle RSS {self.idle['idle']} KiB ({self.idle['idle_empty']} KiB)")
            self.intake(indexed)
        finally:
            self.stop_hoist()
            self.remove_targets(ids)

    def intake(self, indexed):
        payloads = self.args.payloads
        if not os.path.isdir(payloads) or not any(n.startswith("distribution-") for n in os.listdir(payloads)):
            raise BenchError(f"no Distribution payloads in {payloads} (--payloads)")
        before = self.metric_values()
        rss_before = rss_kib(self.hoist.pid)
        results = []
        for conns in self.args.connections:
            args = [
                "wrk", "-t2", f"-c{conns}", f"-d{self.args.intake_seconds}s", "--timeout", "5s",
                "-s", os.path.join(ROOT, "benches", "intake.lua"),
                f"http://127.0.0.1:{self.hoist_port}", "--", payloads, TOKEN, "0.5",
            ]
            perf = None
            perf_out = os.environ.get("BENCH_PERF_OUT")
            if perf_out and not results:
                # A CPU profile of hoist during the first run (use an unstripped build).
                perf = subprocess.Popen(
                    ["perf", "record", "-q", "-F", "997", "-e", "cpu-clock", "-g", "-p", str(self.hoist.pid), "-o", f"{perf_out}.data"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            cpu_before = cpu_seconds(self.hoist.pid)
            out = run(args, timeout=self.args.intake_seconds + 60)
            cpu = cpu_seconds(self.hoist.pid) - cpu_before
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=60)
                for mode, suffix in ((["--no-children"], "self"), (["--children"], "children"), (["--no-children", "--sort", "dso"], "dso")):
                    report = run(["perf", "report", "--stdio", "-i", f"{perf_out}.data", "-g", "none", "--percent-limit", "0.7"] + mode, check=False, timeout=300)
                    with open(f"{perf_out}.{suffix}.txt", "w") as f:
                        f.write(report)
                log(f"perf profile written to {perf_out}.self.txt and .children.txt")
            m = re.search(r"^INTAKE_JSON (.*)$", out, re.M)
            if not m:
                raise BenchError(f"wrk printed no summary: {out}")
            r = json.loads(m.group(1))
            r["connections"] = conns
            r["cpu"] = cpu
            r["cpu_us"] = cpu / r["requests"] * 1e6 if r["requests"] else float("nan")
            r["cmd"] = " ".join(args).replace(TOKEN, "$TOKEN")
            results.append(r)
            log(f"intake c={conns}: {r['rps']:.0f} req/s, hoist CPU {r['cpu_us']:.1f} µs/request, p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, statuses {r['statuses']}, errors {r['errors']}")
        time.sleep(1)
        after = self.metric_values()
        rss_after = rss_kib(self.hoist.pid)
        hwm = rss_kib(self.hoist.pid, "VmHWM")
        # Memory per distinct tag: every other request a push to a tag never seen before.
        args = [
            "wrk", "-t2", "-c16", f"-d{self.args.intake_seconds}s", "--timeout", "5s",
            "-s", os.path.join(ROOT, "benches", "intake.lua"),
            f"http://127.0.0.1:{self.hoist_port}", "--", payloads, TOKEN, "0.5", "unique",
        ]
        out = run(args, timeout=self.args.intake_seconds + 60)
        unique = json.loads(re.search(r"^INTAKE_JSON (.*)$", out, re.M).group(1))
        time.sleep(1)
        rss_unique = rss_kib(self.hoist.pid)
        tags = unique["requests"] // 2
        per_tag = (rss_unique - rss_after) * 1024 / tags if tags else float("nan")
        log(f"intake, a new tag every other request: {unique['rps']:.0f} req/s; RSS {rss_after} -> {rss_unique} KiB after ~{tags} distinct tags ({per_tag:.0f} B/tag)")
        self.record("intake", "rss_growth_per_distinct_tag", "hoist", per_tag, "bytes", tags)
        journaled = self.intake_journaled(payloads)

        def delta(prefix):
            return sum(v - before.get(k, 0) for k, v in after.items() if k.startswith(prefix))

        received = {verdict: delta(f'hoist_events_received_total{{source="distribution",verdict="{verdict}"}}') for verdict in ("update", "ignored", "queue_full", "malformed", "unauthorized")}
        queue_full = delta("hoist_queue_full_total")
        table = [
            "| Connections | Requests/s | p50 | p90 | p99 | max | hoist CPU per request | Requests per hoist CPU-second | Requests | Answers | Socket errors |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in results:
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
            errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items() if v) or "none"
            table.append(
                f"| {r['connections']} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} ms | {r['p90_us'] / 1000:.2f} ms | {r['p99_us'] / 1000:.2f} ms | {r['max_us'] / 1000:.1f} ms "
                f"| {r['cpu_us']:.0f} µs | {1e6 / r['cpu_us']:,.0f} | {r['requests']:,} | {answers} | {errors} |"
            )
            self.record("intake", "cpu_per_request", f"hoist:c{r['connections']}", r["cpu_us"], "us", r["requests"])
            self.record("intake", "rps", f"hoist:c{r['connections']}", r["rps"], "req/s", r["requests"])
            self.record("intake", "p50", f"hoist:c{r['connections']}", r["p50_us"] / 1000, "ms", r["requests"])
            self.record("intake", "p99", f"hoist:c{r['connections']}", r["p99_us"] / 1000, "ms", r["requests"])
        table.append("")
        table.append(
            f"Events counted by hoist's `/metrics` over the runs: {received['update']:,.0f} updates queued (pushes of tags nothing runs), "
            f"{received['ignored']:,.0f} ignored events, {queue_full:,.0f} refused for a full queue, {received['malformed']:,.0f} malformed. "
            f"Index: {indexed} targets. hoist RSS {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after, peak {hwm / 1024:.1f} MiB."
        )
        table.append("")
        table.append(
            f"Then {unique['requests']:,} more requests ({unique['rps']:,.0f}/s), every other one a push to a tag never pushed before (`intake.lua … 0.5 unique`): "
            f"RSS {rss_after / 1024:.1f} → {rss_unique / 1024:.1f} MiB after ~{tags:,} distinct tags, {per_tag:,.0f} bytes per tag (hoist keeps per-tag state only while a job for it is in flight)."
        )
        table.append("")
        table.append(
            "Durable acknowledgements (issue 13): a push that a target runs is journaled, and the commit fsynced "
            "(SQLite WAL, `synchronous=FULL`), before its `202`; a push that nothing runs needs no record. "
            f"One connection, a push every {journaled['pace_ms']} ms (slow enough that the runner keeps up and nothing is refused), "
            f"each with a new event id, {journaled['seconds']} s per run, three runs of each interleaved (`benches/journaled.lua`); medians of the runs:"
        )
        table.append("")
        table.append("| Pushes | Requests | p50 | p90 | p99 | max |")
        table.append("|---|---:|---:|---:|---:|---:|")
        for label, kind in (("to a tag nothing runs (answered without a record)", "unmatched"), ("to a tag a target runs (journaled and fsynced before the 202)", "journaled")):
            r = journaled[kind]
            table.append(f"| {label} | {r['requests']:,} | {r['p50_us'] / 1000:.2f} ms | {r['p90_us'] / 1000:.2f} ms | {r['p99_us'] / 1000:.2f} ms | {r['max_us'] / 1000:.1f} ms |")
        self.sections["intake"] = "\n".join(table)
        self.intake_results = results
        self.intake_rss = (rss_before, rss_after, hwm)
        self.record("intake", "rss_after", "hoist", rss_after, "KiB")
        self.record("intake", "queue_full", "hoist", queue_full, "requests")

    def intake_journaled(self, payloads):
        """The cost of a durable acknowledgement: paced pushes, to a tag nothing
        runs (no record) and to a monitor-only target's tag (journaled, fsynced,
        before the 202), one connection, interleaved."""
        repository = f"{self.prefix}-journaled"
        tag = f"{self.run_host}/{repository}:1"
        run(["docker", "tag", f"{self.prefix}-base:plain", tag])
        # Monitor-only: every job is a report, so the engine does no work meanwhile.
        labels = dict(self.label, **{"hoist.enable": "true", "hoist.monitor-only": "true"})
        container = self.engine.create(f"{self.prefix}-journaled", tag, labels)
        try:
            deadline = time.time() + 30
            while not any(t.get("name") == f"{self.prefix}-journaled" for t in self.hoist_json("/v1/targets")["targets"]):
                if time.time() > deadline:
                    raise BenchError(f"hoist did not index the monitor-only target on {tag}")
                time.sleep(0.2)
            pace_ms, seconds = 5, max(2, self.args.intake_seconds // 3)
            results = {"unmatched": [], "journaled": []}
            for _ in range(3):
                for kind, repo in (("unmatched", f"{self.prefix}-nobody-runs"), ("journaled", repository)):
                    args = [
                        "wrk", "-t1", "-c1", f"-d{seconds}s", "--timeout", "5s",
                        "-s", os.path.join(ROOT, "benches", "journaled.lua"),
                        f"http://127.0.0.1:{self.hoist_port}", "--", payloads, TOKEN, self.run_host, repo, str(pace_ms),
                    ]
                    out = run(args, timeout=seconds + 60)
                    m = re.search(r"^INTAKE_JSON (.*)$", out, re.M)
                    if not m:
                        raise BenchError(f"wrk printed no summary: {out}")
                    r = json.loads(m.group(1))
                    if set(r["statuses"]) != {"202"}:
                        raise BenchError(f"{kind} pushes were not all accepted: {r['statuses']}")
                    results[kind].append(r)
            summary = {}
            for kind, runs in results.items():
                summary[kind] = {
                    "requests": sum(r["requests"] for r in runs),
                    "p50_us": statistics.median(r["p50_us"] for r in runs),
                    "p90_us": statistics.median(r["p90_us"] for r in runs),
                    "p99_us": statistics.median(r["p99_us"] for r in runs),
                    "max_us": max(r["max_us"] for r in runs),
                }
                s = summary[kind]
                log(f"paced pushes ({kind}): p50 {s['p50_us'] / 1000:.2f} ms, p99 {s['p99_us'] / 1000:.2f} ms over {s['requests']} requests")
                self.record("intake", "ack_p50", f"hoist:{kind}", s["p50_us"] / 1000, "ms", s["requests"])
                self.record("intake", "ack_p99", f"hoist:{kind}", s["p99_us"] / 1000, "ms", s["requests"])
            summary["pace_ms"], summary["seconds"] = pace_ms, seconds
            return summary
        finally:
            self.engine.remove(container)
            run(["docker", "rmi", tag], check=False)

    def intake_under_deploy(self):
        """Intake while a deploy of 10 containers runs: it must not slow down."""
        count = 10
        repo = f"{self.prefix}-busy"
        image = self.seed(self.versions[("plain", 0)], repo)
        names = [f"{repo}-{k:02d}" for k in range(count)]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda nm: self.docker_run(nm, image, self.run_labels(True)), names))
        self.wait_targets(names)
        source = self.versions[("plain", 1)]
        digest, _ = self.push(source, repo)
        seconds = min(self.args.intake_seconds, 10)
        args = [
            "wrk", "-t2", "-c32", f"-d{seconds}s", "--timeout", "5s",
            "-s", os.path.join(ROOT, "benches", "intake.lua"),
            f"http://127.0.0.1:{self.hoist_port}", "--", self.args.payloads, TOKEN, "0.5",
        ]
        cpu_before = cpu_seconds(self.hoist.pid)
        out = run(args, timeout=seconds + 60)
        cpu = cpu_seconds(self.hoist.pid) - cpu_before
        r = json.loads(re.search(r"^INTAKE_JSON (.*)$", out, re.M).group(1))
        r["cpu_us"] = cpu / r["requests"] * 1e6 if r["requests"] else float("nan")
        job = self.wait_job(digest, repo, 600)
        running = [t for t in job["targets"] if t["outcome"]["result"] == "updated"]
        log(f"intake during a 10-container deploy: {r['rps']:.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms; deploy took {job['duration'] / 1000:.1f}s")
        self.under_deploy = (r, job["duration"] / 1000.0, len(running))
        self.record("intake", "rps", "hoist:c32:during-deploy", r["rps"], "req/s", r["requests"])
        self.record("intake", "p99", "hoist:c32:during-deploy", r["p99_us"] / 1000, "ms", r["requests"])
        self.record("intake", "cpu_per_request", "hoist:c32:during-deploy", r["cpu_us"], "us", r["requests"])
        for nm in names:
            self.engine.remove(nm)

    # ------------------------------------------------------------ 4. sizes

    def package(self, binary, kind):
        """Packages `binary` with scripts/package-image.sh, as a user would, and
        returns the image's size and what went in (the script says so on stderr)."""
        tag = f"{self.prefix}-hoist-{kind}:latest"
        # With no binary the script builds its default (a release build: minutes).
        result = subprocess.run(
            ["bash", os.path.join(ROOT, "scripts", "package-image.sh"), binary, tag],
            capture_output=True, text=True, timeout=3600,
        )
        if result.returncode != 0:
            raise BenchError(f"scripts/package-image.sh {binary} failed: {result.stderr.strip()[-2000:]}")
        image = int(run(["docker", "image", "inspect", "-f", "{{.Size}}", tag]))
        m = re.search(r": (\S+) \((\d+) bytes, ([^)]*)\); image \d+ bytes", result.stderr)
        if not m:
            raise BenchError(f"scripts/package-image.sh did not say what it packaged: {result.stderr.strip()[-2000:]}")
        binary = os.path.join(ROOT, m.group(1))
        # Proof that the image runs: hoist prints its version in it.
        version = run(["docker", "run", "--rm", "--label", f"hbench.run={self.prefix}", tag, "--version"], check=False)
        if not version.startswith("hoist"):
            raise BenchError(f"the packaged image {tag} does not run: {version!r}")
        return {
            "binary_path": os.path.relpath(binary, ROOT),
            "binary": os.path.getsize(binary),
            "linkage": m.group(3),
            "image": image,
        }

    def sizes(self):
        """The release binaries and the images scripts/package-image.sh builds of
        them: the static musl one (its default where the musl target is
        installed) and the glibc one (its fall-back)."""
        out = {"binary": os.path.getsize(self.args.hoist), "binary_path": os.path.relpath(self.args.hoist, ROOT)}
        out["limit"] = self.args.max_image_bytes
        out["images"] = []
        if self.args.smoke:
            # What CI holds to the limit: the image the script builds by default
            # (one release build; static musl where the target is installed).
            p = self.package("", "default")
            out["images"].append(("static binary" if p["linkage"] == "static" else "glibc binary", p))
        else:
            if self.args.musl_binary and os.path.exists(self.args.musl_binary):
                out["images"].append(("static musl binary", self.package(self.args.musl_binary, "musl")))
            elif self.args.musl_note:
                self.notes.append(self.args.musl_note)
            out["images"].append(("glibc binary", self.package(self.args.hoist, "glibc")))
        self.size = out
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False)
        self.record("footprint", "binary_size", out["binary_path"], out["binary"], "bytes", notes=f"commit {commit}")
        for what, p in out["images"]:
            if p["binary_path"] != out["binary_path"]:
                self.record("footprint", "binary_size", p["binary_path"], p["binary"], "bytes", notes=f"commit {commit}")
            self.record("footprint", "image_size", f"scripts/package-image.sh, {what}", p["image"], "bytes", notes=f"commit {commit}")
        # The image the script builds by default (the first: musl when there is one).
        if out["images"] and out["limit"] and out["images"][0][1]["image"] >= out["limit"]:
            self.failures.append(
                f"the image scripts/package-image.sh builds ({out['images'][0][0]}) is {out['images'][0][1]['image']:,} bytes, at or over the limit of {out['limit']:,}"
            )

    # ------------------------------------------------------------ 5. peer

    def peer(self):
        exe = self.args.ouroboros
        if not exe or not os.path.exists(exe):
            self.peer_result = {"error": self.args.peer_note or "ouroboros is not installed"}
            return
        version = run([exe, "--version"], check=False) or "?"
        name = f"{self.prefix}-peer"
        image = self.seed(self.versions[("peer", 0)], name)
        self.docker_run(name, image, self.run_labels(False))
        interval = 30
        args = [exe, "-d", "unix://var/run/docker.sock", "-i", str(interval), "-m", name, "-l", "info", "--skip-startup-notifications"]
        if "DOCKER_HOST" in os.environ:
            args[2] = os.environ["DOCKER_HOST"]
        started = time.time()
        p = self.spawn(args, "ouroboros.log")
        time.sleep(8)  # its first check runs at start
        if p.poll() is not None:
            self.peer_result = {"error": f"ouroboros exited with {p.returncode}: {self.tail('ouroboros.log')}"}
            return
        idle = tree_rss_kib(p.pid)
        samples = []
        errors = []
        for i in range(1, self.args.peer_iterations + 1):
            source = self.versions[("peer", i)]
            new_id = self.image_id(source)
            # Push at a random point of its cycle (its last check was when the
            # previous update started, or at its start).
            time.sleep(random.uniform(0, interval))
            digest, t0 = self.push(source, name)
            try:
                c = self.wait_running(name, new_id, interval * 2 + 30)
            except BenchError as e:
                errors.append(str(e))
                break
            samples.append(parse_time(c["State"]["StartedAt"]) - t0)
            log(f"  ouroboros push {i}: new image running after {samples[-1]:.2f}s")
        c = self.engine.inspect(name) or {}
        self.peer_result = {
            "version": version,
            "args": " ".join(args[1:]),
            "idle": idle,
            "samples": samples,
            "errors": errors,
            "image_after": (c.get("Config") or {}).get("Image"),
            "log": self.tail("ouroboros.log", 8),
            "peak": rss_kib(p.pid, "VmHWM"),
            "interval": interval,
        }
        self.stop_process(p)
        self.engine.remove(name)
        if self.peer_result["image_after"] and not self.peer_result["image_after"].endswith(f"/{name}:latest"):
            self.notes.append(
                f"ouroboros recreated `{name}` from `{self.peer_result['image_after']}`: it takes the first tag of the new image (`new.tags[0]`), not the reference the container ran."
            )
        if samples:
            self.record("peer", "detect_to_running_median", "ouroboros", statistics.median(samples), "s", len(samples))
            self.record("peer", "detect_to_running_p95", "ouroboros", percentile(samples, 95), "s", len(samples))
            self.record("peer", "detect_to_running_max", "ouroboros", max(samples), "s", len(samples))
        self.record("peer", "idle_rss", "ouroboros", idle, "KiB")

    # ------------------------------------------------------------ report

    def machine(self):
        cpu = ""
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = run(["free", "-h"], check=False)
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": run(["nproc"], check=False),
            "cpu": cpu,
            "free": mem,
            "kernel": platform.release(),
            "docker": run(["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"], check=False),
            "registry": run(["docker-registry", "--version"], check=False),
            "wrk": run(["wrk", "--version"], check=False).splitlines()[0] if shutil.which("wrk") else "",
            "rustc": run(["rustc", "--version"], check=False),
            "commit": run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False),
        }

    def report(self, machine, elapsed):
        a = self.args
        mib = lambda kib: f"{kib / 1024:.1f} MiB" if kib else "n/a"
        lines = []
        lines.append(f"# hoist benchmark results{' (smoke run: one iteration, small counts, not for comparison)' if a.smoke else ''}")
        lines.append("")
        lines.append(f"Run on {machine['date']} at commit `{machine['commit']}`, in {elapsed / 60:.1f} minutes, by `{a.command}`.")
        lines.append("")
        lines.append("## Machine")
        lines.append("")
        lines.append(f"- `nproc`: {machine['nproc']}; CPU: {machine['cpu']}; kernel {machine['kernel']}")
        lines.append(f"- Docker Engine {machine['docker']}, legacy builder; {machine['registry']} on 127.0.0.1; {machine['wrk']}; {machine['rustc']}")
        lines.append("- `free -h`:")
        lines.append("")
        lines.append("```")
        lines.append(machine["free"])
        lines.append("```")
        lines.append("")
        if self.loads:
            lines.append(
                f"- 1-minute load average during the run (sampled every 5 s): min {min(self.loads):.1f}, median {statistics.median(self.loads):.1f}, max {max(self.loads):.1f} on {machine['nproc']} CPUs."
            )
        lines.append("")
        lines.append(
            "The machine and its engine are shared with other users' builds and test runs, which add noise (see the load average): every hoist/floor pair is interleaved push by push so drift hits both alike, "
            "and intake is also given as hoist's CPU time per request, which load elsewhere barely changes."
        )
        lines.append("")
        lines.append("## Settings")
        lines.append("")
        env = {k: v for k, v in self.hoist_env.items() if k != "HOIST_WEBHOOK_TOKEN"}
        lines.append(
            f"- hoist: `{os.path.relpath(a.hoist, ROOT)}`, defaults except "
            + ", ".join(f"`{k}={v}`" for k, v in sorted(env.items()))
            + ". So `HOIST_HEALTH_GRACE=5s` (a new container without a healthcheck must stay up 5 s before the job counts it done), "
            "`HOIST_HEALTH_DEADLINE=60s`, `HOIST_STOP_TIMEOUT=10s`, `HOIST_MAX_PARALLEL=4`, `RUST_LOG=hoist=info`, text logs to a file."
        )
        lines.append(
            "- Registry: Distribution with a notification endpoint for hoist (`Authorization: Bearer …`, timeout 2s, threshold 3, backoff 1s, blob media types and pull/mount ignored). "
            f"Images are pushed as `localhost:PORT/…` and run as `127.0.0.1:PORT/…` (the same registry: `HOIST_REGISTRY_ALIASES`), so a push does not retag anything on the engine: hoist, the floor and the peer all have to pull."
        )
        lines.append(
            "- Test image: busybox `FROM scratch` (~2 MB), `sh -c \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"`, so it stops at once on SIGTERM; versions differ by a label only (the layers are already on the engine: the pull is a manifest round trip, for hoist and the floor alike). "
            "The healthcheck variant: `HEALTHCHECK --interval=1s --timeout=1s --retries=3 CMD wget -q -O /dev/null http://127.0.0.1:8080/`."
        )
        lines.append(
            "- The floor: `benches/floor.sh` started as soon as `docker push` returns: `docker pull -q`, then per container `docker stop`, `docker rm`, `docker run -d` with the same options. No health check, no rollback."
        )
        lines.append(
            "- Times are taken from the engine: *running* is the new container's `State.StartedAt`, *healthy* the end of its first passing probe (`State.Health.Log`); hoist's job start and end come from `GET /v1/history` (`started_at` + `duration`). All are measured from the moment `docker push` returned. "
            "A negative *job started* means the registry's notification reached hoist before the `docker push` client returned."
        )
        lines.append("")
        if "latency" in self.sections:
            lines.append(f"## 1. Push-to-running latency ({a.iterations} pushes each)")
            lines.append("")
            lines.append(self.sections["latency"])
            lines.append("")
            lines.append("hoist's *job finished* includes the health gate: 5 s of stable running for the plain image (`HOIST_HEALTH_GRACE`), or the first healthy probe for the image with a healthcheck (hoist polls every 200 ms), then removing the old container.")
            lines.append("")
            lines.append("<details><summary>Every push (seconds)</summary>")
            lines.append("")
            lines.append(self.sections["latency_raw"])
            lines.append("")
            lines.append("</details>")
            lines.append("")
            for key, title in (("hoist", "hoist"), ("floor", "the floor")):
                entries = self.latency_timelines.get(key) or []
                picks = entries[:1]
                slowest = max(entries, key=lambda e: e[0]) if entries else None
                if slowest and slowest is not entries[0]:
                    picks.append(slowest)
                for running, i, tl in picks:
                    which = "first" if i == 1 else "slowest"
                    lines.append(f"Engine events of the {which} push (#{i}, running after {running:.3f} s), {title} (`docker events`, seconds after the push returned):")
                    lines.append("")
                    lines.append("```")
                    lines.extend(tl)
                    lines.append("```")
                    lines.append("")
        if "downtime" in self.sections:
            lines.append("## 1b. Downtime of one update")
            lines.append("")
            lines.append(
                "Twin containers of the plain image, each publishing port 8080 on 127.0.0.1, updated in turn by hoist (defaults: stop-first, which creates the new container before the old one stops) and by `benches/floor.sh` (`docker pull`, `stop`, `rm`, `run`). "
                "The engine's clock is the time from the old container's `die` event to the new one's `start` event; the prober is a thread of the bench making one HTTP request every 5 ms to the published port, and reports the longest time between two answered requests. "
                "start-first: a third container, `hoist.order=start-first`, on a user network with the alias `sfsvc` and no published port; a container on that network resolves the alias with the engine's DNS and requests the address it got, every 5 ms, and every failed request is counted."
            )
            lines.append("")
            lines.append(self.sections["downtime"])
            lines.append("")
            for who, tl in self.downtime_timelines:
                lines.append(f"Engine events of the first update, {who} (seconds from the old container's `die`):")
                lines.append("")
                lines.append("```")
                lines.extend(tl)
                lines.append("```")
                lines.append("")
            lines.append("<details><summary>Every update</summary>")
            lines.append("")
            lines.append(self.sections["downtime_raw"])
            lines.append("")
            lines.append("</details>")
            lines.append("")
        if "fanout" in self.sections:
            lines.append("## 2. Fan-out: one push, many containers")
            lines.append("")
            lines.append(self.sections["fanout"])
            lines.append("")
            lines.append(
                "hoist updates every container of a push side by side: `HOIST_MAX_PARALLEL`=4 bounds its engine operations in flight (pull, create, stop, start, rename, remove), and the health gates (5 s without a healthcheck) are awaited together without a slot, "
                "so its total is about the recreates spread over 4 slots plus one gate; the floor recreates one after the other with no gate. (Before this, each of the 4 slots was held through its container's gate: about ceil(N/4) × (recreate + 5 s).) "
                "The `HOIST_HEALTH_GRACE=0s` column is the same push with the gate reduced to \"the new container runs\", which is all the floor checks: it shows what the recreate itself costs. "
                "RSS peak: hoist's `VmHWM`, reset (`/proc/PID/clear_refs`) before each push (defaults run)."
            )
            lines.append("")
        if hasattr(self, "idle"):
            i = self.idle
            lines.append(f"## 3. Intake ({a.intake_seconds} s per run, wrk -t2 on loopback)")
            lines.append("")
            lines.append(
                f"hoist with {i['indexed']} labelled targets in its index: `docker create`d (created, not started) containers on 20 image tags, which hoist lists and inspects like running ones. "
                "Bodies: half are the Distribution payloads in `tests/fixtures/payloads/distribution-*.json` as they are (blob pushes, pulls, mounts, deletes, by-digest pushes, and tag pushes of repositories nothing runs, repeating their event ids like a registry's retries), "
                "half are manifest pushes to tags nothing runs (50 tags, a new event id each), which hoist queues and its runner drops for want of a target (`benches/intake.lua`)."
            )
            lines.append("")
            lines.append(self.sections["intake"])
            lines.append("")
            if hasattr(self, "under_deploy"):
                r, took, ok = self.under_deploy
                lines.append(
                    f"While a push of 10 containers was being deployed ({ok}/10 updated, job {took:.1f} s): {r['rps']:,.0f} requests/s, p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms (32 connections), "
                    f"hoist CPU {r['cpu_us']:.0f} µs per request. Intake does not wait for deploy work (it queues with `try_reserve` and answers); what it loses during a deploy is CPU, to the engine creating and starting containers on the same 2 cores."
                )
                lines.append("")
            lines.append("Command (per run): `" + self.intake_results[0]["cmd"] + "`")
            lines.append("")
        lines.append("## 4. Footprint")
        lines.append("")
        earlier = a.earlier  # (metric, subject) -> the previous run's row, if any

        def row(label, value, metric=None, subject=None, fmt=None):
            before = earlier.get((metric, subject)) if metric else None
            cell = ""
            if before and fmt:
                cell = f"{fmt(before['value'])} ({before['date'][:10]}{', ' + before['notes'] if before['notes'] else ''})"
            lines.append(f"| {label} | {value} | {cell} |")

        size_mb = lambda b: f"{b / 1e6:.2f} MB"
        lines.append("| Measure | hoist | earlier run (date, commit) |")
        lines.append("|---|---:|---:|")
        if hasattr(self, "idle"):
            i = self.idle
            self.record("footprint", "idle_rss", f"hoist:{i['indexed']} targets", i["idle"], "KiB")
            self.record("footprint", "idle_rss", f"hoist:{i['targets_seen_empty']} targets", i["idle_empty"], "KiB")
            self.record("footprint", "startup_to_ready", f"hoist:{i['indexed']} targets", i["startup"], "s", len(i["startups"]))
            self.record("footprint", "startup_to_ready", f"hoist:{i['targets_seen_empty']} targets", i["startup_empty"], "s")
            ms = lambda v: f"{v * 1000:.0f} ms"
            row(f"Idle RSS, {i['indexed']} watched container(s) (2 s after ready)", mib(i["idle"]), "idle_rss", f"hoist:{i['indexed']} targets", mib)
            row(f"Idle RSS, {i['targets_seen_empty']} watched container(s) (none of the bench's: other users' labelled containers on this engine)", mib(i["idle_empty"]))
            target = f" (target under 300 ms: {'met' if i['startup'] < 0.3 else '**missed**'})" if i["indexed"] >= 1000 else ""
            row(f"Start-up to ready (process start → `/healthz` 200), {i['indexed']} watched, median of {len(i['startups'])}", ms(i["startup"]) + target, "startup_to_ready", f"hoist:{i['indexed']} targets", ms)
            row(f"Start-up to ready, {i['targets_seen_empty']} watched", ms(i["startup_empty"]))
            row("RSS after the intake runs", f"{mib(self.intake_rss[1])} (peak {mib(self.intake_rss[2])})")
        if hasattr(self, "fanout_peak"):
            row(f"RSS peak during fan-out (largest: {max(a.fanout)} containers)", mib(self.fanout_peak))
        if hasattr(self, "size"):
            s = self.size
            kind = "Release binary" if "/release/" in s["binary_path"] else "Debug binary (not for comparison)"
            row(f"{kind} (`{s['binary_path']}`, glibc{', stripped' if '/release/' in s['binary_path'] else ''})", size_mb(s["binary"]), "binary_size", s["binary_path"], size_mb)
            for what, p in s["images"]:
                if p["binary_path"] != s["binary_path"]:
                    row(f"Release binary (`{p['binary_path']}`, {p['linkage']})", size_mb(p["binary"]), "binary_size", p["binary_path"], size_mb)
                subject = f"scripts/package-image.sh, {what}"
                row(f"Image `scripts/package-image.sh` builds of the {what} ({p['linkage']}; with the CA bundle)", size_mb(p["image"]), "image_size", subject, size_mb)
        lines.append("")
        if hasattr(self, "size") and self.size["images"]:
            s = self.size
            what, p = s["images"][0]
            verdict = "under" if p["image"] < s["limit"] else "**at or over**"
            lines.append(
                f"`scripts/package-image.sh` packages the {what} by default{' (where the x86_64-unknown-linux-musl target and musl-gcc are installed; else the glibc one)' if 'musl' in what else ''}: "
                f"{p['image']:,} bytes, {verdict} the limit of {s['limit']:,} bytes (`--max-image-bytes`; the run fails over it). Sizes are in decimal MB, as `docker images` shows them. "
                "The earlier column is the previous run's `results.csv` in the same directory (a blank: not measured then, or measured differently)."
            )
            lines.append("")
        if hasattr(self, "peer_result"):
            pr = self.peer_result
            lines.append("## 5. Peer: ouroboros-cli (polling)")
            lines.append("")
            if "error" in pr:
                lines.append(f"Not measured: {pr['error']}")
            else:
                s = pr["samples"]
                lines.append(
                    f"ouroboros-cli {pr['version']} (pip, with the docker SDK), run as `ouroboros {pr['args']}` on the host: its shortest interval is {pr['interval']} s (`-i` below 30 is raised to 30). "
                    "It watches only the bench's container (`-m`), pulls that container's tag from the same registry every interval, and recreates it when the image ID changed."
                )
                lines.append("")
                lines.append("| Measure | ouroboros | hoist |")
                lines.append("|---|---:|---:|")
                if s:
                    hm = statistics.median([x["running"] for x in self.latency_results["hoist"]]) if hasattr(self, "latency_results") else None
                    lines.append(
                        f"| Push → new image running, median of {len(s)} | {statistics.median(s):.2f} s | {hm:.3f} s |" if hm is not None else f"| Push → new image running, median of {len(s)} | {statistics.median(s):.2f} s | |"
                    )
                    lines.append(f"| … min / max | {min(s):.2f} s / {max(s):.2f} s | |")
                if hasattr(self, "idle"):
                    i = self.idle
                    lines.append(
                        f"| Idle RSS | {mib(pr['idle'])} (1 watched container) | {mib(i['idle_empty'])} ({i['targets_seen_empty']} watched); {mib(i['idle'])} ({i['indexed']} watched) |"
                    )
                else:
                    lines.append(f"| Idle RSS | {mib(pr['idle'])} (1 watched container) | |")
                if pr["errors"]:
                    lines.append("")
                    lines.append("Errors: " + "; ".join(pr["errors"]))
                lines.append("")
                lines.append("Pushes were made at random points of its cycle, so its latency is spread over the interval (expected mean ≈ interval/2 + pull + recreate).")
                if pr.get("image_after"):
                    lines.append(f"After its updates the container runs `{pr['image_after']}`.")
            lines.append("")
        moved = self.compare_with_earlier()
        if moved:
            lines.append("## Earlier figures, and which moved")
            lines.append("")
            lines.append(
                "Every figure of this run that the previous run's `results.csv` in the same directory also has, with that value: *moved* when the two differ by more than 10 %. "
                "Figures from before `results.csv` kept them are in the git history of this file."
            )
            lines.append("")
            lines.extend(moved)
            lines.append("")
        if self.notes:
            lines.append("## Notes")
            lines.append("")
            for note in self.notes:
                lines.append(f"- {note}")
            lines.append("")
        lines.append("## Re-running")
        lines.append("")
        lines.append("```")
        lines.append("scripts/setup.sh            # docker-registry, busybox-static, wrk, a running engine")
        lines.append("scripts/bench.sh            # this report: writes benches/RESULTS.md and benches/results.csv (about 20 minutes)")
        lines.append("scripts/bench.sh --smoke    # one iteration each, small counts (about a minute); writes to target/bench-smoke/")
        lines.append("```")
        lines.append("")
        lines.append("Everything the bench creates is named `hbench-<pid>-…` and labelled `hbench.run=hbench-<pid>`, and is removed at the end, also on failure. Load goes to 127.0.0.1 only.")
        return "\n".join(lines) + "\n"

    def compare_with_earlier(self):
        earlier = self.args.earlier_all
        out = []
        for section, metric, subject, value, unit, n, notes in self.rows:
            before = earlier.get((section, metric, subject))
            if not before or not isinstance(value, (int, float)):
                continue
            was = before["value"]
            change = (value - was) / was if was else float("inf")
            verdict = "**moved**" if abs(change) > 0.10 else "same"
            out.append(f"| {section} | {metric} | {subject} | {was:g} {unit} ({before['date'][:10]}) | {value:g} {unit} | {change:+.0%} | {verdict} |")
        if out:
            out = ["| section | metric | subject | earlier | now | change | |", "|---|---|---|---:|---:|---:|---|"] + out
        return out

    def write(self, machine, elapsed):
        os.makedirs(self.args.out, exist_ok=True)
        md = self.report(machine, elapsed)
        with open(os.path.join(self.args.out, "RESULTS.md"), "w") as f:
            f.write(md)
        with open(os.path.join(self.args.out, "results.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["date", "machine", "section", "metric", "subject", "value", "unit", "n", "notes"])
            m = f"{machine['nproc']} cpu {machine['cpu']}; docker {machine['docker']}"
            for row in self.rows:
                w.writerow([machine["date"], m] + row)
        log(f"wrote {self.args.out}/RESULTS.md and results.csv")
        return md


def read_earlier(path, sections=("footprint",)):
    """The rows of the previous run's results.csv in `sections`, by (metric,
    subject) for the footprint, else by (section, metric, subject)."""
    earlier = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return earlier
    for r in rows:
        try:
            if r["section"] in sections:
                r["value"] = float(r["value"])
                key = (r["metric"], r["subject"]) if sections == ("footprint",) else (r["section"], r["metric"], r["subject"])
                earlier[key] = r
        except (KeyError, TypeError, ValueError):
            continue
    return earlier


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--hoist", required=True, help="the hoist binary")
    p.add_argument("--musl-binary", help="a static musl build of hoist, for the image size")
    p.add_argument("--musl-note", default="", help="why there is no musl binary")
    p.add_argument("--max-image-bytes", type=int, default=10_000_000, help="the run fails when the image scripts/package-image.sh builds is this size or more")
    p.add_argument("--ouroboros", help="the ouroboros executable (peer)")
    p.add_argument("--peer-note", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--payloads", default=os.path.join(ROOT, "tests", "fixtures", "payloads"))
    p.add_argument("--command", default="scripts/bench.sh")
    p.add_argument("--only", default="latency,downtime,fanout,intake,sizes,peer")
    p.add_argument("--keep-logs", default=os.environ.get("BENCH_KEEP_LOGS", ""), help="copy the logs (hoist, registry, peer) and per-push timelines here")
    args = p.parse_args()
    smoke = args.smoke
    args.iterations = int(os.environ.get("BENCH_ITERATIONS", 1 if smoke else 10))
    args.fanout = [int(x) for x in os.environ.get("BENCH_FANOUT", "1,2" if smoke else "1,10,50").split(",")]
    args.targets = int(os.environ.get("BENCH_TARGETS", 20 if smoke else 1000))
    args.intake_seconds = int(os.environ.get("BENCH_INTAKE_SECONDS", 2 if smoke else 15))
    args.connections = [int(x) for x in os.environ.get("BENCH_CONNECTIONS", "16" if smoke else "16,64").split(",")]
    args.startups = int(os.environ.get("BENCH_STARTUPS", 1 if smoke else 3))
    args.peer_iterations = int(os.environ.get("BENCH_PEER_ITERATIONS", 1 if smoke else 5))
    args.hoist = os.path.abspath(args.hoist)
    args.payloads = os.path.abspath(args.payloads)
    args.hoist_env = {}
    only = set(args.only.split(","))
    args.earlier = read_earlier(os.path.join(args.out, "results.csv"))
    args.earlier_all = read_earlier(os.path.join(args.out, "results.csv"), ("latency", "fanout", "downtime", "intake", "footprint"))

    bench = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.time()
    machine = bench.machine()
    try:
        versions = max(args.iterations, len(args.fanout), args.peer_iterations, 1) + 1
        bench.build_images(versions)
        bench.start_registry()
        if "intake" in only:
            bench.intake_and_idle()
        if {"latency", "downtime", "fanout", "peer"} & only or ("intake" in only and not smoke):
            bench.start_hoist("hoist-main.log")
        if "latency" in only:
            bench.latency()
        if "downtime" in only:
            bench.downtime()
        if "fanout" in only:
            bench.fanout()
        if "intake" in only and not smoke:
            bench.intake_under_deploy()
        if "sizes" in only:
            bench.sizes()
        if "peer" in only:
            bench.peer()
        bench.stop_hoist()
        md = bench.write(machine, time.time() - started)
        print(md)
        for failure in bench.failures:
            log(f"FAILED: {failure}")
        return 1 if bench.failures else 0
    except (Exception, KeyboardInterrupt) as e:
        log(f"FAILED: {e!r}")
        if not isinstance(e, (BenchError, KeyboardInterrupt)):
            import traceback

            traceback.print_exc()
        for name in ("hoist-main.log", "hoist.log", "registry.log", "ouroboros.log"):
            t = bench.tail(name, 30)
            if t:
                log(f"--- last lines of {name}:\n{t}")
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
