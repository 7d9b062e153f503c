//! Content-defined chunking (FastCDC v2020) and BLAKE3 chunk names.
//!
//! Sizes: 16 KiB minimum, 64 KiB average, 256 KiB maximum. Audio barely dedups
//! inside one file, so small chunks buy nothing there; what must dedup is a retagged
//! copy (only the tag block differs) and the same track fetched by different ranged
//! reads. 64 KiB keeps the per-chunk costs (a file, a manifest entry, a hash lookup)
//! low against a FUSE read size of 128 KiB, while a tag-only edit still rewrites
//! only the one or two chunks around the tag. `host/benches/chunking.rs` compares
//! sizes side by side: throughput, new bytes after a retag, resynchronisation.

use std::fmt;

/// Smallest chunk, except at the end of the input.
pub const MIN_CHUNK: usize = 16 * 1024;
/// Target average chunk.
pub const AVG_CHUNK: usize = 64 * 1024;
/// Largest chunk.
pub const MAX_CHUNK: usize = 256 * 1024;

/// A chunk's name: the BLAKE3 hash of its bytes.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The name of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses lower-case hex.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| ChunkId(*h.as_bytes()))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

/// One chunk of an input: where it starts in the input, how long it is, its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Offset within the chunked input.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// BLAKE3 of the bytes.
    pub id: ChunkId,
}

/// Cuts `data` into content-defined chunks and names each one.
pub fn chunk(data: &[u8]) -> Vec<Piece> {
    name(data, &cut(data))
}

/// Where [`chunk`] would cut `data`, as (offset, length), without naming the
/// chunks: cutting is cheap, hashing is not, so a stream cuts as bytes arrive
/// and names the chunks elsewhere.
pub fn cut(data: &[u8]) -> Vec<(usize, usize)> {
    cut_with(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
}

/// The chunks of `data` at the `cuts` (from [`cut`]), named.
pub fn name(data: &[u8], cuts: &[(usize, usize)]) -> Vec<Piece> {
    cuts.iter()
        .map(|&(offset, len)| Piece {
            offset,
            len,
            id: ChunkId::of(&data[offset..offset + len]),
        })
        .collect()
}

/// [`chunk`] with other sizes, for the benchmark that chose them.
pub fn chunk_with(data: &[u8], min: usize, avg: usize, max: usize) -> Vec<Piece> {
    name(data, &cut_with(data, min, avg, max))
}

/// [`cut`] with other sizes, for the benchmark that chose them.
pub fn cut_with(data: &[u8], min: usize, avg: usize, max: usize) -> Vec<(usize, usize)> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, min, avg, max)
        .map(|c| (c.offset, c.length))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes that look random, the same for the same seed.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn cutting_then_naming_is_chunking() {
        let data = noise(1_000_000, 3);
        assert_eq!(name(&data, &cut(&data)), chunk(&data));
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let data = noise(3_000_000, 1);
        let pieces = chunk(&data);
        let mut at = 0;
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(p.offset, at);
            assert!(p.len <= MAX_CHUNK);
            assert!(p.len >= MIN_CHUNK || i == pieces.len() - 1);
            assert_eq!(p.id, ChunkId::of(&data[p.offset..p.offset + p.len]));
            at += p.len;
        }
        assert_eq!(at, data.len());
    }

    #[test]
    fn an_edit_at_the_head_leaves_later_chunks_alone() {
        let original = noise(4_000_000, 7);
        let mut retagged = noise(3_000, 9); // a longer tag block
        retagged.extend_from_slice(&original[1_000..]);
        let before: std::collections::HashSet<_> = chunk(&original).iter().map(|p| p.id).collect();
        let after = chunk(&retagged);
        let new_bytes: usize = after
            .iter()
            .filter(|p| !before.contains(&p.id))
            .map(|p| p.len)
            .sum();
        assert!(new_bytes < original.len() / 10, "{new_bytes} new bytes");
    }

    #[test]
    fn a_range_chunked_from_its_own_start_resynchronises() {
        let data = noise(4_000_000, 3);
        let whole: std::collections::HashSet<_> = chunk(&data).iter().map(|p| p.id).collect();
        let range = &data[1_234_567..3_000_000];
        let pieces = chunk(range);
        let shared: usize = pieces
            .iter()
            .filter(|p| whole.contains(&p.id))
            .map(|p| p.len)
            .sum();
        assert!(
            shared > range.len() * 8 / 10,
            "only {shared} of {} shared",
            range.len()
        );
    }

    #[test]
    fn hex_round_trips() {
        let id = ChunkId::of(b"abc");
        assert_eq!(ChunkId::from_hex(&id.to_hex()), Some(id));
    }
}
