//! Changing the tree for a change batch, at the cost of what changed: the
//! folders the changed records were and are shown in, and their parents
//! where a folder appears or goes. Nothing else of the tree is read or
//! copied ([`Tree`] shares every folder it did not touch).
//!
//! Each such folder is laid out again with the same rules as a whole build
//! ([`super::tree_build`]), from every record that can be shown in it, so the
//! result is the tree a whole build would make (the model test in
//! `tests` checks exactly that, after random edits):
//!
//! 1. **The source folders** of the changed records (old and new versions),
//!    read from the index on every origin: records of the same path on other
//!    origins are replicas of the same track, and a cover is shown in the
//!    album folders of the tracks beside it.
//! 2. **The virtual folders** those records render into, before and after
//!    the change. A file's name in its folder can depend on its neighbours
//!    (two tracks of the same name get ` (2)`), so each of those folders is
//!    laid out whole: the source folders of the files it shows now are read
//!    too.
//! 3. **The placements**: `place_files` of the whole build, over those
//!    records; of what it places, only the files of the folders in 2 count.
//! 4. **Folders appear and go**: deepest first, a folder left empty goes
//!    from its parent's listing, a new one is added to it; each folder whose
//!    listing changed gets its mtime from the inode book, as in a build.
//!
//! It declines (the caller builds whole) when a file hides a folder of the
//! same name, before or after: what is hidden is in no folder this could
//! read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::index::{FileRecord, FileRole};
use super::inode_book::{listing_sig, InodeBook};
use super::layout::Layout;
use super::placed::Placed;
use super::tree::{EntryDraft, Folder, FolderDraft, NodeKind, Tree, ROOT};
use super::tree_build::{file_draft, parent_dir, place_files};

/// The index as it is after the change, as the update reads it.
pub trait Records {
    /// Every record directly in origin folder `dir` (`""` is the top), on
    /// every origin the tree shows.
    fn in_dir(&self, dir: &str) -> Result<Vec<FileRecord>, String>;
}

/// A changed tree.
pub struct Updated {
    pub tree: Tree,
    /// The folders laid out again: a change in the tree is in one of these
    /// (by inode; a folder that went is in the old tree only).
    pub folders: Vec<u64>,
}

type Segments = Vec<String>;

/// The folder a record is shown in, but for a ` (n)` suffix.
fn shown_in(record: &Placed) -> Segments {
    let mut segments: Segments = record.segments().map(str::to_owned).collect();
    segments.pop();
    segments
}

/// The path of a folder as the inode book keys it.
fn book_path(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

fn resolve<'t>(tree: &'t Tree, segments: &[String]) -> Option<&'t Folder> {
    let mut ino = ROOT;
    for name in segments {
        let node = tree.lookup(ino, name)?;
        if !node.is_dir() {
            return None;
        }
        ino = node.ino();
    }
    tree.folder(ino)
}

/// `old` changed by `changed` (the old and the new versions of every record
/// that changed, in any order), `records` reading the index after the change;
/// `None` if the caller must build whole.
pub fn update(
    old: &Tree,
    changed: &[FileRecord],
    records: &dyn Records,
    rank: &dyn Fn(&str) -> (i64, String),
    layout: &Layout,
    book: &mut InodeBook,
    now: u64,
) -> Result<Option<Updated>, String> {
    if old.hidden > 0 {
        return Ok(None);
    }
    // 1. The source folders of what changed, on every origin.
    let changed: Vec<Placed> = changed.iter().map(|r| Placed::of(r, layout)).collect();
    let mut dirs: BTreeSet<String> = changed
        .iter()
        .map(|r| parent_dir(r.path()).to_owned())
        .collect();
    let mut read: BTreeMap<(String, String), Placed> = BTreeMap::new();
    for dir in &dirs {
        for record in records.in_dir(dir)? {
            let placed = Placed::of(&record, layout);
            read.insert((record.origin, record.path), placed);
        }
    }
    // 2. The virtual folders they are and were shown in, and the sources of
    //    what those show now.
    let laid_out: BTreeSet<Segments> = changed
        .iter()
        .chain(read.values())
        .filter(|r| r.role == FileRole::Audio)
        .map(shown_in)
        .collect();
    // The root is always a folder; a track rendered there needs no parent.
    let mut more_dirs = BTreeSet::new();
    for folder in &laid_out {
        let Some(shown) = resolve(old, folder) else {
            continue;
        };
        let node = old.get(shown.ino).expect("a folder of the tree");
        let NodeKind::Dir(children) = node.kind() else {
            continue;
        };
        for child in children.iter() {
            if let Some(file) = child.file() {
                let dir = parent_dir(file.source_path());
                if !dirs.contains(dir) {
                    more_dirs.insert(dir.to_owned());
                }
            }
        }
    }
    for dir in more_dirs {
        for record in records.in_dir(&dir)? {
            let placed = Placed::of(&record, layout);
            read.insert((record.origin, record.path), placed);
        }
        dirs.insert(dir);
    }
    // 3. Where the whole build would place those records; only the folders
    //    of 2 are taken from it.
    let all: Vec<Placed> = read.into_values().collect();
    let mut files: BTreeMap<Segments, Vec<(String, Vec<&Placed>)>> = laid_out
        .iter()
        .map(|folder| (folder.clone(), Vec::new()))
        .collect();
    for (path, group) in place_files(&all, rank) {
        let (name, folder) = path.split_last().expect("a file has a name");
        let folder: Segments = folder.iter().map(|s| s.to_string()).collect();
        if let Some(listing) = files.get_mut(&folder) {
            listing.push((name.to_string(), group));
        }
    }
    // 4. Deepest first: each folder's listing, and its parent's where it
    //    appears or goes.
    let mut tree = old.clone();
    let mut touched = Vec::new();
    // Subfolders added (true) or gone (false), by their parent.
    let mut moved: HashMap<Segments, Vec<(String, bool)>> = HashMap::new();
    let mut work: BTreeSet<(std::cmp::Reverse<usize>, Segments)> = laid_out
        .iter()
        .map(|f| (std::cmp::Reverse(f.len()), f.clone()))
        .collect();
    while let Some((_, path)) = work.pop_first() {
        let before = resolve(old, &path);
        // Its files: laid out again, or as they were (`None`: a folder here
        // only because a subfolder came or went).
        let listing: BTreeMap<String, Option<Vec<&Placed>>> = match files.remove(&path) {
            Some(placed) => placed.into_iter().map(|(n, g)| (n, Some(g))).collect(),
            None => before
                .map(|b| {
                    b.entries
                        .iter()
                        .filter(|e| e.body != super::tree::Body::Dir)
                        .map(|e| (b.str(e.name).to_owned(), None))
                        .collect()
                })
                .unwrap_or_default(),
        };
        // Its subfolders: as they were, plus and minus what came and went.
        let mut subfolders: BTreeSet<String> = before
            .map(|b| {
                b.entries
                    .iter()
                    .filter(|e| e.body == super::tree::Body::Dir)
                    .map(|e| b.str(e.name).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        for (name, added) in moved.remove(&path).unwrap_or_default() {
            match added {
                true => subfolders.insert(name),
                false => subfolders.remove(&name),
            };
        }
        if subfolders.iter().any(|s| listing.contains_key(s)) {
            return Ok(None);
        }
        let empty = listing.is_empty() && subfolders.is_empty();
        if let Some((name, parent)) = path.split_last() {
            let parent = parent.to_vec();
            let change = match (before.is_some(), empty) {
                (true, true) => Some(false),
                (false, false) => Some(true),
                _ => None,
            };
            if let Some(added) = change {
                moved
                    .entry(parent.clone())
                    .or_default()
                    .push((name.clone(), added));
                work.insert((std::cmp::Reverse(parent.len()), parent));
            }
        }
        if empty && !path.is_empty() {
            if let Some(before) = before {
                touched.push(before.ino);
                tree.drop_folder(before.ino);
            }
            continue;
        }
        let folder = lay_out(
            &mut tree,
            old,
            &path,
            before,
            &listing,
            &subfolders,
            book,
            now,
        );
        touched.push(folder.ino);
        tree.put_folder(folder);
    }
    Ok(Some(Updated {
        tree,
        folders: touched,
    }))
}

/// The folder at `path` listing `files` (new placements, or `None` for a file
/// of `before` as it was) and `subfolders`.
#[allow(clippy::too_many_arguments)]
fn lay_out(
    tree: &mut Tree,
    old: &Tree,
    path: &[String],
    before: Option<&Folder>,
    files: &BTreeMap<String, Option<Vec<&Placed>>>,
    subfolders: &BTreeSet<String>,
    book: &mut InodeBook,
    now: u64,
) -> Folder {
    let dir_path = book_path(path);
    let (ino, parent) = match (before, path.split_last()) {
        (Some(before), _) => (before.ino, before.parent),
        (None, None) => (ROOT, ROOT),
        (None, Some((_, up))) => {
            // The parent the tree shows, if it is there already.
            let parent = match (up.is_empty(), resolve(old, up)) {
                (true, _) => ROOT,
                (false, Some(shown)) => shown.ino,
                (false, None) => book.ino(&book_path(up)),
            };
            (book.ino(&dir_path), parent)
        }
    };
    let mut names: Vec<&str> = files
        .keys()
        .map(String::as_str)
        .chain(subfolders.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    let mut entries = Vec::with_capacity(names.len());
    for name in &names {
        // A name the folder had keeps the inode the tree shows (the book's:
        // a whole build takes it from there); only a new one asks the book,
        // so a root of 5,000 artists is not 5,000 reads of the store.
        let shown = before.and_then(|b| b.entry_by_name(name)).map(|e| e.ino);
        let child_ino = match shown {
            Some(ino) => ino,
            None => book.ino(&format!("{dir_path}/{name}")),
        };
        let file = match files.get(*name) {
            Some(Some(group)) => Some(file_draft(group, &mut |o| tree.origin_place(o))),
            Some(None) => {
                let node = before
                    .and_then(|b| old.lookup(b.ino, name))
                    .and_then(|n| n.file())
                    .expect("a kept file is in the folder before");
                Some(super::tree::FileDraft {
                    size: node.size(),
                    path: node.source_path(),
                    replicas: node
                        .replicas_stored()
                        .map(|(origin, mtime, version)| (tree.origin_place(origin), mtime, version))
                        .collect(),
                })
            }
            None => None,
        };
        entries.push(EntryDraft {
            name,
            ino: child_ino,
            file,
        });
    }
    let key = if dir_path.is_empty() { "/" } else { &dir_path };
    let mtime_ns = book.dir_mtime(key, listing_sig(names.iter().copied()), now);
    Folder::lay_out(&FolderDraft {
        ino,
        parent,
        mtime_ns,
        name: path.last().map_or("", String::as_str),
        entries,
    })
}

/// The model test: random edits of an index, each batch applied to the tree
/// by [`update`] and checked against a tree built whole from the index.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::tree_build::build_at;
    use crate::library::tree_diff::{invalidations, invalidations_in, Invalidation};
    use crate::store::Store;
    use proptest::prelude::*;

    type Index = BTreeMap<(String, String), FileRecord>;

    struct InMemory<'a>(&'a Index);

    impl Records for InMemory<'_> {
        fn in_dir(&self, dir: &str) -> Result<Vec<FileRecord>, String> {
            Ok(self
                .0
                .values()
                .filter(|r| parent_dir(&r.path) == dir)
                .cloned()
                .collect())
        }
    }

    const ORIGINS: [&str; 3] = ["a", "b", "c"];

    fn rank(origin: &str) -> (i64, String) {
        let at = ORIGINS.iter().position(|o| *o == origin).unwrap_or(9);
        (at as i64, origin.to_owned())
    }

    #[derive(Clone, Debug)]
    enum Edit {
        /// A file written (added, retagged, resized, moved here).
        Put {
            origin: usize,
            dir: usize,
            file: usize,
            size: u64,
            tags: (usize, usize, usize),
            cover: bool,
            unseen: bool,
        },
        /// The `n`th record (modulo how many there are) removed.
        Remove(usize),
        /// Every record of an origin gone (an origin removed from the config,
        /// or rescanned empty); puts bring them back.
        DropOrigin(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            5 => (0..3usize, 0..3usize, 0..4usize, 1..3u64, (0..2usize, 0..2usize, 0..3usize), prop::bool::weighted(0.15), prop::bool::weighted(0.1))
                .prop_map(|(origin, dir, file, size, tags, cover, unseen)| Edit::Put { origin, dir, file, size: size * 10, tags, cover, unseen }),
            3 => any::<usize>().prop_map(Edit::Remove),
            1 => (0..3usize).prop_map(Edit::DropOrigin),
        ]
    }

    fn record(edit: &Edit) -> Option<FileRecord> {
        let Edit::Put {
            origin,
            dir,
            file,
            size,
            tags: (artist, album, title),
            cover,
            unseen,
        } = *edit
        else {
            return None;
        };
        let path = match cover {
            true => format!("d{dir}/cover.jpg"),
            false => format!("d{dir}/f{file}.flac"),
        };
        let artist = ["X", "Y"][artist];
        let album = ["P", "Q"][album];
        let title = format!("T{title}");
        let mut record = FileRecord::tagged(ORIGINS[origin], &path, size, (artist, album, &title));
        record.mtime_ns = size * 7 + title.len() as u64;
        record.version = Some(format!("v{size}"));
        record.unseen = unseen;
        if unseen {
            record.tags = Default::default();
        }
        if cover {
            record.role = FileRole::Cover;
            record.tags = Default::default();
        }
        Some(record)
    }

    /// Every node, one line each: path, inode, mtime, and what it is.
    fn describe(tree: &Tree) -> BTreeMap<String, (u64, String)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            let node = tree.get(ino).expect("listed nodes exist");
            let what = match node.kind() {
                NodeKind::Dir(children) => {
                    stack.extend(children.iter().map(|c| c.ino()));
                    "dir".to_owned()
                }
                NodeKind::File(file) => format!(
                    "{} {} {:?}",
                    file.size(),
                    file.source_path(),
                    file.replicas()
                        .iter()
                        .map(|r| (r.origin.clone(), r.mtime_ns, r.version.clone()))
                        .collect::<Vec<_>>()
                ),
            };
            out.insert(
                tree.path_of(ino),
                (ino, format!("{:?} {what}", node.mtime())),
            );
        }
        out
    }

    /// What the kernel may have cached of `tree`: entries, negative entries
    /// of `names` not there, attributes and listings.
    #[derive(Default)]
    struct Kernel {
        entries: BTreeMap<(u64, String), u64>,
        negative: BTreeSet<(u64, String)>,
        attrs: BTreeMap<u64, String>,
        listings: BTreeMap<u64, Vec<String>>,
    }

    impl Kernel {
        fn caching(tree: &Tree, looked_up: &BTreeSet<String>) -> Kernel {
            let mut kernel = Kernel::default();
            for (path, (ino, what)) in describe(tree) {
                kernel.attrs.insert(ino, what);
                let node = tree.get(ino).unwrap();
                if ino != ROOT {
                    kernel
                        .entries
                        .insert((node.parent(), node.name().to_owned()), ino);
                }
                if let NodeKind::Dir(children) = node.kind() {
                    let names: Vec<String> = children.iter().map(|c| c.name().to_owned()).collect();
                    for name in looked_up {
                        if !names.contains(name) {
                            kernel.negative.insert((ino, name.clone()));
                        }
                    }
                    kernel.listings.insert(ino, names);
                }
                let _ = path;
            }
            kernel
        }

        fn forget(&mut self, changes: &[Invalidation]) {
            for change in changes {
                match change {
                    Invalidation::Inode(ino) => {
                        self.attrs.remove(ino);
                        self.listings.remove(ino);
                    }
                    Invalidation::Entry { parent, name } => {
                        self.negative.remove(&(*parent, name.clone()));
                        // The kernel drops the entries below it too
                        // (`d_invalidate` shrinks the subtree).
                        let mut gone: Vec<u64> = self
                            .entries
                            .remove(&(*parent, name.clone()))
                            .into_iter()
                            .collect();
                        while let Some(dir) = gone.pop() {
                            let below: Vec<(u64, String)> = self
                                .entries
                                .keys()
                                .filter(|(p, _)| *p == dir)
                                .cloned()
                                .collect();
                            for key in below {
                                gone.extend(self.entries.remove(&key));
                            }
                            self.negative.retain(|(p, _)| *p != dir);
                        }
                    }
                }
            }
        }

        /// Panics where what is still cached disagrees with `tree`.
        fn agrees_with(&self, tree: &Tree) {
            for ((parent, name), ino) in &self.entries {
                let now = tree.lookup(*parent, name).map(|n| n.ino());
                assert_eq!(now, Some(*ino), "stale entry {parent}/{name}");
            }
            for (parent, name) in &self.negative {
                assert!(
                    tree.lookup(*parent, name).is_none(),
                    "stale negative entry {parent}/{name}"
                );
            }
            let now = describe(tree);
            let attrs: BTreeMap<u64, &String> = now.values().map(|(i, w)| (*i, w)).collect();
            for (ino, what) in &self.attrs {
                if let Some(current) = attrs.get(ino) {
                    assert_eq!(*current, what, "stale attributes of {ino}");
                }
            }
            for (ino, names) in &self.listings {
                if let Some(NodeKind::Dir(children)) = tree.get(*ino).map(|n| n.kind()) {
                    let current: Vec<&str> = children.iter().map(|c| c.name()).collect();
                    assert_eq!(&current, names, "stale listing of {ino}");
                }
            }
        }
    }

    fn run(batches: Vec<Vec<Edit>>) {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let layout = Layout::default();
        // As the daemon does: a whole build loads the whole book, an update
        // reads what it asks for.
        let whole_build = |records: &[FileRecord], now| {
            let mut book = InodeBook::load(&store).unwrap();
            let tree = build_at(records, &rank, &layout, &mut book, now);
            book.save(&store).unwrap();
            tree
        };
        let mut index = Index::new();
        let mut tree = whole_build(&[], 1);
        for (step, batch) in batches.into_iter().enumerate() {
            let now = 1000 + step as u64;
            let mut changed = Vec::new();
            for edit in &batch {
                match edit {
                    Edit::Put { .. } => {
                        let new = record(edit).unwrap();
                        let key = (new.origin.clone(), new.path.clone());
                        changed.extend(index.insert(key, new.clone()));
                        changed.push(new);
                    }
                    Edit::Remove(n) if !index.is_empty() => {
                        let key = index.keys().nth(n % index.len()).unwrap().clone();
                        changed.extend(index.remove(&key));
                    }
                    Edit::Remove(_) => {}
                    Edit::DropOrigin(o) => {
                        let gone: Vec<_> = index
                            .keys()
                            .filter(|(origin, _)| origin == ORIGINS[*o])
                            .cloned()
                            .collect();
                        for key in gone {
                            changed.extend(index.remove(&key));
                        }
                    }
                }
            }
            let all: Vec<FileRecord> = index.values().cloned().collect();
            let mut book = InodeBook::lazy(&store).unwrap();
            let updated = update(
                &tree,
                &changed,
                &InMemory(&index),
                &rank,
                &layout,
                &mut book,
                now,
            )
            .unwrap();
            book.save(&store).unwrap();
            let Some(Updated { tree: new, folders }) = updated else {
                // Declined (a file hid a folder): built whole, as the daemon does.
                tree = whole_build(&all, now);
                continue;
            };
            assert!(
                new.check(),
                "step {step}: the updated tree keeps its invariants"
            );
            let whole = whole_build(&all, now + 1_000_000);
            let (got, want) = (describe(&new), describe(&whole));
            assert_eq!(got, want, "step {step}: {batch:?}");
            assert_eq!(
                (new.file_count(), new.node_count()),
                (whole.file_count(), whole.node_count())
            );
            // Paths that stayed kept their inode numbers.
            let before = describe(&tree);
            for (path, (ino, _)) in &before {
                if let Some((now_ino, _)) = got.get(path) {
                    assert_eq!(ino, now_ino, "{path} changed its inode");
                }
            }
            // What the update says changed is what a whole comparison finds,
            // and it leaves the kernel's caches agreeing with the new tree.
            let changes = invalidations_in(&tree, &new, &folders);
            assert_eq!(changes, invalidations(&tree, &new), "step {step}");
            let names: BTreeSet<String> = got
                .keys()
                .filter_map(|p| p.rsplit('/').next())
                .map(str::to_owned)
                .collect();
            let mut kernel = Kernel::caching(&tree, &names);
            kernel.forget(&changes);
            kernel.agrees_with(&new);
            tree = new;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn an_updated_tree_is_the_tree_built_whole(
            batches in prop::collection::vec(prop::collection::vec(edit(), 1..4), 1..12)
        ) {
            run(batches);
        }
    }

    /// Two tracks of the same name: the second is ` (2)`; when the first
    /// goes, it takes the plain name (a neighbour's name changes).
    #[test]
    fn a_suffix_follows_its_neighbour() {
        let put = |origin, file, title| Edit::Put {
            origin,
            dir: 0,
            file,
            size: 10,
            tags: (0, 0, title),
            cover: false,
            unseen: false,
        };
        run(vec![
            vec![put(0, 0, 0), put(0, 1, 0)],
            vec![Edit::Remove(0)],
            vec![put(1, 1, 0), put(0, 2, 1)],
            vec![Edit::DropOrigin(0)],
        ]);
    }
}
