//! The fetches of one file version that are running, by byte range.
//!
//! Two readers that miss the same bytes must fetch them once; but a sequential
//! reader's read-ahead should fetch the next window while an earlier fetch of the
//! same file is still running, because a remote origin answers every request after
//! a fixed delay and streams each response at a bounded rate, so overlapping
//! requests hide both. A lock per file would serialise them; so fetches are tracked
//! by range instead:
//!
//! - a reader whose missing range starts inside a running fetch waits for that
//!   fetch and learns whether it succeeded (a failed one means: try another
//!   replica now, do not hit the same origin again);
//! - any other fetch claims its own range, cut short where the next running fetch
//!   begins, so no byte is ever fetched twice at once.
//!
//! A claim is released when its guard drops; a guard dropped without
//! [`FetchGuard::finish`] (its task was cancelled) counts as a failed fetch.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

struct Running {
    id: u64,
    start: u64,
    end: u64,
    /// `Some(ok)` once the fetch is over.
    done: watch::Receiver<Option<bool>>,
}

#[derive(Default)]
struct Fetches {
    last_id: u64,
    running: Vec<Running>,
}

impl Fetches {
    /// The running fetch that covers byte `at`.
    fn covering(&self, at: u64) -> Option<&Running> {
        self.running.iter().find(|r| r.start <= at && at < r.end)
    }

    /// The first byte from `at` on that no running fetch covers.
    fn step_over(&self, mut at: u64) -> u64 {
        while let Some(r) = self.covering(at) {
            at = r.end;
        }
        at
    }

    /// `limit`, or where the first running fetch after `at` begins if sooner.
    fn clip(&self, at: u64, limit: u64) -> u64 {
        self.running
            .iter()
            .filter(|r| r.start > at)
            .map(|r| r.start)
            .fold(limit, u64::min)
    }
}

/// The running fetches of one file version.
#[derive(Default)]
pub struct InFlight {
    fetches: Mutex<Fetches>,
}

/// What a fetch of a missing range should do.
pub enum Claim {
    /// Fetch `[guard.start, guard.end)`; nobody else is fetching those bytes.
    Fetch(FetchGuard),
    /// Another fetch covers the start of the range: wait for it.
    Wait(FetchWaiter),
}

/// A claimed range; dropping it releases the claim.
pub struct FetchGuard {
    in_flight: Arc<InFlight>,
    id: u64,
    /// First byte to fetch.
    pub start: u64,
    /// One past the last byte to fetch.
    pub end: u64,
    done: watch::Sender<Option<bool>>,
}

/// Waits for someone else's fetch.
pub struct FetchWaiter(watch::Receiver<Option<bool>>);

impl InFlight {
    fn fetches(&self) -> std::sync::MutexGuard<'_, Fetches> {
        self.fetches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For bytes missing from `start`: wait for the running fetch that covers
    /// `start`, or claim `[start, want_end)` cut short at the next running fetch.
    pub fn claim(self: &Arc<Self>, start: u64, want_end: u64) -> Claim {
        let mut fetches = self.fetches();
        if let Some(r) = fetches.covering(start) {
            return Claim::Wait(FetchWaiter(r.done.clone()));
        }
        let end = fetches.clip(start, want_end);
        Claim::Fetch(self.register(&mut fetches, start, end))
    }

    /// For read-ahead: claims up to `window` bytes from the first byte of
    /// `[start, end)` that no running fetch covers, or `None` if all are covered.
    pub fn claim_uncovered(
        self: &Arc<Self>,
        start: u64,
        end: u64,
        window: u64,
    ) -> Option<FetchGuard> {
        let mut fetches = self.fetches();
        let at = fetches.step_over(start);
        if at >= end {
            return None;
        }
        let claim_end = fetches.clip(at, end.min(at.saturating_add(window)));
        Some(self.register(&mut fetches, at, claim_end))
    }

    /// The first byte of `[start, end)` that no running fetch covers, if any.
    pub fn first_uncovered(&self, start: u64, end: u64) -> Option<u64> {
        let at = self.fetches().step_over(start);
        (at < end).then_some(at)
    }

    fn register(self: &Arc<Self>, fetches: &mut Fetches, start: u64, end: u64) -> FetchGuard {
        fetches.last_id += 1;
        let id = fetches.last_id;
        let (done, receiver) = watch::channel(None);
        fetches.running.push(Running {
            id,
            start,
            end,
            done: receiver,
        });
        FetchGuard {
            in_flight: self.clone(),
            id,
            start,
            end,
            done,
        }
    }
}

impl FetchGuard {
    /// Releases the claim, telling waiters whether the bytes are now cached.
    pub fn finish(self, ok: bool) {
        self.done.send_replace(Some(ok));
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.in_flight.fetches().running.retain(|r| r.id != self.id);
        // Waiters of a cancelled fetch see a failure; a finished one keeps its value.
        self.done.send_if_modified(|done| {
            if done.is_none() {
                *done = Some(false);
                true
            } else {
                false
            }
        });
    }
}

impl FetchWaiter {
    /// Waits until the fetch is over; true if it stored its bytes.
    pub async fn succeeded(mut self) -> bool {
        match self.0.wait_for(Option::is_some).await {
            Ok(done) => done.unwrap_or(false),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_stops_where_a_running_fetch_begins() {
        let in_flight = Arc::new(InFlight::default());
        let Some(ahead) = in_flight.claim_uncovered(100, 1000, 50) else {
            panic!("nothing runs yet")
        };
        assert_eq!((ahead.start, ahead.end), (100, 150));
        let Claim::Fetch(reader) = in_flight.claim(20, 300) else {
            panic!("20 is not covered")
        };
        assert_eq!((reader.start, reader.end), (20, 100));
        assert_eq!(in_flight.first_uncovered(20, 150), None);
        assert_eq!(in_flight.first_uncovered(20, 151), Some(150));
        assert_eq!(in_flight.first_uncovered(0, 151), Some(0));
    }

    #[test]
    fn read_ahead_claims_the_first_byte_nobody_fetches() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.claim_uncovered(0, 1000, 300).unwrap();
        let second = in_flight.claim_uncovered(0, 1000, 300).unwrap();
        assert_eq!((first.start, first.end), (0, 300));
        assert_eq!((second.start, second.end), (300, 600));
        drop(first);
        let third = in_flight.claim_uncovered(0, 1000, 300).unwrap();
        assert_eq!((third.start, third.end), (0, 300));
        let _all = in_flight.claim_uncovered(600, 1000, 400).unwrap();
        assert!(in_flight.claim_uncovered(0, 1000, 300).is_none());
    }

    #[tokio::test]
    async fn a_waiter_learns_how_the_fetch_it_waited_for_ended() {
        let in_flight = Arc::new(InFlight::default());
        let Claim::Fetch(guard) = in_flight.claim(0, 10) else {
            panic!()
        };
        let Claim::Wait(waiter) = in_flight.claim(5, 10) else {
            panic!("5 is being fetched")
        };
        guard.finish(true);
        assert!(waiter.succeeded().await);

        let Claim::Fetch(cancelled) = in_flight.claim(0, 10) else {
            panic!("the finished fetch released its range")
        };
        let Claim::Wait(waiter) = in_flight.claim(0, 10) else {
            panic!()
        };
        drop(cancelled);
        assert!(
            !waiter.succeeded().await,
            "a dropped claim is a failed fetch"
        );
    }
}
