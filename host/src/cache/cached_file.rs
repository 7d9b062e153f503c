//! One file version in the cache, looked up once.
//!
//! The cache keeps a state per version in use, found by the version's key
//! (origin, path, size, mtime, token) in a map. A reader that holds a
//! [`CachedFile`] has its state already: a read through it builds no key and
//! takes no lock of that map, only the version's own. A read session holds
//! one for each replica of its file, for as long as the file is open; the
//! state then stays in memory (see `super::versions`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::content_cache::ContentCache;
use super::manifest::FileVersion;
use super::versions::VersionState;

/// A file version in the cache, with its state.
#[derive(Clone)]
pub struct CachedFile {
    pub(in crate::cache) cache: Arc<ContentCache>,
    pub(in crate::cache) state: Arc<VersionState>,
    pub(in crate::cache) version: FileVersion,
}

impl ContentCache {
    /// `version` in the cache, its state looked up (or read from the index)
    /// once.
    pub fn file(self: &Arc<Self>, version: &FileVersion) -> CachedFile {
        CachedFile {
            cache: self.clone(),
            state: self.state(version),
            version: version.clone(),
        }
    }
}

impl CachedFile {
    /// Returns once no fetch of this version is running: what they received
    /// is stored (a reader may have been answered before).
    pub async fn settled(&self) {
        self.state.in_flight.settled().await;
    }

    /// The fast path: `[offset, offset + len)` (clipped to the file) if every
    /// byte is cached, else `None`. Never touches an origin.
    pub fn read_cached(&self, offset: u64, len: u32) -> Option<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(self.version.size);
        if offset >= end {
            return Some(Vec::new());
        }
        let bytes = self.cache.assemble(&self.state, offset, end, true).ok()?;
        self.cache.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }
}
