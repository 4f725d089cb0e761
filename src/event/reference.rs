//! Image references: parse and normalise as Docker does.
//!
//! [`ImageRef::parse`] follows `distribution/reference` (`ParseNormalizedNamed`
//! followed by `TagNameOnly`): `NAME[:TAG][@DIGEST]`, where `NAME` is
//! `[DOMAIN/]PATH`. Where the Go packages disagree with each other, or where
//! their answer would surprise an operator, hoist decides as follows:
//!
//! * The first element of the name is a registry host only when it is
//!   `localhost` or contains `.` or `:` (the rule of docker/distribution 2.8).
//!   reference v0.6.0 also takes an upper-case first element as a host, which
//!   would turn `UPPER/app` into a registry called `UPPER`; hoist reports an
//!   upper-case repository instead.
//! * `index.docker.io` becomes `docker.io`, as in Go, and so do
//!   `registry-1.docker.io` and `registry.hub.docker.com`, which Go leaves
//!   alone: they all serve Docker Hub, and a container started from one of
//!   them should match a push announced for another.
//! * The canonical `registry/repository` may be at most 255 characters (the
//!   OCI clients' limit; the safe choice between reference v0.6.0, which
//!   counts only the path, and 2.8, which counts the name as written).
//! * A tag and a digest may both be given; both are kept (Display writes
//!   `name:tag@digest`).
//! * A bare 64-hex string (an image ID) and a bare `sha256:` or `sha512:`
//!   digest are rejected: neither names a repository. Any other `name:<hex>`
//!   is a name and a tag, such as a commit id (`app:3f1c2e4d…`).
//! * Digests are checked by [`Digest::parse`], which is stricter than the
//!   reference grammar (lower-case hex of the algorithm's exact length).

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::Digest;

/// The registry of names without a host.
const DOCKER_HUB: &str = "docker.io";
/// Other names of Docker Hub's registry, rewritten to [`DOCKER_HUB`].
const DOCKER_HUB_ALIASES: &[&str] = &[
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
/// The tag of a reference that names neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";
/// Longest canonical `registry/repository`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag (`[\w][\w.-]{0,127}`).
const TAG_LENGTH_MAX: usize = 128;
/// How much of a rejected input an error message repeats.
const ERROR_ECHO_MAX: usize = 300;

/// A normalised image reference: `registry/repository[:tag][@digest]`.
///
/// Normalisation follows `distribution/reference`: no registry means
/// `docker.io`; a single-component Docker Hub name gets `library/`; no tag
/// and no digest means `latest`. The registry host is lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid digest {0:?}")]
    BadDigest(String),
    #[error("invalid image reference {reference:?}: {why}")]
    Invalid { reference: String, why: String },
}

impl ImageRef {
    /// Parses and normalises a reference such as `nginx`, `ghcr.io/org/app:1.4`
    /// or `localhost:5000/app@sha256:<hex>`. Never panics, whatever the input.
    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let invalid = |why: String| invalid(text, why);
        // Everything below may index bytes: only ASCII gets past this check.
        check_graphic_ascii(text).map_err(invalid)?;
        if !text.contains(['/', '@']) && is_bare_digest(text) {
            return Err(invalid(
                "a digest alone names no repository; write name@digest".to_string(),
            ));
        }

        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (text, None),
        };
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }
        if name.is_empty() {
            return Err(invalid("no repository name".to_string()));
        }
        if is_image_id(name) {
            return Err(invalid(
                "a 64-hex string is an image ID, not a repository name".to_string(),
            ));
        }
        let (domain, path) = split_domain(name);
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        };
        from_checked_tag(domain, path, tag, digest).map_err(invalid)
    }

    /// The reference a registry event names: `repository` tagged `tag` on
    /// `host` (`host[:port]`; Docker Hub when `None`). Each part is checked as
    /// what it is, so that none can spill into another as it could in the
    /// joined text `host/repository:tag`: a host with a `/`, or without `.`
    /// or `:` (a registry reached as plain `registry`), would become part of a
    /// Docker Hub repository, an `@` in the tag would add a digest, and a
    /// repository whose first component looks like a host would become the
    /// registry. A host that a reference cannot name (no `.`, no `:`, not
    /// `localhost`) is an error: the result must read back the same from its
    /// Display, which is what the engine is asked to pull.
    pub fn from_event(host: Option<&str>, repository: &str, tag: &str) -> Result<ImageRef, ReferenceError> {
        let text = match host {
            Some(host) => format!("{host}/{repository}:{tag}"),
            None => format!("{repository}:{tag}"),
        };
        let invalid = |why: String| invalid(&text, why);
        check_graphic_ascii(&text).map_err(invalid)?;
        check_tag(tag).map_err(invalid)?;
        if let Some(host) = host {
            if split_domain(&format!("{host}/{repository}")).0 != Some(host) {
                return Err(invalid(format!(
                    "registry host {host:?} is not one a reference can name: it needs a '.' or a \
                     ':port', or must be localhost (else it reads as part of a Docker Hub repository)"
                )));
            }
        }
        from_checked_tag(host, repository, Some(tag), None).map_err(invalid)
    }
    /// Builds a reference from parts that are already normalised, without
    /// checking them. Lets tests and other stages build values while the
    /// parser is written elsewhere; prefer [`ImageRef::parse`].
    #[doc(hidden)]
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> ImageRef {
        ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        }
    }
    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// The same reference pinned to `digest` (tag kept).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }
    /// The same reference without its digest.
    pub fn without_digest(&self) -> ImageRef {
        ImageRef {
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Checks the unchecked parts of a reference whose tag (if any) is checked
/// and whose text is graphic ASCII, and normalises them: `domain` is the
/// registry host (Docker Hub when `None`), `path` the repository as written.
fn from_checked_tag(
    domain: Option<&str>,
    path: &str,
    tag: Option<&str>,
    digest: Option<Digest>,
) -> Result<ImageRef, String> {
    let registry = match domain {
        Some(domain) => {
            check_domain(domain)?;
            canonical_host(domain)
        }
        None => DOCKER_HUB.to_string(),
    };
    check_path(path)?;
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    let length = registry.len() + 1 + repository.len();
    if length > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "the name {registry}/{repository} is {length} characters long, \
             more than the {NAME_TOTAL_LENGTH_MAX} allowed"
        ));
    }
    Ok(ImageRef {
        registry,
        repository,
        tag: tag.map(str::to_string),
        digest,
    })
}

/// Only printable ASCII, no whitespace: everything after this may index bytes.
fn check_graphic_ascii(text: &str) -> Result<(), String> {
    match text.chars().find(|c| !c.is_ascii_graphic()) {
        None => Ok(()),
        Some(c) if c.is_whitespace() => Err("contains whitespace".to_string()),
        Some(c) if c.is_control() => Err(format!("contains the control character {c:?}")),
        Some(c) => Err(format!("contains the non-ASCII character {c:?}")),
    }
}

/// An `Invalid` error that repeats at most [`ERROR_ECHO_MAX`] characters of the input.
fn invalid(text: &str, why: String) -> ReferenceError {
    let reference = match text.char_indices().nth(ERROR_ECHO_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    };
    ReferenceError::Invalid { reference, why }
}

/// Splits `name[:tag]`. A `:` is a tag separator only after the last `/`;
/// before it, it belongs to a `host:port`.
fn split_tag(text: &str) -> (&str, Option<&str>) {
    match text.rfind(':') {
        Some(colon) if text.rfind('/').is_none_or(|slash| colon > slash) => {
            (&text[..colon], Some(&text[colon + 1..]))
        }
        _ => (text, None),
    }
}

/// Splits `[domain/]path`: the first element is a domain when it is
/// `localhost` or contains `.` or `:`.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.eq_ignore_ascii_case("localhost") || first.contains(['.', ':']) => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Lower-cases a registry host and folds Docker Hub's other names into `docker.io`.
fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

/// `sha256:<64 hex>` or `sha512:<128 hex>`. Any other `name:<hex>` is a name
/// and a tag: tags that are commit ids (`app:3f1c2e4d…`, 40 hex) are common,
/// and [`Digest::parse`] would take `app` for an algorithm.
fn is_bare_digest(text: &str) -> bool {
    matches!(text.split_once(':'), Some(("sha256" | "sha512", _))) && Digest::parse(text).is_ok()
}

fn is_image_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if tag.is_empty() {
        return Err("empty tag after ':'".to_string());
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(format!(
            "the tag is {} characters long, more than the {TAG_LENGTH_MAX} allowed",
            tag.len()
        ));
    }
    let bytes = tag.as_bytes();
    if !word(bytes[0]) || !bytes[1..].iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "tag {tag:?} is not valid: a tag is letters, digits, '_', '.' and '-', \
             and does not start with '.' or '-'"
        ));
    }
    Ok(())
}

/// `host[:port]`, where host is dot-separated DNS labels or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(inner) = domain.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return Err(format!("registry host {domain:?} has an unclosed '['"));
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("registry host {domain:?} is not a valid IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => {
                return Err(format!(
                    "unexpected {after:?} after the IPv6 address in {domain:?}"
                ))
            }
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "registry host {host:?} is not valid: it must be dot-separated labels of letters, \
                 digits and inner '-'"
            ));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry port {port:?} in {domain:?} is not a number"));
        }
    }
    Ok(())
}

/// Path components joined by `/`, each `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("no repository name".to_string());
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name {path:?} must be lower-case"));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!(
                "repository name {path:?} has an empty component (a leading, trailing or double '/')"
            ));
        }
        if !path_component_ok(component) {
            return Err(format!(
                "repository name component {component:?} is not valid: it must be lower-case letters \
                 and digits, separated by '.', '_', '__' or dashes, and start and end with a letter \
                 or digit"
            ));
        }
    }
    Ok(())
}

fn path_component_ok(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // First and last are alphanumeric, so every other run sits between two
    // alphanumeric runs and only has to be a valid separator.
    bytes
        .split(|&b| alnum(b))
        .filter(|run| !run.is_empty())
        .all(|run| run == b"." || run == b"_" || run == b"__" || run.iter().all(|&b| b == b'-'))
}

/// The key a tagged reference is matched by: canonical registry, repository, tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagKey {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

/// Registry host names that are one registry (`HOIST_REGISTRY_ALIASES=name=alias,...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aliases {
    /// alias host → canonical host, both lower-case.
    to_canonical: HashMap<String, String>,
}

impl Aliases {
    /// Parses `name=alias,name2=alias2`: each `alias` host then matches as the
    /// canonical `name`. Hosts are trimmed, lower-cased and normalised as in
    /// references (so `index.docker.io` means `docker.io`); empty entries are
    /// skipped. A host may be an alias of one name only, and a name may not
    /// itself be an alias (write every alias against the final name).
    pub fn parse(text: &str) -> Result<Aliases, ReferenceError> {
        let mut to_canonical: HashMap<String, String> = HashMap::new();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let bad = |why: String| ReferenceError::Invalid {
                reference: entry.to_string(),
                why: format!("registry alias: {why}"),
            };
            let (name, alias) = entry.split_once('=').ok_or_else(|| {
                bad("expected name=alias, e.g. registry.example.test=127.0.0.1:5000".into())
            })?;
            if alias.contains('=') {
                return Err(bad("more than one '=' (separate pairs with ',')".into()));
            }
            let name = alias_host(name).map_err(bad)?;
            let alias = alias_host(alias).map_err(bad)?;
            if name == alias {
                return Err(bad(format!("{name} is given as an alias of itself")));
            }
            match to_canonical.get(&alias) {
                Some(earlier) if *earlier != name => {
                    return Err(bad(format!("{alias} is already an alias of {earlier}")));
                }
                _ => {
                    to_canonical.insert(alias, name);
                }
            }
        }
        if let Some((alias, name)) = to_canonical
            .iter()
            .find(|(_, name)| to_canonical.contains_key(name.as_str()))
        {
            return Err(ReferenceError::Invalid {
                reference: text.to_string(),
                why: format!(
                    "registry alias: {alias} is an alias of {name}, which is itself an alias of {}; \
                     write every alias against the final name",
                    to_canonical[name]
                ),
            });
        }
        Ok(Aliases { to_canonical })
    }
    pub fn canonical<'a>(&'a self, host: &'a str) -> &'a str {
        self.to_canonical.get(host).map_or(host, String::as_str)
    }
    /// The match key of a reference; `None` when it has no tag (pinned by digest only).
    pub fn key(&self, reference: &ImageRef) -> Option<TagKey> {
        Some(TagKey {
            registry: self.canonical(reference.registry()).to_string(),
            repository: reference.repository().to_string(),
            tag: reference.tag()?.to_string(),
        })
    }
}

/// One side of an alias pair: a valid `host[:port]`, normalised as a reference's registry is.
fn alias_host(text: &str) -> Result<String, String> {
    let host = text.trim();
    if host.is_empty() {
        return Err("empty host name".to_string());
    }
    if host.contains("://") {
        return Err(format!("{host:?}: write the host without a scheme"));
    }
    if host.contains('/') {
        return Err(format!("{host:?}: expected a host[:port], not a path"));
    }
    if let Some(c) = host.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("{host:?} contains {c:?}"));
    }
    check_domain(host)?;
    Ok(canonical_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";

    fn digest() -> String {
        format!("sha256:{HEX}")
    }

    /// `(input, registry, repository, tag, digest)` for a reference that must parse.
    type Good = (
        String,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<String>,
    );

    #[rustfmt::skip]
    fn good() -> Vec<Good> {
        let d = digest();
        vec![
            ("nginx".into(),                                 "docker.io",             "library/nginx", Some("latest"),        None),
            ("nginx:1.25".into(),                            "docker.io",             "library/nginx", Some("1.25"),          None),
            ("library/nginx".into(),                         "docker.io",             "library/nginx", Some("latest"),        None),
            ("docker.io/nginx".into(),                       "docker.io",             "library/nginx", Some("latest"),        None),
            ("index.docker.io/library/nginx:latest".into(),  "docker.io",             "library/nginx", Some("latest"),        None),
            ("index.docker.io/nginx:1.27".into(),            "docker.io",             "library/nginx", Some("1.27"),          None),
            ("registry-1.docker.io/bitnami/redis".into(),    "docker.io",             "bitnami/redis", Some("latest"),        None),
            ("registry.hub.docker.com/library/nginx".into(), "docker.io",             "library/nginx", Some("latest"),        None),
            ("Docker.IO/nginx".into(),                       "docker.io",             "library/nginx", Some("latest"),        None),
            ("docker.io/bitnami/redis".into(),               "docker.io",             "bitnami/redis", Some("latest"),        None),
            ("team/app".into(),                              "docker.io",             "team/app",      Some("latest"),        None),
            ("localhost/app".into(),                         "localhost",             "app",           Some("latest"),        None),
            ("localhost:5000/app".into(),                    "localhost:5000",        "app",           Some("latest"),        None),
            ("127.0.0.1:5000/team/app:1.4".into(),           "127.0.0.1:5000",        "team/app",      Some("1.4"),           None),
            ("registry.example.test/ubuntu".into(),          "registry.example.test", "ubuntu",        Some("latest"),        None),
            ("registry.example.test/a/b/c:v1.2.3-rc.1".into(), "registry.example.test", "a/b/c",       Some("v1.2.3-rc.1"),   None),
            ("Registry.Example.TEST:5000/app:V1".into(),     "registry.example.test:5000", "app",      Some("V1"),            None),
            (format!("ghcr.io/org/app@{d}"),                 "ghcr.io",               "org/app",       None,                  Some(d.clone())),
            (format!("app:1.4@{d}"),                         "docker.io",             "library/app",   Some("1.4"),           Some(d.clone())),
            (format!("registry.example.test:5000/team/app@{d}"), "registry.example.test:5000", "team/app", None,              Some(d.clone())),
            ("[::1]:5000/app:1".into(),                      "[::1]:5000",            "app",           Some("1"),             None),
            ("[FE80::1]/app".into(),                         "[fe80::1]",             "app",           Some("latest"),        None),
            ("team/a.b-c_d__e---f9".into(),                  "docker.io",             "team/a.b-c_d__e---f9", Some("latest"), None),
            ("my-registry.local:443/x__y/z.z:_tag".into(),   "my-registry.local:443", "x__y/z.z",      Some("_tag"),          None),
            ("localhost".into(),                             "docker.io",             "library/localhost", Some("latest"),    None),
            ("app:sha256-0123abcd.sig".into(),               "docker.io",             "library/app",   Some("sha256-0123abcd.sig"), None),
        ]
    }

    #[test]
    fn real_world_references_normalise() {
        for (input, registry, repository, tag, digest) in good() {
            let r = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().map(Digest::as_str), digest.as_deref(), "{input}");
        }
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        #[rustfmt::skip]
        let cases = [
            ("nginx".to_string(),                                "docker.io/library/nginx:latest".to_string()),
            ("index.docker.io/library/nginx:1.27".into(),        "docker.io/library/nginx:1.27".into()),
            ("localhost:5000/app".into(),                        "localhost:5000/app:latest".into()),
            ("[::1]:5000/app:1".into(),                          "[::1]:5000/app:1".into()),
            (format!("app:1.4@{}", digest()),                    format!("docker.io/library/app:1.4@{}", digest())),
            (format!("ghcr.io/org/app@{}", digest()),            format!("ghcr.io/org/app@{}", digest())),
        ];
        for (input, canonical) in cases {
            assert_eq!(ImageRef::parse(&input).unwrap().to_string(), canonical, "{input}");
        }
        for (input, ..) in good() {
            let r = ImageRef::parse(&input).unwrap();
            assert_eq!(ImageRef::parse(&r.to_string()), Ok(r.clone()), "{input} → {r}");
        }
    }

    #[test]
    fn with_and_without_digest() {
        let r = ImageRef::parse("registry.example.test/team/app:1.0").unwrap();
        let d = Digest::parse(&digest()).unwrap();
        let pinned = r.with_digest(d.clone());
        assert_eq!(
            pinned.to_string(),
            format!("registry.example.test/team/app:1.0@{d}")
        );
        assert_eq!(ImageRef::parse(&pinned.to_string()), Ok(pinned.clone()));
        assert_eq!(pinned.without_digest(), r);
    }

    /// `(input, a fragment the error message must contain)`.
    #[rustfmt::skip]
    fn bad() -> Vec<(String, &'static str)> {
        vec![
            ("".into(),                                   "empty"),
            (":tag".into(),                               "no repository name"),
            ("UPPER/app".into(),                          "must be lower-case"),
            ("ghcr.io/Example-Org/app".into(),            "must be lower-case"),
            ("App".into(),                                "must be lower-case"),
            ("app:".into(),                               "empty tag"),
            ("app@sha256:short".into(),                   "invalid digest"),
            (format!("app@sha256:{}", HEX.to_uppercase()), "invalid digest"),
            ("app@".into(),                               "invalid digest"),
            (format!("app@{}@{}", digest(), digest()),    "invalid digest"),
            ("a//b".into(),                               "empty component"),
            ("app/".into(),                               "empty component"),
            ("/app".into(),                               "empty component"),
            ("registry.example.test/".into(),             "no repository name"),
            ("app:-bad".into(),                           "tag \"-bad\" is not valid"),
            ("app:.bad".into(),                           "is not valid"),
            ("app:a+b".into(),                            "is not valid"),
            (format!("app:{}", "t".repeat(129)),          "129 characters"),
            ("-app".into(),                               "component \"-app\""),
            ("app-".into(),                               "is not valid"),
            ("a..b".into(),                               "is not valid"),
            ("a___b".into(),                              "is not valid"),
            ("a.-b".into(),                               "is not valid"),
            ("team/a:b/c".into(),                         "is not valid"),
            (format!("registry.example.test/{}", "a".repeat(300)), "more than the 255 allowed"),
            (format!("{}/app", "a".repeat(300)),          "more than the 255 allowed"),
            (format!("registry.example.test/{}", "a".repeat(234)), "256 characters"),
            (format!("sha256:{HEX}"),                     "digest alone"),
            (HEX.into(),                                  "image ID"),
            (format!("{HEX}:latest"),                     "image ID"),
            ("ngi nx".into(),                             "whitespace"),
            (" nginx".into(),                             "whitespace"),
            ("nginx\n".into(),                            "whitespace"),
            ("nginx\0".into(),                            "control character"),
            ("ngïnx".into(),                              "non-ASCII"),
            ("app:tàg".into(),                            "non-ASCII"),
            ("régistry.example/app".into(),               "non-ASCII"),
            ("registry.example.test:port/app".into(),     "not a number"),
            ("registry.example.test:/app".into(),         "not a number"),
            ("-bad.example/app".into(),                   "registry host \"-bad.example\""),
            ("bad..example/app".into(),                   "registry host"),
            ("under_score.example/app".into(),            "registry host"),
            ("[::1/app".into(),                           "unclosed"),
            ("[]:5000/app".into(),                        "IPv6"),
            ("[::g]/app".into(),                          "IPv6"),
            ("[::1]x/app".into(),                         "after the IPv6"),
            ("a:b:c/app".into(),                          "not a number"),
            ("app!".into(),                               "is not valid"),
        ]
    }

    #[test]
    fn bad_references_are_rejected_with_a_clear_message() {
        for (input, fragment) in bad() {
            let err = match ImageRef::parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(fragment), "{input:?}: {err:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn the_longest_names_and_tags_are_accepted() {
        // 22 + 233 = 255 characters of registry/repository.
        let name = format!("registry.example.test/{}", "a".repeat(233));
        assert_eq!(name.len(), 255);
        let r = ImageRef::parse(&format!("{name}:{}", "t".repeat(128))).unwrap();
        assert_eq!(r.repository().len(), 233);
        // Docker Hub names count with docker.io/library/ in front.
        assert!(ImageRef::parse(&"a".repeat(237)).is_ok());
        assert!(ImageRef::parse(&"a".repeat(238)).is_err());
    }

    #[test]
    fn error_messages_do_not_repeat_huge_inputs() {
        let huge = format!("{} x", "a".repeat(100_000));
        match ImageRef::parse(&huge) {
            Err(ReferenceError::Invalid { reference, .. }) => assert!(reference.len() < 400),
            other => panic!("{other:?}"),
        }
    }

    /// A tiny deterministic generator (xorshift), so the fuzz test needs no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 16) as usize
        }
    }

    #[test]
    fn never_panics_and_what_parses_round_trips() {
        let pieces = [
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
            "--",
            "/",
            ":",
            "@",
            "[",
            "]",
            "::1",
            "localhost",
            "docker.io",
            "index.docker.io",
            "library",
            "sha256:",
            HEX,
            "5000",
            " ",
            "é",
            "ß",
            "\u{1F600}",
            "\0",
            "\t",
            "+",
            "=",
            ",",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = rng.next() % 12;
            let text: String = (0..len).map(|_| pieces[rng.next() % pieces.len()]).collect();
            if let Ok(r) = ImageRef::parse(&text) {
                parsed += 1;
                assert_eq!(ImageRef::parse(&r.to_string()), Ok(r.clone()), "{text:?} → {r}");
                assert!(r.tag().is_some() || r.digest().is_some(), "{text:?}");
                assert_eq!(r.registry(), r.registry().to_ascii_lowercase(), "{text:?}");
            }
            if let Ok(aliases) = Aliases::parse(&text) {
                for (alias, name) in &aliases.to_canonical {
                    assert_eq!(*alias, alias.to_ascii_lowercase(), "{text:?}");
                    assert!(!aliases.to_canonical.contains_key(name), "{text:?}");
                }
            }
        }
        assert!(
            parsed > 100,
            "the generator should produce some valid references ({parsed})"
        );
    }

    #[test]
    fn commit_id_tags_are_tags_not_digests() {
        // Found by the reference property tests: `name:<32+ hex>` was taken for
        // a digest of algorithm `name` and rejected.
        let sha1 = "3f1c2e4d5b6a79808182838485868788898a8b8c";
        for text in [
            format!("myapp:{sha1}"),
            format!("my-app:{}", &HEX[..32]),
            format!("app:{HEX}"),
            format!("sha1:{sha1}"),
        ] {
            let (name, tag) = text.split_once(':').unwrap();
            let r = ImageRef::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.repository(), format!("library/{name}"), "{text}");
            assert_eq!(r.tag(), Some(tag), "{text}");
            assert_eq!(r.digest(), None, "{text}");
        }
        for text in [format!("sha256:{HEX}"), format!("sha512:{HEX}{HEX}")] {
            let err = ImageRef::parse(&text).unwrap_err().to_string();
            assert!(err.contains("digest alone"), "{text}: {err}");
        }
    }

    #[test]
    fn from_event_checks_each_part_as_what_it_is() {
        // Found by the distribution fuzz target: `request.host` "true" joined
        // as "true/team/app:1" named docker.io/true/team/app, so a push to a
        // registry reached as plain `registry` updated a Docker Hub image.
        #[rustfmt::skip]
        let good = [
            (Some("registry:80"),                "team/app", "1",   "registry:80/team/app:1"),
            (Some("LocalHost"),                  "app",      "1",   "localhost/app:1"),
            (Some("Registry.Example.TEST:5000"), "team/app", "1.0", "registry.example.test:5000/team/app:1.0"),
            (Some("[::1]:5000"),                 "app",      "v1",  "[::1]:5000/app:v1"),
            (Some("index.docker.io"),            "nginx",    "1",   "docker.io/library/nginx:1"),
            (None,                               "nginx",    "1",   "docker.io/library/nginx:1"),
            (None,                               "a.b/c",    "1",   "docker.io/a.b/c:1"),
            (None,                               "localhost/app", "1", "docker.io/localhost/app:1"),
        ];
        for (host, repository, tag, want) in good {
            let r = ImageRef::from_event(host, repository, tag)
                .unwrap_or_else(|e| panic!("{host:?} {repository} {tag}: {e}"));
            assert_eq!(r.to_string(), want);
            assert_eq!(ImageRef::parse(want), Ok(r));
        }
        #[rustfmt::skip]
        let bad = [
            (Some("registry"),                   "team/app", "1",   "not one a reference can name"),
            (Some("true"),                       "team/app", "1",   "not one a reference can name"),
            (Some("registry.example.test/evil"), "app",      "1",   "registry host"),
            (Some("a@b.test"),                   "app",      "1",   "registry host"),
            (Some(""),                           "app",      "1",   "registry host"),
            (Some("registry.example.test"),      "app",      &*format!("1@sha256:{HEX}"), "tag"),
            (Some("registry.example.test"),      "Team/App", "1",   "lower-case"),
            (Some("registry.example.test"),      "a:b/app",  "1",   "is not valid"),
            (None,                               "app",      "a b", "whitespace"),
            (Some("registry.example.test"),      &*"a".repeat(240), "1", "more than the 255 allowed"),
        ];
        for (host, repository, tag, fragment) in bad {
            match ImageRef::from_event(host, repository, tag) {
                Err(e) => assert!(
                    e.to_string().contains(fragment),
                    "{host:?} {repository} {tag}: {e}"
                ),
                Ok(r) => panic!("{host:?} {repository} {tag} gave {r}"),
            }
        }
    }

    #[test]
    fn aliases_make_two_hosts_one_registry() {
        let aliases = Aliases::parse("registry.example.test=127.0.0.1:5000").unwrap();
        let local = ImageRef::parse("127.0.0.1:5000/team/app:1.4").unwrap();
        let public = ImageRef::parse("registry.example.test/team/app:1.4").unwrap();
        let key = aliases.key(&local).unwrap();
        assert_eq!(key, aliases.key(&public).unwrap());
        assert_eq!(
            key,
            TagKey {
                registry: "registry.example.test".into(),
                repository: "team/app".into(),
                tag: "1.4".into(),
            }
        );
        // Without the alias they differ.
        let none = Aliases::default();
        assert_ne!(none.key(&local), none.key(&public));
        // A digest-only reference has no key.
        let pinned = ImageRef::parse(&format!("127.0.0.1:5000/team/app@{}", digest())).unwrap();
        assert_eq!(aliases.key(&pinned), None);
    }

    #[test]
    fn aliases_parse_leniently_but_not_sloppily() {
        let aliases = Aliases::parse(
            " Registry.Example.TEST = 127.0.0.1:5000 ,, registry.example.test=localhost:5000,\
             docker.io=mirror.example.test:5000,index.docker.io=hub-cache.example.test,",
        )
        .unwrap();
        assert_eq!(aliases.canonical("127.0.0.1:5000"), "registry.example.test");
        assert_eq!(aliases.canonical("localhost:5000"), "registry.example.test");
        assert_eq!(aliases.canonical("mirror.example.test:5000"), "docker.io");
        assert_eq!(aliases.canonical("hub-cache.example.test"), "docker.io");
        assert_eq!(
            aliases.canonical("registry.example.test"),
            "registry.example.test"
        );
        assert_eq!(
            aliases.canonical("elsewhere.example.test"),
            "elsewhere.example.test"
        );
        assert_eq!(Aliases::parse(""), Ok(Aliases::default()));
        assert_eq!(Aliases::parse(" , ,"), Ok(Aliases::default()));
        assert!(Aliases::parse("[::1]:5000=localhost:5000").is_ok());

        #[rustfmt::skip]
        let bad = [
            ("registry.example.test",                       "expected name=alias"),
            ("=127.0.0.1:5000",                             "empty host"),
            ("registry.example.test=",                      "empty host"),
            ("a.test=b.test=c.test",                        "more than one '='"),
            ("https://registry.example.test=127.0.0.1:5000", "without a scheme"),
            ("registry.example.test/team=127.0.0.1:5000",   "not a path"),
            ("registry.example.test=127.0.0.1:port",        "not a number"),
            ("registry.example.test=bad host",              "contains ' '"),
            ("a.test=a.test",                               "alias of itself"),
            ("a.test=c.test,b.test=c.test",                 "already an alias of a.test"),
            ("a.test=b.test,b.test=c.test",                 "write every alias against the final name"),
        ];
        for (text, fragment) in bad {
            match Aliases::parse(text) {
                Err(e @ ReferenceError::Invalid { .. }) => {
                    let message = e.to_string();
                    assert!(
                        message.contains(fragment),
                        "{text:?}: {message:?} lacks {fragment:?}"
                    );
                    assert!(message.contains("registry alias"), "{text:?}: {message:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
