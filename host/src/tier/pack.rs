//! The tier's pack objects: chunks as records of the local pack format
//! (`crate::cache::chunk_store::pack`: a 40-byte header, then the bytes), a
//! few MiB of them in one object named by the BLAKE3 of its bytes. A reader
//! fetches a run of neighbouring records with one ranged GET and checks
//! each chunk against its name before anything is stored.

use crate::cache::chunk_store::pack::{record_header, HEADER};
use crate::cache::chunker::ChunkId;

use super::manifest::PackName;

/// A pack object is closed once it holds this many bytes.
pub const PACK_TARGET: usize = 8 << 20;

/// A pack object being filled.
#[derive(Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    /// Each chunk added, and where its bytes start.
    pub chunks: Vec<(ChunkId, u64)>,
}

impl PackBuilder {
    /// Adds chunk `id` (`bytes`), and says where its bytes start.
    pub fn add(&mut self, id: ChunkId, bytes: &[u8]) -> u64 {
        self.bytes
            .extend_from_slice(&record_header(&id, bytes.len() as u32));
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(bytes);
        self.chunks.push((id, at));
        at
    }

    /// Whether it is full.
    pub fn full(&self) -> bool {
        self.bytes.len() >= PACK_TARGET
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Its name and bytes.
    pub fn finish(self) -> (PackName, Vec<u8>, Vec<(ChunkId, u64)>) {
        (
            *blake3::hash(&self.bytes).as_bytes(),
            self.bytes,
            self.chunks,
        )
    }
}

/// The byte range of a pack object that holds the chunks at `places` (each
/// where its bytes start, and its length), in order and neighbours.
pub fn span_of(places: &[(u64, u32)]) -> std::ops::Range<u64> {
    let first = places.first().map_or(0, |p| p.0);
    let end = places.last().map_or(0, |p| p.0 + p.1 as u64);
    first..end
}

/// Whether the chunk at `b` follows the chunk at `a` directly in its pack.
pub fn follows(a: (u64, u32), b: u64) -> bool {
    a.0 + a.1 as u64 + HEADER == b
}

/// The chunks `wanted` (name, where its bytes start, length) out of `fetched`,
/// the range [`span_of`] gave, each checked against its name; an error names
/// the first that fails.
pub fn cut_out(
    fetched: &[u8],
    span_start: u64,
    wanted: &[(ChunkId, u64, u32)],
) -> Result<Vec<Vec<u8>>, String> {
    wanted
        .iter()
        .map(|&(id, at, len)| {
            let from = (at - span_start) as usize;
            let bytes = fetched
                .get(from..from + len as usize)
                .ok_or_else(|| format!("chunk {id:?} is past the bytes fetched"))?;
            if ChunkId::of(bytes) != id {
                return Err(format!("chunk {id:?} does not match its name"));
            }
            Ok(bytes.to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_added_are_cut_out_of_a_ranged_read_and_a_rotten_one_is_refused() {
        let a = vec![1u8; 1000];
        let b = vec![2u8; 500];
        let (ia, ib) = (ChunkId::of(&a), ChunkId::of(&b));
        let mut pack = PackBuilder::default();
        let at_a = pack.add(ia, &a);
        let at_b = pack.add(ib, &b);
        assert!(follows((at_a, 1000), at_b));
        let (name, bytes, chunks) = pack.finish();
        assert_eq!(name, *blake3::hash(&bytes).as_bytes());
        assert_eq!(chunks, [(ia, at_a), (ib, at_b)]);
        let span = span_of(&[(at_a, 1000), (at_b, 500)]);
        let fetched = &bytes[span.start as usize..span.end as usize];
        let wanted = [(ia, at_a, 1000), (ib, at_b, 500)];
        assert_eq!(cut_out(fetched, span.start, &wanted).unwrap(), [a, b]);
        let mut rotten = fetched.to_vec();
        rotten[1200] ^= 1;
        assert!(cut_out(&rotten, span.start, &wanted).is_err());
        assert!(cut_out(&fetched[..100], span.start, &wanted).is_err());
    }
}
