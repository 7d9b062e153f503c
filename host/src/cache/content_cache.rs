//! The read path: serve a byte range of a file version from chunks, streaming
//! what is missing from the origin.
//!
//! Two speeds:
//! - [`ContentCache::read_cached`] is synchronous and touches only the cache: the
//!   FUSE thread calls it first, and a warm read never leaves that thread.
//! - [`ContentCache::read`] is the async slow path. Each gap is fetched by one
//!   stream from its start to the next cached byte, taken in by
//!   [`super::ingest`] (chunked from the stream's own start and stored as it
//!   arrives, paced by its readers), and the read is served from the cache like
//!   the fast path as soon as its own bytes are stored. Fetches are claimed by
//!   range ([`super::in_flight`]): two readers of one gap fetch it once, a gap
//!   that a running stream is about to bring is waited for, and a seek far past
//!   a stream's next byte cuts that stream short.
//! - [`ContentCache::stream_ahead`] is read-ahead: it lets the streams ahead of
//!   a sequential reader run on, or starts one at the first byte that nobody
//!   has or is fetching.
//!
//! Lock order: a version's manifest, then its volatile set, then its in-flight
//! fetches (never the other way round); the map of versions is never held
//! across a store call, and takes a version's lock only if it is free.
//!
//! How far a stream runs ahead of its reader is the reader's window, at most
//! [`FAST_ORIGIN_WINDOW`], or [`MAX_WINDOW`] for a file whose last stream took
//! longer than [`SLOW_FETCH`] to start (a remote store, where hiding that delay
//! is worth more bytes ahead). Memory per stream is bounded apart from that (see
//! [`super::ingest`]). A chunk that is missing or fails verification is dropped
//! from the manifest and fetched again; nothing unverified is ever served.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use origin_api::{OriginError, OriginResult};
use redb::ReadableTable;
use tokio::sync::watch;

use super::chunk_store::{ChunkStore, Keep, KeptChunks};
use super::chunker::{chunk, ChunkId};
use super::hot_chunks::HotChunks;
use super::in_flight::{Claim, FetchGuard, FetchWaiter, InFlight};
use super::manifest::{FileVersion, Manifest, Span};
use super::source::Source;
use super::whole_copies::WholeCopies;
use crate::store::{Store, MANIFESTS, PINNED_CHUNKS, TAG_CHUNKS};

/// The largest single fetch from an origin.
pub const MAX_WINDOW: u32 = 32 << 20;
/// The largest single fetch from an origin that answers fast.
const FAST_ORIGIN_WINDOW: u32 = 8 << 20;
/// A fetch slower than this (plus its transfer) marks its origin as one where each
/// request has a fixed cost.
pub(super) const SLOW_FETCH: Duration = Duration::from_millis(20);
/// Rounds of fetching before a read gives up (chunks kept vanishing under it).
const ROUNDS: usize = 4;
/// How often chunks held only in memory are tried on disk again.
const VOLATILE_RETRY: Duration = Duration::from_secs(1);
/// Verified chunks kept in memory for sequential readers.
const HOT_BYTES: usize = 32 << 20;
/// Version states kept before idle ones are dropped (see [`Versions`]).
const IDLE_VERSIONS: usize = 1024;

/// What the bytes are for: tag chunks are evicted last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Audio data a reader asked for.
    Audio,
    /// Audio data a reader asked for right after a seek: where it goes on
    /// from there is unknown, so its stream's first request asks only for
    /// what it wants (see `super::ingest`).
    Seek,
    /// Audio data fetched ahead of a sequential reader.
    ReadAhead,
    /// A tag head or tail read by the scanner.
    Tag,
    /// Audio data fetched to keep a pinned file offline (see `crate::pins`).
    Pin,
}

pub(super) struct VersionState {
    pub(super) key: String,
    /// What is cached, in memory: the chunks on disk, plus [`Self::volatile`].
    pub(super) manifest: Mutex<Manifest>,
    /// Chunks in the manifest that could not be written (a full disk): served
    /// from memory while they last, never recorded on disk or counted as cached.
    pub(super) volatile: Mutex<HashSet<ChunkId>>,
    /// When writing [`Self::volatile`] chunks was last tried.
    volatile_tried: Mutex<Option<Instant>>,
    pub(super) in_flight: Arc<InFlight>,
    /// Whether the last fetch of this version was slow to start (see
    /// [`SLOW_FETCH`]).
    pub(super) slow_origin: AtomicBool,
    /// Bumped whenever bytes are added to the manifest: readers waiting for a
    /// running fetch look again.
    pub(super) landed: watch::Sender<u64>,
}

impl VersionState {
    /// Held by nobody but the map of versions, fetching nothing, and with
    /// nothing kept only in memory: dropping it loses nothing.
    fn is_idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
            && Arc::strong_count(&self.in_flight) == 1
            // Taken only if free: the map's lock comes before no other.
            && self.volatile.try_lock().is_ok_and(|v| v.is_empty())
    }

    /// The manifest without the chunks only held in memory: what is on disk.
    pub(super) fn on_disk(&self) -> Manifest {
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
    pub(super) fn window_cap(&self) -> u64 {
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

/// The state of every version in use, by key.
///
/// A state is only a cache of the version's manifest in the store plus what
/// is happening to it now, so one nobody holds, with no fetch running and
/// nothing held only in memory, can go and be read again when needed. Without
/// that, a scan that reads the tags of 100,000 files kept 100,000 states
/// (about 160 MB in heaptrack). Idle states are dropped whenever the map has doubled since
/// the last sweep, so the cost of sweeping stays a constant per state made.
#[derive(Default)]
struct Versions {
    map: HashMap<String, Arc<VersionState>>,
    sweep_at: usize,
}

impl Versions {
    /// The state for `key`: the one there, else `fresh`.
    fn insert(&mut self, key: String, fresh: Arc<VersionState>) -> Arc<VersionState> {
        if self.map.len() >= self.sweep_at.max(IDLE_VERSIONS) {
            self.map.retain(|_, state| !state.is_idle());
            self.sweep_at = 2 * self.map.len();
        }
        self.map.entry(key).or_insert(fresh).clone()
    }
}

/// The content cache.
pub struct ContentCache {
    pub(super) store: Arc<Store>,
    pub(super) chunks: ChunkStore,
    pub(super) hot: HotChunks,
    whole: WholeCopies,
    versions: Mutex<Versions>,
    hits: AtomicU64,
    misses: AtomicU64,
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
        })
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

    fn state(&self, version: &FileVersion) -> Arc<VersionState> {
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

    /// Assembles `[start, end)` from the cache, or says which gaps are missing.
    /// Chunks that turn out to be gone are dropped from the manifest.
    fn assemble(
        &self,
        state: &VersionState,
        start: u64,
        end: u64,
        keep_hot: bool,
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

    /// The fast path: `[offset, offset + len)` (clipped to the file) if every byte is
    /// cached, else `None`. Never touches an origin.
    pub fn read_cached(&self, version: &FileVersion, offset: u64, len: u32) -> Option<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(version.size);
        if offset >= end {
            return Some(Vec::new());
        }
        let bytes = self
            .assemble(&self.state(version), offset, end, true)
            .ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    /// The full path: serves from the cache, fetching each gap from `origin`.
    /// A gap is fetched by a stream from its start: for audio to the next cached
    /// byte (the stream runs ahead of its readers by `window` and pauses there;
    /// see `super::ingest`), in its own task, and this read is answered as soon
    /// as its own bytes are stored; for tags exactly the gap, at least `window`
    /// bytes, in this task. With no origin, an uncached range is an
    /// `Unavailable` error at once.
    pub async fn read(
        self: &Arc<Self>,
        version: &FileVersion,
        origin: Option<&Arc<dyn Source>>,
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
            let gaps = match self.assemble(&state, offset, end, purpose != Purpose::Tag) {
                Ok(bytes) => {
                    if purpose == Purpose::Tag {
                        self.mark_tag_range(&state, offset, end);
                    }
                    return Ok(bytes);
                }
                Err(gaps) => gaps,
            };
            if round == 0 && matches!(purpose, Purpose::Audio | Purpose::Seek) {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            let origin = origin.ok_or_else(|| {
                OriginError::unavailable(format!(
                    "{}: not cached and origin `{}` is not available",
                    version.path, version.origin
                ))
            })?;
            for (gap_start, gap_end) in gaps {
                // Look and claim under the manifest's lock: a fetch records its
                // bytes there before it gives up its claim on them, so bytes a
                // fetch stored since this round looked are seen either as cached
                // or as being fetched, never as neither (which fetched them twice).
                let claim = {
                    let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
                    if manifest.first_missing(gap_start, gap_end) != Some(gap_start) {
                        // Cached since: the next round looks again.
                        continue;
                    }
                    let limit = match purpose {
                        Purpose::Tag => gap_start
                            .saturating_add((gap_end - gap_start).max(window as u64))
                            .min(version.size),
                        Purpose::Audio | Purpose::Seek | Purpose::ReadAhead | Purpose::Pin => {
                            version.size
                        }
                    };
                    let stream_end = manifest.missing_until(gap_start, limit.max(gap_end));
                    // A reader going on sequentially never cuts the stream
                    // ahead of it, however far the kernel's read-ahead runs.
                    let cut = purpose != Purpose::Audio;
                    state.in_flight.claim(gap_start, stream_end, gap_end, cut)
                };
                let mut waiter = match claim {
                    Claim::Wait(waiter) => waiter,
                    Claim::Fetch(guard) if purpose == Purpose::Tag => {
                        let fetched = self
                            .stream_into(&state, version, origin.as_ref(), &guard, purpose)
                            .await;
                        guard.finish(&fetched);
                        fetched?;
                        continue;
                    }
                    Claim::Fetch(guard) => {
                        let lead =
                            gap_start.saturating_add((window as u64).min(state.window_cap()));
                        state.in_flight.want(gap_start, lead.max(gap_end));
                        let waiter = guard.waiter();
                        let (cache, state, version, origin) =
                            (self.clone(), state.clone(), version.clone(), origin.clone());
                        tokio::spawn(async move {
                            let fetched = cache
                                .stream_into(&state, &version, origin.as_ref(), &guard, purpose)
                                .await;
                            guard.finish(&fetched);
                        });
                        waiter
                    }
                };
                // A fetch that failed (it hung until its deadline, say) is not
                // tried again on the same origin: the caller's failover moves on
                // at once, so a hung origin costs a reader one deadline, not two.
                wait_for_bytes(&state, &mut waiter, gap_start, gap_end).await?;
            }
        }
        Err(OriginError::other(format!(
            "{}: the cache kept losing chunks",
            version.path
        )))
    }

    /// Read-ahead for a sequential reader at `from`: lets the fetches running
    /// over `[from, until)` run on to `until` (capped as a read's window is);
    /// if some of those bytes are neither cached nor being fetched, claims them
    /// for a stream that runs to the next cached byte, and returns it to be run
    /// (by [`AheadStream::run`]) in a task.
    pub fn stream_ahead(
        self: &Arc<Self>,
        version: &FileVersion,
        from: u64,
        until: u64,
    ) -> Option<AheadStream> {
        let state = self.state(version);
        let until = ahead_limit(&state, version, from, until);
        state.in_flight.want(from, until);
        // Looked for and claimed under the manifest's lock (see `read`).
        let guard = {
            let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let (start, _) = unfetched_run(&manifest, &state.in_flight, from, until)?;
            let stream_end = manifest.missing_until(start, version.size);
            state.in_flight.claim_uncovered(start, stream_end)?
        };
        state.in_flight.want(guard.start, until);
        Some(AheadStream {
            cache: self.clone(),
            state,
            version: version.clone(),
            guard,
        })
    }

    /// The first byte of `[from, until)` that is neither in the manifest nor being
    /// fetched: where a read-ahead would start, if anywhere.
    pub fn first_unfetched(&self, version: &FileVersion, from: u64, until: u64) -> Option<u64> {
        let state = self.state(version);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        unfetched_run(&manifest, &state.in_flight, from, until.min(version.size))
            .map(|(start, _)| start)
    }

    /// Lets the fetches of `version` running over `[from, until)` (capped as
    /// [`Self::stream_ahead`] caps it) run on to `until`: a reader moved on
    /// through bytes they stored. True if every byte of that range is cached
    /// or being fetched, so that no read-ahead needs starting.
    pub fn want(&self, version: &FileVersion, from: u64, until: u64) -> bool {
        let state = self.state(version);
        let until = ahead_limit(&state, version, from, until);
        state.in_flight.want(from, until);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        unfetched_run(&manifest, &state.in_flight, from, until).is_none()
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

/// How far read-ahead from `from` reaches: `until`, at most the version's
/// window cap past `from`, and never past the end of the file.
fn ahead_limit(state: &VersionState, version: &FileVersion, from: u64, until: u64) -> u64 {
    until
        .min(from.saturating_add(state.window_cap()))
        .min(version.size)
}

/// Waits until `[start, end)` is stored or the fetch `waiter` waits for is
/// over: `Ok` when the bytes are there or the fetch ended well (having stored
/// only part of them, if it was cut short: the next round fetches the rest), or
/// the error it ended with.
async fn wait_for_bytes(
    state: &VersionState,
    waiter: &mut FetchWaiter,
    start: u64,
    end: u64,
) -> OriginResult<()> {
    let mut landed = state.landed.subscribe();
    loop {
        landed.borrow_and_update();
        let missing = state
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_missing(start, end);
        if missing.is_none() {
            return Ok(());
        }
        if let Some(outcome) = waiter.outcome() {
            return outcome;
        }
        tokio::select! {
            _ = landed.changed() => {}
            _ = waiter.ended() => {}
        }
    }
}

/// A read-ahead stream claimed by [`ContentCache::stream_ahead`], to be run.
pub struct AheadStream {
    cache: Arc<ContentCache>,
    state: Arc<VersionState>,
    version: FileVersion,
    guard: FetchGuard,
}

impl AheadStream {
    /// Streams the claimed bytes from `origin` into the cache.
    pub async fn run(self, origin: Arc<dyn Source>) -> OriginResult<()> {
        let fetched = self
            .cache
            .stream_into(
                &self.state,
                &self.version,
                origin.as_ref(),
                &self.guard,
                Purpose::ReadAhead,
            )
            .await;
        self.guard.finish(&fetched);
        fetched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let running = state.in_flight.claim_uncovered(100_000, 300_000).unwrap();
        assert_eq!(
            cache.first_unfetched(&version, 50_000, size),
            Some(300_000),
            "bytes being fetched count as had"
        );
        drop(running);
        assert_eq!(cache.first_unfetched(&version, 50_000, size), Some(100_000));
        assert_eq!(cache.first_unfetched(&version, 0, u64::MAX), Some(100_000));
    }

    #[tokio::test]
    async fn idle_version_states_go_and_come_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let cache = ContentCache::open(dir.path(), u64::MAX, store).unwrap();
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
