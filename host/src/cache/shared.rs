//! What the cache asks of a shared tier (`crate::tier` implements it): the
//! chunks another mount already fetched, looked for before an origin, and a
//! place to offer what this mount fetched. The cache knows nothing of
//! buckets or packs: a tier says which chunks of a version it has, gives
//! their bytes, and takes offers in the background.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use super::chunker::ChunkId;
use super::manifest::FileVersion;

/// A boxed future, as the trait's methods return.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One chunk of a version the tier holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedChunk {
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// Its length.
    pub len: u32,
    /// Its name.
    pub id: ChunkId,
}

/// The chunks of one version a tier holds, in file order, none overlapping
/// another (a tier publishes one cover of what it holds, with holes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedChunks {
    chunks: Vec<SharedChunk>,
}

impl SharedChunks {
    /// `chunks` if they are in file order and none overlaps the next; `None`
    /// otherwise (a damaged or foreign list).
    pub fn new(chunks: Vec<SharedChunk>) -> Option<SharedChunks> {
        let ordered = chunks
            .windows(2)
            .all(|w| w[0].offset + w[0].len as u64 <= w[1].offset);
        (ordered && chunks.iter().all(|c| c.len > 0)).then_some(SharedChunks { chunks })
    }

    /// The chunks, in file order.
    pub fn chunks(&self) -> &[SharedChunk] {
        &self.chunks
    }

    /// The index of the chunk that holds byte `at`, if any.
    pub fn covering(&self, at: u64) -> Option<usize> {
        let i = self
            .chunks
            .partition_point(|c| c.offset <= at)
            .checked_sub(1)?;
        let c = &self.chunks[i];
        (c.offset + c.len as u64 > at).then_some(i)
    }
}

/// A shared tier, as the cache sees it.
pub trait SharedTier: Send + Sync {
    /// The chunks of `version` the tier holds; `None` if it holds none or
    /// cannot say now (down, slow): the read goes on to the origin.
    fn chunks_of<'a>(&'a self, version: &'a FileVersion) -> Boxed<'a, Option<Arc<SharedChunks>>>;

    /// The bytes of `of.chunks[range]`, each checked against its name; an
    /// error (unreachable, damaged) for all of them if any cannot be given.
    fn fetch<'a>(
        &'a self,
        version: &'a FileVersion,
        of: &'a SharedChunks,
        range: Range<usize>,
    ) -> Boxed<'a, Result<Vec<Vec<u8>>, String>>;

    /// Offers the chunks the cache holds of `version` (after a fetch from an
    /// origin) for the tier to publish in the background. Never waits: a
    /// tier that cannot keep up drops offers.
    fn offer(&self, version: &FileVersion);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, len: u32, n: u8) -> SharedChunk {
        SharedChunk {
            offset,
            len,
            id: ChunkId([n; 32]),
        }
    }

    #[test]
    fn the_chunk_holding_a_byte_is_found_and_an_overlap_is_refused() {
        let of = SharedChunks::new(vec![at(0, 100, 1), at(100, 50, 2), at(200, 10, 4)]).unwrap();
        assert_eq!(of.covering(0), Some(0));
        assert_eq!(of.covering(99), Some(0));
        assert_eq!(of.covering(149), Some(1));
        assert_eq!(of.covering(150), None);
        assert_eq!(of.covering(205), Some(2));
        assert_eq!(of.covering(210), None);
        assert_eq!(SharedChunks::new(vec![at(0, 100, 1), at(50, 100, 2)]), None);
        assert_eq!(SharedChunks::new(vec![at(0, 0, 1)]), None);
    }
}
