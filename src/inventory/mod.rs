//! The target index: what may be updated, keyed by the image it runs.
//!
//! `watch` keeps the index current from the engine (a full list at start, then
//! the event stream) and publishes immutable [`IndexSnapshot`]s that the
//! matcher reads without locking.

pub mod index;
pub mod services;
pub mod watch;

use serde::Serialize;

use crate::event::ImageRef;
pub use crate::labels::{BaseImage, TargetOptions};
pub use index::{IndexSnapshot, TargetIndex};

/// A container's or service's ID, as the engine gives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TargetId(pub String);

/// What a target is, and so how it is updated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A standalone container, recreated by `deploy::container`.
    #[default]
    Container,
    /// A Swarm service, updated by `deploy::service` (on the leader manager only).
    Service,
}

/// One labelled container or Swarm service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub id: TargetId,
    pub kind: TargetKind,
    pub name: String,
    /// The image reference the container was started with, normalised. For a
    /// service, its spec image without the digest (`repo:tag`), so that it is
    /// matched by tag although Swarm pins it.
    pub image: ImageRef,
    /// The ID of the image it runs now; for a service, the digest its spec is pinned to.
    pub image_id: String,
    pub running: bool,
    pub monitor_only: bool,
    /// Shown as its `base` only (see `labels::TargetOptions`'s `Serialize`).
    #[serde(flatten)]
    pub options: TargetOptions,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
}

/// Suffix of the name an old container is parked under during an update.
/// Parked containers are never targets themselves.
pub const PARKED_SUFFIX: &str = "-hoist-old";
