//! The virtual tree the mount shows, one value per folder: built whole from
//! the index ([`super::tree_build`]) at a scan or a start, changed one folder
//! at a time by a change batch ([`super::tree_update`]), never changed in
//! place (a change makes a new `Tree` that shares every folder it did not
//! touch, so a reader's snapshot stays as it was).
//!
//! Memory is the other constraint: this is the one structure that grows with
//! the library and stays in memory.
//!
//! - A [`Folder`] holds its own listing, laid out flat: its entries in one
//!   slice ordered by name (a lookup by name is a binary search), every name,
//!   source path and version token a span of one string, its files' replicas
//!   in one slice. A replica keeps only its origin (a number into the tree's
//!   origin list), mtime and version: replicas share the file's source path
//!   and size (that is what makes them replicas).
//! - Folders are found by inode, and files' folders by the file's inode, in
//!   two [`Layered`] maps: a sorted vector from the last whole build (16 bytes
//!   a file) under the persistent map of what changed since.
//! - A folder's own mtime lives in the folder; its name and inode are also its
//!   entry in its parent's listing. A change to an album replaces that album's
//!   folder, and its parent's only when the parent's listing changed.
//!
//! [`Tree::check`] verifies the invariants for a tree read back from disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::layered::Layered;

/// The root directory's inode.
pub const ROOT: u64 = 1;

pub use crate::values::Replica;

/// A stretch of a folder's text or replica slice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }

    fn fits(self, len: usize) -> bool {
        (self.start as usize)
            .checked_add(self.len as usize)
            .is_some_and(|end| end <= len)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Body {
    /// A folder: its listing is its own [`Folder`].
    Dir,
    /// A file: its size, its path on its origins, and its replicas (a span of
    /// the folder's, best first, never empty).
    File {
        size: u64,
        path: Span,
        replicas: Span,
    },
}

/// One name in a folder's listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub ino: u64,
    pub name: Span,
    pub body: Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StoredReplica {
    pub mtime_ns: u64,
    /// Its place in [`Tree::origins`].
    pub origin: u32,
    pub version: Option<Span>,
}

/// One folder: its listing, its files, their text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Folder {
    pub ino: u64,
    /// The parent folder's inode (the root is its own parent).
    pub parent: u64,
    pub mtime_ns: u64,
    pub name: Span,
    /// In name order (byte order, as `str` compares).
    pub entries: Box<[Entry]>,
    /// Places in `entries`, in inode order.
    pub by_ino: Box<[u32]>,
    pub replicas: Box<[StoredReplica]>,
    pub text: Box<str>,
}

/// A folder as built, before it is laid out.
pub(super) struct FolderDraft<'a> {
    pub ino: u64,
    pub parent: u64,
    pub mtime_ns: u64,
    pub name: &'a str,
    /// In name order, no name twice.
    pub entries: Vec<EntryDraft<'a>>,
}

pub(super) struct EntryDraft<'a> {
    pub name: &'a str,
    pub ino: u64,
    /// `None` for a folder.
    pub file: Option<FileDraft<'a>>,
}

pub(super) struct FileDraft<'a> {
    pub size: u64,
    pub path: &'a str,
    /// Best first: origin (a place in [`Tree::origins`]), mtime, version.
    pub replicas: Vec<(u32, u64, Option<&'a str>)>,
}

impl Folder {
    /// Lays `draft` out.
    pub(super) fn lay_out(draft: &FolderDraft<'_>) -> Folder {
        let mut text = String::new();
        let mut push = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            Span {
                start,
                len: s.len() as u32,
            }
        };
        let name = push(draft.name);
        let mut replicas = Vec::new();
        let mut entries = Vec::with_capacity(draft.entries.len());
        for entry in &draft.entries {
            let name = push(entry.name);
            let body = match &entry.file {
                None => Body::Dir,
                Some(file) => {
                    let start = replicas.len() as u32;
                    for (origin, mtime_ns, version) in &file.replicas {
                        replicas.push(StoredReplica {
                            mtime_ns: *mtime_ns,
                            origin: *origin,
                            version: version.map(&mut push),
                        });
                    }
                    Body::File {
                        size: file.size,
                        path: push(file.path),
                        replicas: Span {
                            start,
                            len: file.replicas.len() as u32,
                        },
                    }
                }
            };
            entries.push(Entry {
                ino: entry.ino,
                name,
                body,
            });
        }
        let mut by_ino: Vec<u32> = (0..entries.len() as u32).collect();
        by_ino.sort_unstable_by_key(|at| entries[*at as usize].ino);
        Folder {
            ino: draft.ino,
            parent: draft.parent,
            mtime_ns: draft.mtime_ns,
            name,
            entries: entries.into(),
            by_ino: by_ino.into(),
            replicas: replicas.into(),
            text: text.into(),
        }
    }

    pub(super) fn str(&self, span: Span) -> &str {
        &self.text[span.range()]
    }

    fn entry_by_ino(&self, ino: u64) -> Option<&Entry> {
        let at = self
            .by_ino
            .binary_search_by_key(&ino, |at| self.entries[*at as usize].ino)
            .ok()?;
        Some(&self.entries[self.by_ino[at] as usize])
    }

    pub(super) fn entry_by_name(&self, name: &str) -> Option<&Entry> {
        let at = self
            .entries
            .binary_search_by(|e| self.str(e.name).cmp(name))
            .ok()?;
        Some(&self.entries[at])
    }

    /// The inodes of its files.
    pub(super) fn file_inos(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries
            .iter()
            .filter(|e| matches!(e.body, Body::File { .. }))
            .map(|e| e.ino)
    }

    /// Whether its invariants hold, `origins` long the tree's origin list.
    fn check(&self, origins: usize) -> bool {
        let text_ok = |s: Span| self.text.get(s.range()).is_some();
        // Spans not yet known to be in the text: read with `get`, never a
        // panic on a damaged snapshot.
        let name = |s: Span| self.text.get(s.range());
        let sorted = self
            .entries
            .windows(2)
            .all(|w| name(w[0].name) < name(w[1].name));
        let by_ino_ok = self.by_ino.len() == self.entries.len()
            && self
                .by_ino
                .iter()
                .all(|at| (*at as usize) < self.entries.len())
            && self
                .by_ino
                .windows(2)
                .all(|w| self.entries[w[0] as usize].ino < self.entries[w[1] as usize].ino);
        let entries_ok = self.entries.iter().all(|e| {
            text_ok(e.name)
                && match e.body {
                    Body::Dir => true,
                    Body::File { path, replicas, .. } => {
                        text_ok(path) && replicas.len > 0 && replicas.fits(self.replicas.len())
                    }
                }
        });
        let replicas_ok = self
            .replicas
            .iter()
            .all(|r| (r.origin as usize) < origins && r.version.is_none_or(text_ok));
        text_ok(self.name) && sorted && by_ino_ok && entries_ok && replicas_ok
    }
}

/// Each file's inode and its folder's, in file inode order.
fn file_folders(folders: &[Folder]) -> Vec<(u64, u64)> {
    let mut pairs: Vec<(u64, u64)> = folders
        .iter()
        .flat_map(|f| f.file_inos().map(move |ino| (ino, f.ino)))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// The whole tree.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub(super) folders: Layered<Arc<Folder>>,
    /// The folder of every file, by the file's inode.
    pub(super) file_folders: Layered<u64>,
    pub(super) origins: Arc<Vec<String>>,
    /// Files that hid a folder of the same name beside them (see
    /// [`super::tree_build`]): a tree with any is only built whole, since a
    /// change could bring back what is hidden.
    pub(super) hidden: u32,
}

/// One node of a tree.
#[derive(Clone, Copy)]
pub struct Node<'t> {
    tree: &'t Tree,
    at: At<'t>,
}

#[derive(Clone, Copy)]
enum At<'t> {
    Dir(&'t Folder),
    File(&'t Folder, &'t Entry),
}

/// What a node is.
pub enum NodeKind<'t> {
    Dir(Children<'t>),
    File(File<'t>),
}

/// A folder's children, in name order.
#[derive(Clone, Copy)]
pub struct Children<'t> {
    tree: &'t Tree,
    folder: &'t Folder,
}

/// A file of a tree.
#[derive(Clone, Copy)]
pub struct File<'t> {
    tree: &'t Tree,
    folder: &'t Folder,
    entry: &'t Entry,
}

impl Tree {
    /// A tree of `folders` (in inode order, the root first) naming `origins`.
    pub(super) fn from_folders(folders: Vec<Folder>, origins: Vec<String>, hidden: u32) -> Tree {
        let file_folders = file_folders(&folders);
        Tree::from_parts(folders, file_folders, origins, hidden)
    }

    fn from_parts(
        folders: Vec<Folder>,
        file_folders: Vec<(u64, u64)>,
        origins: Vec<String>,
        hidden: u32,
    ) -> Tree {
        let folders = folders.into_iter().map(|f| (f.ino, Arc::new(f))).collect();
        Tree {
            folders: Layered::from_sorted(folders),
            file_folders: Layered::from_sorted(file_folders),
            origins: Arc::new(origins),
            hidden,
        }
    }

    /// Like [`Tree::from_folders`], for folders read from disk: `None` unless
    /// they are in inode order, each once, and no file is in two.
    pub(super) fn from_stored(folders: Vec<Folder>, origins: Vec<String>) -> Option<Tree> {
        let in_order = folders.windows(2).all(|w| w[0].ino < w[1].ino);
        // A file in two folders is refused (`check` counts on it).
        let files = file_folders(&folders);
        let once = files.windows(2).all(|w| w[0].0 < w[1].0);
        (in_order && once).then(|| Tree::from_parts(folders, files, origins, 0))
    }

    /// The place of `origin` in the origin list, added if it is not there.
    pub(super) fn origin_place(&mut self, origin: &str) -> u32 {
        match self.origins.iter().position(|o| o == origin) {
            Some(at) => at as u32,
            None => {
                Arc::make_mut(&mut self.origins).push(origin.to_owned());
                self.origins.len() as u32 - 1
            }
        }
    }

    /// Puts `folder` in place of the folder with its inode, if any.
    pub(super) fn put_folder(&mut self, folder: Folder) {
        let ino = folder.ino;
        if let Some(old) = self.folders.get(ino).cloned() {
            let staying: std::collections::HashSet<u64> = folder.file_inos().collect();
            for gone in old.file_inos().filter(|i| !staying.contains(i)) {
                self.file_folders.remove(gone);
            }
        }
        for file in folder.file_inos() {
            if self.file_folders.get(file) != Some(&ino) {
                self.file_folders.insert(file, ino);
            }
        }
        self.folders.insert(ino, Arc::new(folder));
    }

    /// Takes the folder `ino` and its files out (not its subfolders).
    pub(super) fn drop_folder(&mut self, ino: u64) {
        if let Some(old) = self.folders.get(ino).cloned() {
            for file in old.file_inos() {
                self.file_folders.remove(file);
            }
            self.folders.remove(ino);
        }
    }

    pub(super) fn folder(&self, ino: u64) -> Option<&Folder> {
        self.folders.get(ino).map(|f| &**f)
    }

    /// Every folder, in inode order.
    pub(super) fn all_folders(&self) -> impl Iterator<Item = &Folder> + '_ {
        self.folders.iter().map(|(_, f)| &**f)
    }

    /// The node of `entry`, listed in `folder`.
    fn entry_node<'t>(&'t self, folder: &'t Folder, entry: &'t Entry) -> Option<Node<'t>> {
        let at = match entry.body {
            Body::Dir => At::Dir(self.folder(entry.ino)?),
            Body::File { .. } => At::File(folder, entry),
        };
        Some(Node { tree: self, at })
    }

    /// The node `ino`.
    pub fn get(&self, ino: u64) -> Option<Node<'_>> {
        if let Some(folder) = self.folder(ino) {
            return Some(Node {
                tree: self,
                at: At::Dir(folder),
            });
        }
        let folder = self.folder(*self.file_folders.get(ino)?)?;
        let entry = folder.entry_by_ino(ino)?;
        Some(Node {
            tree: self,
            at: At::File(folder, entry),
        })
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<Node<'_>> {
        let folder = self.folder(parent)?;
        self.entry_node(folder, folder.entry_by_name(name)?)
    }

    /// The virtual path of `ino` (`/Artist/Album/01 - Title.flac`).
    pub fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut node = self.get(ino);
        // Bounded, so that no tree can loop it.
        while let Some(at) = node.filter(|n| n.ino() != ROOT && parts.len() <= self.folders.len()) {
            parts.push(at.name());
            node = self.get(at.parent());
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// The node at `path`, relative to the root (`Artist/Album`; `""` is the
    /// root).
    pub fn resolve(&self, path: &str) -> Option<Node<'_>> {
        let mut node = self.get(ROOT)?;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            node = self.lookup(node.ino(), name)?;
        }
        Some(node)
    }

    /// Every file at or below `node`, with its path relative to the root, in
    /// path order.
    pub fn files_below<'t>(&'t self, node: Node<'t>) -> Vec<(String, File<'t>)> {
        let mut out = Vec::new();
        let start = self.path_of(node.ino()).trim_start_matches('/').to_owned();
        let mut stack = vec![(node, start)];
        let mut folders = 0;
        while let Some((node, path)) = stack.pop() {
            match node.kind() {
                NodeKind::File(file) => out.push((path, file)),
                NodeKind::Dir(children) => {
                    // Bounded like `path_of`: no tree can make it loop.
                    folders += 1;
                    if folders > self.folders.len() {
                        break;
                    }
                    for child in children.iter() {
                        let child_path = match path.is_empty() {
                            true => child.name().to_owned(),
                            false => format!("{path}/{}", child.name()),
                        };
                        stack.push((child, child_path));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.file_folders.len()
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.folders.len() + self.file_folders.len()
    }

    /// How many files each origin holds a replica of.
    pub fn files_per_origin(&self) -> HashMap<String, usize> {
        let mut counts = vec![0; self.origins.len()];
        for folder in self.all_folders() {
            for replica in &folder.replicas {
                counts[replica.origin as usize] += 1;
            }
        }
        self.origins.iter().cloned().zip(counts).collect()
    }

    /// Whether the tree keeps the invariants the module text gives (a tree
    /// read from disk is used only if it does; a bad one would panic later).
    pub fn check(&self) -> bool {
        let root_ok = self
            .folder(ROOT)
            .is_some_and(|r| r.parent == ROOT && r.name.len == 0);
        // Each folder is checked on its own: a large tree in two halves, on
        // two threads (at 1,000,000 tracks the check was 100 ms of a 350 ms
        // start from the snapshot).
        let folders: Vec<(u64, &Arc<Folder>)> = self.folders.iter().collect();
        let counts = if folders.len() < 4096 {
            self.check_folders(&folders)
        } else {
            let (first, second) = folders.split_at(folders.len() / 2);
            std::thread::scope(|scope| {
                // No thread to be had: one half after the other.
                let other = std::thread::Builder::new()
                    .spawn_scoped(scope, || self.check_folders(second))
                    .ok();
                let one = self.check_folders(first);
                let other = match other {
                    Some(other) => other.join().unwrap_or(None),
                    None => self.check_folders(second),
                };
                match (one, other) {
                    (Some(a), Some(b)) => Some((a.0 + b.0, a.1 + b.1)),
                    _ => None,
                }
            })
        };
        root_ok
            && counts.is_some_and(|(files, subfolders)| {
                files == self.file_folders.len() && subfolders + 1 == self.folders.len()
            })
    }

    /// Checks `folders` (see [`Tree::check`]); the files and subfolders they
    /// list, or `None` if one breaks the layout.
    fn check_folders(&self, folders: &[(u64, &Arc<Folder>)]) -> Option<(usize, usize)> {
        let mut files = 0;
        let mut subfolders = 0;
        let ok = folders.iter().all(|&(ino, folder)| {
            ino == folder.ino
                && folder.check(self.origins.len())
                && folder.entries.iter().all(|e| match e.body {
                    Body::Dir => {
                        subfolders += 1;
                        self.folder(e.ino).is_some_and(|child| {
                            child.parent == ino
                                && child.text.get(child.name.range())
                                    == folder.text.get(e.name.range())
                        })
                    }
                    // Each file's folder is found through `file_folders`,
                    // made from these entries (`from_folders`, `put_folder`);
                    // a file listed twice is refused where a tree is read
                    // from disk (`from_stored`), so counting them suffices.
                    Body::File { .. } => {
                        files += 1;
                        true
                    }
                })
        });
        ok.then_some((files, subfolders))
    }
}

impl<'t> Node<'t> {
    /// Its inode number.
    pub fn ino(&self) -> u64 {
        match self.at {
            At::Dir(folder) => folder.ino,
            At::File(_, entry) => entry.ino,
        }
    }

    /// Its parent's inode number (the root's is its own).
    pub fn parent(&self) -> u64 {
        match self.at {
            At::Dir(folder) => folder.parent,
            At::File(folder, _) => folder.ino,
        }
    }

    /// Its name in its folder (empty for the root).
    pub fn name(&self) -> &'t str {
        match self.at {
            At::Dir(folder) => folder.str(folder.name),
            At::File(folder, entry) => folder.str(entry.name),
        }
    }

    /// Its mtime: the file's best replica's, or when the folder's listing last
    /// changed.
    pub fn mtime(&self) -> SystemTime {
        let ns = match self.at {
            At::Dir(folder) => folder.mtime_ns,
            At::File(folder, entry) => match entry.body {
                Body::File { replicas, .. } => folder.replicas[replicas.start as usize].mtime_ns,
                Body::Dir => 0,
            },
        };
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    /// What it is.
    pub fn kind(&self) -> NodeKind<'t> {
        match self.at {
            At::Dir(folder) => NodeKind::Dir(Children {
                tree: self.tree,
                folder,
            }),
            At::File(folder, entry) => NodeKind::File(File {
                tree: self.tree,
                folder,
                entry,
            }),
        }
    }

    /// Whether it is a folder.
    pub fn is_dir(&self) -> bool {
        matches!(self.at, At::Dir(_))
    }

    /// The file it is, if it is one.
    pub fn file(&self) -> Option<File<'t>> {
        match self.kind() {
            NodeKind::File(file) => Some(file),
            NodeKind::Dir(_) => None,
        }
    }
}

impl<'t> Children<'t> {
    /// The child named `name`.
    pub fn get(&self, name: &str) -> Option<Node<'t>> {
        self.tree
            .entry_node(self.folder, self.folder.entry_by_name(name)?)
    }

    /// Every child, in name order.
    pub fn iter(&self) -> impl Iterator<Item = Node<'t>> + 't {
        let (tree, folder) = (self.tree, self.folder);
        folder
            .entries
            .iter()
            .filter_map(move |e| tree.entry_node(folder, e))
    }

    /// How many children there are.
    pub fn len(&self) -> usize {
        self.folder.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.folder.entries.is_empty()
    }
}

impl<'t> File<'t> {
    fn parts(&self) -> (u64, Span, Span) {
        match self.entry.body {
            Body::File {
                size,
                path,
                replicas,
            } => (size, path, replicas),
            Body::Dir => unreachable!("a File is made only of a file entry"),
        }
    }

    /// Its size.
    pub fn size(&self) -> u64 {
        self.parts().0
    }

    /// Its path on its origins.
    pub fn source_path(&self) -> &'t str {
        self.folder.str(self.parts().1)
    }

    fn stored_replicas(&self) -> &'t [StoredReplica] {
        &self.folder.replicas[self.parts().2.range()]
    }

    /// The best replica's origin.
    pub fn first_origin(&self) -> &'t str {
        &self.tree.origins[self.stored_replicas()[0].origin as usize]
    }

    /// Its replicas as stored, best first: origin, mtime, version.
    pub(super) fn replicas_stored(
        &self,
    ) -> impl Iterator<Item = (&'t str, u64, Option<&'t str>)> + 't {
        let (tree, folder) = (self.tree, self.folder);
        self.stored_replicas().iter().map(move |r| {
            (
                tree.origins[r.origin as usize].as_str(),
                r.mtime_ns,
                r.version.map(|v| folder.str(v)),
            )
        })
    }

    /// Where it lives, best replica first.
    pub fn replicas(&self) -> Vec<Replica> {
        self.stored_replicas()
            .iter()
            .map(|r| Replica {
                origin: self.tree.origins[r.origin as usize].clone(),
                path: self.source_path().to_owned(),
                size: self.size(),
                mtime_ns: r.mtime_ns,
                version: r.version.map(|v| self.folder.str(v).to_owned()),
            })
            .collect()
    }

    /// Whether `other` (perhaps of another tree) is the same content in the
    /// same places.
    pub fn same_as(&self, other: &File<'_>) -> bool {
        let (a, b) = (self.stored_replicas(), other.stored_replicas());
        self.size() == other.size()
            && self.source_path() == other.source_path()
            && a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.mtime_ns == y.mtime_ns
                    && self.tree.origins[x.origin as usize] == other.tree.origins[y.origin as usize]
                    && x.version.map(|v| self.folder.str(v))
                        == y.version.map(|v| other.folder.str(v))
            })
    }
}
