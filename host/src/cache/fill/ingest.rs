//! Bytes arriving from a stream, chunked and stored as they come.
//!
//! # How a stream is taken in
//!
//! A fetch claims a range (see `super::in_flight`) and opens one streaming read
//! of it. Pieces are appended to a buffer; once it holds [`CHUNK_BATCH`] bytes it
//! is cut by FastCDC from the stream's own start, and every chunk but the last
//! is stored, recorded in the manifest (in memory) and given up from the claim.
//! The last chunk may only be cut there because the buffer ends there, so it
//! waits for more bytes. The chunks are thus the ones a single fetch of the
//! whole range would make, whatever sizes the pieces came in.
//!
//! - **Early answers.** A reader waiting for bytes of this fetch says how far
//!   it needs (`need`). Once the stream holds any of them, what it holds is
//!   handed over to be stored and published to the readers at once (see
//!   `super::landing`): a reader is answered when its own bytes are here,
//!   not when they are cut and stored, nor when the fetch ends. The batch is
//!   cut like any other (its uncut tail goes on to the next), so the stream
//!   never cuts a chunk where a reader waited: it did, once a MiB through the
//!   mount, and a retagged file then shared less with its old version.
//! - **Pace.** The stream runs ahead of its readers only as far as they let it
//!   (`want`: where the reader is plus its window). Past that it stops pulling;
//!   across the plugin boundary the plugin stops polling once its credit is
//!   full, and the backend is paused by its own flow control. A reader moving
//!   on raises `want`, and the stream resumes.
//! - **Requests.** A claim runs to the next cached byte (often the file's
//!   end). A reader going on from where it opened, read-ahead, pins and tags
//!   ask the origin for the whole claim in one request: one round trip and
//!   one slow start, and on S3 one GET for a track played through. After a
//!   seek the first request asks only for what the readers want then (at
//!   least [`FIRST_REQUEST`]): far away that is what makes a seek cheap, since
//!   a request to the file's end lets the plugin's credit and the backend's
//!   pipeline bring megabytes nobody asked for before the stream can pause
//!   (9 MB on a link 50 ms away). Once readers want bytes past it, the rest
//!   of the claim is asked for in a second request, made while the first
//!   still runs so that its round trips overlap that transfer: a reader that
//!   plays on after a seek costs two requests, not one per window.
//! - **Stages.** The stream's task only receives: bytes are handed over a
//!   batch at a time (however large the piece that brought them: a plugin
//!   hands over up to 8 MiB at once, and one batch that large was cut, named
//!   and written on one core while the other waited). Cutting, naming
//!   (BLAKE3) and writing run on blocking threads, [`STORING_AT_ONCE`] batches
//!   at a time: each batch cuts from where the one before left off, hands its
//!   uncut tail on as soon as it has cut, then names and writes while the next
//!   one cuts. On a fast origin these are the costs, and they use every core.
//!   Batches enter the manifest in order. Buffers are given back to the
//!   stream and used again, not faulted in afresh for every batch.
//! - **Memory.** At most [`STORING_AT_ONCE`] + 1 batches of [`CHUNK_BATCH`] plus
//!   a piece in the host (the piece being handed over, up to 8 MiB from a
//!   plugin), and the plugin's credit in the plugin, per stream — not the
//!   window, and not the file.
//! - **Cancellation.** A stream ends at its claim's end, which a reader that
//!   seeks far ahead moves back (it then fetches from there itself; the stream
//!   is reopened for exactly what is left of its claim, so that neither a piece
//!   crossing the cut nor the plugin's read-ahead brings the seeker's bytes
//!   twice); when nobody
//!   wants more for [`STREAM_IDLE`] (the reader stopped, or closed the file);
//!   when its origin is taken down (at once, even while paused); and at the
//!   first error. Whatever it stored
//!   stays cached. Dropping the stream cancels the plugin's read.
//! - **Disk.** The manifest is written to the index every [`RECORD_EVERY`] bytes
//!   and at the end, not per piece: a 512 MB file has thousands of chunks, and
//!   rewriting its manifest per piece would be quadratic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use origin_api::{OriginError, OriginResult};

use super::cutting::cut_joined;
use super::from_tier::TierFill;
use super::in_flight::{FetchGuard, Progress};
use super::{Purpose, SLOW_FETCH};
use crate::cache::chunk_store::Keep;
use crate::cache::chunker::{name, ChunkId, Piece, MAX_CHUNK};
use crate::cache::content_cache::ContentCache;
use crate::cache::manifest::FileVersion;
use crate::cache::source::Source;
use crate::cache::versions::VersionState;
use crate::store::{MANIFESTS, TAG_CHUNKS};

/// Bytes gathered before they are chunked (unless a reader waits for them):
/// enough that most chunks are final when cut.
pub const CHUNK_BATCH: usize = 4 * MAX_CHUNK;
/// How many batches of one stream may be named and written at once.
pub const STORING_AT_ONCE: usize = 2;
/// Bytes received before they are handed over to be cut: a batch, less the
/// tail that the batch before may hand over uncut (so that a batch is at most
/// a batch and a piece, as when the stream's task cut them itself).
const HAND_OVER: usize = CHUNK_BATCH - MAX_CHUNK;
/// How long a paused stream waits for a reader to want more before it ends.
pub const STREAM_IDLE: Duration = Duration::from_secs(5);
/// How many stored bytes between writes of the manifest to the index.
pub const RECORD_EVERY: u64 = 16 << 20;
/// The least the first request of a paced stream asks its origin for: a
/// seek's fetch.
pub const FIRST_REQUEST: u64 = 256 << 10;

/// Drops what a stream published, when it ends.
struct Unpublish {
    state: Arc<VersionState>,
    stream: u64,
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        self.state
            .landing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(self.stream);
        // A stop waiting for what arrived looks again.
        self.state.landed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Numbers the streams, for what they publish (see `super::landing`).
static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

/// One ranged request to an origin: its stream and where it ends.
struct Request<'a> {
    stream: origin_api::ReadStream<'a>,
    end: u64,
}

impl ContentCache {
    /// Streams the bytes `claim` covers from `origin`, storing them as they
    /// come (see the module's essay).
    pub(in crate::cache) async fn stream_into(
        self: &Arc<Self>,
        state: &Arc<VersionState>,
        version: &FileVersion,
        origin: &dyn Source,
        claim: &FetchGuard,
        purpose: Purpose,
    ) -> OriginResult<()> {
        // The shared tier first: the origin goes on where it stops.
        let from = match self.fill_from_tier(state, version, claim, purpose).await {
            TierFill::Ended => return Ok(()),
            TierFill::From(from) => from,
        };
        let paced = purpose != Purpose::Tag;
        let mut bounds = claim.bounds();
        if from >= bounds.end {
            return Ok(());
        }
        // After a seek the first request asks for what the readers want (at
        // least a seek's worth); otherwise for the whole claim.
        let first_end = if purpose == Purpose::Seek {
            bounds
                .end
                .min(bounds.want.max(bounds.need).max(from + FIRST_REQUEST))
        } else {
            bounds.end
        };
        let open = |from: u64, to: u64| Request {
            stream: origin.read_stream(&version.path, from, to - from, version.version.as_deref()),
            end: to,
        };
        let mut current = open(from, first_end);
        // The request after it (the rest of the claim), asked for before the
        // first ends so that its round trips overlap that transfer.
        let mut next: Option<Request> = None;
        let mut buffer = Buffer::new(from, bounds.end.saturating_sub(from));
        let mut storing = Storing {
            cache: self.clone(),
            state: state.clone(),
            progress: Arc::new(claim.progress()),
            purpose,
            running: VecDeque::new(),
            last_recorded: None,
            carry: None,
            stream: NEXT_STREAM.fetch_add(1, Ordering::Relaxed),
            pool: Pool::new(buffer.room),
            unrecorded: 0,
            tag_chunks: Vec::new(),
        };
        // Whatever ends the stream, what it published goes with it.
        let _unpublish = Unpublish {
            state: state.clone(),
            stream: storing.stream,
        };
        let started = Instant::now();
        let mut first = true;
        let ended = loop {
            bounds = claim.bounds();
            let head = buffer.head();
            // A reader waits for bytes received: hand them over now, so that
            // it is answered from them (they are cut with the next ones).
            if bounds.need > buffer.base && head > buffer.base {
                storing.start(buffer.take(&storing.pool), false).await;
            }
            if head >= bounds.end {
                break Ok(());
            }
            if paced && head >= bounds.want {
                let base = buffer.base;
                let resume = claim.wait_until(
                    |b| b.want > head || b.end <= head || b.need > base,
                    STREAM_IDLE,
                );
                // A paused stream must not hold its origin up when it is taken
                // down (a plugin removed): it ends at once then.
                let resumed = tokio::select! {
                    resumed = resume => resumed,
                    () = origin.taken_down() => false,
                };
                if !resumed {
                    tracing::debug!(
                        path = version.path,
                        head,
                        base,
                        ?bounds,
                        "stream ended: paused, and nobody wanted more"
                    );
                    break Ok(());
                }
                continue;
            }
            bounds = claim.bounds();
            if head >= bounds.end {
                break Ok(());
            }
            // Cut short by a reader that seeked ahead, who fetches from the
            // cut on: the requests open would bring its bytes too, so ask
            // again for exactly what is left.
            if next.as_ref().is_some_and(|n| n.end > bounds.end) {
                next = None;
            }
            if bounds.end < current.end {
                current = open(head, bounds.end);
            }
            // This request is done: the next one goes on from here.
            if head >= current.end {
                current = match next.take() {
                    Some(request) => request,
                    None => open(head, bounds.end),
                };
            }
            // Readers want bytes past this request: ask for the rest now.
            if next.is_none()
                && current.end < bounds.end
                && bounds.want.max(bounds.need) > current.end
            {
                next = Some(open(current.end, bounds.end));
            }
            let piece = match current.stream.next_piece().await {
                Some(Ok(piece)) => piece,
                Some(Err(e)) => break Err(e),
                None if head < version.size.min(current.end) => {
                    break Err(OriginError::other(format!(
                        "{}: origin `{}` returned no data at offset {head} of {}",
                        version.path, version.origin, version.size
                    )))
                }
                None => {
                    // Past the file's end: nothing more to ask for.
                    if head >= version.size {
                        break Ok(());
                    }
                    continue;
                }
            };
            if first {
                first = false;
                state
                    .slow_origin
                    .store(started.elapsed() > SLOW_FETCH, Ordering::Relaxed);
            }
            // Not past the claim's end, which may have been cut meanwhile.
            let room = claim
                .bounds()
                .end
                .saturating_sub(head)
                .min(piece.len() as u64) as usize;
            // Handed over a batch at a time, however large the piece: a
            // batch is cut while the one before is named and written.
            for part in piece[..room].chunks(HAND_OVER) {
                let fits = (HAND_OVER - buffer.bytes.len().min(HAND_OVER)).min(part.len());
                buffer.bytes.extend_from_slice(&part[..fits]);
                if buffer.bytes.len() >= HAND_OVER {
                    storing.start(buffer.take(&storing.pool), false).await;
                }
                buffer.bytes.extend_from_slice(&part[fits..]);
            }
        };
        drop((current, next));
        // What arrived is of the version asked for, even when the stream failed
        // after it: keep it.
        let received = buffer.head() > from;
        storing.start(buffer.take(&storing.pool), true).await;
        storing.settle().await;
        storing.record();
        // What the origin gave, for the other mounts.
        if received && purpose != Purpose::Tag {
            if let Some(tier) = self.shared.get() {
                tier.offer(version);
            }
        }
        ended
    }

    /// Stores the chunks `pieces` of `bytes` (fetched at `base`), records them
    /// in the manifest in memory and, under its lock, gives them up from
    /// `claim`; wakes waiting readers. Returns the chunks written that are tag
    /// chunks (for the index).
    pub(in crate::cache) fn store_pieces(
        &self,
        state: &VersionState,
        base: u64,
        bytes: &[u8],
        pieces: &[Piece],
        purpose: Purpose,
        claim: Option<&Progress>,
    ) -> Vec<ChunkId> {
        let written = self.write_chunks(bytes, pieces, purpose);
        self.add_to_manifest(state, base, pieces, written.unwritten, claim);
        written.tag_chunks
    }

    /// Records a chunk the store holds already (under another version) at
    /// `offset` of this one, as if it had been fetched: nothing moves.
    pub(in crate::cache) fn add_held(
        &self,
        state: &VersionState,
        offset: u64,
        piece: Piece,
        claim: &Progress,
    ) {
        self.add_to_manifest(state, offset, &[piece], Vec::new(), Some(claim));
    }

    /// Writes the chunks `pieces` of `bytes` to the chunk store; a chunk the
    /// disk refused is kept in memory only (in the hot set). The others are
    /// not copied there: the readers of a stream are answered from the bytes
    /// as they arrived (`super::landing`), and one that comes for them later
    /// reads them from the pack, where they were just written (a copy of
    /// every chunk into the hot set was a tenth of a cold read's CPU).
    fn write_chunks(&self, bytes: &[u8], pieces: &[Piece], purpose: Purpose) -> Written {
        let keep = match purpose {
            Purpose::Tag => Keep::Tag,
            Purpose::Pin => Keep::Pinned,
            Purpose::Audio | Purpose::Seek | Purpose::ReadAhead => Keep::Audio,
        };
        let mut written = Written {
            unwritten: Vec::new(),
            tag_chunks: Vec::new(),
        };
        for piece in pieces {
            let data = &bytes[piece.offset..piece.offset + piece.len];
            match self.chunks.put(&piece.id, data, keep) {
                Ok(_) if keep == Keep::Tag => written.tag_chunks.push(piece.id),
                Ok(_) => {}
                Err(e) => {
                    if written.unwritten.is_empty() {
                        tracing::warn!("cannot store a chunk, serving it from memory: {e}");
                    }
                    written.unwritten.push(piece.id);
                    // Served from memory while it lasts (a scan's tag chunks
                    // too: they are read once, now).
                    self.hot.put(piece.id, Arc::new(data.to_vec()));
                }
            }
        }
        written
    }

    /// Records chunks at `base` in the manifest (in memory), `unwritten` ones
    /// as held in memory only, and, under the manifest's lock, gives them up
    /// from `claim`; wakes waiting readers.
    fn add_to_manifest(
        &self,
        state: &VersionState,
        base: u64,
        pieces: &[Piece],
        unwritten: Vec<ChunkId>,
        claim: Option<&Progress>,
    ) {
        {
            let mut manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
            manifest.insert(base, pieces);
            state
                .volatile
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(unwritten);
            if let (Some(claim), Some(last)) = (claim, pieces.last()) {
                claim.stored_until(base + (last.offset + last.len) as u64);
            }
        }
        state.landed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Writes the manifest of `state` (what is on disk) and `tag_chunks` to the
    /// index.
    pub(in crate::cache) fn record_manifest(&self, state: &VersionState, tag_chunks: &[ChunkId]) {
        let encoded = state.on_disk().encode();
        let written = self.store.write(false, |txn| {
            txn.open_table(MANIFESTS)?
                .insert(state.key.as_str(), encoded.as_slice())?;
            let mut tags = txn.open_table(TAG_CHUNKS)?;
            for id in tag_chunks {
                tags.insert(id.0.as_slice(), ())?;
            }
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!("cannot record a manifest: {e}");
        }
    }
}

/// Bytes of a stream not yet handed over to be stored, from offset `base`.
struct Buffer {
    base: u64,
    bytes: Vec<u8>,
    /// The room it is given: a batch and a piece, or the claim if smaller
    /// (a scan reads tags in many small claims at once: at 100,000 tracks
    /// room for a batch each was 264 MB of a scan's peak).
    room: usize,
}

/// Bytes handed over to be cut, named and stored, from offset `base`.
struct Raw {
    base: u64,
    bytes: Arc<Vec<u8>>,
}

/// What a batch could not cut yet (its last chunk may only be cut where the
/// bytes ended): the start of the next batch.
struct Carry {
    base: u64,
    bytes: Vec<u8>,
}

impl Buffer {
    fn new(base: u64, claimed: u64) -> Self {
        let room = (CHUNK_BATCH + (1 << 20)).min(usize::try_from(claimed).unwrap_or(usize::MAX));
        Buffer {
            base,
            bytes: Vec::with_capacity(room),
            room,
        }
    }

    /// One past the last byte received.
    fn head(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Hands over every byte received, the buffer going on with one from
    /// `pool`.
    fn take(&mut self, pool: &Pool) -> Raw {
        // A few bytes a waiting reader asked for go in a buffer of their size:
        // they may stay published until the next batch has cut past them, and
        // a batch's buffer for each would hold megabytes.
        let bytes = if self.bytes.len() < self.room / 8 {
            let small = self.bytes.clone();
            self.bytes.clear();
            small
        } else {
            std::mem::replace(&mut self.bytes, pool.get())
        };
        let base = self.base;
        self.base += bytes.len() as u64;
        Raw {
            base,
            bytes: Arc::new(bytes),
        }
    }
}

/// A stream's spare buffers: each batch's are given back when it is stored,
/// so that a stream does not fault fresh pages in for every batch.
#[derive(Clone)]
struct Pool {
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    room: usize,
}

impl Pool {
    fn new(room: usize) -> Self {
        Pool {
            spare: Arc::default(),
            room,
        }
    }

    /// An empty buffer with room for a batch and a piece.
    fn get(&self) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        spare.unwrap_or_else(|| Vec::with_capacity(self.room))
    }

    /// Takes `bytes` back if nobody else holds them.
    fn give_shared(&self, bytes: Arc<Vec<u8>>) {
        if let Ok(bytes) = Arc::try_unwrap(bytes) {
            self.give(bytes);
        }
    }

    /// Takes `bytes` back (as many as a stream can use at once).
    fn give(&self, mut bytes: Vec<u8>) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < STORING_AT_ONCE + 2 && bytes.capacity() >= self.room {
            bytes.clear();
            spare.push(bytes);
        }
    }
}

/// What [`ContentCache::write_chunks`] wrote.
struct Written {
    unwritten: Vec<ChunkId>,
    tag_chunks: Vec<ChunkId>,
}

/// Cutting, naming and storing a stream's chunks on blocking threads, up to
/// [`STORING_AT_ONCE`] batches at a time, beside the arrival of the next: the
/// stream's own task only receives. Each batch is cut from where the one
/// before left off: that one hands its uncut tail over as soon as it has cut
/// (so cutting runs one batch after another, as one pass over the stream
/// would, and the chunks are the same), then names and writes its chunks
/// while the next one cuts. Batches enter the manifest in order (each waits
/// for the one before), so the claim only ever gives up bytes that are
/// stored, from its front.
struct Storing {
    cache: Arc<ContentCache>,
    state: Arc<VersionState>,
    progress: Arc<Progress>,
    purpose: Purpose,
    running: VecDeque<tokio::task::JoinHandle<Vec<ChunkId>>>,
    /// Told when the last batch started is in the manifest.
    last_recorded: Option<mpsc::Receiver<()>>,
    /// Gives the tail the last batch started could not cut.
    carry: Option<mpsc::Receiver<Carry>>,
    /// This stream, among those publishing what arrived (see
    /// `super::landing`).
    stream: u64,
    pool: Pool,
    unrecorded: u64,
    tag_chunks: Vec<ChunkId>,
}

impl Storing {
    /// Publishes `piece`, arrived at `at`, to the readers, until it is stored.
    fn publish(&self, at: u64, piece: Arc<Vec<u8>>) {
        self.state
            .landing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(self.stream, at, piece);
        self.state.landed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts storing `raw`, once fewer than [`STORING_AT_ONCE`] batches are:
    /// with what the last batch could not cut before it, cut into chunks, all
    /// of them with `all` (the last one ending where the bytes do), else all
    /// but the last, which goes on to the next batch.
    async fn start(&mut self, raw: Raw, all: bool) {
        if raw.bytes.is_empty() && (!all || self.carry.is_none()) {
            self.pool.give_shared(raw.bytes);
            return;
        }
        // Readers are answered from them until they are stored.
        self.publish(raw.base, raw.bytes.clone());
        while self.running.len() >= STORING_AT_ONCE {
            self.settle_one().await;
        }
        // What is stored reaches the index every RECORD_EVERY bytes, not only
        // when the stream ends (a stop or a crash keeps what was recorded).
        if self.unrecorded >= RECORD_EVERY {
            self.record();
        }
        self.unrecorded += raw.bytes.len() as u64;
        let (cache, state, progress, purpose, stream, pool) = (
            self.cache.clone(),
            self.state.clone(),
            self.progress.clone(),
            self.purpose,
            self.stream,
            self.pool.clone(),
        );
        let carried = self.carry.take();
        let (carry, next_carry) = match all {
            true => (None, None),
            false => {
                let (carry, next) = mpsc::channel();
                (Some(carry), Some(next))
            }
        };
        self.carry = next_carry;
        let before = self.last_recorded.take();
        let (recorded, next) = mpsc::channel();
        self.last_recorded = Some(next);
        self.running.push_back(tokio::task::spawn_blocking(move || {
            // An error means the batch before is gone (it panicked): its
            // bytes are fetched again when read.
            let (base, carried) = match carried.map(|carried| carried.recv()) {
                Some(Ok(Carry { base, bytes })) => (base, bytes),
                _ => (raw.base, Vec::new()),
            };
            let done = cut_joined(carried, raw.bytes, all, || pool.get());
            let taken = base + done.taken as u64;
            if let Some(carry) = carry {
                let _ = carry.send(Carry {
                    base: taken,
                    bytes: done.tail,
                });
            } else {
                pool.give(done.tail);
            }
            let mut pieces = Vec::new();
            let mut unwritten = Vec::new();
            let mut tag_chunks = Vec::new();
            for part in &done.parts {
                let named = name(&part.bytes, &part.cuts);
                let written = cache.write_chunks(&part.bytes, &named, purpose);
                unwritten.extend(written.unwritten);
                tag_chunks.extend(written.tag_chunks);
                pieces.extend(named.into_iter().map(|piece| Piece {
                    offset: part.at + piece.offset,
                    ..piece
                }));
            }
            if let Some(before) = before {
                let _ = before.recv();
            }
            cache.add_to_manifest(&state, base, &pieces, unwritten, Some(&progress));
            // In the manifest now: readers find them there.
            let gone = state
                .landing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stored(stream, taken);
            // Told: a stop waits for what arrived to be stored.
            state.landed.send_modify(|n| *n = n.wrapping_add(1));
            for bytes in gone
                .into_iter()
                .chain(done.parts.into_iter().map(|p| p.bytes))
            {
                pool.give_shared(bytes);
            }
            let _ = recorded.send(());
            tag_chunks
        }));
    }

    async fn settle_one(&mut self) {
        if let Some(running) = self.running.pop_front() {
            match running.await {
                Ok(tags) => self.tag_chunks.extend(tags),
                Err(e) => tracing::warn!("storing chunks failed: {e}"),
            }
        }
    }

    /// Waits for every batch being stored, and writes the manifest to the
    /// index every [`RECORD_EVERY`] bytes.
    async fn settle(&mut self) {
        while !self.running.is_empty() {
            self.settle_one().await;
        }
        if self.unrecorded >= RECORD_EVERY {
            self.record();
        }
    }

    /// Writes the manifest (and the tag chunks stored) to the index.
    fn record(&mut self) {
        if self.unrecorded > 0 || !self.tag_chunks.is_empty() {
            self.cache
                .record_manifest(&self.state, &std::mem::take(&mut self.tag_chunks));
            self.unrecorded = 0;
        }
    }
}
