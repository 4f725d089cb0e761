//! Intake over real HTTP: every fixture payload gets the status its kind
//! deserves, every route refuses a missing or wrong token or signature (and
//! counts it), and bad requests get a clear JSON error.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Hoist, TOKEN};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/payloads/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn post(hoist: &Hoist, source: &str, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = hoist
        .http
        .post(hoist.url(&format!("/v1/hooks/{source}")))
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_are_answered_by_kind() {
    let hoist = Hoist::start(&[]).await;
    let cases: &[(&str, &str, u16)] = &[
        ("distribution", "distribution-push-manifest.json", 202),
        ("distribution", "distribution-push-tag-only.json", 202),
        ("distribution", "distribution-push-index.json", 202),
        ("distribution", "distribution-v3-push-index.json", 202),
        ("distribution", "distribution-push-platform-manifest.json", 200),
        ("distribution", "distribution-push-layer.json", 200),
        ("distribution", "distribution-push-config-blob.json", 200),
        ("distribution", "distribution-pull.json", 200),
        ("distribution", "distribution-pull-blob-head.json", 200),
        ("distribution", "distribution-mount.json", 200),
        ("distribution", "distribution-delete-manifest.json", 200),
        ("distribution", "distribution-delete-tag.json", 200),
        ("distribution", "distribution-v3-delete-tag.json", 200),
        ("harbor", "harbor-push-artifact.json", 202),
        ("harbor", "harbor-cloudevents-push.json", 202),
        ("harbor", "harbor-pull-artifact.json", 200),
        ("harbor", "harbor-delete-artifact.json", 200),
        ("harbor", "harbor-scanning-completed.json", 200),
    ];
    for (source, file, expected) in cases {
        let (status, body) = post(&hoist, source, Some(TOKEN), fixture(file)).await;
        assert_eq!(status.as_u16(), *expected, "{file}: {body}");
        if *expected == 202 {
            assert_eq!(body["accepted"].as_array().unwrap().len(), 1, "{file}: {body}");
        } else {
            assert!(body["accepted"].as_array().unwrap().is_empty(), "{file}: {body}");
            assert!(!body["ignored"].as_array().unwrap().is_empty(), "{file}: {body}");
        }
    }
    let (_, body) = post(
        &hoist,
        "distribution",
        Some(TOKEN),
        fixture("distribution-push-manifest.json"),
    )
    .await;
    assert_eq!(
        body["accepted"][0],
        "registry.example.test/team/app:1.0@sha256:8174f92e800085ab984673fccde5a93e8cb0a4983914502c4575bbd71a6e0516"
    );
    let (_, body) = post(
        &hoist,
        "harbor",
        Some(TOKEN),
        fixture("harbor-push-artifact.json"),
    )
    .await;
    assert_eq!(
        body["accepted"][0],
        "harbor.example.test/team/app:1.4.2@sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c"
    );
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_malformed_oversized_and_unknown_are_rejected() {
    let hoist = Hoist::start(&[("HOIST_MAX_BODY_BYTES", "4096")]).await;
    let push = fixture("distribution-push-manifest.json");

    let (status, body) = post(&hoist, "distribution", None, push.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing or wrong bearer token");
    let (status, _) = post(&hoist, "distribution", Some("wrong-token"), push.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &hoist,
        "harbor",
        Some(&TOKEN[..TOKEN.len() - 1]),
        fixture("harbor-push-artifact.json"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for bad in [
        &b""[..],
        b"{",
        b"not json",
        b"[]",
        b"{\"events\": \"x\"}",
        b"\xff\xfe\x00",
    ] {
        let (status, body) = post(&hoist, "distribution", Some(TOKEN), bad.to_vec()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("malformed distribution payload"),
            "{body}"
        );
    }
    let (status, body) = post(&hoist, "harbor", Some(TOKEN), b"{\"type\": 5}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let oversized = format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(5000)).into_bytes();
    let (status, body) = post(&hoist, "distribution", Some(TOKEN), oversized).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "body larger than 4096 bytes");

    let (status, body) = post(&hoist, "gitlab", Some(TOKEN), push.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("unknown source"));
    // Docker Hub and Quay send no headers: their token goes in the path.
    let (status, body) = post(&hoist, "quay", Some(TOKEN), push).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap().contains("/v1/hooks/quay/<token>"),
        "{body}"
    );

    // Nothing of the above reached the history.
    assert_eq!(hoist.get_json("/v1/history").await["jobs"], serde_json::json!([]));
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_endpoints_answer() {
    let hoist = Hoist::start(&[]).await;
    let health = hoist.get_json("/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["engine"], "ok");
    let metrics = hoist.http.get(hoist.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(hoist.get_json("/v1/targets").await["targets"].is_array());
    hoist.stop().await;
}

/// The secret of the signature vectors in tests/fixtures/payloads/README.md.
const SECRET: &str = "test-secret";
const GITHUB_SIGNATURE: &str = "sha256=43cef6bc8622d921d22f1b6d60bdbc5f9382ca8f6b4b9e2b661380406bb3e73a";
const GITEA_SIGNATURE: &str = "eb6424a1c1d55d7522f9ee2473696b943caa129463391ffcfa7720114086a968";

/// Posts `body` to `path` with `headers`; the status and the JSON answer.
async fn send(hoist: &Hoist, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut request = hoist
        .http
        .post(hoist.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `hoist_events_received_total{source, verdict}` now (every in-process hoist shares the recorder).
async fn received(hoist: &Hoist, source: &str, verdict: &str) -> u64 {
    let text = hoist
        .http
        .get(hoist.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = [
        format!("hoist_events_received_total{{source=\"{source}\",verdict=\"{verdict}\"}} "),
        format!("hoist_events_received_total{{verdict=\"{verdict}\",source=\"{source}\"}} "),
    ];
    text.lines()
        .find_map(|line| labels.iter().find_map(|label| line.strip_prefix(label.as_str())))
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// Request headers, as `(name, value)`.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// (what, path, headers, body, status, the accepted reference or the ignored reason)
type Case<'a> = (&'a str, String, Headers<'a>, Vec<u8>, u16, &'a str);

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_sources_answer_their_fixtures() {
    let hoist = Hoist::start(&[
        ("HOIST_GITHUB_WEBHOOK_SECRET", SECRET),
        ("HOIST_GITEA_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let auth = bearer(TOKEN);
    let github = fixture("github-package-published.json");
    let gitea = fixture("gitea-package.json");
    let github_headers = [
        ("x-github-event", "package"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", GITHUB_SIGNATURE),
    ];
    let cases: Vec<Case> = vec![
        (
            "GitHub package event",
            "/v1/hooks/github".into(),
            github_headers.to_vec(),
            github.clone(),
            202,
            "ghcr.io/example-org/app:1.4.2@sha256:61e2d055ca7c99791d17a1f7a49b3406c007356acdc1d728e26b389ce0dd6908",
        ),
        (
            "GitHub ping",
            "/v1/hooks/github".into(),
            vec![
                ("x-github-event", "ping"),
                ("x-hub-signature-256", GITHUB_SIGNATURE),
            ],
            github.clone(),
            200,
            "GitHub ping event",
        ),
        (
            "Gitea package event",
            "/v1/hooks/gitea".into(),
            vec![
                ("x-gitea-event", "package"),
                ("x-gitea-delivery", "d7c3fa6a-0d0c-4b0e-9d0e-5a0a7b7f8a01"),
                ("x-gitea-signature", GITEA_SIGNATURE),
            ],
            gitea.clone(),
            202,
            // No digest, and no target runs it: acknowledged without asking the registry.
            "gitea.example.test/example-org/app:1.4.2",
        ),
        (
            "Forgejo package event",
            "/v1/hooks/gitea".into(),
            vec![
                ("x-forgejo-event", "package"),
                ("x-forgejo-signature", GITEA_SIGNATURE),
            ],
            gitea.clone(),
            202,
            "gitea.example.test/example-org/app:1.4.2",
        ),
        (
            "Docker Hub push",
            format!("/v1/hooks/dockerhub/{TOKEN}"),
            Vec::new(),
            fixture("dockerhub-push.json"),
            202,
            "docker.io/exampleorg/app:1.4.2",
        ),
        (
            "Quay repo_push",
            format!("/v1/hooks/quay/{TOKEN}"),
            Vec::new(),
            fixture("quay-push.json"),
            202,
            "quay.example.test/team/app:1.4.2",
        ),
        (
            "ACR push",
            "/v1/hooks/acr".into(),
            vec![("authorization", &auth)],
            fixture("acr-push.json"),
            202,
            "exampleregistry.azurecr.io/team/app:1.4.2@sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c",
        ),
        (
            "ACR ping",
            "/v1/hooks/acr".into(),
            vec![("authorization", &auth)],
            fixture("acr-ping.json"),
            200,
            "Other(\"ping\") event",
        ),
        (
            "ACR delete",
            "/v1/hooks/acr".into(),
            vec![("authorization", &auth)],
            fixture("acr-delete.json"),
            200,
            "Delete event",
        ),
        (
            "CI call with a digest",
            "/v1/update".into(),
            vec![("authorization", &auth)],
            br#"{"image": "registry.example.test/team/app:1.4.2", "digest": "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c"}"#.to_vec(),
            202,
            "registry.example.test/team/app:1.4.2@sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c",
        ),
        (
            "CI call, Watchtower style",
            "/v1/update?image=team/app:1.4.2".into(),
            vec![("authorization", &auth)],
            Vec::new(),
            202,
            "docker.io/team/app:1.4.2",
        ),
    ];
    for (what, path, headers, body, status, expected) in cases {
        let (got, answer) = send(&hoist, &path, &headers, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        if status == 202 {
            assert_eq!(
                answer["accepted"],
                serde_json::json!([expected]),
                "{what}: {answer}"
            );
        } else {
            assert_eq!(answer["ignored"][0]["reason"], expected, "{what}: {answer}");
        }
    }
    // Malformed bodies name their format.
    let (status, answer) = send(
        &hoist,
        "/v1/update",
        &[("authorization", &auth)],
        br#"{"image": "Team/App"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed update payload"),
        "{answer}"
    );
    let (status, answer) = send(&hoist, &format!("/v1/hooks/quay/{TOKEN}"), &[], b"{}").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("no `docker_url`"),
        "{answer}"
    );
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_signatures_and_tokens_are_refused_and_counted() {
    let hoist = Hoist::start(&[
        ("HOIST_GITHUB_WEBHOOK_SECRET", SECRET),
        ("HOIST_GITEA_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let github = fixture("github-package-published.json");
    let gitea = fixture("gitea-package.json");
    let wrong_github = format!(
        "sha256={}",
        hoist::source::signature::sign("wrong-secret", &github)
    );
    let other_body = hoist::source::signature::sign(SECRET, b"{}");
    let mut tampered = github.clone();
    tampered[20] ^= 0x01;
    let wrong = bearer("wrong-token");
    let short = bearer(&TOKEN[..TOKEN.len() - 1]);
    let before: Vec<u64> = futures_util::future::join_all(
        ["github", "gitea", "dockerhub", "quay", "acr", "ci"]
            .map(|source| received(&hoist, source, "unauthorized")),
    )
    .await;
    // (source, path, headers, body)
    let refused: Vec<(&str, String, Headers, &[u8])> = vec![
        ("github", "/v1/hooks/github".into(), vec![], &github),
        (
            "github",
            "/v1/hooks/github".into(),
            vec![("x-hub-signature-256", "")],
            &github,
        ),
        (
            "github",
            "/v1/hooks/github".into(),
            vec![("x-hub-signature-256", &wrong_github)],
            &github,
        ),
        (
            "github",
            "/v1/hooks/github".into(),
            vec![("x-hub-signature-256", GITHUB_SIGNATURE)],
            &tampered,
        ),
        (
            "github",
            "/v1/hooks/github".into(),
            vec![("x-hub-signature-256", "sha1=43cef6bc")],
            &github,
        ),
        // A valid signature in the wrong source's header.
        (
            "github",
            "/v1/hooks/github".into(),
            vec![("x-gitea-signature", GITHUB_SIGNATURE)],
            &github,
        ),
        ("gitea", "/v1/hooks/gitea".into(), vec![], &gitea),
        // Gitea sends the headers empty when the webhook has no secret.
        (
            "gitea",
            "/v1/hooks/gitea".into(),
            vec![("x-gitea-signature", "")],
            &gitea,
        ),
        (
            "gitea",
            "/v1/hooks/gitea".into(),
            vec![("x-gitea-signature", &other_body)],
            &gitea,
        ),
        (
            "gitea",
            "/v1/hooks/gitea".into(),
            vec![("x-forgejo-signature", &other_body)],
            &gitea,
        ),
        (
            "dockerhub",
            "/v1/hooks/dockerhub/wrong-token".into(),
            vec![],
            b"{}",
        ),
        (
            "dockerhub",
            format!("/v1/hooks/dockerhub/{}", &TOKEN[..TOKEN.len() - 1]),
            vec![],
            b"{}",
        ),
        (
            "dockerhub",
            format!("/v1/hooks/dockerhub/{TOKEN}x"),
            vec![],
            b"{}",
        ),
        ("quay", "/v1/hooks/quay/wrong-token".into(), vec![], b"{}"),
        ("quay", "/v1/hooks/quay/%20".into(), vec![], b"{}"),
        ("acr", "/v1/hooks/acr".into(), vec![], b"{}"),
        (
            "acr",
            "/v1/hooks/acr".into(),
            vec![("authorization", &short)],
            b"{}",
        ),
        ("ci", "/v1/update".into(), vec![("authorization", &wrong)], b"{}"),
        ("ci", "/v1/update".into(), vec![], b"{\"image\": \"app:1\"}"),
    ];
    let mut expected = [0u64; 6];
    for (source, path, headers, body) in &refused {
        let (status, answer) = send(&hoist, path, headers, body).await;
        assert_eq!(status, 401, "{source} {path} {headers:?}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with("missing or wrong"),
            "{answer}"
        );
        let index = ["github", "gitea", "dockerhub", "quay", "acr", "ci"]
            .iter()
            .position(|s| s == source)
            .unwrap();
        expected[index] += 1;
    }
    for (index, source) in ["github", "gitea", "dockerhub", "quay", "acr", "ci"]
        .iter()
        .enumerate()
    {
        let after = received(&hoist, source, "unauthorized").await;
        assert!(
            after >= before[index] + expected[index],
            "{source}: {} refusals counted, {} expected",
            after - before[index],
            expected[index]
        );
    }
    // Nothing refused reached the history.
    assert_eq!(hoist.get_json("/v1/history").await["jobs"], serde_json::json!([]));
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_routes_refuse_everything_until_their_secret_is_set() {
    let hoist = Hoist::start(&[]).await;
    let (status, answer) = send(
        &hoist,
        "/v1/hooks/github",
        &[("x-hub-signature-256", GITHUB_SIGNATURE)],
        &fixture("github-package-published.json"),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("HOIST_GITHUB_WEBHOOK_SECRET is not set"),
        "{answer}"
    );
    let (status, answer) = send(
        &hoist,
        "/v1/hooks/gitea",
        &[("x-gitea-signature", GITEA_SIGNATURE)],
        &fixture("gitea-package.json"),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("HOIST_GITEA_WEBHOOK_SECRET is not set"),
        "{answer}"
    );
    hoist.stop().await;
}
