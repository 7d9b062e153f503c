//! Inode numbers and folder mtimes, kept per virtual path in the store: the
//! same path gets the same inode number across rebuilds and restarts (a music
//! server keys its database on them), and a folder keeps its mtime while its
//! listing is the same (so a scanner rescans only what changed).
//!
//! A whole build loads the whole book ([`InodeBook::load`]): it asks for every
//! path. A tree update asks for the paths of the folders it lays out, so its
//! book ([`InodeBook::lazy`]) reads each from the store when first asked:
//! nothing of the book is kept in memory between builds.
//!
//! In memory, a path is keyed by 128 bits of its BLAKE3 hash ([`PathKey`]),
//! not by the path: a whole build asks for every path of the library, and
//! the book keyed by path was about 200 bytes a track at a first scan (each
//! path kept twice, in the map and in the list to save), more than the tree
//! it numbers. Keyed so, an entry is about 30 bytes, and only what this build
//! made new keeps its path, to be saved. Two paths of a library colliding in
//! 128 bits is not a case to plan for (about 10^-26 at a million paths).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::tree::{NodeKind, Tree, ROOT};
use crate::store::{Store, StoreError, DIR_MTIMES, DIR_SIGS, INODES, META};

/// A path's key in the book: 128 bits of its BLAKE3 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PathKey(u128);

impl PathKey {
    fn of(path: &str) -> PathKey {
        let hash = blake3::hash(path.as_bytes());
        PathKey(u128::from_le_bytes(
            hash.as_bytes()[..16].try_into().expect("16 bytes"),
        ))
    }
}

/// Hashes a [`PathKey`] by taking its low bits: it is a hash already.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Keyed = HashMap<PathKey, u64, BuildHasherDefault<KeyHasher>>;

/// Inode numbers and directory mtimes, as stored, plus what this build changed.
pub struct InodeBook {
    inodes: Keyed,
    next: u64,
    mtimes: Keyed,
    sigs: Keyed,
    new_inodes: Vec<(String, u64)>,
    new_dirs: Vec<(String, u64, u64)>,
    /// Read from the store path by path (not loaded whole).
    lazy: Option<std::sync::Arc<Store>>,
    /// Where new numbers are written as they come, [`SPILL_EVERY`] at a time.
    spill: Option<(std::sync::Arc<Store>, usize)>,
    /// Numbers were written out since the last save, not yet durably.
    spilled: bool,
    /// The store's generation when the book was read.
    generation: u64,
}

/// New inode numbers a whole build's book holds before it writes them out
/// ([`InodeBook::spilling_to`]): a first build numbers every path of the
/// library, and their paths (about 100 bytes each) were held to the end.
pub const SPILL_EVERY: usize = 65_536;

impl InodeBook {
    /// Loads the book from the store.
    pub fn load(store: &Store) -> Result<InodeBook, StoreError> {
        let keyed = |table| -> Result<Keyed, StoreError> {
            let mut map = Keyed::default();
            store.each_u64(table, |path, value| {
                map.insert(PathKey::of(path), value);
            })?;
            Ok(map)
        };
        let inodes = keyed(INODES)?;
        let next = store.get_u64(META, "next_inode")?.unwrap_or(ROOT + 1);
        Ok(InodeBook {
            next: next.max(inodes.values().max().map_or(ROOT + 1, |m| m + 1)),
            inodes,
            mtimes: keyed(DIR_MTIMES)?,
            sigs: keyed(DIR_SIGS)?,
            new_inodes: Vec::new(),
            new_dirs: Vec::new(),
            lazy: None,
            spill: None,
            spilled: false,
            generation: store.generation(),
        })
    }

    /// This book, writing its new numbers to `store` as they come (see
    /// [`SPILL_EVERY`]) rather than all at [`InodeBook::save`].
    pub fn spilling_to(self, store: std::sync::Arc<Store>) -> InodeBook {
        self.spilling_every(store, SPILL_EVERY)
    }

    fn spilling_every(mut self, store: std::sync::Arc<Store>, every: usize) -> InodeBook {
        self.spill = Some((store, every.max(1)));
        self
    }

    /// Writes the new numbers out if there are enough (not waiting for the
    /// disk: [`InodeBook::save`] does). A failed write keeps them for `save`.
    fn spill_if_due(&mut self) {
        let Some((store, every)) = &self.spill else {
            return;
        };
        if self.new_inodes.len() < *every {
            return;
        }
        let written = store.write(false, |txn| {
            let mut table = txn.open_table(INODES)?;
            for (path, ino) in &self.new_inodes {
                table.insert(path.as_str(), ino)?;
            }
            txn.open_table(META)?.insert("next_inode", self.next)?;
            Ok(())
        });
        match written {
            Ok(()) => {
                self.new_inodes = Vec::new();
                self.spilled = true;
            }
            Err(e) => {
                tracing::warn!("cannot write inode numbers yet; keeping them: {e}");
                self.spill = None;
            }
        }
    }

    /// A book that reads each path from `store` when first asked (see the
    /// module's notes).
    pub fn lazy(store: &std::sync::Arc<Store>) -> Result<InodeBook, StoreError> {
        let next = store.get_u64(META, "next_inode")?.unwrap_or(ROOT + 1);
        Ok(InodeBook {
            inodes: Keyed::default(),
            next,
            mtimes: Keyed::default(),
            sigs: Keyed::default(),
            new_inodes: Vec::new(),
            new_dirs: Vec::new(),
            lazy: Some(store.clone()),
            spill: None,
            spilled: false,
            generation: store.generation(),
        })
    }

    /// Reads `path`'s entries from the store into the maps, for a lazy book.
    fn read_in(&mut self, path: &str, key: PathKey) {
        let Some(store) = &self.lazy else {
            return;
        };
        if self.inodes.contains_key(&key) || self.sigs.contains_key(&key) {
            return;
        }
        // A path the store cannot give is new to this book: an unreadable
        // store is being rebuilt, and the update that asked is not shown.
        let get = |table| store.get_u64(table, path).ok().flatten();
        if let Some(ino) = get(INODES) {
            self.next = self.next.max(ino + 1);
            self.inodes.insert(key, ino);
        }
        if let (Some(sig), Some(mtime)) = (get(DIR_SIGS), get(DIR_MTIMES)) {
            self.sigs.insert(key, sig);
            self.mtimes.insert(key, mtime);
        }
    }

    /// The inode number of `path` (`/` is the root), a new one if it has none.
    pub(super) fn ino(&mut self, path: &str) -> u64 {
        if path == "/" {
            return ROOT;
        }
        let key = PathKey::of(path);
        self.read_in(path, key);
        if let Some(ino) = self.inodes.get(&key) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(key, ino);
        self.new_inodes.push((path.to_owned(), ino));
        self.spill_if_due();
        ino
    }

    /// The mtime of folder `path` with listing signature `sig`: kept while the
    /// signature is the same, `now` from a change on.
    pub(super) fn dir_mtime(&mut self, path: &str, sig: u64, now: u64) -> u64 {
        let key = PathKey::of(path);
        self.read_in(path, key);
        match (self.sigs.get(&key), self.mtimes.get(&key)) {
            (Some(old), Some(mtime)) if *old == sig => *mtime,
            _ => {
                self.sigs.insert(key, sig);
                self.mtimes.insert(key, now);
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
        self.take_in(tree, false);
    }

    /// Saves the book after it built `tree`: if the store was rebuilt since
    /// the book was read, every number and mtime the tree shows (the book
    /// knows its paths only by their keys, and what it wrote out as it went
    /// went to the store before), else what it made new.
    pub fn save_built(&mut self, store: &Store, tree: &Tree) -> Result<(), StoreError> {
        if store.generation() != self.generation {
            self.take_in(tree, true);
        }
        self.save(store)
    }

    /// [`InodeBook::adopt`]; with `all`, every path is to be saved, whatever
    /// the book held for it.
    fn take_in(&mut self, tree: &Tree, all: bool) {
        let mut stack = vec![(ROOT, String::new())];
        while let Some((ino, path)) = stack.pop() {
            let Some(node) = tree.get(ino) else {
                continue;
            };
            let key = if path.is_empty() { "/" } else { path.as_str() };
            let hashed = PathKey::of(key);
            if ino != ROOT && (all || self.inodes.get(&hashed) != Some(&ino)) {
                self.inodes.insert(hashed, ino);
                self.new_inodes.push((key.to_owned(), ino));
            }
            self.next = self.next.max(ino + 1);
            let NodeKind::Dir(children) = node.kind() else {
                continue;
            };
            let sig = listing_sig(children.iter().map(|c| c.name()));
            if all || self.sigs.get(&hashed) != Some(&sig) {
                let mtime = node
                    .mtime()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                self.sigs.insert(hashed, sig);
                self.mtimes.insert(hashed, mtime);
                self.new_dirs.push((key.to_owned(), sig, mtime));
            }
            for child in children.iter() {
                stack.push((child.ino(), format!("{path}/{}", child.name())));
            }
        }
    }

    /// Writes what this book made new (see [`InodeBook::save_built`] for a
    /// store rebuilt since it was read). What a failed write did not store is
    /// written next time.
    pub fn save(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.new_inodes.is_empty() && self.new_dirs.is_empty() && !self.spilled {
            return Ok(());
        }
        let (inodes, dirs) = (&self.new_inodes, &self.new_dirs);
        let next = self.next;
        store.write(true, |txn| {
            let mut table = txn.open_table(INODES)?;
            for (path, ino) in inodes {
                table.insert(path.as_str(), ino)?;
            }
            let mut mtimes = txn.open_table(DIR_MTIMES)?;
            let mut sigs = txn.open_table(DIR_SIGS)?;
            for (path, sig, mtime) in dirs {
                mtimes.insert(path.as_str(), mtime)?;
                sigs.insert(path.as_str(), sig)?;
            }
            txn.open_table(META)?.insert("next_inode", next)?;
            Ok(())
        })?;
        self.new_inodes.clear();
        self.new_dirs.clear();
        self.spilled = false;
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

    /// Regression (review): the book keys paths by hash, so a store rebuilt
    /// during a build got only the numbers made new, and a restart before the
    /// next build renumbered the rest.
    #[test]
    fn a_store_rebuilt_during_a_build_gets_every_number_the_tree_shows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("i.redb")).unwrap();
        let records = [record("x.flac", "X"), record("y.flac", "Y")];
        let rank = |o: &str| (1, o.to_owned());
        let mut first = InodeBook::load(&store).unwrap();
        let shown = build(&records, &rank, &Layout::default(), &mut first);
        first.save_built(&store, &shown).unwrap();

        let mut book = InodeBook::load(&store).unwrap();
        // Rebuilt empty while the book builds.
        store
            .write(true, |txn| {
                txn.delete_table(INODES)?;
                Ok(())
            })
            .unwrap();
        store.count_a_rebuild();
        let again = build(&records, &rank, &Layout::default(), &mut book);
        assert!(book.new_inodes.is_empty(), "nothing was new to the book");
        book.save_built(&store, &again).unwrap();
        let reread = InodeBook::load(&store).unwrap();
        assert_eq!(
            reread.inodes.len(),
            again.node_count() - 1,
            "every path but the root"
        );
    }

    #[test]
    fn a_spilling_book_writes_its_numbers_as_it_goes_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&dir.path().join("i.redb")).unwrap());
        let mut book = InodeBook::load(&store)
            .unwrap()
            .spilling_every(store.clone(), 10);
        let numbers: Vec<u64> = (0..25).map(|i| book.ino(&format!("/a/{i}"))).collect();
        assert!(book.new_inodes.len() < 10, "written out as they came");
        assert_eq!(store.get_u64(INODES, "/a/3").unwrap(), Some(numbers[3]));
        book.save(&store).unwrap();
        let mut again = InodeBook::load(&store).unwrap();
        let reread: Vec<u64> = (0..25).map(|i| again.ino(&format!("/a/{i}"))).collect();
        assert_eq!(reread, numbers);
        assert!(again.new_inodes.is_empty(), "no number was lost");
        assert!(again.ino("/b") > numbers[24], "the next number was kept");
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
