//! The library: what the origins hold, read as tagged tracks, laid out as the tree
//! the mount shows.
//!
//! - [`scanner`] walks every origin with paged listings and reads tags through the
//!   content cache ([`tag_reader`]), touching only the bytes the tag parser asks for.
//! - [`index`] persists what the scan found, so a restart mounts at once, offline.
//! - [`layout`] turns tags into a path (a template) and makes every name safe.
//! - [`tree`] is the virtual tree, one value per folder; [`tree_build`] builds
//!   it whole (a scan, a start): replicas grouped, collisions resolved, covers
//!   placed, with [`inode_book`] keeping inode numbers and directory mtimes
//!   stable across restarts. [`tree_update`] changes it for a change batch at
//!   the cost of the folders that changed, by the same rules, and
//!   [`tree_diff`] says what the kernel must forget.
//! - [`tree_snapshot`] keeps the tree last shown on disk ([`tree_codec`] lays
//!   out its bytes), so a restart shows it without building it again.
//! - [`view`] is the tree the mount shows now, swapped for a new version
//!   (which shares what did not change) after each change.
//! - [`sample`] writes the sample library served when no origin is given.

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
