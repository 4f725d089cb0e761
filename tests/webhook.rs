//! Intake over real HTTP: every fixture payload gets the status its kind
//! deserves, and bad requests get a clear JSON error.

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

    let (status, body) = post(&hoist, "quay", Some(TOKEN), push).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("unknown source"));

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
