//! The content-addressed cache: what was read from an origin, cut into
//! content-defined chunks named by their BLAKE3 hash, so it can be served again
//! without the origin.
//!
//! - [`chunker`] cuts bytes with FastCDC (v2020) and names each piece with BLAKE3.
//! - [`chunk_store`] appends chunks to pack files under `cache_dir/chunks/`
//!   (tag chunks in packs of their own), verifies each against its name on
//!   every read, and evicts whole packs, least recently used first (tag packs
//!   last), to stay under the size limit. Its parts, a file each: the pack
//!   format, the index and eviction policy, the migration from the layout
//!   before packs.
//! - [`manifest`] maps byte ranges of one file version to chunks. It may be sparse:
//!   a ranged fetch is chunked from its own start, and because CDC re-synchronises
//!   after a few chunks, a later fetch of a neighbouring range mostly produces the
//!   same chunks — identical content is stored once, however it was reached.
//! - [`in_flight`] tracks the fetches running for a file, by range, so none is
//!   fetched twice, a reader waits for the fetch that brings its bytes, and a
//!   seek far ahead cuts a fetch short.
//! - [`content_cache`] is the read path that ties them to the origins, and
//!   [`ingest`] takes a fetch's stream in: chunked and stored as it arrives,
//!   paced by its readers.
//! - [`whole_copies`] holds a fully cached file as one plain file, for the
//!   kernel to read by itself (FUSE passthrough).
//! - [`source`] is what the cache fetches from: an origin through the registry,
//!   or, in a test, anything that serves bytes.

pub mod chunk_store;
pub mod chunker;
pub mod content_cache;
pub mod hot_chunks;
pub mod in_flight;
pub mod ingest;
pub mod manifest;
pub mod source;
pub mod whole_copies;
