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
//! - [`versions`] holds the state of each file version in use: its manifest in
//!   memory, what is held only in memory, its running fetches.
//! - [`cached_file`] is one version looked up once: what a reader holds.
//! - [`content_cache`] serves a range from chunks (the warm path) and keeps
//!   what the cache holds besides: pins, whole copies, figures.
//! - [`fill`] is how the cache fills from a source: each gap fetched once by
//!   a stream ([`fill::fetch`], [`fill::in_flight`]), taken in as it arrives,
//!   chunked and stored, paced by its readers ([`fill::ingest`]).
//! - [`whole_copies`] holds a fully cached file as one plain file, for the
//!   kernel to read by itself (FUSE passthrough).
//! - [`source`] is what the cache fetches from: an origin through the registry,
//!   or, in a test, anything that serves bytes.
//! - [`shared`] is what the cache asks of a shared tier (`crate::tier`):
//!   chunks other mounts fetched, looked for before an origin, and offers of
//!   what this mount fetched.

pub mod cached_file;
pub mod chunk_store;
pub mod chunker;
pub mod content_cache;
pub mod fill;
pub mod hot_chunks;
pub mod manifest;
pub mod shared;
pub mod source;
pub mod versions;
pub mod whole_copies;
