//! One origin's health as the router sees it: a status with its reason, the run of
//! consecutive failures, and the latency of recent calls.
//!
//! Every call through the registry reports here, so a dead origin is noticed within
//! one read, not at the next periodic check: `threshold` consecutive failures make
//! it unhealthy, and one success makes it healthy again. Periodic health checks
//! report the same way (an unhealthy answer counts as a failure; a degraded one
//! marks the origin degraded). A path that is not found is the file's problem, not
//! the origin's, and does not count.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use origin_api::{ErrorKind, Health, HealthStatus};

/// How many recent call latencies the p50 is taken over.
const LATENCY_WINDOW: usize = 100;

/// A change of status, to log once and publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: HealthStatus,
    pub to: HealthStatus,
    pub reason: String,
}

/// What the status view and the router read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub status: HealthStatus,
    pub reason: String,
    pub consecutive_failures: u32,
    /// Median of the recent call latencies, if any call was made.
    pub p50: Option<Duration>,
}

struct State {
    status: HealthStatus,
    reason: String,
    consecutive_failures: u32,
    latencies: VecDeque<Duration>,
}

/// The health of one origin.
pub struct OriginHealth {
    threshold: u32,
    state: Mutex<State>,
}

impl OriginHealth {
    /// A healthy origin that turns unhealthy after `threshold` consecutive failures.
    pub fn new(threshold: u32) -> Self {
        OriginHealth {
            threshold: threshold.max(1),
            state: Mutex::new(State {
                status: HealthStatus::Healthy,
                reason: String::new(),
                consecutive_failures: 0,
                latencies: VecDeque::with_capacity(LATENCY_WINDOW),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call succeeded after `latency`.
    pub fn record_success(&self, latency: Duration) -> Option<Transition> {
        let mut state = self.state();
        if state.latencies.len() == LATENCY_WINDOW {
            state.latencies.pop_front();
        }
        state.latencies.push_back(latency);
        state.consecutive_failures = 0;
        set(&mut state, HealthStatus::Healthy, String::new())
    }

    /// A call failed with an error of `kind`.
    pub fn record_failure(&self, kind: ErrorKind, reason: &str) -> Option<Transition> {
        // A missing, unreadable or changed file says nothing about the origin.
        // An origin that refuses everything (wrong credentials) fails its health
        // check.
        if matches!(
            kind,
            ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::Changed
        ) {
            return None;
        }
        let mut state = self.state();
        state.consecutive_failures += 1;
        if state.consecutive_failures >= self.threshold {
            set(&mut state, HealthStatus::Unhealthy, reason.to_owned())
        } else {
            None
        }
    }

    /// The origin is known to be unhealthy now (it failed the check made when it
    /// was opened): no need to wait for `threshold` failures.
    pub fn set_unhealthy(&self, reason: &str) -> Option<Transition> {
        let mut state = self.state();
        state.consecutive_failures = state.consecutive_failures.max(self.threshold);
        set(&mut state, HealthStatus::Unhealthy, reason.to_owned())
    }

    /// A periodic health check answered `health`.
    pub fn record_check(&self, health: &Health) -> Option<Transition> {
        match health.status {
            HealthStatus::Healthy => {
                let mut state = self.state();
                state.consecutive_failures = 0;
                set(&mut state, HealthStatus::Healthy, String::new())
            }
            HealthStatus::Degraded => {
                let mut state = self.state();
                if state.status == HealthStatus::Unhealthy
                    && state.consecutive_failures >= self.threshold
                {
                    return None;
                }
                set(&mut state, HealthStatus::Degraded, health.reason.clone())
            }
            HealthStatus::Unhealthy => self.record_failure(ErrorKind::Unavailable, &health.reason),
        }
    }

    /// The current figures.
    pub fn snapshot(&self) -> HealthSnapshot {
        let state = self.state();
        let mut sorted: Vec<Duration> = state.latencies.iter().copied().collect();
        sorted.sort_unstable();
        HealthSnapshot {
            status: state.status,
            reason: state.reason.clone(),
            consecutive_failures: state.consecutive_failures,
            p50: sorted.get(sorted.len() / 2).copied(),
        }
    }
}

fn set(state: &mut State, to: HealthStatus, reason: String) -> Option<Transition> {
    let from = state.status;
    state.status = to;
    if from == to {
        if to != HealthStatus::Healthy {
            state.reason = reason;
        }
        return None;
    }
    state.reason = reason.clone();
    Some(Transition { from, to, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_failures_make_it_unhealthy_and_one_success_heals() {
        let health = OriginHealth::new(3);
        assert_eq!(health.record_failure(ErrorKind::Timeout, "slow"), None);
        assert_eq!(health.record_failure(ErrorKind::Unavailable, "down"), None);
        let t = health
            .record_failure(ErrorKind::Unavailable, "down")
            .unwrap();
        assert_eq!(
            (t.from, t.to, t.reason.as_str()),
            (HealthStatus::Healthy, HealthStatus::Unhealthy, "down")
        );
        assert_eq!(
            health.record_failure(ErrorKind::Unavailable, "still down"),
            None,
            "logged once"
        );
        assert_eq!(health.snapshot().consecutive_failures, 4);
        let t = health.record_success(Duration::from_millis(5)).unwrap();
        assert_eq!(t.to, HealthStatus::Healthy);
        assert_eq!(health.snapshot().consecutive_failures, 0);
    }

    #[test]
    fn missing_and_unreadable_files_do_not_count_and_a_local_origin_fails_at_once() {
        let health = OriginHealth::new(1);
        assert_eq!(
            health.record_failure(ErrorKind::NotFound, "no such file"),
            None
        );
        assert_eq!(
            health.record_failure(ErrorKind::PermissionDenied, "secret.flac"),
            None
        );
        assert_eq!(health.snapshot().status, HealthStatus::Healthy);
        assert!(health
            .record_failure(ErrorKind::Unavailable, "gone")
            .is_some());
    }

    #[test]
    fn p50_is_the_median_of_recent_calls() {
        let health = OriginHealth::new(3);
        assert_eq!(health.snapshot().p50, None);
        for ms in [5, 1, 9, 3, 7] {
            health.record_success(Duration::from_millis(ms));
        }
        assert_eq!(health.snapshot().p50, Some(Duration::from_millis(5)));
        for _ in 0..200 {
            health.record_success(Duration::from_millis(40));
        }
        assert_eq!(
            health.snapshot().p50,
            Some(Duration::from_millis(40)),
            "only the last 100 count"
        );
    }

    #[test]
    fn checks_mark_degraded_and_healthy() {
        let health = OriginHealth::new(2);
        let t = health.record_check(&Health::degraded("slow disk")).unwrap();
        assert_eq!(
            (t.to, t.reason.as_str()),
            (HealthStatus::Degraded, "slow disk")
        );
        assert_eq!(health.record_check(&Health::unhealthy("gone")), None);
        assert!(health.record_check(&Health::unhealthy("gone")).is_some());
        assert_eq!(
            health.record_check(&Health::healthy()).unwrap().to,
            HealthStatus::Healthy
        );
    }
}
