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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use super::index::{FileRecord, FileRole};
use super::inode_book::{listing_sig, InodeBook};
use super::layout::{safe_name, with_suffix, Layout};
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

/// Groups records with the same path and size into replicas, best origin first.
fn group<'a>(
    records: &[&'a FileRecord],
    rank: &dyn Fn(&str) -> (i64, String),
) -> Vec<Vec<&'a FileRecord>> {
    let mut groups: BTreeMap<(&str, u64), Vec<&FileRecord>> = BTreeMap::new();
    for record in records {
        groups
            .entry((record.path.as_str(), record.size))
            .or_default()
            .push(record);
    }
    groups
        .into_values()
        .map(|mut g| {
            g.sort_by_key(|r| rank(&r.origin));
            g
        })
        .collect()
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
    let mut drafts = Drafts::default();
    for (segments, group) in place_files(records, rank, layout) {
        drafts.add(&segments, group, book);
    }
    drafts.freeze(book, now)
}

/// Every file's virtual path (segments) and replicas, in path order.
pub(super) fn place_files<'a>(
    records: &'a [FileRecord],
    rank: &dyn Fn(&str) -> (i64, String),
    layout: &Layout,
) -> BTreeMap<Vec<String>, Vec<&'a FileRecord>> {
    let audio: Vec<&FileRecord> = records
        .iter()
        .filter(|r| r.role == FileRole::Audio)
        .collect();
    let covers: Vec<&FileRecord> = records
        .iter()
        .filter(|r| r.role == FileRole::Cover)
        .collect();

    // Virtual path (segments) → the tracks that want it.
    let mut wanted: BTreeMap<Vec<String>, Vec<Vec<&FileRecord>>> = BTreeMap::new();
    for group in group(&audio, rank) {
        // Tracks whose tags were never read (their origin failed) wait: shown now,
        // they would move once the tags are read.
        if !group.iter().any(|r| r.tags_known()) {
            continue;
        }
        let tagged = group
            .iter()
            .find(|r| r.problem.is_none())
            .or_else(|| group.iter().find(|r| r.tags_known()))
            .unwrap_or(&group[0]);
        let segments = layout.render(&tagged.tags, file_name(&tagged.path));
        wanted.entry(segments).or_default().push(group);
    }

    let mut files: BTreeMap<Vec<String>, Vec<&FileRecord>> = BTreeMap::new();
    // (origin, source folder) → album folders of the tracks found there.
    let mut album_dirs: HashMap<(&str, &str), HashSet<Vec<String>>> = HashMap::new();
    for (segments, mut tracks) in wanted {
        tracks.sort_by_key(|g| (rank(&g[0].origin), g[0].path.clone()));
        for (i, group) in tracks.into_iter().enumerate() {
            let mut path = segments.clone();
            if i > 0 {
                let last = path.len() - 1;
                let mut n = i + 1;
                path[last] = with_suffix(&segments[last], n);
                while files.contains_key(&path) {
                    n += 1;
                    path[last] = with_suffix(&segments[last], n);
                }
            }
            for record in &group {
                album_dirs
                    .entry((record.origin.as_str(), parent_dir(&record.path)))
                    .or_default()
                    .insert(path[..path.len() - 1].to_vec());
            }
            files.insert(path, group);
        }
    }
    for group in group(&covers, rank) {
        let first = group[0];
        let Some(dirs) = album_dirs.get(&(first.origin.as_str(), parent_dir(&first.path))) else {
            continue;
        };
        let name = safe_name(file_name(&first.path), "cover");
        for dir in dirs {
            let mut path = dir.clone();
            path.push(name.clone());
            files.entry(path).or_insert_with(|| group.clone());
        }
    }
    files
}

/// A node before the tree is laid out.
struct Draft<'a> {
    ino: u64,
    parent: usize,
    name: String,
    body: DraftBody<'a>,
}

enum DraftBody<'a> {
    /// A folder: its path and its children (drafts), in name order.
    Dir {
        path: String,
        children: Vec<usize>,
    },
    File(Vec<&'a FileRecord>),
}

/// The tree as files are added in path order: the folders of the last path
/// added stay open, so each file costs only the folders it does not share
/// with the one before.
struct Drafts<'a> {
    nodes: Vec<Draft<'a>>,
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
            name: String::new(),
            body: DraftBody::Dir {
                path: String::new(),
                children: Vec::new(),
            },
        };
        Drafts {
            nodes: vec![root],
            open: Vec::new(),
            hidden: 0,
        }
    }
}

impl<'a> Drafts<'a> {
    fn dir_path(&self, at: usize) -> &str {
        match &self.nodes[at].body {
            DraftBody::Dir { path, .. } => path,
            DraftBody::File(_) => unreachable!("only folders are opened"),
        }
    }

    /// Adds a child of `parent`; `None` if the name is taken.
    fn push(&mut self, parent: usize, name: &str, body: DraftBody<'a>, ino: u64) -> Option<usize> {
        let at = self.nodes.len();
        let DraftBody::Dir { children, .. } = &self.nodes[parent].body else {
            unreachable!("only folders are opened");
        };
        // Added in path order, a name already there is the last child.
        if children.last().is_some_and(|c| self.nodes[*c].name == name) {
            return None;
        }
        if let DraftBody::Dir { children, .. } = &mut self.nodes[parent].body {
            children.push(at);
        }
        self.nodes.push(Draft {
            ino,
            parent,
            name: name.to_owned(),
            body,
        });
        Some(at)
    }

    /// Adds the file at `segments` (after every path before it in order).
    fn add(&mut self, segments: &[String], replicas: Vec<&'a FileRecord>, book: &mut InodeBook) {
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
            let path = format!("{}/{segment}", self.dir_path(parent));
            let ino = book.ino(&path);
            let body = DraftBody::Dir {
                path,
                children: Vec::new(),
            };
            match self.push(parent, segment, body, ino) {
                Some(at) => self.open.push(at),
                None => {
                    // A file has this folder's name.
                    self.hidden += 1;
                    return;
                }
            }
        }
        let parent = self.open.last().copied().unwrap_or(0);
        let ino = book.ino(&format!("{}/{name}", self.dir_path(parent)));
        if self
            .push(parent, name, DraftBody::File(replicas), ino)
            .is_none()
        {
            self.hidden += 1;
        }
    }

    /// Lays the drafts out as a [`Tree`]; folders whose listing changed get
    /// mtime `now`.
    fn freeze(self, book: &mut InodeBook, now: u64) -> Tree {
        let mut origins: Vec<String> = Vec::new();
        let mut folders = Vec::new();
        for draft in &self.nodes {
            let DraftBody::Dir { path, children } = &draft.body else {
                continue;
            };
            let sig = listing_sig(children.iter().map(|c| self.nodes[*c].name.as_str()));
            let key = if path.is_empty() { "/" } else { path };
            let entries = children
                .iter()
                .map(|c| {
                    let child = &self.nodes[*c];
                    let file = match &child.body {
                        DraftBody::Dir { .. } => None,
                        DraftBody::File(group) => Some(file_draft(group, &mut |o| match origins
                            .iter()
                            .position(|known| known == o)
                        {
                            Some(at) => at as u32,
                            None => {
                                origins.push(o.to_owned());
                                origins.len() as u32 - 1
                            }
                        })),
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
                parent: self.nodes[draft.parent].ino,
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
    group: &[&'a FileRecord],
    origin: &mut dyn FnMut(&str) -> u32,
) -> FileDraft<'a> {
    FileDraft {
        size: group[0].size,
        path: &group[0].path,
        replicas: group
            .iter()
            .map(|r| (origin(&r.origin), r.mtime_ns, r.version.as_deref()))
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
    fn a_folder_named_like_a_file_beside_it_is_left_out_and_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.redb")).unwrap();
        let mut book = InodeBook::load(&store).unwrap();
        let mut drafts = Drafts::default();
        let seg = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let file = record("a", "f.flac", "A", "B", "C");
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
