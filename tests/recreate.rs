//! Every setting kept: containers started with as many settings as this
//! engine accepts are updated by a push, and their whole inspect before and
//! after is compared field by field, less the fields `deploy::recreate::RULES`
//! writes down (engine-assigned, derived, image defaults), which are checked
//! for what they should be instead.

use std::collections::BTreeSet;
use std::time::Duration;

use hoist::deploy::recreate::{rule_for, Model, Reason};
use serde_json::{json, Value};

use crate::container::outcome;
use crate::harness::{
    build_and_push, docker, docker_quiet, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry,
};

const JOB_WAIT: Duration = Duration::from_secs(120);

fn image_inspect(reference: &str) -> Value {
    let text = docker(&["image", "inspect", reference]);
    let mut all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.remove(0)
}

/// `null` members left out: the engine writes some, and a create body none.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// What of `value` is the container's own, not `image`'s: entries of a list
/// or map that the image does not have; a scalar unless equal to the image's.
fn own(value: &Value, image: &Value) -> Value {
    match (value, image) {
        (Value::Array(items), Value::Array(inherited)) => {
            Value::Array(items.iter().filter(|i| !inherited.contains(i)).cloned().collect())
        }
        (Value::Object(members), Value::Object(inherited)) => Value::Object(
            members
                .iter()
                .filter(|(k, v)| inherited.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        (value, image) if value == image => Value::Null,
        (value, _) => value.clone(),
    }
}

/// The parts of an inspect that recreate's models describe, named for messages.
fn parts(container: &Value) -> Vec<(Model, String, Value)> {
    let mut parts = vec![
        (Model::Config, "Config".to_string(), container["Config"].clone()),
        (
            Model::HostConfig,
            "HostConfig".to_string(),
            container["HostConfig"].clone(),
        ),
    ];
    for (network, endpoint) in container["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
    {
        parts.push((Model::Endpoint, format!("Networks.{network}"), endpoint.clone()));
    }
    parts
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn short_id(container: &Value) -> Value {
    json!(&container["Id"].as_str().unwrap()[..12])
}

/// Compares the settings of `before` (on `old_image`) and `after` (on `new_image`).
fn assert_settings_kept(name: &str, before: &Value, after: &Value, old_image: &Value, new_image: &Value) {
    assert_ne!(before["Id"], after["Id"], "{name} was not recreated");
    assert_eq!(
        after["Image"], new_image["Id"],
        "{name} does not run the new image"
    );
    let after_parts = parts(after);
    let mut compared = 0;
    for (model, label, was) in parts(before) {
        let (_, _, now) = after_parts
            .iter()
            .find(|(_, l, _)| *l == label)
            .unwrap_or_else(|| panic!("{name}: {label} is gone after the update"));
        for key in keys(&was).union(&keys(now)) {
            let (was, now) = (without_nulls(&was[key]), without_nulls(&now[key]));
            let what = format!("{name}: {label}.{key}");
            match rule_for(model, key).map(|r| r.reason) {
                None => assert_eq!(now, was, "{what}"),
                Some(Reason::ImageDefault) => {
                    let (old_default, new_default) = (&old_image["Config"][key], &new_image["Config"][key]);
                    assert_eq!(
                        own(&now, new_default),
                        own(&was, old_default),
                        "{what}, less the image's"
                    );
                }
                Some(Reason::Translated) if key == "Mounts" => {
                    // The anonymous volumes are attached by name: the same ones, now listed.
                    let (was, now) = (
                        was.as_array().cloned().unwrap_or_default(),
                        now.as_array().cloned().unwrap_or_default(),
                    );
                    assert!(
                        was.iter().all(|m| now.contains(m)),
                        "{what}: {was:?} not in {now:?}"
                    );
                    assert!(
                        now.iter()
                            .filter(|m| !was.contains(m))
                            .all(|m| m["Type"] == "volume"),
                        "{what}: {now:?}"
                    );
                }
                Some(Reason::Translated) => assert_eq!(now, was, "{what} (read back in the engine's form)"),
                Some(Reason::EngineAssigned | Reason::Derived | Reason::Unsupported) => continue,
            }
            compared += 1;
        }
    }
    assert!(compared > 60, "{name}: only {compared} fields compared");
    // What the engine assigned, less its own part.
    for (network, endpoint) in before["NetworkSettings"]["Networks"].as_object().unwrap() {
        let now = &after["NetworkSettings"]["Networks"][network];
        let user_aliases = |ep: &Value, id: &Value| own(&ep["Aliases"], &json!([id]));
        assert_eq!(
            user_aliases(now, &short_id(after)),
            user_aliases(endpoint, &short_id(before)),
            "{name}: aliases on {network}"
        );
    }
}

/// Creates a container through the API, as compose v1 and the API users do:
/// the docker CLI 28 cannot set a MAC address on an engine older than API 1.44.
async fn create_through_api(name: &str, body: Value) {
    let version = docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let http = reqwest::Client::builder().unix_socket(socket).build().unwrap();
    let response = http
        .post(format!("http://engine/v{version}/containers/create?name={name}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "create {name}: {}",
        response.text().await.unwrap()
    );
    docker(&["start", name]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_keeps_every_setting_of_the_container() {
    // Far longer than the job wait: the update finishes in time only if the
    // old container is stopped with its own --stop-timeout (2s).
    let hoist = Hoist::start(&[("HOIST_STOP_TIMEOUT", "600s")]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("kept")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);

    let (side, full, namespaces, mac, net, volume) = (
        unique("side"),
        unique("full"),
        unique("ns"),
        unique("mac"),
        unique("knet"),
        unique("kvol"),
    );
    for name in [&side, &full, &namespaces, &mac] {
        clean.container(name);
    }
    clean.network(&net);
    clean.volume(&volume);
    let octet = 16 + std::process::id() % 200;
    docker(&[
        "network",
        "create",
        "--subnet",
        &format!("10.214.{octet}.0/24"),
        &net,
    ]);
    // Not labelled: the other end of a link, of --volumes-from and of a PID namespace.
    docker(&["run", "-d", "--name", &side, &tag]);

    let (link, named_volume) = (format!("{side}:sidealias"), format!("{volume}:/named"));
    // Every setting this engine takes together on one container.
    #[rustfmt::skip]
    let full_args = [
        "run", "-d", "--name", &full,
        "--label", "hoist.enable=true", "--label", "team=payments",
        "--hostname", "myhost", "--domainname", "example.test",
        "--add-host", "db.internal:10.0.0.5",
        "--dns", "10.0.0.53", "--dns-option", "ndots:2", "--dns-search", "example.test",
        "--tmpfs", "/run:rw,size=1m", "--mount", "type=tmpfs,destination=/scratch",
        "--sysctl", "net.ipv4.tcp_keepalive_time=600", "--ulimit", "nofile=1024:2048",
        "--security-opt", "no-new-privileges", "--shm-size", "16m", "--init", "--ipc", "shareable",
        "--group-add", "1234", "--read-only", "--runtime", "io.containerd.runc.v2",
        "--cgroup-parent", "/hoist-test", "--oom-score-adj", "100",
        "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD",
        "--link", &link, "--volumes-from", &side,
        "--log-driver", "json-file", "--log-opt", "max-size=1m", "--log-opt", "max-file=2",
        // A stop signal the process ignores: only the kill after the stop timeout ends it.
        "--stop-signal", "SIGUSR1", "--stop-timeout", "2",
        "--pids-limit", "100", "--cpuset-cpus", "0", "--memory", "64m", "--memory-reservation", "32m",
        "--oom-kill-disable", "--device", "/dev/null:/dev/hoist-null", "--device-cgroup-rule", "c 1:3 rmw",
        "--expose", "9000", "-p", "127.0.0.1::8080", "--restart", "unless-stopped",
        "-v", &named_volume,
        "-e", "GREETING=hello world", "--workdir", "/www", "--user", "0:0",
        "--health-cmd", "wget -q -O /dev/null http://127.0.0.1:8080/", "--health-interval", "1s",
        "--entrypoint", "/bin/sh",
        &tag, "-c", "trap '' USR1; httpd -f -p 8080 -h /www & wait",
    ];
    docker(&full_args);
    // The namespaces that decide a hostname: the host's UTS, another container's PID.
    let pid_mode = format!("container:{side}");
    #[rustfmt::skip]
    let namespace_args = [
        "run", "-d", "--name", &namespaces, "--label", "hoist.enable=true",
        "--uts", "host", "--pid", &pid_mode, &tag,
    ];
    docker(&namespace_args);
    // A user network with a static address, aliases and a MAC address.
    create_through_api(
        &mac,
        json!({
            "Image": tag,
            "Labels": { "hoist.enable": "true" },
            "MacAddress": "02:42:0a:d6:00:63",
            "HostConfig": { "NetworkMode": net },
            "NetworkingConfig": { "EndpointsConfig": { &net: {
                "IPAMConfig": { "IPv4Address": format!("10.214.{octet}.99") },
                "Aliases": ["web", "shop-web"],
                "MacAddress": "02:42:0a:d6:00:63"
            } } }
        }),
    )
    .await;
    for name in [&full, &namespaces, &mac] {
        hoist.wait_for_target(name).await;
    }
    let before: Vec<Value> = [&full, &namespaces, &mac].iter().map(|n| inspect(n)).collect();
    let old_image = image_inspect(&tag);

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    for name in [&full, &namespaces, &mac] {
        assert_eq!(
            outcome(&job, name)["result"],
            "updated",
            "{name} (the old container must be stopped with its own stop timeout): {job}"
        );
    }
    let new_image = image_inspect(&tag);
    assert_eq!(new_image["Id"], image_id(&tag));
    for (name, before) in [&full, &namespaces, &mac].iter().zip(&before) {
        let after = inspect(name);
        assert_settings_kept(name, before, &after, &old_image, &new_image);
        assert_eq!(after["State"]["Running"], true, "{name}");
    }

    // The fields on the written list, for what they should be.
    let full_after = inspect(&full);
    assert_eq!(
        full_after["Config"]["Hostname"], "myhost",
        "a hostname the user chose"
    );
    assert_eq!(full_after["HostConfig"]["UTSMode"], "");
    assert_eq!(full_after["Config"]["StopTimeout"], 2);
    let ns_after = inspect(&namespaces);
    assert_eq!(ns_after["HostConfig"]["UTSMode"], "host");
    // The engine records its default (the short ID) though the host's name is in
    // effect: the new container's own, not the old one's.
    assert_eq!(ns_after["Config"]["Hostname"], short_id(&ns_after));
    let mac_after = inspect(&mac);
    assert_eq!(mac_after["Config"]["MacAddress"], "02:42:0a:d6:00:63");
    let endpoint = &mac_after["NetworkSettings"]["Networks"][&net];
    assert_eq!(endpoint["MacAddress"], "02:42:0a:d6:00:63");
    assert_eq!(endpoint["IPAddress"], format!("10.214.{octet}.99"));
    // The anonymous volume kept its data's volume, seen through --volumes-from.
    let data = |c: &Value| {
        c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == "/data")
            .map(|m| m["Name"].clone())
    };
    assert_eq!(data(&full_after), data(&before[0]));
    hoist.stop().await;
    drop(registry);
}

/// The engine's `name` filter is a regular expression that matches anywhere
/// in the name: `web.1-hoist-old` also matches `webx1-hoist-old`, which an
/// update once took for its own leftover and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_looked_up_by_exact_name() {
    let hoist = Hoist::start(&[]).await;
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1", registry.repo(&unique("exact")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_and_push(&tag, "v1", Behaviour::Serve);
    let stem = unique("web");
    let target = format!("{stem}.1");
    // Names the parked name's pattern (`{stem}.1-hoist-old`) matches, but that are not it.
    let bystanders = [
        format!("{stem}x1-hoist-old"),
        format!("{stem}.1-hoist-old-2"),
        format!("x{stem}.1-hoist-old"),
    ];
    clean.container(&target);
    for name in &bystanders {
        clean.container(name);
        docker(&["run", "-d", "--name", name, &tag]);
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
    hoist.wait_for_target(&target).await;

    let new_digest = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &new_digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &target)["result"], "updated", "{job}");
    for name in &bystanders {
        assert!(
            docker_quiet(&["inspect", "--type", "container", name]),
            "{name} was removed as if it were {target}'s parked container"
        );
        assert_eq!(inspect(name)["State"]["Running"], true, "{name}");
    }
    hoist.stop().await;
    drop(registry);
}
