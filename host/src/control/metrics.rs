//! `musicfs mount --metrics ADDR`: Prometheus text at `http://ADDR/metrics`.
//!
//! Events are recorded where they happen through the `metrics` facade (origin
//! calls in `origins::registry`, FUSE requests in `fs::fuse`, evictions in
//! `cache::chunk_store`, scans in `library::scanner` and the daemon); the
//! state that already has a home (health, cache size, hit counts, tracks) is
//! copied into gauges once a second by [`start_sampler`] rather than kept twice.
//! Without `--metrics` no recorder is installed and every macro is a no-op.
//!
//! Every name is in `telemetry::metric_names`, once; `METRICS.md` documents
//! them and a test checks the two against a scrape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
use origin_api::HealthStatus;

use crate::daemon::Daemon;
use crate::telemetry::metric_names::*;

/// 1 while a plugin's process runs, 0 while it is being started again.
pub const PLUGIN_UP: &str = "musicfs_plugin_up";

pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Latency buckets, in seconds: from a local disk's answer to a slow WAN's.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder and serves `/metrics` on `addr`. Call inside the
/// runtime; fails if the address cannot be bound.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        // An origin taken down stops being sampled: its gauges go with it.
        .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(SAMPLE_EVERY * 10))
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    describe_gauge!(
        ORIGIN_HEALTHY,
        "1 if the origin is healthy, 0.5 if degraded, 0 if unhealthy"
    );
    describe_gauge!(ORIGIN_CONSECUTIVE_FAILURES, "Failed calls in a row");
    describe_counter!(
        ORIGIN_REQUESTS,
        "Calls to an origin, by operation and outcome"
    );
    describe_histogram!(
        ORIGIN_REQUEST_SECONDS,
        Unit::Seconds,
        "How long an origin call took (a stream: until its first piece)"
    );
    describe_counter!(
        ORIGIN_READ_BYTES,
        Unit::Bytes,
        "Bytes an origin delivered for reads"
    );
    describe_counter!(POLLS, "Polls of the origin's listing finished");
    describe_counter!(POLL_FAILURES, "Polls whose listing failed");
    describe_counter!(POLL_REQUESTS, "Listing requests the polls made");
    describe_counter!(
        POLL_LISTED_BYTES,
        Unit::Bytes,
        "Bytes of paths and version tokens the polls listed"
    );
    describe_gauge!(POLL_LAST_REQUESTS, "Listing requests of the last poll");
    describe_gauge!(
        POLL_LAST_LISTED_BYTES,
        Unit::Bytes,
        "Bytes of paths and version tokens the last poll listed"
    );
    describe_gauge!(
        POLL_LAST_SECONDS,
        Unit::Seconds,
        "How long the last poll that listed took"
    );
    describe_gauge!(CACHE_BYTES, Unit::Bytes, "Bytes in the cache");
    describe_gauge!(CACHE_LIMIT_BYTES, Unit::Bytes, "The cache's size limit");
    describe_gauge!(
        CACHE_PINNED_BYTES,
        Unit::Bytes,
        "Bytes of pinned files in the cache, kept beyond the limit"
    );
    describe_counter!(CACHE_HITS, "Reads served wholly from the cache");
    describe_counter!(CACHE_MISSES, "Reads that had to fetch from an origin");
    describe_counter!(
        CACHE_EVICTIONS,
        "Chunk packs evicted to keep under the limit"
    );
    describe_counter!(
        CACHE_EVICTED_BYTES,
        Unit::Bytes,
        "Bytes the evicted packs held"
    );
    describe_counter!(FUSE_REQUESTS, "FUSE requests answered, by operation");
    describe_gauge!(SCAN_RUNNING, "1 while a scan runs");
    describe_counter!(SCANS, "Scans finished");
    describe_counter!(SCAN_FILES, "Files scans found");
    describe_counter!(SCAN_TAGS_READ, "Files whose tags scans read");
    describe_gauge!(LIBRARY_TRACKS, "Tracks the library shows");
    describe_counter!(
        TREE_CHANGES,
        "Changes to the tree shown: folder by folder, or built whole"
    );
    describe_counter!(
        PLUGIN_RESTARTS,
        "Times a plugin's process was started again after it went away"
    );
    describe_gauge!(PLUGIN_UP, "1 while a plugin's process runs");
    describe_counter!(
        TIER_READ_BYTES,
        Unit::Bytes,
        "Bytes read from the shared tier"
    );
    describe_counter!(
        TIER_WRITTEN_BYTES,
        Unit::Bytes,
        "Bytes written to the shared tier"
    );
    describe_counter!(
        TIER_FAILURES,
        "Calls to the tier that failed or ran out their deadline"
    );
    describe_counter!(
        TIER_REFUSED,
        "Objects of the tier refused as damaged or foreign"
    );
    describe_counter!(
        TIER_DROPPED_OFFERS,
        "Versions not published: the publisher was behind"
    );
    describe_counter!(
        TIER_SWEPT_BYTES,
        Unit::Bytes,
        "Bytes of packs swept to keep the tier's limit"
    );
    describe_counter!(
        TIER_TIDIED_OBJECTS,
        "Objects deleted tidying the tier: ended sessions and leases, old heads, unused segments and manifests"
    );
    describe_gauge!(
        TIER_USABLE,
        "1 while reads ask the tier, 0 while it is paused"
    );
}

/// Copies the daemon's state into the gauges every [`SAMPLE_EVERY`].
pub fn start_sampler(daemon: Arc<Daemon>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        loop {
            ticks.tick().await;
            sample(&daemon);
        }
    })
}

fn sample(daemon: &Daemon) {
    for origin in daemon.registry.all() {
        let health = origin.health_snapshot();
        let healthy = match health.status {
            HealthStatus::Healthy => 1.0,
            HealthStatus::Degraded => 0.5,
            HealthStatus::Unhealthy => 0.0,
        };
        gauge!(ORIGIN_HEALTHY, "origin" => origin.id.clone()).set(healthy);
        gauge!(ORIGIN_CONSECUTIVE_FAILURES, "origin" => origin.id.clone())
            .set(health.consecutive_failures);
        if let Some(polls) = origin.watch_stats() {
            let id = || ("origin", origin.id.clone());
            counter!(POLLS, &[id()]).absolute(polls.polls);
            counter!(POLL_FAILURES, &[id()]).absolute(polls.failed);
            counter!(POLL_REQUESTS, &[id()]).absolute(polls.requests);
            counter!(POLL_LISTED_BYTES, &[id()]).absolute(polls.bytes);
            gauge!(POLL_LAST_REQUESTS, &[id()]).set(polls.last_requests as f64);
            gauge!(POLL_LAST_LISTED_BYTES, &[id()]).set(polls.last_bytes as f64);
            gauge!(POLL_LAST_SECONDS, &[id()]).set(polls.last_millis as f64 / 1000.0);
        }
    }
    let stats = daemon.cache.stats();
    gauge!(CACHE_BYTES).set(stats.bytes as f64);
    gauge!(CACHE_LIMIT_BYTES).set(stats.limit as f64);
    gauge!(CACHE_PINNED_BYTES).set(stats.pinned_bytes as f64);
    counter!(CACHE_HITS).absolute(stats.hits);
    counter!(CACHE_MISSES).absolute(stats.misses);
    gauge!(LIBRARY_TRACKS).set(daemon.view.snapshot().file_count() as f64);
    let (folders, whole) = daemon.tree_changes();
    counter!(TREE_CHANGES, "how" => "folders").absolute(folders);
    counter!(TREE_CHANGES, "how" => "whole").absolute(whole);
    gauge!(SCAN_RUNNING).set(if daemon.is_scanning() { 1.0 } else { 0.0 });
    if let Some(tier) = daemon.tier.get() {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &tier.figures;
        counter!(TIER_READ_BYTES).absolute(f.bytes_read.load(Relaxed));
        counter!(TIER_WRITTEN_BYTES).absolute(f.bytes_written.load(Relaxed));
        counter!(TIER_FAILURES).absolute(f.failures.load(Relaxed));
        counter!(TIER_REFUSED).absolute(f.refused.load(Relaxed));
        counter!(TIER_DROPPED_OFFERS).absolute(f.dropped.load(Relaxed));
        counter!(TIER_SWEPT_BYTES).absolute(f.swept_bytes.load(Relaxed));
        counter!(TIER_TIDIED_OBJECTS).absolute(f.tidied_objects.load(Relaxed));
        gauge!(TIER_USABLE).set(if tier.usable() { 1.0 } else { 0.0 });
    }
    for (kind, _, process) in daemon.manager.processes() {
        counter!(PLUGIN_RESTARTS, "plugin" => kind.clone()).absolute(process.restarts);
        gauge!(PLUGIN_UP, "plugin" => kind).set(if process.pid.is_some() { 1.0 } else { 0.0 });
    }
}
