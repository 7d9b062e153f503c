//! The slow path of a read: each gap fetched by a stream (or waited for, if
//! one is bringing it), and read-ahead for sequential readers. See the
//! essay of [`super`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use origin_api::{OriginError, OriginResult};

use super::in_flight::{Claim, FetchGuard, FetchWaiter, InFlight};
use super::Purpose;
use crate::cache::cached_file::CachedFile;
use crate::cache::content_cache::ContentCache;
use crate::cache::manifest::{FileVersion, Manifest};
use crate::cache::source::Source;
use crate::cache::versions::VersionState;

/// Rounds of fetching before a read gives up (chunks kept vanishing under it).
const ROUNDS: usize = 4;

impl ContentCache {
    /// [`CachedFile::read`] of `version`.
    pub async fn read(
        self: &Arc<Self>,
        version: &FileVersion,
        origin: Option<&Arc<dyn Source>>,
        offset: u64,
        len: u32,
        window: u32,
        purpose: Purpose,
    ) -> OriginResult<Vec<u8>> {
        self.file(version)
            .read(origin, offset, len, window, purpose)
            .await
    }
}

impl CachedFile {
    /// The full path: serves from the cache, fetching each gap from `origin`.
    /// A gap is fetched by a stream from its start: for audio to the next cached
    /// byte (the stream runs ahead of its readers by `window` and pauses there;
    /// see `super::ingest`), in its own task, and this read is answered as soon
    /// as its own bytes are stored; for tags exactly the gap, at least `window`
    /// bytes, in this task. With no origin, an uncached range is an
    /// `Unavailable` error at once.
    pub async fn read(
        &self,
        origin: Option<&Arc<dyn Source>>,
        offset: u64,
        len: u32,
        window: u32,
        purpose: Purpose,
    ) -> OriginResult<Vec<u8>> {
        let (cache, state, version) = (&self.cache, &self.state, &self.version);
        let end = offset.saturating_add(len as u64).min(version.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        // Each round fetches (or waits for) every gap; a chunk lost between rounds,
        // or a gap that another fetch only partly covered, costs a round.
        for round in 0..ROUNDS {
            let gaps = match cache.assemble(state, offset, end, purpose != Purpose::Tag) {
                Ok(bytes) => {
                    if purpose == Purpose::Tag {
                        cache.mark_tag_range(state, offset, end);
                    }
                    return Ok(bytes);
                }
                Err(gaps) => gaps,
            };
            if round == 0 && matches!(purpose, Purpose::Audio | Purpose::Seek) {
                cache.misses.fetch_add(1, Ordering::Relaxed);
            }
            let origin = origin.ok_or_else(|| {
                OriginError::unavailable(format!(
                    "{}: not cached and origin `{}` is not available",
                    version.path, version.origin
                ))
            })?;
            for (gap_start, gap_end) in gaps {
                // Look and claim under the manifest's lock: a fetch records its
                // bytes there before it gives up its claim on them, so bytes a
                // fetch stored since this round looked are seen either as cached
                // or as being fetched, never as neither (which fetched them twice).
                let claim = {
                    let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
                    if manifest.first_missing(gap_start, gap_end) != Some(gap_start) {
                        // Cached since: the next round looks again.
                        continue;
                    }
                    let limit = match purpose {
                        Purpose::Tag => gap_start
                            .saturating_add((gap_end - gap_start).max(window as u64))
                            .min(version.size),
                        Purpose::Audio | Purpose::Seek | Purpose::ReadAhead | Purpose::Pin => {
                            version.size
                        }
                    };
                    let stream_end = manifest.missing_until(gap_start, limit.max(gap_end));
                    // A reader going on sequentially never cuts the stream
                    // ahead of it, however far the kernel's read-ahead runs.
                    let cut = purpose != Purpose::Audio;
                    state.in_flight.claim(gap_start, stream_end, gap_end, cut)
                };
                let mut waiter = match claim {
                    Claim::Wait(waiter) => waiter,
                    Claim::Fetch(guard) if purpose == Purpose::Tag => {
                        let fetched = cache
                            .stream_into(state, version, origin.as_ref(), &guard, purpose)
                            .await;
                        guard.finish(&fetched);
                        fetched?;
                        continue;
                    }
                    Claim::Fetch(guard) => {
                        let lead =
                            gap_start.saturating_add((window as u64).min(state.window_cap()));
                        state.in_flight.want(gap_start, lead.max(gap_end));
                        let waiter = guard.waiter();
                        let (cache, state, version, origin) = (
                            cache.clone(),
                            state.clone(),
                            version.clone(),
                            origin.clone(),
                        );
                        tokio::spawn(async move {
                            let fetched = cache
                                .stream_into(&state, &version, origin.as_ref(), &guard, purpose)
                                .await;
                            guard.finish(&fetched);
                        });
                        waiter
                    }
                };
                // A fetch that failed (it hung until its deadline, say) is not
                // tried again on the same origin: the caller's failover moves on
                // at once, so a hung origin costs a reader one deadline, not two.
                wait_for_bytes(state, &mut waiter, gap_start, gap_end).await?;
            }
        }
        Err(OriginError::other(format!(
            "{}: the cache kept losing chunks",
            version.path
        )))
    }

    /// Read-ahead for a sequential reader at `from`: lets the fetches running
    /// over `[from, until)` run on to `until` (capped as a read's window is);
    /// if some of those bytes are neither cached nor being fetched, claims them
    /// for a stream that runs to the next cached byte, and returns it to be run
    /// (by [`AheadStream::run`]) in a task.
    pub fn stream_ahead(&self, from: u64, until: u64) -> Option<AheadStream> {
        let (state, version) = (&self.state, &self.version);
        let until = ahead_limit(state, version, from, until);
        state.in_flight.want(from, until);
        // Looked for and claimed under the manifest's lock (see `read`).
        let guard = {
            let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let (start, _) = unfetched_run(&manifest, &state.in_flight, from, until)?;
            let stream_end = manifest.missing_until(start, version.size);
            state.in_flight.claim_uncovered(start, stream_end)?
        };
        state.in_flight.want(guard.start, until);
        Some(AheadStream {
            cache: self.cache.clone(),
            state: state.clone(),
            version: version.clone(),
            guard,
        })
    }

    /// The first byte of `[from, until)` that is neither in the manifest nor being
    /// fetched: where a read-ahead would start, if anywhere.
    pub fn first_unfetched(&self, from: u64, until: u64) -> Option<u64> {
        let (state, version) = (&self.state, &self.version);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        unfetched_run(&manifest, &state.in_flight, from, until.min(version.size))
            .map(|(start, _)| start)
    }

    /// Lets the fetches of `version` running over `[from, until)` (capped as
    /// [`Self::stream_ahead`] caps it) run on to `until`: a reader moved on
    /// through bytes they stored. True if every byte of that range is cached
    /// or being fetched, so that no read-ahead needs starting.
    pub fn want(&self, from: u64, until: u64) -> bool {
        let (state, version) = (&self.state, &self.version);
        let until = ahead_limit(state, version, from, until);
        state.in_flight.want(from, until);
        let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
        unfetched_run(&manifest, &state.in_flight, from, until).is_none()
    }
}

/// The first byte of `[from, until)` neither cached nor being fetched, and the end
/// of the missing run it lies in.
fn unfetched_run(
    manifest: &Manifest,
    in_flight: &InFlight,
    from: u64,
    until: u64,
) -> Option<(u64, u64)> {
    let mut at = from;
    while let Some(gap_start) = manifest.first_missing(at, until) {
        let gap_end = manifest.missing_until(gap_start, until);
        if let Some(unclaimed) = in_flight.first_uncovered(gap_start, gap_end) {
            return Some((unclaimed, gap_end));
        }
        at = gap_end;
    }
    None
}

/// How far read-ahead from `from` reaches: `until`, at most the version's
/// window cap past `from`, and never past the end of the file.
fn ahead_limit(state: &VersionState, version: &FileVersion, from: u64, until: u64) -> u64 {
    until
        .min(from.saturating_add(state.window_cap()))
        .min(version.size)
}

/// Waits until `[start, end)` is stored or has arrived, or the fetch `waiter`
/// waits for is over: `Ok` when the bytes are there or the fetch ended well
/// (having stored only part of them, if it was cut short: the next round
/// fetches the rest), or the error it ended with.
async fn wait_for_bytes(
    state: &VersionState,
    waiter: &mut FetchWaiter,
    start: u64,
    end: u64,
) -> OriginResult<()> {
    let mut landed = state.landed.subscribe();
    loop {
        landed.borrow_and_update();
        if all_here(state, start, end) {
            return Ok(());
        }
        if let Some(outcome) = waiter.outcome() {
            return outcome;
        }
        tokio::select! {
            _ = landed.changed() => {}
            _ = waiter.ended() => {}
        }
    }
}

/// Whether every byte of `[start, end)` is in the manifest or has arrived.
fn all_here(state: &VersionState, start: u64, end: u64) -> bool {
    let manifest = state.manifest.lock().unwrap_or_else(|p| p.into_inner());
    let landing = state.landing.lock().unwrap_or_else(|p| p.into_inner());
    let mut at = start;
    while let Some(missing) = manifest.first_missing(at, end) {
        let held = landing.held_from(missing, end);
        if held == missing {
            return false;
        }
        at = held;
    }
    true
}

/// A read-ahead stream claimed by [`ContentCache::stream_ahead`], to be run.
pub struct AheadStream {
    cache: Arc<ContentCache>,
    state: Arc<VersionState>,
    version: FileVersion,
    guard: FetchGuard,
}

impl AheadStream {
    /// Streams the claimed bytes from `origin` into the cache.
    pub async fn run(self, origin: Arc<dyn Source>) -> OriginResult<()> {
        let fetched = self
            .cache
            .stream_into(
                &self.state,
                &self.version,
                origin.as_ref(),
                &self.guard,
                Purpose::ReadAhead,
            )
            .await;
        self.guard.finish(&fetched);
        fetched
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::content_cache::ContentCache;
    use crate::cache::manifest::FileVersion;
    use crate::store::Store;
    use std::sync::Arc;

    #[tokio::test]
    async fn read_ahead_starts_at_the_first_byte_nobody_has_or_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index.redb")).unwrap());
        let cache = Arc::new(ContentCache::open(dir.path(), u64::MAX, store).unwrap());
        let version = FileVersion {
            origin: "o".into(),
            path: "f.flac".into(),
            size: 1 << 20,
            mtime_ns: 1,
            version: None,
        };
        let size = version.size;
        let file = cache.file(&version);
        assert_eq!(file.first_unfetched(0, size), Some(0));
        cache.seed(&version, 0, vec![7u8; 100_000]).await;
        assert_eq!(file.first_unfetched(0, size), Some(100_000));
        assert_eq!(file.first_unfetched(0, 100_000), None);

        let state = cache.state(&version);
        let running = state.in_flight.claim_uncovered(100_000, 300_000).unwrap();
        assert_eq!(
            file.first_unfetched(50_000, size),
            Some(300_000),
            "bytes being fetched count as had"
        );
        drop(running);
        assert_eq!(file.first_unfetched(50_000, size), Some(100_000));
        assert_eq!(file.first_unfetched(0, u64::MAX), Some(100_000));
    }
}
