//! Periodic health checks: every `check_interval_secs`, every live origin is asked
//! for its health, all at once (each with the call deadline), so a hung origin
//! delays nobody. The answers feed each origin's health (see `origin_health`);
//! reads feed it too, between checks.

use std::sync::Arc;
use std::time::Duration;

use crate::origins::registry::Registry;

/// Checks every origin every `interval` until the returned task is aborted.
pub fn start(registry: Arc<Registry>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; origins were just checked
        loop {
            ticks.tick().await;
            let mut checks = tokio::task::JoinSet::new();
            for origin in registry.all() {
                checks.spawn(async move { origin.health().await });
            }
            while checks.join_next().await.is_some() {}
        }
    })
}
