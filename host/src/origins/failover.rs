//! Reading with failover: a failed replica hands over to the next one at once; the
//! configured delays (100 ms, 500 ms, 2 s by default) apply only when every
//! replica failed and one of them was still usable, so a reader never waits through
//! backoff while a healthy replica exists, and never retries origins that are all
//! known to be down. Each attempt carries the registry's per-call deadline, so a
//! hung origin costs at most that deadline.

use std::future::Future;
use std::time::Duration;

use origin_api::{OriginError, OriginResult};

/// Tries the candidates `route()` gives, in order, with `attempt`, until one
/// succeeds; then retries after each of `delays` while a candidate was usable.
pub async fn with_failover<C, T, Fut>(
    mut route: impl FnMut() -> (Vec<C>, bool),
    mut attempt: impl FnMut(C) -> Fut,
    delays: &[Duration],
) -> OriginResult<T>
where
    Fut: Future<Output = OriginResult<T>>,
{
    let mut last_error = None;
    let mut retries = delays.iter();
    loop {
        let (candidates, any_usable) = route();
        for candidate in candidates {
            match attempt(candidate).await {
                Ok(value) => return Ok(value),
                Err(e) => last_error = Some(e),
            }
        }
        let next = if any_usable { retries.next() } else { None };
        match next {
            Some(delay) => tokio::time::sleep(*delay).await,
            None => {
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
        )
        .await;
        assert_eq!(got.unwrap(), "only");
        assert_eq!(calls.get(), 4);
        assert_eq!(started.elapsed(), Duration::from_millis(2600));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_delay() {
        let started = tokio::time::Instant::now();
        let got = with_failover(|| (vec!["only"], true), |_| async { fail() }, &DELAYS).await;
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
        )
        .await;
        assert!(got.is_err());
        assert_eq!(calls.get(), 1, "one attempt at the least bad");
        assert_eq!(started.elapsed(), Duration::ZERO);
        let none: OriginResult<()> =
            with_failover(|| (Vec::<()>::new(), false), |_| async { Ok(()) }, &DELAYS).await;
        assert!(none.is_err(), "no live replica at all");
    }
}
