//! Which replica to read from: among the replicas of a track, healthy origins by
//! (priority, p50 latency) — priority always dominates, latency breaks ties — then
//! degraded ones in the same order, then the least bad (fewest consecutive
//! failures, then priority). Replicas whose origin is not live are left out: their
//! cached bytes were already tried, and there is no one to ask.

use std::sync::Arc;
use std::time::Duration;

use origin_api::HealthStatus;

use crate::origins::health::HealthSnapshot;
use crate::origins::registry::{RegisteredOrigin, Registry};
use crate::values::Replica;

/// The replicas to try, best first (by their place in the list given), and
/// whether any of them is healthy or degraded.
pub struct Route {
    pub candidates: Vec<(usize, Arc<RegisteredOrigin>)>,
    pub any_usable: bool,
}

/// Orders the live replicas of a track.
pub fn route(replicas: &[Replica], registry: &Registry) -> Route {
    let live = replicas.iter().enumerate().filter_map(|(i, r)| {
        let origin = registry.get(&r.origin)?;
        let health = origin.health_snapshot();
        let priority = origin.priority;
        Some(((i, origin), priority, health))
    });
    let (candidates, any_usable) = order(live.collect());
    Route {
        candidates,
        any_usable,
    }
}

/// The ordering itself, over anything with a priority and a health snapshot.
pub fn order<T>(mut items: Vec<(T, i64, HealthSnapshot)>) -> (Vec<T>, bool) {
    let class = |h: &HealthSnapshot| match h.status {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Unhealthy => 2,
    };
    let unknown_latency = Duration::MAX;
    items.sort_by(|(_, pa, ha), (_, pb, hb)| {
        let key = |p: &i64, h: &HealthSnapshot| match class(h) {
            2 => (2, h.consecutive_failures as i64, *p, Duration::ZERO),
            c => (c, *p, 0, h.p50.unwrap_or(unknown_latency)),
        };
        key(pa, ha).cmp(&key(pb, hb))
    });
    let any_usable = items.iter().any(|(_, _, h)| class(h) < 2);
    (items.into_iter().map(|(t, _, _)| t).collect(), any_usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(status: HealthStatus, failures: u32, p50_ms: Option<u64>) -> HealthSnapshot {
        HealthSnapshot {
            status,
            reason: String::new(),
            consecutive_failures: failures,
            p50: p50_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn priority_dominates_and_latency_breaks_ties() {
        let (order, usable) = order(vec![
            ("slow-p1", 1, health(HealthStatus::Healthy, 0, Some(900))),
            ("fast-p2", 2, health(HealthStatus::Healthy, 0, Some(1))),
            ("fast-p1", 1, health(HealthStatus::Healthy, 0, Some(5))),
            ("unmeasured-p1", 1, health(HealthStatus::Healthy, 0, None)),
        ]);
        assert_eq!(order, ["fast-p1", "slow-p1", "unmeasured-p1", "fast-p2"]);
        assert!(usable);
    }

    #[test]
    fn healthy_then_degraded_then_least_bad() {
        let (order, usable) = order(vec![
            ("dead-p1", 1, health(HealthStatus::Unhealthy, 9, None)),
            ("degraded-p1", 1, health(HealthStatus::Degraded, 0, Some(3))),
            ("flaky-p3", 3, health(HealthStatus::Unhealthy, 2, None)),
            ("healthy-p5", 5, health(HealthStatus::Healthy, 0, Some(50))),
        ]);
        assert_eq!(order, ["healthy-p5", "degraded-p1", "flaky-p3", "dead-p1"]);
        assert!(usable);
    }

    #[test]
    fn all_unhealthy_is_reported() {
        let (order, usable) = order(vec![
            ("b", 2, health(HealthStatus::Unhealthy, 3, None)),
            ("a", 1, health(HealthStatus::Unhealthy, 3, None)),
        ]);
        assert_eq!(order, ["a", "b"], "same failures: priority decides");
        assert!(!usable);
    }
}
