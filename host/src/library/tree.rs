//! The virtual tree the mount shows: built whole from the index
//! ([`super::tree_build`]), never changed after, swapped whole when the
//! library changes.
//!
//! It is laid out flat, because it is the one structure that grows with the
//! library and stays in memory: at 100,000 tracks a tree of per-node `String`s,
//! maps and replica lists took about 580 bytes a track; this one takes under
//! 200 (see the README's figures).
//!
//! - Nodes sit in one vector ordered by inode number; a lookup by inode is a
//!   binary search, a node refers to others by their place in it.
//! - Every name, source path and version token is a span of one string.
//! - A folder's children are a span of one index list, in name order (byte
//!   order, as `str` compares), so a lookup by name is a binary search too.
//! - A file's replicas are a span of one replica list, best origin first; they
//!   share the file's source path and size (that is what makes them replicas),
//!   so each keeps only its origin (a number into the origin list), mtime and
//!   version.
//!
//! [`Tree::check`] verifies those invariants for a tree read back from disk.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The root directory's inode.
pub const ROOT: u64 = 1;

pub use crate::values::Replica;

/// A stretch of [`Tree::text`] or of one of the index lists.
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

#[derive(Clone, Copy, Debug)]
pub(super) enum Body {
    /// A folder: its children, a span of [`Tree::children`].
    Dir(Span),
    /// A file: its place in [`Tree::files`].
    File(u32),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct StoredNode {
    pub ino: u64,
    pub mtime_ns: u64,
    /// The parent's place in [`Tree::nodes`] (the root is its own parent).
    pub parent: u32,
    pub name: Span,
    pub body: Body,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct StoredFile {
    pub size: u64,
    /// The path on every replica's origin.
    pub path: Span,
    /// A span of [`Tree::replicas`], best first; never empty.
    pub replicas: Span,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct StoredReplica {
    pub mtime_ns: u64,
    /// Its place in [`Tree::origins`].
    pub origin: u32,
    pub version: Option<Span>,
}

/// The whole tree.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub(super) nodes: Vec<StoredNode>,
    pub(super) children: Vec<u32>,
    pub(super) files: Vec<StoredFile>,
    pub(super) replicas: Vec<StoredReplica>,
    pub(super) origins: Vec<String>,
    pub(super) text: String,
}

/// One node of a tree.
#[derive(Clone, Copy)]
pub struct Node<'t> {
    tree: &'t Tree,
    at: u32,
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
    list: &'t [u32],
}

/// A file of a tree.
#[derive(Clone, Copy)]
pub struct File<'t> {
    tree: &'t Tree,
    file: &'t StoredFile,
}

impl Tree {
    fn node(&self, at: u32) -> Node<'_> {
        Node { tree: self, at }
    }

    fn str(&self, span: Span) -> &str {
        &self.text[span.range()]
    }

    /// The node `ino`.
    pub fn get(&self, ino: u64) -> Option<Node<'_>> {
        let at = self.nodes.binary_search_by_key(&ino, |n| n.ino).ok()?;
        Some(self.node(at as u32))
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<Node<'_>> {
        match self.get(parent)?.kind() {
            NodeKind::Dir(children) => children.get(name),
            NodeKind::File(_) => None,
        }
    }

    /// The virtual path of `ino` (`/Artist/Album/01 - Title.flac`).
    pub fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut node = self.get(ino);
        // Bounded, so that no tree can loop it.
        while let Some(at) = node.filter(|n| n.ino() != ROOT && parts.len() < self.nodes.len()) {
            parts.push(at.name());
            node = Some(self.node(self.nodes[at.at as usize].parent));
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
        while let Some((node, path)) = stack.pop() {
            match node.kind() {
                NodeKind::File(file) => out.push((path, file)),
                NodeKind::Dir(children) => {
                    // Bounded like `path_of`: no tree can make it loop.
                    if out.len() + stack.len() > self.nodes.len() {
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
        self.files.len()
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many files each origin holds a replica of.
    pub fn files_per_origin(&self) -> HashMap<String, usize> {
        let mut counts = vec![0; self.origins.len()];
        for replica in &self.replicas {
            counts[replica.origin as usize] += 1;
        }
        self.origins.iter().cloned().zip(counts).collect()
    }

    /// Whether the tree keeps the invariants the module text gives (a tree
    /// read from disk is used only if it does; a bad one would panic later).
    pub fn check(&self) -> bool {
        let nodes = self.nodes.len();
        // In range and on character boundaries.
        let str_ok = |s: Span| self.text.get(s.range()).is_some();
        let root_ok = self
            .nodes
            .first()
            .is_some_and(|n| n.ino == ROOT && n.parent == 0);
        let sorted = self.nodes.windows(2).all(|w| w[0].ino < w[1].ino);
        let nodes_ok = self.nodes.iter().all(|n| {
            (n.parent as usize) < nodes
                && str_ok(n.name)
                && match n.body {
                    Body::Dir(span) => span.fits(self.children.len()),
                    Body::File(file) => (file as usize) < self.files.len(),
                }
        });
        let children_ok = self.children.iter().all(|c| (*c as usize) < nodes);
        let files_ok = self
            .files
            .iter()
            .all(|f| str_ok(f.path) && f.replicas.len > 0 && f.replicas.fits(self.replicas.len()));
        let replicas_ok = self
            .replicas
            .iter()
            .all(|r| (r.origin as usize) < self.origins.len() && r.version.is_none_or(str_ok));
        root_ok && sorted && nodes_ok && children_ok && files_ok && replicas_ok
    }
}

impl<'t> Node<'t> {
    fn stored(&self) -> &'t StoredNode {
        &self.tree.nodes[self.at as usize]
    }

    /// Its inode number.
    pub fn ino(&self) -> u64 {
        self.stored().ino
    }

    /// Its parent's inode number (the root's is its own).
    pub fn parent(&self) -> u64 {
        self.tree.nodes[self.stored().parent as usize].ino
    }

    /// Its name in its folder (empty for the root).
    pub fn name(&self) -> &'t str {
        self.tree.str(self.stored().name)
    }

    /// Its mtime: the file's, or when the folder's listing last changed.
    pub fn mtime(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.stored().mtime_ns)
    }

    /// What it is.
    pub fn kind(&self) -> NodeKind<'t> {
        match self.stored().body {
            Body::Dir(span) => NodeKind::Dir(Children {
                tree: self.tree,
                list: &self.tree.children[span.range()],
            }),
            Body::File(file) => NodeKind::File(File {
                tree: self.tree,
                file: &self.tree.files[file as usize],
            }),
        }
    }

    /// Whether it is a folder.
    pub fn is_dir(&self) -> bool {
        matches!(self.stored().body, Body::Dir(_))
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
        let at = self
            .list
            .binary_search_by(|c| self.tree.node(*c).name().cmp(name))
            .ok()?;
        Some(self.tree.node(self.list[at]))
    }

    /// Every child, in name order.
    pub fn iter(&self) -> impl Iterator<Item = Node<'t>> + 't {
        let tree = self.tree;
        self.list.iter().map(move |c| tree.node(*c))
    }

    /// How many children there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl<'t> File<'t> {
    /// Its size.
    pub fn size(&self) -> u64 {
        self.file.size
    }

    /// Its path on its origins.
    pub fn source_path(&self) -> &'t str {
        self.tree.str(self.file.path)
    }

    fn stored_replicas(&self) -> &'t [StoredReplica] {
        &self.tree.replicas[self.file.replicas.range()]
    }

    /// The best replica's origin.
    pub fn first_origin(&self) -> &'t str {
        &self.tree.origins[self.stored_replicas()[0].origin as usize]
    }

    /// Where it lives, best replica first.
    pub fn replicas(&self) -> Vec<Replica> {
        self.stored_replicas()
            .iter()
            .map(|r| Replica {
                origin: self.tree.origins[r.origin as usize].clone(),
                path: self.source_path().to_owned(),
                size: self.file.size,
                mtime_ns: r.mtime_ns,
                version: r.version.map(|v| self.tree.str(v).to_owned()),
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
                    && x.version.map(|v| self.tree.str(v)) == y.version.map(|v| other.tree.str(v))
            })
    }
}
