//! What the kernel must forget when the tree changes: the attributes and cached
//! pages of files whose content changed, and the entries of folders whose listing
//! changed. Inode numbers are stable per path, so a node in both trees has the same
//! inode.

use std::collections::BTreeSet;

use super::tree::{NodeKind, Tree, ROOT};

/// One thing to invalidate in the kernel's caches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invalidation {
    /// The attributes and cached data of an inode.
    Inode(u64),
    /// The name `name` in folder `parent` (a dentry, positive or negative).
    Entry { parent: u64, name: String },
}

/// The invalidations that take the kernel from `old` to `new`.
pub fn invalidations(old: &Tree, new: &Tree) -> Vec<Invalidation> {
    let mut out = BTreeSet::new();
    let mut stack = vec![ROOT];
    let mut seen = BTreeSet::new();
    // Walk both trees' folders from the root; a folder only in `old` is reached
    // through its parent's removed entry.
    while let Some(ino) = stack.pop() {
        if !seen.insert(ino) {
            continue;
        }
        let children = |tree: &Tree| match tree.get(ino).map(|n| &n.kind) {
            Some(NodeKind::Dir { children }) => children.clone(),
            _ => Default::default(),
        };
        let (before, after) = (children(old), children(new));
        if before != after {
            out.insert(Invalidation::Inode(ino));
        }
        for (name, child) in &before {
            if after.get(name) != Some(child) {
                out.insert(Invalidation::Entry {
                    parent: ino,
                    name: name.clone(),
                });
            }
        }
        for (name, child) in &after {
            if before.get(name) != Some(child) {
                out.insert(Invalidation::Entry {
                    parent: ino,
                    name: name.clone(),
                });
            }
            match (
                old.get(*child).map(|n| &n.kind),
                new.get(*child).map(|n| &n.kind),
            ) {
                (_, Some(NodeKind::Dir { .. })) => stack.push(*child),
                (
                    Some(NodeKind::File {
                        size: a,
                        replicas: ra,
                    }),
                    Some(NodeKind::File {
                        size: b,
                        replicas: rb,
                    }),
                ) if a != b || ra != rb => {
                    out.insert(Invalidation::Inode(*child));
                }
                _ => {}
            }
        }
    }
    out.into_iter().collect()
}
