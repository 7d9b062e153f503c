//! The content cache: a byte range of a file version served from its chunks
//! on disk (or the hot set in memory), and what the cache holds besides:
//! whole copies, pinned chunks, figures. How it fills from an origin is
//! [`super::fill`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redb::ReadableTable;
use tokio::sync::watch;

use super::chunk_store::{ChunkStore, Keep, KeptChunks};
use super::chunker::{chunk, ChunkId};
use super::fill::in_flight::InFlight;
use super::fill::Purpose;
use super::hot_chunks::HotChunks;
use super::manifest::{FileVersion, Manifest, Span};
use super::shared::{SharedChunk, SharedTier};
use super::versions::{VersionState, Versions};
use super::whole_copies::WholeCopies;
use crate::store::{Store, MANIFESTS, PINNED_CHUNKS, TAG_CHUNKS};

/// How often chunks held only in memory are tried on disk again.
const VOLATILE_RETRY: Duration = Duration::from_secs(1);
/// Verified chunks kept in memory for sequential readers.
const HOT_BYTES: usize = 32 << 20;

/// Figures for `musicfs status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheStats {
    /// Bytes stored: chunks and whole copies.
    pub bytes: u64,
    /// Of those, bytes in whole copies (see [`super::whole_copies`]).
    pub whole_copy_bytes: u64,
    /// Of those, bytes of pinned files' chunks (beyond the limit).
    pub pinned_bytes: u64,
    /// The limit.
    pub limit: u64,
    /// Chunks stored.
    pub chunks: usize,
    /// Reads served wholly from the cache.
    pub hits: u64,
    /// Reads that had to fetch from an origin.
    pub misses: u64,
}

/// The content cache.
pub struct ContentCache {
    pub(in crate::cache) store: Arc<Store>,
    pub(in crate::cache) chunks: ChunkStore,
    pub(in crate::cache) hot: HotChunks,
    whole: WholeCopies,
    versions: Mutex<Versions>,
    pub(in crate::cache) hits: AtomicU64,
    pub(in crate::cache) misses: AtomicU64,
    /// The shared tier, if the mount has one: looked in before an origin.
    pub(in crate::cache) shared: OnceLock<Arc<dyn SharedTier>>,
}

impl ContentCache {
    /// Opens the cache in `cache_dir`, holding at most `limit` bytes of chunks.
    pub fn open(cache_dir: &Path, limit: u64, store: Arc<Store>) -> std::io::Result<ContentCache> {
        // Read by the chunk indexer's thread: a start does not wait for it.
        let index = store.clone();
        let kept = move || {
            let ids_in = |table| {
                index.read(|txn| {
                    let table = match txn.open_table(table) {
                        Ok(table) => table,
                        // Made by the first write to it.
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashSet::new()),
                        Err(e) => return Err(e.into()),
                    };
                    let mut ids = HashSet::new();
                    for row in table.iter()? {
                        let (key, _) = row?;
                        if let Ok(bytes) = <[u8; 32]>::try_from(key.value()) {
                            ids.insert(ChunkId(bytes));
                        }
                    }
                    Ok(ids)
                })
            };
            let tags = ids_in(TAG_CHUNKS).unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot read which chunks hold tags (they are evicted like audio): {e}"
                );
                HashSet::new()
            });
            // Until the pins are worked out again at start (`crate::pins`).
            let pinned = ids_in(PINNED_CHUNKS).unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot read which chunks are pinned (until the pins are read): {e}"
                );
                HashSet::new()
            });
            KeptChunks { tags, pinned }
        };
        Ok(ContentCache {
            chunks: ChunkStore::open(&cache_dir.join("chunks"), limit, kept)?,
            whole: WholeCopies::open(&cache_dir.join("whole"))?,
            store,
            hot: HotChunks::new(HOT_BYTES),
            versions: Mutex::new(Versions::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            shared: OnceLock::new(),
        })
    }

    /// Looks in `tier` for what the cache lacks before an origin, and offers
    /// it what the origins gave (set once, when the mount starts).
    pub fn share_with(&self, tier: Arc<dyn SharedTier>) {
        let _ = self.shared.set(tier);
    }

    /// What the cache holds of `version`, as whole chunks that do not
    /// overlap (see [`Manifest::cover`]): what a tier publishes.
    pub fn cover_of(self: &Arc<Self>, version: &FileVersion) -> Vec<SharedChunk> {
        let state = self.state(version);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        manifest
            .cover()
            .into_iter()
            .map(|(offset, extent)| SharedChunk {
                offset,
                len: extent.len,
                id: extent.id,
            })
            .collect()
    }

    /// A chunk's bytes, verified, from the store or the hot set.
    pub fn chunk(&self, id: &ChunkId) -> Option<Vec<u8>> {
        match self.hot.get(id) {
            Some(bytes) => Some(bytes.as_ref().clone()),
            None => self.chunks.get(id),
        }
    }

    /// Returns once every byte the streams have received and handed over is
    /// stored (readers were answered before): what a stop waits for, so that
    /// what was played stays cached. A stream's bytes not yet handed over
    /// (nobody asked for them) are not waited for.
    pub async fn stored_what_arrived(&self) {
        // What a stream published goes when it ends: only running ones hold any.
        for state in self.running() {
            let mut landed = state.landed.subscribe();
            loop {
                landed.borrow_and_update();
                let empty = state
                    .landing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty();
                if empty || landed.changed().await.is_err() {
                    break;
                }
            }
        }
    }

    /// Writes the manifests of the versions with a fetch running to the
    /// index (a stream records its own every 16 MiB and at its end; a stop
    /// does not wait for it to end).
    pub fn record_running(&self) {
        for state in self.running() {
            self.record_manifest(&state, &[]);
        }
    }

    /// The states of the versions with a fetch running.
    fn running(&self) -> Vec<Arc<VersionState>> {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .values()
            .filter(|state| state.in_flight.running() > 0)
            .cloned()
            .collect()
    }

    /// Size, limit and count.
    pub fn stats(&self) -> CacheStats {
        let whole_copy_bytes = self.whole.total_bytes();
        CacheStats {
            bytes: self.chunks.total_bytes() + whole_copy_bytes,
            whole_copy_bytes,
            pinned_bytes: self.chunks.pinned_bytes(),
            limit: self.chunks.limit(),
            chunks: self.chunks.chunk_count(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    pub(in crate::cache) fn state(&self, version: &FileVersion) -> Arc<VersionState> {
        let key = version.key();
        let versions = || self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = versions().map.get(&key) {
            return state.clone();
        }
        // Read the manifest without holding the map: the store may be slow (or
        // being repaired), and FUSE threads come here for every read.
        let manifest = match self.store.get_bytes(MANIFESTS, &key) {
            Ok(Some(bytes)) => Manifest::decode(&bytes).unwrap_or_default(),
            Ok(None) => Manifest::default(),
            Err(e) => {
                tracing::warn!("cannot read a manifest: {e}");
                Manifest::default()
            }
        };
        let fresh = Arc::new(VersionState {
            key: key.clone(),
            manifest: Mutex::new(manifest),
            volatile: Mutex::new(HashSet::new()),
            volatile_tried: Mutex::new(None),
            in_flight: Arc::new(InFlight::default()),
            slow_origin: AtomicBool::new(false),
            landing: Mutex::default(),
            landed: watch::channel(0).0,
        });
        // Another thread may have made it meanwhile: there is one state a version.
        versions().insert(key, fresh)
    }

    /// Bytes of `version` that are cached on disk (for the `user.musicfs.cached`
    /// attribute): chunks written, and still there with their length.
    pub fn cached_bytes(&self, version: &FileVersion) -> u64 {
        if self.whole.has(version) {
            return version.size;
        }
        self.cached_chunk_bytes(version)
    }

    /// Bytes of `version` in chunks on disk, whole copies aside (a pin keeps
    /// chunks; a whole copy may be trimmed any time).
    pub fn cached_chunk_bytes(&self, version: &FileVersion) -> u64 {
        let state = self.state(version);
        let mut on_disk = state.on_disk();
        on_disk.retain_chunks(|id, len| self.chunks.holds(id, len));
        on_disk.cached_bytes(version.size)
    }

    /// The chunks `version`'s manifest names now (cached on disk or held in
    /// memory until the disk takes them).
    pub fn chunks_of(&self, version: &FileVersion) -> Vec<ChunkId> {
        let state = self.state(version);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        manifest.chunk_ids().collect()
    }

    /// Drops from `version`'s manifest the chunks that are no longer on disk
    /// (evicted, or cut off) though they may still be served from memory, so
    /// that a read for [`Purpose::Pin`] fetches them again.
    pub fn forget_lost_chunks(&self, version: &FileVersion) {
        let state = self.state(version);
        let mut manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        let volatile = state.volatile.lock().unwrap_or_else(|p| p.into_inner());
        manifest.retain_chunks(|id, len| volatile.contains(id) || self.chunks.holds(id, len));
    }

    /// Makes `ids` the chunks of pinned files (see
    /// [`ChunkStore::set_pinned`]), and records the change for the next start.
    pub fn set_pinned(&self, ids: HashSet<ChunkId>) {
        let before = self.chunks.set_pinned(ids.clone());
        let gone: Vec<&ChunkId> = before.difference(&ids).collect();
        let new: Vec<&ChunkId> = ids.difference(&before).collect();
        self.record_pinned(&new, &gone);
    }

    /// Adds `ids` to the chunks of pinned files, and records them.
    pub fn add_pinned(&self, ids: &[ChunkId]) {
        self.chunks.add_pinned(ids);
        self.record_pinned(&ids.iter().collect::<Vec<_>>(), &[]);
    }

    fn record_pinned(&self, new: &[&ChunkId], gone: &[&ChunkId]) {
        if new.is_empty() && gone.is_empty() {
            return;
        }
        let recorded = self.store.write(false, |txn| {
            let mut table = txn.open_table(PINNED_CHUNKS)?;
            for id in gone {
                table.remove(id.0.as_slice())?;
            }
            for id in new {
                table.insert(id.0.as_slice(), ())?;
            }
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::warn!(
                "cannot record which chunks are pinned (worked out again at start): {e}"
            );
        }
    }

    /// `version`'s whole copy, opened for reading, if it has one (see
    /// [`super::whole_copies`]).
    pub fn whole_copy(&self, version: &FileVersion) -> Option<std::fs::File> {
        self.whole.open_copy(version)
    }

    /// Whether `version` has a whole copy.
    pub fn has_whole_copy(&self, version: &FileVersion) -> bool {
        self.whole.has(version)
    }

    /// Whether every byte of `version` is in chunks on disk, as far as its
    /// manifest knows (the chunks are checked when read).
    pub fn fully_cached(&self, version: &FileVersion) -> bool {
        self.whole_plan(version).is_some()
    }

    /// The chunks that make `version` from its first byte to its last, if its
    /// manifest has them all on disk: (chunk, bytes to skip, bytes to take).
    fn whole_plan(&self, version: &FileVersion) -> Option<Vec<(ChunkId, u32, u32)>> {
        let plan = self.state(version).on_disk().plan(0, version.size);
        plan.into_iter()
            .map(|span| match span {
                Span::Cached { id, skip, len } => Some((id, skip, len)),
                Span::Missing { .. } => None,
            })
            .collect()
    }

    /// Makes `version`'s whole copy from its chunks, each verified as it is
    /// read. True if it was made; false if it has one already, one is being
    /// made, it is not all cached, it would not fit in the limit, or a chunk
    /// turned out to be gone.
    pub fn make_whole_copy(&self, version: &FileVersion) -> std::io::Result<bool> {
        if self.whole.has(version) {
            return Ok(false);
        }
        // Looked at before any copy is trimmed to make room for this one.
        let Some(plan) = self.whole_plan(version) else {
            return Ok(false);
        };
        let limit = self.chunks.limit();
        // Copies go before chunks: make room among the copies, or make none.
        // Pinned chunks are beyond the limit.
        let room = limit.saturating_sub(self.chunks.evictable_bytes());
        if version.size > room || !self.whole.room_for(version.size) {
            return Ok(false);
        }
        self.whole.trim(room - version.size);
        let Some(mut making) = self.whole.start(version)? else {
            return Ok(false);
        };
        for (id, skip, len) in plan {
            let bytes = match self.hot.get(&id) {
                Some(bytes) => bytes,
                None => match self.chunks.get(&id) {
                    Some(bytes) => Arc::new(bytes),
                    None => return Ok(false),
                },
            };
            let Some(piece) = bytes.get(skip as usize..(skip + len) as usize) else {
                return Ok(false);
            };
            making.write(piece)?;
        }
        making.finish(version.size)?;
        Ok(true)
    }

    /// A chunk's bytes, kept in the hot set if `keep_hot` (a scan's tag reads
    /// are not: they read each file once, and at 100,000 tracks filled the
    /// hot set's 32 MB for nothing).
    fn chunk_bytes(&self, id: &ChunkId, keep_hot: bool) -> Option<Arc<Vec<u8>>> {
        if let Some(bytes) = self.hot.get(id) {
            return Some(bytes);
        }
        let bytes = Arc::new(self.chunks.get(id)?);
        if keep_hot {
            self.hot.put(*id, bytes.clone());
        }
        Some(bytes)
    }

    /// Assembles `[start, end)` from the cache (and from bytes a stream has
    /// received and not yet stored), or says which gaps are missing.
    /// Chunks that turn out to be gone are dropped from the manifest.
    pub(in crate::cache) fn assemble(
        &self,
        state: &VersionState,
        start: u64,
        end: u64,
        keep_hot: bool,
    ) -> Result<Vec<u8>, Vec<(u64, u64)>> {
        // What is missing from the manifest is looked for among the bytes
        // that arrived under the manifest's lock: a batch stored meanwhile
        // leaves them there only once it is in the manifest, so a byte is
        // always seen in one or the other.
        let (plan, arrived) = {
            let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let plan = manifest.plan(start, end);
            let landing = state.landing.lock().unwrap_or_else(|p| p.into_inner());
            let arrived: Vec<_> = plan
                .iter()
                .map(|span| match *span {
                    Span::Missing { start, end } => landing.holding_all(start, end),
                    Span::Cached { .. } => None,
                })
                .collect();
            (plan, arrived)
        };
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut gaps = Vec::new();
        let mut pos = start;
        for (span, arrived) in plan.into_iter().zip(arrived) {
            match span {
                Span::Cached { id, skip, len } => {
                    // A whole chunk not hot is read straight into the answer
                    // (a sequential reader takes it once): most of a large
                    // read. The ends of the range go through the hot set.
                    if gaps.is_empty()
                        && skip == 0
                        && !self.hot.contains(&id)
                        && self.chunks.get_into(&id, len, &mut out)
                    {
                        pos += len as u64;
                        continue;
                    }
                    match self.chunk_bytes(&id, keep_hot) {
                        Some(bytes) if bytes.len() >= (skip + len) as usize => {
                            if gaps.is_empty() {
                                out.extend_from_slice(&bytes[skip as usize..(skip + len) as usize]);
                            }
                        }
                        _ => {
                            self.hot.remove(&id);
                            state
                                .manifest
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove_chunk(&id);
                            state
                                .volatile
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                            gaps.push((pos, pos + len as u64));
                        }
                    }
                    pos += len as u64;
                }
                Span::Missing { start, end } => {
                    // Arrived and not yet stored: served as it came.
                    match arrived {
                        Some(parts) if gaps.is_empty() => {
                            for (bytes, from, to) in parts {
                                out.extend_from_slice(&bytes[from..to]);
                            }
                        }
                        Some(_) => {}
                        None => gaps.push((start, end)),
                    }
                    pos = end;
                }
            }
        }
        if gaps.is_empty() {
            self.store_volatile(state);
            Ok(out)
        } else {
            Err(gaps)
        }
    }

    /// Tries again (at most every [`VOLATILE_RETRY`]) to write the chunks of
    /// `state` that a full disk kept in memory, and records those that made it.
    fn store_volatile(&self, state: &VersionState) {
        let ids: Vec<ChunkId> = {
            let volatile = state.volatile.lock().unwrap_or_else(|p| p.into_inner());
            if volatile.is_empty() {
                return;
            }
            let mut tried = state
                .volatile_tried
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if tried.is_some_and(|at| at.elapsed() < VOLATILE_RETRY) {
                return;
            }
            *tried = Some(Instant::now());
            volatile.iter().copied().collect()
        };
        let stored: Vec<ChunkId> = ids
            .into_iter()
            .filter(|id| {
                self.hot
                    .get(id)
                    .is_some_and(|bytes| self.chunks.put(id, &bytes, Keep::Audio).is_ok())
            })
            .collect();
        if stored.is_empty() {
            return;
        }
        {
            let mut volatile = state.volatile.lock().unwrap_or_else(|p| p.into_inner());
            for id in &stored {
                volatile.remove(id);
            }
        }
        let encoded = state.on_disk().encode();
        let written = self.store.write(false, |txn| {
            txn.open_table(MANIFESTS)?
                .insert(state.key.as_str(), encoded.as_slice())?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!("cannot record a manifest: {e}");
        }
    }

    /// [`CachedFile::read_cached`](super::cached_file::CachedFile::read_cached)
    /// of `version`.
    pub fn read_cached(
        self: &Arc<Self>,
        version: &FileVersion,
        offset: u64,
        len: u32,
    ) -> Option<Vec<u8>> {
        self.file(version).read_cached(offset, len)
    }

    /// Bytes of `[start, end)` of `version` in the manifest (for tests and
    /// tools that check what a read left cached).
    pub fn cached_bytes_in(&self, version: &FileVersion, start: u64, end: u64) -> u64 {
        let state = self.state(version);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        manifest
            .plan(start, end.min(version.size))
            .iter()
            .map(|span| match span {
                Span::Cached { len, .. } => *len as u64,
                Span::Missing { .. } => 0,
            })
            .sum()
    }

    /// Stores `bytes` as if fetched at `base` (for benchmarks and tools that fill
    /// the cache without an origin).
    pub async fn seed(&self, version: &FileVersion, base: u64, bytes: Vec<u8>) {
        let state = self.state(version);
        let pieces = chunk(&bytes);
        let stored = self.store_pieces(&state, base, &bytes, &pieces, Purpose::Audio, None);
        self.record_manifest(&state, &stored);
    }

    pub(in crate::cache) fn mark_tag_range(&self, state: &VersionState, start: u64, end: u64) {
        let plan = state
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plan(start, end);
        for span in plan {
            if let Span::Cached { id, .. } = span {
                self.chunks.mark_tag(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::versions::IDLE_VERSIONS;

    /// A version of a file `f.flac` of `size` bytes.
    fn file_of(size: usize) -> FileVersion {
        FileVersion {
            origin: "o".into(),
            path: "f.flac".into(),
            size: size as u64,
            mtime_ns: 1,
            version: None,
        }
    }

    /// Regression: a scan's tag reads filled the hot set (32 MB at 100,000
    /// tracks) with chunks read once.
    #[tokio::test]
    async fn tag_reads_leave_the_hot_set_to_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let version = file_of(bytes.len());
        let cache = Arc::new(ContentCache::open(dir.path(), 10_000_000, store).unwrap());
        cache.seed(&version, 0, bytes.clone()).await;
        cache.hot.clear();
        let read = |purpose| cache.read(&version, None, 0, 200_000, 200_000, purpose);
        assert_eq!(read(Purpose::Tag).await.unwrap(), bytes[..200_000]);
        assert_eq!(cache.hot.bytes(), 0, "a tag read kept its chunks hot");
        assert_eq!(read(Purpose::Audio).await.unwrap(), bytes[..200_000]);
        assert!(
            cache.hot.bytes() > 0,
            "a player's read keeps its chunks hot"
        );
    }

    /// Regression: a pin took a whole copy for its chunks, and the copy can
    /// be trimmed at any time.
    #[tokio::test]
    async fn chunk_bytes_do_not_count_a_whole_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let version = file_of(bytes.len());
        let cache = ContentCache::open(dir.path(), 10_000_000, store).unwrap();
        cache.seed(&version, 0, bytes.clone()).await;
        assert!(cache.make_whole_copy(&version).unwrap());
        // The chunks go (their packs cut short).
        for pack in std::fs::read_dir(dir.path().join("chunks")).unwrap() {
            let pack = std::fs::OpenOptions::new()
                .write(true)
                .open(pack.unwrap().path());
            pack.unwrap().set_len(0).unwrap();
        }
        assert_eq!(cache.cached_bytes(&version), bytes.len() as u64);
        assert_eq!(cache.cached_chunk_bytes(&version), 0);
    }

    #[tokio::test]
    async fn a_whole_copy_is_made_from_a_fully_cached_version_and_fits_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let version = file_of(bytes.len());
        let cache = ContentCache::open(dir.path(), 700_000, store.clone()).unwrap();
        cache.seed(&version, 0, bytes[..100_000].to_vec()).await;
        assert!(!cache.fully_cached(&version));
        assert!(!cache.make_whole_copy(&version).unwrap(), "not all cached");
        cache.seed(&version, 0, bytes.clone()).await;
        assert!(cache.fully_cached(&version));
        assert!(cache.make_whole_copy(&version).unwrap());
        assert!(!cache.make_whole_copy(&version).unwrap(), "made once");
        let mut copy = Vec::new();
        std::io::Read::read_to_end(&mut cache.whole_copy(&version).unwrap(), &mut copy).unwrap();
        assert_eq!(copy, bytes);
        assert_eq!(cache.stats().whole_copy_bytes, bytes.len() as u64);
        drop(cache);

        // Chunks and copies together stay under the limit: no room, no copy.
        let tight = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(tight.path(), 500_000, store).unwrap();
        cache.seed(&version, 0, bytes.clone()).await;
        assert!(!cache.make_whole_copy(&version).unwrap());
        assert!(cache.whole_copy(&version).is_none());
    }

    #[tokio::test]
    async fn idle_version_states_go_and_come_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let cache = Arc::new(ContentCache::open(dir.path(), u64::MAX, store).unwrap());
        let version = |i: usize| FileVersion {
            origin: "o".into(),
            path: format!("{i}.flac"),
            size: 1000,
            mtime_ns: 1,
            version: None,
        };
        let held = cache.state(&version(0));
        let fetching = cache.state(&version(1));
        let claim = fetching.in_flight.claim_uncovered(0, 10).unwrap();
        drop(fetching);
        let many = 3 * IDLE_VERSIONS;
        for i in 2..many {
            cache.seed(&version(i), 0, vec![i as u8; 1000]).await;
        }
        let kept = cache.versions.lock().unwrap().map.len();
        assert!(kept <= 2 * IDLE_VERSIONS, "{kept} of {many} states kept");
        assert!(
            Arc::ptr_eq(&held, &cache.state(&version(0))),
            "a held state stays"
        );
        assert_eq!(
            Arc::strong_count(&cache.state(&version(1)).in_flight),
            2,
            "a state with a fetch running stays"
        );
        drop(claim);
        // A dropped state is read again from the manifest in the store.
        assert_eq!(cache.cached_bytes(&version(2)), 1000);
        assert_eq!(
            cache.read_cached(&version(2), 0, 10).unwrap(),
            vec![2u8; 10]
        );
    }
}
