//! Properties of the parsers of untrusted input, for fuzzing.
//!
//! Compiled only for the unit tests and under `--cfg fuzzing` (which
//! cargo-fuzz passes): the fuzz targets in `tests/fuzz/` call the entry points
//! [`distribution`], [`harbor`], [`github`], [`gitea`], [`dockerhub`],
//! [`quay`], [`acr`], [`ci`], [`signature`], [`reference`] and [`aliases`]
//! with the fuzzer's bytes, and the property tests in `source::fuzz_tests` call the same
//! functions with generated inputs. Every check panics on a violation, which
//! libFuzzer reports as a crash (saving the input under
//! `tests/fuzz/artifacts/<target>/`) and proptest shrinks to a minimal case.

use crate::event::{Aliases, Digest, ImageRef, SourceKind};
use crate::source::{self, Action, Ignored, RegistryEvent};

/// Fuzz entry point: a Distribution notification body.
pub fn distribution(data: &[u8]) {
    check_body(source::distribution::parse(data), SourceKind::Distribution);
}

/// Fuzz entry point: a Harbor webhook body.
pub fn harbor(data: &[u8]) {
    check_body(source::harbor::parse(data), SourceKind::Harbor);
}

/// Fuzz entry point: a GitHub `package` event body (JSON or form-encoded).
pub fn github(data: &[u8]) {
    let parsed = source::github::parse(data);
    if let Ok(events) = &parsed {
        for event in events {
            // ghcr.io references are lower-case whatever the payload's case.
            assert_eq!(
                event.repository,
                event.repository.to_ascii_lowercase(),
                "{event:?}"
            );
            assert_eq!(event.registry_host.as_deref(), Some(source::github::HOST));
        }
    }
    check_body(parsed, SourceKind::Github);
}

/// Fuzz entry point: a Gitea or Forgejo `package` event body.
pub fn gitea(data: &[u8]) {
    let parsed = source::gitea::parse(data);
    if let Ok(events) = &parsed {
        for event in events {
            assert!(event.tag.is_none() || event.digest.is_none(), "{event:?}");
        }
    }
    check_body(parsed, SourceKind::Gitea);
}

/// Fuzz entry point: a Docker Hub webhook body.
pub fn dockerhub(data: &[u8]) {
    let parsed = source::dockerhub::parse(data);
    if let Ok(events) = &parsed {
        for event in events {
            assert_eq!(event.digest, None, "Docker Hub sends no digest: {event:?}");
        }
    }
    check_body(parsed, SourceKind::DockerHub);
}

/// Fuzz entry point: a Quay `repo_push` notification body.
pub fn quay(data: &[u8]) {
    let parsed = source::quay::parse(data);
    if let Ok(events) = &parsed {
        for event in events {
            assert!(event.tag.is_some() && event.digest.is_none(), "{event:?}");
        }
    }
    check_body(parsed, SourceKind::Quay);
}

/// Fuzz entry point: an ACR webhook body.
pub fn acr(data: &[u8]) {
    check_body(source::acr::parse(data), SourceKind::Acr);
}

/// Fuzz entry point: a `POST /v1/update` body, and the same bytes as
/// Watchtower's `?image=` value. What parses is a push of the image named.
pub fn ci(data: &[u8]) {
    for parsed in [source::ci::parse(data), source::ci::parse_query(&text(data))] {
        if let Ok(events) = &parsed {
            for event in events {
                let push = event
                    .clone()
                    .into_push(SourceKind::Ci, None)
                    .unwrap_or_else(|ignored| {
                        panic!("a CI call the parser took is ignored ({ignored}): {event:?}")
                    });
                check_image_ref(&push.reference);
            }
        }
        check_body(parsed, SourceKind::Ci);
    }
}

/// Fuzz entry point: a secret, a newline, a signature, a newline, a body.
/// Verifying never panics, and a signature made with the secret verifies.
pub fn signature(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (secret, signature, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let secret_text = text(secret).into_owned();
    let key = crate::secret::Secret::new(secret_text.clone());
    let given = text(signature);
    if source::signature::verify(&key, body, &given) {
        let expected = source::signature::sign(&secret_text, body);
        let hex = given.trim().trim_start_matches("sha256=").to_ascii_lowercase();
        assert_eq!(hex, expected, "a signature that is not the HMAC verified");
    }
    let made = source::signature::sign(&secret_text, body);
    assert!(source::signature::verify(&key, body, &made));
    assert!(source::signature::verify(&key, body, &format!("sha256={made}")));
}

/// What a parser returned: its events judged as the routes judge them, or a
/// printable error.
fn check_body(parsed: Result<Vec<RegistryEvent>, source::ParseError>, kind: SourceKind) {
    match parsed {
        Ok(events) => check_events(&events, kind),
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an empty error message");
        }
    }
}

/// Fuzz entry point: an image reference (and a digest).
pub fn reference(data: &[u8]) {
    check_reference_text(&text(data));
}

/// Fuzz entry point: `HOIST_REGISTRY_ALIASES`, a newline, and a reference.
pub fn aliases(data: &[u8]) {
    check_aliases_text(&text(data));
}

/// Default hosts every parsed event is also judged with: none (production),
/// a plain host, and a mixed-case host with a port.
const DEFAULT_HOSTS: [Option<&str>; 3] = [None, Some("registry.example.test"), Some("LocalHost:5000")];

/// Docker Hub's other names, as `event::reference` folds them.
const DOCKER_HUB_ALIASES: [&str; 3] = [
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// A fuzz input as text: the bytes themselves when they are UTF-8, else a
/// lossy copy (so non-UTF-8 inputs still exercise the parser).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Every event a webhook parser returned, judged as the route judges it
/// (`into_update`), under each default host.
pub fn check_events(events: &[RegistryEvent], source: SourceKind) {
    for event in events {
        assert!(!format!("{event:?}").is_empty());
        for default_host in DEFAULT_HOSTS {
            check_update(event, source, default_host);
        }
    }
}

/// `into_update` and `into_push` never panic, agree with each other, and an
/// update says what the event said.
pub fn check_update(event: &RegistryEvent, source: SourceKind, default_host: Option<&str>) {
    let push = event.clone().into_push(source, default_host);
    let update = match event.clone().into_update(source, default_host) {
        Ok(update) => update,
        Err(ignored) => {
            assert!(!ignored.to_string().is_empty(), "an empty reason");
            match (&ignored, &push) {
                // A push without a digest is one to resolve; everything else is judged alike.
                (Ignored::NoDigest, Ok(push)) => {
                    assert_eq!(push.digest, None, "{event:?}");
                    check_image_ref(&push.reference);
                }
                // `into_update` looks for the digest before it reads the reference.
                (Ignored::NoDigest, Err(Ignored::BadReference(_))) => {}
                (ignored, Err(pushed)) => assert_eq!(ignored, pushed, "{event:?}"),
                (ignored, Ok(push)) => panic!("{event:?}: an update ignored ({ignored}) is a push {push:?}"),
            }
            return;
        }
    };
    let push = push.unwrap_or_else(|ignored| panic!("{event:?}: an update is not a push ({ignored})"));
    assert_eq!(push.reference, update.reference, "{event:?}");
    assert_eq!(push.digest.as_ref(), Some(&update.digest), "{event:?}");
    let context = || format!("{event:?} with default host {default_host:?} gave {update:?}");
    let reference = &update.reference;
    assert_eq!(event.action, Action::Push, "{}", context());
    assert_eq!(reference.tag(), event.tag.as_deref(), "{}", context());
    assert_eq!(reference.digest(), None, "{}", context());
    assert_eq!(Some(&update.digest), event.digest.as_ref(), "{}", context());
    assert_eq!(update.source, source, "{}", context());
    assert_eq!(update.delivery_id, event.event_id, "{}", context());
    assert_eq!(update.actor, event.actor, "{}", context());
    check_image_ref(reference);
    // The update names the repository the event named (Docker Hub adds `library/`)...
    let repository = reference.repository();
    assert!(
        repository == event.repository
            || (reference.registry() == "docker.io"
                && repository.strip_prefix("library/") == Some(event.repository.as_str())),
        "repository changed: {}",
        context()
    );
    // ...on the registry the event (or else the default) named; no host is Docker Hub.
    let host = event
        .registry_host
        .as_deref()
        .or(default_host)
        .unwrap_or("docker.io");
    assert_eq!(
        reference.registry(),
        canonical_host(host),
        "registry changed: {}",
        context()
    );
}

/// A host lower-cased, with Docker Hub's other names folded into `docker.io`.
pub fn canonical_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

/// What every parsed reference must satisfy: its Display parses back to it,
/// and it is normalised.
pub fn check_image_ref(reference: &ImageRef) {
    let shown = reference.to_string();
    assert_eq!(
        ImageRef::parse(&shown).as_ref(),
        Ok(reference),
        "{shown:?} does not round-trip"
    );
    assert!(
        reference.tag().is_some() || reference.digest().is_some(),
        "{shown:?}: neither tag nor digest"
    );
    let registry = reference.registry();
    assert_eq!(
        registry,
        registry.to_ascii_lowercase(),
        "{shown:?}: registry not lower-case"
    );
    assert!(
        !DOCKER_HUB_ALIASES.contains(&registry),
        "{shown:?}: Docker Hub alias kept"
    );
    assert!(
        registry.len() + 1 + reference.repository().len() <= 255,
        "{shown:?}: name too long"
    );
    assert_eq!(
        serde_json::to_string(reference).unwrap(),
        serde_json::to_string(&shown).unwrap(),
        "{shown:?}: serialises differently from Display"
    );
    let bare = reference.without_digest();
    assert_eq!(bare.digest(), None);
    if let Some(digest) = reference.digest() {
        assert_eq!(&bare.with_digest(digest.clone()), reference, "{shown:?}");
    }
}

/// `ImageRef::parse` and `Digest::parse` on any text: no panic; what parses
/// round-trips; errors stay printable.
pub fn check_reference_text(text: &str) {
    match ImageRef::parse(text) {
        Ok(reference) => {
            check_image_ref(&reference);
            // A digest in the input is the digest of the reference.
            if let Some((_, digest)) = text.split_once('@') {
                assert_eq!(reference.digest().map(Digest::as_str), Some(digest), "{text:?}");
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an empty error message");
        }
    }
    match Digest::parse(text) {
        Ok(digest) => {
            assert_eq!(digest.as_str(), text);
            assert_eq!(digest.to_string(), text);
            assert!(digest.short().len() <= 12, "{text:?}");
            assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(&digest));
        }
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an empty error message");
        }
    }
}

/// `Aliases::parse`, then a reference looked up through it. The input is the
/// alias text, a newline, and a reference.
pub fn check_aliases_text(text: &str) {
    let (spec, reference) = text.split_once('\n').unwrap_or((text, ""));
    let aliases = match Aliases::parse(spec) {
        Ok(aliases) => aliases,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an empty error message");
            return;
        }
    };
    assert_eq!(
        Aliases::parse(spec).as_ref(),
        Ok(&aliases),
        "{spec:?}: not deterministic"
    );
    for entry in spec.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (name, alias) = entry.split_once('=').expect("a parsed entry has an '='");
        let (name, alias) = (canonical_host(name), canonical_host(alias));
        // Every alias maps to its name, and no name is itself an alias.
        assert_eq!(aliases.canonical(&alias), name, "{spec:?}: alias {alias:?}");
        assert_eq!(
            aliases.canonical(&name),
            name,
            "{spec:?}: name {name:?} is an alias"
        );
        assert_ne!(alias, name, "{spec:?}");
    }
    if let Ok(reference) = ImageRef::parse(reference) {
        let canonical = aliases.canonical(reference.registry());
        assert_eq!(aliases.canonical(canonical), canonical, "{spec:?}: alias chain");
        match aliases.key(&reference) {
            Some(key) => {
                assert_eq!(key.registry, canonical);
                assert_eq!(key.repository, reference.repository());
                assert_eq!(Some(key.tag.as_str()), reference.tag());
            }
            None => assert_eq!(reference.tag(), None),
        }
    }
}
