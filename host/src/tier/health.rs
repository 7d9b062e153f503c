//! When to ask the tier: after a call fails or runs out its deadline, reads
//! go straight to the origins for a while (1 s, doubling to 30 s while it
//! keeps failing), so that a tier that is down costs a reader one deadline,
//! not one per read. The first call after the pause is the probe: it
//! succeeds and the tier is used again, or the pause doubles.

use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a failure.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// Whether the tier is worth asking now.
#[derive(Debug)]
pub struct TierHealth {
    paused_until: Option<Instant>,
    next_pause: Duration,
    failures: u64,
}

impl Default for TierHealth {
    fn default() -> Self {
        TierHealth {
            paused_until: None,
            next_pause: FIRST_PAUSE,
            failures: 0,
        }
    }
}

impl TierHealth {
    /// Whether to ask the tier now.
    pub fn usable(&self) -> bool {
        self.paused_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// A call failed or ran out its deadline: pause.
    pub fn failed(&mut self) {
        self.failures += 1;
        self.paused_until = Some(Instant::now() + self.next_pause);
        self.next_pause = (self.next_pause * 2).min(LONGEST_PAUSE);
    }

    /// A call succeeded: the tier is used again, and the next pause is short.
    pub fn succeeded(&mut self) {
        self.paused_until = None;
        self.next_pause = FIRST_PAUSE;
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
}
