//! The virtual tree the mount shows, built from the index.
//!
//! - Files with the same relative path and size on several origins are one track
//!   with several replicas, best origin (lowest priority number) first.
//! - Each track's path comes from the layout; two different tracks that land on the
//!   same path get ` (2)`, ` (3)`… in a deterministic order (origin, then path).
//! - Cover images go into the album folders of the tracks found beside them.
//! - Inode numbers are kept per virtual path in the store, and a directory keeps its
//!   mtime until its listing changes: a music server rescans only what changed, and
//!   a restart shows the same inodes and mtimes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::index::{FileRecord, FileRole};
use super::layout::{safe_name, with_suffix, Layout};
use crate::store::{Store, StoreError, DIR_MTIMES, DIR_SIGS, INODES, META};

/// The root directory's inode.
pub const ROOT: u64 = 1;

/// One copy of a file on one origin: exactly the file version whose manifest
/// caches it.
pub use crate::cache::manifest::FileVersion as Replica;

/// A directory or a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NodeKind {
    /// A directory and its children by name.
    Dir { children: BTreeMap<String, u64> },
    /// A file and where it lives, best replica first.
    File { size: u64, replicas: Vec<Replica> },
}

/// One node of the tree.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    pub mtime: SystemTime,
    pub kind: NodeKind,
}

/// The whole tree.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
    files: usize,
}

impl Tree {
    /// The node `ino`.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<&Node> {
        match &self.nodes.get(&parent)?.kind {
            NodeKind::Dir { children } => children.get(name).and_then(|ino| self.nodes.get(ino)),
            NodeKind::File { .. } => None,
        }
    }

    /// The virtual path of `ino` (`/Artist/Album/01 - Title.flac`).
    pub fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let Some(node) = self.nodes.get(&at) else {
                break;
            };
            parts.push(node.name.as_str());
            at = node.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many files each origin holds a replica of.
    pub fn files_per_origin(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for node in self.nodes.values() {
            if let NodeKind::File { replicas, .. } = &node.kind {
                for replica in replicas {
                    *counts.entry(replica.origin.clone()).or_insert(0) += 1;
                }
            }
        }
        counts
    }
}

/// A folder's path, listing signature and mtime, as stored.
type DirStamp<'a> = (&'a str, u64, u64);

/// Inode numbers and directory mtimes, as stored, plus what this build changed.
pub struct InodeBook {
    inodes: HashMap<String, u64>,
    next: u64,
    mtimes: HashMap<String, u64>,
    sigs: HashMap<String, u64>,
    new_inodes: Vec<(String, u64)>,
    new_dirs: Vec<(String, u64, u64)>,
    /// The store generation the stored book belongs to: a store rebuilt since
    /// holds none of it, and gets the whole book at the next save.
    saved_generation: u64,
}

impl InodeBook {
    /// Loads the book from the store.
    pub fn load(store: &Store) -> Result<InodeBook, StoreError> {
        let inodes: HashMap<String, u64> = store.all_u64(INODES)?.into_iter().collect();
        let next = store
            .all_u64(META)?
            .into_iter()
            .find(|(k, _)| k == "next_inode")
            .map(|(_, v)| v)
            .unwrap_or(ROOT + 1);
        Ok(InodeBook {
            next: next.max(inodes.values().max().map_or(ROOT + 1, |m| m + 1)),
            inodes,
            mtimes: store.all_u64(DIR_MTIMES)?.into_iter().collect(),
            sigs: store.all_u64(DIR_SIGS)?.into_iter().collect(),
            new_inodes: Vec::new(),
            new_dirs: Vec::new(),
            saved_generation: store.generation(),
        })
    }

    fn ino(&mut self, path: &str) -> u64 {
        if path == "/" {
            return ROOT;
        }
        if let Some(ino) = self.inodes.get(path) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(path.to_owned(), ino);
        self.new_inodes.push((path.to_owned(), ino));
        ino
    }

    fn dir_mtime(&mut self, path: &str, sig: u64, now: u64) -> u64 {
        match (self.sigs.get(path), self.mtimes.get(path)) {
            (Some(old), Some(mtime)) if *old == sig => *mtime,
            _ => {
                self.sigs.insert(path.to_owned(), sig);
                self.mtimes.insert(path.to_owned(), now);
                self.new_dirs.push((path.to_owned(), sig, now));
                now
            }
        }
    }

    /// Writes what changed (everything, if the store was rebuilt since the last
    /// save). What a failed write did not store is written next time.
    pub fn save(&mut self, store: &Store) -> Result<(), StoreError> {
        let generation = store.generation();
        let whole = generation != self.saved_generation;
        if !whole && self.new_inodes.is_empty() && self.new_dirs.is_empty() {
            return Ok(());
        }
        let (inodes, dirs): (Vec<(&str, u64)>, Vec<DirStamp>) = if whole {
            (
                self.inodes.iter().map(|(p, i)| (p.as_str(), *i)).collect(),
                self.sigs
                    .iter()
                    .filter_map(|(p, sig)| Some((p.as_str(), *sig, *self.mtimes.get(p)?)))
                    .collect(),
            )
        } else {
            (
                self.new_inodes
                    .iter()
                    .map(|(p, i)| (p.as_str(), *i))
                    .collect(),
                self.new_dirs
                    .iter()
                    .map(|(p, sig, mtime)| (p.as_str(), *sig, *mtime))
                    .collect(),
            )
        };
        let next = self.next;
        store.write(true, |txn| {
            let mut table = txn.open_table(INODES)?;
            for (path, ino) in &inodes {
                table.insert(*path, ino)?;
            }
            let mut mtimes = txn.open_table(DIR_MTIMES)?;
            let mut sigs = txn.open_table(DIR_SIGS)?;
            for (path, sig, mtime) in &dirs {
                mtimes.insert(*path, mtime)?;
                sigs.insert(*path, sig)?;
            }
            txn.open_table(META)?.insert("next_inode", next)?;
            Ok(())
        })?;
        self.new_inodes.clear();
        self.new_dirs.clear();
        self.saved_generation = generation;
        Ok(())
    }
}

fn time_of(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

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

fn replicas(group: &[&FileRecord]) -> Vec<Replica> {
    group
        .iter()
        .map(|r| Replica {
            origin: r.origin.clone(),
            path: r.path.clone(),
            size: r.size,
            mtime_ns: r.mtime_ns,
            version: r.version.clone(),
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

    let mut files: BTreeMap<Vec<String>, Vec<Replica>> = BTreeMap::new();
    // (origin, source folder) → album folders of the tracks found there.
    let mut album_dirs: HashMap<(String, String), HashSet<Vec<String>>> = HashMap::new();
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
                    .entry((record.origin.clone(), parent_dir(&record.path).to_owned()))
                    .or_default()
                    .insert(path[..path.len() - 1].to_vec());
            }
            files.insert(path, replicas(&group));
        }
    }
    for group in group(&covers, rank) {
        let first = group[0];
        let key = (first.origin.clone(), parent_dir(&first.path).to_owned());
        let Some(dirs) = album_dirs.get(&key) else {
            continue;
        };
        let name = safe_name(file_name(&first.path), "cover");
        for dir in dirs {
            let mut path = dir.clone();
            path.push(name.clone());
            files.entry(path).or_insert_with(|| replicas(&group));
        }
    }

    let mut nodes: HashMap<u64, Node> = HashMap::new();
    nodes.insert(
        ROOT,
        Node {
            ino: ROOT,
            parent: ROOT,
            name: String::new(),
            mtime: UNIX_EPOCH,
            kind: NodeKind::Dir {
                children: BTreeMap::new(),
            },
        },
    );
    let file_count = files.len();
    for (segments, replicas) in files {
        let mut parent = ROOT;
        let mut path = String::new();
        for (i, segment) in segments.iter().enumerate() {
            path.push('/');
            path.push_str(segment);
            let is_file = i == segments.len() - 1;
            let existing = match &nodes[&parent].kind {
                NodeKind::Dir { children } => children.get(segment).copied(),
                NodeKind::File { .. } => None,
            };
            let ino = match existing {
                Some(ino) if !is_file => ino,
                Some(_) => break, // a folder already has this name; keep the folder
                None => {
                    let ino = book.ino(&path);
                    let kind = if is_file {
                        NodeKind::File {
                            size: replicas[0].size,
                            replicas: replicas.clone(),
                        }
                    } else {
                        NodeKind::Dir {
                            children: BTreeMap::new(),
                        }
                    };
                    let mtime = if is_file {
                        time_of(replicas[0].mtime_ns)
                    } else {
                        UNIX_EPOCH
                    };
                    nodes.insert(
                        ino,
                        Node {
                            ino,
                            parent,
                            name: segment.clone(),
                            mtime,
                            kind,
                        },
                    );
                    if let Some(NodeKind::Dir { children }) =
                        nodes.get_mut(&parent).map(|n| &mut n.kind)
                    {
                        children.insert(segment.clone(), ino);
                    }
                    ino
                }
            };
            parent = ino;
        }
    }

    // Directory mtimes: kept while the listing is the same.
    let now = now_ns();
    let dirs: Vec<(u64, u64)> = nodes
        .values()
        .filter_map(|n| match &n.kind {
            NodeKind::Dir { children } => {
                let mut hasher = blake3::Hasher::new();
                for name in children.keys() {
                    hasher.update(name.as_bytes());
                    hasher.update(b"\0");
                }
                let sig = u64::from_le_bytes(
                    hasher.finalize().as_bytes()[..8]
                        .try_into()
                        .expect("8 bytes"),
                );
                Some((n.ino, sig))
            }
            NodeKind::File { .. } => None,
        })
        .collect();
    let tree = Tree {
        nodes,
        files: file_count,
    };
    let paths: Vec<(u64, String, u64)> = dirs
        .into_iter()
        .map(|(ino, sig)| (ino, tree.path_of(ino), sig))
        .collect();
    let mut tree = tree;
    for (ino, path, sig) in paths {
        let mtime = book.dir_mtime(&path, sig, now);
        if let Some(node) = tree.nodes.get_mut(&ino) {
            node.mtime = time_of(mtime);
        }
    }
    tree
}
