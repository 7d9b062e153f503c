//! A manifest: which chunks hold which byte ranges of one file version.
//!
//! Extents are keyed by their start offset and may overlap (two fetches chunked from
//! different starts cover the same bytes with different chunks); any extent that
//! covers a byte can serve it. An extent that covers offset `p` starts at most
//! [`MAX_CHUNK`] bytes before `p`, so finding one is a short range scan.

use std::collections::BTreeMap;

use super::chunker::{ChunkId, Piece, MAX_CHUNK};

pub use crate::values::FileVersion;

/// One chunk placed in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// The chunk's length.
    pub len: u32,
    /// The chunk.
    pub id: ChunkId,
}

/// How to serve a byte range: pieces of cached chunks and gaps to fetch, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    /// `len` bytes from `skip` into chunk `id`.
    Cached {
        /// The chunk.
        id: ChunkId,
        /// Bytes to skip at the chunk's start.
        skip: u32,
        /// Bytes to take.
        len: u32,
    },
    /// `[start, end)` is not cached.
    Missing {
        /// First missing byte.
        start: u64,
        /// End of the gap.
        end: u64,
    },
}

/// The extents of one file version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    extents: BTreeMap<u64, Extent>,
}

const RECORD: usize = 8 + 4 + 32;

impl Manifest {
    /// Decodes the stored form; `None` if it is damaged.
    pub fn decode(bytes: &[u8]) -> Option<Manifest> {
        if bytes.len() % RECORD != 0 {
            return None;
        }
        let mut extents = BTreeMap::new();
        for record in bytes.chunks_exact(RECORD) {
            let offset = u64::from_le_bytes(record[..8].try_into().ok()?);
            let len = u32::from_le_bytes(record[8..12].try_into().ok()?);
            let id = ChunkId(record[12..].try_into().ok()?);
            extents.insert(offset, Extent { len, id });
        }
        Some(Manifest { extents })
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.extents.len() * RECORD);
        for (offset, extent) in &self.extents {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&extent.len.to_le_bytes());
            out.extend_from_slice(&extent.id.0);
        }
        out
    }

    /// Whole chunks that cover what the manifest holds without overlapping
    /// each other, in file order, as (offset, extent): from each byte, the
    /// extent that starts there and reaches furthest; where none starts
    /// there, the next that starts later (what is skipped is a hole).
    pub fn cover(&self) -> Vec<(u64, Extent)> {
        let mut out: Vec<(u64, Extent)> = Vec::new();
        let mut pos = 0u64;
        let mut iter = self.extents.range(0..).peekable();
        while let Some((&offset, _)) = iter.peek() {
            if offset < pos {
                iter.next();
                continue;
            }
            let (&offset, &extent) = iter.next().expect("peeked");
            out.push((offset, extent));
            pos = offset + extent.len as u64;
        }
        out
    }

    /// Records `pieces`, chunked from a fetch that started at `base`.
    pub fn insert(&mut self, base: u64, pieces: &[Piece]) {
        for piece in pieces {
            self.extents.insert(
                base + piece.offset as u64,
                Extent {
                    len: piece.len as u32,
                    id: piece.id,
                },
            );
        }
    }

    /// The chunks it names.
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.extents.values().map(|e| e.id)
    }

    /// Forgets every extent naming `id` (its chunk is gone).
    pub fn remove_chunk(&mut self, id: &ChunkId) {
        self.extents.retain(|_, e| e.id != *id);
    }

    /// Keeps only the extents whose chunk `keep(id, len)` approves.
    pub fn retain_chunks(&mut self, mut keep: impl FnMut(&ChunkId, u32) -> bool) {
        self.extents.retain(|_, e| keep(&e.id, e.len));
    }

    /// The extent covering `pos` that reaches furthest, if any.
    fn covering(&self, pos: u64) -> Option<(u64, Extent)> {
        self.extents
            .range(pos.saturating_sub(MAX_CHUNK as u64)..=pos)
            .filter(|(start, e)| **start + e.len as u64 > pos)
            .max_by_key(|(start, e)| **start + e.len as u64)
            .map(|(start, e)| (*start, *e))
    }

    /// The first extent starting after `pos`, bounding a gap.
    fn next_start_after(&self, pos: u64) -> Option<u64> {
        self.extents
            .range(pos + 1..)
            .next()
            .map(|(start, _)| *start)
    }

    /// The first byte of `[start, end)` that no extent covers, if any.
    ///
    /// One walk over the extents in order (a read-ahead asks this of windows of
    /// a hundred extents or more, on every read).
    pub fn first_missing(&self, start: u64, end: u64) -> Option<u64> {
        let mut pos = start;
        for (&extent_start, extent) in self
            .extents
            .range(start.saturating_sub(MAX_CHUNK as u64)..end)
        {
            if pos >= end {
                break;
            }
            if extent_start > pos {
                // Every extent that starts at or before `pos` ends at or before it.
                return Some(pos);
            }
            pos = pos.max(extent_start + extent.len as u64);
        }
        (pos < end).then_some(pos)
    }

    /// Where the run of missing bytes that begins at `start` ends, at most `limit`
    /// (`start` itself if `start` is cached).
    pub fn missing_until(&self, start: u64, limit: u64) -> u64 {
        if self.covering(start).is_some() {
            return start;
        }
        self.next_start_after(start).unwrap_or(limit).min(limit)
    }

    /// How to serve `[start, end)`.
    pub fn plan(&self, start: u64, end: u64) -> Vec<Span> {
        let mut spans = Vec::new();
        let mut pos = start;
        while pos < end {
            match self.covering(pos) {
                Some((extent_start, extent)) => {
                    let skip = pos - extent_start;
                    let take = (extent_start + extent.len as u64).min(end) - pos;
                    spans.push(Span::Cached {
                        id: extent.id,
                        skip: skip as u32,
                        len: take as u32,
                    });
                    pos += take;
                }
                None => {
                    let gap_end = self.next_start_after(pos).unwrap_or(end).min(end);
                    // Merge with a gap just before (cannot happen, but keep spans tidy).
                    spans.push(Span::Missing {
                        start: pos,
                        end: gap_end,
                    });
                    pos = gap_end;
                }
            }
        }
        spans
    }

    /// Bytes of `[0, size)` covered by some extent.
    pub fn cached_bytes(&self, size: u64) -> u64 {
        self.plan(0, size)
            .iter()
            .map(|s| match s {
                Span::Cached { len, .. } => *len as u64,
                Span::Missing { .. } => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(offset: usize, len: usize, n: u8) -> Piece {
        Piece {
            offset,
            len,
            id: ChunkId([n; 32]),
        }
    }

    #[test]
    fn first_missing_agrees_with_a_byte_by_byte_look_over_overlapping_extents() {
        let mut x = 7u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut m = Manifest::default();
            for i in 0..next(12) {
                let len = 1 + next(MAX_CHUNK as u64) as usize;
                m.insert(next(2_000_000), &[piece(0, len, i as u8)]);
            }
            let covered = |p: u64| m.covering(p).is_some();
            let start = next(2_000_000);
            let end = start + next(200_000);
            let naive = (start..end).find(|&p| !covered(p));
            assert_eq!(
                m.first_missing(start, end),
                naive,
                "{start}..{end} of {m:?}"
            );
        }
    }

    #[test]
    fn finds_where_missing_runs_start_and_end() {
        let mut m = Manifest::default();
        m.insert(1000, &[piece(0, 100, 1), piece(100, 50, 2)]);
        m.insert(2000, &[piece(0, 10, 3)]);
        assert_eq!(m.first_missing(0, 5000), Some(0));
        assert_eq!(m.first_missing(1000, 5000), Some(1150));
        assert_eq!(m.first_missing(1000, 1150), None, "all cached");
        assert_eq!(m.first_missing(2005, 2010), None);
        assert_eq!(m.missing_until(900, 5000), 1000, "stops at cached bytes");
        assert_eq!(m.missing_until(1150, 5000), 2000);
        assert_eq!(m.missing_until(1150, 1500), 1500, "and at the limit");
        assert_eq!(
            m.missing_until(1020, 5000),
            1020,
            "a cached start is no run"
        );
        assert_eq!(m.missing_until(2010, 5000), 5000);
    }

    #[test]
    fn a_cover_takes_whole_chunks_that_do_not_overlap() {
        let mut m = Manifest::default();
        m.insert(0, &[piece(0, 100, 1), piece(100, 50, 2)]);
        // A later fetch cut from 120: its first chunk overlaps chunk 2.
        m.insert(120, &[piece(0, 60, 3), piece(60, 40, 4)]);
        m.insert(400, &[piece(0, 10, 5)]);
        let cover: Vec<(u64, u32)> = m.cover().iter().map(|(o, e)| (*o, e.len)).collect();
        assert_eq!(cover, [(0, 100), (100, 50), (180, 40), (400, 10)]);
    }

    #[test]
    fn plans_cached_pieces_and_gaps() {
        let mut m = Manifest::default();
        m.insert(1000, &[piece(0, 100, 1), piece(100, 50, 2)]);
        let plan = m.plan(900, 1200);
        assert_eq!(
            plan,
            vec![
                Span::Missing {
                    start: 900,
                    end: 1000
                },
                Span::Cached {
                    id: ChunkId([1; 32]),
                    skip: 0,
                    len: 100
                },
                Span::Cached {
                    id: ChunkId([2; 32]),
                    skip: 0,
                    len: 50
                },
                Span::Missing {
                    start: 1150,
                    end: 1200
                },
            ]
        );
        assert_eq!(
            m.plan(1020, 1030),
            vec![Span::Cached {
                id: ChunkId([1; 32]),
                skip: 20,
                len: 10
            }]
        );
    }

    #[test]
    fn overlapping_extents_serve_from_whichever_covers() {
        let mut m = Manifest::default();
        m.insert(0, &[piece(0, 100, 1)]);
        m.insert(50, &[piece(0, 200, 2)]);
        let plan = m.plan(0, 250);
        assert_eq!(
            plan,
            vec![
                Span::Cached {
                    id: ChunkId([1; 32]),
                    skip: 0,
                    len: 100
                },
                Span::Cached {
                    id: ChunkId([2; 32]),
                    skip: 50,
                    len: 150
                },
            ]
        );
        m.remove_chunk(&ChunkId([2; 32]));
        assert_eq!(
            m.plan(100, 250),
            vec![Span::Missing {
                start: 100,
                end: 250
            }]
        );
    }

    #[test]
    fn offsets_beyond_four_gib_round_trip() {
        let mut m = Manifest::default();
        let base = 5u64 << 30;
        m.insert(base, &[piece(0, 10, 3)]);
        let m = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(
            m.plan(base + 2, base + 4),
            vec![Span::Cached {
                id: ChunkId([3; 32]),
                skip: 2,
                len: 2
            }]
        );
        assert_eq!(m.cached_bytes(base + 100), 10);
    }
}
