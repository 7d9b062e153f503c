//! A plugin as the manager runs it: in a process of its own (the default), or
//! loaded into the daemon (`[plugins] in_process = true`: for measuring what
//! the process boundary costs and for debugging a plugin under a debugger; a
//! plugin that crashes then ends the daemon and its mount).

use std::path::Path;
use std::sync::Arc;

use origin_api::host::LoadedPlugin;
use origin_api::{Origin, OriginResult, PluginInfo, Settings};

use super::process::{PluginProcess, ProcessOptions, ProcessReport};

/// One running plugin.
pub enum RunningPlugin {
    /// In a plugin process (see [`super::process`]).
    Apart(Arc<PluginProcess>),
    /// Loaded into this process.
    Inside(Arc<LoadedPlugin>),
}

impl RunningPlugin {
    /// Loads `library` as `options` say.
    pub async fn start(library: &Path, options: &ProcessOptions) -> Result<Self, String> {
        if !options.in_process {
            return PluginProcess::start(library, options.clone())
                .await
                .map(RunningPlugin::Apart);
        }
        let library = library.to_owned();
        tokio::task::spawn_blocking(move || origin_api::host::load_plugin(&library))
            .await
            .map_err(|e| format!("loader task failed: {e}"))?
            .map(|p| RunningPlugin::Inside(Arc::new(p)))
            .map_err(|e| e.to_string())
    }

    /// Kind, version, class.
    pub fn info(&self) -> &PluginInfo {
        match self {
            RunningPlugin::Apart(p) => p.info(),
            RunningPlugin::Inside(p) => p.info(),
        }
    }

    /// The `origin-api` version it was built against, and the compiler.
    pub fn versions(&self) -> (String, String) {
        match self {
            RunningPlugin::Apart(p) => (p.api_version().to_owned(), p.rustc_version().to_owned()),
            RunningPlugin::Inside(p) => (p.api_version().to_owned(), p.rustc_version().to_owned()),
        }
    }

    /// Opens one origin of its kind.
    pub async fn open(&self, settings: Settings) -> OriginResult<Arc<dyn Origin>> {
        match self {
            RunningPlugin::Apart(p) => p.open(settings).await,
            RunningPlugin::Inside(p) => p.open(settings).await,
        }
    }

    /// Its process: for a plugin loaded inside, this one, never restarted.
    pub fn report(&self) -> ProcessReport {
        match self {
            RunningPlugin::Apart(p) => p.report(),
            RunningPlugin::Inside(_) => ProcessReport {
                pid: Some(std::process::id()),
                ..ProcessReport::default()
            },
        }
    }

    /// Stops it: its process, or its runtime (off the async workers: that
    /// blocks while its tasks finish).
    pub async fn shutdown(&self) {
        match self {
            RunningPlugin::Apart(p) => p.shutdown().await,
            RunningPlugin::Inside(p) => {
                let p = p.clone();
                let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
            }
        }
    }
}
