//! The live status of a mount: every origin's health and figures, and the cache's.
//! The daemon builds it; the control socket sends it as JSON; `musicfs status`
//! prints it as a table (or passes the JSON on).

use serde::{Deserialize, Serialize};

use crate::daemon::Daemon;

/// One origin's line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OriginStatus {
    pub id: String,
    pub kind: String,
    pub plugin_version: String,
    pub priority: i64,
    pub health: String,
    pub reason: String,
    pub consecutive_failures: u32,
    pub p50_ms: Option<f64>,
    pub files: usize,
}

/// The cache's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheStatus {
    pub bytes: u64,
    pub limit: u64,
    /// Of `bytes`, those of pinned files: kept whatever the limit says.
    #[serde(default)]
    pub pinned_bytes: u64,
    pub chunks: usize,
    /// Reads served from the cache over all reads, when any read was made.
    pub hit_ratio: Option<f64>,
}

/// One running plugin's process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PluginStatus {
    pub kind: String,
    /// Its file in the plugins folder.
    pub file: String,
    /// Its running process, if one runs (none while it restarts).
    pub pid: Option<u32>,
    /// Times its process was started again after it went away.
    pub restarts: u64,
    /// How its last process ended.
    pub last_exit: Option<String>,
}

/// The shared tier's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TierStatus {
    /// Endpoint, bucket and prefix.
    pub at: String,
    /// Whether this mount publishes.
    pub publishes: bool,
    pub manifest_reads: u64,
    pub pack_reads: u64,
    pub bytes_read: u64,
    pub writes: u64,
    /// Of `writes`, manifests: versions published.
    #[serde(default)]
    pub manifests_written: u64,
    /// Origin indexes published, and taken from the tier instead of a scan.
    #[serde(default)]
    pub indexes_written: u64,
    #[serde(default)]
    pub indexes_read: u64,
    pub bytes_written: u64,
    /// Objects refused (damaged or foreign).
    pub refused: u64,
    /// Calls that failed or ran out their deadline.
    pub failures: u64,
    /// Offers dropped while the publisher was behind.
    pub dropped: u64,
    /// Bytes of packs this mount swept to keep the tier's limit.
    #[serde(default)]
    pub swept_bytes: u64,
    /// Objects this mount deleted tidying the tier.
    #[serde(default)]
    pub tidied_objects: u64,
}

/// The whole status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub mountpoint: String,
    pub origins: Vec<OriginStatus>,
    /// Configured origins that are not live, and why not as far as known.
    pub waiting: Vec<String>,
    pub cache: CacheStatus,
    /// The `[[hooks]]`, with their last outcomes.
    #[serde(default)]
    pub hooks: Vec<crate::hooks::HookStatus>,
    /// The running plugins and their processes.
    #[serde(default)]
    pub plugins: Vec<PluginStatus>,
    /// The shared tier, if the mount has one.
    #[serde(default)]
    pub tier: Option<TierStatus>,
}

/// The status of `daemon`, mounted at `mountpoint`.
pub fn status_of(daemon: &Daemon, mountpoint: &str) -> Status {
    let files = daemon.view.snapshot().files_per_origin();
    let origins: Vec<OriginStatus> = daemon
        .registry
        .all()
        .iter()
        .map(|o| {
            let health = o.health_snapshot();
            OriginStatus {
                id: o.id.clone(),
                kind: o.kind.clone(),
                plugin_version: o.plugin_version.clone(),
                priority: o.priority,
                health: format!("{:?}", health.status).to_lowercase(),
                reason: health.reason,
                consecutive_failures: health.consecutive_failures,
                p50_ms: health.p50.map(|d| d.as_secs_f64() * 1e3),
                files: files.get(&o.id).copied().unwrap_or(0),
            }
        })
        .collect();
    let reasons = daemon.manager.waiting_reasons();
    let waiting = daemon
        .config
        .origins
        .iter()
        .filter(|c| c.enabled && !origins.iter().any(|o| o.id == c.id))
        .map(|c| {
            let why = reasons.get(&c.id).map_or("not live", String::as_str);
            format!("{} ({}): {why}", c.id, c.kind)
        })
        .collect();
    let stats = daemon.cache.stats();
    let reads = stats.hits + stats.misses;
    Status {
        mountpoint: mountpoint.to_owned(),
        origins,
        waiting,
        cache: CacheStatus {
            bytes: stats.bytes,
            limit: stats.limit,
            pinned_bytes: stats.pinned_bytes,
            chunks: stats.chunks,
            hit_ratio: (reads > 0).then(|| stats.hits as f64 / reads as f64),
        },
        hooks: daemon.hook_statuses(),
        plugins: daemon
            .manager
            .processes()
            .into_iter()
            .map(|(kind, file, process)| PluginStatus {
                kind,
                file: file.display().to_string(),
                pid: process.pid,
                restarts: process.restarts,
                last_exit: process.last_exit,
            })
            .collect(),
        tier: daemon.tier.get().map(|tier| {
            use std::sync::atomic::Ordering::Relaxed;
            let f = &tier.figures;
            TierStatus {
                at: tier.shown.clone(),
                publishes: tier.publishes(),
                manifest_reads: f.manifest_reads.load(Relaxed),
                pack_reads: f.pack_reads.load(Relaxed),
                bytes_read: f.bytes_read.load(Relaxed),
                writes: f.writes.load(Relaxed),
                manifests_written: f.manifests_written.load(Relaxed),
                indexes_written: f.indexes_written.load(Relaxed),
                indexes_read: f.indexes_read.load(Relaxed),
                bytes_written: f.bytes_written.load(Relaxed),
                refused: f.refused.load(Relaxed),
                failures: f.failures.load(Relaxed),
                dropped: f.dropped.load(Relaxed),
                swept_bytes: f.swept_bytes.load(Relaxed),
                tidied_objects: f.tidied_objects.load(Relaxed),
            }
        }),
    }
}

/// The status as a table for people.
pub fn render(status: &Status) -> String {
    let mut out = format!("musicfs at {}\n\n", status.mountpoint);
    out.push_str(&format!(
        "{:<12} {:<8} {:<8} {:>8} {:<10} {:>8} {:>9} {:>7}  {}\n",
        "ORIGIN", "KIND", "PLUGIN", "PRIORITY", "HEALTH", "FAILURES", "P50", "FILES", "REASON"
    ));
    for o in &status.origins {
        let p50 = o.p50_ms.map_or("-".to_owned(), |ms| format!("{ms:.1} ms"));
        out.push_str(&format!(
            "{:<12} {:<8} {:<8} {:>8} {:<10} {:>8} {:>9} {:>7}  {}\n",
            o.id,
            o.kind,
            o.plugin_version,
            o.priority,
            o.health,
            o.consecutive_failures,
            p50,
            o.files,
            o.reason
        ));
    }
    for w in &status.waiting {
        out.push_str(&format!("waiting: {w}\n"));
    }
    let c = &status.cache;
    out.push_str(&format!(
        "\ncache: {:.1} MB of {:.1} MB, and {:.1} MB pinned beyond it, {} chunks, hit ratio {}\n",
        (c.bytes - c.pinned_bytes.min(c.bytes)) as f64 / 1e6,
        c.limit as f64 / 1e6,
        c.pinned_bytes as f64 / 1e6,
        c.chunks,
        c.hit_ratio
            .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0))
    ));
    for h in &status.hooks {
        let last = if h.last.is_empty() {
            "not run yet"
        } else {
            &h.last
        };
        out.push_str(&format!(
            "hook {} ({}): {last}; {} runs, {} failed attempts\n",
            h.name, h.kind, h.runs, h.failures
        ));
    }
    if let Some(t) = &status.tier {
        out.push_str(&format!(
            "tier {} ({}): {:.1} MB read in {} pack reads ({} manifests looked up), {:.1} MB written in {} objects, {} refused, {} failed calls, {} offers dropped\n",
            t.at,
            if t.publishes { "publishing" } else { "reading only" },
            t.bytes_read as f64 / 1e6,
            t.pack_reads,
            t.manifest_reads,
            t.bytes_written as f64 / 1e6,
            t.writes,
            t.refused,
            t.failures,
            t.dropped
        ));
    }
    if !status.plugins.is_empty() {
        out.push('\n');
    }
    for p in &status.plugins {
        let process = p
            .pid
            .map_or("restarting".to_owned(), |pid| format!("process {pid}"));
        let file = std::path::Path::new(&p.file)
            .file_name()
            .map_or(p.file.clone(), |n| n.to_string_lossy().into_owned());
        out.push_str(&format!(
            "plugin {} ({file}): {process}, {} restarts",
            p.kind, p.restarts
        ));
        if let Some(last) = &p.last_exit {
            out.push_str(&format!("; last exit: {last}"));
        }
        out.push('\n');
    }
    out
}
