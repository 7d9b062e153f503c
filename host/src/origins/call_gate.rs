//! Counts calls in flight on one origin and lets unregistering wait for them.
//!
//! `enter` increments before it checks `closing`, and `drain` sets `closing` before
//! it reads the count, so a call either sees the gate closed or is counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct CallGate {
    closing: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Woken when `closing` is set: long calls (a paused stream) end then.
    closed: Notify,
}

/// Held for the length of one call.
pub(crate) struct CallGuard(Arc<CallGate>);

impl CallGate {
    /// Admits a call, or `None` once the gate is closing.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<CallGuard> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closing.load(Ordering::SeqCst) {
            self.leave();
            return None;
        }
        Some(CallGuard(self.clone()))
    }

    /// Whether the gate is closing: a long call (a stream) should end.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Closes the gate and waits up to `limit` for the calls in flight; returns how
    /// many were still running when it gave up.
    pub(crate) async fn drain(&self, limit: Duration) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            let running = self.in_flight.load(Ordering::SeqCst);
            if running == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight.load(Ordering::SeqCst);
            }
        }
    }

    /// Returns once the gate is closing.
    pub(crate) async fn closing(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            // Registered before the check, so a `drain` in between still wakes it.
            closed.as_mut().enable();
            if self.is_closing() {
                return;
            }
            closed.await;
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_calls_and_then_refuses_new_ones() {
        let gate = Arc::new(CallGate::default());
        let guard = gate.enter().unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(guard);
        });
        let started = tokio::time::Instant::now();
        assert_eq!(gate.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert!(gate.enter().is_none());
        release.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_call_learns_that_the_gate_is_closing() {
        let gate = Arc::new(CallGate::default());
        let guard = gate.enter().unwrap();
        let long_call = {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.closing().await;
                drop(guard);
            })
        };
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert_eq!(gate.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(started.elapsed(), Duration::ZERO, "it ended at once");
        long_call.await.unwrap();
        gate.closing().await;
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_its_limit() {
        let gate = Arc::new(CallGate::default());
        let _stuck = gate.enter().unwrap();
        assert_eq!(gate.drain(Duration::from_secs(2)).await, 1);
        assert_eq!(gate.in_flight(), 1);
    }
}
