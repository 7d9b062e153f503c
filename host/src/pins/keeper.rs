//! Keeping pinned files whole in the cache: one background task that, on
//! every wake (a pin added or removed, the tree changed, an origin registered
//! or turned healthy), a minute after a pass that could not fetch everything,
//! and every hour,
//!
//! 1. lists the pinned files of the tree shown;
//! 2. hands the chunks their manifests name to the chunk store as the pinned
//!    set, so what is cached already is kept from now on;
//! 3. reads every file whose chunks are not all on disk through the cache,
//!    1 MiB at a time with the read path's failover and deadline, as
//!    [`Purpose::Pin`] (its chunks are stored pinned as they arrive, and the
//!    stream runs ahead of the keeper by the read path's window), and adds
//!    the file's chunks to the pinned set once it is whole (some may have come
//!    through a player's stream, as audio);
//! 4. reports the pass (which files are not whole, and why).
//!
//! Passes are serial, and the pinned set is only ever worked out here, between
//! fetches: a set worked out while a fetch was storing chunks could miss some.
//! Whole copies do not count: they may be trimmed at any time; chunks are what
//! a pin keeps. The looking (manifests, the chunk index, the store) is
//! blocking work, done with `block_in_place` so the runtime's other tasks move.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::block_in_place;

use crate::cache::chunker::ChunkId;
use crate::cache::content_cache::ContentCache;
use crate::cache::fill::{Purpose, MAX_WINDOW};
use crate::library::tree::{Replica, Tree};
use crate::library::view::LibraryView;
use crate::origins::registry::Registry;
use crate::paths::disk_space;
use crate::pins::{margin, Pins};
use crate::read::failover::ReadPolicy;
use crate::read::session::{Route, Session};
use crate::telemetry::events::{Event, EventBus};

/// How much one read of a pass asks for (its stream runs ahead by more).
const STEP: u32 = 1 << 20;
/// The longest a fetched file waits for its streams to store what they
/// brought.
const SETTLE_WAIT: Duration = Duration::from_secs(60);
/// How long after a pass that left files unfetched the next one starts, if
/// nothing wakes the keeper before.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How often a pass looks again anyway (a pinned chunk found rotten and
/// dropped, say, is fetched again by then).
const RECHECK_EVERY: Duration = Duration::from_secs(3600);

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

/// Bytes of `file` in chunks on disk, on its best-cached replica (whole
/// copies aside: they may be trimmed any time).
pub fn cached_bytes(cache: &ContentCache, file: &PinnedFile) -> u64 {
    file.replicas
        .iter()
        .map(|r| cache.cached_chunk_bytes(r))
        .max()
        .unwrap_or(0)
}

/// Whether every byte of `file` is in chunks on disk.
pub fn is_whole(cache: &ContentCache, file: &PinnedFile) -> bool {
    cached_bytes(cache, file) >= file.size
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
    events: EventBus,
    /// Where the cache is, for the free space on its disk.
    cache_dir: PathBuf,
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
        events: EventBus,
        cache_dir: PathBuf,
    ) -> Keeper {
        Keeper {
            cache_dir,
            pins,
            cache,
            registry,
            view,
            policy,
            events,
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
            let mut events = keeper.events.subscribe();
            loop {
                let left_out = keeper.pass().await;
                let next = tokio::time::sleep(if left_out { RETRY_AFTER } else { RECHECK_EVERY });
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        _ = keeper.wake.notified() => break,
                        _ = origins.changed() => break,
                        _ = &mut next => break,
                        event = events.recv() => match event {
                            Ok(Event::OriginHealthChanged { to, .. }) if to == "Healthy" => break,
                            // Missed events: one of them may have been that.
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => {
                                events = keeper.events.subscribe();
                            }
                            Ok(_) => {}
                        },
                    }
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
        let files = block_in_place(|| {
            let files = pinned_files(&self.view.snapshot(), &self.pins);
            self.hand_over(&files);
            files
        });
        let mut failed = BTreeMap::new();
        for file in &files {
            if let Err(e) = self.keep(file).await {
                tracing::debug!(path = %file.path, "cannot fetch a pinned file: {e}");
                failed.insert(file.path.clone(), e);
            }
        }
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

    /// Brings `file` whole onto the cache's disk, if it is not there yet,
    /// and adds the chunks it fetched for it to the pinned set. A file whole
    /// already had its chunks handed over at the start of the pass.
    async fn keep(&self, file: &PinnedFile) -> Result<(), String> {
        if block_in_place(|| is_whole(&self.cache, file)) {
            return Ok(());
        }
        // Twice: chunks may go from the disk while a fetch runs (a pinned
        // chunk never does, but one stored before the pin, unpinned, may).
        for _ in 0..2 {
            // Bytes still in memory but gone from the disk count as missing.
            block_in_place(|| {
                for replica in &file.replicas {
                    self.cache.forget_lost_chunks(replica);
                }
            });
            self.check_room(file)?;
            // What a fetch stores is pinned beyond the set handed over (even
            // if it fails halfway): the next pass hands the set over anew.
            *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.fetch(file).await.map_err(|e| e.to_string())?;
            // Some chunks may have come through a player's stream, as audio.
            let whole = block_in_place(|| {
                let whole = is_whole(&self.cache, file);
                if whole {
                    let ids: Vec<ChunkId> = file
                        .replicas
                        .iter()
                        .flat_map(|r| self.cache.chunks_of(r))
                        .collect();
                    self.cache.add_pinned(&ids);
                }
                whole
            });
            if whole {
                return Ok(());
            }
        }
        Err("fetched, but not all of it stayed on the cache's disk".into())
    }

    /// Refuses to fetch `file` if what it still needs would leave less than
    /// the margin free on the cache's disk.
    fn check_room(&self, file: &PinnedFile) -> Result<(), String> {
        let Some((free, size)) = disk_space(&self.cache_dir) else {
            return Ok(());
        };
        let needed = file.size - cached_bytes(&self.cache, file).min(file.size);
        if needed.saturating_add(margin(size)) <= free {
            return Ok(());
        }
        Err(format!(
            "no room on the cache's disk: it needs {} more bytes and {free} are free, of which {} must stay free",
            needed,
            margin(size)
        ))
    }

    /// Reads `file` whole through the cache, from the best replica that
    /// answers: one session, read through in steps, until what it fetched is
    /// stored.
    async fn fetch(&self, file: &PinnedFile) -> origin_api::OriginResult<()> {
        let session = Session::open(&self.cache, &file.replicas);
        let route = Route::Replicas(&self.registry);
        let mut offset = 0;
        while offset < file.size {
            let len = (STEP as u64).min(file.size - offset) as u32;
            session
                .fetch(
                    route,
                    &self.policy,
                    offset,
                    len,
                    MAX_WINDOW,
                    Purpose::Pin,
                    || {},
                )
                .await?;
            offset += len as u64;
        }
        // Its reads were answered as the bytes arrived: done once they are
        // on disk (bounded: another reader's stream of the file may run on,
        // and a pass that finds bytes missing tries again later).
        let _ = tokio::time::timeout(SETTLE_WAIT, session.settled()).await;
        Ok(())
    }
}
