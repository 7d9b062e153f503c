//! How the cache fills: a byte range of a file version served from chunks,
//! what is missing streamed from a source and stored as it arrives.
//!
//! Two speeds:
//! - [`ContentCache::read_cached`](super::content_cache::ContentCache::read_cached)
//!   is synchronous and touches only the cache: the FUSE thread calls it
//!   first, and a warm read never leaves that thread.
//! - [`fetch`] is the async slow path. Each gap is fetched by one stream from
//!   its start to the next cached byte, taken in by [`ingest`] (chunked from
//!   the stream's own start and stored as it arrives, paced by its readers),
//!   and the read is served from the cache like the fast path as soon as its
//!   own bytes are stored. Fetches are claimed by range ([`in_flight`]): two
//!   readers of one gap fetch it once, a gap that a running stream is about to
//!   bring is waited for, and a seek far past a stream's next byte cuts that
//!   stream short. Read-ahead lets the streams ahead of a sequential reader run
//!   on, or starts one at the first byte that nobody has or is fetching.
//!
//! With a shared tier (`crate::tier`), a claim is first filled from it
//! ([`from_tier`]): the chunks another mount fetched, as it named them, for as
//! long as the tier holds the next one; the origin's stream goes on from
//! there, and what it brought is offered to the tier when it ends.
//!
//! Lock order: a version's manifest, then its volatile set, then its in-flight
//! fetches (never the other way round); the map of versions is never held
//! across a store call, and takes a version's lock only if it is free.
//!
//! How far a stream runs ahead of its reader is the reader's window, at most
//! `FAST_ORIGIN_WINDOW`, or [`MAX_WINDOW`] for a file whose last stream took
//! longer than [`SLOW_FETCH`] to start (a remote store, where hiding that delay
//! is worth more bytes ahead). Memory per stream is bounded apart from that (see
//! [`ingest`]). A chunk that is missing or fails verification is dropped
//! from the manifest and fetched again; nothing unverified is ever served.

mod cutting;
pub mod fetch;
pub mod from_tier;
pub mod in_flight;
pub mod ingest;
pub mod landing;

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::versions::VersionState;

/// The largest single fetch from an origin.
pub const MAX_WINDOW: u32 = 32 << 20;
/// The largest single fetch from an origin that answers fast.
const FAST_ORIGIN_WINDOW: u32 = 8 << 20;
/// A fetch slower than this (plus its transfer) marks its origin as one where each
/// request has a fixed cost.
pub const SLOW_FETCH: Duration = Duration::from_millis(20);

/// What the bytes are for: tag chunks are evicted last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Audio data a reader asked for.
    Audio,
    /// Audio data a reader asked for right after a seek: where it goes on
    /// from there is unknown, so its stream's first request asks only for
    /// what it wants (see [`ingest`]).
    Seek,
    /// Audio data fetched ahead of a sequential reader.
    ReadAhead,
    /// A tag head or tail read by the scanner.
    Tag,
    /// Audio data fetched to keep a pinned file offline (see `crate::pins`).
    Pin,
}

impl VersionState {
    /// The largest fetch worth making: windows past [`FAST_ORIGIN_WINDOW`] only pay
    /// where each request has a cost to amortise (a remote store); on a fast origin
    /// they would only hold more memory.
    pub(in crate::cache) fn window_cap(&self) -> u64 {
        if self.slow_origin.load(Ordering::Relaxed) {
            MAX_WINDOW as u64
        } else {
            FAST_ORIGIN_WINDOW as u64
        }
    }
}
