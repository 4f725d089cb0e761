//! Every source, end to end on the real engine: a realistic payload, built
//! from the source's sample in tests/fixtures/payloads with the names, tag
//! and digest of an image just pushed to a loopback Distribution registry,
//! redeploys the labelled container that runs it. The registry's public name
//! in the payload (`ghcr.io`, `docker.io`, `quay.example.test`, ...) reaches
//! the loopback registry through `HOIST_REGISTRY_ALIASES`, as a host that
//! pulls through a mirror or a private name would.
//!
//! The registry here notifies nobody (its notifications go to a closed port):
//! the source under test is the only one that tells hoist of the push.
//! Sources that send no digest (Docker Hub, Quay, Gitea, a CI call without
//! one) need the registry client: hoist resolves the tag's digest with a HEAD
//! against the registry the target pulls from.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::container::outcome;
use crate::harness::{
    build_and_push, build_image, docker, free_port, image_id, inspect, push, unique, Behaviour, Cleanup,
    Hoist, Registry, TOKEN,
};

const JOB_WAIT: Duration = Duration::from_secs(90);
/// The secret of the signed sources (GitHub, Gitea) in these tests.
const SECRET: &str = "test-secret";
/// Where the test registry sends its own notifications: nowhere.
const NOWHERE: &str = "http://127.0.0.1:9/unused";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/payloads/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A loopback registry, hoist told that `public` is its name, and a labelled
/// container running `<registry>/<repository>:1.4.2` (v1). Pushes v2 and
/// returns its digest, which only the source under test reports.
struct Scene {
    hoist: Hoist,
    registry: Registry,
    /// `127.0.0.1:<port>/<repository>:1.4.2`: what the container runs.
    tag: String,
    name: String,
    new_digest: String,
    clean: Cleanup,
}

impl Scene {
    async fn start(public: &str, repository: &str, extra: &[(&str, &str)]) -> Scene {
        let registry = Registry::start_on(free_port(), NOWHERE);
        let aliases = format!("{public}={}", registry.host);
        let mut vars = vec![
            ("HOIST_REGISTRY_ALIASES", aliases.as_str()),
            ("HOIST_GITHUB_WEBHOOK_SECRET", SECRET),
            ("HOIST_GITEA_WEBHOOK_SECRET", SECRET),
        ];
        vars.extend_from_slice(extra);
        let hoist = Hoist::start(&vars).await;
        let tag = format!("{}:1.4.2", registry.repo(repository));
        let mut clean = Cleanup::default();
        clean.image(&tag);
        build_and_push(&tag, "v1", Behaviour::Serve);
        let name = unique("web");
        clean.container(&name);
        docker(&["run", "-d", "--name", &name, "--label", "hoist.enable=true", &tag]);
        hoist.wait_for_target(&name).await;
        let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
        Scene {
            hoist,
            registry,
            tag,
            name,
            new_digest,
            clean,
        }
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let mut request = self
            .hoist
            .http
            .post(self.hoist.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The finished job that deployed `digest`, once there is one.
    async fn job_for(&self, digest: &str) -> Value {
        let deadline = Instant::now() + JOB_WAIT;
        loop {
            let history = self.hoist.get_json("/v1/history").await;
            let jobs: Vec<Value> = history["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|job| job["new_digest"] == digest)
                .cloned()
                .collect();
            if let Some(job) = jobs.first() {
                assert_eq!(jobs.len(), 1, "one job per push: {history}");
                return job.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no job for {digest} within {JOB_WAIT:?}; history: {history}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The container was recreated on the pushed image, by a job of `source`
    /// for `image` (the reference as the source named it).
    async fn assert_redeployed(&self, source: &str, image: &str) {
        let job = self.job_for(&self.new_digest).await;
        assert_eq!(outcome(&job, &self.name)["result"], "updated", "{job}");
        assert_eq!(job["source"], source, "{job}");
        assert_eq!(job["image"], image, "{job}");
        assert_eq!(job["image_version"], "v2", "{job}");
        let after = inspect(&self.name);
        assert_eq!(after["Image"], image_id(&self.tag), "it runs the pushed image");
        assert_eq!(after["State"]["Running"], true);
    }

    async fn stop(self) {
        self.hoist.stop().await;
        drop(self.registry);
        drop(self.clean);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_package_event_redeploys_once_per_delivery() {
    let app = unique("app");
    let scene = Scene::start("ghcr.io", &format!("example-org/{app}"), &[]).await;
    // The owner keeps its case in the payload; the image is lower-case.
    let mut body = fixture("github-package-published.json");
    let package = &mut body["package"];
    package["name"] = json!(app);
    let version = &mut package["package_version"];
    version["name"] = json!(scene.new_digest);
    version["version"] = json!(scene.new_digest);
    version["container_metadata"]["tag"]["digest"] = json!(scene.new_digest);
    version["container_metadata"]["manifest"]["digest"] = json!(scene.new_digest);
    version["package_url"] = json!(format!("ghcr.io/Example-Org/{app}:1.4.2"));
    let body = serde_json::to_vec_pretty(&body).unwrap();
    let signature = format!("sha256={}", hoist::source::signature::sign(SECRET, &body));
    let delivery = unique("delivery");
    let headers = [
        ("x-github-event", "package"),
        ("x-github-delivery", delivery.as_str()),
        ("x-hub-signature-256", signature.as_str()),
        ("user-agent", "GitHub-Hookshot/044aadd"),
    ];
    let (status, answer) = scene.post("/v1/hooks/github", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["queued"].as_u64(), answer["resolved"].as_u64()),
        (Some(1), Some(0))
    );
    // A redelivery from "Recent Deliveries": the same delivery id runs once.
    let (status, answer) = scene.post("/v1/hooks/github", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["queued"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    scene
        .assert_redeployed("github", &format!("ghcr.io/example-org/{app}:1.4.2"))
        .await;
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acr_push_redeploys() {
    let app = unique("app");
    let scene = Scene::start("exampleregistry.azurecr.io", &format!("team/{app}"), &[]).await;
    let mut body = fixture("acr-push.json");
    body["id"] = json!(unique("acr-event"));
    body["target"]["repository"] = json!(format!("team/{app}"));
    body["target"]["digest"] = json!(scene.new_digest);
    body["target"]["mediaType"] = json!("application/vnd.docker.distribution.manifest.v2+json");
    let auth = format!("Bearer {TOKEN}");
    let (status, answer) = scene
        .post(
            "/v1/hooks/acr",
            &[
                ("authorization", &auth),
                ("user-agent", "AzureContainerRegistry/1.0"),
            ],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    scene
        .assert_redeployed("acr", &format!("exampleregistry.azurecr.io/team/{app}:1.4.2"))
        .await;
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_call_with_the_digest_redeploys() {
    let app = unique("app");
    let scene = Scene::start("registry.example.test", &format!("team/{app}"), &[]).await;
    // The README's curl, as a CI job sends it.
    let image = format!("registry.example.test/team/{app}:1.4.2");
    let body = json!({ "image": image, "digest": scene.new_digest });
    let auth = format!("Bearer {TOKEN}");
    let (status, answer) = scene
        .post(
            "/v1/update",
            &[("authorization", &auth)],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["accepted"],
        json!([format!("{image}@{}", scene.new_digest)])
    );
    scene.assert_redeployed("ci", &image).await;
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_hub_push_is_resolved_to_its_digest_and_redeploys() {
    let app = unique("app");
    let scene = Scene::start("docker.io", &format!("exampleorg/{app}"), &[]).await;
    let mut body = fixture("dockerhub-push.json");
    body["repository"]["repo_name"] = json!(format!("exampleorg/{app}"));
    body["repository"]["name"] = json!(app);
    body["push_data"]["pushed_at"] = json!(chrono::Utc::now().timestamp());
    let (status, answer) = scene
        .post(
            &format!("/v1/hooks/dockerhub/{TOKEN}"),
            &[],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    // Resolved against the registry the container pulls from: the digest just pushed.
    assert_eq!(answer["resolved"], 1, "{answer}");
    let image = format!("docker.io/exampleorg/{app}:1.4.2");
    assert_eq!(
        answer["accepted"],
        json!([format!("{image}@{}", scene.new_digest)])
    );
    scene.assert_redeployed("dockerhub", &image).await;
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quay_push_is_resolved_to_its_digest_and_redeploys() {
    let app = unique("app");
    let scene = Scene::start("quay.example.test", &format!("team/{app}"), &[]).await;
    let mut body = fixture("quay-push.json");
    body["repository"] = json!(format!("team/{app}"));
    body["name"] = json!(app);
    body["docker_url"] = json!(format!("quay.example.test/team/{app}"));
    body["homepage"] = json!(format!("https://quay.example.test/repository/team/{app}"));
    let (status, answer) = scene
        .post(
            &format!("/v1/hooks/quay/{TOKEN}"),
            &[],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["resolved"], 1, "{answer}");
    scene
        .assert_redeployed("quay", &format!("quay.example.test/team/{app}:1.4.2"))
        .await;
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitea_package_event_is_resolved_to_its_digest_and_redeploys_once_per_delivery() {
    let app = unique("app");
    let scene = Scene::start("gitea.example.test", &format!("example-org/{app}"), &[]).await;
    let mut body = fixture("gitea-package.json");
    body["package"]["name"] = json!(app);
    body["package"]["html_url"] = json!(format!(
        "https://gitea.example.test/example-org/-/packages/container/{app}/1.4.2"
    ));
    let body = serde_json::to_vec_pretty(&body).unwrap();
    let signature = hoist::source::signature::sign(SECRET, &body);
    let delivery = unique("delivery");
    // Forgejo's headers: the same route, the same secret.
    let headers = [
        ("x-forgejo-event", "package"),
        ("x-forgejo-delivery", delivery.as_str()),
        ("x-forgejo-signature", signature.as_str()),
    ];
    let (status, answer) = scene.post("/v1/hooks/gitea", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["queued"].as_u64(), answer["resolved"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, answer) = scene.post("/v1/hooks/gitea", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
    scene
        .assert_redeployed("gitea", &format!("gitea.example.test/example-org/{app}:1.4.2"))
        .await;
    scene.stop().await;
}

/// The digest is resolved when the event arrives, and the job pulls that
/// digest: when the tag moves again before the pull, the container still gets
/// the image the event was about (and a later event would bring the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_digest_is_deployed_even_when_the_tag_moves_before_the_pull() {
    let app = unique("app");
    // One engine operation at a time, and a first job that holds it while the tag moves.
    let scene = Scene::start(
        "registry.example.test",
        &format!("team/{app}"),
        &[("HOIST_MAX_PARALLEL", "1")],
    )
    .await;
    let blocker_tag = format!("{}:slow", scene.registry.repo(&unique("blocker")));
    let mut clean = Cleanup::default();
    clean.image(&blocker_tag);
    build_and_push(&blocker_tag, "v1", Behaviour::Serve);
    let blocker = unique("blocker");
    clean.container(&blocker);
    docker(&[
        "run",
        "-d",
        "--name",
        &blocker,
        "--label",
        "hoist.enable=true",
        // Its stop signal is ignored (PID 1 has no handler for it), so its
        // stop, an engine operation, holds the one slot for 15 s (a health
        // gate would not hold it).
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "15",
        &blocker_tag,
    ]);
    scene.hoist.wait_for_target(&blocker).await;
    let blocker_digest = build_and_push(&blocker_tag, "v2", Behaviour::Serve);
    // v3 of the app is built now, pushed only after the event was acknowledged.
    build_image(&scene.tag, "v3", Behaviour::Serve);
    let v3 = image_id(&scene.tag);
    let auth = format!("Bearer {TOKEN}");
    let blocker_image = blocker_tag.replace(&scene.registry.host, "registry.example.test");
    let body = json!({ "image": blocker_image, "digest": blocker_digest });
    let (status, answer) = scene
        .post(
            "/v1/update",
            &[("authorization", &auth)],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    // The app's event without a digest: resolved now, to v2.
    let image = format!("registry.example.test/team/{app}:1.4.2");
    let (status, answer) = scene
        .post(
            &format!("/v1/update?image={image}"),
            &[("authorization", &auth)],
            b"",
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["accepted"],
        json!([format!("{image}@{}", scene.new_digest)])
    );
    // The tag moves to v3 while the runner is still busy with the blocker.
    let moved = push(&scene.tag);
    assert_ne!(moved, scene.new_digest);
    let blocker_job = scene.job_for(&blocker_digest).await;
    assert_eq!(
        outcome(&blocker_job, &blocker)["result"],
        "updated",
        "{blocker_job}"
    );
    let job = scene.job_for(&scene.new_digest).await;
    assert_eq!(outcome(&job, &scene.name)["result"], "updated", "{job}");
    assert_eq!(
        job["image_version"], "v2",
        "the resolved digest, not the moved tag: {job}"
    );
    let running = inspect(&scene.name);
    let v2 = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{}@{}", scene.tag.rsplit_once(':').unwrap().0, scene.new_digest),
    ]);
    assert_eq!(running["Image"], v2);
    // (hoist tags what it pulled by digest under the target's tag, so the
    // local tag names v2 again; the registry's names v3.)
    assert_ne!(running["Image"], v3, "not v3, which the registry's tag names now");
    drop(clean);
    scene.stop().await;
}
