//! Inode numbers and folder mtimes, kept per virtual path in the store: the
//! same path gets the same inode number across rebuilds and restarts (a music
//! server keys its database on them), and a folder keeps its mtime while its
//! listing is the same (so a scanner rescans only what changed).
//!
//! A whole build loads the whole book ([`InodeBook::load`]): it asks for every
//! path. A tree update asks for the paths of the folders it lays out, so its
//! book ([`InodeBook::lazy`]) reads each from the store when first asked:
//! nothing of the book is kept in memory between builds.

use std::collections::HashMap;

use super::tree::{NodeKind, Tree, ROOT};
use crate::store::{Store, StoreError, DIR_MTIMES, DIR_SIGS, INODES, META};

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
    /// Read from the store path by path (not loaded whole).
    lazy: Option<std::sync::Arc<Store>>,
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
            lazy: None,
        })
    }

    /// A book that reads each path from `store` when first asked (see the
    /// module's notes).
    pub fn lazy(store: &std::sync::Arc<Store>) -> Result<InodeBook, StoreError> {
        let next = store.get_u64(META, "next_inode")?.unwrap_or(ROOT + 1);
        Ok(InodeBook {
            inodes: HashMap::new(),
            next,
            mtimes: HashMap::new(),
            sigs: HashMap::new(),
            new_inodes: Vec::new(),
            new_dirs: Vec::new(),
            saved_generation: store.generation(),
            lazy: Some(store.clone()),
        })
    }

    /// Reads `path`'s entries from the store into the maps, for a lazy book.
    fn read_in(&mut self, path: &str) {
        let Some(store) = &self.lazy else {
            return;
        };
        if self.inodes.contains_key(path) || self.sigs.contains_key(path) {
            return;
        }
        // A path the store cannot give is new to this book: an unreadable
        // store is being rebuilt, and the update that asked is not shown.
        let get = |table| store.get_u64(table, path).ok().flatten();
        if let Some(ino) = get(INODES) {
            self.next = self.next.max(ino + 1);
            self.inodes.insert(path.to_owned(), ino);
        }
        if let (Some(sig), Some(mtime)) = (get(DIR_SIGS), get(DIR_MTIMES)) {
            self.sigs.insert(path.to_owned(), sig);
            self.mtimes.insert(path.to_owned(), mtime);
        }
    }

    /// The inode number of `path` (`/` is the root), a new one if it has none.
    pub(super) fn ino(&mut self, path: &str) -> u64 {
        if path == "/" {
            return ROOT;
        }
        self.read_in(path);
        if let Some(ino) = self.inodes.get(path) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(path.to_owned(), ino);
        self.new_inodes.push((path.to_owned(), ino));
        ino
    }

    /// The mtime of folder `path` with listing signature `sig`: kept while the
    /// signature is the same, `now` from a change on.
    pub(super) fn dir_mtime(&mut self, path: &str, sig: u64, now: u64) -> u64 {
        self.read_in(path);
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

    /// Takes in the inode numbers and folder mtimes `tree` shows where the
    /// book has others or none: the kernel and music servers know those, and
    /// a book loaded after the tree was shown (from a snapshot) may come from
    /// a store rebuilt empty since.
    pub fn adopt(&mut self, tree: &Tree) {
        let mut stack = vec![(ROOT, String::new())];
        while let Some((ino, path)) = stack.pop() {
            let Some(node) = tree.get(ino) else {
                continue;
            };
            let key = if path.is_empty() { "/" } else { path.as_str() };
            if ino != ROOT && self.inodes.get(key) != Some(&ino) {
                self.inodes.insert(key.to_owned(), ino);
                self.new_inodes.push((key.to_owned(), ino));
            }
            self.next = self.next.max(ino + 1);
            let NodeKind::Dir(children) = node.kind() else {
                continue;
            };
            let sig = listing_sig(children.iter().map(|c| c.name()));
            if self.sigs.get(key) != Some(&sig) {
                let mtime = node
                    .mtime()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                self.sigs.insert(key.to_owned(), sig);
                self.mtimes.insert(key.to_owned(), mtime);
                self.new_dirs.push((key.to_owned(), sig, mtime));
            }
            for child in children.iter() {
                stack.push((child.ino(), format!("{path}/{}", child.name())));
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

/// The signature of a folder's listing, from its names in order: the same
/// names, the same signature, and the folder keeps its mtime.
pub fn listing_sig<'a>(names: impl Iterator<Item = &'a str>) -> u64 {
    let mut hasher = blake3::Hasher::new();
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
    }
    u64::from_le_bytes(
        hasher.finalize().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::index::FileRecord;
    use crate::library::layout::Layout;
    use crate::library::tree_build::build;

    fn record(path: &str, title: &str) -> FileRecord {
        FileRecord::tagged("o", path, 10, ("A", "B", title))
    }

    #[test]
    fn a_book_from_an_emptied_store_takes_the_numbers_and_mtimes_shown() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(&dir.path().join("first.redb")).unwrap();
        let records = [record("x.flac", "X"), record("y.flac", "Y")];
        let rank = |o: &str| (1, o.to_owned());
        let shown = build(
            &records,
            &rank,
            &Layout::default(),
            &mut InodeBook::load(&first).unwrap(),
        );

        // The tree came from a snapshot; the store was rebuilt empty since.
        let emptied = Store::open(&dir.path().join("emptied.redb")).unwrap();
        let mut book = InodeBook::load(&emptied).unwrap();
        book.adopt(&shown);
        let again = build(&records, &rank, &Layout::default(), &mut book);
        assert_eq!(again.node_count(), shown.node_count());
        for ino in [ROOT, 2, 3, 4, 5] {
            let (a, b) = (shown.get(ino).unwrap(), again.get(ino).unwrap());
            assert_eq!(again.path_of(ino), shown.path_of(ino));
            assert_eq!(a.mtime(), b.mtime(), "{}", shown.path_of(ino));
        }
        let fresh = build(
            &[record("z.flac", "Z")],
            &rank,
            &Layout::default(),
            &mut book,
        );
        let z = fresh
            .lookup(
                fresh
                    .lookup(fresh.lookup(ROOT, "A").unwrap().ino(), "B")
                    .unwrap()
                    .ino(),
                "Z.flac",
            )
            .unwrap();
        assert!(z.ino() > 5, "a new path gets a number past those adopted");
        book.save(&emptied).unwrap();
        assert_eq!(
            InodeBook::load(&emptied).unwrap().inodes.len(),
            book.inodes.len(),
            "what was adopted is saved"
        );
    }
}
