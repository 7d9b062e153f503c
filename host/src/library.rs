//! The library: what the origins hold, read as tagged tracks, laid out as the tree
//! the mount shows.
//!
//! - [`scanner`] walks every origin with paged listings and reads tags through the
//!   content cache ([`tag_reader`]), touching only the bytes the tag parser asks for.
//! - [`index`] persists what the scan found, so a restart mounts at once, offline.
//! - [`layout`] turns tags into a path (a template) and makes every name safe.
//! - [`tree`] is the virtual tree, one value per folder; [`tree_build`] builds
//!   it whole (a scan, a start) from [`placed`] records: replicas grouped,
//!   collisions resolved, covers placed, with [`inode_book`] keeping inode
//!   numbers and directory mtimes
//!   stable across restarts. [`tree_update`] changes it for a change batch at
//!   the cost of the folders that changed, by the same rules, and
//!   [`tree_diff`] says what the kernel must forget.
//! - [`tree_snapshot`] keeps the tree last shown on disk ([`tree_codec`] lays
//!   out its bytes), so a restart shows it without building it again.
//! - [`view`] is the tree the mount shows now, swapped for a new version
//!   (which shares what did not change) after each change.
//! - [`sample`] writes the sample library served when no origin is given.
//!
//! # Memory
//!
//! What grows with the library, and when (heaptrack of `musicfs scan` of
//! 100,000 generated tracks; the fixed parts are capped whatever the size):
//!
//! - **Kept:** the tree ([`tree`]): about 195 bytes a track, laid out flat
//!   per folder. Nothing else per track stays between changes: the inode
//!   book is read whole only by a whole build and dropped after it, and a
//!   change batch reads only the paths it asks for.
//! - **During a first scan:** a window, not the library. The walk pauses
//!   listing while [`scanner`]'s queue of files waiting for tags is full, and
//!   writes its records every [`scanner::WRITE_EVERY`]; what it keeps to the
//!   end is each written path (about 90 bytes a track) so that its last write
//!   can drop what went.
//! - **During a whole build** (after a scan that changed something, or a
//!   start with no usable snapshot): the index streamed into [`placed`]
//!   records (about 170 bytes a track), the drafts of the folders (about
//!   65) and the inode book (about 50: paths keyed by their hash, new ones
//!   written out as they come), next to the tree being made. All of it is
//!   dropped once the tree is shown.
//! - **During a rescan:** what the index holds of each file, slim
//!   ([`scanner::Known`], about 220 bytes a track with its key), to compare
//!   with what the walk finds.
//! - **Fixed:** the index's page cache (16 MB), the hot chunks readers use
//!   (32 MB, never filled by tag reads), the chunk store's per-chunk map
//!   (about 85 bytes a cached chunk).

pub mod index;
pub mod inode_book;
mod layered;
pub mod layout;
pub mod media;
pub mod placed;
pub mod sample;
pub mod scanner;
pub mod tag_reader;
pub mod tree;
pub mod tree_build;
pub mod tree_codec;
pub mod tree_diff;
pub mod tree_snapshot;
pub mod tree_update;
pub mod view;
