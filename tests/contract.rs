//! What a new image changes (ports, volumes, user, env names, ...) is in the
//! history and in every message; `hoist.contract=block` refuses an image that
//! changes ports, volumes or user, and the old container keeps running.

use std::process::Command;
use std::time::Duration;

use crate::harness::recorder::Recorder;
use crate::harness::{build_and_push, image_id, inspect, push, unique, Behaviour, Cleanup, Hoist, Registry};
use crate::operator::run_labelled;

/// Builds `tag` FROM `base` (a local image) with `lines` added.
fn build_from(base: &str, tag: &str, lines: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\n{lines}")).unwrap();
    let output = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_changes_are_shown_and_block_when_asked() {
    let slack = Recorder::always(200).await;
    let slack_url = slack.url("/services/T0/B0/contract");
    let hoist = Hoist::start(&[("HOIST_SLACK_WEBHOOK_URL", &slack_url)]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:2.0", registry.repo(&unique("contract")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let v1_id = image_id(&tag);
    let (free, guarded) = (unique("free"), unique("guarded"));
    run_labelled(&mut clean, &free, &tag, &[]);
    run_labelled(&mut clean, &guarded, &tag, &["--label", "hoist.contract=block"]);
    hoist.wait_for_target(&free).await;
    hoist.wait_for_target(&guarded).await;

    // v2: another port, a non-root user, a new env variable (whose value is a secret).
    build_from(
        &v1_id,
        &tag,
        "EXPOSE 9090\nUSER 1000\nENV NEW_API_KEY=supersecretvalue\nLABEL org.opencontainers.image.version=v2\n",
    );
    let v2 = push(&tag);
    let job = hoist.wait_for_job(&tag, &v2, Duration::from_secs(90)).await;
    let target = |name: &str| {
        job["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {job}"))
    };
    let expected = vec![
        "exposed ports: +9090/tcp",
        "user: (root) → 1000",
        "env variables: +NEW_API_KEY",
    ];
    let free_report = target(&free);
    assert_eq!(free_report["outcome"]["result"], "updated", "{job}");
    assert_eq!(free_report["contract"], serde_json::json!(expected), "{job}");
    let guarded_report = target(&guarded);
    assert_eq!(guarded_report["outcome"]["result"], "blocked", "{job}");
    assert_eq!(
        guarded_report["outcome"]["reason"],
        "its ports and user would change; nothing was changed"
    );
    assert_eq!(guarded_report["contract"], serde_json::json!(expected));
    let kept = inspect(&guarded);
    assert_eq!(
        kept["Image"],
        v1_id.as_str(),
        "the guarded container still runs v1"
    );
    assert_eq!(kept["State"]["Running"], true);
    assert_ne!(
        inspect(&free)["Image"],
        v1_id.as_str(),
        "the other one was updated"
    );

    let messages = slack.wait_for(1, Duration::from_secs(10)).await;
    let body = String::from_utf8_lossy(&messages[0].body).to_string();
    for words in [
        "the new image changes exposed ports: +9090/tcp",
        "user: (root) → 1000",
        "blocked (hoist.contract=block)",
    ] {
        assert!(body.contains(words), "{words:?} not in the message: {body}");
    }
    assert!(
        !body.contains("supersecretvalue"),
        "env values never reach a message"
    );
    assert!(!job.to_string().contains("supersecretvalue"), "nor the history");
    let pretty = serde_json::to_string_pretty(&messages[0].json()).unwrap();
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/contract-notification.json"),
        &pretty,
    )
    .unwrap();
    hoist.stop().await;
}
