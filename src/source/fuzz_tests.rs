//! Property tests of the parsers of untrusted input.
//!
//! The fuzz targets in `tests/fuzz/` need cargo-fuzz; these run with
//! `cargo test` and check the same properties ([`crate::fuzzing`]) on
//! generated inputs: arbitrary bytes and arbitrary JSON never make a parser
//! panic; JSON shaped like each source's payload (Distribution, Harbor,
//! GitHub, Gitea, Docker Hub, Quay, ACR, the CI call), with field values drawn
//! from awkward and realistic ones, gets through the parsers, `into_update`
//! and `into_push` with every update naming what its event named; a
//! signature verifies only with its secret and body; and valid references,
//! aliases and pushes generated from the grammar are accepted as what they are.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

use super::{acr, ci, distribution, dockerhub, gitea, github, harbor, quay};
use crate::event::{Aliases, ImageRef, SourceKind};
use crate::fuzzing;

const HEX: &str = "dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No proptest-regressions files in the tree: a failure prints its
        // minimal input, which belongs in a unit test next to the parser.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings a webhook field may hold: realistic ones, awkward ones, and noise.
fn field_text() -> impl Strategy<Value = String> {
    let digest = format!("sha256:{HEX}");
    let pool: Vec<String> = [
        "",
        " ",
        "push",
        "pull",
        "delete",
        "mount",
        "team/app",
        " team/app ",
        "Team/App",
        "app",
        "a.b/app",
        "localhost/app",
        "library/nginx",
        "registry",
        "true",
        "localhost",
        "registry.example.test",
        "Registry.Example.TEST:5000",
        "registry.example.test/evil",
        "[::1]:5000",
        "https://registry.example.test/v2/team/app/manifests/sha256:x",
        "http://10.0.0.5:5000/v2/",
        "/v2/team/app/manifests/sha256:x",
        "not a url",
        "1.0",
        "latest",
        "a@b",
        "sha256-0123abcd.sig",
        "sha256:short",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/octet-stream",
        "PUSH_ARTIFACT",
        "pushImage",
        "harbor.artifact.pushed",
        "SCANNING_COMPLETED",
        "harbor.example.test/team/app:1.4.2",
        "harbor.example.test/team/app",
        "harbor.example.test",
        "ngïnx",
        "\0",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        digest.clone(),
        digest.to_uppercase(),
        format!("1.0@{digest}"),
        format!("harbor.example.test/team/app@{digest}"),
    ])
    .collect();
    prop_oneof![
        6 => select(pool),
        2 => "[ -~]{0,24}",
        1 => "\\PC{0,12}",
    ]
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        field_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(field_text(), inner, 0..6).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A field's value: mostly a string, sometimes null or anything at all.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => field_text().prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any_json(),
    ]
}

/// An object holding some of `fields` (each present or not).
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<_> = fields
        .into_iter()
        .map(|(key, value)| proptest::option::of(value).prop_map(move |value| (key, value)))
        .collect();
    parts
        .prop_map(|parts| {
            let map: Map<String, Value> = parts
                .into_iter()
                .filter_map(|(key, value)| Some((key.to_string(), value?)))
                .collect();
            Value::Object(map)
        })
        .boxed()
}

fn field_boxed() -> BoxedStrategy<Value> {
    field().boxed()
}

/// JSON shaped like a Distribution notification envelope.
fn distribution_body() -> impl Strategy<Value = Vec<u8>> {
    let target = object(vec![
        ("mediaType", field_boxed()),
        ("digest", field_boxed()),
        ("repository", field_boxed()),
        ("url", field_boxed()),
        ("tag", field_boxed()),
        ("size", any_json().boxed()),
    ]);
    let event = object(vec![
        ("id", field_boxed()),
        ("action", field_boxed()),
        ("target", prop_oneof![8 => target, 1 => any_json()].boxed()),
        ("request", object(vec![("host", field_boxed())])),
        ("actor", object(vec![("name", field_boxed())])),
    ]);
    prop_oneof![
        9 => vec(event, 0..4).prop_map(|events| json!({ "events": events })),
        1 => any_json(),
    ]
    .prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like a Harbor webhook, Default or CloudEvents format.
fn harbor_body() -> impl Strategy<Value = Vec<u8>> {
    let resource = object(vec![
        ("digest", field_boxed()),
        ("tag", field_boxed()),
        ("resource_url", field_boxed()),
    ]);
    let repository = object(vec![
        ("name", field_boxed()),
        ("namespace", field_boxed()),
        ("repo_full_name", field_boxed()),
    ]);
    let event_data = object(vec![
        ("resources", vec(resource, 0..3).prop_map(Value::Array).boxed()),
        ("repository", repository),
    ]);
    let body = object(vec![
        ("type", field_boxed()),
        ("specversion", prop_oneof![Just(json!("1.0")), any_json()].boxed()),
        ("id", field_boxed()),
        ("operator", field_boxed()),
        ("event_data", event_data.clone()),
        ("data", event_data),
    ]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like a GitHub `package` event.
fn github_body() -> impl Strategy<Value = Vec<u8>> {
    let tag = object(vec![("name", field_boxed()), ("digest", field_boxed())]);
    let metadata = object(vec![("tag", tag)]);
    let version = object(vec![
        ("name", field_boxed()),
        ("version", field_boxed()),
        ("container_metadata", metadata),
    ]);
    let package = object(vec![
        ("name", field_boxed()),
        ("namespace", field_boxed()),
        (
            "package_type",
            prop_oneof![Just(json!("CONTAINER")), Just(json!("docker")), field()].boxed(),
        ),
        ("owner", object(vec![("login", field_boxed())])),
        ("package_version", version),
    ]);
    let body = object(vec![
        ("action", prop_oneof![Just(json!("published")), field()].boxed()),
        ("package", package.clone()),
        ("registry_package", package),
        ("sender", object(vec![("login", field_boxed())])),
    ]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like a Gitea `package` event.
fn gitea_body() -> impl Strategy<Value = Vec<u8>> {
    let package = object(vec![
        ("owner", object(vec![("login", field_boxed())])),
        ("type", prop_oneof![Just(json!("container")), field()].boxed()),
        ("name", field_boxed()),
        ("version", field_boxed()),
        ("html_url", field_boxed()),
    ]);
    let body = object(vec![
        ("action", prop_oneof![Just(json!("created")), field()].boxed()),
        ("package", package),
        ("sender", object(vec![("login", field_boxed())])),
    ]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like a Docker Hub webhook.
fn dockerhub_body() -> impl Strategy<Value = Vec<u8>> {
    let push_data = object(vec![
        ("tag", field_boxed()),
        ("pusher", field_boxed()),
        ("pushed_at", any_json().boxed()),
    ]);
    let repository = object(vec![
        ("repo_name", field_boxed()),
        ("namespace", field_boxed()),
        ("name", field_boxed()),
    ]);
    let body = object(vec![("push_data", push_data), ("repository", repository)]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like a Quay `repo_push` notification.
fn quay_body() -> impl Strategy<Value = Vec<u8>> {
    let tags = prop_oneof![
        vec(field(), 0..4).prop_map(Value::Array),
        btree_map(field_text(), field(), 0..3).prop_map(|map| Value::Object(map.into_iter().collect())),
        any_json(),
    ];
    let body = object(vec![
        ("repository", field_boxed()),
        ("docker_url", field_boxed()),
        ("updated_tags", tags.boxed()),
    ]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like an ACR webhook event.
fn acr_body() -> impl Strategy<Value = Vec<u8>> {
    let target = object(vec![
        ("mediaType", field_boxed()),
        ("digest", field_boxed()),
        ("repository", field_boxed()),
        ("tag", field_boxed()),
    ]);
    let body = object(vec![
        ("id", field_boxed()),
        ("action", prop_oneof![Just(json!("push")), field()].boxed()),
        ("target", target),
        ("request", object(vec![("host", field_boxed())])),
    ]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// JSON shaped like a CI call.
fn ci_body() -> impl Strategy<Value = Vec<u8>> {
    let body = object(vec![
        (
            "image",
            prop_oneof![reference_text().prop_map(Value::String), field()].boxed(),
        ),
        ("digest", field_boxed()),
    ]);
    prop_oneof![9 => body, 1 => any_json()].prop_map(|body| serde_json::to_vec(&body).unwrap())
}

/// Pieces that reference-like text is made of, valid and not.
fn reference_text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "a",
        "b",
        "z",
        "0",
        "9",
        "A",
        "Z",
        ".",
        "_",
        "__",
        "-",
        "/",
        ":",
        "@",
        "[",
        "]",
        "=",
        ",",
        " ",
        "::1",
        "localhost",
        "docker.io",
        "index.docker.io",
        "library",
        "sha256:",
        "sha512:",
        HEX,
        "3f1c2e4d5b6a7980",
        "5000",
        "é",
        "\0",
        "\n",
    ];
    prop_oneof![
        3 => vec(select(PIECES), 0..12).prop_map(|pieces| pieces.concat()),
        1 => "[ -~]{0,40}",
        1 => "\\PC{0,20}",
    ]
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, short.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}"
}

/// A host a reference can name, written in any case, with or without a port.
fn host() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?";
    let port =
        proptest::option::of("[0-9]{1,5}").prop_map(|port| port.map(|p| format!(":{p}")).unwrap_or_default());
    let name = prop_oneof![
        3 => proptest::string::string_regex(&format!("{label}(\\.{label}){{1,3}}")).unwrap().boxed(),
        1 => Just("localhost".to_string()).boxed(),
        1 => Just("LocalHost".to_string()).boxed(),
        1 => select(vec!["docker.io", "index.docker.io", "registry-1.docker.io", "Registry.Hub.Docker.COM"])
            .prop_map(String::from)
            .boxed(),
        1 => "\\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,8}\\]".boxed(),
    ];
    let bare_with_port = (label, "[0-9]{1,5}").prop_map(|(label, port)| format!("{label}:{port}"));
    prop_oneof![
        4 => (name, port).prop_map(|(name, port)| name + &port),
        1 => bare_with_port,
    ]
}

/// A tag: the grammar's `[\w][\w.-]{0,127}`, short, or a commit id.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", "[0-9a-f]{7,64}"]
}

/// What a reference generated from its parts must parse to.
#[derive(Debug, Clone)]
struct Generated {
    text: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// `[host/]path[:tag][@digest]` from the grammar, with its normalised parts.
fn valid_reference() -> impl Strategy<Value = Generated> {
    let first = "[a-z0-9]{1,5}((_|__|-{1,3})[a-z0-9]{1,5}){0,2}";
    (
        proptest::option::of(host()),
        first,
        vec(component(), 0..3),
        proptest::option::of(tag()),
        proptest::option::of("[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}"))),
    )
        .prop_filter(
            "a path that reads as a host, or as a digest",
            |(host, first, rest, tag, _)| {
                (host.is_some() || rest.is_empty() || first != "localhost")
                    && !(host.is_none() && rest.is_empty() && (first == "sha256" || first == "sha512"))
                    && !(host.is_none() && rest.is_empty() && tag.is_none() && first.len() == 64)
            },
        )
        .prop_map(|(host, first, rest, tag, digest)| {
            let path = std::iter::once(first).chain(rest).collect::<Vec<_>>().join("/");
            let mut text = host.as_ref().map(|host| format!("{host}/")).unwrap_or_default() + &path;
            if let Some(tag) = &tag {
                text = format!("{text}:{tag}");
            }
            if let Some(digest) = &digest {
                text = format!("{text}@{digest}");
            }
            let registry = fuzzing::canonical_host(host.as_deref().unwrap_or("docker.io"));
            let repository = if registry == "docker.io" && !path.contains('/') {
                format!("library/{path}")
            } else {
                path
            };
            let tag = match (tag, &digest) {
                (None, None) => Some("latest".to_string()),
                (tag, _) => tag,
            };
            Generated {
                text,
                registry,
                repository,
                tag,
                digest,
            }
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..512)) {
        every_body_parser(&body);
        fuzzing::signature(&body);
        fuzzing::reference(&body);
        fuzzing::aliases(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        every_body_parser(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn shaped_json_of_the_new_sources_never_panics_and_updates_name_their_events(
        github in github_body(),
        gitea in gitea_body(),
        dockerhub in dockerhub_body(),
        quay in quay_body(),
        acr in acr_body(),
        ci in ci_body(),
    ) {
        fuzzing::github(&github);
        fuzzing::gitea(&gitea);
        fuzzing::dockerhub(&dockerhub);
        fuzzing::quay(&quay);
        fuzzing::acr(&acr);
        fuzzing::ci(&ci);
    }

    #[test]
    fn signatures_verify_only_with_their_secret_and_body(
        secret in "[ -~]{0,16}",
        body in vec(any::<u8>(), 0..64),
        flip in any::<prop::sample::Index>(),
    ) {
        let made = crate::source::signature::sign(&secret, &body);
        let key = crate::secret::Secret::new(secret.clone());
        prop_assert!(crate::source::signature::verify(&key, &body, &made));
        let other = crate::secret::Secret::new(format!("{secret}x"));
        prop_assert!(!crate::source::signature::verify(&other, &body, &made));
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[flip.index(body.len())] ^= 0x80;
            prop_assert!(!crate::source::signature::verify(&key, &changed, &made));
        }
    }

    #[test]
    fn distribution_shaped_json_never_panics_and_updates_name_their_events(body in distribution_body()) {
        fuzzing::distribution(&body);
    }

    #[test]
    fn harbor_shaped_json_never_panics_and_updates_name_their_events(body in harbor_body()) {
        fuzzing::harbor(&body);
    }

    #[test]
    fn reference_like_text_never_panics_and_round_trips(text in reference_text()) {
        fuzzing::check_reference_text(&text);
        fuzzing::check_aliases_text(&text);
    }

    #[test]
    fn valid_references_parse_to_their_normalised_parts(generated in valid_reference()) {
        let reference = ImageRef::parse(&generated.text)
            .unwrap_or_else(|e| panic!("{generated:?}: {e}"));
        prop_assert_eq!(reference.registry(), generated.registry.as_str(), "{:?}", generated);
        prop_assert_eq!(reference.repository(), generated.repository.as_str(), "{:?}", generated);
        prop_assert_eq!(reference.tag(), generated.tag.as_deref(), "{:?}", generated);
        prop_assert_eq!(reference.digest().map(|d| d.as_str()), generated.digest.as_deref(), "{:?}", generated);
        fuzzing::check_image_ref(&reference);
    }

    #[test]
    fn valid_pushes_are_updates_of_what_they_name(
        host in host(),
        path in vec(component(), 1..4).prop_map(|parts| parts.join("/")),
        tag in tag(),
    ) {
        let digest = format!("sha256:{HEX}");
        let expected = ImageRef::parse(&format!("{host}/{path}:{tag}")).unwrap();
        let distribution_body = json!({"events": [{
            "id": "e1",
            "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                       "repository": path, "tag": tag},
            "request": {"host": host},
        }]});
        let harbor_body = json!({
            "type": "PUSH_ARTIFACT",
            "operator": "ci",
            "event_data": {
                "resources": [{"digest": digest, "tag": tag, "resource_url": format!("{host}/{path}:{tag}")}],
                "repository": {"repo_full_name": path},
            },
        });
        let cases = [
            (distribution::parse(&serde_json::to_vec(&distribution_body).unwrap()), SourceKind::Distribution),
            (harbor::parse(&serde_json::to_vec(&harbor_body).unwrap()), SourceKind::Harbor),
        ];
        for (events, source) in cases {
            let events = events.unwrap();
            prop_assert_eq!(events.len(), 1);
            fuzzing::check_events(&events, source);
            let update = events[0].clone().into_update(source, None)
                .unwrap_or_else(|ignored| panic!("{source} push of {host}/{path}:{tag}: {ignored}"));
            prop_assert_eq!(&update.reference, &expected);
            prop_assert_eq!(update.digest.as_str(), digest.as_str());
        }
    }

    #[test]
    fn valid_aliases_map_every_alias_to_its_name(
        names in vec(host(), 1..3),
        aliases in vec((host(), any::<prop::sample::Index>()), 1..4),
        spaced in any::<bool>(),
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let canonical: Vec<String> = names.iter().map(|name| fuzzing::canonical_host(name)).collect();
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        let mut entries = Vec::new();
        for (alias, index) in aliases {
            let name = index.get(&names);
            let (alias_key, name_key) = (fuzzing::canonical_host(&alias), fuzzing::canonical_host(name));
            // An alias that is a name, or already an alias of another name, is an error: skip it.
            if canonical.contains(&alias_key) || expected.get(&alias_key).is_some_and(|n| *n != name_key) {
                continue;
            }
            expected.insert(alias_key, name_key);
            entries.push(if spaced { format!(" {name} = {alias} ") } else { format!("{name}={alias}") });
        }
        let text = entries.join(",");
        let parsed = Aliases::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        for (alias, name) in &expected {
            prop_assert_eq!(parsed.canonical(alias), name.as_str(), "{:?}", text);
        }
        for name in &canonical {
            prop_assert_eq!(parsed.canonical(name), name.as_str(), "{:?}", text);
        }
        fuzzing::check_aliases_text(&text);
    }

    #[test]
    fn valid_pushes_of_the_new_sources_are_the_pushes_they_name(
        host in host(),
        // Gitea's host comes from a URL, which drops default ports and rewrites odd hosts.
        web_host in "[a-z][a-z0-9]{0,8}(\\.[a-z]{2,5}){1,2}(:[1-9][0-9]{3})?",
        owner in "[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?",
        path in vec(component(), 1..3).prop_map(|parts| parts.join("/")),
        tag in tag(),
    ) {
        let digest = format!("sha256:{HEX}");
        let canonical = fuzzing::canonical_host(&host);
        let repository = format!("{owner}/{path}");
        let lower = repository.to_ascii_lowercase();
        let github_body = json!({
            "action": "published",
            "package": {"name": path, "package_type": "CONTAINER", "owner": {"login": owner},
                        "package_version": {"name": digest, "container_metadata": {"tag": {"name": tag, "digest": digest}}}},
        });
        let gitea_body = json!({
            "action": "created",
            "package": {"owner": {"login": owner}, "type": "container", "name": path, "version": tag,
                        "html_url": format!("https://{web_host}/{owner}/-/packages/container/app/{tag}")},
        });
        let dockerhub_body = json!({"push_data": {"tag": tag, "pushed_at": 1}, "repository": {"repo_name": lower}});
        let quay_body = json!({"docker_url": format!("{host}/{lower}"), "updated_tags": [tag]});
        let acr_body = json!({"id": "e1", "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "repository": lower, "tag": tag},
            "request": {"host": host}});
        let ci_body = json!({"image": format!("{host}/{lower}:{tag}"), "digest": digest});
        let hub_expected = ImageRef::parse(&format!("docker.io/{lower}:{tag}")).unwrap();
        let cases = [
            (github::parse(&serde_json::to_vec(&github_body).unwrap()), SourceKind::Github, format!("ghcr.io/{lower}:{tag}"), true),
            (gitea::parse(&serde_json::to_vec(&gitea_body).unwrap()), SourceKind::Gitea, format!("{web_host}/{lower}:{tag}"), false),
            (dockerhub::parse(&serde_json::to_vec(&dockerhub_body).unwrap()), SourceKind::DockerHub, hub_expected.to_string(), false),
            (quay::parse(&serde_json::to_vec(&quay_body).unwrap()), SourceKind::Quay, format!("{canonical}/{lower}:{tag}"), false),
            (acr::parse(&serde_json::to_vec(&acr_body).unwrap()), SourceKind::Acr, format!("{canonical}/{lower}:{tag}"), true),
            (ci::parse(&serde_json::to_vec(&ci_body).unwrap()), SourceKind::Ci, format!("{canonical}/{lower}:{tag}"), true),
        ];
        for (events, source, expected, with_digest) in cases {
            let events = events.unwrap_or_else(|e| panic!("{source}: {e}"));
            prop_assert_eq!(events.len(), 1);
            fuzzing::check_events(&events, source);
            let push = events[0].clone().into_push(source, None)
                .unwrap_or_else(|ignored| panic!("{source} push of {expected}: {ignored}"));
            prop_assert_eq!(push.reference, ImageRef::parse(&expected).unwrap(), "{}", source);
            prop_assert_eq!(push.digest.is_some(), with_digest, "{}", source);
        }
    }
}

/// Every parser of a request body, on the same bytes.
fn every_body_parser(body: &[u8]) {
    fuzzing::distribution(body);
    fuzzing::harbor(body);
    fuzzing::github(body);
    fuzzing::gitea(body);
    fuzzing::dockerhub(body);
    fuzzing::quay(body);
    fuzzing::acr(body);
    fuzzing::ci(body);
}
