//! Keeping pinned files whole in the cache: one background task that, on
//! every wake (a pin added or removed, the tree changed, an origin came up)
//! and a minute after a pass that could not fetch everything,
//!
//! 1. lists the pinned files of the tree shown;
//! 2. hands the chunks their manifests name to the chunk store as the pinned
//!    set, so what is cached already is kept from now on;
//! 3. reads every file that is not whole yet through the cache, 1 MiB at a
//!    time with the read path's failover and deadline, as [`Purpose::Pin`]
//!    (its chunks are stored pinned as they arrive, and the stream runs up to
//!    32 MiB ahead of the keeper);
//! 4. hands the chunks over again, now with the new ones, and reports the
//!    pass (which files failed, and why).
//!
//! Passes are serial, and the pinned set is only ever worked out here, between
//! fetches: a set worked out while a fetch was storing chunks could miss some.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::cache::chunker::ChunkId;
use crate::cache::content_cache::{ContentCache, Purpose, MAX_WINDOW};
use crate::cache::source::Source;
use crate::library::tree::{Replica, Tree};
use crate::library::view::LibraryView;
use crate::origins::failover::{with_failover, ReadPolicy};
use crate::origins::registry::Registry;
use crate::origins::router;
use crate::pins::Pins;

/// How much one read of a pass asks for (its stream runs ahead by more).
const STEP: u32 = 1 << 20;
/// How long after a pass that left files unfetched the next one starts, if
/// nothing wakes the keeper before.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// A file some pin covers.
#[derive(Clone, Debug)]
pub struct PinnedFile {
    /// Its path in the library (relative).
    pub path: String,
    pub size: u64,
    /// Best first.
    pub replicas: Vec<Replica>,
}

/// The files at or below `path` in `tree`, in path order; `None` if the tree
/// does not show `path`.
pub fn files_at(tree: &Tree, path: &str) -> Option<Vec<PinnedFile>> {
    let node = tree.resolve(path)?;
    let files = tree
        .files_below(node)
        .into_iter()
        .map(|(path, file)| PinnedFile {
            path,
            size: file.size(),
            replicas: file.replicas(),
        });
    Some(files.collect())
}

/// The files of `tree` that `pins` cover, in path order, each once.
pub fn pinned_files(tree: &Tree, pins: &Pins) -> Vec<PinnedFile> {
    let mut files = BTreeMap::new();
    for (pin, _) in pins.list() {
        for file in files_at(tree, &pin).unwrap_or_default() {
            files.entry(file.path.clone()).or_insert(file);
        }
    }
    files.into_values().collect()
}

/// Bytes of `file` cached on disk, on its best-cached replica.
pub fn cached_bytes(cache: &ContentCache, file: &PinnedFile) -> u64 {
    file.replicas
        .iter()
        .map(|r| cache.cached_bytes(r))
        .max()
        .unwrap_or(0)
}

/// What the last passes did.
#[derive(Clone, Debug, Default)]
pub struct Passes {
    /// Passes begun.
    pub started: u64,
    /// The last pass that ended (its number in `started`'s count).
    pub finished: u64,
    /// The files that pass could not fetch, with why.
    pub failed: BTreeMap<String, String>,
}

/// The keeper of a mount.
pub struct Keeper {
    pins: Arc<Pins>,
    cache: Arc<ContentCache>,
    registry: Arc<Registry>,
    view: LibraryView,
    policy: ReadPolicy,
    wake: Notify,
    passes: watch::Sender<Passes>,
    /// The set last handed to the chunk store (not handed again unchanged).
    handed: Mutex<Option<HashSet<ChunkId>>>,
}

impl Keeper {
    pub fn new(
        pins: Arc<Pins>,
        cache: Arc<ContentCache>,
        registry: Arc<Registry>,
        view: LibraryView,
        policy: ReadPolicy,
    ) -> Keeper {
        Keeper {
            pins,
            cache,
            registry,
            view,
            policy,
            wake: Notify::new(),
            passes: watch::Sender::new(Passes::default()),
            handed: Mutex::new(None),
        }
    }

    /// Asks for a pass (after the one running, if any).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Follows the passes.
    pub fn passes(&self) -> watch::Receiver<Passes> {
        self.passes.subscribe()
    }

    /// Runs passes until the returned task is aborted (inside the runtime).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let keeper = self.clone();
        tokio::spawn(async move {
            let mut origins = keeper.registry.changes();
            loop {
                let left_out = keeper.pass().await;
                let retry = async {
                    match left_out {
                        true => tokio::time::sleep(RETRY_AFTER).await,
                        false => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = keeper.wake.notified() => {}
                    _ = origins.changed() => {}
                    _ = retry => {}
                }
            }
        })
    }

    /// One pass; true if some file could not be fetched.
    async fn pass(&self) -> bool {
        let mut number = 0;
        self.passes.send_modify(|p| {
            p.started += 1;
            number = p.started;
        });
        let tree = self.view.snapshot();
        let files = pinned_files(&tree, &self.pins);
        self.hand_over(&files);
        let mut failed = BTreeMap::new();
        for file in &files {
            if let Err(e) = self.keep(file).await {
                tracing::debug!(path = %file.path, "cannot fetch a pinned file: {e}");
                failed.insert(file.path.clone(), e);
            }
        }
        self.hand_over(&files);
        // One line a pass: a pinned library with its origin down would
        // otherwise log every file every minute.
        if let Some((path, why)) = failed.iter().next() {
            tracing::warn!(
                files = failed.len(),
                "pinned files not fetched (tried again when an origin comes up, or in a minute), e.g. {path}: {why}"
            );
        } else if !files.is_empty() {
            tracing::info!(files = files.len(), "pinned files kept");
        }
        let left_out = !failed.is_empty();
        self.passes.send_modify(|p| {
            p.finished = number;
            p.failed = failed;
        });
        left_out
    }

    /// Makes the chunks `files` name now the pinned set.
    fn hand_over(&self, files: &[PinnedFile]) {
        let ids: HashSet<ChunkId> = files
            .iter()
            .flat_map(|f| &f.replicas)
            .flat_map(|r| self.cache.chunks_of(r))
            .collect();
        let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        if handed.as_ref() != Some(&ids) {
            self.cache.set_pinned(ids.clone());
            *handed = Some(ids);
        }
    }

    /// Brings `file` whole onto the cache's disk, if it is not there yet.
    async fn keep(&self, file: &PinnedFile) -> Result<(), String> {
        // Twice: chunks may go from the disk while a fetch runs (a pinned
        // chunk never does, but one stored before the pin, unpinned, may).
        for _ in 0..2 {
            if cached_bytes(&self.cache, file) >= file.size {
                return Ok(());
            }
            // Bytes still in memory but gone from the disk count as missing.
            for replica in &file.replicas {
                self.cache.forget_lost_chunks(replica);
            }
            self.fetch(file).await.map_err(|e| e.to_string())?;
        }
        match cached_bytes(&self.cache, file) >= file.size {
            true => Ok(()),
            false => Err("fetched, but not all of it stayed on the cache's disk".into()),
        }
    }

    /// Reads `file` whole through the cache, from the best replica that answers.
    async fn fetch(&self, file: &PinnedFile) -> origin_api::OriginResult<()> {
        let mut offset = 0;
        while offset < file.size {
            let len = (STEP as u64).min(file.size - offset) as u32;
            let route = || {
                let route = router::route(&file.replicas, &self.registry);
                (route.candidates, route.any_usable)
            };
            let attempt =
                |(replica, origin): (Replica, Arc<crate::origins::registry::RegisteredOrigin>)| {
                    let cache = self.cache.clone();
                    async move {
                        let source: Arc<dyn Source> = origin;
                        cache
                            .read(
                                &replica,
                                Some(&source),
                                offset,
                                len,
                                MAX_WINDOW,
                                Purpose::Pin,
                            )
                            .await
                    }
                };
            with_failover(
                route,
                attempt,
                &self.policy.retry_delays,
                self.policy.deadline,
            )
            .await?;
            offset += len as u64;
        }
        Ok(())
    }
}
