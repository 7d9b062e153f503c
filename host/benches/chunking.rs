//! Chunk sizes side by side: FastCDC + BLAKE3 throughput, chunk count, the new bytes
//! a tag-only edit costs, and how much of a ranged fetch (chunked from its own
//! start) shares chunks with the whole-file chunking.

use std::collections::HashSet;
use std::time::Instant;

use musicfs::cache::chunker::{chunk_with, cut_with, ChunkId};

fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() {
    const KIB: usize = 1024;
    let data = noise(256 << 20, 42);
    let track = noise(20 << 20, 7);
    // A tag-only edit: the tag block at the head grows by 3,000 bytes.
    let mut retagged = noise(7_000, 9);
    retagged.extend_from_slice(&track[4_000..]);
    let range = &track[1_234_567..];

    println!(
        "{:>18} {:>10} {:>13} {:>9} {:>14} {:>16}",
        "min/avg/max KiB", "MB/s", "cutting MB/s", "chunks", "retag new %", "range shared %"
    );
    for (min, avg, max) in [
        (4, 16, 64),
        (8, 32, 128),
        (16, 64, 256),
        (32, 64, 256),
        (64, 256, 1024),
    ] {
        let (min, avg, max) = (min * KIB, avg * KIB, max * KIB);
        let started = Instant::now();
        let cuts = cut_with(&data, min, avg, max);
        let cutting = data.len() as f64 / 1e6 / started.elapsed().as_secs_f64();
        assert!(!cuts.is_empty());
        let started = Instant::now();
        let pieces = chunk_with(&data, min, avg, max);
        let secs = started.elapsed().as_secs_f64();
        let mbps = data.len() as f64 / 1e6 / secs;

        let before: HashSet<ChunkId> = chunk_with(&track, min, avg, max)
            .iter()
            .map(|p| p.id)
            .collect();
        let after = chunk_with(&retagged, min, avg, max);
        let new: usize = after
            .iter()
            .filter(|p| !before.contains(&p.id))
            .map(|p| p.len)
            .sum();
        let ranged = chunk_with(range, min, avg, max);
        let shared: usize = ranged
            .iter()
            .filter(|p| before.contains(&p.id))
            .map(|p| p.len)
            .sum();
        println!(
            "{:>18} {:>10.0} {:>13.0} {:>9} {:>14.3} {:>16.2}",
            format!("{}/{}/{}", min / KIB, avg / KIB, max / KIB),
            mbps,
            cutting,
            pieces.len(),
            new as f64 * 100.0 / retagged.len() as f64,
            shared as f64 * 100.0 / range.len() as f64,
        );
    }
}
