//! `TargetIndex`: tag key → targets, with cheap immutable snapshots.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Target, TargetId};
use crate::event::{Aliases, TagKey};

/// The matcher's read-only view: a lookup by tag key, not a scan.
#[derive(Debug, Default)]
pub struct IndexSnapshot {
    by_tag: HashMap<TagKey, Vec<Target>>,
    /// Built from a full list of the engine's containers. The empty view
    /// before the first list (the engine down at start-up) is not: "no
    /// target" means "not known yet" there.
    synced: bool,
}

impl IndexSnapshot {
    /// Whether the view comes from the engine (see [`IndexSnapshot::synced`]).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

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
            // During an update the old container (being renamed aside) and the
            // new one can both carry the name until the rename event arrives.
            // A job works by name, so one entry per name: never two updates
            // of one container at once.
            targets.dedup_by(|a, b| a.name == b.name);
        }
        Arc::new(IndexSnapshot { by_tag, synced: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ImageRef;
    use crate::inventory::TargetOptions;

    fn target(id: &str, name: &str, image: &str) -> Target {
        Target {
            id: TargetId(id.into()),
            name: name.into(),
            image: ImageRef::parse(image).unwrap(),
            image_id: "sha256:x".into(),
            running: true,
            monitor_only: false,
            options: TargetOptions::default(),
            compose_project: None,
            compose_service: None,
            kind: crate::inventory::TargetKind::Container,
        }
    }

    #[test]
    fn lookup_by_tag_with_aliases_one_entry_per_name_and_no_digest_pins() {
        let aliases = Aliases::parse("registry.example.test=127.0.0.1:5000").unwrap();
        let mut index = TargetIndex::new(aliases.clone());
        index.upsert(target("a", "web", "127.0.0.1:5000/team/app:1.4"));
        // The same name under a second id, as while an update renames the old one aside.
        index.upsert(target("b", "web", "127.0.0.1:5000/team/app:1.4"));
        index.upsert(target("c", "api", "registry.example.test/team/app:1.4"));
        index.upsert(target("d", "other", "127.0.0.1:5000/team/app:1.5"));
        index.upsert(target(
            "e",
            "pinned",
            &format!("127.0.0.1:5000/team/app:1.4@sha256:{}", "a".repeat(64)),
        ));
        let snapshot = index.snapshot();
        let key = aliases
            .key(&ImageRef::parse("127.0.0.1:5000/team/app:1.4").unwrap())
            .unwrap();
        let names: Vec<&str> = snapshot
            .targets_for(&key)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, vec!["api", "web"]);
        index.remove(&TargetId("c".into()));
        assert_eq!(index.snapshot().targets_for(&key).len(), 1);
    }
}
