//! The host's end of a plugin's logging: re-emits each forwarded event as a host
//! `tracing` event with the plugin's name attached.

use std::sync::{Arc, RwLock};

use abi_stable::std_types::RStr;
use tracing::level_filters::LevelFilter;

use crate::ffi::FfiLogSink;

/// Receives one plugin's log events.
#[derive(Clone)]
pub(crate) struct HostLogSink {
    /// The file name until the plugin has said its kind.
    plugin: Arc<RwLock<String>>,
}

impl HostLogSink {
    pub(crate) fn new(name: String) -> Self {
        HostLogSink {
            plugin: Arc::new(RwLock::new(name)),
        }
    }

    pub(crate) fn rename(&self, name: String) {
        *self.plugin.write().unwrap_or_else(|p| p.into_inner()) = name;
    }
}

/// The host's current maximum level, as the number the plugin side understands.
pub(crate) fn host_max_level() -> u8 {
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

impl FfiLogSink for HostLogSink {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>) {
        let plugin = self.plugin.read().unwrap_or_else(|p| p.into_inner());
        let plugin = plugin.as_str();
        let target = target.as_str();
        let message = message.as_str();
        match level {
            1 => tracing::error!(target: "musicfs::plugin", plugin, module = target, "{message}"),
            2 => tracing::warn!(target: "musicfs::plugin", plugin, module = target, "{message}"),
            3 => tracing::info!(target: "musicfs::plugin", plugin, module = target, "{message}"),
            4 => tracing::debug!(target: "musicfs::plugin", plugin, module = target, "{message}"),
            _ => tracing::trace!(target: "musicfs::plugin", plugin, module = target, "{message}"),
        }
    }
}
