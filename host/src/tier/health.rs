//! When to ask the tier: after a call fails or runs out its deadline, reads
//! go straight to the origins for a while (1 s, doubling to 30 s while it
//! keeps failing), so that a tier that is down costs a reader one deadline,
//! not one per read. The first call after the pause is the probe: it
//! succeeds and the tier is used again, or the pause doubles.
//!
//! Writes keep a pause of their own, longer (10 s doubling to 10 min): a
//! tier that is full takes a write and never answers it (Garage, its disk
//! full, holds the request open), and a publisher that kept trying would
//! send every new version's packs into that hole. While writes are paused,
//! offers are dropped (counted); reads are not affected by a failed write.

use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a failure.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// The first pause of writes after a failed one.
pub const WRITE_FIRST_PAUSE: Duration = Duration::from_secs(10);
/// The longest pause of writes.
pub const WRITE_LONGEST_PAUSE: Duration = Duration::from_secs(600);

/// Whether the tier is worth asking now.
#[derive(Debug)]
pub struct TierHealth {
    paused_until: Option<Instant>,
    next_pause: Duration,
    first_pause: Duration,
    longest_pause: Duration,
    failures: u64,
}

impl Default for TierHealth {
    /// The pauses of reads.
    fn default() -> Self {
        TierHealth::with_pauses(FIRST_PAUSE, LONGEST_PAUSE)
    }
}

impl TierHealth {
    /// Pauses from `first`, doubling up to `longest`.
    pub fn with_pauses(first: Duration, longest: Duration) -> TierHealth {
        TierHealth {
            paused_until: None,
            next_pause: first,
            first_pause: first,
            longest_pause: longest,
            failures: 0,
        }
    }

    /// The pauses of writes.
    pub fn for_writes() -> TierHealth {
        TierHealth::with_pauses(WRITE_FIRST_PAUSE, WRITE_LONGEST_PAUSE)
    }

    /// Whether to ask the tier now.
    pub fn usable(&self) -> bool {
        self.paused_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// A call failed or ran out its deadline: pause. Returns the pause.
    pub fn failed(&mut self) -> Duration {
        self.failures += 1;
        let pause = self.next_pause;
        self.paused_until = Some(Instant::now() + pause);
        self.next_pause = (self.next_pause * 2).min(self.longest_pause);
        pause
    }

    /// A call succeeded: the tier is used again, and the next pause is short.
    pub fn succeeded(&mut self) {
        self.paused_until = None;
        self.next_pause = self.first_pause;
    }

    /// Whether the next failure starts a run of them (none since the last
    /// success).
    pub fn first_failure_next(&self) -> bool {
        self.next_pause == self.first_pause
    }

    /// Calls that failed since the start.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_tier_is_left_alone_longer_each_time_and_used_again_once_it_answers() {
        let mut health = TierHealth::default();
        assert!(health.usable());
        health.failed();
        assert!(!health.usable());
        tokio::time::advance(FIRST_PAUSE).await;
        assert!(health.usable(), "the probe after the first pause");
        health.failed();
        tokio::time::advance(FIRST_PAUSE).await;
        assert!(!health.usable(), "the second pause is twice as long");
        tokio::time::advance(FIRST_PAUSE).await;
        assert!(health.usable());
        for _ in 0..10 {
            health.failed();
        }
        tokio::time::advance(LONGEST_PAUSE - Duration::from_millis(1)).await;
        assert!(!health.usable());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(health.usable(), "never paused past the longest pause");
        health.succeeded();
        health.failed();
        tokio::time::advance(FIRST_PAUSE).await;
        assert!(
            health.usable(),
            "a success makes the next pause short again"
        );
        assert_eq!(health.failures(), 13);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pause_longer_than_reads_and_start_short_again_after_a_success() {
        let mut writes = TierHealth::for_writes();
        assert_eq!(writes.failed(), WRITE_FIRST_PAUSE);
        assert!(WRITE_FIRST_PAUSE > FIRST_PAUSE && WRITE_LONGEST_PAUSE > LONGEST_PAUSE);
        tokio::time::advance(WRITE_FIRST_PAUSE - Duration::from_millis(1)).await;
        assert!(!writes.usable());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(writes.usable());
        let pauses: Vec<Duration> = (0..8).map(|_| writes.failed()).collect();
        assert_eq!(pauses[0], WRITE_FIRST_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), WRITE_LONGEST_PAUSE);
        writes.succeeded();
        assert_eq!(writes.failed(), WRITE_FIRST_PAUSE);
    }
}
