//! The job queue: `HOIST_QUEUE_CAPACITY` bounds the jobs acknowledged and not
//! yet running (a full queue answers 503 with `Retry-After`, and nothing
//! acknowledged is lost), and the runner keeps no state for a tag once its
//! jobs are done, however many distinct tags are pushed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::container::outcome;
use crate::harness::{build_and_push, docker, inspect, unique, Behaviour, Cleanup, Hoist, Registry, TOKEN};

/// A Distribution notification of one tag push, as the registry sends it.
fn push_event(id: &str, tag: &str, digest: &str) -> Value {
    let (host, rest) = tag.split_once('/').unwrap();
    let (repository, tag) = rest.rsplit_once(':').unwrap();
    json!({ "events": [{
        "id": id, "action": "push", "timestamp": "2026-12-02T10:00:00Z",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": 736, "repository": repository, "tag": tag
        },
        "request": { "host": host, "method": "PUT" }, "actor": { "name": "ci" }
    }]})
}

async fn post_push(hoist: &Hoist, body: &Value) -> reqwest::Response {
    hoist
        .http
        .post(hoist.hook_url())
        .header("authorization", format!("Bearer {TOKEN}"))
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `jobs` part of `/healthz`: waiting, capacity, tag_keys_in_flight.
async fn queue_status(hoist: &Hoist) -> Value {
    hoist.get_json("/healthz").await["jobs"].clone()
}

async fn wait_until_queue_is(hoist: &Hoist, waiting: u64, keys: Option<u64>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = queue_status(hoist).await;
        if status["waiting"] == waiting && keys.is_none_or(|k| status["tag_keys_in_flight"] == k) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue never reached waiting={waiting} keys={keys:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_loses_nothing() {
    // One engine operation at a time and two jobs may wait; the registry sends nothing
    // itself (the test delivers its notifications, to control their timing).
    let hoist = Hoist::start(&[
        ("HOIST_QUEUE_CAPACITY", "2"),
        ("HOIST_MAX_PARALLEL", "1"),
        ("HOIST_HEALTH_GRACE", "3s"),
    ])
    .await;
    let registry = Registry::start("http://127.0.0.1:9/nowhere");
    let mut clean = Cleanup::default();
    let mut apps = Vec::new();
    for label in ["qa", "qb", "qc"] {
        let tag = format!("{}:1", registry.repo(&unique(label)));
        clean.image(&tag);
        build_and_push(&tag, "v1", Behaviour::Serve);
        let name = unique(label);
        clean.container(&name);
        // The first one ignores its stop signal (PID 1 has no handler for
        // it), so its stop, an engine operation, holds the one slot for 8 s.
        let slow_stop: &[&str] = if label == "qa" {
            &["--stop-signal", "SIGUSR1", "--stop-timeout", "8"]
        } else {
            &[]
        };
        let mut run = vec!["run", "-d", "--name", &name, "--label", "hoist.enable=true"];
        run.extend_from_slice(slow_stop);
        run.push(&tag);
        docker(&run);
        hoist.wait_for_target(&name).await;
        let digest = build_and_push(&tag, "v2", Behaviour::Serve);
        apps.push((name, tag, digest));
    }

    // The first push starts at once and holds the only slot while its old
    // container is being stopped (a health gate would not hold it).
    let (name_a, tag_a, digest_a) = &apps[0];
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    assert_eq!(
        post_push(&hoist, &push_event("qa-1", tag_a, digest_a))
            .await
            .status(),
        202
    );
    wait_until_queue_is(&hoist, 0, Some(1), Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let now = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let kills = docker(&[
            "events",
            "--since",
            &started,
            "--until",
            &now,
            "--filter",
            &format!("container={name_a}"),
            "--filter",
            "event=kill",
            "--format",
            "{{.Action}}",
        ]);
        if !kills.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first job never stopped its old container"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more wait: the queue is full.
    for (n, (_, tag, digest)) in apps[1..].iter().enumerate() {
        let response = post_push(&hoist, &push_event(&format!("q-{n}"), tag, digest)).await;
        assert_eq!(response.status(), 202);
    }
    assert_eq!(queue_status(&hoist).await["waiting"], 2);
    // A third waiting job is refused, with a time to send it again.
    let (_, tag_c, digest_c) = &apps[2];
    let again = push_event("qc-redelivered-by-another-sender", tag_c, digest_c);
    let refused = post_push(&hoist, &again).await;
    assert_eq!(refused.status(), 503);
    let retry_after = refused
        .headers()
        .get("retry-after")
        .expect("a 503 says when to send again")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("queue full"), "{body}");

    // Sent again like a registry would, it is taken once there is room.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = post_push(&hoist, &again).await.status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "the queue never had room again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Everything acknowledged ran: every container is on its new image. (The
    // redelivery of qc under another id is a job of its own: it runs after the
    // first and finds the container current.)
    for (name, tag, digest) in &apps {
        hoist.wait_for_job(tag, digest, Duration::from_secs(90)).await;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let history = hoist.get_json("/v1/history").await;
            let results: Vec<Value> = history["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|job| job["image"] == *tag && job["new_digest"] == *digest)
                .map(|job| outcome(job, name)["result"].clone())
                .collect();
            if results.iter().any(|r| r == "updated") {
                assert!(
                    results.iter().all(|r| r == "updated" || r == "already_current"),
                    "{name}: {results:?}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{name} was never updated: {results:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let running = inspect(name);
        assert_eq!(running["State"]["Running"], true);
        assert_eq!(
            running["Config"]["Labels"]["org.opencontainers.image.version"],
            "v2"
        );
    }
    wait_until_queue_is(&hoist, 0, Some(0), Duration::from_secs(30)).await;
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_tags_leave_no_state_behind() {
    // Peers make every push a job, matched or not: the case where the
    // runner's per-tag state used to grow with every tag ever pushed.
    let hoist = Hoist::start(&[
        ("HOIST_PEERS", "http://127.0.0.1:9"),
        ("HOIST_FORWARD_ATTEMPTS", "1"),
    ])
    .await;
    let repository = unique("many-tags");
    let mut accepted = 0;
    for batch in 0..10 {
        let events: Vec<Value> = (0..50)
            .map(|n| {
                let tag = format!("build-{batch}-{n}");
                let digest = format!("sha256:{:064x}", batch * 1000 + n + 1);
                push_event(
                    &format!("{repository}-{tag}"),
                    &format!("127.0.0.1:5999/{repository}:{tag}"),
                    &digest,
                )["events"][0]
                    .clone()
            })
            .collect();
        let response = post_push(&hoist, &json!({ "events": events })).await;
        assert_eq!(response.status(), 202);
        let receipt: Value = response.json().await.unwrap();
        accepted += receipt["queued"].as_u64().unwrap();
    }
    assert_eq!(accepted, 500, "every push became a job");
    // Each job finds no target and ends; the tag's state goes with it.
    wait_until_queue_is(&hoist, 0, Some(0), Duration::from_secs(60)).await;
    hoist.stop().await;
}
