//! Properties of the parsers of untrusted input, for fuzzing.
//!
//! Compiled only for the unit tests and under `--cfg fuzzing` (which
//! cargo-fuzz passes): the fuzz targets in `tests/fuzz/` call the entry points
//! [`distribution`], [`harbor`], [`reference`] and [`aliases`] with the
//! fuzzer's bytes, and the property tests in `source::fuzz_tests` call the same
//! functions with generated inputs. Every check panics on a violation, which
//! libFuzzer reports as a crash (saving the input under
//! `tests/fuzz/artifacts/<target>/`) and proptest shrinks to a minimal case.

use crate::event::{Aliases, Digest, ImageRef, SourceKind};
use crate::source::{self, Action, RegistryEvent};

/// Fuzz entry point: a Distribution notification body.
pub fn distribution(data: &[u8]) {
    match source::distribution::parse(data) {
        Ok(events) => check_events(&events, SourceKind::Distribution),
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an empty error message");
        }
    }
}

/// Fuzz entry point: a Harbor webhook body.
pub fn harbor(data: &[u8]) {
    match source::harbor::parse(data) {
        Ok(events) => check_events(&events, SourceKind::Harbor),
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

/// `into_update` never panics, and an update says what the event said.
pub fn check_update(event: &RegistryEvent, source: SourceKind, default_host: Option<&str>) {
    let update = match event.clone().into_update(source, default_host) {
        Ok(update) => update,
        Err(ignored) => {
            assert!(!ignored.to_string().is_empty(), "an empty reason");
            return;
        }
    };
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
