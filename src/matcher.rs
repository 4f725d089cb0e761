//! Pure: which targets does an event concern?
//!
//! A lookup by tag key in the index snapshot (canonical registry host,
//! repository, tag), so a registry's public name and its loopback address
//! match as one when they are configured as aliases.

use crate::event::{Aliases, ImageEvent, ImageRef};
use crate::inventory::{IndexSnapshot, Target};

/// Whether intake must journal and queue the push: a target runs its tag,
/// or the index has not been synced with the engine yet (the engine was down
/// at start-up), so that is not known and the runner decides later.
pub fn may_concern(reference: &ImageRef, snapshot: &IndexSnapshot, aliases: &Aliases) -> bool {
    !snapshot.is_synced() || !targets_running(reference, snapshot, aliases).is_empty()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::TargetIndex;

    #[test]
    fn before_the_first_sync_every_push_may_concern_a_target() {
        let reference = ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap();
        let aliases = Aliases::default();
        assert!(may_concern(&reference, &IndexSnapshot::default(), &aliases));
        let synced = TargetIndex::new(aliases.clone()).snapshot();
        assert!(!may_concern(&reference, &synced, &aliases));
    }
}
