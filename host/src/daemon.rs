//! The running pieces of MusicFS, without FUSE: configuration, the store, the
//! content cache, plugins and origins, and the library view kept up to date by
//! scans. `musicfs mount` puts a FUSE session on top; `musicfs scan` runs one scan.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::cache::content_cache::ContentCache;
use crate::config::origin_flags::parse_origin_flag;
use crate::config::{Config, OriginConfig};
use crate::fs::invalidate::notify_kernel;
use crate::library::index::{self, FileRecord, Written};
use crate::library::inode_book::InodeBook;
use crate::library::layout::Layout;
use crate::library::placed::{Origins, Placed};
use crate::library::scanner::{self, ScanProgress, ScanReport};
use crate::library::tree::Tree;
use crate::library::tree_build;
use crate::library::tree_diff::{changed_folders, invalidations, invalidations_in, Invalidation};
use crate::library::tree_snapshot;
use crate::library::tree_update;
use crate::library::view::LibraryView;
use crate::origins::registry::Registry;
use crate::paths::{default_cache_dir, expand_tilde};
use crate::pins::keeper::Keeper;
use crate::pins::Pins;
use crate::plugins::manager::PluginManager;
use crate::read::failover::ReadPolicy;
use crate::store::Store;
use crate::telemetry::events::EventBus;

mod shared_index;
pub use shared_index::{FOLLOW_EVERY, INDEX_PUBLISH_AFTER};

/// What the command line says.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DaemonOptions {
    /// The plugins folder.
    pub plugins_dir: PathBuf,
    /// A config file, if any.
    pub config: Option<PathBuf>,
    /// Overrides the config's cache folder.
    pub cache_dir: Option<PathBuf>,
    /// `--origin` values.
    pub origins: Vec<String>,
}

impl DaemonOptions {
    /// The cache folder: `--cache-dir`, else the config's, else the default.
    pub fn cache_dir(&self, config: &Config) -> PathBuf {
        self.cache_dir
            .clone()
            .or_else(|| config.cache_dir.as_deref().map(expand_tilde))
            .unwrap_or_else(default_cache_dir)
    }
}

/// Everything but the FUSE session.
pub struct Daemon {
    pub config: Config,
    pub cache_dir: PathBuf,
    pub store: Arc<Store>,
    pub cache: Arc<ContentCache>,
    pub registry: Arc<Registry>,
    pub events: EventBus,
    pub manager: Arc<PluginManager>,
    pub view: LibraryView,
    /// What is pinned, and the task keeping it cached.
    pub pins: Arc<Pins>,
    pub keeper: Arc<Keeper>,
    /// The shared tier, once the origins start (if `[tier]` names one).
    pub tier: std::sync::OnceLock<Arc<crate::tier::Tier>>,
    /// Origins whose last scan was whole (their index is fit to publish),
    /// and those of them changed since their index was last published.
    index_whole: Mutex<HashSet<String>>,
    /// Paths changed by watches, by origin, since its index was published.
    index_dirty: Mutex<HashMap<String, Vec<String>>>,
    /// What this mount last published of each origin's index, and a lock
    /// that keeps one publish of the index at a time.
    index_published: Arc<tokio::sync::Mutex<HashMap<String, crate::tier::library::Published>>>,
    /// For each origin, when what the index holds of it was last known
    /// whole (seconds since the epoch): this mount's last whole scan or
    /// watch change, or the scan of the tier's index it took. A newer index
    /// in the tier is taken while the origin is out of reach.
    index_seen: Mutex<HashMap<String, u64>>,
    /// Origins another mount is scanning first (it holds the tier's lease):
    /// left out of scans until its index is in the tier or its lease ran out.
    awaiting: Mutex<HashSet<String>>,
    layout: Layout,
    /// Set once mounted: tells the kernel what to forget when the tree changes.
    notifier: Mutex<Option<fuser::Notifier>>,
    /// Set once mounted: tells music servers what changed.
    hooks: Mutex<Option<crate::hooks::Hooks>>,
    /// Becomes true once the plugins are loaded and origins opened.
    origins_started: tokio::sync::watch::Sender<bool>,
    /// Serialises scans.
    scanning: tokio::sync::Mutex<()>,
    /// The last scan missed something (an origin, a folder or a file's tags could
    /// not be read): [`Daemon::retry_incomplete_scans`] scans again.
    incomplete: std::sync::atomic::AtomicBool,
    /// Changes the feed could not record, counted, so that a scan running at the
    /// same time does not forget one.
    misses: std::sync::atomic::AtomicU64,
    /// The store's generation when the last scan began: a store rebuilt since
    /// holds less than the tree shows, which stays until a scan refills it.
    scanned_generation: std::sync::atomic::AtomicU64,
    /// The store's tracks stamp the tree shown was built from.
    tree_version: Arc<std::sync::atomic::AtomicU64>,
    /// Held while the tree shown is changed: builds and updates one at a time.
    tree_lock: Arc<Mutex<()>>,
    /// Counts the trees shown: the snapshot on disk is of the one
    /// `snapshot_written` says (snapshots are written one at a time under it).
    tree_generation: Arc<std::sync::atomic::AtomicU64>,
    snapshot_written: Arc<Mutex<u64>>,
    /// A delayed snapshot write is waiting to run.
    snapshot_pending: Arc<std::sync::atomic::AtomicBool>,
    /// Changes to the tree shown: by a tree update, by a whole build.
    tree_changes: [std::sync::atomic::AtomicU64; 2],
}

/// What writing the tree's snapshot after an update needs.
struct DueSnapshot {
    view: LibraryView,
    path: PathBuf,
    settings: String,
    lock: Arc<Mutex<()>>,
    version: Arc<std::sync::atomic::AtomicU64>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    written: Arc<Mutex<u64>>,
}

impl DueSnapshot {
    /// Writes the tree shown unless it, or a newer one, is on disk already;
    /// waits for a write under way first.
    fn save_if_due(&self) {
        // The tree shown, the stamp it was made from, and its generation,
        // together.
        let (tree, version, generation) = {
            let _shown = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            (
                self.view.snapshot(),
                self.version.load(std::sync::atomic::Ordering::Relaxed),
                self.generation.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if *written >= generation {
            return;
        }
        save_snapshot(
            &self.path,
            &tree,
            &tree_snapshot::stamp(version, &self.settings),
        );
        *written = generation;
    }
}

/// Reads the config file (if any) and adds the `--origin` flags.
pub fn load_config(options: &DaemonOptions) -> Result<Config, String> {
    let mut config = match &options.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let mut taken: Vec<String> = config.origins.iter().map(|o| o.id.clone()).collect();
    let mut priority = config.origins.iter().map(|o| o.priority).max().unwrap_or(0);
    for flag in &options.origins {
        let origin: OriginConfig = parse_origin_flag(flag, &taken, priority + 1)?;
        // The file wins where both name the same origin (same kind and location).
        let in_file = config
            .origins
            .iter()
            .any(|o| o.kind == origin.kind && same_location(&o.settings, &origin.settings));
        if in_file {
            continue;
        }
        priority += 1;
        taken.push(origin.id.clone());
        config.origins.push(origin);
    }
    Ok(config)
}

/// Whether two origins' settings point at the same place (`path` or `url`).
fn same_location(a: &toml::Table, b: &toml::Table) -> bool {
    ["path", "url"].iter().any(|key| {
        let (x, y) = (
            a.get(*key).and_then(|v| v.as_str()),
            b.get(*key).and_then(|v| v.as_str()),
        );
        match (x, y) {
            (Some(x), Some(y)) => {
                expand_tilde(std::path::Path::new(x)) == expand_tilde(std::path::Path::new(y))
            }
            _ => false,
        }
    })
}

impl Daemon {
    /// Opens the store and cache and shows the last index at once. Plugins are not
    /// loaded yet: call [`Daemon::start_origins`].
    pub fn open(options: &DaemonOptions, config: Config) -> Result<Daemon, String> {
        let started = std::time::Instant::now();
        let cache_dir = options.cache_dir(&config);
        std::fs::create_dir_all(&cache_dir)
            .map_err(|e| format!("cache folder {}: {e}", cache_dir.display()))?;
        let store = Arc::new(
            Store::open_unchecked(&cache_dir.join("index.redb")).map_err(|e| e.to_string())?,
        );
        let limit = (config.cache.content_cache_gb * 1e9) as u64;
        let cache = Arc::new(
            ContentCache::open(&cache_dir, limit, store.clone())
                .map_err(|e| format!("content cache: {e}"))?,
        );
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start-up: store and cache open"
        );
        let store_generation = store.generation();
        let layout =
            Layout::parse(&config.library.layout).map_err(|e| format!("[library] layout: {e}"))?;
        let tree_version = store.tracks_stamp();
        let snapshot = cache_dir.join("tree.snapshot");
        let stamp = tree_snapshot::stamp(tree_version, &tree_settings(&config));
        let tree = match tree_snapshot::load(&snapshot, &stamp) {
            Some(tree) => tree,
            None => {
                let mut loaded = InodeBook::load(&store)
                    .map_err(|e| e.to_string())?
                    .spilling_to(store.clone());
                let tree = build_tree(&store, &config, &layout, &mut loaded)?;
                save_snapshot(&snapshot, &tree, &stamp);
                tree
            }
        };
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "start-up: tree shown"
        );
        let events = EventBus::default();
        let registry = Arc::new(Registry::new(events.clone()));
        let manager = Arc::new(PluginManager::new(
            options.plugins_dir.clone(),
            &cache_dir,
            config.origins.clone(),
            config.health.clone(),
            plugin_processes(&config),
            registry.clone(),
            events.clone(),
        ));
        let view = LibraryView::new(tree);
        let pins = Arc::new(Pins::load(store.clone(), &cache_dir));
        let keeper = Arc::new(Keeper::new(
            pins.clone(),
            cache.clone(),
            registry.clone(),
            view.clone(),
            read_policy(&config),
            events.clone(),
            cache_dir.clone(),
        ));
        Ok(Daemon {
            view,
            pins,
            keeper,
            tier: std::sync::OnceLock::new(),
            awaiting: Mutex::default(),
            index_whole: Mutex::default(),
            index_dirty: Mutex::default(),
            index_published: Arc::default(),
            index_seen: Mutex::new(shared_index::load_seen(&cache_dir)),
            config,
            cache_dir,
            store,
            cache,
            registry,
            events,
            manager,
            layout,
            origins_started: tokio::sync::watch::Sender::new(false),
            notifier: Mutex::new(None),
            hooks: Mutex::new(None),
            scanning: tokio::sync::Mutex::new(()),
            incomplete: std::sync::atomic::AtomicBool::new(false),
            misses: std::sync::atomic::AtomicU64::new(0),
            scanned_generation: std::sync::atomic::AtomicU64::new(store_generation),
            tree_version: Arc::new(std::sync::atomic::AtomicU64::new(tree_version)),
            tree_lock: Arc::default(),
            tree_generation: Arc::default(),
            snapshot_written: Arc::default(),
            snapshot_pending: Arc::default(),
            tree_changes: Default::default(),
        })
    }

    /// Runs `work` on the whole inode book, loaded for it and dropped after
    /// (it is large; an update reads only what it needs, see
    /// [`InodeBook::lazy`]). It takes in what the tree shown holds first
    /// ([`InodeBook::adopt`]): the tree may come from a snapshot of a store
    /// rebuilt since.
    fn with_book<T>(
        &self,
        work: impl FnOnce(&mut InodeBook) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut book = InodeBook::load(&self.store)
            .map_err(|e| e.to_string())?
            .spilling_to(self.store.clone());
        book.adopt(&self.view.snapshot());
        work(&mut book)
    }

    /// Loads the plugins and opens the configured origins.
    pub async fn start_origins(&self) {
        // The index's integrity check reads the whole file: it runs now that
        // the tree is shown, holding the store (not the mount) meanwhile.
        let store = self.store.clone();
        let checker = std::thread::Builder::new().name("index-check".into());
        if let Err(e) = checker.spawn(move || store.check_integrity()) {
            tracing::warn!("cannot check the index: {e}");
        }
        if let Some(config) = &self.config.tier {
            let runtime = tokio::runtime::Handle::current();
            let mount_id = crate::tier::mount_id(&self.cache_dir);
            match crate::tier::Tier::open(config, mount_id, &self.cache, &runtime) {
                Ok(tier) => {
                    tracing::info!(tier = tier.shown, publish = config.publish, "shared tier");
                    self.cache.share_with(tier.clone());
                    let _ = self.tier.set(tier);
                    self.start_from_tier().await;
                }
                Err(e) => tracing::warn!("no shared tier: {e}"),
            }
        }
        self.manager.sync().await;
        self.manager.report_waiting().await;
        self.origins_started.send_replace(true);
    }

    /// Turns true once [`Daemon::start_origins`] is done: a read that arrives
    /// while the mount is starting waits for its origin instead of failing.
    pub fn origins_started(&self) -> tokio::sync::watch::Receiver<bool> {
        self.origins_started.subscribe()
    }

    /// Scans every live origin and shows the result.
    pub async fn rescan(&self, progress: &Arc<ScanProgress>) -> Result<ScanReport, String> {
        let _one_at_a_time = self.scanning.lock().await;
        let generation = self.store.generation();
        let misses = self.misses.load(std::sync::atomic::Ordering::Relaxed);
        let origins: Vec<_> = {
            let awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
            self.registry
                .all()
                .into_iter()
                .filter(|o| !awaiting.contains(&o.id))
                .collect()
        };
        let scanned: Vec<String> = origins.iter().map(|o| o.id.clone()).collect();
        let report = scanner::scan(origins, &self.cache, &self.store, progress).await;
        self.publish_scanned(&scanned, &report);
        // A change the feed could not record while this scan ran still counts.
        let missed_meanwhile = self.misses.load(std::sync::atomic::Ordering::Relaxed) != misses;
        self.incomplete.store(
            !report.complete() || missed_meanwhile,
            std::sync::atomic::Ordering::Relaxed,
        );
        // After a rebuild the index holds only what this scan reached: the tree
        // shown before stays until a scan has reached every origin and folder
        // (an origin still down would otherwise vanish from it).
        if report.failed_origins.is_empty() && report.unlisted.is_empty() {
            self.scanned_generation
                .store(generation, std::sync::atomic::Ordering::Relaxed);
        }
        self.refresh_tree();
        self.store.flush().map_err(|e| e.to_string())?;
        metrics::counter!(crate::telemetry::metric_names::SCANS).increment(1);
        Ok(report)
    }

    /// Whether a scan is running now.
    /// How many times the tree shown changed folder by folder (a change
    /// batch) and how many times it was built whole.
    pub fn tree_changes(&self) -> (u64, u64) {
        let [folders, whole] = &self.tree_changes;
        (
            folders.load(std::sync::atomic::Ordering::Relaxed),
            whole.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn is_scanning(&self) -> bool {
        self.scanning.try_lock().is_err()
    }

    /// Says the index misses something a scan would find (a change that could not
    /// be recorded): [`Daemon::retry_incomplete_scans`] scans again.
    pub fn mark_incomplete(&self) {
        self.misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.incomplete
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the store was rebuilt empty since the last scan began.
    fn store_rebuilt_since_scan(&self) -> bool {
        self.store.generation()
            != self
                .scanned_generation
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Rebuilds the tree from the index, shows it, and tells the kernel what changed.
    /// While the store was rebuilt empty and not yet rescanned, the tree shown stays.
    pub fn refresh_tree(&self) {
        // What a scan freed goes back before a build takes as much again:
        // glibc would keep it, and the build need not reuse it.
        release_freed_memory();
        self.rebuild_tree();
        release_freed_memory();
    }

    fn rebuild_tree(&self) {
        let _building = self.tree_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.rebuild_tree_locked();
    }

    fn rebuild_tree_locked(&self) {
        if self.store_rebuilt_since_scan() {
            return tracing::info!("the index is being rebuilt: the tree stays as it is");
        }
        // Read before building: a change made while the tree is built is seen
        // by the next refresh.
        let version = self.store.tracks_stamp();
        if self
            .tree_version
            .swap(version, std::sync::atomic::Ordering::Relaxed)
            == version
        {
            // What a rebuild would show is shown: the changes are applied.
            let files = self.view.snapshot().file_count();
            self.events
                .publish(crate::telemetry::events::Event::LibraryUpdated { files });
            return tracing::debug!("the index did not change: the tree stays as it is");
        }
        let tree = self.with_book(|book| build_tree(&self.store, &self.config, &self.layout, book));
        let tree = match tree {
            Ok(tree) => tree,
            Err(e) => {
                // Not built: the next refresh tries again.
                self.tree_version
                    .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
                return tracing::error!("cannot rebuild the tree: {e}");
            }
        };
        let generation = self
            .tree_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        {
            let mut written = self
                .snapshot_written
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            save_snapshot(
                &self.cache_dir.join("tree.snapshot"),
                &tree,
                &tree_snapshot::stamp(version, &tree_settings(&self.config)),
            );
            *written = generation;
        }
        let changes = invalidations(&self.view.snapshot(), &tree);
        self.tree_changes[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.show(tree, changes);
    }

    /// Changes the tree shown for a change batch: `changed` holds the old and
    /// new versions of the records it changed, `writes` what its writes did
    /// to the index. Costs what changed ([`tree_update`]); builds whole when
    /// the index changed otherwise since the tree shown was made, or when the
    /// update declines, except while a scan writes the index: the scan's
    /// closing build shows the change.
    pub fn update_tree(&self, changed: &[FileRecord], writes: &[Written]) {
        let _building = self.tree_lock.lock().unwrap_or_else(|p| p.into_inner());
        let shown = self.tree_version.load(std::sync::atomic::Ordering::Relaxed);
        let mut at = Some(shown);
        for write in writes {
            at = match (*write, at) {
                (Written::Same, at) => at,
                (Written::Changed { before, after }, Some(at)) if before == at => Some(after),
                _ => None,
            };
        }
        let small = changed.len() <= WHOLE_BUILD_PAST;
        let Some(at) = at.filter(|_| small && !self.store_rebuilt_since_scan()) else {
            if at.is_none() && self.is_scanning() {
                // A scan writing as it goes moved the index on: the build
                // that ends it shows this change too. Building whole here
                // would do it once per batch, halfway through the scan.
                return tracing::debug!(
                    "a scan is writing the index: the change shows when it ends"
                );
            }
            return self.rebuild_tree_locked();
        };
        if at == shown {
            let files = self.view.snapshot().file_count();
            return self
                .events
                .publish(crate::telemetry::events::Event::LibraryUpdated { files });
        }
        let old = self.view.snapshot();
        let ranks = origin_ranks(&self.config);
        let rank = |origin: &str| {
            (
                ranks.get(origin).copied().unwrap_or(i64::MAX),
                origin.to_owned(),
            )
        };
        let records = IndexRecords {
            store: &self.store,
            origins: ranks.keys().cloned().collect(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let updated = InodeBook::lazy(&self.store)
            .map_err(|e| e.to_string())
            .and_then(|mut book| {
                let updated = tree_update::update(
                    &old,
                    changed,
                    &records,
                    &rank,
                    &self.layout,
                    &mut book,
                    now,
                )?;
                book.save(&self.store).map_err(|e| e.to_string())?;
                Ok(updated)
            });
        let updated = match updated {
            Ok(Some(updated)) => updated,
            Ok(None) => return self.rebuild_tree_locked(),
            Err(e) => {
                tracing::warn!("cannot update the tree, building it whole: {e}");
                return self.rebuild_tree_locked();
            }
        };
        // The store rebuilt while the update read it: what it read may be
        // the empty store's.
        if self.store_rebuilt_since_scan() {
            return self.rebuild_tree_locked();
        }
        self.tree_version
            .store(at, std::sync::atomic::Ordering::Relaxed);
        self.tree_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let changes = invalidations_in(&old, &updated.tree, &updated.folders);
        tracing::debug!(folders = updated.folders.len(), "tree updated");
        self.tree_changes[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.show(updated.tree, changes);
        self.save_snapshot_later();
    }

    /// Writes the tree shown to its snapshot after [`SNAPSHOT_AFTER`], off the
    /// change path: one write for a burst of updates.
    fn save_snapshot_later(&self) {
        if self
            .snapshot_pending
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let (due, pending) = (self.due_snapshot(), self.snapshot_pending.clone());
        std::thread::spawn(move || {
            std::thread::sleep(SNAPSHOT_AFTER);
            pending.store(false, std::sync::atomic::Ordering::Relaxed);
            due.save_if_due();
        });
    }

    /// Writes the tree's snapshot now if the one on disk is older than the
    /// tree shown, after a write under way (at a stop: the next start then
    /// shows it without a build).
    pub fn save_snapshot_if_due(&self) {
        self.due_snapshot().save_if_due();
    }

    fn due_snapshot(&self) -> DueSnapshot {
        DueSnapshot {
            view: self.view.clone(),
            path: self.cache_dir.join("tree.snapshot"),
            settings: tree_settings(&self.config),
            lock: self.tree_lock.clone(),
            version: self.tree_version.clone(),
            generation: self.tree_generation.clone(),
            written: self.snapshot_written.clone(),
        }
    }

    /// Shows `tree`, tells the kernel to forget `changes`, wakes the pin
    /// keeper, tells music servers what changed.
    fn show(&self, tree: Tree, changes: Vec<Invalidation>) {
        let hooked = self
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let folders = hooked.then(|| changed_folders(&tree, &changes));
        let files = tree.file_count();
        self.view.replace(tree);
        // A pinned folder may have new tracks, a pinned track a new version.
        self.keeper.wake();
        self.events
            .publish(crate::telemetry::events::Event::LibraryUpdated { files });
        if let Some(notifier) = self
            .notifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            notify_kernel(notifier, &changes);
            // A lookup answered from the old tree while this went out would
            // leave its answer in the kernel for the whole TTL: tell it again
            // once such answers are surely in.
            let notifier = notifier.clone();
            std::thread::spawn(move || {
                std::thread::sleep(RENOTIFY_AFTER);
                notify_kernel(&notifier, &changes);
            });
        }
        // After the kernel was told: a server that looks now sees the change.
        if let Some(hooks) = self
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            hooks.changed(&folders.unwrap_or_default());
        }
    }

    /// Starts the config's hooks for a mount at `mountpoint` (inside the runtime).
    pub fn start_hooks(&self, mountpoint: &std::path::Path) {
        if self.config.hooks.is_empty() {
            return;
        }
        // Servers are told absolute paths, whatever the command line said.
        let mountpoint = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
        *self.hooks.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(crate::hooks::Hooks::start(&self.config.hooks, &mountpoint));
    }

    /// The hooks' status, in config order.
    pub fn hook_statuses(&self) -> Vec<crate::hooks::HookStatus> {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.statuses())
            .unwrap_or_default()
    }

    /// Lets the daemon invalidate the kernel's caches of the mount.
    pub fn set_notifier(&self, notifier: fuser::Notifier) {
        *self.notifier.lock().unwrap_or_else(|p| p.into_inner()) = Some(notifier);
    }

    /// Rescans whenever an origin comes up, until the returned task is aborted.
    pub fn rescan_on_new_origins(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let daemon = self.clone();
        let mut changes = self.registry.changes();
        let serials = |daemon: &Daemon| {
            daemon
                .registry
                .all()
                .iter()
                .map(|o| o.serial)
                .collect::<HashSet<u64>>()
        };
        let mut known = serials(self);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                // Origins often come up together: let the burst settle.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                changes.borrow_and_update();
                let now = serials(&daemon);
                let came_up = now.difference(&known).next().is_some();
                known = now;
                if came_up {
                    match daemon.rescan(&Arc::default()).await {
                        Ok(report) => log_report(&report),
                        Err(e) => tracing::error!("scan failed: {e}"),
                    }
                }
            }
        })
    }
}

/// When the kernel is told a tree's changes a second time.
const RENOTIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A change batch of more records than this (an origin rescanned whole)
/// builds the tree whole: an update reads folder by folder.
const WHOLE_BUILD_PAST: usize = 20_000;

/// How long after an update the tree's snapshot is written (see
/// [`Daemon::update_tree`]): a restart sooner builds the tree from the index.
pub const SNAPSHOT_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest wait between two scans retrying what an incomplete one missed.
const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Daemon {
    /// While the last scan was incomplete (or the store was rebuilt since), scans
    /// again after `first`, then after
    /// twice as long each time it is still incomplete (up to an hour), until the
    /// returned task is aborted: what an outage kept from the index comes in once
    /// the origin is back, without a restart.
    pub fn retry_incomplete_scans(
        self: &Arc<Self>,
        first: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let daemon = self.clone();
        tokio::spawn(async move {
            let mut wait = first;
            loop {
                tokio::time::sleep(wait).await;
                let due = daemon.incomplete.load(std::sync::atomic::Ordering::Relaxed)
                    || daemon.store_rebuilt_since_scan();
                if !due {
                    wait = first;
                    continue;
                }
                match daemon.rescan(&Arc::default()).await {
                    Ok(report) => {
                        log_report(&report);
                        wait = if report.complete() {
                            first
                        } else {
                            (wait * 2).min(MAX_RETRY_WAIT)
                        };
                    }
                    Err(e) => tracing::error!("scan failed: {e}"),
                }
            }
        })
    }
}

/// Logs a scan's outcome.
pub fn log_report(report: &ScanReport) {
    tracing::info!(
        files = report.files,
        tags_read = report.tags_read,
        bytes_read = report.bytes_read,
        problems = report.problems.len(),
        "scan finished"
    );
    for (origin, path, problem) in &report.problems {
        tracing::warn!(origin = %origin, path = %path, "{problem}");
    }
    for (origin, why) in &report.failed_origins {
        tracing::warn!(origin = %origin, "not scanned, previous index kept: {why}");
    }
    for (origin, dir, why) in &report.unlisted {
        tracing::warn!(origin = %origin, dir = %dir, "folder not listed, its tracks kept: {why}");
    }
    if report.tags_pending > 0 {
        tracing::warn!(
            files = report.tags_pending,
            "tags not read because the origin failed; they will be read again"
        );
    }
}

/// How reads go: `[retry]` delays and the read deadline.
pub fn read_policy(config: &Config) -> ReadPolicy {
    ReadPolicy {
        retry_delays: config
            .retry
            .delays_ms
            .iter()
            .map(|ms| std::time::Duration::from_millis(*ms))
            .collect(),
        deadline: config.health.read_deadline(),
    }
}

/// Builds the tree from the index, for the configured origins only.
/// What the tree's layout depends on besides the index: the origins' ids
/// and priorities, and the layout.
fn tree_settings(config: &Config) -> String {
    let mut settings: Vec<String> = config
        .origins
        .iter()
        .map(|o| format!("{}={}", o.id, o.priority))
        .collect();
    settings.sort();
    settings.push(config.library.layout.clone());
    settings.join("\0")
}

/// Hands memory freed after a scan or a rebuild back to the system. glibc's
/// allocator keeps it otherwise: at 100,000 tracks a restart's rescan left the
/// daemon at about 200 MB, of which 120 MB was freed and idle.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages; it touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps `tree` for the next start (see [`tree_snapshot`]); a failure costs
/// that start a build.
fn save_snapshot(path: &std::path::Path, tree: &Tree, stamp: &[u8; 32]) {
    if let Err(e) = tree_snapshot::save(path, tree, stamp) {
        tracing::warn!(path = %path.display(), "cannot keep the tree for the next start: {e}");
    }
}

/// Each configured origin's priority, by id.
fn origin_ranks(config: &Config) -> HashMap<String, i64> {
    config
        .origins
        .iter()
        .map(|o| (o.id.clone(), o.priority))
        .collect()
}

/// The index as a tree update reads it.
struct IndexRecords<'a> {
    store: &'a Store,
    origins: Vec<String>,
}

impl tree_update::Records for IndexRecords<'_> {
    fn in_dir(&self, dir: &str) -> Result<Vec<FileRecord>, String> {
        index::load_in_dir(self.store, &self.origins, dir).map_err(|e| e.to_string())
    }
}

fn build_tree(
    store: &Store,
    config: &Config,
    layout: &Layout,
    book: &mut InodeBook,
) -> Result<Tree, String> {
    let ranks = origin_ranks(config);
    let started = std::time::Instant::now();
    // Streamed and placed one at a time: see `library::placed`.
    let mut origins = Origins::default();
    let mut records: Vec<Placed> = Vec::new();
    index::for_each(store, |record| {
        if ranks.contains_key(&record.origin) {
            records.push(Placed::new(&record, layout, origins.name(&record.origin)));
        }
    })
    .map_err(|e| e.to_string())?;
    records.shrink_to_fit();
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        records = records.len(),
        "tree: index read"
    );
    let rank = |origin: &str| {
        (
            ranks.get(origin).copied().unwrap_or(i64::MAX),
            origin.to_owned(),
        )
    };
    let tree = tree_build::build_placed(&records, &rank, book);
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "tree: built");
    book.save_built(store, &tree).map_err(|e| e.to_string())?;
    Ok(tree)
}

/// How the configured plugin processes run.
pub fn plugin_processes(config: &Config) -> crate::plugins::process::ProcessOptions {
    let mut options = crate::plugins::process::ProcessOptions::new(config.health.call_deadline());
    options.memory_limit = (config.plugins.memory_limit_mb > 0)
        .then(|| config.plugins.memory_limit_mb.saturating_mul(1 << 20));
    options.sandbox = config.plugins.sandbox;
    options.in_process = config.plugins.in_process;
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_flags_add_origins_and_the_file_wins_for_the_same_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("musicfs.toml");
        std::fs::write(
            &file,
            "[[origins]]\nid = \"nas\"\ntype = \"local\"\npriority = 5\npath = \"/srv/music\"\n",
        )
        .unwrap();
        let options = DaemonOptions {
            config: Some(file),
            origins: vec!["local:/srv/music".into(), "local:/home/me/Music".into()],
            ..DaemonOptions::default()
        };
        let config = load_config(&options).unwrap();
        let ids: Vec<_> = config
            .origins
            .iter()
            .map(|o| (o.id.as_str(), o.priority))
            .collect();
        assert_eq!(ids, [("nas", 5), ("local", 6)]);
    }
}
