//! A burst of 5,000 Distribution events at full speed on loopback:
//! duplicates, other tags, blob and pull events, and several new digests for
//! one tag. Each target must end on the last pushed digest, be updated at
//! most once per distinct digest, and nothing acknowledged may be lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    build_and_push, docker, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry, TOKEN,
};

const EVENTS: usize = 5_000;
const SENDERS: usize = 8;

fn push_event(id: &str, host: &str, repository: &str, tag: &str, digest: &str) -> Value {
    json!({ "events": [{
        "id": id, "action": "push", "timestamp": "2026-11-23T10:00:00Z",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": 736, "repository": repository, "tag": tag
        },
        "request": { "host": host, "method": "PUT" }, "actor": {}
    }]})
}

fn other_event(id: &str, host: &str, repository: &str, action: &str, digest: &str) -> Value {
    json!({ "events": [{
        "id": id, "action": action,
        "target": { "mediaType": "application/octet-stream", "digest": digest, "size": 10, "repository": repository },
        "request": { "host": host, "method": if action == "pull" { "HEAD" } else { "PUT" } }, "actor": {}
    }]})
}

/// Posts like the registry does: a 503 is sent again after a moment.
async fn deliver(http: &reqwest::Client, url: &str, body: &Value, counts: &Counts) -> Value {
    loop {
        let response = http
            .post(url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .json(body)
            .send()
            .await
            .expect("hoist answers");
        match response.status().as_u16() {
            200 | 202 => return response.json().await.unwrap(),
            503 => {
                counts.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    retried: AtomicUsize,
    queued: AtomicUsize,
    duplicates: AtomicUsize,
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_five_thousand_events_loses_nothing_and_ends_on_the_last_digest() {
    let hoist = Hoist::start(&[("HOIST_QUEUE_CAPACITY", "256")]).await;
    // The registry's own notifications go nowhere here: the burst is the test's.
    let registry = Registry::start("http://127.0.0.1:9/nowhere");
    let mut clean = Cleanup::default();
    let repository = unique("burst");
    let tag = format!("{}:1", registry.repo(&repository));
    clean.image(&tag);
    let d1 = build_and_push(&tag, "v1", Behaviour::Serve);
    let v1_id = image_id(&tag);
    let d2 = build_and_push(&tag, "v2", Behaviour::Serve);
    let d3 = build_and_push(&tag, "v3", Behaviour::Serve);
    let v3_id = image_id(&tag);
    docker(&["tag", &v1_id, &tag]);
    let targets = [unique("t1"), unique("t2")];
    for name in &targets {
        clean.container(name);
        docker(&["run", "-d", "--name", name, "--label", "hoist.enable=true", &tag]);
        hoist.wait_for_target(name).await;
    }

    // Three phases, one per new digest of the tag, sent one after the other
    // (8 senders at full speed within a phase): the tag moves d1 → d2 → d3,
    // as pushes of new versions do. Mixed in: redeliveries of any earlier
    // push (same event id and body, as a registry retry), pushes of another
    // tag and of another repository, blob pushes and pulls.
    let host = registry.host.clone();
    let digests = [d1.clone(), d2.clone(), d3.clone()];
    let blob = format!("sha256:{}", "b".repeat(64));
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut phases: Vec<Vec<Value>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut pushes_so_far: Vec<Value> = Vec::new();
    for i in 0..EVENTS - 1 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let phase = i * 3 / (EVENTS - 1);
        let body = match seed % 10 {
            0 | 1 => {
                let body = push_event(&format!("push-{i}"), &host, &repository, "1", &digests[phase]);
                pushes_so_far.push(body.clone());
                body
            }
            2 if !pushes_so_far.is_empty() => {
                pushes_so_far[(seed >> 8) as usize % pushes_so_far.len()].clone()
            }
            2..=4 => push_event(&format!("other-{i}"), &host, &repository, "other", &digests[0]),
            5 | 6 => other_event(&format!("blob-{i}"), &host, &repository, "push", &blob),
            7 | 8 => other_event(&format!("pull-{i}"), &host, &repository, "pull", &blob),
            _ => push_event(&format!("elsewhere-{i}"), &host, "someone/else", "1", &digests[1]),
        };
        phases[phase].push(body);
    }

    let http = reqwest::Client::new();
    let url = hoist.hook_url();
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    for bodies in phases {
        let bodies = Arc::new(bodies);
        let next = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            let (http, url, counts, bodies, next) = (
                http.clone(),
                url.clone(),
                counts.clone(),
                bodies.clone(),
                next.clone(),
            );
            senders.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let receipt = deliver(&http, &url, body, &counts).await;
                    let count = |key: &str| receipt[key].as_u64().unwrap() as usize;
                    counts.queued.fetch_add(count("queued"), Ordering::Relaxed);
                    counts
                        .duplicates
                        .fetch_add(count("duplicates"), Ordering::Relaxed);
                }
            }));
        }
        for sender in senders {
            sender.await.unwrap();
        }
    }
    // The last push of the tag, after everything else: d3.
    let last = deliver(
        &http,
        &url,
        &push_event("the-last-push", &host, &repository, "1", &d3),
        &counts,
    )
    .await;
    counts
        .queued
        .fetch_add(last["queued"].as_u64().unwrap() as usize, Ordering::Relaxed);
    let sent_in = started.elapsed();

    // Quiet: every acknowledged job closed.
    let db_path = hoist.state.path().join("hoist.db");
    let deadline = Instant::now() + Duration::from_secs(240);
    let (closed, open): (i64, i64) = loop {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        let counts: (i64, i64) = db
            .query_row(
                "SELECT sum(state NOT IN ('queued','running')), sum(state IN ('queued','running')) FROM jobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        if counts.1 == 0 {
            break counts;
        }
        assert!(Instant::now() < deadline, "jobs still open: {counts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(open, 0);
    assert_eq!(
        closed as usize,
        counts.queued.load(Ordering::Relaxed),
        "every acknowledged job is in the journal, closed"
    );

    for name in &targets {
        let container = inspect(name);
        assert_eq!(container["Image"], v3_id, "{name} ends on the last pushed digest");
        assert_eq!(container["State"]["Running"], true);
    }
    // At most one update per target and digest.
    let history = hoist.get_json("/v1/history").await;
    let mut updates: HashMap<(String, String), usize> = HashMap::new();
    for job in history["jobs"].as_array().unwrap() {
        for target in job["targets"].as_array().unwrap() {
            if target["outcome"]["result"] == "updated" {
                let key = (
                    target["name"].as_str().unwrap().to_string(),
                    job["new_digest"].as_str().unwrap().to_string(),
                );
                *updates.entry(key).or_default() += 1;
            }
        }
    }
    assert!(!updates.is_empty());
    for (key, count) in &updates {
        let jobs: Vec<String> = history["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["new_digest"] == key.1.as_str())
            .map(|j| format!("job {} {} {}", j["job"], j["started_at"], j["targets"]))
            .collect();
        assert_eq!(*count, 1, "{key:?} updated {count} times: {jobs:#?}");
    }
    let peak = peak_rss_kib();
    eprintln!(
        "burst: {} events sent in {:.2?} ({:.0}/s), {} queued as jobs, {} duplicates, {} answered 503 and resent, {} closed jobs, updates {:?}, test process peak RSS {} MiB",
        EVENTS,
        sent_in,
        EVENTS as f64 / sent_in.as_secs_f64(),
        counts.queued.load(Ordering::Relaxed),
        counts.duplicates.load(Ordering::Relaxed),
        counts.retried.load(Ordering::Relaxed),
        closed,
        updates.len(),
        peak / 1024
    );
    assert!(
        peak < 512 * 1024,
        "memory stays bounded: peak RSS {} MiB",
        peak / 1024
    );
    hoist.stop().await;
}
