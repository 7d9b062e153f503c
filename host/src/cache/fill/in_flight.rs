//! The fetches of one file version that are running, by byte range.
//!
//! Two readers that miss the same bytes must fetch them once. A fetch is a
//! stream: it claims the range from its next byte to where it will stop, and its
//! claim shrinks from the front as its bytes are stored. So:
//!
//! - a reader whose missing range starts inside a running fetch, near the
//!   fetch's next byte, waits for it (and is answered once its own bytes are
//!   stored, not when the fetch ends); a failed fetch means: try another replica
//!   now, do not hit the same origin again;
//! - a reader whose missing range starts far ahead of a running fetch's next
//!   byte after a seek would wait for everything in between: it cuts the
//!   running fetch short there and claims the rest for itself (a sequential
//!   reader waits however far ahead the kernel's read-ahead runs: cutting
//!   would only start a second request behind the first, from a cold start);
//! - any other fetch claims its own range, cut short where the next running
//!   fetch begins, so no byte is ever fetched twice at once.
//!
//! A fetch also carries how far it may run ahead (`want`, raised by readers and
//! read-ahead; the stream pauses past it) and the furthest byte a waiting reader
//! needs (`need`; the stream stores what it holds as soon as that is reached).
//!
//! A claim is released when its guard drops; a guard dropped without
//! [`FetchGuard::finish`] (its task was cancelled) counts as a failed fetch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use origin_api::{OriginError, OriginResult};
use tokio::sync::{watch, Notify};

/// How a fetch ended: `None` while it runs.
type Outcome = Option<OriginResult<()>>;

/// How far past a running fetch's next byte a reader may start and still wait
/// for it rather than cut it: the kernel's read-ahead arrives out of order by
/// about this much, and a stream brings it in at once.
pub const CUT_DISTANCE: u64 = 2 << 20;

struct Running {
    id: u64,
    /// The next byte the fetch will store.
    start: u64,
    /// Where the fetch stops (moved earlier by a cut).
    end: u64,
    want: u64,
    need: u64,
    /// Woken when `want`, `need` or `end` change.
    nudge: Arc<Notify>,
    done: watch::Receiver<Outcome>,
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

    fn get(&mut self, id: u64) -> Option<&mut Running> {
        self.running.iter_mut().find(|r| r.id == id)
    }
}

/// The running fetches of one file version.
pub struct InFlight {
    fetches: Mutex<Fetches>,
    /// How many are running (a fetch runs until what it received is stored).
    count: watch::Sender<usize>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            fetches: Mutex::default(),
            count: watch::channel(0).0,
        }
    }
}

/// What a fetch of a missing range should do.
pub enum Claim {
    /// Fetch from `guard.start`; nobody else is fetching those bytes.
    Fetch(FetchGuard),
    /// Another fetch covers the start of the range: wait for it.
    Wait(FetchWaiter),
}

/// A claimed range; dropping it releases the claim.
pub struct FetchGuard {
    in_flight: Arc<InFlight>,
    id: u64,
    /// The first byte claimed.
    pub start: u64,
    nudge: Arc<Notify>,
    done: watch::Sender<Outcome>,
}

/// Waits for someone else's fetch.
pub struct FetchWaiter(watch::Receiver<Outcome>);

impl InFlight {
    /// How many fetches are running.
    pub fn running(&self) -> usize {
        *self.count.borrow()
    }

    /// Returns once no fetch is running (each stored what it received).
    pub async fn settled(&self) {
        let _ = self.count.subscribe().wait_for(|n| *n == 0).await;
    }

    fn fetches(&self) -> std::sync::MutexGuard<'_, Fetches> {
        self.fetches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For bytes missing from `start`: wait for the running fetch that covers
    /// `start` (telling it this reader needs bytes up to `need`), or claim
    /// `[start, want_end)` cut short at the next running fetch. With `cut`
    /// (a reader that seeked, a tag read), a running fetch whose next byte is
    /// more than [`CUT_DISTANCE`] before `start` is cut short at `start`
    /// instead of waited for.
    pub fn claim(self: &Arc<Self>, start: u64, want_end: u64, need: u64, cut: bool) -> Claim {
        let mut fetches = self.fetches();
        if let Some(r) = fetches
            .running
            .iter_mut()
            .find(|r| r.start <= start && start < r.end)
        {
            if !cut || start - r.start <= CUT_DISTANCE {
                r.need = r.need.max(need);
                r.want = r.want.max(need);
                r.nudge.notify_one();
                return Claim::Wait(FetchWaiter(r.done.clone()));
            }
            r.end = start;
            r.want = r.want.min(start);
            r.nudge.notify_one();
        }
        let end = fetches.clip(start, want_end);
        Claim::Fetch(self.register(&mut fetches, start, end, need))
    }

    /// For read-ahead: claims `[at, end)` from the first byte `at` of
    /// `[start, end)` that no running fetch covers, or `None` if all are covered.
    pub fn claim_uncovered(self: &Arc<Self>, start: u64, end: u64) -> Option<FetchGuard> {
        let mut fetches = self.fetches();
        let at = fetches.step_over(start);
        if at >= end {
            return None;
        }
        let claim_end = fetches.clip(at, end);
        Some(self.register(&mut fetches, at, claim_end, at))
    }

    /// Lets every running fetch that overlaps `[from, until)` run up to `until`.
    pub fn want(&self, from: u64, until: u64) {
        let mut fetches = self.fetches();
        for r in fetches.running.iter_mut() {
            if r.start < until && from < r.end && r.want < until {
                r.want = until;
                r.nudge.notify_one();
            }
        }
    }

    /// The first byte of `[start, end)` that no running fetch covers, if any.
    pub fn first_uncovered(&self, start: u64, end: u64) -> Option<u64> {
        let at = self.fetches().step_over(start);
        (at < end).then_some(at)
    }

    fn register(
        self: &Arc<Self>,
        fetches: &mut Fetches,
        start: u64,
        end: u64,
        need: u64,
    ) -> FetchGuard {
        fetches.last_id += 1;
        let id = fetches.last_id;
        let (done, receiver) = watch::channel(None);
        let nudge = Arc::new(Notify::new());
        fetches.running.push(Running {
            id,
            start,
            end,
            want: need.max(start),
            need,
            nudge: nudge.clone(),
            done: receiver,
        });
        self.count.send_modify(|n| *n += 1);
        FetchGuard {
            in_flight: self.clone(),
            id,
            start,
            nudge,
            done,
        }
    }
}

/// Where a fetch stands: what it may do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Where it stops.
    pub end: u64,
    /// How far it may run now.
    pub want: u64,
    /// The furthest byte a waiting reader needs.
    pub need: u64,
}

impl FetchGuard {
    /// Where the fetch stands now.
    pub fn bounds(&self) -> Bounds {
        let mut fetches = self.in_flight.fetches();
        match fetches.get(self.id) {
            Some(r) => Bounds {
                end: r.end,
                want: r.want.min(r.end),
                need: r.need.min(r.end),
            },
            None => Bounds {
                end: self.start,
                want: self.start,
                need: self.start,
            },
        }
    }

    /// Records that bytes before `to` are stored: the claim starts there now.
    /// Call it while holding the manifest's lock, after recording them there.
    pub fn stored_until(&self, to: u64) {
        self.progress().stored_until(to);
    }

    /// A handle that records this fetch's progress from another thread.
    pub fn progress(&self) -> Progress {
        Progress {
            in_flight: self.in_flight.clone(),
            id: self.id,
        }
    }

    /// Waits until `resume` holds for the fetch's bounds (checked whenever they
    /// change), or `idle` passed; false if it gave up.
    pub async fn wait_until(&self, resume: impl Fn(&Bounds) -> bool, idle: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + idle;
        loop {
            let nudged = self.nudge.notified();
            if resume(&self.bounds()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, nudged).await.is_err() {
                return false;
            }
        }
    }

    /// A waiter for this fetch.
    pub fn waiter(&self) -> FetchWaiter {
        FetchWaiter(self.done.subscribe())
    }

    /// Releases the claim, telling waiters how it ended.
    pub fn finish(self, outcome: &OriginResult<()>) {
        self.done.send_replace(Some(outcome.clone()));
    }
}

/// Records a fetch's progress ([`FetchGuard::progress`]).
pub struct Progress {
    in_flight: Arc<InFlight>,
    id: u64,
}

impl Progress {
    /// [`FetchGuard::stored_until`].
    pub fn stored_until(&self, to: u64) {
        if let Some(r) = self.in_flight.fetches().get(self.id) {
            r.start = r.start.max(to.min(r.end));
        }
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.in_flight.fetches().running.retain(|r| r.id != self.id);
        self.in_flight.count.send_modify(|n| *n -= 1);
        // Waiters of a cancelled fetch see a failure; a finished one keeps its value.
        self.done.send_if_modified(|done| {
            if done.is_none() {
                *done = Some(Err(OriginError::unavailable("the fetch was cancelled")));
                true
            } else {
                false
            }
        });
    }
}

impl FetchWaiter {
    /// Waits until the fetch is over; its outcome.
    pub async fn ended(&mut self) -> OriginResult<()> {
        match self.0.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Ok(())),
            Err(_) => Err(OriginError::unavailable("the fetch was cancelled")),
        }
    }

    /// How the fetch ended, once it has.
    pub fn outcome(&self) -> Outcome {
        self.0.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_stops_where_a_running_fetch_begins() {
        let in_flight = Arc::new(InFlight::default());
        let Some(ahead) = in_flight.claim_uncovered(100, 150) else {
            panic!("nothing runs yet")
        };
        assert_eq!(ahead.bounds().end, 150);
        let Claim::Fetch(reader) = in_flight.claim(20, 300, 40, true) else {
            panic!("20 is not covered")
        };
        assert_eq!((reader.start, reader.bounds().end), (20, 100));
        assert_eq!(in_flight.first_uncovered(20, 150), None);
        assert_eq!(in_flight.first_uncovered(20, 151), Some(150));
        assert_eq!(in_flight.first_uncovered(0, 151), Some(0));
    }

    #[test]
    fn a_claim_shrinks_from_the_front_as_bytes_are_stored() {
        let in_flight = Arc::new(InFlight::default());
        let guard = in_flight.claim_uncovered(0, 1000).unwrap();
        guard.stored_until(400);
        assert_eq!(in_flight.first_uncovered(0, 1000), Some(0));
        assert_eq!(in_flight.first_uncovered(400, 1000), None);
        let Claim::Fetch(other) = in_flight.claim(100, 400, 200, true) else {
            panic!("stored bytes are not claimed")
        };
        assert_eq!(other.bounds().end, 400);
    }

    #[test]
    fn a_seek_far_ahead_of_a_fetch_cuts_it_short() {
        let in_flight = Arc::new(InFlight::default());
        let stream = in_flight.claim_uncovered(0, 100 << 20).unwrap();
        let Claim::Wait(_) = in_flight.claim(CUT_DISTANCE, 100 << 20, CUT_DISTANCE + 10, true)
        else {
            panic!("near the fetch's next byte: wait")
        };
        assert_eq!(stream.bounds().need, CUT_DISTANCE + 10);
        let Claim::Fetch(seek) = in_flight.claim(50 << 20, 100 << 20, (50 << 20) + 10, true) else {
            panic!("far ahead: fetch it oneself")
        };
        assert_eq!(stream.bounds().end, 50 << 20, "the first fetch stops there");
        assert_eq!(seek.bounds().end, 100 << 20);
    }

    /// A sequential reader (the kernel's read-ahead far ahead of a stream
    /// still slow-starting) waits for the stream instead of cutting it.
    #[test]
    fn a_sequential_reader_far_ahead_waits_for_the_fetch() {
        let in_flight = Arc::new(InFlight::default());
        let stream = in_flight.claim_uncovered(0, 100 << 20).unwrap();
        let Claim::Wait(_) = in_flight.claim(10 << 20, 100 << 20, (10 << 20) + 10, false) else {
            panic!("sequential: wait")
        };
        assert_eq!(stream.bounds().end, 100 << 20, "not cut");
        assert_eq!(stream.bounds().need, (10 << 20) + 10);
    }

    #[test]
    fn want_raises_every_fetch_it_overlaps() {
        let in_flight = Arc::new(InFlight::default());
        let a = in_flight.claim_uncovered(0, 100).unwrap();
        let b = in_flight.claim_uncovered(100, 200).unwrap();
        in_flight.want(50, 150);
        assert_eq!(a.bounds().want, 100, "capped at its end");
        assert_eq!(b.bounds().want, 150);
        in_flight.want(0, 20);
        assert_eq!(a.bounds().want, 100, "want never falls");
    }

    #[tokio::test(start_paused = true)]
    async fn settled_waits_for_every_running_fetch() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.settled().await;
        let a = in_flight.claim_uncovered(0, 10).unwrap();
        let b = in_flight.claim_uncovered(10, 20).unwrap();
        let settled = tokio::time::timeout(Duration::from_secs(60), in_flight.settled());
        drop(a);
        assert!(settled.await.is_err(), "one fetch still runs");
        drop(b);
        in_flight.settled().await;
    }

    #[tokio::test]
    async fn a_waiter_learns_how_the_fetch_it_waited_for_ended() {
        let in_flight = Arc::new(InFlight::default());
        let Claim::Fetch(guard) = in_flight.claim(0, 10, 10, true) else {
            panic!()
        };
        let Claim::Wait(mut waiter) = in_flight.claim(5, 10, 10, true) else {
            panic!("5 is being fetched")
        };
        assert_eq!(waiter.outcome(), None);
        guard.finish(&Ok(()));
        assert_eq!(waiter.ended().await, Ok(()));

        let Claim::Fetch(cancelled) = in_flight.claim(0, 10, 10, true) else {
            panic!("the finished fetch released its range")
        };
        let Claim::Wait(mut waiter) = in_flight.claim(0, 10, 10, true) else {
            panic!()
        };
        drop(cancelled);
        assert!(
            waiter.ended().await.is_err(),
            "a dropped claim is a failed fetch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_waits_for_want_and_gives_up_when_idle() {
        let in_flight = Arc::new(InFlight::default());
        let guard = in_flight.claim_uncovered(0, 1000).unwrap();
        let past = |at: u64| move |b: &Bounds| b.want > at;
        assert!(
            !guard.wait_until(past(0), Duration::from_secs(5)).await,
            "nobody wants anything"
        );
        let wanting = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.want(0, 300);
            })
        };
        assert!(guard.wait_until(past(0), Duration::from_secs(5)).await);
        assert!(!guard.wait_until(past(300), Duration::from_secs(5)).await);
        wanting.await.unwrap();
    }
}
