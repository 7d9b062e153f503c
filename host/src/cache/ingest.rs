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
//! - **Early answers.** A reader waiting for bytes of this fetch says how far it
//!   needs (`need`). As soon as the buffer reaches that, everything buffered is
//!   stored, the last partial chunk too, and the reader is woken: it is
//!   answered when its own bytes are here, not when the fetch ends.
//! - **Pace.** The stream runs ahead of its readers only as far as they let it
//!   (`want`: where the reader is plus its window). Past that it stops pulling;
//!   across the plugin boundary the plugin stops polling once its credit is
//!   full, and the backend is paused by its own flow control. A reader moving
//!   on raises `want`, and the stream resumes.
//! - **Memory.** At most [`CHUNK_BATCH`] plus one piece (a piece crossing the
//!   boundary is at most 1 MiB) in the host, and the plugin's credit in the
//!   plugin, per stream — not the window, and not the file.
//! - **Cancellation.** A stream ends at its claim's end, which a reader that
//!   seeks far ahead moves back (it then fetches from there itself); when nobody
//!   wants more for [`STREAM_IDLE`] (the reader stopped, or closed the file);
//!   when its origin is taken down; and at the first error. Whatever it stored
//!   stays cached. Dropping the stream cancels the plugin's read.
//! - **Disk.** The manifest is written to the index every [`RECORD_EVERY`] bytes
//!   and at the end, not per piece: a 512 MB file has thousands of chunks, and
//!   rewriting its manifest per piece would be quadratic.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use origin_api::{OriginError, OriginResult};

use super::chunker::{chunk, ChunkId, Piece, MAX_CHUNK};
use super::content_cache::{ContentCache, Purpose, VersionState, SLOW_FETCH};
use super::in_flight::FetchGuard;
use super::manifest::FileVersion;
use super::source::Source;
use crate::store::{MANIFESTS, TAG_CHUNKS};

/// Bytes gathered before they are chunked (unless a reader waits for them):
/// enough that most chunks are final when cut.
pub const CHUNK_BATCH: usize = 2 * MAX_CHUNK;
/// How long a paused stream waits for a reader to want more before it ends.
pub const STREAM_IDLE: Duration = Duration::from_secs(5);
/// How many stored bytes between writes of the manifest to the index.
pub const RECORD_EVERY: u64 = 16 << 20;

impl ContentCache {
    /// Streams the bytes `claim` covers from `origin`, storing them as they
    /// come (see the module's essay).
    pub(super) async fn stream_into(
        &self,
        state: &Arc<VersionState>,
        version: &FileVersion,
        origin: &dyn Source,
        claim: &FetchGuard,
        purpose: Purpose,
    ) -> OriginResult<()> {
        let paced = purpose != Purpose::Tag;
        let mut bounds = claim.bounds();
        let mut stream = origin.read_stream(
            &version.path,
            claim.start,
            bounds.end - claim.start,
            version.version.as_deref(),
        );
        let mut buffer = Buffer::new(claim.start);
        let mut tag_chunks = Vec::new();
        let mut unrecorded = 0u64;
        let started = Instant::now();
        let mut first = true;
        let ended = loop {
            bounds = claim.bounds();
            let head = buffer.head();
            // A waiting reader's bytes are all here: store them now.
            if bounds.need > buffer.base && head >= bounds.need.min(bounds.end) {
                let stored = buffer.store(self, state, claim, purpose, true);
                unrecorded += stored.bytes;
                tag_chunks.extend(stored.tag_chunks);
            }
            if head >= bounds.end {
                break Ok(());
            }
            if paced && head >= bounds.want {
                let base = buffer.base;
                let resumed = claim
                    .wait_until(
                        |b| b.want > head || b.end <= head || b.need > base,
                        STREAM_IDLE,
                    )
                    .await;
                if !resumed {
                    break Ok(());
                }
                continue;
            }
            let piece = match stream.next().await {
                Some(Ok(piece)) => piece,
                Some(Err(e)) => break Err(e),
                None if head < version.size.min(bounds.end) => {
                    break Err(OriginError::other(format!(
                        "{}: origin `{}` returned no data at offset {head} of {}",
                        version.path, version.origin, version.size
                    )))
                }
                None => break Ok(()),
            };
            if first {
                first = false;
                state
                    .slow_origin
                    .store(started.elapsed() > SLOW_FETCH, Ordering::Relaxed);
            }
            let room = (bounds.end - head).min(piece.len() as u64) as usize;
            buffer.bytes.extend_from_slice(&piece[..room]);
            if buffer.bytes.len() >= CHUNK_BATCH {
                let stored = buffer.store(self, state, claim, purpose, false);
                unrecorded += stored.bytes;
                tag_chunks.extend(stored.tag_chunks);
                if unrecorded >= RECORD_EVERY {
                    self.record_manifest(state, &std::mem::take(&mut tag_chunks));
                    unrecorded = 0;
                }
            }
        };
        drop(stream);
        // What arrived is of the version asked for, even when the stream failed
        // after it: keep it.
        let stored = buffer.store(self, state, claim, purpose, true);
        tag_chunks.extend(stored.tag_chunks);
        if unrecorded + stored.bytes > 0 || !tag_chunks.is_empty() {
            self.record_manifest(state, &tag_chunks);
        }
        ended
    }

    /// Stores the chunks `pieces` of `bytes` (fetched at `base`), records them
    /// in the manifest in memory and, under its lock, gives them up from
    /// `claim`; wakes waiting readers. Returns the chunks written that are tag
    /// chunks (for the index).
    pub(super) fn store_pieces(
        &self,
        state: &VersionState,
        base: u64,
        bytes: &[u8],
        pieces: &[Piece],
        purpose: Purpose,
        claim: Option<&FetchGuard>,
    ) -> Vec<ChunkId> {
        let tag = purpose == Purpose::Tag;
        let mut unwritten = Vec::new();
        let mut tag_chunks = Vec::new();
        for piece in pieces {
            let data = &bytes[piece.offset..piece.offset + piece.len];
            match self.chunks.put(&piece.id, data, tag) {
                Ok(_) if tag => tag_chunks.push(piece.id),
                Ok(_) => {}
                Err(e) => {
                    if unwritten.is_empty() {
                        tracing::warn!("cannot store a chunk, serving it from memory: {e}");
                    }
                    unwritten.push(piece.id);
                }
            }
            self.hot.put(piece.id, Arc::new(data.to_vec()));
        }
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
        tag_chunks
    }

    /// Writes the manifest of `state` (what is on disk) and `tag_chunks` to the
    /// index.
    pub(super) fn record_manifest(&self, state: &VersionState, tag_chunks: &[ChunkId]) {
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

/// Bytes of a stream not yet stored, from offset `base`.
struct Buffer {
    base: u64,
    bytes: Vec<u8>,
}

/// What one [`Buffer::store`] stored.
struct Stored {
    bytes: u64,
    tag_chunks: Vec<ChunkId>,
}

impl Buffer {
    fn new(base: u64) -> Self {
        Buffer {
            base,
            bytes: Vec::with_capacity(CHUNK_BATCH + (1 << 20)),
        }
    }

    /// One past the last byte received.
    fn head(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Chunks the buffer and stores every chunk but the last, or all of them
    /// with `all`.
    fn store(
        &mut self,
        cache: &ContentCache,
        state: &VersionState,
        claim: &FetchGuard,
        purpose: Purpose,
        all: bool,
    ) -> Stored {
        let mut pieces = chunk(&self.bytes);
        if !all {
            pieces.pop();
        }
        let Some(last) = pieces.last() else {
            return Stored {
                bytes: 0,
                tag_chunks: Vec::new(),
            };
        };
        let len = last.offset + last.len;
        let tag_chunks =
            cache.store_pieces(state, self.base, &self.bytes, &pieces, purpose, Some(claim));
        self.bytes.drain(..len);
        self.base += len as u64;
        Stored {
            bytes: len as u64,
            tag_chunks,
        }
    }
}
