//! A push redeploys labelled containers on the real engine, from the real
//! registry's own notifications; everything else about them stays as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    build_and_push, docker, docker_quiet, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry,
    TOKEN,
};

const JOB_WAIT: Duration = Duration::from_secs(90);

/// Starts hoist and a registry that notifies it; returns them with a fresh tag.
async fn setup(extra: &[(&str, &str)]) -> (Hoist, Registry, String) {
    let hoist = Hoist::start(extra).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("app")));
    (hoist, registry, tag)
}

/// The outcome of `name` in a job of `/v1/history`.
pub(crate) fn outcome(job: &Value, name: &str) -> Value {
    job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in job {job}"))["outcome"]
        .clone()
}

fn without(value: &Value, keys: &[&str]) -> Value {
    let mut value = value.clone();
    for key in keys {
        value.as_object_mut().unwrap().remove(*key);
    }
    value
}

fn env_without_image_version(config: &Value) -> Vec<String> {
    config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .filter(|e| !e.starts_with("IMAGE_VERSION="))
        .collect()
}

fn labels_without_oci(config: &Value) -> BTreeMap<String, Value> {
    config["Labels"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("org.opencontainers."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn mounts(container: &Value) -> BTreeSet<String> {
    container["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {} {}",
                m["Type"], m["Name"], m["Source"], m["Destination"], m["RW"]
            )
        })
        .collect()
}

/// Per network: its ID, the aliases the user set (not the engine's short-ID
/// alias), and the static address configuration.
fn networks(container: &Value) -> BTreeMap<String, Value> {
    let short_id = &container["Id"].as_str().unwrap()[..12];
    container["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, ep)| {
            let mut aliases: Vec<String> = ep["Aliases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .filter(|x| x != short_id)
                        .collect()
                })
                .unwrap_or_default();
            aliases.sort();
            (
                name.clone(),
                json!({ "id": ep["NetworkID"], "aliases": aliases, "ipam": ep["IPAMConfig"] }),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_recreates_the_labelled_container_with_its_configuration() {
    let (hoist, registry, tag) = setup(&[]).await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);

    let name = unique("web");
    let (net_a, net_b, volume) = (unique("neta"), unique("netb"), unique("vol"));
    clean.container(&name);
    clean.network(&net_a);
    clean.network(&net_b);
    clean.volume(&volume);
    let octet = 16 + std::process::id() % 200;
    docker(&[
        "network",
        "create",
        "--subnet",
        &format!("10.213.{octet}.0/24"),
        &net_a,
    ]);
    docker(&["network", "create", &net_b]);
    let bind_dir = tempfile::tempdir().unwrap();
    std::fs::write(bind_dir.path().join("hello"), "from the host").unwrap();
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        "--label",
        "com.docker.compose.project=shop",
        "--label",
        "com.docker.compose.service=web",
        "--label",
        "team=payments",
        "-e",
        "GREETING=hello world",
        "-e",
        "EMPTY=",
        "--network",
        &net_a,
        "--network-alias",
        "web",
        "--network-alias",
        "shop-web",
        "--ip",
        &format!("10.213.{octet}.10"),
        "-v",
        &format!("{volume}:/named"),
        "-v",
        &format!("{}:/bind:ro", bind_dir.path().display()),
        "-p",
        "127.0.0.1::8080",
        "--restart",
        "unless-stopped",
        "--memory",
        "64m",
        "--cpu-shares",
        "512",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--device",
        "/dev/null:/dev/hoist-null",
        "--log-opt",
        "max-size=1m",
        "--health-cmd",
        "wget -q -O /dev/null http://127.0.0.1:8080/",
        "--health-interval",
        "1s",
        "--health-retries",
        "3",
        "--workdir",
        "/www",
        &tag,
        "/bin/sh",
        "-c",
        "echo custom command; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait",
    ]);
    docker(&["network", "connect", "--alias", "second-alias", &net_b, &name]);
    // Data in the anonymous volume (the image declares VOLUME /data) and the named one.
    docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo anonymous-data > /data/file && echo named-data > /named/file",
    ]);
    hoist.wait_for_target(&name).await;
    let before = inspect(&name);

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    assert_eq!(job["image_version"], "v2");

    let after = inspect(&name);
    assert_ne!(after["Id"], before["Id"], "the container was recreated");
    assert_eq!(after["Image"], image_id(&tag), "it runs the pushed image");
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(after["State"]["Health"]["Status"], "healthy");
    assert_eq!(after["Name"], before["Name"]);

    // Config: the same, but for what comes from the new image and the hostname (the short ID).
    let config_keys = ["Hostname", "Env", "Labels", "Image"];
    assert_eq!(
        without(&after["Config"], &config_keys),
        without(&before["Config"], &config_keys)
    );
    assert_eq!(after["Config"]["Image"], tag);
    assert_eq!(
        env_without_image_version(&after["Config"]),
        env_without_image_version(&before["Config"])
    );
    assert!(
        after["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&json!("IMAGE_VERSION=v2")),
        "image env defaults come from the new image"
    );
    assert_eq!(
        labels_without_oci(&after["Config"]),
        labels_without_oci(&before["Config"])
    );
    assert_eq!(
        after["Config"]["Labels"]["org.opencontainers.image.version"],
        "v2"
    );

    // HostConfig: identical, except that the anonymous volume is now named explicitly.
    assert_eq!(
        without(&after["HostConfig"], &["Mounts"]),
        without(&before["HostConfig"], &["Mounts"])
    );
    assert_eq!(
        mounts(&after),
        mounts(&before),
        "same volumes and binds, anonymous one included"
    );
    assert_eq!(
        networks(&after),
        networks(&before),
        "same networks, aliases and static IP"
    );

    assert_eq!(docker(&["exec", &name, "cat", "/data/file"]), "anonymous-data");
    assert_eq!(docker(&["exec", &name, "cat", "/named/file"]), "named-data");
    assert_eq!(docker(&["exec", &name, "cat", "/bind/hello"]), "from the host");
    assert_eq!(docker(&["exec", &name, "cat", "/version"]), "v2");
    assert!(
        !docker_quiet(&["inspect", &format!("{name}-hoist-old")]),
        "no parked container left"
    );
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_labelled_containers_on_the_pushed_tag_are_touched() {
    let (hoist, registry, tag) = setup(&[]).await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    let other_tag = tag.replace(":1.4", ":1.5");
    clean.image(&other_tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    build_and_push(&other_tag, "v1-other", Behaviour::Serve);

    let (target_a, target_b, unlabelled, other, disabled) = (
        unique("a"),
        unique("b"),
        unique("plain"),
        unique("other"),
        unique("off"),
    );
    for (name, image, labels) in [
        (&target_a, &tag, vec!["hoist.enable=true"]),
        (&target_b, &tag, vec!["registry-docker-updater=true"]),
        (&unlabelled, &tag, vec![]),
        (&other, &other_tag, vec!["hoist.enable=true"]),
        (&disabled, &tag, vec!["hoist.enable=false"]),
    ] {
        clean.container(name);
        let mut args = vec!["run", "-d", "--name", name.as_str()];
        for label in &labels {
            args.extend(["--label", label]);
        }
        args.push(image);
        docker(&args);
    }
    hoist.wait_for_target(&target_a).await;
    hoist.wait_for_target(&target_b).await;
    let untouched: Vec<(String, Value)> = [&unlabelled, &other, &disabled]
        .iter()
        .map(|n| (n.to_string(), inspect(n)))
        .collect();

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    let names: Vec<&str> = job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut expected = vec![target_a.as_str(), target_b.as_str()];
    expected.sort();
    assert_eq!(
        names, expected,
        "both labels opt in, and nothing else is a target"
    );
    for name in [&target_a, &target_b] {
        assert_eq!(outcome(&job, name)["result"], "updated");
        assert_eq!(inspect(name)["Image"], image_id(&tag));
    }
    for (name, before) in untouched {
        let after = inspect(&name);
        assert_eq!(after["Id"], before["Id"], "{name} was recreated");
        assert_eq!(after["Image"], before["Image"], "{name} changed image");
        assert_eq!(after["State"]["Running"], true, "{name} stopped");
    }
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_aliases_match_one_registry_under_two_names() {
    // The container names the registry `localhost:<port>`; the registry reports `127.0.0.1:<port>`.
    let port = crate::harness::free_port();
    let aliases = format!("127.0.0.1:{port}=localhost:{port}");
    let hoist = Hoist::start(&[("HOIST_REGISTRY_ALIASES", &aliases)]).await;
    let registry = Registry::start_on(port, &hoist.hook_url());
    let mut clean = Cleanup::default();
    let repository = unique("aliased");
    let pushed_tag = format!("127.0.0.1:{port}/{repository}:1");
    let local_tag = format!("localhost:{port}/{repository}:1");
    clean.image(&pushed_tag);
    clean.image(&local_tag);
    build_and_push(&pushed_tag, "v1", Behaviour::Serve);
    docker(&["pull", &local_tag]);
    let name = unique("aliased");
    clean.container(&name);
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        &local_tag,
    ]);
    hoist.wait_for_target(&name).await;

    let new_digest = build_and_push(&pushed_tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&pushed_tag, &new_digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    let after = inspect(&name);
    assert_eq!(
        after["Config"]["Image"], local_tag,
        "the container keeps its own name for the image"
    );
    assert_eq!(after["Image"], image_id(&pushed_tag));
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_that_exits_at_once_is_rolled_back() {
    let (hoist, registry, tag) = setup(&[]).await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("crashy");
    clean.container(&name);
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        "--restart",
        "always",
        &tag,
    ]);
    hoist.wait_for_target(&name).await;
    let before = inspect(&name);

    let bad_digest = build_and_push(&tag, "v2-crash", Behaviour::Crash);
    let job = hoist.wait_for_job(&tag, &bad_digest, JOB_WAIT).await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "rolled_back", "{job}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.contains("exited with code 3") || reason.contains("keeps restarting"),
        "{reason}"
    );
    assert!(
        result["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("crashing on purpose")),
        "{result}"
    );

    let after = inspect(&name);
    assert_eq!(
        after["Id"], before["Id"],
        "the old container is back under its name"
    );
    assert_eq!(after["Image"], before["Image"]);
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["HostConfig"]["RestartPolicy"], before["HostConfig"]["RestartPolicy"],
        "restart policy restored"
    );
    assert!(
        !docker_quiet(&["inspect", &format!("{name}-hoist-old")]),
        "no parked container left"
    );
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_that_turns_unhealthy_is_rolled_back() {
    let (hoist, registry, tag) = setup(&[]).await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Healthy);
    let name = unique("sick");
    clean.container(&name);
    docker(&["run", "-d", "--name", &name, "--label", "hoist.enable=true", &tag]);
    hoist.wait_for_target(&name).await;
    let before = inspect(&name);

    let bad_digest = build_and_push(&tag, "v2-sick", Behaviour::Unhealthy);
    let job = hoist.wait_for_job(&tag, &bad_digest, JOB_WAIT).await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "rolled_back", "{job}");
    assert!(
        result["reason"].as_str().unwrap().contains("unhealthy"),
        "{result}"
    );
    let after = inspect(&name);
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["State"]["Running"], true);
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_fails_touches_nothing() {
    let (hoist, mut registry, tag) = setup(&[]).await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let name = unique("steady");
    clean.container(&name);
    docker(&["run", "-d", "--name", &name, "--label", "hoist.enable=true", &tag]);
    hoist.wait_for_target(&name).await;
    let before = inspect(&name);

    // The registry goes away; a push notification for a digest it never served arrives.
    registry.stop();
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    let (repository, tag_name) = tag.split_once('/').unwrap().1.rsplit_once(':').unwrap();
    let body = json!({ "events": [{
        "id": unique("event"),
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": 100, "repository": repository, "tag": tag_name
        },
        "request": { "host": registry.host, "method": "PUT" }
    }]});
    let response = hoist
        .http
        .post(hoist.hook_url())
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let job = hoist.wait_for_job(&tag, digest, JOB_WAIT).await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "failed", "{job}");
    assert!(result["reason"].as_str().unwrap().contains("pull"), "{result}");
    let after = inspect(&name);
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["State"]["StartedAt"], before["State"]["StartedAt"],
        "not even restarted"
    );
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_push_on_every_channel_and_a_hanging_channel_delays_nothing() {
    use crate::harness::recorder::Recorder;
    use crate::harness::smtp::{SmtpOptions, SmtpServer};
    let slack = Recorder::always(200).await;
    let teams = Recorder::hanging().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let slack_url = slack.url("/services/T000/B000/slack-secret");
    let teams_url = teams.url("/workflows/teams-secret");
    let smtp_url = format!("smtp://127.0.0.1:{}?tls=none", smtp.port());
    let (hoist, registry, tag) = setup(&[
        ("HOIST_SLACK_WEBHOOK_URL", &slack_url),
        ("HOIST_TEAMS_WEBHOOK_URL", &teams_url),
        ("HOIST_NOTIFY_TIMEOUT", "60s"),
        ("HOIST_SMTP_URL", &smtp_url),
        ("HOIST_EMAIL_FROM", "hoist@example.test"),
        ("HOIST_EMAIL_TO", "ops@example.test"),
    ])
    .await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let (first, second, watched) = (unique("one"), unique("two"), unique("watched"));
    for name in [&first, &second] {
        clean.container(name);
        docker(&["run", "-d", "--name", name, "--label", "hoist.enable=true", &tag]);
    }
    clean.container(&watched);
    docker(&[
        "run",
        "-d",
        "--name",
        &watched,
        "--label",
        "hoist.enable=true",
        "--label",
        "hoist.monitor-only=true",
        &tag,
    ]);
    for name in [&first, &second, &watched] {
        hoist.wait_for_target(name).await;
    }
    let watched_before = inspect(&watched);

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &first)["result"], "updated");
    assert_eq!(outcome(&job, &second)["result"], "updated");
    assert_eq!(outcome(&job, &watched)["result"], "monitor_only");
    assert_eq!(
        inspect(&watched)["Id"],
        watched_before["Id"],
        "monitor-only is not applied"
    );
    // The job is done while Teams still has not answered: the deploy did not wait for it.
    let teams_requests = teams.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        teams_requests.len(),
        1,
        "Teams got the message once and is still holding it"
    );
    assert!(teams_requests[0].json()["attachments"][0]["content"]["body"]
        .to_string()
        .contains(&first));

    let slack_messages = slack.wait_for(1, Duration::from_secs(10)).await;
    let mails = smtp.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slack.requests().len(),
        1,
        "one message per push, not per container"
    );
    let slack_text = slack_messages[0].json().to_string();
    for expected in [
        first.as_str(),
        second.as_str(),
        watched.as_str(),
        &new_digest[7..19],
        "v2",
        "not applied",
    ] {
        assert!(
            slack_text.contains(expected),
            "Slack message lacks {expected:?}: {slack_text}"
        );
    }
    assert_eq!(smtp.messages().len(), 1);
    let subject = mails[0].header("Subject").unwrap();
    assert!(subject.contains(&tag), "{subject}");
    let plain = mails[0].part("text/plain").unwrap();
    assert!(plain.contains(&first) && plain.contains(&second), "{plain}");
    assert!(
        mails[0].part("text/html").unwrap().contains("<"),
        "an HTML part too"
    );
    hoist.stop().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_images_are_removed_only_when_asked_unused_and_older_than_the_previous() {
    let (hoist, registry, tag) = setup(&[("HOIST_REMOVE_OLD_IMAGES", "true")]).await;
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let v1 = image_id(&tag);
    let name = unique("tidy");
    clean.container(&name);
    docker(&["run", "-d", "--name", &name, "--label", "hoist.enable=true", &tag]);
    hoist.wait_for_target(&name).await;

    // A rollback keeps the old image: it is what runs.
    let bad = build_and_push(&tag, "v2-crash", Behaviour::Crash);
    let job = hoist.wait_for_job(&tag, &bad, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "rolled_back");
    assert!(
        docker_quiet(&["image", "inspect", &v1]),
        "the running image is kept"
    );

    let good = build_and_push(&tag, "v3", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &good, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated");
    let v3 = image_id(&tag);
    assert!(
        docker_quiet(&["image", "inspect", &v1]),
        "the image the target ran before stays, for a rollback"
    );

    // The next successful update removes the one before the previous, keeps the previous.
    let next = build_and_push(&tag, "v4", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &next, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated");
    assert!(
        !docker_quiet(&["image", "inspect", &v1]),
        "an image older than the previous one is gone once unused"
    );
    assert!(
        docker_quiet(&["image", "inspect", &v3]),
        "the previous image (v3) stays until the next successful update"
    );
    hoist.stop().await;
    drop(registry);
}
