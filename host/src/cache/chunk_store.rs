//! Chunk files on disk, one per chunk, named by hash, verified on every read.
//!
//! Layout: `chunks/ab/cd/abcd…` (two levels of fan-out keep folders small at a
//! million chunks). Writes go to a temporary file and are renamed into place, so a
//! crash never leaves a half-written chunk under a real name. A chunk whose bytes no
//! longer hash to its name (bit rot, a truncated file, tampering) is deleted and
//! reported missing; the read path then fetches it again.
//!
//! Size limit: the store keeps an in-memory index (size, last use, tag or not) of
//! every chunk, rebuilt from the folder at start (file mtime as last use). When the
//! total passes the limit, it evicts least recently used chunks down to 90% of the
//! limit, audio chunks before tag chunks.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::chunker::ChunkId;

struct Entry {
    size: u64,
    last_use: u64,
    tag: bool,
}

#[derive(Default)]
struct Index {
    entries: HashMap<ChunkId, Entry>,
    total: u64,
    clock: u64,
}

/// The chunk files under one folder.
pub struct ChunkStore {
    root: PathBuf,
    limit: u64,
    index: Arc<Mutex<Index>>,
    temp_counter: AtomicU64,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The clock starts here; chunks found on disk at open are numbered below it.
const FOUND_CLOCK_BASE: u64 = 1 << 40;

/// Every chunk file under `root`: (mtime, id, size). Removes temporary files left
/// by a crash.
fn find_chunks(root: &Path) -> std::io::Result<Vec<(Option<std::time::SystemTime>, ChunkId, u64)>> {
    let mut found = Vec::new();
    for level1 in std::fs::read_dir(root)? {
        let level1 = level1?.path();
        if !level1.is_dir() {
            continue;
        }
        for level2 in std::fs::read_dir(&level1)? {
            let level2 = level2?.path();
            if !level2.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&level2)? {
                let file = file?;
                let name = file.file_name();
                let Some(id) = name.to_str().and_then(ChunkId::from_hex) else {
                    // A temporary file: left by a crash, unless this process is
                    // writing it right now.
                    let ours = format!(".tmp-{}-", std::process::id());
                    if !name.to_string_lossy().starts_with(&ours) {
                        let _ = std::fs::remove_file(file.path());
                    }
                    continue;
                };
                // A chunk evicted or replaced while we look is simply not found.
                let Ok(meta) = file.metadata() else { continue };
                found.push((meta.modified().ok(), id, meta.len()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Adds chunks found on disk to the index, oldest first, below every use since open.
fn merge_found(
    index: &Mutex<Index>,
    found: Vec<(Option<std::time::SystemTime>, ChunkId, u64)>,
    tags: &HashSet<ChunkId>,
) {
    let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
    for (n, (_, id, size)) in found.into_iter().enumerate() {
        if index.entries.contains_key(&id) {
            continue;
        }
        index.total += size;
        let tag = tags.contains(&id);
        index.entries.insert(
            id,
            Entry {
                size,
                last_use: n as u64,
                tag,
            },
        );
    }
}

fn chunk_path(root: &Path, id: &ChunkId) -> PathBuf {
    let hex = id.to_hex();
    root.join(&hex[..2]).join(&hex[2..4]).join(hex)
}

/// Evicts least recently used chunks, audio before tags, down to 90% of `limit`.
fn evict_over_limit(root: &Path, limit: u64, index: &Mutex<Index>) {
    let victims: Vec<ChunkId> = {
        let index = index.lock().unwrap_or_else(|p| p.into_inner());
        if index.total <= limit {
            return;
        }
        let target = limit / 10 * 9;
        let mut order: Vec<_> = index
            .entries
            .iter()
            .map(|(id, e)| (e.tag, e.last_use, *id, e.size))
            .collect();
        // Audio chunks (tag = false) first, least recently used first.
        order.sort_unstable();
        let mut total = index.total;
        let mut victims = Vec::new();
        for (_, _, id, size) in order {
            if total <= target {
                break;
            }
            total -= size;
            victims.push(id);
        }
        victims
    };
    for id in &victims {
        let _ = std::fs::remove_file(chunk_path(root, id));
        let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = index.entries.remove(id) {
            index.total -= entry.size;
        }
    }
    tracing::debug!(evicted = victims.len(), "chunk cache over its limit");
}

impl ChunkStore {
    /// Opens the store at `root`, keeping at most `limit` bytes; `tags` are the
    /// chunks known to hold tags. Returns at once: the index of what is already on
    /// disk is rebuilt on a background thread (a large cache holds 100,000s of
    /// files, and the mount must not wait for them). Until it is done, reads work
    /// (they only need the file) and the size is under-counted.
    pub fn open(root: &Path, limit: u64, tags: &HashSet<ChunkId>) -> std::io::Result<ChunkStore> {
        std::fs::create_dir_all(root)?;
        let index = Arc::new(Mutex::new(Index {
            // Chunks found on disk get clock values below this: older than any use.
            clock: FOUND_CLOCK_BASE,
            ..Index::default()
        }));
        let indexer = {
            let (root, index, tags) = (root.to_owned(), index.clone(), tags.clone());
            std::thread::Builder::new()
                .name("chunk-index".into())
                .spawn(move || {
                    match find_chunks(&root) {
                        Ok(found) => merge_found(&index, found, &tags),
                        Err(e) => tracing::warn!(root = %root.display(), "cannot index the chunk cache: {e}"),
                    }
                    evict_over_limit(&root, limit, &index);
                })?
        };
        Ok(ChunkStore {
            root: root.to_owned(),
            limit,
            index,
            temp_counter: AtomicU64::new(0),
            indexer: Mutex::new(Some(indexer)),
        })
    }

    /// Waits until the index of the chunks found at open is complete.
    pub fn wait_indexed(&self) {
        let indexer = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(indexer) = indexer {
            let _ = indexer.join();
        }
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        chunk_path(&self.root, id)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the chunk is stored (not whether it is intact).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.index().entries.contains_key(id)
    }

    /// Whether a chunk file of `len` bytes is there for `id`, without reading it
    /// (so a deleted or cut chunk is told apart; rotten bytes only by reading).
    pub fn holds(&self, id: &ChunkId, len: u32) -> bool {
        if self
            .index()
            .entries
            .get(id)
            .is_some_and(|entry| entry.size == len as u64)
        {
            return true;
        }
        // Not indexed yet, or indexed from a look at the folder that a refetch
        // has since overtaken (the index of what was on disk is built in the
        // background after a start): the file says.
        std::fs::metadata(self.path_of(id)).is_ok_and(|m| m.len() == len as u64)
    }

    /// Stores `bytes` (whose name is `id`) unless already there. Returns whether new
    /// bytes were written.
    pub fn put(&self, id: &ChunkId, bytes: &[u8], tag: bool) -> std::io::Result<bool> {
        {
            let mut index = self.index();
            index.clock += 1;
            let clock = index.clock;
            if let Some(entry) = index.entries.get_mut(id) {
                entry.last_use = clock;
                entry.tag |= tag;
                return Ok(false);
            }
        }
        let path = self.path_of(id);
        let dir = path.parent().expect("chunk paths have a parent");
        let temp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        // The folder is made only when the write finds it missing: most exist,
        // and a `mkdir` per chunk is a measurable part of a cold read.
        let write = |temp: &Path| std::fs::write(temp, bytes);
        let written = match write(&temp) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).and_then(|()| write(&temp))
            }
            other => other,
        };
        // A write that fails (a full disk) leaves nothing behind: no temporary
        // file, and no entry for a chunk that is not there.
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &path)) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let over = {
            let mut index = self.index();
            index.clock += 1;
            let clock = index.clock;
            if index
                .entries
                .insert(
                    *id,
                    Entry {
                        size: bytes.len() as u64,
                        last_use: clock,
                        tag,
                    },
                )
                .is_none()
            {
                index.total += bytes.len() as u64;
            }
            index.total > self.limit
        };
        if over {
            self.evict();
        }
        Ok(true)
    }

    /// The chunk's bytes, verified; `None` when missing or corrupt (a corrupt chunk
    /// is deleted).
    pub fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let path = self.path_of(id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(chunk = ?id, "cannot read chunk: {e}");
                }
                self.forget(id);
                return None;
            }
        };
        if ChunkId::of(&bytes) != *id {
            tracing::warn!(chunk = ?id, "chunk is corrupt; dropping it, it will be fetched again");
            let _ = std::fs::remove_file(&path);
            self.forget(id);
            return None;
        }
        let mut index = self.index();
        index.clock += 1;
        let clock = index.clock;
        if let Some(entry) = index.entries.get_mut(id) {
            entry.last_use = clock;
        }
        Some(bytes)
    }

    /// Marks a stored chunk as holding tags.
    pub fn mark_tag(&self, id: &ChunkId) {
        if let Some(entry) = self.index().entries.get_mut(id) {
            entry.tag = true;
        }
    }

    fn forget(&self, id: &ChunkId) {
        let mut index = self.index();
        if let Some(entry) = index.entries.remove(id) {
            index.total -= entry.size;
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

    fn evict(&self) {
        evict_over_limit(&self.root, self.limit, &self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_chunks_are_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 1 << 30, &HashSet::new()).unwrap();
        let id = ChunkId::of(b"some audio");
        assert!(store.put(&id, b"some audio", false).unwrap());
        assert!(
            !store.put(&id, b"some audio", false).unwrap(),
            "stored once"
        );
        assert_eq!(store.get(&id).unwrap(), b"some audio");
        std::fs::write(store.path_of(&id), b"some audiX").unwrap();
        assert_eq!(store.get(&id), None);
        assert!(!store.path_of(&id).exists());
        assert!(!store.contains(&id));
    }

    #[test]
    fn eviction_takes_old_audio_before_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10_000, &HashSet::new()).unwrap();
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
    fn reopening_finds_the_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let id = ChunkId::of(b"x");
        {
            let store = ChunkStore::open(dir.path(), 1 << 20, &HashSet::new()).unwrap();
            store.put(&id, b"x", false).unwrap();
        }
        let store = ChunkStore::open(dir.path(), 1 << 20, &HashSet::new()).unwrap();
        store.wait_indexed();
        assert!(store.contains(&id));
        assert_eq!(store.total_bytes(), 1);
    }
}
