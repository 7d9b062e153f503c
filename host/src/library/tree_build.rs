//! Building the tree from the index's records.
//!
//! - Files with the same relative path and size on several origins are one track
//!   with several replicas, best origin (lowest priority number) first.
//! - Each track's path comes from the layout; two different tracks that land on the
//!   same path get ` (2)`, ` (3)`… in a deterministic order (origin, then path).
//! - Cover images go into the album folders of the tracks found beside them.
//! - A path that would go through a file (a folder named like a file beside it)
//!   is left out: the file, first in name order, stays.
//! - Inode numbers are kept per virtual path ([`InodeBook`]), and a directory
//!   keeps its mtime until its listing changes: a music server rescans only what
//!   changed, and a restart shows the same inodes and mtimes.
//!
//! The build works on [`Placed`] records (see there for their memory), and
//! borrows from them: a path's segments are slices of the rendered path, and
//! only a name given a ` (n)` suffix is a string of its own.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use super::index::{FileRecord, FileRole};
use super::inode_book::{listing_sig, InodeBook};
use super::layout::{safe_name, with_suffix, Layout};
use super::placed::{Origins, Placed};
use super::tree::{EntryDraft, FileDraft, Folder, FolderDraft, Tree, ROOT};

pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(super) fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

pub(super) fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// A path in the tree, by segments, borrowed where it can be.
pub(super) type Segments<'a> = Vec<Cow<'a, str>>;

/// Groups records with the same path and size into replicas, best origin first.
fn group<'a>(
    mut records: Vec<&'a Placed>,
    rank: &dyn Fn(&str) -> (i64, String),
) -> Vec<Vec<&'a Placed>> {
    records.sort_unstable_by(|a, b| (a.path(), a.size).cmp(&(b.path(), b.size)));
    let mut groups: Vec<Vec<&Placed>> = Vec::new();
    for record in records {
        match groups.last_mut() {
            Some(last) if last[0].path() == record.path() && last[0].size == record.size => {
                last.push(record)
            }
            _ => groups.push(vec![record]),
        }
    }
    for g in &mut groups {
        if g.len() > 1 {
            g.sort_by_key(|r| rank(&r.origin));
        }
    }
    groups
}

/// Builds the tree from every record; `rank` orders origins (priority, id).
pub fn build(
    records: &[FileRecord],
    rank: &dyn Fn(&str) -> (i64, String),
    layout: &Layout,
    book: &mut InodeBook,
) -> Tree {
    build_at(records, rank, layout, book, now_ns())
}

/// [`build`], folders whose listing changed getting mtime `now`.
pub(super) fn build_at(
    records: &[FileRecord],
    rank: &dyn Fn(&str) -> (i64, String),
    layout: &Layout,
    book: &mut InodeBook,
    now: u64,
) -> Tree {
    let mut origins = Origins::default();
    let placed: Vec<Placed> = records
        .iter()
        .map(|r| Placed::new(r, layout, origins.name(&r.origin)))
        .collect();
    build_placed_at(&placed, rank, book, now)
}

/// Builds the tree from every record, placed; `rank` orders origins.
pub fn build_placed(
    records: &[Placed],
    rank: &dyn Fn(&str) -> (i64, String),
    book: &mut InodeBook,
) -> Tree {
    build_placed_at(records, rank, book, now_ns())
}

fn build_placed_at(
    records: &[Placed],
    rank: &dyn Fn(&str) -> (i64, String),
    book: &mut InodeBook,
    now: u64,
) -> Tree {
    let mut drafts = Drafts::default();
    for (segments, group) in place_files(records, rank) {
        drafts.add(&segments, group, book);
    }
    drafts.freeze(book, now)
}

/// Every file's virtual path (segments) and replicas, in path order.
pub(super) fn place_files<'a>(
    records: &'a [Placed],
    rank: &dyn Fn(&str) -> (i64, String),
) -> Vec<(Segments<'a>, Vec<&'a Placed>)> {
    let audio: Vec<&Placed> = records
        .iter()
        .filter(|r| r.role == FileRole::Audio)
        .collect();
    let covers: Vec<&Placed> = records
        .iter()
        .filter(|r| r.role == FileRole::Cover)
        .collect();

    // The tracks, each at the path it wants, in path order.
    let mut wanted: Vec<(Segments<'a>, Vec<&Placed>)> = Vec::new();
    for group in group(audio, rank) {
        // Tracks whose tags were never read (their origin failed) wait: shown now,
        // they would move once the tags are read.
        if !group.iter().any(|r| r.tags_known) {
            continue;
        }
        let tagged: &'a Placed = group
            .iter()
            .find(|r| r.clean)
            .or_else(|| group.iter().find(|r| r.tags_known))
            .unwrap_or(&group[0]);
        wanted.push((tagged.segments().map(Cow::Borrowed).collect(), group));
    }
    wanted.sort_by(|a, b| a.0.cmp(&b.0));

    // Suffixed paths given so far: a suffix must not take a path wanted or given.
    let mut given: HashSet<Segments<'a>> = HashSet::new();
    let is_wanted = |path: &Segments<'a>, wanted: &[(Segments<'a>, Vec<&Placed>)]| {
        wanted.binary_search_by(|w| w.0.cmp(path)).is_ok()
    };
    let mut files: Vec<(Segments<'a>, Vec<&'a Placed>)> = Vec::with_capacity(wanted.len());
    // (origin, source folder) → album folders of the tracks found there.
    let mut album_dirs: HashMap<(&str, &str), HashSet<Segments<'a>>> = HashMap::new();
    let mut at = 0;
    while at < wanted.len() {
        let end = at
            + wanted[at..]
                .iter()
                .take_while(|w| w.0 == wanted[at].0)
                .count();
        let mut tracks: Vec<Vec<&Placed>> = wanted[at..end]
            .iter_mut()
            .map(|w| std::mem::take(&mut w.1))
            .collect();
        let segments = wanted[at].0.clone();
        if tracks.len() > 1 {
            tracks.sort_by_cached_key(|g| (rank(&g[0].origin), g[0].path().to_owned()));
        }
        for (i, group) in tracks.into_iter().enumerate() {
            let mut path = segments.clone();
            if i > 0 {
                let last = path.len() - 1;
                let mut n = i + 1;
                path[last] = Cow::Owned(with_suffix(&segments[last], n));
                while is_wanted(&path, &wanted) || given.contains(&path) {
                    n += 1;
                    path[last] = Cow::Owned(with_suffix(&segments[last], n));
                }
                given.insert(path.clone());
            }
            for &record in &group {
                album_dirs
                    .entry((&*record.origin, parent_dir(record.path())))
                    .or_default()
                    .insert(path[..path.len() - 1].to_vec());
            }
            files.push((path, group));
        }
        at = end;
    }
    drop(given);
    // Covers, where no track is.
    let mut placed_covers: Vec<(Segments<'a>, Vec<&'a Placed>)> = Vec::new();
    for group in group(covers, rank) {
        let first = group[0];
        let Some(dirs) = album_dirs.get(&(&*first.origin, parent_dir(first.path()))) else {
            continue;
        };
        let name: Cow<'a, str> = Cow::Owned(safe_name(file_name(first.path()), "cover"));
        for dir in dirs {
            let mut path = dir.clone();
            path.push(name.clone());
            placed_covers.push((path, group.clone()));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    // A suffixed path may have landed behind others of its folder, and the
    // first cover for a path wins over a track's only if no track has it.
    placed_covers.sort_by(|a, b| a.0.cmp(&b.0));
    placed_covers.dedup_by(|later, first| later.0 == first.0);
    placed_covers.retain(|c| files.binary_search_by(|f| f.0.cmp(&c.0)).is_err());
    if !placed_covers.is_empty() {
        files.extend(placed_covers);
        files.sort_by(|a, b| a.0.cmp(&b.0));
    }
    files
}

/// A node before the tree is laid out: 56 bytes, since a whole build holds
/// one for every file of the library (a folder's parts are boxed, and a
/// file's replicas are a range of [`Drafts::replicas`], not a vector each).
struct Draft<'a> {
    ino: u64,
    parent: u32,
    name: Cow<'a, str>,
    body: DraftBody,
}

enum DraftBody {
    Dir(Box<DirDraft>),
    /// A file: `len` replicas from `start` in [`Drafts::replicas`].
    File {
        start: u32,
        len: u32,
    },
}

/// A folder: its path and its children (drafts), in name order.
struct DirDraft {
    path: String,
    children: Vec<u32>,
}

/// The tree as files are added in path order: the folders of the last path
/// added stay open, so each file costs only the folders it does not share
/// with the one before.
struct Drafts<'a> {
    nodes: Vec<Draft<'a>>,
    /// Every file's replicas, best first, one file after another.
    replicas: Vec<&'a Placed>,
    /// The open folders below the root, outermost first.
    open: Vec<usize>,
    /// Paths left out because a file has the name of a folder on them.
    hidden: u32,
}

impl Default for Drafts<'_> {
    fn default() -> Self {
        let root = Draft {
            ino: ROOT,
            parent: 0,
            name: Cow::Borrowed(""),
            body: DraftBody::Dir(Box::new(DirDraft {
                path: String::new(),
                children: Vec::new(),
            })),
        };
        Drafts {
            nodes: vec![root],
            replicas: Vec::new(),
            open: Vec::new(),
            hidden: 0,
        }
    }
}

impl<'a> Drafts<'a> {
    fn dir(&self, at: usize) -> &DirDraft {
        match &self.nodes[at].body {
            DraftBody::Dir(dir) => dir,
            DraftBody::File { .. } => unreachable!("only folders are opened"),
        }
    }

    /// Adds a child of `parent`; `None` if the name is taken.
    fn push(
        &mut self,
        parent: usize,
        name: Cow<'a, str>,
        body: DraftBody,
        ino: u64,
    ) -> Option<usize> {
        let at = self.nodes.len();
        // Added in path order, a name already there is the last child.
        let children = &self.dir(parent).children;
        if children
            .last()
            .is_some_and(|c| self.nodes[*c as usize].name == name)
        {
            return None;
        }
        if let DraftBody::Dir(dir) = &mut self.nodes[parent].body {
            dir.children.push(at as u32);
        }
        self.nodes.push(Draft {
            ino,
            parent: parent as u32,
            name,
            body,
        });
        Some(at)
    }

    /// Adds the file at `segments` (after every path before it in order).
    fn add(&mut self, segments: &[Cow<'a, str>], replicas: Vec<&'a Placed>, book: &mut InodeBook) {
        let Some((name, dirs)) = segments.split_last() else {
            return;
        };
        let shared = self
            .open
            .iter()
            .zip(dirs)
            .take_while(|(at, segment)| self.nodes[**at].name == **segment)
            .count();
        self.open.truncate(shared);
        for segment in &dirs[shared..] {
            let parent = self.open.last().copied().unwrap_or(0);
            let path = format!("{}/{segment}", self.dir(parent).path);
            let ino = book.ino(&path);
            let body = DraftBody::Dir(Box::new(DirDraft {
                path,
                children: Vec::new(),
            }));
            match self.push(parent, segment.clone(), body, ino) {
                Some(at) => self.open.push(at),
                None => {
                    // A file has this folder's name.
                    self.hidden += 1;
                    return;
                }
            }
        }
        let parent = self.open.last().copied().unwrap_or(0);
        let ino = book.ino(&format!("{}/{name}", self.dir(parent).path));
        let body = DraftBody::File {
            start: self.replicas.len() as u32,
            len: replicas.len() as u32,
        };
        match self.push(parent, name.clone(), body, ino) {
            Some(_) => self.replicas.extend(replicas),
            None => self.hidden += 1,
        }
    }

    /// Lays the drafts out as a [`Tree`]; folders whose listing changed get
    /// mtime `now`.
    fn freeze(self, book: &mut InodeBook, now: u64) -> Tree {
        let mut origins: Vec<String> = Vec::new();
        let mut folders = Vec::new();
        for draft in &self.nodes {
            let DraftBody::Dir(dir) = &draft.body else {
                continue;
            };
            let children = || dir.children.iter().map(|c| &self.nodes[*c as usize]);
            let sig = listing_sig(children().map(|child| &*child.name));
            let key = if dir.path.is_empty() { "/" } else { &dir.path };
            let entries = children()
                .map(|child| {
                    let file = match child.body {
                        DraftBody::Dir(_) => None,
                        DraftBody::File { start, len } => {
                            let group = &self.replicas[start as usize..(start + len) as usize];
                            Some(file_draft(group, &mut |o| match origins
                                .iter()
                                .position(|known| known == o)
                            {
                                Some(at) => at as u32,
                                None => {
                                    origins.push(o.to_owned());
                                    origins.len() as u32 - 1
                                }
                            }))
                        }
                    };
                    EntryDraft {
                        name: &child.name,
                        ino: child.ino,
                        file,
                    }
                })
                .collect();
            folders.push(Folder::lay_out(&FolderDraft {
                ino: draft.ino,
                parent: self.nodes[draft.parent as usize].ino,
                mtime_ns: book.dir_mtime(key, sig, now),
                name: &draft.name,
                entries,
            }));
        }
        folders.sort_unstable_by_key(|f| f.ino);
        Tree::from_folders(folders, origins, self.hidden)
    }
}

/// A file's draft from its replicas (best first), `origin` giving each
/// origin's place in the tree's list.
pub(super) fn file_draft<'a>(
    group: &[&'a Placed],
    origin: &mut dyn FnMut(&str) -> u32,
) -> FileDraft<'a> {
    FileDraft {
        size: group[0].size,
        path: group[0].path(),
        replicas: group
            .iter()
            .map(|r| (origin(&r.origin), r.mtime_ns, r.version()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::tree::NodeKind;
    use crate::store::Store;

    fn record(origin: &str, path: &str, artist: &str, album: &str, title: &str) -> FileRecord {
        FileRecord {
            mtime_ns: 5,
            version: Some(format!("v-{path}")),
            ..FileRecord::tagged(origin, path, 10, (artist, album, title))
        }
    }

    fn built(records: &[FileRecord]) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let mut book = InodeBook::load(&store).unwrap();
        build(
            records,
            &|o: &str| (1, o.to_owned()),
            &Layout::default(),
            &mut book,
        )
    }

    /// Every path below `ino`, found by walking listings and looked up again by
    /// name, so that listing and lookup agree.
    fn walk(tree: &Tree, ino: u64, out: &mut Vec<String>) {
        let NodeKind::Dir(children) = tree.get(ino).unwrap().kind() else {
            return out.push(tree.path_of(ino));
        };
        let names: Vec<&str> = children.iter().map(|c| c.name()).collect();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "{names:?} in name order"
        );
        for child in children.iter() {
            assert_eq!(child.parent(), ino);
            assert_eq!(tree.lookup(ino, child.name()).unwrap().ino(), child.ino());
            walk(tree, child.ino(), out);
        }
    }

    #[test]
    fn listings_lookups_and_replicas_agree_in_the_flat_layout() {
        let records = [
            record("b", "x/1.flac", "Beta", "One", "Song"),
            record("a", "x/1.flac", "Beta", "One", "Song"),
            record("a", "x/2.flac", "Beta", "One", "Song"),
            record("a", "y/3.flac", "Beta", "One (2)", "Z"),
            record("a", "y/4.flac", "alpha", "Ä", "é"),
            record("a", "y/5.flac", "B", "A", "T"),
        ];
        let tree = built(&records);
        assert!(tree.check());
        let mut paths = Vec::new();
        walk(&tree, ROOT, &mut paths);
        paths.sort();
        assert_eq!(
            paths,
            [
                "/B/A/T.flac",
                "/Beta/One (2)/Z.flac",
                "/Beta/One/Song (2).flac",
                "/Beta/One/Song.flac",
                "/alpha/Ä/é.flac",
            ]
        );
        assert_eq!(tree.file_count(), 5);
        let song = tree
            .lookup(
                tree.lookup(tree.lookup(ROOT, "Beta").unwrap().ino(), "One")
                    .unwrap()
                    .ino(),
                "Song.flac",
            )
            .unwrap();
        let replicas = song.file().unwrap().replicas();
        let origins: Vec<&str> = replicas.iter().map(|r| r.origin.as_str()).collect();
        assert_eq!(origins, ["a", "b"], "best origin first");
        assert!(replicas.iter().all(|r| r.path == "x/1.flac"
            && r.size == 10
            && r.mtime_ns == 5
            && r.version.as_deref() == Some("v-x/1.flac")));
        assert_eq!(tree.files_per_origin()["a"], 5);
        assert_eq!(tree.files_per_origin()["b"], 1);
        assert!(tree.lookup(ROOT, "Bet").is_none());
        assert!(
            tree.lookup(song.ino(), "x").is_none(),
            "a file has no children"
        );
    }

    #[test]
    fn a_draft_is_small() {
        assert!(std::mem::size_of::<Draft>() <= 56);
    }

    #[test]
    fn a_folder_named_like_a_file_beside_it_is_left_out_and_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let mut book = InodeBook::load(&store).unwrap();
        let mut drafts = Drafts::default();
        let seg = |s: &[&'static str]| s.iter().map(|s| Cow::Borrowed(*s)).collect::<Vec<_>>();
        let file = Placed::of(&record("a", "f.flac", "A", "B", "C"), &Layout::default());
        drafts.add(&seg(&["A", "x.flac"]), vec![&file], &mut book);
        drafts.add(&seg(&["A", "x.flac", "y.flac"]), vec![&file], &mut book);
        drafts.add(&seg(&["A", "z.flac"]), vec![&file], &mut book);
        let tree = drafts.freeze(&mut book, 1);
        assert!(tree.check());
        let mut paths = Vec::new();
        walk(&tree, ROOT, &mut paths);
        assert_eq!(paths, ["/A/x.flac", "/A/z.flac"]);
    }

    #[test]
    fn a_large_tree_is_checked_in_two_halves_and_either_can_fail_it() {
        let records: Vec<FileRecord> = (0..5_000)
            .map(|i| {
                let (artist, album) = (format!("A{}", i / 50), format!("B{i}"));
                record("a", &format!("x/{i}.flac"), &artist, &album, "T")
            })
            .collect();
        let good = built(&records);
        assert!(good.all_folders().count() > 5_000);
        assert!(good.check());
        let folders: Vec<Folder> = good.all_folders().cloned().collect();
        for at in [1, folders.len() - 1] {
            let mut broken = folders.clone();
            broken[at].parent = u64::MAX;
            let tree = Tree::from_folders(broken, good.origins.to_vec(), 0);
            assert!(!tree.check(), "folder {at} of {} broken", folders.len());
        }
    }

    #[test]
    fn a_tree_that_breaks_the_layout_fails_its_check() {
        let good = built(&[record("a", "x/1.flac", "A", "B", "C")]);
        assert!(good.check());
        let folders: Vec<Folder> = good.all_folders().cloned().collect();
        let broken = |change: &dyn Fn(&mut Vec<Folder>)| {
            let mut folders = folders.clone();
            change(&mut folders);
            Tree::from_folders(folders, good.origins.to_vec(), 0).check()
        };
        assert!(
            !broken(&|f| f[0].entries[0].ino = u64::MAX),
            "a child out of range"
        );
        assert!(!broken(&|f| f[1].parent = 99), "a folder not in its parent");
        assert!(
            !broken(&|f| f[2].replicas = Box::new([])),
            "a file without replicas"
        );
        assert!(!broken(&|f| f[0].text = "".into()), "a name past the text");
        assert!(
            !broken(&|f| {
                f.remove(1);
            }),
            "a listed folder missing"
        );
    }
}
