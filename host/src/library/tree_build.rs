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
use super::tree::{Body, Span, StoredFile, StoredNode, StoredReplica, Tree, ROOT};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn file_name(path: &str) -> &str {
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
    let mut drafts = Drafts::default();
    for (segments, group) in place_files(records, rank, layout) {
        drafts.add(&segments, group, book);
    }
    drafts.freeze(book, now_ns())
}

/// Every file's virtual path (segments) and replicas, in path order.
fn place_files<'a>(
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
                None => return, // a file has this folder's name
            }
        }
        let parent = self.open.last().copied().unwrap_or(0);
        let ino = book.ino(&format!("{}/{name}", self.dir_path(parent)));
        self.push(parent, name, DraftBody::File(replicas), ino);
    }

    /// Lays the drafts out as a [`Tree`]; folders whose listing changed get
    /// mtime `now`.
    fn freeze(self, book: &mut InodeBook, now: u64) -> Tree {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_unstable_by_key(|at| self.nodes[*at].ino);
        let mut place = vec![0u32; self.nodes.len()];
        for (i, at) in order.iter().enumerate() {
            place[*at] = i as u32;
        }
        let mut tree = Tree::default();
        let mut origins: HashMap<&str, u32> = HashMap::new();
        for at in order {
            let draft = &self.nodes[at];
            let name = tree.push_text(&draft.name);
            let (body, mtime_ns) = match &draft.body {
                DraftBody::Dir { path, children } => {
                    let sig = listing_sig(children.iter().map(|c| self.nodes[*c].name.as_str()));
                    let key = if path.is_empty() { "/" } else { path };
                    let mtime_ns = book.dir_mtime(key, sig, now);
                    let start = tree.children.len() as u32;
                    tree.children.extend(children.iter().map(|c| place[*c]));
                    let span = Span {
                        start,
                        len: children.len() as u32,
                    };
                    (Body::Dir(span), mtime_ns)
                }
                DraftBody::File(group) => {
                    let first = group[0];
                    let start = tree.replicas.len() as u32;
                    for record in group {
                        let next = origins.len() as u32;
                        let origin = *origins.entry(record.origin.as_str()).or_insert(next);
                        if origin == next {
                            tree.origins.push(record.origin.clone());
                        }
                        let version = record.version.as_deref().map(|v| tree.push_text(v));
                        tree.replicas.push(StoredReplica {
                            mtime_ns: record.mtime_ns,
                            origin,
                            version,
                        });
                    }
                    let path = tree.push_text(&first.path);
                    tree.files.push(StoredFile {
                        size: first.size,
                        path,
                        replicas: Span {
                            start,
                            len: group.len() as u32,
                        },
                    });
                    (Body::File(tree.files.len() as u32 - 1), first.mtime_ns)
                }
            };
            tree.nodes.push(StoredNode {
                ino: draft.ino,
                mtime_ns,
                parent: place[draft.parent],
                name,
                body,
            });
        }
        tree
    }
}

impl Tree {
    fn push_text(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
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
        let mut bad = good.clone();
        bad.children.push(u32::MAX);
        assert!(!bad.check(), "a child out of range");
        let mut bad = good.clone();
        bad.nodes.swap(1, 2);
        assert!(!bad.check(), "nodes out of inode order");
        let mut bad = good.clone();
        bad.files[0].replicas.len = 0;
        assert!(!bad.check(), "a file without replicas");
        let mut bad = good;
        bad.text.truncate(1);
        assert!(!bad.check(), "a name past the text");
    }
}
