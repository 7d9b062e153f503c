//! A claim filled from the shared tier before its origin: the chunks another
//! mount fetched, as the tier names them, so that nothing is cut again and a
//! chunk this cache already holds (under another version: a retagged file)
//! moves no byte at all. The tier is read from the claim's start for as long
//! as it holds the next chunk, a run at a time, paced by the readers as a
//! stream is; where it has a hole, fails or is slow, the origin's stream goes
//! on from there (see `super::ingest`). Chunks from the tier are checked
//! against their names by the tier (`crate::tier`) and again by the chunk
//! store on every read.

use std::sync::Arc;

use super::in_flight::FetchGuard;
use super::ingest::STREAM_IDLE;
use super::Purpose;
use crate::cache::chunker::Piece;
use crate::cache::content_cache::ContentCache;
use crate::cache::manifest::FileVersion;
use crate::cache::shared::SharedChunks;
use crate::cache::versions::VersionState;

/// The most bytes asked of the tier at once (the tier sends its ranged GETs
/// of them together).
pub const TIER_RUN: u64 = 8 << 20;
/// The first run of a claim: what a reader waits for before its first byte.
pub const FIRST_TIER_RUN: u64 = 1 << 20;

/// How far the tier took a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierFill {
    /// Nothing more is wanted: the claim ends here.
    Ended,
    /// The origin goes on from this byte (the claim's start if the tier had
    /// nothing).
    From(u64),
}

impl ContentCache {
    /// Fills `claim` from the shared tier for as long as it holds the next
    /// chunk (see the module's essay).
    pub(in crate::cache) async fn fill_from_tier(
        self: &Arc<Self>,
        state: &Arc<VersionState>,
        version: &FileVersion,
        claim: &FetchGuard,
        purpose: Purpose,
    ) -> TierFill {
        let mut filled = false;
        let reached = self
            .fill_runs(state, version, claim, purpose, &mut filled)
            .await;
        // What came from the tier is in the index, as a stream's bytes are:
        // a restart (a pin offline) finds it.
        if filled {
            self.record_manifest(state, &[]);
        }
        reached
    }

    async fn fill_runs(
        self: &Arc<Self>,
        state: &Arc<VersionState>,
        version: &FileVersion,
        claim: &FetchGuard,
        purpose: Purpose,
        filled: &mut bool,
    ) -> TierFill {
        let mut head = claim.start;
        // A scan's tag reads do not ask the tier: a scan reads every file
        // once, and a request to the tier per file would double its calls.
        let tier = match self.shared.get() {
            Some(tier) if purpose != Purpose::Tag => tier,
            _ => return TierFill::From(head),
        };
        let Some(held) = tier.chunks_of(version).await else {
            return TierFill::From(head);
        };
        let paced = purpose != Purpose::Tag;
        loop {
            let bounds = claim.bounds();
            if head >= bounds.end {
                return TierFill::Ended;
            }
            if paced && head >= bounds.want.max(bounds.need) {
                let resumed = claim
                    .wait_until(
                        |b| b.want > head || b.need > head || b.end <= head,
                        STREAM_IDLE,
                    )
                    .await;
                if !resumed {
                    return TierFill::Ended;
                }
                continue;
            }
            let Some(first) = held.covering(head) else {
                return TierFill::From(head);
            };
            let most = if head == claim.start {
                FIRST_TIER_RUN
            } else {
                TIER_RUN
            };
            let run = run_from(&held, first, bounds.end, most);
            // What this cache holds already moves nothing; the rest comes in
            // runs of neighbours.
            let have: Vec<bool> = held.chunks()[run.clone()]
                .iter()
                .map(|c| self.chunks.contains(&c.id))
                .collect();
            let mut bytes: Vec<Option<Vec<u8>>> = vec![None; run.len()];
            let mut i = 0;
            while i < run.len() {
                if have[i] {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < run.len() && !have[j] {
                    j += 1;
                }
                match tier
                    .fetch(version, &held, run.start + i..run.start + j)
                    .await
                {
                    Ok(fetched) if fetched.len() == j - i => {
                        for (slot, got) in bytes[i..j].iter_mut().zip(fetched) {
                            *slot = Some(got);
                        }
                    }
                    Ok(_) | Err(_) => break,
                }
                i = j;
            }
            // Stored in order, up to the first chunk neither held nor fetched.
            let usable = (0..run.len())
                .take_while(|&k| have[k] || bytes[k].is_some())
                .count();
            if usable == 0 {
                return TierFill::From(head);
            }
            let chunks = held.chunks()[run.start..run.start + usable].to_vec();
            let (cache, state_for, progress) = (self.clone(), state.clone(), claim.progress());
            let stored = tokio::task::spawn_blocking(move || {
                for (chunk, got) in chunks.iter().zip(bytes) {
                    let piece = Piece {
                        offset: 0,
                        len: chunk.len as usize,
                        id: chunk.id,
                    };
                    match got {
                        Some(got) => {
                            cache.store_pieces(
                                &state_for,
                                chunk.offset,
                                &got,
                                &[piece],
                                purpose,
                                Some(&progress),
                            );
                        }
                        None => cache.add_held(&state_for, chunk.offset, piece, &progress),
                    }
                }
            })
            .await;
            if stored.is_err() {
                return TierFill::From(head);
            }
            *filled = true;
            let last = held.chunks()[run.start + usable - 1];
            head = head.max(last.offset + last.len as u64);
            if usable < run.len() {
                return TierFill::From(head);
            }
        }
    }
}

/// From chunk `first`, the chunks that follow each other without a gap, up
/// to `most` bytes or past `end`.
fn run_from(held: &SharedChunks, first: usize, end: u64, most: u64) -> std::ops::Range<usize> {
    let start = held.chunks()[first].offset;
    let mut reach = start + held.chunks()[first].len as u64;
    let mut last = first + 1;
    while last < held.chunks().len()
        && held.chunks()[last].offset == reach
        && reach < end
        && reach - start < most
    {
        reach += held.chunks()[last].len as u64;
        last += 1;
    }
    first..last
}
