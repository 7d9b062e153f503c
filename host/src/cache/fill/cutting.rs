//! Cutting a stream into chunks a batch at a time, as one pass over the
//! whole stream would.
//!
//! A batch's last chunk may end only because the batch does, so it is not
//! cut: its bytes (the carry) start the next batch. Joining the carry and the
//! next batch's bytes into one buffer would copy every byte a second time.
//! Only the first chunk spans both, and it is decided by at most
//! [`MAX_CHUNK`] bytes from its start; so that chunk alone is put together,
//! and the rest is cut where the batch's bytes lie.

use std::sync::Arc;

use super::super::chunker::{cut, MAX_CHUNK};

/// Bytes of a stream and the chunks cut in them.
pub struct Part {
    /// Where `bytes` start, from the start of the carry.
    pub at: usize,
    pub bytes: Arc<Vec<u8>>,
    /// (offset in `bytes`, length) of each chunk.
    pub cuts: Vec<(usize, usize)>,
}

/// A batch cut: its parts, and the tail left uncut.
pub struct Cut {
    pub parts: Vec<Part>,
    /// The bytes after the last chunk cut (empty with `all`).
    pub tail: Vec<u8>,
    /// Bytes cut, from the start of the carry: the tail starts there.
    pub taken: usize,
}

/// Cuts `carry` followed by `raw` into chunks: all of them with `all`,
/// else all but the last (which goes on, with what follows, to the next
/// batch). `spare()` gives the buffers for what must be copied.
pub fn cut_joined(
    carry: Vec<u8>,
    raw: Arc<Vec<u8>>,
    all: bool,
    spare: impl Fn() -> Vec<u8>,
) -> Cut {
    let c0 = carry.len();
    if c0 > 0 && c0 + raw.len() >= MAX_CHUNK {
        // The first chunk is decided by its first MAX_CHUNK bytes.
        let mut first = spare();
        first.extend_from_slice(&carry);
        first.extend_from_slice(&raw[..MAX_CHUNK - c0]);
        let len = cut(&first).first().map_or(0, |&(_, len)| len);
        // It cannot end inside the carry (the pass before found no end
        // there); should it, the two are joined below.
        if len >= c0 {
            first.truncate(len);
            let skip = len - c0;
            let mut cuts: Vec<(usize, usize)> = cut(&raw[skip..])
                .into_iter()
                .map(|(offset, len)| (offset + skip, len))
                .collect();
            if !all {
                cuts.pop();
            }
            let kept = cuts.last().map_or(skip, |&(offset, len)| offset + len);
            let mut tail = spare();
            tail.extend_from_slice(&raw[kept..]);
            return Cut {
                parts: vec![
                    Part {
                        at: 0,
                        bytes: Arc::new(first),
                        cuts: vec![(0, len)],
                    },
                    Part {
                        at: c0,
                        bytes: raw,
                        cuts,
                    },
                ],
                tail,
                taken: c0 + kept,
            };
        }
    }
    let bytes = if c0 == 0 {
        raw
    } else {
        let mut joined = carry;
        joined.extend_from_slice(&raw);
        Arc::new(joined)
    };
    let mut cuts = cut(&bytes);
    if !all {
        cuts.pop();
    }
    let kept = cuts.last().map_or(0, |&(offset, len)| offset + len);
    let mut tail = spare();
    tail.extend_from_slice(&bytes[kept..]);
    Cut {
        parts: vec![Part { at: 0, bytes, cuts }],
        tail,
        taken: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::chunker::tests::noise;

    /// The chunks, as (offset in the stream, length), of a stream cut batch
    /// by batch (the last batch taking the rest).
    fn in_batches(stream: &[u8], sizes: &[usize]) -> Vec<(usize, usize)> {
        let (mut chunks, mut carry, mut at, mut carry_at) = (Vec::new(), Vec::new(), 0, 0);
        for (n, &size) in sizes.iter().enumerate() {
            let last = n + 1 == sizes.len();
            let end = if last {
                stream.len()
            } else {
                (at + size).min(stream.len())
            };
            let all = last || end == stream.len();
            let done = cut_joined(carry, Arc::new(stream[at..end].to_vec()), all, Vec::new);
            for part in &done.parts {
                for &(offset, len) in &part.cuts {
                    let start = carry_at + part.at + offset;
                    assert_eq!(
                        &part.bytes[offset..offset + len],
                        &stream[start..start + len]
                    );
                    chunks.push((start, len));
                }
            }
            assert_eq!(&done.tail[..], &stream[carry_at + done.taken..end]);
            carry_at += done.taken;
            carry = done.tail;
            at = end;
            if all {
                break;
            }
        }
        chunks
    }

    #[test]
    fn batches_of_any_size_give_the_chunks_of_one_pass() {
        let stream = noise(3 << 20, 7);
        let one_pass = cut(&stream);
        for sizes in [
            vec![3 << 20],
            vec![1 << 20; 3],
            vec![768 << 10; 5],
            vec![100 << 10; 40],
            vec![5 << 10, 300 << 10, 1, 2 << 20, 700 << 10],
            vec![17 << 10; 200],
        ] {
            assert_eq!(in_batches(&stream, &sizes), one_pass, "{sizes:?}");
        }
    }
}
