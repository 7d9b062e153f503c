//! Chunks on disk, appended to pack files, named by hash, verified on every read.
//!
//! A chunk a file each cost an inode per 64 KiB, a quarter of a cold read's
//! CPU; appending to a pack costs a `pwrite`. Three parts, a file each:
//! `pack` is the format on disk, `index` the index in memory and the
//! eviction policy, `migration` the move from the layout before packs. This
//! file is the store that ties them together.
//!
//! - **Index.** In memory: where each chunk is, its last use, whether it holds
//!   tags. Rebuilt at open from the record headers, on a background thread; a
//!   read of a chunk not found before that is done waits for it. A pack's torn
//!   tail (a crash mid-append) ends the scan of that pack and is cut off.
//! - **Verification.** A chunk whose bytes no longer hash to its name (bit rot,
//!   a cut pack, tampering) is forgotten and reported missing; the read path
//!   then fetches it again and appends it anew. Its old bytes stay in the pack
//!   until the pack goes.
//! - **Size limit.** When the bytes not pinned pass the limit, whole packs are
//!   evicted, least recently used first, audio packs before tag packs before
//!   pin packs, down to 90% of the limit. Packs are cut at a sixteenth of the
//!   limit (at most 64 MiB), so eviction stays fine-grained. Tag chunks found
//!   in an audio pack that goes (marked as tags after they were written) are
//!   copied to a tag pack first.
//! - **Pins.** Chunks of pinned files ([`ChunkStore::set_pinned`], or stored
//!   as [`Keep::Pinned`]) are never evicted and do not count against the
//!   limit. They are appended to pin packs (`<n>.pin.pack`); one found in
//!   another pack that goes is copied to a pin pack first. A pack holding
//!   nothing but pinned chunks is never chosen, so eviction always frees
//!   something or stops.
//! - **Writes outside the lock.** An append reserves its place at the end of a
//!   pack under the index's lock, writes its record without it, and publishes
//!   the chunk under it again; so a read of a cached chunk never waits for
//!   another stream's disk write, and streams write side by side. A pack with
//!   a write in flight is not evicted.
//! - **Eviction costs the pack.** Each pack lists its chunks: dropping one
//!   walks that list, not the index; changing the pins walks the pin sets.
//! - **A full disk.** An append that fails is cut back off the pack: nothing is
//!   recorded for a chunk that is not all there. If appends were reserved
//!   after it, it stays a hole and the pack takes no more; at the next open
//!   the pack's scan ends there (what follows is fetched again when read).
//! - **Older caches** (`chunks/ab/cd/<hex>`, a file per chunk) are read into
//!   packs by the indexer, each verified, and the files removed.

mod index;
mod migration;
pub mod pack;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

pub use self::index::Keep;
use self::index::{must_keep, Entry, Index, Pack};
use self::pack::{pack_files, pack_path, scan_pack, PACK_MAX};
use super::chunker::ChunkId;

/// What a test runs between reserving a record and writing it.
#[cfg(test)]
type WriteHook = Arc<dyn Fn(&ChunkId) + Send + Sync>;

/// The chunks that the store must know of when it opens: those holding tags,
/// and those of pinned files.
#[derive(Debug, Default)]
pub struct KeptChunks {
    pub tags: HashSet<ChunkId>,
    pub pinned: HashSet<ChunkId>,
}

/// The chunk packs under one folder.
pub struct ChunkStore {
    root: PathBuf,
    limit: u64,
    index: Arc<Mutex<Index>>,
    indexed: Arc<(Mutex<bool>, Condvar)>,
    /// Called between reserving a record and writing it (a test holds a
    /// write there).
    #[cfg(test)]
    before_write: Mutex<Option<WriteHook>>,
}

impl ChunkStore {
    /// Opens the store at `root`, keeping at most `limit` bytes besides the
    /// pinned ones; `kept` gives the chunks known to hold tags and those of
    /// pinned files (on the indexer's thread). Returns at once: the index of
    /// what is already on disk is rebuilt on a background thread, and a read of
    /// a chunk it has not found yet waits for it.
    pub fn open(
        root: &Path,
        limit: u64,
        kept: impl FnOnce() -> KeptChunks + Send + 'static,
    ) -> std::io::Result<ChunkStore> {
        std::fs::create_dir_all(root)?;
        let index = Arc::new(Mutex::new(Index::new()));
        // Packs are numbered past every pack there, so new appends never land in
        // one the indexer is still reading.
        let found = pack_files(root)?;
        index.lock().unwrap_or_else(|p| p.into_inner()).next_pack =
            found.last().map_or(0, |(n, _)| n + 1);
        let store = ChunkStore {
            root: root.to_owned(),
            limit,
            index,
            indexed: Arc::new((Mutex::new(false), Condvar::new())),
            #[cfg(test)]
            before_write: Mutex::default(),
        };
        let indexer = ChunkStore {
            root: store.root.clone(),
            limit,
            index: store.index.clone(),
            indexed: store.indexed.clone(),
            #[cfg(test)]
            before_write: Mutex::default(),
        };
        std::thread::Builder::new()
            .name("chunk-index".into())
            .spawn(move || {
                let KeptChunks { tags, pinned } = kept();
                {
                    let mut index = indexer.index();
                    // Merged: chunks stored pinned since open are in it already.
                    if !index.pinned_given {
                        index.pinned_ids.extend(pinned);
                    }
                }
                indexer.index_found(&found, &tags);
                migration::import_legacy(&indexer, &indexer.root, &tags);
                let (done, ready) = &*indexer.indexed;
                *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
                ready.notify_all();
                indexer.evict();
            })?;
        Ok(store)
    }

    fn index_found(&self, found: &[(u32, Keep)], tags: &HashSet<ChunkId>) {
        for (n, (pack, class)) in found.iter().enumerate() {
            let path = pack_path(&self.root, *pack, *class);
            let opened = OpenOptions::new().read(true).write(true).open(&path);
            let scanned = opened.and_then(|file| scan_pack(&file).map(|s| (file, s)));
            let (file, (records, size)) = match scanned {
                Ok(scanned) => scanned,
                Err(e) => {
                    tracing::warn!(pack = %path.display(), "cannot read a chunk pack: {e}");
                    continue;
                }
            };
            let mut index = self.index();
            // Found packs are older than any use since open, in pack order.
            let last_use = n as u64;
            index
                .packs
                .insert(*pack, Pack::new(file, size, *class, last_use));
            for (id, offset, len) in records {
                if index.entries.contains_key(&id) {
                    continue;
                }
                // Until the pins are worked out again, a chunk in a pin pack
                // counts as pinned: a pass cut short by a stop or a crash had
                // stored it for a pin, perhaps before the set was recorded.
                if *class == Keep::Pinned && !index.pinned_given {
                    index.pinned_ids.insert(id);
                }
                let entry = Entry {
                    pack: *pack,
                    offset,
                    len,
                    last_use,
                    tag: *class == Keep::Tag || tags.contains(&id),
                    pinned: index.pinned_ids.contains(&id),
                };
                index.add(id, entry);
            }
        }
    }

    /// Waits until the index of the chunks found at open is complete.
    pub fn wait_indexed(&self) {
        let (done, ready) = &*self.indexed;
        let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = ready.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn is_indexed(&self) -> bool {
        *self.indexed.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `id` is, waiting for the index of what was on disk if need be.
    fn locate(&self, id: &ChunkId) -> Option<(Entry, Arc<File>)> {
        let look = || {
            let index = self.index();
            let entry = *index.entries.get(id)?;
            let file = index.packs.get(&entry.pack)?.file.clone();
            Some((entry, file))
        };
        match look() {
            None if !self.is_indexed() => {
                self.wait_indexed();
                look()
            }
            found => found,
        }
    }

    /// Whether the chunk is stored (not whether it is intact).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.locate(id).is_some()
    }

    /// Whether `len` bytes are there for `id`, without reading them (so a cut
    /// pack is told apart; rotten bytes only by reading).
    pub fn holds(&self, id: &ChunkId, len: u32) -> bool {
        self.locate(id).is_some_and(|(entry, file)| {
            entry.len == len
                && file
                    .metadata()
                    .is_ok_and(|m| m.len() >= entry.offset + len as u64)
        })
    }

    /// Stores `bytes` (whose name is `id`) unless already there, kept for
    /// `keep` (a chunk of a pinned file is pinned whatever `keep` says).
    /// Returns whether new bytes were written.
    ///
    /// In three steps, so that the disk is never written under the index's
    /// lock (which every read of a chunk takes): a place is reserved at the
    /// end of a pack, the record is written there, and the chunk is
    /// published in the index. Until then nobody reads it.
    pub fn put(&self, id: &ChunkId, bytes: &[u8], keep: Keep) -> std::io::Result<bool> {
        let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
        let record = pack::record_len(len);
        // Reserve.
        let (n, file, at) = {
            let mut index = self.index();
            let clock = index.tick();
            if keep == Keep::Pinned {
                index.pinned_ids.insert(*id);
            }
            let pinned = index.pinned_ids.contains(id);
            if let Some(entry) = index.entries.get_mut(id) {
                entry.last_use = clock;
                entry.tag |= keep == Keep::Tag;
                index.set_pin(id, pinned);
                return Ok(false);
            }
            let class = if pinned { Keep::Pinned } else { keep };
            let n = self.pack_to_append(&mut index, class)?;
            let Some(pack) = index.packs.get_mut(&n) else {
                return Err(std::io::Error::other("the pack being written is gone"));
            };
            let at = pack.size;
            pack.size += record;
            pack.writes += 1;
            (n, pack.file.clone(), at)
        };
        // Write, the lock let go.
        #[cfg(test)]
        {
            let hook = self.before_write.lock().unwrap().clone();
            if let Some(hook) = hook {
                hook(id);
            }
        }
        let written = pack::write_record(&file, at, id, bytes);
        // Publish.
        let over = {
            let mut index = self.index();
            let clock = index.tick();
            // A pack with a write in flight is never evicted.
            let Some(pack) = index.packs.get_mut(&n) else {
                return written.map(|()| false);
            };
            pack.writes -= 1;
            if let Err(e) = written {
                // A write that fails (a full disk) leaves no torn record and
                // no entry for a chunk that is not all there: the last record
                // is cut back off; one with records reserved after it stays a
                // hole, and the pack takes no more (at the next open its scan
                // stops there, and what follows is fetched again when read).
                if pack.size == at + record {
                    pack.size = at;
                    let _ = file.set_len(at);
                } else {
                    index.stop_writing(n);
                }
                return Err(e);
            }
            pack.last_use = clock;
            // Stored meanwhile by another stream: this copy is dead bytes.
            if index.entries.contains_key(id) {
                return Ok(false);
            }
            let entry = Entry {
                pack: n,
                offset: at + pack::HEADER,
                len,
                last_use: clock,
                tag: keep == Keep::Tag,
                // Pinned meanwhile, it is kept when its pack goes.
                pinned: index.pinned_ids.contains(id),
            };
            index.add(*id, entry);
            index.evictable() > self.limit
        };
        if over {
            self.evict();
        }
        Ok(true)
    }

    /// The pack to append a chunk to, starting a new one when the current one
    /// is full.
    fn pack_to_append(&self, index: &mut Index, class: Keep) -> std::io::Result<u32> {
        let cut_at = (self.limit / 16).clamp(1, PACK_MAX);
        if let Some(n) = index.writing(class) {
            if index.packs.get(&n).is_some_and(|p| p.size < cut_at) {
                return Ok(n);
            }
        }
        let n = index.next_pack;
        index.next_pack += 1;
        let path = pack_path(&self.root, n, class);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    std::fs::create_dir_all(&self.root)?;
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)
                } else {
                    Err(e)
                }
            })?;
        let clock = index.tick();
        index.packs.insert(n, Pack::new(file, 0, class, clock));
        index.set_writing(class, n);
        Ok(n)
    }

    /// The chunk's bytes, verified; `None` when missing or corrupt (a corrupt
    /// chunk is forgotten).
    pub fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let (entry, file) = self.locate(id)?;
        let mut bytes = Vec::with_capacity(entry.len as usize);
        self.read_verified(id, entry, &file, &mut bytes)
            .then_some(bytes)
    }

    /// Appends the chunk's bytes, verified, to `out` if it is stored and
    /// `len` bytes long, and says whether it did (`out` is left as it was
    /// otherwise). A reader that wants a whole chunk reads it where it goes,
    /// with no buffer of its own to fault in and copy out of.
    pub fn get_into(&self, id: &ChunkId, len: u32, out: &mut Vec<u8>) -> bool {
        match self.locate(id) {
            Some((entry, file)) if entry.len == len => self.read_verified(id, entry, &file, out),
            _ => false,
        }
    }

    /// Appends the chunk at `entry` to `out` if its bytes are there and have
    /// its name; forgets it if not.
    fn read_verified(&self, id: &ChunkId, entry: Entry, file: &File, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if let Err(e) = pack::read_append_at(file, entry.len as usize, entry.offset, out) {
            if e.kind() != ErrorKind::UnexpectedEof {
                tracing::warn!(chunk = ?id, "cannot read chunk: {e}");
            }
            self.index().forget(id);
            return false;
        }
        if ChunkId::of(&out[start..]) != *id {
            tracing::warn!(chunk = ?id, "chunk is corrupt; dropping it, it will be fetched again");
            out.truncate(start);
            self.index().forget(id);
            return false;
        }
        let mut index = self.index();
        let clock = index.tick();
        if let Some(entry) = index.entries.get_mut(id) {
            entry.last_use = clock;
        }
        if let Some(pack) = index.packs.get_mut(&entry.pack) {
            pack.last_use = clock;
        }
        true
    }

    /// Marks a stored chunk as holding tags.
    pub fn mark_tag(&self, id: &ChunkId) {
        if let Some(entry) = self.index().entries.get_mut(id) {
            entry.tag = true;
        }
    }

    /// Makes `ids` the chunks of pinned files: those stored are kept from
    /// eviction and no longer count against the limit, and those stored
    /// later will be; every other chunk stops being pinned (and may go, if
    /// the rest is now over the limit).
    /// Returns the set it replaces.
    pub fn set_pinned(&self, ids: HashSet<ChunkId>) -> HashSet<ChunkId> {
        let (over, before) = {
            let mut index = self.index();
            // Over the pin sets, not the cache: a stored chunk is pinned only
            // if the set holds it.
            let before = std::mem::take(&mut index.pinned_ids);
            for id in before.iter().filter(|id| !ids.contains(id)) {
                index.set_pin(id, false);
            }
            for id in &ids {
                index.set_pin(id, true);
            }
            index.pinned_ids = ids;
            index.pinned_given = true;
            (index.evictable() > self.limit, before)
        };
        if over {
            self.evict();
        }
        before
    }

    /// Adds `ids` to the chunks of pinned files (those of one more file).
    pub fn add_pinned(&self, ids: &[ChunkId]) {
        let mut index = self.index();
        for id in ids {
            index.pinned_ids.insert(*id);
            index.set_pin(id, true);
        }
    }

    /// Bytes stored.
    pub fn total_bytes(&self) -> u64 {
        self.index().total
    }

    /// Of those, bytes of pinned chunks.
    pub fn pinned_bytes(&self) -> u64 {
        self.index().pinned_total
    }

    /// Bytes that count against the limit: those not pinned.
    pub fn evictable_bytes(&self) -> u64 {
        self.index().evictable()
    }

    /// Chunks stored.
    pub fn chunk_count(&self) -> usize {
        self.index().entries.len()
    }

    /// The size limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Evicts whole packs, least recently used first, audio before tags
    /// before pins, until the bytes not pinned are down to 90% of the limit.
    /// The tag chunks of an audio pack and the pinned chunks of any pack are
    /// kept (stored anew). Only packs with something that may go are chosen.
    fn evict(&self) {
        let target = self.limit / 10 * 9;
        loop {
            let (victim, file, keep, size) = {
                let mut index = self.index();
                if index.evictable() <= target {
                    return;
                }
                let Some(n) = index.victim() else {
                    return;
                };
                let Some(pack) = index.packs.get(&n) else {
                    return;
                };
                let class = pack.class;
                let keep: Vec<(ChunkId, Entry)> = index
                    .chunks_in(n)
                    .filter(|(_, e)| must_keep(e, class))
                    .collect();
                let picked = (n, pack.file.clone(), keep, pack.size);
                // Nothing more is appended to a pack that is going.
                index.stop_writing(n);
                picked
            };
            // Read outside the lock: the chunks to keep, verified; a rotten
            // one is forgotten (and fetched again when next read).
            let mut kept = Vec::with_capacity(keep.len());
            for (id, e) in keep {
                match pack::read_new_at(&file, e.len as usize, e.offset) {
                    Ok(bytes) if ChunkId::of(&bytes) == id => kept.push((id, bytes, e)),
                    _ => self.index().forget(&id),
                }
            }
            if self.drop_pack(victim, &kept) {
                metrics::counter!(crate::telemetry::metric_names::CACHE_EVICTIONS).increment(1);
                metrics::counter!(crate::telemetry::metric_names::CACHE_EVICTED_BYTES)
                    .increment(size);
            }
        }
    }

    /// Deletes pack `n` and forgets its chunks, then stores `keep` anew.
    /// False if it did nothing: the pack was gone, or one of its chunks
    /// became one to keep after `keep` was read (pinned meanwhile), and the
    /// caller looks again.
    fn drop_pack(&self, n: u32, keep: &[(ChunkId, Vec<u8>, Entry)]) -> bool {
        {
            let mut index = self.index();
            let Some(class) = index.packs.get(&n).map(|p| p.class) else {
                return false;
            };
            // The pack's chunks, and whether one to keep was not read.
            let kept: HashSet<&ChunkId> = keep.iter().map(|(id, ..)| id).collect();
            let mut gone = Vec::new();
            for (id, e) in index.chunks_in(n) {
                if must_keep(&e, class) && !kept.contains(&id) {
                    return false;
                }
                gone.push(id);
            }
            let Some(pack) = index.packs.remove(&n) else {
                return false;
            };
            for id in &gone {
                index.forget(id);
            }
            index.stop_writing(n);
            let _ = std::fs::remove_file(pack_path(&self.root, n, pack.class));
            tracing::debug!(pack = n, chunks = gone.len(), "chunk cache over its limit");
        }
        for (id, bytes, entry) in keep {
            // Whether it is pinned, the pinned set says now.
            let class = if entry.tag { Keep::Tag } else { Keep::Audio };
            let _ = self.put(id, bytes, class);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::pack::HEADER;
    use super::*;

    fn packs(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .collect();
        found.sort();
        found
    }

    /// The index's lock is not held while a record is written: a reader of
    /// a cached chunk, and another writer, go on while one write is stuck.
    #[test]
    fn a_hit_never_waits_on_another_streams_disk_write() {
        use std::sync::mpsc;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ChunkStore::open(dir.path(), 1 << 30, KeptChunks::default).unwrap());
        store.wait_indexed();
        let cached = ChunkId::of(b"cached");
        store.put(&cached, b"cached", Keep::Audio).unwrap();
        let slow = ChunkId::of(b"slow");
        let (entered, in_write) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        *store.before_write.lock().unwrap() = Some(Arc::new(move |id| {
            if *id == slow {
                entered.send(()).unwrap();
                released.lock().unwrap().recv().unwrap();
            }
        }));
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || store.put(&slow, b"slow", Keep::Audio).unwrap())
        };
        in_write.recv().unwrap();
        // Bounded, so a regression fails rather than hangs.
        let (done, finished) = mpsc::channel();
        let other = store.clone();
        std::thread::spawn(move || {
            let hit = other.get(&cached);
            let fast = ChunkId::of(b"fast");
            let wrote = other.put(&fast, b"fast", Keep::Audio).unwrap();
            done.send((hit, wrote, other.get(&fast))).unwrap();
        });
        let (hit, wrote, fast) = finished
            .recv_timeout(Duration::from_secs(30))
            .expect("a read and a write waited for another stream's write");
        assert_eq!(hit.unwrap(), b"cached");
        assert!(wrote);
        assert_eq!(fast.unwrap(), b"fast");
        assert!(!store.contains(&slow), "not published before it is written");
        release.send(()).unwrap();
        assert!(writer.join().unwrap());
        assert_eq!(store.get(&slow).unwrap(), b"slow");
        drop(store);
        // Reopened, every record is found: the two writes went side by side.
        let store = ChunkStore::open(dir.path(), 1 << 30, KeptChunks::default).unwrap();
        store.wait_indexed();
        assert_eq!(store.chunk_count(), 3);
        assert_eq!(store.get(&slow).unwrap(), b"slow");
    }

    #[test]
    fn corrupt_chunks_are_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 30, KeptChunks::default).unwrap();
        let id = ChunkId::of(b"some audio");
        assert!(store.put(&id, b"some audio", Keep::Audio).unwrap());
        assert!(
            !store.put(&id, b"some audio", Keep::Audio).unwrap(),
            "stored once"
        );
        assert_eq!(store.get(&id).unwrap(), b"some audio");
        let pack = &packs(dir.path())[0];
        let mut bytes = std::fs::read(pack).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(pack, bytes).unwrap();
        assert_eq!(store.get(&id), None);
        assert!(!store.contains(&id));
        assert!(
            store.put(&id, b"some audio", Keep::Audio).unwrap(),
            "stored anew"
        );
        assert_eq!(store.get(&id).unwrap(), b"some audio");
    }

    #[test]
    fn a_chunk_read_into_a_buffer_is_whole_and_verified_or_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 30, KeptChunks::default).unwrap();
        let id = ChunkId::of(b"some audio");
        store.put(&id, b"some audio", Keep::Audio).unwrap();
        let mut out = b"before ".to_vec();
        assert!(!store.get_into(&id, 4, &mut out), "only a whole chunk");
        assert!(store.get_into(&id, 10, &mut out));
        assert_eq!(out, b"before some audio");
        let pack = &packs(dir.path())[0];
        let mut bytes = std::fs::read(pack).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(pack, bytes).unwrap();
        let mut out = b"before ".to_vec();
        assert!(!store.get_into(&id, 10, &mut out));
        assert_eq!(out, b"before ", "rotten bytes are taken back out");
        assert!(!store.contains(&id), "and the chunk forgotten");
    }

    #[test]
    fn eviction_takes_old_audio_before_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10_000, KeptChunks::default).unwrap();
        store.wait_indexed();
        let chunk = |n: u8| vec![n; 2_000];
        let ids: Vec<_> = (0..6).map(|n| ChunkId::of(&chunk(n))).collect();
        store.put(&ids[0], &chunk(0), Keep::Tag).unwrap(); // a tag, oldest
        for (n, id) in ids.iter().enumerate().take(5).skip(1) {
            store.put(id, &chunk(n as u8), Keep::Audio).unwrap();
        }
        store.get(&ids[1]); // recently used
        store.put(&ids[5], &chunk(5), Keep::Audio).unwrap(); // 12 000 > 10 000
        assert!(store.total_bytes() <= 9_000);
        assert!(store.contains(&ids[0]), "the tag chunk stays");
        assert!(store.contains(&ids[5]), "the newest stays");
        assert!(
            !store.contains(&ids[2]),
            "the least recently used audio goes"
        );
    }

    #[test]
    fn a_tag_chunk_in_an_evicted_audio_pack_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 30, KeptChunks::default).unwrap();
        store.wait_indexed();
        let id = ChunkId::of(b"tags");
        store.put(&id, b"tags", Keep::Audio).unwrap();
        store.mark_tag(&id);
        let pack = store.locate(&id).unwrap().0.pack;
        store.index().stop_writing(pack);
        let entry = store.locate(&id).unwrap().0;
        let keep = vec![(id, b"tags".to_vec(), entry)];
        store.drop_pack(pack, &keep);
        assert_eq!(store.get(&id).unwrap(), b"tags");
        assert!(packs(dir.path())[0]
            .to_string_lossy()
            .ends_with(".tag.pack"));
    }

    #[test]
    fn pinned_chunks_stay_whatever_the_limit_and_the_limit_holds_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10_000, KeptChunks::default).unwrap();
        store.wait_indexed();
        let chunk = |n: u8| vec![n; 2_000];
        let id = |n: u8| ChunkId::of(&chunk(n));
        // 20,000 bytes pinned, twice the limit.
        for n in 0..10 {
            store.put(&id(n), &chunk(n), Keep::Pinned).unwrap();
        }
        for n in 10..20 {
            store.put(&id(n), &chunk(n), Keep::Audio).unwrap();
        }
        assert_eq!(store.pinned_bytes(), 20_000);
        assert!(
            (0..10).all(|n| store.contains(&id(n))),
            "every pinned chunk stays"
        );
        assert!(
            store.evictable_bytes() <= 10_000,
            "{}",
            store.evictable_bytes()
        );
        assert!(store.contains(&id(19)), "the newest audio stays");
        assert!(!store.contains(&id(10)), "the oldest audio went");
        assert!(packs(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".pin.pack")));

        // Unpinned, they count again, and the oldest go.
        store.set_pinned(HashSet::new());
        assert_eq!(store.pinned_bytes(), 0);
        assert!(store.total_bytes() <= 10_000, "{}", store.total_bytes());
        assert!(!store.contains(&id(0)));
        assert!(store.contains(&id(19)));
    }

    #[test]
    fn a_chunk_pinned_after_it_was_stored_moves_to_a_pin_pack_when_its_pack_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10_000, KeptChunks::default).unwrap();
        store.wait_indexed();
        let chunk = |n: u8| vec![n; 2_000];
        let id = |n: u8| ChunkId::of(&chunk(n));
        store.put(&id(0), &chunk(0), Keep::Audio).unwrap();
        store.set_pinned(HashSet::from([id(0), id(42)]));
        // A chunk named in the pinned set is pinned when it is stored.
        store.put(&id(42), &chunk(42), Keep::Audio).unwrap();
        assert_eq!(store.pinned_bytes(), 4_000);
        for n in 1..30 {
            store.put(&id(n), &chunk(n), Keep::Audio).unwrap();
        }
        assert_eq!(store.get(&id(0)).unwrap(), chunk(0));
        assert_eq!(store.get(&id(42)).unwrap(), chunk(42));
        assert!(!store.contains(&id(1)));
        assert_eq!(store.pinned_bytes(), 4_000);
    }

    /// Regression: eviction read what to keep of a pack, let go of the lock,
    /// and then dropped the pack with a chunk pinned meanwhile.
    #[test]
    fn a_pack_whose_chunk_was_pinned_after_it_was_picked_is_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 30, KeptChunks::default).unwrap();
        store.wait_indexed();
        let id = ChunkId::of(b"audio");
        store.put(&id, b"audio", Keep::Audio).unwrap();
        let pack = store.locate(&id).unwrap().0.pack;
        // Picked with nothing to keep; pinned before it is dropped.
        store.set_pinned(HashSet::from([id]));
        assert!(!store.drop_pack(pack, &[]));
        assert_eq!(store.get(&id).unwrap(), b"audio");
        assert_eq!(store.pinned_bytes(), 5);
    }

    /// Regression: a pass stopped before it recorded the pinned set left its
    /// chunks unpinned at the next start, and the first eviction took them.
    #[test]
    fn chunks_in_a_pin_pack_stay_pinned_until_the_pins_are_worked_out() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |n: u8| vec![n; 2_000];
        let id = |n: u8| ChunkId::of(&chunk(n));
        {
            let store = ChunkStore::open(dir.path(), 1 << 20, KeptChunks::default).unwrap();
            for n in 0..5 {
                store.put(&id(n), &chunk(n), Keep::Pinned).unwrap();
            }
        }
        // Nothing recorded as pinned, and a limit they do not fit in.
        let store = ChunkStore::open(dir.path(), 4_000, KeptChunks::default).unwrap();
        store.wait_indexed();
        assert_eq!(store.pinned_bytes(), 10_000);
        assert!((0..5).all(|n| store.contains(&id(n))));
        // Worked out: only two are pinned; the rest go to fit the limit.
        store.set_pinned(HashSet::from([id(0), id(1)]));
        assert_eq!(store.pinned_bytes(), 4_000);
        assert!(store.contains(&id(0)) && store.contains(&id(1)));
        assert!(store.evictable_bytes() <= 4_000);
    }

    #[test]
    fn the_pinned_set_given_at_open_marks_what_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ChunkId::of(&[1; 3_000]), ChunkId::of(&[2; 3_000]));
        {
            let store = ChunkStore::open(dir.path(), 1 << 20, KeptChunks::default).unwrap();
            store.put(&a, &[1; 3_000], Keep::Audio).unwrap();
            store.put(&b, &[2; 3_000], Keep::Audio).unwrap();
        }
        let kept = move || KeptChunks {
            tags: HashSet::new(),
            pinned: HashSet::from([a]),
        };
        let store = ChunkStore::open(dir.path(), 4_000, kept).unwrap();
        store.wait_indexed();
        assert_eq!(store.pinned_bytes(), 3_000);
        assert_eq!(store.evictable_bytes(), 3_000);
    }

    #[test]
    fn reopening_finds_the_chunks_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ChunkId::of(b"x"), ChunkId::of(b"yy"));
        {
            let store = ChunkStore::open(dir.path(), 1 << 20, KeptChunks::default).unwrap();
            store.put(&a, b"x", Keep::Audio).unwrap();
            store.put(&b, b"yy", Keep::Audio).unwrap();
        }
        // A crash in the middle of the second record.
        let pack = &packs(dir.path())[0];
        let len = std::fs::metadata(pack).unwrap().len();
        File::options()
            .write(true)
            .open(pack)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 20, KeptChunks::default).unwrap();
        assert_eq!(store.get(&a).unwrap(), b"x", "a read waits for the index");
        assert!(!store.contains(&b));
        assert_eq!(store.total_bytes(), 1);
        assert_eq!(std::fs::metadata(pack).unwrap().len(), HEADER + 1);
        store.put(&b, b"yy", Keep::Audio).unwrap();
        assert_eq!(store.get(&b).unwrap(), b"yy");
    }

    #[test]
    fn chunk_files_of_the_old_layout_move_into_packs() {
        let dir = tempfile::tempdir().unwrap();
        let id = ChunkId::of(b"old chunk");
        let hex = id.to_hex();
        let old = dir.path().join(&hex[..2]).join(&hex[2..4]);
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join(&hex), b"old chunk").unwrap();
        std::fs::write(old.join(".tmp-1-1"), b"half").unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 20, KeptChunks::default).unwrap();
        store.wait_indexed();
        assert_eq!(store.get(&id).unwrap(), b"old chunk");
        assert!(
            !dir.path().join(&hex[..2]).exists(),
            "the old folders are gone"
        );
    }
}
