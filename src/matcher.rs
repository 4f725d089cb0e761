//! Pure: which targets does an event concern?
//!
//! A lookup by tag key in the index snapshot (canonical registry host,
//! repository, tag), so a registry's public name and its loopback address
//! match as one when they are configured as aliases.

use crate::event::{Aliases, ImageEvent, ImageRef};
use crate::inventory::{IndexSnapshot, Target};

/// The targets that run the event's tag. Targets pinned by digest are never
/// in the snapshot's tag lookup, so they are never moved.
pub fn matching_targets(event: &ImageEvent, snapshot: &IndexSnapshot, aliases: &Aliases) -> Vec<Target> {
    targets_running(&event.reference, snapshot, aliases).to_vec()
}

/// The targets that run `reference`'s tag, without copying them.
pub fn targets_running<'s>(
    reference: &ImageRef,
    snapshot: &'s IndexSnapshot,
    aliases: &Aliases,
) -> &'s [Target] {
    match aliases.key(reference) {
        Some(key) => snapshot.targets_for(&key),
        None => &[],
    }
}
