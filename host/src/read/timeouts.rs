//! The last read of an open file that ran out its deadline. Linux answers a
//! failed readahead by asking at once for the same pages again; without this
//! memory, a reader of a hung origin would wait out a second deadline.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a read that ran out its deadline makes an overlapping read of the same
/// open file fail at once.
pub const TIMED_OUT_MEMORY: Duration = Duration::from_secs(1);

/// The range of the last read that timed out, and when.
#[derive(Default)]
pub struct RecentTimeout(Mutex<Option<(Instant, u64, u64)>>);

impl RecentTimeout {
    /// Remembers that a read of `[start, end)` ran out its deadline now.
    pub fn record(&self, start: u64, end: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), start, end));
    }

    /// Forgets it: a read succeeded.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether `[start, end)` overlaps a read that timed out just now.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|(at, s, e)| at.elapsed() < TIMED_OUT_MEMORY && start < e && s < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_overlapping_read_fails_fast_for_a_second_only() {
        let memory = RecentTimeout::default();
        memory.record(100, 200);
        assert!(memory.covers(150, 250));
        assert!(!memory.covers(200, 300), "not overlapping");
        tokio::time::advance(TIMED_OUT_MEMORY).await;
        assert!(!memory.covers(150, 250), "forgotten after a second");
        memory.record(0, 10);
        memory.clear();
        assert!(!memory.covers(0, 10));
    }
}
