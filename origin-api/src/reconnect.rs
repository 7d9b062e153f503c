//! One live connection to a server, made on first use and made again after it
//! is lost, for plugins whose backend is one session that every call shares
//! (NFS, SMB).
//!
//! With none live, one attempt runs at a time (callers that arrive meanwhile
//! wait for it and share its outcome); a failed attempt answers every call for
//! `retry_after`, so calls fail fast (or fail over) while the server is away,
//! and the origin comes back by itself when it returns. Each connection made
//! gets a generation number, so that a caller whose connection failed
//! forgets that one only, never a newer one another caller has made since.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::{OriginError, OriginResult};

struct State<T> {
    live: Option<(u64, T)>,
    made: u64,
    last_failure: Option<(Instant, OriginError)>,
}

/// The live connection `T`, if any, and how to make the next one.
pub struct Reconnect<T> {
    state: Mutex<State<T>>,
    connecting: tokio::sync::Mutex<()>,
    retry_after: Duration,
}

impl<T: Clone> Reconnect<T> {
    /// None live yet; a failed attempt answers for `retry_after`.
    pub fn new(retry_after: Duration) -> Self {
        Reconnect {
            state: Mutex::new(State {
                live: None,
                made: 0,
                last_failure: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
            retry_after,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> OriginResult<Option<T>> {
        let state = self.state();
        if let Some((_, live)) = &state.live {
            return Ok(Some(live.clone()));
        }
        match &state.last_failure {
            Some((at, e)) if at.elapsed() < self.retry_after => Err(e.clone()),
            _ => Ok(None),
        }
    }

    /// The live connection, or one made by `connect(generation)` (which
    /// should keep the generation, to [`forget`](Self::forget) it by).
    pub async fn get<F, Fut>(&self, connect: F) -> OriginResult<T>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = OriginResult<T>>,
    {
        if let Some(live) = self.current()? {
            return Ok(live);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(live) = self.current()? {
            return Ok(live);
        }
        let generation = {
            let mut state = self.state();
            state.made += 1;
            state.made
        };
        let made = connect(generation).await;
        let mut state = self.state();
        match &made {
            Ok(live) => {
                state.live = Some((generation, live.clone()));
                state.last_failure = None;
            }
            Err(e) => state.last_failure = Some((Instant::now(), e.clone())),
        }
        made
    }

    /// Forgets the connection of `generation` if it is still the live one:
    /// the next call makes another.
    pub fn forget(&self, generation: u64) {
        let mut state = self.state();
        if state.live.as_ref().is_some_and(|(g, _)| *g == generation) {
            state.live = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_failure_answers_for_a_while_and_only_the_failed_connection_is_forgotten() {
        let connections = Reconnect::<u64>::new(Duration::from_secs(1));
        let attempts = AtomicUsize::new(0);
        let refuse = |_| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err::<u64, _>(OriginError::unavailable("unreachable: down"))
        };
        assert!(connections.get(refuse).await.is_err());
        assert!(connections.get(refuse).await.is_err());
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "the failure answered");
        tokio::time::advance(Duration::from_secs(1)).await;
        let first = connections.get(|g| async move { Ok(g) }).await.unwrap();
        assert_eq!(connections.get(refuse).await.unwrap(), first, "kept");
        connections.forget(first);
        let second = connections.get(|g| async move { Ok(g) }).await.unwrap();
        assert_ne!(second, first);
        connections.forget(first);
        assert_eq!(
            connections.get(refuse).await.unwrap(),
            second,
            "a stale forget is ignored"
        );
    }
}
