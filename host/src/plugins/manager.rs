//! Keeps the running set of plugins equal to what the plugins folder holds, and the
//! configured origins of each kind registered through its plugin.
//!
//! [`PluginManager::sync`] compares the folder with what is running:
//! - a new file is copied (see [`crate::plugins::folder`]), loaded and checked; the
//!   configured origins of its kind are opened and registered;
//! - a file whose content changed is loaded the same way *beside* the running
//!   version; its origins must open and answer a health check before they replace
//!   the old ones. If anything fails, the old version keeps serving;
//! - a removed file takes its origins down (watches stopped, calls drained) and its
//!   runtime stopped. The library stays mapped: unloading is logical (see the README).
//!
//! Syncs are serialised by one async mutex; [`PluginManager::watch_folder`] runs one
//! after each burst of changes in the folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use origin_api::{HealthStatus, Settings};
use tokio::sync::{mpsc, Mutex};

use crate::config::{HealthConfig, OriginConfig};
use crate::origins::registry::{RegisteredOrigin, Registry};
use crate::plugins::folder::{candidate_files, clear_copies, content_hash, hashed_copy};
use crate::plugins::process::{ProcessOptions, ProcessReport};
use crate::plugins::running::RunningPlugin;
use crate::telemetry::events::{Event, EventBus};

/// How long the plugins folder must be quiet before a sync.
const FOLDER_QUIET: Duration = Duration::from_millis(300);

/// A plugin that is running.
struct Active {
    hash: String,
    plugin: Arc<RunningPlugin>,
}

#[derive(Default)]
struct State {
    /// By source file in the plugins folder.
    active: BTreeMap<PathBuf, Active>,
    /// Files that failed, with the hash that failed, so they are not retried (and
    /// logged) until their content changes.
    rejected: BTreeMap<PathBuf, String>,
}

/// Loads, replaces and unloads plugins as the folder changes.
pub struct PluginManager {
    plugins_dir: PathBuf,
    copies_dir: PathBuf,
    origins: Vec<OriginConfig>,
    health: HealthConfig,
    process: ProcessOptions,
    registry: Arc<Registry>,
    events: EventBus,
    state: Mutex<State>,
    /// Why each configured origin that is not live is waiting.
    waiting: std::sync::Mutex<BTreeMap<String, String>>,
    /// The running plugins, as of the last sync, for a status that must not
    /// wait for a sync to end.
    running_now: std::sync::Mutex<Vec<(PathBuf, Arc<RunningPlugin>)>>,
}

impl PluginManager {
    /// A manager for `plugins_dir`, keeping library copies in `state_dir/plugins`
    /// and running each plugin in a process started as `process` says.
    pub fn new(
        plugins_dir: PathBuf,
        state_dir: &Path,
        origins: Vec<OriginConfig>,
        health: HealthConfig,
        process: ProcessOptions,
        registry: Arc<Registry>,
        events: EventBus,
    ) -> Self {
        let copies_dir = state_dir.join("plugins");
        clear_copies(&copies_dir);
        PluginManager {
            plugins_dir,
            copies_dir,
            origins,
            health,
            process,
            registry,
            events,
            state: Mutex::new(State::default()),
            waiting: std::sync::Mutex::new(BTreeMap::new()),
            running_now: std::sync::Mutex::default(),
        }
    }

    /// Brings the running plugins in line with the folder.
    pub async fn sync(&self) {
        let mut state = self.state.lock().await;
        let files = match candidate_files(&self.plugins_dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(dir = %self.plugins_dir.display(), "cannot read the plugins folder: {e}");
                Vec::new()
            }
        };
        let gone: Vec<PathBuf> = state
            .active
            .keys()
            .filter(|f| !files.contains(f))
            .cloned()
            .collect();
        for file in gone {
            if let Some(active) = state.active.remove(&file) {
                self.take_down(&file, active).await;
            }
        }
        state.rejected.retain(|f, _| files.contains(f));
        for file in files {
            self.sync_file(&mut state, file).await;
        }
        *self.running_now.lock().unwrap_or_else(|p| p.into_inner()) = state
            .active
            .iter()
            .map(|(file, a)| (file.clone(), a.plugin.clone()))
            .collect();
    }

    /// The kinds of the running plugins, with their source files.
    pub async fn running(&self) -> Vec<(String, PathBuf)> {
        let state = self.state.lock().await;
        state
            .active
            .iter()
            .map(|(file, a)| (a.plugin.info().kind.clone(), file.clone()))
            .collect()
    }

    /// Each running plugin's kind, source file and process, as of the last
    /// sync (never waits for one).
    pub fn processes(&self) -> Vec<(String, PathBuf, ProcessReport)> {
        self.running_now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(file, p)| (p.info().kind.clone(), file.clone(), p.report()))
            .collect()
    }

    /// Publishes `OriginWaiting` for each enabled origin whose kind no plugin serves.
    pub async fn report_waiting(&self) {
        let state = self.state.lock().await;
        for origin in self.origins.iter().filter(|o| o.enabled) {
            let served = state
                .active
                .values()
                .any(|a| a.plugin.info().kind == origin.kind);
            if !served {
                self.waiting(origin, format!("waiting for plugin {}", origin.kind));
            }
        }
    }

    async fn sync_file(&self, state: &mut State, file: PathBuf) {
        let hash = match hash_in_background(&file).await {
            Ok(hash) => hash,
            Err(e) => {
                tracing::warn!(file = %file.display(), "cannot read plugin file: {e}");
                return;
            }
        };
        let running = state.active.get(&file).map(|a| a.hash.as_str());
        if running == Some(hash.as_str()) || state.rejected.get(&file) == Some(&hash) {
            return;
        }
        let replacing = running.is_some();
        match self.load(&file, &hash, state).await {
            Ok(plugin) => match self.bring_up(&plugin, &hash, replacing).await {
                Ok(()) => {
                    state.rejected.remove(&file);
                    let info = plugin.info();
                    tracing::info!(file = %file.display(), kind = %info.kind, version = %info.version, "plugin loaded");
                    self.events.publish(Event::PluginLoaded {
                        file: file.display().to_string(),
                        kind: info.kind.clone(),
                        version: info.version.clone(),
                        hash: hash.clone(),
                    });
                    let old = state.active.insert(file.clone(), Active { hash, plugin });
                    if let Some(old) = old {
                        self.retire(&file, old).await;
                    }
                }
                Err(reason) => {
                    shutdown_in_background(plugin).await;
                    self.reject(state, &file, hash, reason, replacing);
                }
            },
            Err(reason) => self.reject(state, &file, hash, reason, replacing),
        }
    }

    async fn load(
        &self,
        file: &Path,
        hash: &str,
        state: &State,
    ) -> Result<Arc<RunningPlugin>, String> {
        let (source, hash_owned, copies) =
            (file.to_owned(), hash.to_owned(), self.copies_dir.clone());
        let copy = tokio::task::spawn_blocking(move || {
            // Read the headers before copying anything: a folder holding other
            // files (an executable, .rlibs) must not fill the cache with copies.
            origin_api::host::check_plugin_file(&source).map_err(|e| e.to_string())?;
            hashed_copy(&source, &hash_owned, &copies).map_err(|e| format!("cannot copy: {e}"))
        })
        .await
        .map_err(|e| format!("loader task failed: {e}"))??;
        // Loaded in a process of its own: its constructor, like every later
        // call, cannot take the host down.
        let plugin = Arc::new(RunningPlugin::start(&copy, &self.process).await?);
        let kind = plugin.info().kind.clone();
        let clash = state
            .active
            .iter()
            .find(|(other, a)| other.as_path() != file && a.plugin.info().kind == kind);
        if let Some((other, _)) = clash {
            let reason = format!("kind `{kind}` is already served by {}", other.display());
            shutdown_in_background(plugin).await;
            return Err(reason);
        }
        Ok(plugin)
    }

    /// Opens the configured origins of the plugin's kind and registers them. A
    /// replacement must open every one of them and find each at least degraded,
    /// or nothing is registered and the old version stays.
    async fn bring_up(
        &self,
        plugin: &Arc<RunningPlugin>,
        hash: &str,
        replacing: bool,
    ) -> Result<(), String> {
        let kind = plugin.info().kind.clone();
        let mut opened = Vec::new();
        for config in self.origins.iter().filter(|o| o.enabled && o.kind == kind) {
            match self.open(plugin, hash, config, replacing).await {
                Ok(origin) => opened.push(origin),
                Err(reason) if replacing => {
                    return Err(format!(
                        "origin `{}` failed with the new version: {reason}",
                        config.id
                    ))
                }
                Err(reason) => self.waiting(config, reason),
            }
        }
        for origin in opened {
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&origin.id);
            self.registry.register(origin).await;
        }
        Ok(())
    }

    async fn open(
        &self,
        plugin: &Arc<RunningPlugin>,
        hash: &str,
        config: &OriginConfig,
        replacing: bool,
    ) -> Result<RegisteredOrigin, String> {
        let settings = Settings::new(config.id.clone(), config.settings.clone());
        let deadline = self.health.call_deadline();
        let origin = match tokio::time::timeout(deadline, plugin.open(settings)).await {
            Ok(Ok(origin)) => origin,
            Ok(Err(e)) => return Err(format!("cannot open: {e}")),
            Err(_) => {
                return Err(format!(
                    "opening took longer than {} ms",
                    deadline.as_millis()
                ))
            }
        };
        let registered = RegisteredOrigin::new(
            config.id.clone(),
            config.kind.clone(),
            config.priority,
            plugin.info().version.clone(),
            hash.to_owned(),
            origin,
            deadline,
        )
        .with_unhealthy_threshold(
            self.health
                .threshold_for(&config.kind)
                .unwrap_or(plugin.info().default_unhealthy_threshold),
        );
        let health = registered.health().await;
        if health.status == HealthStatus::Unhealthy {
            // A replacement must prove itself before it takes over; a first
            // start registers the origin anyway (an unplugged drive, a server
            // that is down): health checks see it come back, and its tracks
            // stay in the tree meanwhile.
            if replacing {
                return Err(format!("unhealthy: {}", health.reason));
            }
            tracing::warn!(origin = %config.id, kind = %config.kind, "unhealthy at start, serving it as it comes back: {}", health.reason);
            registered.start_unhealthy(&health.reason);
        }
        Ok(registered)
    }

    /// Why configured origins that are not live are waiting, by id.
    pub fn waiting_reasons(&self) -> BTreeMap<String, String> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn waiting(&self, config: &OriginConfig, reason: String) {
        tracing::warn!(origin = %config.id, kind = %config.kind, "{reason}");
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(config.id.clone(), reason.clone());
        self.events.publish(Event::OriginWaiting {
            id: config.id.clone(),
            reason,
        });
    }

    fn reject(
        &self,
        state: &mut State,
        file: &Path,
        hash: String,
        reason: String,
        replacing: bool,
    ) {
        if replacing {
            tracing::error!(file = %file.display(), "new version rejected, the running version keeps serving: {reason}");
        } else {
            tracing::error!(file = %file.display(), "plugin rejected: {reason}");
        }
        self.events.publish(Event::PluginRejected {
            file: file.display().to_string(),
            reason,
        });
        state.rejected.insert(file.to_owned(), hash);
    }

    /// After a replacement: unregisters what the old version served that the new one
    /// did not take over, and stops its runtime.
    async fn retire(&self, file: &Path, old: Active) {
        let kind = old.plugin.info().kind.clone();
        for id in self.registry.ids_of_kind(&kind) {
            let still_old = self
                .registry
                .get(&id)
                .is_some_and(|o| o.plugin_hash == old.hash);
            if still_old {
                self.registry.unregister(&id).await;
            }
        }
        tracing::info!(file = %file.display(), kind = %kind, "previous version retired");
        shutdown_in_background(old.plugin).await;
    }

    async fn take_down(&self, file: &Path, active: Active) {
        let kind = active.plugin.info().kind.clone();
        for id in self.registry.ids_of_kind(&kind) {
            self.registry.unregister(&id).await;
        }
        shutdown_in_background(active.plugin).await;
        tracing::info!(file = %file.display(), kind = %kind, "plugin unloaded");
        self.events.publish(Event::PluginUnloaded {
            file: file.display().to_string(),
            kind,
        });
    }

    /// Runs a sync after every burst of changes in the plugins folder, until the
    /// returned guard is dropped.
    pub fn watch_folder(self: &Arc<Self>) -> notify::Result<FolderWatch> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&self.plugins_dir, RecursiveMode::NonRecursive)?;
        let manager = self.clone();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Wait for the folder to be quiet: a copy arrives in many writes.
                while let Ok(Some(())) = tokio::time::timeout(FOLDER_QUIET, rx.recv()).await {}
                manager.sync().await;
            }
        });
        Ok(FolderWatch {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps the plugins folder watched.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hash_in_background(file: &Path) -> std::io::Result<String> {
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || content_hash(&file))
        .await
        .map_err(std::io::Error::other)?
}

/// Stops a plugin's process (its runtime first, as it finishes its tasks).
async fn shutdown_in_background(plugin: Arc<RunningPlugin>) {
    plugin.shutdown().await;
}
