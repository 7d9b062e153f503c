//! What the kernel must forget when the tree changes: the attributes and cached
//! pages of files whose content changed, and the entries of folders whose listing
//! changed. Inode numbers are stable per path, so a node in both trees has the same
//! inode.

use std::collections::BTreeSet;

use super::tree::{Node, NodeKind, Tree, ROOT};

/// One thing to invalidate in the kernel's caches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invalidation {
    /// The attributes and cached data of an inode.
    Inode(u64),
    /// The name `name` in folder `parent` (a dentry, positive or negative).
    Entry { parent: u64, name: String },
}

/// The entries of folder `ino` in `tree`, in name order; none if it is not a
/// folder there.
fn children(tree: &Tree, ino: u64) -> Vec<Node<'_>> {
    match tree.get(ino).map(|n| n.kind()) {
        Some(NodeKind::Dir(children)) => children.iter().collect(),
        _ => Vec::new(),
    }
}

/// The invalidations that take the kernel from `old` to `new`, found by
/// walking every folder.
pub fn invalidations(old: &Tree, new: &Tree) -> Vec<Invalidation> {
    let mut out = BTreeSet::new();
    let mut stack = vec![ROOT];
    let mut seen = BTreeSet::new();
    // Walk both trees' folders from the root; a folder only in `old` is reached
    // through its parent's removed entry.
    while let Some(ino) = stack.pop() {
        if seen.insert(ino) {
            stack.extend(compare_folder(old, new, ino, &mut out));
        }
    }
    out.into_iter().collect()
}

/// The invalidations that take the kernel from `old` to `new` when only
/// `folders` changed (a tree update says which): what [`invalidations`] finds,
/// at the cost of those folders.
pub fn invalidations_in(old: &Tree, new: &Tree, folders: &[u64]) -> Vec<Invalidation> {
    let mut out = BTreeSet::new();
    for ino in folders {
        // One that went is only its parent's entry.
        if new.get(*ino).is_some_and(|n| n.is_dir()) {
            compare_folder(old, new, *ino, &mut out);
        }
    }
    out.into_iter().collect()
}

/// Compares folder `ino`'s listing in `old` and `new` into `out`; returns
/// the subfolders of `new` to compare next: those that appeared, and those in
/// both.
fn compare_folder(old: &Tree, new: &Tree, ino: u64, out: &mut BTreeSet<Invalidation>) -> Vec<u64> {
    let mut next = Vec::new();
    let (before, after) = (children(old, ino), children(new, ino));
    let entry = |name: &str| Invalidation::Entry {
        parent: ino,
        name: name.to_owned(),
    };
    let mut listing_changed = false;
    // Both listings are in name order: merge them.
    let (mut b, mut a) = (before.iter().peekable(), after.iter().peekable());
    loop {
        let order = match (b.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.name().cmp(y.name()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let gone = b.next().expect("peeked");
                out.insert(entry(gone.name()));
                listing_changed = true;
            }
            std::cmp::Ordering::Greater => {
                let came = a.next().expect("peeked");
                out.insert(entry(came.name()));
                listing_changed = true;
                if came.is_dir() {
                    next.push(came.ino());
                }
            }
            std::cmp::Ordering::Equal => {
                let (was, is) = (b.next().expect("peeked"), a.next().expect("peeked"));
                if was.ino() != is.ino() {
                    out.insert(entry(is.name()));
                    listing_changed = true;
                }
                match (was.file(), is.file()) {
                    (_, None) => next.push(is.ino()),
                    (Some(x), Some(y)) if !x.same_as(&y) => {
                        out.insert(Invalidation::Inode(is.ino()));
                    }
                    _ => {}
                }
            }
        }
    }
    if listing_changed {
        out.insert(Invalidation::Inode(ino));
    }
    next
}

/// The folders a music server should look at again after `changes` took the
/// kernel to `new`, as paths relative to the root (`""` is the root), each a
/// folder of `new`, none inside another: a folder that appeared (not its
/// parent, so that a new artist is not a rescan of everything); the folder of
/// a file that appeared, changed or went; the parent of a folder that went.
pub fn changed_folders(new: &Tree, changes: &[Invalidation]) -> Vec<String> {
    let mut folders = BTreeSet::new();
    for change in changes {
        let folder = match change {
            Invalidation::Inode(ino) => match new.get(*ino) {
                // A listing that changed: its entries say how.
                Some(node) if node.is_dir() => continue,
                Some(node) => node.parent(),
                None => continue,
            },
            Invalidation::Entry { parent, name } => match new.lookup(*parent, name) {
                Some(node) if node.is_dir() => node.ino(),
                _ => *parent,
            },
        };
        if new.get(folder).is_some_and(|n| n.is_dir()) {
            folders.insert(new.path_of(folder).trim_start_matches('/').to_owned());
        }
    }
    outermost(folders)
}

/// `folders` (relative paths, `""` the root) without those inside another
/// of them, in path order.
pub fn outermost(folders: impl IntoIterator<Item = String>) -> Vec<String> {
    let folders: BTreeSet<String> = folders.into_iter().collect();
    if folders.contains("") {
        return vec![String::new()];
    }
    let inside_another = |folder: &str| {
        folder
            .match_indices('/')
            .any(|(at, _)| folders.contains(&folder[..at]))
    };
    folders
        .iter()
        .filter(|f| !inside_another(f))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::index::FileRecord;
    use crate::library::inode_book::InodeBook;
    use crate::library::layout::Layout;
    use crate::library::tree_build::build;
    use crate::store::Store;

    fn record(path: &str, title: &str, size: u64) -> FileRecord {
        FileRecord::tagged("o", path, size, ("A", "B", title))
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
            .lookup(old.lookup(1, "A").unwrap().ino(), "B")
            .unwrap()
            .ino();
        let x = old.lookup(album, "X.flac").unwrap().ino();
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

    #[test]
    fn the_folders_to_look_at_again_are_the_new_ones_and_those_whose_files_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let mut book = InodeBook::load(&store).unwrap();
        let rank = |o: &str| (1, o.to_owned());
        let layout = Layout::default();
        let track = |path: &str, artist: &str, album: &str, title: &str, size: u64| {
            FileRecord::tagged("o", path, size, (artist, album, title))
        };
        let old = build(
            &[
                track("1.flac", "A", "B", "One", 10),
                track("2.flac", "A", "B", "Two", 10),
                track("3.flac", "C", "D", "Three", 10),
                track("4.flac", "E", "F", "Four", 10),
            ],
            &rank,
            &layout,
            &mut book,
        );
        // A new album under A, a new artist G with an album, a track of C/D
        // rewritten, one of E/F gone.
        let mut tracks = vec![
            track("1.flac", "A", "B", "One", 10),
            track("2.flac", "A", "B", "Two", 10),
            track("5.flac", "A", "New", "Five", 10),
            track("3.flac", "C", "D", "Three", 11),
            track("6.flac", "G", "H", "Six", 10),
            track("7.flac", "G", "H", "Seven", 10),
            track("8.flac", "E", "F", "Eight", 10),
        ];
        let new = build(&tracks, &rank, &layout, &mut book);
        let folders = changed_folders(&new, &invalidations(&old, &new));
        assert_eq!(folders, ["A/New", "C/D", "E/F", "G"]);

        // E gone altogether: only the root's listing says so.
        tracks.pop();
        let newer = build(&tracks, &rank, &layout, &mut book);
        assert_eq!(changed_folders(&newer, &invalidations(&new, &newer)), [""]);
        assert!(changed_folders(&newer, &invalidations(&newer, &newer)).is_empty());
    }

    #[test]
    fn outermost_keeps_no_folder_inside_another() {
        let folders = ["A/x", "A B", "A", "C/D/E", "C/D", "CD"].map(String::from);
        assert_eq!(outermost(folders), ["A", "A B", "C/D", "CD"]);
        assert_eq!(outermost(["A".to_owned(), String::new()]), [""]);
    }
}
