//! Reading with failover: a failed replica hands over to the next one at once; the
//! configured delays (100 ms, 500 ms, 2 s by default) apply only when every
//! replica failed and one of them was still usable, so a reader never waits through
//! backoff while a healthy replica exists, and never retries origins that are all
//! known to be down.
//!
//! One deadline covers the whole read: each attempt carries the registry's
//! per-call deadline, and is also cut short where the read's own deadline falls;
//! a retry whose delay would end past it is not made. So a hung origin, however
//! "usable" it still looks, holds a reader for at most the read's deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use origin_api::{OriginError, OriginResult};
use tokio::time::Instant;

/// How reads through the mount retry, and how long one may take.
#[derive(Clone, Debug)]
pub struct ReadPolicy {
    /// Delays between rounds of attempts (`[retry] delays_ms`).
    pub retry_delays: Arc<[Duration]>,
    /// The deadline of one read, failover and retries included.
    pub deadline: Duration,
}

impl ReadPolicy {
    /// One attempt at each candidate, no retries, and no deadline but each
    /// call's own (the registry's): a scan's tag reads, which a failure
    /// answers by keeping what the index knew.
    pub fn once() -> Self {
        ReadPolicy {
            retry_delays: Arc::new([]),
            deadline: Duration::from_secs(24 * 3600),
        }
    }
}

/// Tries the candidates `route()` gives, in order, with `attempt`, until one
/// succeeds; then retries after each of `delays` while a candidate was usable.
/// Gives up with a timeout once `deadline` (from now) has passed.
pub async fn with_failover<C, T, Fut>(
    mut route: impl FnMut() -> (Vec<C>, bool),
    mut attempt: impl FnMut(C) -> Fut,
    delays: &[Duration],
    deadline: Duration,
) -> OriginResult<T>
where
    Fut: Future<Output = OriginResult<T>>,
{
    let end = Instant::now() + deadline;
    let past_deadline = || {
        OriginError::timeout(format!(
            "the read's deadline of {} ms passed",
            deadline.as_millis()
        ))
    };
    let mut last_error = None;
    let mut retries = delays.iter();
    loop {
        let (candidates, any_usable) = route();
        for candidate in candidates {
            match tokio::time::timeout_at(end, attempt(candidate)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => return Err(past_deadline()),
            }
            if Instant::now() >= end {
                return Err(last_error.unwrap_or_else(past_deadline));
            }
        }
        // A file that changed will not change back: no round of retries.
        let changed = last_error
            .as_ref()
            .is_some_and(|e| e.kind() == origin_api::ErrorKind::Changed);
        let next = if any_usable && !changed {
            retries.next()
        } else {
            None
        };
        match next {
            Some(delay) if Instant::now() + *delay < end => tokio::time::sleep(*delay).await,
            _ => {
                return Err(last_error.unwrap_or_else(|| {
                    OriginError::unavailable("no origin holds this file right now")
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const DELAYS: [Duration; 3] = [
        Duration::from_millis(100),
        Duration::from_millis(500),
        Duration::from_millis(2000),
    ];

    /// A read deadline that none of the tests without one reaches.
    const LONG: Duration = Duration::from_secs(3600);

    fn fail() -> OriginResult<&'static str> {
        Err(OriginError::unavailable("down"))
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_replica_is_tried_at_once() {
        let started = tokio::time::Instant::now();
        let tried = Cell::new(Vec::new());
        let got = with_failover(
            || (vec!["p1", "p2"], true),
            |c| {
                let mut t = tried.take();
                t.push(c);
                tried.set(t);
                async move {
                    if c == "p1" {
                        fail()
                    } else {
                        Ok(c)
                    }
                }
            },
            &DELAYS,
            LONG,
        )
        .await;
        assert_eq!(got.unwrap(), "p2");
        assert_eq!(tried.take(), ["p1", "p2"]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no backoff while a replica is left"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_exactly_the_configured_delays() {
        let started = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let got = with_failover(
            || (vec!["only"], true),
            |c| {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 4 {
                        fail()
                    } else {
                        Ok(c)
                    }
                }
            },
            &DELAYS,
            LONG,
        )
        .await;
        assert_eq!(got.unwrap(), "only");
        assert_eq!(calls.get(), 4);
        assert_eq!(started.elapsed(), Duration::from_millis(2600));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_delay() {
        let started = tokio::time::Instant::now();
        let got = with_failover(|| (vec!["only"], true), |_| async { fail() }, &DELAYS, LONG).await;
        assert_eq!(got.unwrap_err().kind(), origin_api::ErrorKind::Unavailable);
        assert_eq!(started.elapsed(), Duration::from_millis(2600));
    }

    #[tokio::test(start_paused = true)]
    async fn origins_known_to_be_down_are_not_retried() {
        let started = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let got = with_failover(
            || (vec!["dead"], false),
            |_| {
                calls.set(calls.get() + 1);
                async { fail() }
            },
            &DELAYS,
            LONG,
        )
        .await;
        assert!(got.is_err());
        assert_eq!(calls.get(), 1, "one attempt at the least bad");
        assert_eq!(started.elapsed(), Duration::ZERO);
        let none: OriginResult<()> = with_failover(
            || (Vec::<()>::new(), false),
            |_| async { Ok(()) },
            &DELAYS,
            LONG,
        )
        .await;
        assert!(none.is_err(), "no live replica at all");
    }

    /// What the registry's per-call deadline does to an attempt on a hung origin.
    async fn hang_until_the_call_deadline() -> OriginResult<&'static str> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Err(OriginError::timeout("read took longer than 5000 ms"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_usable_origin_holds_a_read_for_the_read_deadline_only() {
        // The origin still looks usable after each timeout, so before the read had
        // one deadline every retry waited for the call deadline again: 4 attempts
        // and 2.6 s of delays, 22.6 s in all.
        let started = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let got = with_failover(
            || (vec!["hung"], true),
            |_| {
                calls.set(calls.get() + 1);
                hang_until_the_call_deadline()
            },
            &DELAYS,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(got.unwrap_err().kind(), origin_api::ErrorKind::Timeout);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(calls.get(), 2, "the second attempt is cut at the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_hung_replica_the_next_one_gets_the_time_left() {
        let started = tokio::time::Instant::now();
        let got = with_failover(
            || (vec!["hung", "fine"], true),
            |c| async move {
                if c == "hung" {
                    hang_until_the_call_deadline().await
                } else {
                    Ok(c)
                }
            },
            &DELAYS,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(got.unwrap(), "fine");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_is_started_that_would_end_past_the_deadline() {
        let started = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let got = with_failover(
            || (vec!["only"], true),
            |_| {
                calls.set(calls.get() + 1);
                async { fail() }
            },
            &DELAYS,
            Duration::from_millis(700),
        )
        .await;
        assert_eq!(got.unwrap_err().kind(), origin_api::ErrorKind::Unavailable);
        assert_eq!(calls.get(), 3, "after 0, 100 and 600 ms; not after 2600");
        assert_eq!(started.elapsed(), Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_file_is_not_retried() {
        let started = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let got: OriginResult<()> = with_failover(
            || (vec!["only"], true),
            |_| {
                calls.set(calls.get() + 1);
                async { Err(OriginError::changed("rewritten")) }
            },
            &DELAYS,
            LONG,
        )
        .await;
        assert_eq!(got.unwrap_err().kind(), origin_api::ErrorKind::Changed);
        assert_eq!(calls.get(), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
