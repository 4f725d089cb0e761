//! Labels are input: an absurd value fails its own target, clearly, and
//! nothing else; and the label exactly as registry-docker-updater's README
//! writes it in compose (`- 'registry-docker-updater: true'`) opts in.

use std::process::Command;
use std::time::Duration;

use crate::container::outcome;
use crate::harness::{
    build_and_push, docker, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry,
};

const JOB_WAIT: Duration = Duration::from_secs(90);

/// Issue 15, case 5: `hoist.health.grace=100000000000000000000` made hoist
/// panic at the push (and release builds abort on panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_label_fails_its_target_and_hoist_keeps_serving() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1", registry.repo(&unique("absurd")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let good = unique("good");
    // One per label, each with a value that once overflowed or parsed to an absurd wait.
    let bad = [
        (
            unique("grace"),
            "hoist.health.grace=100000000000000000000",
            "hoist.health.grace",
        ),
        (
            unique("deadline"),
            "hoist.health.deadline=10000000000000000000s",
            "hoist.health.deadline",
        ),
        (
            unique("monitor"),
            "hoist.monitor-only=perhaps",
            "hoist.monitor-only",
        ),
        (unique("canary"), "hoist.canary=maybe", "hoist.canary"),
        (
            unique("legacy"),
            "registry-docker-updater=1e400",
            "registry-docker-updater",
        ),
    ];
    clean.container(&good);
    docker(&["run", "-d", "--name", &good, "--label", "hoist.enable=true", &tag]);
    for (name, label, _) in &bad {
        clean.container(name);
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "hoist.enable=true",
            "--label",
            label,
            &tag,
        ]);
    }
    hoist.wait_for_target(&good).await;
    for (name, _, _) in &bad {
        hoist.wait_for_target(name).await;
    }
    let before: Vec<String> = bad.iter().map(|(n, _, _)| inspect(n)["Id"].to_string()).collect();

    let digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &good)["result"], "updated", "{job}");
    for ((name, _, key), id) in bad.iter().zip(&before) {
        let result = outcome(&job, name);
        assert_eq!(result["result"], "failed", "{name}: {job}");
        let reason = result["reason"].as_str().unwrap();
        assert!(
            reason.contains(key) && reason.contains("nothing was changed"),
            "{name}: {reason}"
        );
        let after = inspect(name);
        assert_eq!(after["Id"].to_string(), *id, "{name} was touched");
        assert_eq!(after["State"]["Running"], true, "{name}");
    }

    // Still serving: health, and the next push.
    let health = hoist.http.get(hoist.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success(), "{}", health.status());
    let digest = build_and_push(&tag, "v3", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &good)["result"], "updated", "{job}");
    hoist.stop().await;
    drop(registry);
}

/// A compose project, removed with its network on drop.
struct Project {
    name: String,
    file: tempfile::NamedTempFile,
}

impl Project {
    fn compose(&self, args: &[&str]) {
        let output = Command::new("docker-compose")
            .arg("-f")
            .arg(self.file.path())
            .args(["-p", &self.name])
            .args(args)
            .output()
            .expect("docker-compose must be installed");
        assert!(
            output.status.success(),
            "docker-compose {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let down = Command::new("docker-compose")
            .arg("-f")
            .arg(self.file.path())
            .args(["-p", &self.name, "down", "-v", "-t", "1"])
            .output();
        if !down.is_ok_and(|o| o.status.success()) {
            eprintln!("docker-compose down failed for project {}", self.name);
        }
    }
}

/// Issue 15, case 6: the label as registry-docker-updater's README writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_tools_compose_label_opts_in() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("seeded")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    // As in registry-docker-updater's README: the list form of `labels:`.
    let compose_file = format!(
        "version: '3'\n\
         services:\n  \
           app:\n    \
             image: {tag}\n    \
             labels:\n      \
               - 'registry-docker-updater: true'\n"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), compose_file).unwrap();
    let project = Project {
        name: unique("seed").replace('-', ""),
        file,
    };
    project.compose(&["up", "-d"]);
    let name = format!("{}_app_1", project.name);
    clean.container(&name);
    let labels = &inspect(&name)["Config"]["Labels"];
    assert_eq!(
        labels["registry-docker-updater: true"], "",
        "compose's reading: {labels}"
    );
    hoist.wait_for_target(&name).await;

    let digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    let after = inspect(&name);
    assert_eq!(after["Image"], image_id(&tag));
    assert_eq!(after["Config"]["Labels"]["registry-docker-updater: true"], "");
    hoist.stop().await;
    drop(registry);
}
