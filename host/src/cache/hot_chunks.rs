//! A small in-memory cache of recently read, already verified chunks, so that a
//! sequential reader (128 KiB FUSE reads over 64 KiB-average chunks) reads and
//! hashes each chunk once instead of two or three times.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::chunker::ChunkId;

/// At most `capacity` bytes of chunks, first in first out.
pub struct HotChunks {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<ChunkId, Arc<Vec<u8>>>,
    order: VecDeque<ChunkId>,
    bytes: usize,
}

impl HotChunks {
    /// A cache of at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        HotChunks {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The chunk, if hot.
    pub fn get(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(id)
            .cloned()
    }

    /// Whether the chunk is hot.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .contains_key(id)
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Forgets every chunk.
    #[cfg(test)]
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Inner::default();
    }

    /// Keeps a verified chunk.
    pub fn put(&self, id: ChunkId, bytes: Arc<Vec<u8>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.contains_key(&id) || bytes.len() > self.capacity {
            return;
        }
        inner.bytes += bytes.len();
        inner.map.insert(id, bytes);
        inner.order.push_back(id);
        while inner.bytes > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.map.remove(&old) {
                inner.bytes -= b.len();
            }
        }
    }

    /// Forgets a chunk (it was found corrupt or evicted).
    pub fn remove(&self, id: &ChunkId) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = inner.map.remove(id) {
            inner.bytes -= b.len();
            inner.order.retain(|o| o != id);
        }
    }
}
