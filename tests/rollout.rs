//! The order of a push's updates, on the real engine: a sidecar in the
//! target's network namespace follows it (and rolls back with it), replicas
//! of a compose service are rolled one at a time, and a canary stops a bad
//! image after one container.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::container::outcome;
use crate::harness::{
    build_and_push, build_image, docker, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry,
};

const JOB_WAIT: Duration = Duration::from_secs(120);

/// A container in `vpn`'s network namespace, not labelled, that only waits.
fn run_sidecar(name: &str, vpn: &str, image: &str) {
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        &format!("container:{vpn}"),
        image,
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM; sleep 100000 & wait",
    ]);
}

/// What the sidecar gets from 127.0.0.1:8080, which only the vpn serves.
fn fetch_from_sidecar(sidecar: &str) -> String {
    docker(&["exec", sidecar, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
}

fn dependents(job: &Value, name: &str) -> Value {
    job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .map(|t| t["dependents"].clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_in_the_targets_namespace_follows_it_and_rolls_back_with_it() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("vpn")));
    let sidecar_image = format!("{}:local", unique("sidecar-image"));
    clean.image(&tag);
    clean.image(&sidecar_image);
    build_and_push(&tag, "v1", Behaviour::Serve);
    build_image(&sidecar_image, "s1", Behaviour::Serve);
    let (vpn, sidecar) = (unique("vpn"), unique("sidecar"));
    clean.container(&sidecar);
    clean.container(&vpn);
    docker(&["run", "-d", "--name", &vpn, "--label", "hoist.enable=true", &tag]);
    run_sidecar(&sidecar, &vpn, &sidecar_image);
    hoist.wait_for_target(&vpn).await;
    assert_eq!(fetch_from_sidecar(&sidecar), "v1");

    // A good image: the sidecar is recreated in the new vpn's namespace.
    let v2 = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &v2, JOB_WAIT).await;
    assert_eq!(outcome(&job, &vpn)["result"], "updated", "{job}");
    let listed = dependents(&job, &vpn);
    assert_eq!(
        listed[0]["name"],
        sidecar.as_str(),
        "the report lists the sidecar under its target: {job}"
    );
    assert_eq!(listed[0]["outcome"]["result"], "updated", "{job}");
    let new_vpn = inspect(&vpn);
    let after = inspect(&sidecar);
    assert_eq!(
        after["HostConfig"]["NetworkMode"],
        format!("container:{}", new_vpn["Id"].as_str().unwrap()),
        "the sidecar joined the new vpn's namespace"
    );
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(
        after["Image"],
        image_id(&sidecar_image),
        "a dependent keeps its own image"
    );
    assert_eq!(fetch_from_sidecar(&sidecar), "v2", "it reaches the new vpn");
    assert!(!crate::harness::docker_quiet(&[
        "inspect",
        &format!("{sidecar}-hoist-old")
    ]));

    // A bad image: the vpn rolls back, and the sidecar is attached to the restored one.
    let sidecar_before = inspect(&sidecar)["Id"].clone();
    let v3 = build_and_push(&tag, "v3", Behaviour::Crash);
    let job = hoist.wait_for_job(&tag, &v3, JOB_WAIT).await;
    assert_eq!(outcome(&job, &vpn)["result"], "rolled_back", "{job}");
    assert_eq!(
        dependents(&job, &vpn)[0]["outcome"]["result"],
        "rolled_back",
        "{job}"
    );
    let restored = inspect(&vpn);
    assert_eq!(
        restored["Id"], new_vpn["Id"],
        "the vpn from before the push is back"
    );
    let after = inspect(&sidecar);
    assert_eq!(
        after["Id"], sidecar_before,
        "the sidecar from before the push is back"
    );
    assert_eq!(
        after["HostConfig"]["NetworkMode"],
        format!("container:{}", restored["Id"].as_str().unwrap())
    );
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(fetch_from_sidecar(&sidecar), "v2");
    hoist.stop().await;
}

/// Samples how many of `names` run, until told to stop; returns the fewest seen.
fn sample_running(
    label: String,
    stop: Arc<AtomicBool>,
    fewest: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let running = docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label={label}"),
                "--filter",
                "status=running",
            ]);
            let count = running.lines().filter(|l| !l.is_empty()).count();
            fewest.fetch_min(count, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_compose_service_are_rolled_one_at_a_time() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("replica")));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let project = unique("proj").replace('-', "");
    let replicas: Vec<String> = (1..=3).map(|n| format!("{project}_web_{n}")).collect();
    for name in &replicas {
        clean.container(name);
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "hoist.enable=true",
            "--label",
            &format!("com.docker.compose.project={project}"),
            "--label",
            "com.docker.compose.service=web",
            &tag,
        ]);
    }
    for name in &replicas {
        hoist.wait_for_target(name).await;
    }
    let label = format!("com.docker.compose.project={project}");

    let stop = Arc::new(AtomicBool::new(false));
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = sample_running(label.clone(), stop.clone(), fewest.clone());
    let v2 = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &v2, JOB_WAIT).await;
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    for name in &replicas {
        assert_eq!(outcome(&job, name)["result"], "updated", "{job}");
        assert_eq!(inspect(name)["Image"], image_id(&tag));
    }
    let fewest = fewest.load(Ordering::SeqCst);
    eprintln!("replicas: fewest of 3 running during the roll: {fewest}");
    assert!(
        fewest >= 2,
        "never fewer than 2 of 3 running during the roll; saw {fewest}"
    );

    // A bad image stops after the first replica; the others stay on v2.
    let before: Vec<Value> = replicas.iter().map(|n| inspect(n)["Id"].clone()).collect();
    let v2_id = image_id(&tag);
    let v3 = build_and_push(&tag, "v3", Behaviour::Crash);
    let job = hoist.wait_for_job(&tag, &v3, JOB_WAIT).await;
    assert_eq!(outcome(&job, &replicas[0])["result"], "rolled_back", "{job}");
    for (name, id) in replicas.iter().zip(&before).skip(1) {
        let result = outcome(&job, name);
        assert_eq!(result["result"], "failed", "{job}");
        assert!(
            result["reason"]
                .as_str()
                .unwrap()
                .contains("stays on the old image"),
            "{result}"
        );
        let now = inspect(name);
        assert_eq!(&now["Id"], id, "{name} was not touched");
        assert_eq!(now["Image"], v2_id);
        assert_eq!(now["State"]["Running"], true);
    }
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_with_a_bad_image_is_the_only_container_touched() {
    let hoist = Hoist::start(&[("HOIST_CANARY", "true")]).await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("canary")));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let names: Vec<String> = (1..=3).map(|n| format!("{}-{n}", unique("canary"))).collect();
    for name in &names {
        clean.container(name);
        docker(&["run", "-d", "--name", name, "--label", "hoist.enable=true", &tag]);
    }
    for name in &names {
        hoist.wait_for_target(name).await;
    }
    let before: Vec<Value> = names.iter().map(|n| inspect(n)["Id"].clone()).collect();
    let v2 = build_and_push(&tag, "v2", Behaviour::Crash);
    let job = hoist.wait_for_job(&tag, &v2, JOB_WAIT).await;
    let results: Vec<Value> = names.iter().map(|n| outcome(&job, n)).collect();
    let touched: Vec<&Value> = results.iter().filter(|r| r["result"] == "rolled_back").collect();
    assert_eq!(touched.len(), 1, "exactly one container was tried: {job}");
    for (name, (result, id)) in names.iter().zip(results.iter().zip(&before)) {
        let now = inspect(name);
        assert_eq!(now["State"]["Running"], true);
        if result["result"] == "rolled_back" {
            continue;
        }
        assert_eq!(result["result"], "failed");
        assert!(result["reason"].as_str().unwrap().contains("canary"), "{result}");
        assert_eq!(&now["Id"], id, "{name} was not touched");
    }
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_that_is_a_target_too_is_updated_once() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("pair")));
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let (vpn, sidecar) = (unique("vpn"), unique("sidecar"));
    clean.container(&sidecar);
    clean.container(&vpn);
    docker(&["run", "-d", "--name", &vpn, "--label", "hoist.enable=true", &tag]);
    docker(&[
        "run",
        "-d",
        "--name",
        &sidecar,
        "--label",
        "hoist.enable=true",
        "--network",
        &format!("container:{vpn}"),
        &tag,
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM; sleep 100000 & wait",
    ]);
    hoist.wait_for_target(&vpn).await;
    hoist.wait_for_target(&sidecar).await;
    // With fractions of a second: the `docker run` above may be in the same second.
    let now = chrono::Utc::now();
    let started = format!("{}.{:09}", now.timestamp(), now.timestamp_subsec_nanos());
    let v2 = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &v2, JOB_WAIT).await;
    assert_eq!(outcome(&job, &vpn)["result"], "updated", "{job}");
    assert_eq!(outcome(&job, &sidecar)["result"], "updated", "{job}");
    assert_eq!(dependents(&job, &vpn)[0]["name"], sidecar.as_str(), "{job}");
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let creates = docker(&[
        "events",
        "--since",
        &started,
        "--until",
        &until,
        "--filter",
        "event=create",
        "--filter",
        &format!("container={sidecar}"),
    ]);
    assert_eq!(
        creates.lines().count(),
        1,
        "the sidecar was created once: {creates}"
    );
    let after = inspect(&sidecar);
    assert_eq!(after["Image"], image_id(&tag), "on the new image");
    assert_eq!(
        after["HostConfig"]["NetworkMode"],
        format!("container:{}", inspect(&vpn)["Id"].as_str().unwrap())
    );
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_that_take_its_volumes_or_link_to_it_follow_the_target() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let mut clean = Cleanup::default();
    let tag = format!("{}:1", registry.repo(&unique("data")));
    let other_image = format!("{}:local", unique("user-image"));
    clean.image(&tag);
    clean.image(&other_image);
    build_and_push(&tag, "v1", Behaviour::Serve);
    build_image(&other_image, "u1", Behaviour::Serve);
    let (target, reader, linker) = (unique("data"), unique("reader"), unique("linker"));
    for name in [&reader, &linker, &target] {
        clean.container(name);
    }
    docker(&[
        "run",
        "-d",
        "--name",
        &target,
        "--label",
        "hoist.enable=true",
        &tag,
    ]);
    docker(&["exec", &target, "sh", "-c", "echo kept > /data/file"]);
    let wait = "trap 'exit 0' TERM; sleep 100000 & wait";
    docker(&[
        "run",
        "-d",
        "--name",
        &reader,
        "--volumes-from",
        &target,
        &other_image,
        "/bin/sh",
        "-c",
        wait,
    ]);
    docker(&[
        "run",
        "-d",
        "--name",
        &linker,
        "--link",
        &format!("{target}:backend"),
        &other_image,
        "/bin/sh",
        "-c",
        wait,
    ]);
    hoist.wait_for_target(&target).await;

    let v2 = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &v2, JOB_WAIT).await;
    assert_eq!(outcome(&job, &target)["result"], "updated", "{job}");
    let mut listed: Vec<String> = dependents(&job, &target)
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["name"].as_str().unwrap(),
                d["outcome"]["result"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort();
    let mut expected = vec![format!("{linker} updated"), format!("{reader} updated")];
    expected.sort();
    assert_eq!(listed, expected, "{job}");
    assert_eq!(inspect(&reader)["State"]["Running"], true);
    assert_eq!(
        docker(&["exec", &reader, "cat", "/data/file"]),
        "kept",
        "the volumes still shared"
    );
    assert_eq!(
        docker(&["exec", &linker, "wget", "-q", "-O", "-", "http://backend:8080/"]),
        "v2",
        "the link reaches the new target"
    );
    hoist.stop().await;
}
