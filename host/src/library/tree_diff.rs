//! What the kernel must forget when the tree changes: the attributes and cached
//! pages of files whose content changed, and the entries of folders whose listing
//! changed. Inode numbers are stable per path, so a node in both trees has the same
//! inode.

use std::collections::{BTreeMap, BTreeSet};

use super::tree::{NodeKind, Tree, ROOT};

/// One thing to invalidate in the kernel's caches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invalidation {
    /// The attributes and cached data of an inode.
    Inode(u64),
    /// The name `name` in folder `parent` (a dentry, positive or negative).
    Entry { parent: u64, name: String },
}

/// The entries of folder `ino` in `tree`; none if it is not a folder there.
fn children(tree: &Tree, ino: u64) -> &BTreeMap<String, u64> {
    static NONE: BTreeMap<String, u64> = BTreeMap::new();
    match tree.get(ino).map(|n| &n.kind) {
        Some(NodeKind::Dir { children }) => children,
        _ => &NONE,
    }
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
        let (before, after) = (children(old, ino), children(new, ino));
        if before != after {
            out.insert(Invalidation::Inode(ino));
        }
        for (name, child) in before {
            if after.get(name) != Some(child) {
                out.insert(Invalidation::Entry {
                    parent: ino,
                    name: name.clone(),
                });
            }
        }
        for (name, child) in after {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::index::{FileRecord, FileRole};
    use crate::library::layout::Layout;
    use crate::library::tag_reader::Tags;
    use crate::library::tree::{build, InodeBook};
    use crate::store::Store;

    fn record(path: &str, title: &str, size: u64) -> FileRecord {
        FileRecord {
            origin: "o".into(),
            path: path.into(),
            size,
            mtime_ns: 1,
            version: None,
            role: FileRole::Audio,
            tags: Tags {
                title: Some(title.into()),
                artist: Some("A".into()),
                album: Some("B".into()),
                ..Tags::default()
            },
            problem: None,
            pending_reads: 0,
            unseen: false,
        }
    }

    #[test]
    fn changed_folders_and_files_are_invalidated_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let mut book = InodeBook::load(&store).unwrap();
        let rank = |o: &str| (1, o.to_owned());
        let layout = Layout::default();
        let old = build(
            &[record("x.flac", "X", 10), record("y.flac", "Y", 10)],
            &rank,
            &layout,
            &mut book,
        );
        let same = build(
            &[record("x.flac", "X", 10), record("y.flac", "Y", 10)],
            &rank,
            &layout,
            &mut book,
        );
        assert!(invalidations(&old, &same).is_empty());

        // y retagged (renamed), x rewritten with another size.
        let new = build(
            &[record("x.flac", "X", 11), record("y.flac", "Why", 10)],
            &rank,
            &layout,
            &mut book,
        );
        let album = old
            .lookup(old.lookup(1, "A").unwrap().ino, "B")
            .unwrap()
            .ino;
        let x = old.lookup(album, "X.flac").unwrap().ino;
        let changes = invalidations(&old, &new);
        assert!(changes.contains(&Invalidation::Inode(album)), "{changes:?}");
        assert!(changes.contains(&Invalidation::Entry {
            parent: album,
            name: "Y.flac".into()
        }));
        assert!(changes.contains(&Invalidation::Entry {
            parent: album,
            name: "Why.flac".into()
        }));
        assert!(
            changes.contains(&Invalidation::Inode(x)),
            "x's cached pages must go"
        );
        assert!(
            !changes.contains(&Invalidation::Inode(1)),
            "the root's listing did not change"
        );
    }
}
