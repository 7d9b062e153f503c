//! The name of every metric MusicFS records, once (`METRICS.md` documents
//! them). A leaf: the parts that record import it, and it imports nothing.

/// 1 if the origin is healthy, 0.5 if degraded, 0 if unhealthy (label `origin`).
pub const ORIGIN_HEALTHY: &str = "musicfs_origin_healthy";
/// Failed calls in a row (label `origin`).
pub const ORIGIN_CONSECUTIVE_FAILURES: &str = "musicfs_origin_consecutive_failures";
/// Calls to an origin (labels `origin`, `op`, `outcome`).
pub const ORIGIN_REQUESTS: &str = "musicfs_origin_requests_total";
/// How long a call took, or a stream took to its first piece (labels `origin`, `op`).
pub const ORIGIN_REQUEST_SECONDS: &str = "musicfs_origin_request_duration_seconds";
/// Bytes an origin delivered for reads (label `origin`).
pub const ORIGIN_READ_BYTES: &str = "musicfs_origin_read_bytes_total";
/// Polls of an origin's listing finished, the first (baseline) included
/// (label `origin`; origins that watch by polling).
pub const POLLS: &str = "musicfs_polls_total";
/// Of those, polls whose listing failed (label `origin`).
pub const POLL_FAILURES: &str = "musicfs_poll_failures_total";
/// Listing requests the polls made (label `origin`).
pub const POLL_REQUESTS: &str = "musicfs_poll_requests_total";
/// Bytes of paths and version tokens the polls listed (label `origin`).
pub const POLL_LISTED_BYTES: &str = "musicfs_poll_listed_bytes_total";
/// The last poll that listed: its requests (label `origin`).
pub const POLL_LAST_REQUESTS: &str = "musicfs_poll_last_requests";
/// The last poll that listed: its bytes of paths and versions (label `origin`).
pub const POLL_LAST_LISTED_BYTES: &str = "musicfs_poll_last_listed_bytes";
/// The last poll that listed: how long it took (label `origin`).
pub const POLL_LAST_SECONDS: &str = "musicfs_poll_last_seconds";
/// Bytes in the cache (chunks and whole copies).
pub const CACHE_BYTES: &str = "musicfs_cache_bytes";
/// The cache's limit.
pub const CACHE_LIMIT_BYTES: &str = "musicfs_cache_limit_bytes";
/// Bytes of pinned files in the cache (beyond the limit).
pub const CACHE_PINNED_BYTES: &str = "musicfs_cache_pinned_bytes";
/// Reads served wholly from the cache.
pub const CACHE_HITS: &str = "musicfs_cache_hits_total";
/// Reads that had to fetch from an origin.
pub const CACHE_MISSES: &str = "musicfs_cache_misses_total";
/// Chunk packs evicted to keep under the limit.
pub const CACHE_EVICTIONS: &str = "musicfs_cache_evictions_total";
/// Bytes those packs held.
pub const CACHE_EVICTED_BYTES: &str = "musicfs_cache_evicted_bytes_total";
/// FUSE requests answered (label `op`).
pub const FUSE_REQUESTS: &str = "musicfs_fuse_requests_total";
/// 1 while a scan runs.
pub const SCAN_RUNNING: &str = "musicfs_scan_running";
/// Scans finished.
pub const SCANS: &str = "musicfs_scans_total";
/// Files scans found (one per file per scan).
pub const SCAN_FILES: &str = "musicfs_scan_files_total";
/// Files whose tags scans read (not reused from the index).
pub const SCAN_TAGS_READ: &str = "musicfs_scan_tags_read_total";
/// Tracks the library shows.
pub const LIBRARY_TRACKS: &str = "musicfs_library_tracks";
/// Changes to the tree shown (label `how`: `folders` for a change batch laid
/// out folder by folder, `whole` for a build from the whole index).
pub const TREE_CHANGES: &str = "musicfs_tree_changes_total";

/// How often the gauges are brought up to date.
/// Times a plugin's process was started again, by plugin kind.
pub const PLUGIN_RESTARTS: &str = "musicfs_plugin_restarts_total";

/// The shared tier, as the mount that scrapes sees it (with `[tier]` only):
/// bytes read from it (manifests and chunks) and written to it.
pub const TIER_READ_BYTES: &str = "musicfs_tier_read_bytes_total";
/// Bytes this mount wrote to the tier.
pub const TIER_WRITTEN_BYTES: &str = "musicfs_tier_written_bytes_total";
/// Calls to the tier that failed or ran out their deadline.
pub const TIER_FAILURES: &str = "musicfs_tier_failures_total";
/// Objects of the tier refused: damaged or foreign.
pub const TIER_REFUSED: &str = "musicfs_tier_refused_total";
/// Offers to publish dropped while the publisher was behind.
pub const TIER_DROPPED_OFFERS: &str = "musicfs_tier_dropped_offers_total";
/// Bytes of packs this mount swept to keep the tier's limit.
pub const TIER_SWEPT_BYTES: &str = "musicfs_tier_swept_bytes_total";
/// Objects this mount deleted tidying the tier (ended sessions and leases,
/// old heads, segments and manifests no longer of use).
pub const TIER_TIDIED_OBJECTS: &str = "musicfs_tier_tidied_objects_total";
/// 1 while the tier is asked, 0 while it is paused after failing.
pub const TIER_USABLE: &str = "musicfs_tier_usable";
