//! Bytes a stream has received and not yet stored, by offset.
//!
//! A reader waiting on a stream is answered from here as soon as its bytes
//! have been handed over to be stored, without waiting for them to be cut,
//! named and written. So a stream never has to cut a chunk where a reader
//! happened to wait (it cuts by content alone, and a retagged file shares
//! more with its old version), and the storing of its batches runs behind the
//! readers, not in their way. The pieces are the stream's own batches (the
//! plugin's buffers are not held: that would stall its flow control), each
//! dropped once the manifest has every byte of it, and all of them when the
//! stream ends, however it ends.

use std::sync::Arc;

/// Bytes held here to copy: a piece's bytes, and the range of them wanted.
pub type Held = (Arc<Vec<u8>>, usize, usize);

/// One piece: who published it, where it starts, its bytes.
struct Piece {
    stream: u64,
    at: u64,
    bytes: Arc<Vec<u8>>,
}

impl Piece {
    fn end(&self) -> u64 {
        self.at + self.bytes.len() as u64
    }
}

/// The pieces of one version's running streams.
#[derive(Default)]
pub struct Landing {
    pieces: Vec<Piece>,
}

impl Landing {
    /// Adds `bytes`, received at `at` by stream `stream`.
    pub fn add(&mut self, stream: u64, at: u64, bytes: Arc<Vec<u8>>) {
        if !bytes.is_empty() {
            self.pieces.push(Piece { stream, at, bytes });
        }
    }

    /// Drops the pieces of `stream` that end by `until` (stored now), and
    /// gives back their bytes.
    pub fn stored(&mut self, stream: u64, until: u64) -> Vec<Arc<Vec<u8>>> {
        let mut gone = Vec::new();
        self.pieces.retain_mut(|p| {
            let keep = p.stream != stream || p.end() > until;
            if !keep {
                gone.push(std::mem::take(&mut p.bytes));
            }
            keep
        });
        gone
    }

    /// Drops every piece of `stream` (it ended).
    pub fn forget(&mut self, stream: u64) {
        self.pieces.retain(|p| p.stream != stream);
    }

    /// The piece holding byte `at`.
    fn holding(&self, at: u64) -> Option<&Piece> {
        self.pieces.iter().find(|p| p.at <= at && at < p.end())
    }

    /// One past the last byte of the run held here from `at` on (`at` if
    /// none), up to `end`.
    pub fn held_from(&self, mut at: u64, end: u64) -> u64 {
        while at < end {
            match self.holding(at) {
                Some(piece) => at = piece.end(),
                None => break,
            }
        }
        at.min(end)
    }

    /// The pieces that hold `[start, end)` whole, as (bytes, from, to) to
    /// copy, or `None` if some byte of it is not here.
    pub fn holding_all(&self, start: u64, end: u64) -> Option<Vec<Held>> {
        let mut parts = Vec::new();
        let mut at = start;
        while at < end {
            let piece = self.holding(at)?;
            let from = (at - piece.at) as usize;
            let to = (end.min(piece.end()) - piece.at) as usize;
            parts.push((piece.bytes.clone(), from, to));
            at = piece.at + to as u64;
        }
        Some(parts)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_across_pieces_are_copied_and_stored_pieces_go() {
        let mut landing = Landing::default();
        landing.add(1, 100, Arc::new((0..50).collect()));
        landing.add(1, 150, Arc::new((50..80).collect()));
        landing.add(2, 500, Arc::new(vec![9; 10]));
        assert_eq!(landing.held_from(120, 1000), 180);
        assert_eq!(landing.held_from(90, 1000), 90, "not from a byte not held");
        let mut out = Vec::new();
        for (bytes, from, to) in landing.holding_all(140, 160).unwrap() {
            out.extend_from_slice(&bytes[from..to]);
        }
        assert_eq!(out, (40..60).collect::<Vec<u8>>());
        assert!(landing.holding_all(170, 190).is_none(), "past what is held");
        landing.stored(1, 160);
        assert_eq!(landing.held_from(100, 1000), 100);
        assert_eq!(landing.held_from(150, 1000), 180);
        assert_eq!(
            landing.held_from(500, 1000),
            510,
            "another stream's piece stays"
        );
        landing.forget(1);
        landing.forget(2);
        assert!(landing.is_empty());
    }
}
