//! Image references: parse and normalise as Docker does.
//!
//! STUB: the public API below is the contract; bodies are being written.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::Digest;

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
    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        let _ = text;
        todo!()
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
    pub fn parse(text: &str) -> Result<Aliases, ReferenceError> {
        let _ = text;
        todo!()
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
