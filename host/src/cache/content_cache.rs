//! The read path: serve a byte range of a file version from chunks, fetching what is
//! missing from the origin with one bounded ranged read per gap.
//!
//! Two speeds:
//! - [`ContentCache::read_cached`] is synchronous and touches only the cache: the
//!   FUSE thread calls it first, and a warm read never leaves that thread.
//! - [`ContentCache::read`] is the async slow path. It fetches each gap from its
//!   start for at least `window` bytes (never the whole file, never past the next
//!   cached byte), chunks the fetched bytes from their own start, stores the chunks
//!   and the manifest, and then serves the range from the cache like the fast path.
//!   Fetches are claimed by range ([`super::in_flight`]): two readers of one gap
//!   fetch it once, and a gap that a read-ahead is fetching is waited for.
//! - [`ContentCache::fetch_ahead`] is read-ahead: it fetches the next bytes that
//!   nobody has or is fetching, so several windows of one file can be in flight.
//!
//! Lock order: a version's manifest, then its in-flight fetches (never the other
//! way round); the map of versions is never held across a store call.
//!
//! Memory per fetch is bounded by the window: at most [`FAST_ORIGIN_WINDOW`], or
//! [`MAX_WINDOW`] for a file whose last fetch took longer than [`SLOW_FETCH`]
//! (there each request's fixed cost is worth amortising). A chunk that is
//! missing or fails verification is dropped from the manifest and fetched again;
//! nothing unverified is ever served.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use origin_api::{OriginError, OriginResult};
use redb::ReadableTable;

use super::chunk_store::ChunkStore;
use super::chunker::{chunk, ChunkId};
use super::hot_chunks::HotChunks;
use super::in_flight::{Claim, FetchGuard, InFlight};
use super::manifest::{FileVersion, Manifest, Span};
use super::source::Source;
use crate::store::{Store, MANIFESTS, TAG_CHUNKS};

/// The largest single fetch from an origin.
pub const MAX_WINDOW: u32 = 32 << 20;
/// The largest single fetch from an origin that answers fast.
const FAST_ORIGIN_WINDOW: u32 = 8 << 20;
/// A fetch slower than this (plus its transfer) marks its origin as one where each
/// request has a fixed cost.
const SLOW_FETCH: Duration = Duration::from_millis(20);
/// Rounds of fetching before a read gives up (chunks kept vanishing under it).
const ROUNDS: usize = 4;
/// How often chunks held only in memory are tried on disk again.
const VOLATILE_RETRY: Duration = Duration::from_secs(1);
/// Verified chunks kept in memory for sequential readers.
const HOT_BYTES: usize = 32 << 20;

/// What the bytes are for: tag chunks are evicted last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Audio data a reader asked for.
    Audio,
    /// Audio data fetched ahead of a sequential reader.
    ReadAhead,
    /// A tag head or tail read by the scanner.
    Tag,
}

struct VersionState {
    key: String,
    /// What is cached, in memory: the chunks on disk, plus [`Self::volatile`].
    manifest: Mutex<Manifest>,
    /// Chunks in the manifest that could not be written (a full disk): served
    /// from memory while they last, never recorded on disk or counted as cached.
    volatile: Mutex<HashSet<ChunkId>>,
    /// When writing [`Self::volatile`] chunks was last tried.
    volatile_tried: Mutex<Option<Instant>>,
    in_flight: Arc<InFlight>,
    /// Whether the last fetch of this version was slow (see [`SLOW_FETCH`]).
    slow_origin: AtomicBool,
}

impl VersionState {
    /// The manifest without the chunks only held in memory: what is on disk.
    fn on_disk(&self) -> Manifest {
        let mut manifest = self
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for id in self
            .volatile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            manifest.remove_chunk(id);
        }
        manifest
    }

    /// The largest fetch worth making: windows past [`FAST_ORIGIN_WINDOW`] only pay
    /// where each request has a cost to amortise (a remote store); on a fast origin
    /// they would only hold more memory.
    fn window_cap(&self) -> u64 {
        if self.slow_origin.load(Ordering::Relaxed) {
            MAX_WINDOW as u64
        } else {
            FAST_ORIGIN_WINDOW as u64
        }
    }
}

/// Figures for `musicfs status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheStats {
    /// Bytes stored.
    pub bytes: u64,
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
    store: Arc<Store>,
    chunks: ChunkStore,
    hot: HotChunks,
    versions: Mutex<HashMap<String, Arc<VersionState>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ContentCache {
    /// Opens the cache in `cache_dir`, holding at most `limit` bytes of chunks.
    pub fn open(cache_dir: &Path, limit: u64, store: Arc<Store>) -> std::io::Result<ContentCache> {
        let tags: HashSet<ChunkId> = store
            .read(|txn| {
                let table = txn.open_table(TAG_CHUNKS)?;
                let mut ids = HashSet::new();
                for row in table.iter()? {
                    let (key, _) = row?;
                    if let Ok(bytes) = <[u8; 32]>::try_from(key.value()) {
                        ids.insert(ChunkId(bytes));
                    }
                }
                Ok(ids)
            })
            .map_err(std::io::Error::other)?;
        Ok(ContentCache {
            chunks: ChunkStore::open(&cache_dir.join("chunks"), limit, &tags)?,
            store,
            hot: HotChunks::new(HOT_BYTES),
            versions: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Size, limit and count.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes: self.chunks.total_bytes(),
            limit: self.chunks.limit(),
            chunks: self.chunks.chunk_count(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn state(&self, version: &FileVersion) -> Arc<VersionState> {
        let key = version.key();
        let versions = || self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = versions().get(&key) {
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
        });
        // Another thread may have made it meanwhile: there is one state a version.
        versions().entry(key).or_insert(fresh).clone()
    }

    /// Bytes of `version` that are cached on disk (for the `user.musicfs.cached`
    /// attribute): chunks written, and still there with their length.
    pub fn cached_bytes(&self, version: &FileVersion) -> u64 {
        let state = self.state(version);
        let mut on_disk = state.on_disk();
        on_disk.retain_chunks(|id, len| self.chunks.holds(id, len));
        on_disk.cached_bytes(version.size)
    }

    fn chunk_bytes(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        if let Some(bytes) = self.hot.get(id) {
            return Some(bytes);
        }
        let bytes = Arc::new(self.chunks.get(id)?);
        self.hot.put(*id, bytes.clone());
        Some(bytes)
    }

    /// Assembles `[start, end)` from the cache, or says which gaps are missing.
    /// Chunks that turn out to be gone are dropped from the manifest.
    fn assemble(
        &self,
        state: &VersionState,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, Vec<(u64, u64)>> {
        let plan = state
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plan(start, end);
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut gaps = Vec::new();
        let mut pos = start;
        for span in plan {
            match span {
                Span::Cached { id, skip, len } => {
                    match self.chunk_bytes(&id) {
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
                    gaps.push((start, end));
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
                    .is_some_and(|bytes| self.chunks.put(id, &bytes, false).is_ok())
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

    /// The fast path: `[offset, offset + len)` (clipped to the file) if every byte is
    /// cached, else `None`. Never touches an origin.
    pub fn read_cached(&self, version: &FileVersion, offset: u64, len: u32) -> Option<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(version.size);
        if offset >= end {
            return Some(Vec::new());
        }
        let bytes = self.assemble(&self.state(version), offset, end).ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    /// The full path: serves from the cache, fetching each gap from `origin` (at
    /// least `window` bytes from the gap's start, never past the next cached byte).
    /// With no origin, an uncached range is an `Unavailable` error at once.
    pub async fn read(
        &self,
        version: &FileVersion,
        origin: Option<&dyn Source>,
        offset: u64,
        len: u32,
        window: u32,
        purpose: Purpose,
    ) -> OriginResult<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(version.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let state = self.state(version);
        // Each round fetches (or waits for) every gap; a chunk lost between rounds,
        // or a gap that another fetch only partly covered, costs a round.
        for round in 0..ROUNDS {
            let gaps = match self.assemble(&state, offset, end) {
                Ok(bytes) => {
                    if purpose == Purpose::Tag {
                        self.mark_tag_range(&state, offset, end);
                    }
                    return Ok(bytes);
                }
                Err(gaps) => gaps,
            };
            if round == 0 && purpose == Purpose::Audio {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            let origin = origin.ok_or_else(|| {
                OriginError::unavailable(format!(
                    "{}: not cached and origin `{}` is not available",
                    version.path, version.origin
                ))
            })?;
            for (gap_start, gap_end) in gaps {
                let want = (gap_end - gap_start)
                    .max(window as u64)
                    .min(state.window_cap());
                let limit = gap_start.saturating_add(want).min(version.size);
                // Look and claim under the manifest's lock: a fetch records its
                // bytes there before it gives up its claim, so bytes a fetch
                // finished since this round looked are seen either as cached
                // or as being fetched, never as neither (which fetched them twice).
                let claim = {
                    let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
                    if manifest.first_missing(gap_start, gap_end) != Some(gap_start) {
                        // Cached since: the next round looks again.
                        continue;
                    }
                    let fetch_end = manifest.missing_until(gap_start, limit.max(gap_end));
                    state.in_flight.claim(gap_start, fetch_end)
                };
                match claim {
                    // A read-ahead (say) is fetching these bytes. If it failed (it
                    // hung until the deadline, say), do not try the same origin
                    // again: the caller's failover moves on at once, so a hung
                    // origin costs a reader one deadline, not two.
                    Claim::Wait(waiter) => {
                        if !waiter.succeeded().await {
                            if let Ok(bytes) = self.assemble(&state, offset, end) {
                                return Ok(bytes);
                            }
                            return Err(OriginError::unavailable(format!(
                                "origin `{}` failed the fetch this read waited for",
                                version.origin
                            )));
                        }
                    }
                    Claim::Fetch(guard) => {
                        let fetched = self.fetch(&state, version, origin, &guard, purpose).await;
                        guard.finish(fetched.is_ok());
                        fetched?;
                    }
                }
            }
        }
        Err(OriginError::other(format!(
            "{}: the cache kept losing chunks",
            version.path
        )))
    }

    /// Read-ahead: fetches up to `window` bytes from the first byte of
    /// `[from, until)` that is neither cached nor being fetched. Returns at once if
    /// there is none.
    pub async fn fetch_ahead(
        &self,
        version: &FileVersion,
        origin: &dyn Source,
        from: u64,
        until: u64,
        window: u32,
    ) -> OriginResult<()> {
        let state = self.state(version);
        let window = (window as u64).min(state.window_cap());
        // Looked for and claimed under the manifest's lock (see `read`).
        let guard = {
            let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let Some((start, end)) =
                unfetched_run(&manifest, &state.in_flight, from, until.min(version.size))
            else {
                return Ok(());
            };
            state.in_flight.claim_uncovered(start, end, window)
        };
        let Some(guard) = guard else {
            return Ok(());
        };
        let fetched = self
            .fetch(&state, version, origin, &guard, Purpose::ReadAhead)
            .await;
        guard.finish(fetched.is_ok());
        fetched
    }

    /// The first byte of `[from, until)` that is neither in the manifest nor being
    /// fetched: where a read-ahead would start, if anywhere.
    pub fn first_unfetched(&self, version: &FileVersion, from: u64, until: u64) -> Option<u64> {
        let state = self.state(version);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        unfetched_run(&manifest, &state.in_flight, from, until.min(version.size))
            .map(|(start, _)| start)
    }

    /// One ranged read of the claimed bytes, chunked and stored.
    async fn fetch(
        &self,
        state: &Arc<VersionState>,
        version: &FileVersion,
        origin: &dyn Source,
        claim: &FetchGuard,
        purpose: Purpose,
    ) -> OriginResult<()> {
        let len = (claim.end - claim.start) as u32;
        let started = Instant::now();
        // The version recorded: a file rewritten since answers Changed, and its
        // new bytes never join the chunks of the old version.
        let bytes = origin
            .read_version(&version.path, claim.start, len, version.version.as_deref())
            .await?;
        // Moving the bytes may take a while on a busy machine: allow 1 ns a byte
        // (1 GB/s) on top, so that only a fixed cost per request counts as slow.
        let allowance = SLOW_FETCH + Duration::from_nanos(len as u64);
        state
            .slow_origin
            .store(started.elapsed() > allowance, Ordering::Relaxed);
        if bytes.is_empty() {
            return Err(OriginError::other(format!(
                "{}: origin `{}` returned no data at offset {} of {}",
                version.path, version.origin, claim.start, version.size
            )));
        }
        self.store_fetched(state, claim.start, bytes, purpose).await
    }

    /// Stores `bytes` as if fetched at `base` (for benchmarks and tools that fill
    /// the cache without an origin).
    pub async fn seed(&self, version: &FileVersion, base: u64, bytes: Vec<u8>) {
        let state = self.state(version);
        let _ = self
            .store_fetched(&state, base, bytes, Purpose::Audio)
            .await;
    }

    /// Chunks and stores bytes fetched at `base`, and records them in the manifest.
    async fn store_fetched(
        &self,
        state: &Arc<VersionState>,
        base: u64,
        bytes: Vec<u8>,
        purpose: Purpose,
    ) -> OriginResult<()> {
        let tag = purpose == Purpose::Tag;
        // Chunking and hashing a fetch (at most MAX_WINDOW bytes, a few ms) runs on
        // the task itself: the scanner calls this from a blocking thread, where
        // `block_in_place` is not available.
        let pieces = chunk(&bytes);
        let mut unwritten = Vec::new();
        for piece in &pieces {
            let data = &bytes[piece.offset..piece.offset + piece.len];
            if let Err(e) = self.chunks.put(&piece.id, data, tag) {
                if unwritten.is_empty() {
                    tracing::warn!("cannot store a chunk, serving it from memory: {e}");
                }
                unwritten.push(piece.id);
            }
            self.hot.put(piece.id, Arc::new(data.to_vec()));
        }
        let encoded = {
            let mut manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
            manifest.insert(base, &pieces);
            let mut volatile = state.volatile.lock().unwrap_or_else(|p| p.into_inner());
            volatile.extend(unwritten.iter().copied());
            if volatile.is_empty() {
                manifest.encode()
            } else {
                drop((manifest, volatile));
                state.on_disk().encode()
            }
        };
        let key = state.key.clone();
        let tag_ids: Vec<ChunkId> = if tag {
            pieces
                .iter()
                .map(|p| p.id)
                .filter(|id| !unwritten.contains(id))
                .collect()
        } else {
            Vec::new()
        };
        let written = self.store.write(false, |txn| {
            txn.open_table(MANIFESTS)?
                .insert(key.as_str(), encoded.as_slice())?;
            let mut tags = txn.open_table(TAG_CHUNKS)?;
            for id in &tag_ids {
                tags.insert(id.0.as_slice(), ())?;
            }
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!("cannot record a manifest: {e}");
        }
        Ok(())
    }

    fn mark_tag_range(&self, state: &VersionState, start: u64, end: u64) {
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

/// The first byte of `[from, until)` neither cached nor being fetched, and the end
/// of the missing run it lies in.
fn unfetched_run(
    manifest: &Manifest,
    in_flight: &InFlight,
    from: u64,
    until: u64,
) -> Option<(u64, u64)> {
    let mut at = from;
    while let Some(gap_start) = manifest.first_missing(at, until) {
        let gap_end = manifest.missing_until(gap_start, until);
        if let Some(unclaimed) = in_flight.first_uncovered(gap_start, gap_end) {
            return Some((unclaimed, gap_end));
        }
        at = gap_end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_ahead_starts_at_the_first_byte_nobody_has_or_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let cache = ContentCache::open(dir.path(), u64::MAX, store).unwrap();
        let version = FileVersion {
            origin: "o".into(),
            path: "f.flac".into(),
            size: 1 << 20,
            mtime_ns: 1,
            version: None,
        };
        let size = version.size;
        assert_eq!(cache.first_unfetched(&version, 0, size), Some(0));
        cache.seed(&version, 0, vec![7u8; 100_000]).await;
        assert_eq!(cache.first_unfetched(&version, 0, size), Some(100_000));
        assert_eq!(cache.first_unfetched(&version, 0, 100_000), None);

        let state = cache.state(&version);
        let running = state
            .in_flight
            .claim_uncovered(100_000, size, 200_000)
            .unwrap();
        assert_eq!(
            cache.first_unfetched(&version, 50_000, size),
            Some(300_000),
            "bytes being fetched count as had"
        );
        drop(running);
        assert_eq!(cache.first_unfetched(&version, 50_000, size), Some(100_000));
        assert_eq!(cache.first_unfetched(&version, 0, u64::MAX), Some(100_000));
    }
}
