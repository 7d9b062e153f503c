//! Chunks on disk, appended to pack files, named by hash, verified on every read.
//!
//! Layout: `chunks/<n>.pack` for audio and `chunks/<n>.tag.pack` for chunks that
//! hold tags, each a run of records: a 40-byte header (`MFC1`, the length as
//! u32 little-endian, the chunk's BLAKE3 name) and the bytes. A chunk a file
//! each cost an inode per 64 KiB, a quarter of a cold read's CPU; appending to
//! a pack costs a `pwrite`.
//!
//! - **Index.** In memory: where each chunk is, its last use, whether it holds
//!   tags. Rebuilt at open from the record headers, on a background thread; a
//!   read of a chunk not found before that is done waits for it. A pack's torn
//!   tail (a crash mid-append) ends the scan of that pack and is cut off.
//! - **Verification.** A chunk whose bytes no longer hash to its name (bit rot,
//!   a cut pack, tampering) is forgotten and reported missing; the read path
//!   then fetches it again and appends it anew. Its old bytes stay in the pack
//!   until the pack goes.
//! - **Size limit.** When the total passes the limit, whole packs are evicted,
//!   least recently used first, audio packs before tag packs, down to 90% of
//!   the limit. Packs are cut at a sixteenth of the limit (at most 64 MiB), so
//!   eviction stays fine-grained. Tag chunks found in an audio pack that goes
//!   (marked as tags after they were written) are copied to a tag pack first.
//! - **A full disk.** An append that fails is cut back off the pack: nothing is
//!   recorded for a chunk that is not all there.
//! - **Older caches** (`chunks/ab/cd/<hex>`, a file per chunk) are read into
//!   packs by the indexer, each verified, and the files removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use super::chunker::ChunkId;

const MAGIC: &[u8; 4] = b"MFC1";
const HEADER: u64 = 40;
/// The largest pack.
const PACK_MAX: u64 = 64 << 20;
/// The clock starts here; chunks found on disk at open are numbered below it.
const FOUND_CLOCK_BASE: u64 = 1 << 40;

#[derive(Clone, Copy)]
struct Entry {
    pack: u32,
    /// Where the chunk's bytes start in the pack (after its header).
    offset: u64,
    len: u32,
    last_use: u64,
    tag: bool,
}

struct Pack {
    file: Arc<File>,
    /// Bytes in the file (records appended so far).
    size: u64,
    tag: bool,
    last_use: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<ChunkId, Entry>,
    packs: BTreeMap<u32, Pack>,
    /// The packs being appended to: audio, tags.
    writing: [Option<u32>; 2],
    next_pack: u32,
    total: u64,
    clock: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn forget(&mut self, id: &ChunkId) {
        if let Some(entry) = self.entries.remove(id) {
            self.total -= entry.len as u64;
        }
    }
}

/// The chunk packs under one folder.
pub struct ChunkStore {
    root: PathBuf,
    limit: u64,
    index: Arc<Mutex<Index>>,
    indexed: Arc<(Mutex<bool>, Condvar)>,
}

fn pack_path(root: &Path, n: u32, tag: bool) -> PathBuf {
    root.join(if tag {
        format!("{n:08}.tag.pack")
    } else {
        format!("{n:08}.pack")
    })
}

/// The pack files under `root`: (number, is a tag pack).
fn pack_files(root: &Path) -> std::io::Result<Vec<(u32, bool)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let (number, tag) = if let Some(n) = name.strip_suffix(".tag.pack") {
            (n, true)
        } else if let Some(n) = name.strip_suffix(".pack") {
            (n, false)
        } else {
            continue;
        };
        if let Ok(n) = number.parse() {
            found.push((n, tag));
        }
    }
    found.sort();
    Ok(found)
}

/// A record found in a pack: the chunk, where its bytes start, their length.
type Found = (ChunkId, u64, u32);

/// Reads the record headers of one pack, and the length of what is whole. A
/// torn tail is cut off.
fn scan_pack(file: &File) -> std::io::Result<(Vec<Found>, u64)> {
    let size = file.metadata()?.len();
    let mut records = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER as usize];
    while at + HEADER <= size {
        file.read_exact_at(&mut header, at)?;
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if &header[..4] != MAGIC || at + HEADER + len as u64 > size {
            break;
        }
        let id = ChunkId(header[8..40].try_into().expect("32 bytes"));
        records.push((id, at + HEADER, len));
        at += HEADER + len as u64;
    }
    if at < size {
        tracing::warn!(
            kept = at,
            size,
            "a chunk pack ends in a torn record; cutting it off"
        );
        file.set_len(at)?;
    }
    Ok((records, at))
}

/// Chunk files of the layout before packs: (id, path).
fn legacy_chunk_files(root: &Path) -> Vec<(ChunkId, PathBuf)> {
    let mut found = Vec::new();
    let Ok(level1) = std::fs::read_dir(root) else {
        return found;
    };
    for dir1 in level1.flatten() {
        let dir1 = dir1.path();
        if !dir1.is_dir() {
            continue;
        }
        for dir2 in std::fs::read_dir(&dir1).into_iter().flatten().flatten() {
            let dir2 = dir2.path();
            for file in std::fs::read_dir(&dir2).into_iter().flatten().flatten() {
                let path = file.path();
                match path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(ChunkId::from_hex)
                {
                    Some(id) => found.push((id, path)),
                    // A temporary file a crash left.
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir2);
        }
        let _ = std::fs::remove_dir(&dir1);
    }
    found
}

impl ChunkStore {
    /// Opens the store at `root`, keeping at most `limit` bytes; `tags` gives the
    /// chunks known to hold tags (on the indexer's thread). Returns at once: the index of what is already
    /// on disk is rebuilt on a background thread, and a read of a chunk it has
    /// not found yet waits for it.
    pub fn open(
        root: &Path,
        limit: u64,
        tags: impl FnOnce() -> HashSet<ChunkId> + Send + 'static,
    ) -> std::io::Result<ChunkStore> {
        std::fs::create_dir_all(root)?;
        let index = Arc::new(Mutex::new(Index {
            clock: FOUND_CLOCK_BASE,
            ..Index::default()
        }));
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
        };
        let indexer = ChunkStore {
            root: store.root.clone(),
            limit,
            index: store.index.clone(),
            indexed: store.indexed.clone(),
        };
        std::thread::Builder::new()
            .name("chunk-index".into())
            .spawn(move || {
                let tags = tags();
                indexer.index_found(&found, &tags);
                indexer.import_legacy(&tags);
                let (done, ready) = &*indexer.indexed;
                *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
                ready.notify_all();
                indexer.evict();
            })?;
        Ok(store)
    }

    fn index_found(&self, found: &[(u32, bool)], tags: &HashSet<ChunkId>) {
        for (n, (pack, tag_pack)) in found.iter().enumerate() {
            let path = pack_path(&self.root, *pack, *tag_pack);
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
            index.packs.insert(
                *pack,
                Pack {
                    file: Arc::new(file),
                    size,
                    tag: *tag_pack,
                    last_use,
                },
            );
            for (id, offset, len) in records {
                if index.entries.contains_key(&id) {
                    continue;
                }
                index.total += len as u64;
                let tag = *tag_pack || tags.contains(&id);
                index.entries.insert(
                    id,
                    Entry {
                        pack: *pack,
                        offset,
                        len,
                        last_use,
                        tag,
                    },
                );
            }
        }
    }

    /// Moves chunk files of the layout before packs into packs.
    fn import_legacy(&self, tags: &HashSet<ChunkId>) {
        let files = legacy_chunk_files(&self.root);
        if files.is_empty() {
            return;
        }
        let mut moved = 0;
        for (id, path) in &files {
            if let Ok(bytes) = std::fs::read(path) {
                if ChunkId::of(&bytes) == *id && self.put(id, &bytes, tags.contains(id)).is_ok() {
                    moved += 1;
                }
            }
            let _ = std::fs::remove_file(path);
        }
        let _ = legacy_chunk_files(&self.root);
        tracing::info!(moved, of = files.len(), "chunk files moved into packs");
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

    /// Stores `bytes` (whose name is `id`) unless already there. Returns whether
    /// new bytes were written.
    pub fn put(&self, id: &ChunkId, bytes: &[u8], tag: bool) -> std::io::Result<bool> {
        let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
        let over = {
            let mut index = self.index();
            let clock = index.tick();
            if let Some(entry) = index.entries.get_mut(id) {
                entry.last_use = clock;
                entry.tag |= tag;
                return Ok(false);
            }
            let pack = self.pack_to_append(&mut index, tag)?;
            let Some(target) = index.packs.get_mut(&pack) else {
                return Err(std::io::Error::other("the pack being written is gone"));
            };
            let at = target.size;
            let mut header = [0u8; HEADER as usize];
            header[..4].copy_from_slice(MAGIC);
            header[4..8].copy_from_slice(&len.to_le_bytes());
            header[8..].copy_from_slice(&id.0);
            // A write that fails (a full disk) is cut back off: no torn record,
            // and no entry for a chunk that is not all there.
            if let Err(e) = write_all_at(&target.file, [&header[..], bytes], at) {
                let _ = target.file.set_len(at);
                return Err(e);
            }
            target.size += HEADER + bytes.len() as u64;
            target.last_use = clock;
            index.entries.insert(
                *id,
                Entry {
                    pack,
                    offset: at + HEADER,
                    len,
                    last_use: clock,
                    tag,
                },
            );
            index.total += len as u64;
            index.total > self.limit
        };
        if over {
            self.evict();
        }
        Ok(true)
    }

    /// The pack to append a chunk to, starting a new one when the current one
    /// is full.
    fn pack_to_append(&self, index: &mut Index, tag: bool) -> std::io::Result<u32> {
        let slot = tag as usize;
        let cut_at = (self.limit / 16).clamp(1, PACK_MAX);
        if let Some(n) = index.writing[slot] {
            if index.packs.get(&n).is_some_and(|p| p.size < cut_at) {
                return Ok(n);
            }
        }
        let n = index.next_pack;
        index.next_pack += 1;
        let path = pack_path(&self.root, n, tag);
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
        index.packs.insert(
            n,
            Pack {
                file: Arc::new(file),
                size: 0,
                tag,
                last_use: clock,
            },
        );
        index.writing[slot] = Some(n);
        Ok(n)
    }

    /// The chunk's bytes, verified; `None` when missing or corrupt (a corrupt
    /// chunk is forgotten).
    pub fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let (entry, file) = self.locate(id)?;
        let bytes = match read_new_at(&file, entry.len as usize, entry.offset) {
            Ok(bytes) => bytes,
            Err(e) => {
                if e.kind() != ErrorKind::UnexpectedEof {
                    tracing::warn!(chunk = ?id, "cannot read chunk: {e}");
                }
                self.index().forget(id);
                return None;
            }
        };
        if ChunkId::of(&bytes) != *id {
            tracing::warn!(chunk = ?id, "chunk is corrupt; dropping it, it will be fetched again");
            self.index().forget(id);
            return None;
        }
        let mut index = self.index();
        let clock = index.tick();
        if let Some(entry) = index.entries.get_mut(id) {
            entry.last_use = clock;
        }
        if let Some(pack) = index.packs.get_mut(&entry.pack) {
            pack.last_use = clock;
        }
        Some(bytes)
    }

    /// Marks a stored chunk as holding tags.
    pub fn mark_tag(&self, id: &ChunkId) {
        if let Some(entry) = self.index().entries.get_mut(id) {
            entry.tag = true;
        }
    }

    /// Bytes stored.
    pub fn total_bytes(&self) -> u64 {
        self.index().total
    }

    /// Chunks stored.
    pub fn chunk_count(&self) -> usize {
        self.index().entries.len()
    }

    /// The size limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Evicts whole packs, least recently used first, audio before tags, down
    /// to 90% of the limit; the tag chunks of an audio pack are kept.
    fn evict(&self) {
        let target = self.limit / 10 * 9;
        loop {
            let (victim, file, tags, size) =
                {
                    let index = self.index();
                    if index.total <= target {
                        return;
                    }
                    // Least recently used first, audio before tags, and the packs
                    // being appended to only when nothing else is left.
                    let Some((n, pack)) = index.packs.iter().min_by_key(|(n, p)| {
                        (index.writing.contains(&Some(**n)), p.tag, p.last_use)
                    }) else {
                        return;
                    };
                    let tags: Vec<(ChunkId, Entry)> = if pack.tag {
                        Vec::new()
                    } else {
                        index
                            .entries
                            .iter()
                            .filter(|(_, e)| e.pack == *n && e.tag)
                            .map(|(id, e)| (*id, *e))
                            .collect()
                    };
                    (*n, pack.file.clone(), tags, pack.size)
                };
            // Read outside the lock: the tag chunks to keep, verified.
            let keep: Vec<(ChunkId, Vec<u8>)> = tags
                .into_iter()
                .filter_map(|(id, e)| {
                    let bytes = read_new_at(&file, e.len as usize, e.offset).ok()?;
                    (ChunkId::of(&bytes) == id).then_some((id, bytes))
                })
                .collect();
            self.drop_pack(victim, &keep);
            metrics::counter!(crate::control::metrics::CACHE_EVICTIONS).increment(1);
            metrics::counter!(crate::control::metrics::CACHE_EVICTED_BYTES).increment(size);
        }
    }

    /// Deletes pack `n` and forgets its chunks, then stores `keep` anew.
    fn drop_pack(&self, n: u32, keep: &[(ChunkId, Vec<u8>)]) {
        {
            let mut index = self.index();
            let Some(pack) = index.packs.remove(&n) else {
                return;
            };
            let gone: Vec<ChunkId> = index
                .entries
                .iter()
                .filter(|(_, e)| e.pack == n)
                .map(|(id, _)| *id)
                .collect();
            for id in &gone {
                index.forget(id);
            }
            for slot in index.writing.iter_mut() {
                if *slot == Some(n) {
                    *slot = None;
                }
            }
            let _ = std::fs::remove_file(pack_path(&self.root, n, pack.tag));
            tracing::debug!(pack = n, chunks = gone.len(), "chunk cache over its limit");
        }
        for (id, bytes) in keep {
            let _ = self.put(id, bytes, true);
        }
    }
}

/// `len` bytes of `file` at `at`, read into a new buffer that is not zeroed
/// first: zeroing it cost a sixth of a read from the chunk cache.
fn read_new_at(file: &File, len: usize, at: u64) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let filled = bytes.len();
        let offset = libc::off_t::try_from(at + filled as u64).map_err(std::io::Error::other)?;
        let spare = &mut bytes.spare_capacity_mut()[..len - filled];
        // SAFETY: the kernel writes at most `spare.len()` bytes, all within the
        // vector's spare capacity.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                offset,
            )
        };
        match read {
            // SAFETY: the kernel has initialised the next `n` bytes.
            n if n > 0 => unsafe { bytes.set_len(filled + n as usize) },
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(bytes)
}

/// Writes `header` then `body` at `at` in one `pwritev`: the record is not
/// copied into one buffer first (that copy was a tenth of a cold read's CPU).
fn write_all_at(file: &File, [header, body]: [&[u8]; 2], at: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let total = header.len() + body.len();
    let mut done = 0;
    while done < total {
        let parts: [&[u8]; 2] = if done < header.len() {
            [&header[done..], body]
        } else {
            [&[], &body[done - header.len()..]]
        };
        let iov = parts.map(|part| libc::iovec {
            iov_base: part.as_ptr() as *mut libc::c_void,
            iov_len: part.len(),
        });
        let offset = libc::off_t::try_from(at + done as u64).map_err(std::io::Error::other)?;
        // SAFETY: both iovecs point into live slices of the lengths given, and
        // the kernel only reads from them.
        let written = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), 2, offset) };
        match written {
            n if n > 0 => done += n as usize,
            0 => return Err(ErrorKind::WriteZero.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_read_into_a_new_buffer_is_exact_and_a_short_file_is_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            read_new_at(&file, 70_000, 1234).unwrap(),
            data[1234..71_234]
        );
        assert_eq!(read_new_at(&file, 0, 5).unwrap(), Vec::<u8>::new());
        let err = read_new_at(&file, 10, 199_995).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn corrupt_chunks_are_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 30, HashSet::new).unwrap();
        let id = ChunkId::of(b"some audio");
        assert!(store.put(&id, b"some audio", false).unwrap());
        assert!(
            !store.put(&id, b"some audio", false).unwrap(),
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
        assert!(store.put(&id, b"some audio", false).unwrap(), "stored anew");
        assert_eq!(store.get(&id).unwrap(), b"some audio");
    }

    #[test]
    fn eviction_takes_old_audio_before_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10_000, HashSet::new).unwrap();
        store.wait_indexed();
        let chunk = |n: u8| vec![n; 2_000];
        let ids: Vec<_> = (0..6).map(|n| ChunkId::of(&chunk(n))).collect();
        store.put(&ids[0], &chunk(0), true).unwrap(); // a tag, oldest
        for (n, id) in ids.iter().enumerate().take(5).skip(1) {
            store.put(id, &chunk(n as u8), false).unwrap();
        }
        store.get(&ids[1]); // recently used
        store.put(&ids[5], &chunk(5), false).unwrap(); // 12 000 > 10 000
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
        let store = ChunkStore::open(dir.path(), 1 << 30, HashSet::new).unwrap();
        store.wait_indexed();
        let id = ChunkId::of(b"tags");
        store.put(&id, b"tags", false).unwrap();
        store.mark_tag(&id);
        let pack = store.locate(&id).unwrap().0.pack;
        store.index().writing = [None, None];
        let keep = vec![(id, b"tags".to_vec())];
        store.drop_pack(pack, &keep);
        assert_eq!(store.get(&id).unwrap(), b"tags");
        assert!(packs(dir.path())[0]
            .to_string_lossy()
            .ends_with(".tag.pack"));
    }

    #[test]
    fn reopening_finds_the_chunks_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ChunkId::of(b"x"), ChunkId::of(b"yy"));
        {
            let store = ChunkStore::open(dir.path(), 1 << 20, HashSet::new).unwrap();
            store.put(&a, b"x", false).unwrap();
            store.put(&b, b"yy", false).unwrap();
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
        let store = ChunkStore::open(dir.path(), 1 << 20, HashSet::new).unwrap();
        assert_eq!(store.get(&a).unwrap(), b"x", "a read waits for the index");
        assert!(!store.contains(&b));
        assert_eq!(store.total_bytes(), 1);
        assert_eq!(std::fs::metadata(pack).unwrap().len(), HEADER + 1);
        store.put(&b, b"yy", false).unwrap();
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
        let store = ChunkStore::open(dir.path(), 1 << 20, HashSet::new).unwrap();
        store.wait_indexed();
        assert_eq!(store.get(&id).unwrap(), b"old chunk");
        assert!(
            !dir.path().join(&hex[..2]).exists(),
            "the old folders are gone"
        );
    }
}
