//! `TargetIndex`: tag key → targets, with cheap immutable snapshots.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Target, TargetId};
use crate::event::{Aliases, TagKey};

/// The matcher's read-only view: a lookup by tag key, not a scan.
#[derive(Debug, Default)]
pub struct IndexSnapshot {
    by_tag: HashMap<TagKey, Vec<Target>>,
}

impl IndexSnapshot {
    /// Targets running `key`, in name order.
    pub fn targets_for(&self, key: &TagKey) -> &[Target] {
        self.by_tag.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn all(&self) -> impl Iterator<Item = &Target> {
        self.by_tag.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.by_tag.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }
}

/// The writable index, owned by the watch task.
#[derive(Debug)]
pub struct TargetIndex {
    aliases: Aliases,
    targets: BTreeMap<TargetId, Target>,
}

impl TargetIndex {
    pub fn new(aliases: Aliases) -> Self {
        TargetIndex {
            aliases,
            targets: BTreeMap::new(),
        }
    }

    pub fn upsert(&mut self, target: Target) {
        self.targets.insert(target.id.clone(), target);
    }

    pub fn remove(&mut self, id: &TargetId) -> Option<Target> {
        self.targets.remove(id)
    }

    pub fn replace_all(&mut self, targets: impl IntoIterator<Item = Target>) {
        self.targets = targets.into_iter().map(|t| (t.id.clone(), t)).collect();
    }

    /// Builds the immutable view. Targets pinned by digest alone have no tag
    /// key and are left out: a push to a tag cannot move them.
    pub fn snapshot(&self) -> Arc<IndexSnapshot> {
        let mut by_tag: HashMap<TagKey, Vec<Target>> = HashMap::new();
        for target in self.targets.values() {
            if target.image.digest().is_some() {
                continue;
            }
            if let Some(key) = self.aliases.key(&target.image) {
                by_tag.entry(key).or_default().push(target.clone());
            }
        }
        for targets in by_tag.values_mut() {
            targets.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Arc::new(IndexSnapshot { by_tag })
    }
}
