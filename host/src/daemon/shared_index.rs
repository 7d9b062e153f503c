//! The library index and the shared tier, from the daemon's side: a mount
//! with nothing of an origin starts from the index another mount published
//! (no call to the origin); a mount that scanned an origin whole, or whose
//! watch changed it, publishes its index; a mount waiting on another's scan
//! takes its index when it comes, or scans once that mount's lease ran out.
//! What the tier holds and how is `crate::tier`; here is only when.

use std::collections::HashMap;
use std::sync::Arc;

use super::{log_report, Daemon};
use crate::library::scanner::ScanReport;

/// How long after a change from a watch the origin's index is published to
/// the tier (changes coming meanwhile go with it).
pub const INDEX_PUBLISH_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a mount looks for a newer index of an origin out of its reach.
pub const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a mount waiting for another's scan looks for its index.
const AWAIT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

impl Daemon {
    /// Takes the index of each origin the index holds nothing of (a new
    /// mount, an emptied cache) from the tier, if another mount published
    /// one, and shows it: no call to the origin, which need not even be
    /// reachable. The scan that follows, once the origin is up, finds the
    /// files as the index holds them and reads the tags only of those that
    /// changed since: it lists, and reads almost nothing.
    pub(super) async fn start_from_tier(&self) {
        let Some(tier) = self.tier.get() else { return };
        let mut taken = 0;
        for origin in self.config.origins.iter().filter(|o| o.enabled) {
            match crate::library::index::holds_origin(&self.store, &origin.id) {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    tracing::warn!(origin = origin.id, "cannot read the index: {e}");
                    continue;
                }
            }
            let Some((head, records)) = tier.newest_index(&origin.id).await else {
                // Nothing to go on: one mount scans, the others wait for it.
                if let Some(crate::tier::lease::Asked::HeldBy(lease)) =
                    tier.ask_scan(&origin.id).await
                {
                    tracing::info!(
                        origin = origin.id,
                        scanning = lease.mount,
                        "another mount is scanning this origin; waiting for its index"
                    );
                    self.awaiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(origin.id.clone());
                }
                continue;
            };
            if self.take_index(tier, &head, &records).await {
                taken += 1;
            }
        }
        if taken > 0 {
            self.refresh_tree();
        }
    }

    /// After a scan: publishes the index of each origin it scanned whole to
    /// the tier, in the background.
    pub(super) fn publish_scanned(&self, scanned: &[String], report: &ScanReport) {
        let Some(tier) = self.tier.get().cloned() else {
            return;
        };
        {
            let (tier, scanned) = (tier.clone(), scanned.to_vec());
            tokio::spawn(async move { tier.release_unscanned(&scanned).await });
        }
        for origin in scanned {
            let whole = !report.failed_origins.iter().any(|(o, _)| o == origin)
                && !report.unlisted.iter().any(|(o, _, _)| o == origin);
            self.index_dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(origin);
            {
                let mut fit = self.index_whole.lock().unwrap_or_else(|p| p.into_inner());
                if whole {
                    fit.insert(origin.clone());
                    self.note_seen(origin, unix_now());
                } else {
                    fit.remove(origin);
                }
            }
            if !whole {
                // Nothing to publish: the others stop waiting and scan.
                let (tier, origin) = (tier.clone(), origin.clone());
                tokio::spawn(async move { tier.release_scan(&origin).await });
                continue;
            }
            let (tier, origin, store) = (tier.clone(), origin.clone(), self.store.clone());
            let published = self.index_published.clone();
            tokio::spawn(async move {
                let mut published = published.lock().await;
                match whole_index(&store, &origin).await {
                    Some(records) => match tier.publish_index(&origin, records).await {
                        Some(now) => {
                            published.insert(origin.clone(), now);
                        }
                        None => {
                            published.remove(&origin);
                        }
                    },
                    None => {
                        published.remove(&origin);
                    }
                }
                drop(published);
                tier.release_scan(&origin).await;
            });
        }
    }

    /// Notes that the index of `origin` changed at or below `paths` (a
    /// change batch from its watch): it is published again within
    /// [`INDEX_PUBLISH_AFTER`].
    pub fn index_changed<'p>(&self, origin: &str, paths: impl IntoIterator<Item = &'p String>) {
        if self.tier.get().is_some() {
            self.note_seen(origin, unix_now());
            self.index_dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(origin.to_owned())
                .or_default()
                .extend(paths.into_iter().cloned());
        }
    }

    /// Publishes the index of each origin changed since it was last
    /// published, if its last scan was whole, every
    /// [`INDEX_PUBLISH_AFTER`]: a new mount then starts from what the
    /// watches found, not only from the last scan. From what this mount
    /// published last, only the segments the changes fall in are cut again
    /// (see [`crate::tier::library`]); with nothing published yet, the whole
    /// origin.
    pub fn publish_changed_indexes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let daemon = self.clone();
        tokio::spawn(async move {
            let Some(tier) = daemon.tier.get().cloned() else {
                return;
            };
            loop {
                tokio::time::sleep(INDEX_PUBLISH_AFTER).await;
                let mut published = daemon.index_published.lock().await;
                let due: Vec<(String, Vec<String>)> = {
                    let whole = daemon.index_whole.lock().unwrap_or_else(|p| p.into_inner());
                    let mut dirty = daemon.index_dirty.lock().unwrap_or_else(|p| p.into_inner());
                    std::mem::take(&mut *dirty)
                        .into_iter()
                        .filter(|(o, _)| whole.contains(o))
                        .collect()
                };
                for (origin, changed) in due {
                    let incremental = match published.get(&origin) {
                        // An origin published empty has no segment for a
                        // change to fall in: it is published whole.
                        Some(before) if !before.segments.is_empty() => {
                            let runs = crate::tier::library::affected(before, &changed);
                            let store = daemon.store.clone();
                            let (bounds, origin_id): (Vec<_>, String) = (
                                runs.iter()
                                    .map(|run| {
                                        (run.clone(), crate::tier::library::bounds(before, run))
                                    })
                                    .collect(),
                                origin.clone(),
                            );
                            let loaded = tokio::task::spawn_blocking(move || {
                                bounds
                                    .into_iter()
                                    .map(|(run, (from, to))| {
                                        crate::library::index::load_range(
                                            &store,
                                            &origin_id,
                                            from.as_deref(),
                                            to.as_deref(),
                                        )
                                        .map(|records| (run, records))
                                    })
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .await;
                            match loaded {
                                Ok(Ok(runs)) => tier.republish_index(&origin, before, runs).await,
                                Ok(Err(e)) => {
                                    tracing::warn!(
                                        origin,
                                        "cannot read the index to publish it: {e}"
                                    );
                                    None
                                }
                                Err(_) => None,
                            }
                        }
                        _ => None,
                    };
                    // Nothing published yet, or the segments it named are
                    // gone (tidied while this mount was away): the whole
                    // origin.
                    let now = match incremental {
                        Some(now) => Some(now),
                        None => match whole_index(&daemon.store, &origin).await {
                            Some(records) => tier.publish_index(&origin, records).await,
                            None => None,
                        },
                    };
                    match now {
                        Some(now) => {
                            published.insert(origin, now);
                        }
                        // Not published: the next change publishes it whole.
                        None => {
                            published.remove(&origin);
                        }
                    }
                }
            }
        })
    }

    /// Takes in the index of each origin another mount was scanning once it
    /// is in the tier, or scans the origin itself once that mount's lease
    /// ran out (it died), until nothing is awaited.
    pub fn await_other_scans(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let daemon = self.clone();
        tokio::spawn(async move {
            let Some(tier) = daemon.tier.get().cloned() else {
                return;
            };
            // Since when each origin had no clear answer: past two leases'
            // time (the tier down, say), this mount scans by itself.
            let mut unclear: HashMap<String, std::time::Instant> = HashMap::new();
            loop {
                let awaited: Vec<String> = daemon
                    .awaiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                if awaited.is_empty() {
                    return;
                }
                tokio::time::sleep(AWAIT_POLL).await;
                let mut settled = false;
                for origin in awaited {
                    if let Some((head, records)) = tier.newest_index(&origin).await {
                        daemon.take_index(&tier, &head, &records).await;
                    } else {
                        match tier.scan_held_elsewhere(&origin).await {
                            Some(true) => {
                                unclear.remove(&origin);
                                continue;
                            }
                            None if unclear
                                .entry(origin.clone())
                                .or_insert_with(std::time::Instant::now)
                                .elapsed()
                                < 2 * tier.lease_for() =>
                            {
                                continue;
                            }
                            _ => {}
                        }
                        tracing::info!(
                            origin,
                            "the mount scanning this origin stopped; scanning it"
                        );
                        let _ = tier.ask_scan(&origin).await;
                    }
                    daemon
                        .awaiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&origin);
                    settled = true;
                }
                if settled {
                    daemon.refresh_tree();
                    match daemon.rescan(&Arc::default()).await {
                        Ok(report) => log_report(&report),
                        Err(e) => tracing::error!("scan failed: {e}"),
                    }
                }
            }
        })
    }

    /// Replaces what the index holds of `head`'s origin with `records`, the
    /// tier's index of it, and notes how new that is. Whether it took.
    async fn take_index(
        &self,
        tier: &crate::tier::Tier,
        head: &crate::tier::library::Head,
        records: &[crate::library::index::FileRecord],
    ) -> bool {
        let origin = &head.origin;
        match crate::library::index::replace_origin(&self.store, origin, &[], records, &[], &[]) {
            Ok(_) => {
                tracing::info!(
                    origin,
                    files = records.len(),
                    scanned_by = head.mount,
                    "index taken from the shared tier"
                );
                tier.figures
                    .indexes_read
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.note_seen(origin, head.scanned);
                // What this mount published of the origin is not what its
                // index holds now: its next publish of it is whole.
                self.index_dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(origin);
                self.index_published.lock().await.remove(origin);
                true
            }
            Err(e) => {
                tracing::warn!(origin, "cannot record the tier's index: {e}");
                false
            }
        }
    }

    /// While an origin is out of this mount's reach (unhealthy, or its
    /// plugin not loaded), takes each newer index another mount publishes
    /// of it, every [`FOLLOW_EVERY`]: a laptop away from home shows what
    /// the home server's scans and watches found, additions and deletions
    /// both. That is not "unreachable is deleted": a file leaves only when
    /// a mount that reached the origin whole no longer found it. An origin
    /// in reach is this mount's own to scan and watch.
    pub fn follow_tier(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let daemon = self.clone();
        tokio::spawn(async move {
            let Some(tier) = daemon.tier.get().cloned() else {
                return;
            };
            loop {
                tokio::time::sleep(FOLLOW_EVERY).await;
                let mut taken = 0;
                for origin in daemon.config.origins.iter().filter(|o| o.enabled) {
                    let in_reach = daemon.registry.get(&origin.id).is_some_and(|o| {
                        o.health_snapshot().status != origin_api::HealthStatus::Unhealthy
                    });
                    if in_reach || !tier.usable() {
                        continue;
                    }
                    let Some(head) = tier.newest_index_head(&origin.id).await else {
                        continue;
                    };
                    let seen = daemon
                        .index_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&origin.id)
                        .copied()
                        .unwrap_or(0);
                    if head.mount == tier.mount_id || head.scanned <= seen {
                        continue;
                    }
                    let Some(records) = tier.index_records(&head).await else {
                        continue;
                    };
                    if daemon.take_index(&tier, &head, &records).await {
                        taken += 1;
                    }
                }
                if taken > 0 {
                    daemon.refresh_tree();
                }
            }
        })
    }
}

impl Daemon {
    /// Notes that what the index holds of `origin` was known whole at `at`,
    /// in memory and in the cache folder ([`SEEN_FILE`]): a mount started
    /// again with the origin away must not take an index from the tier
    /// older than what it knew before it stopped (a watch's change not yet
    /// published, say).
    fn note_seen(&self, origin: &str, at: u64) {
        let mut seen = self.index_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(origin.to_owned(), at);
        let bytes = serde_json::to_vec(&*seen).expect("a map of numbers serialises");
        let file = self.cache_dir.join(SEEN_FILE);
        let temp = file.with_extension("tmp");
        if let Err(e) = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, &file)) {
            tracing::debug!("cannot keep {}: {e}", file.display());
        }
    }
}

/// Where a mount keeps, by origin, when its index was last known whole.
pub const SEEN_FILE: &str = "tier-index-seen.json";

/// What [`Daemon::note_seen`] kept in `cache_dir`; nothing if it is missing
/// or damaged (the mount then takes the tier's newest index of an origin
/// out of reach, as a new mount does).
pub(super) fn load_seen(cache_dir: &std::path::Path) -> HashMap<String, u64> {
    std::fs::read(cache_dir.join(SEEN_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Every record of `origin`, read on a blocking thread; `None` (said) if
/// the index cannot be read.
async fn whole_index(
    store: &Arc<crate::store::Store>,
    origin: &str,
) -> Option<Vec<crate::library::index::FileRecord>> {
    let (store, origin_id) = (store.clone(), origin.to_owned());
    let loaded = tokio::task::spawn_blocking(move || {
        crate::library::index::load_range(&store, &origin_id, None, None)
    })
    .await;
    match loaded {
        Ok(Ok(records)) => Some(records),
        Ok(Err(e)) => {
            tracing::warn!(origin, "cannot read the index to publish it: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restart with the origin away compared the tier's heads with
    /// nothing (what the mount knew lived in memory only) and could take an
    /// index older than its own: what it knew is kept in the cache folder.
    #[test]
    fn what_a_mount_knew_survives_a_restart_and_damage_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_seen(dir.path()).is_empty());
        let kept: HashMap<String, u64> = [("nas".to_owned(), 1_700_000_000)].into();
        std::fs::write(
            dir.path().join(SEEN_FILE),
            serde_json::to_vec(&kept).unwrap(),
        )
        .unwrap();
        assert_eq!(load_seen(dir.path()), kept);
        std::fs::write(dir.path().join(SEEN_FILE), b"{\"nas\": ").unwrap();
        assert!(load_seen(dir.path()).is_empty());
    }
}
