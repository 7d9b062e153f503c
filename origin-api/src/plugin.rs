//! The trait a plugin implements: what it is, and how it opens origins.

use std::fmt::Display;

use async_trait::async_trait;

use crate::{Origin, OriginResult, Settings};

/// Whether a plugin's origins are on this machine or across a network. The class
/// picks the default number of consecutive failures before an origin is unhealthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginClass {
    /// Local disk: one failure is telling.
    Local,
    /// Across a network: failures come and go.
    Remote,
}

impl PluginClass {
    /// Consecutive failures before an origin of this class counts as unhealthy:
    /// local 1, remote 3.
    pub fn default_unhealthy_threshold(self) -> u32 {
        match self {
            PluginClass::Local => 1,
            PluginClass::Remote => 3,
        }
    }

    /// `local` or `remote`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginClass::Local => "local",
            PluginClass::Remote => "remote",
        }
    }
}

/// What a plugin says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The kind its origins are configured with (`type = "local"`).
    pub kind: String,
    /// The plugin's own version.
    pub version: String,
    /// Local or remote.
    pub class: PluginClass,
    /// Consecutive failures before one of its origins is unhealthy.
    pub default_unhealthy_threshold: u32,
}

impl PluginInfo {
    /// Info with the class's default unhealthy threshold.
    pub fn new(kind: impl Into<String>, version: impl Into<String>, class: PluginClass) -> Self {
        PluginInfo {
            kind: kind.into(),
            version: version.into(),
            class,
            default_unhealthy_threshold: class.default_unhealthy_threshold(),
        }
    }

    /// Overrides the class's default unhealthy threshold.
    pub fn with_unhealthy_threshold(mut self, threshold: u32) -> Self {
        self.default_unhealthy_threshold = threshold.max(1);
        self
    }
}

/// A plugin: one kind of origin. The host asks it to open one origin per
/// `[[origins]]` table of its kind.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's kind, version and class. Called once, when the plugin loads.
    fn info(&self) -> PluginInfo;

    /// Opens an origin from its settings. Check them here and return
    /// [`crate::ErrorKind::InvalidConfig`] naming the key when one is wrong.
    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>>;
}

/// What a plugin constructor may return: the plugin, or a `Result` whose error says
/// why it could not start. Used by [`crate::export_plugin!`].
pub trait IntoPlugin {
    /// The plugin, or why there is none.
    fn into_plugin(self) -> Result<Box<dyn Plugin>, String>;
}

impl<P: Plugin> IntoPlugin for P {
    fn into_plugin(self) -> Result<Box<dyn Plugin>, String> {
        Ok(Box::new(self))
    }
}

impl<P: Plugin, E: Display> IntoPlugin for Result<P, E> {
    fn into_plugin(self) -> Result<Box<dyn Plugin>, String> {
        self.map(|p| Box::new(p) as Box<dyn Plugin>)
            .map_err(|e| e.to_string())
    }
}
