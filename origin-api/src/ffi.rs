//! The types that actually cross the boundary, all `#[repr(C)]` and checked by
//! abi_stable's layout check when a plugin loads, plus conversions to and from the
//! author-facing types. Nothing here is meant for plugin authors; the host side and
//! the plugin side of this crate are the only users.

// `#[sabi_trait]` expands to impls inside a const block.
#![allow(non_local_definitions, missing_docs)]

use std::time::{Duration, UNIX_EPOCH};

use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};
use async_ffi::FfiFuture;

use crate::{
    ChangeEvent, ChangeKind, DirEntry, EntryKind, ErrorKind, Health, HealthStatus, ListPage,
    Metadata, OriginError, PluginClass, PluginInfo,
};

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub enum FfiErrorKind {
    NotFound,
    PermissionDenied,
    Timeout,
    Unavailable,
    InvalidConfig,
    Other,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiError {
    pub kind: FfiErrorKind,
    pub message: RString,
}

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub enum FfiEntryKind {
    File,
    Directory,
    Other,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiMetadata {
    pub kind: FfiEntryKind,
    pub size: u64,
    /// Seconds since the Unix epoch (negative before it).
    pub modified_secs: i64,
    pub modified_nanos: u32,
    pub version: ROption<RString>,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiDirEntry {
    pub name: RString,
    pub metadata: FfiMetadata,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiListPage {
    pub entries: RVec<FfiDirEntry>,
    pub next_cursor: ROption<RString>,
}

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub enum FfiHealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiHealth {
    pub status: FfiHealthStatus,
    pub reason: RString,
}

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub enum FfiChangeKind {
    Created,
    Modified,
    Removed,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiChangeEvent {
    pub kind: FfiChangeKind,
    pub path: RString,
}

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub enum FfiPluginClass {
    Local,
    Remote,
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiPluginInfo {
    pub kind: RString,
    pub version: RString,
    pub class: FfiPluginClass,
    pub default_unhealthy_threshold: u32,
}

/// The host's end of a watch: the plugin calls `send` for each change.
#[sabi_trait]
pub trait FfiEventSink: Send + Sync {
    fn send(&self, event: FfiChangeEvent);
}

/// The plugin's end of a watch: stopping (or dropping) it ends the watch.
#[sabi_trait]
pub trait FfiWatchHandle: Send + Sync {
    fn stop(&self);
}

/// Where a plugin's `tracing` events go: the host's log.
#[sabi_trait]
pub trait FfiLogSink: Send + Sync {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>);
}

pub type FfiEventSinkBox = FfiEventSink_TO<'static, RBox<()>>;
pub type FfiWatchHandleBox = FfiWatchHandle_TO<'static, RBox<()>>;
pub type FfiLogSinkBox = FfiLogSink_TO<'static, RBox<()>>;

pub type FfiResult<T> = RResult<T, FfiError>;

/// One open origin, as the host sees it across the boundary.
#[sabi_trait]
pub trait FfiOrigin: Send + Sync {
    fn stat(&self, path: RString) -> FfiFuture<FfiResult<FfiMetadata>>;
    fn list(
        &self,
        dir: RString,
        cursor: ROption<RString>,
        limit: u32,
    ) -> FfiFuture<FfiResult<FfiListPage>>;
    fn read(&self, path: RString, offset: u64, len: u32) -> FfiFuture<FfiResult<RVec<u8>>>;
    fn health(&self) -> FfiFuture<FfiResult<FfiHealth>>;
    fn watch(&self, sink: FfiEventSinkBox) -> FfiFuture<FfiResult<FfiWatchHandleBox>>;
}

pub type FfiOriginBox = FfiOrigin_TO<'static, RBox<()>>;

/// A loaded plugin, as the host sees it across the boundary.
#[sabi_trait]
pub trait FfiPlugin: Send + Sync {
    fn info(&self) -> FfiPluginInfo;
    fn open(
        &self,
        origin_id: RString,
        settings_toml: RString,
    ) -> FfiFuture<FfiResult<FfiOriginBox>>;
    /// Stops the plugin's runtime; called after every origin is dropped.
    fn shutdown(&self);
}

pub type FfiPluginBox = FfiPlugin_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Builds the plugin, installing `log` as the destination of its `tracing`
    /// events up to `max_level` (0 off, 1 error … 5 trace).
    #[sabi(last_prefix_field)]
    pub init: extern "C" fn(log: FfiLogSinkBox, max_level: u8) -> FfiResult<FfiPluginBox>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "musicfs_plugin";
    const NAME: &'static str = "musicfs_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

// ---- conversions -------------------------------------------------------------

impl From<OriginError> for FfiError {
    fn from(err: OriginError) -> Self {
        let kind = match err.kind() {
            ErrorKind::NotFound => FfiErrorKind::NotFound,
            ErrorKind::PermissionDenied => FfiErrorKind::PermissionDenied,
            ErrorKind::Timeout => FfiErrorKind::Timeout,
            ErrorKind::Unavailable => FfiErrorKind::Unavailable,
            ErrorKind::InvalidConfig => FfiErrorKind::InvalidConfig,
            ErrorKind::Other => FfiErrorKind::Other,
        };
        FfiError {
            kind,
            message: err.message().into(),
        }
    }
}

impl From<FfiError> for OriginError {
    fn from(err: FfiError) -> Self {
        let kind = match err.kind {
            FfiErrorKind::NotFound => ErrorKind::NotFound,
            FfiErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            FfiErrorKind::Timeout => ErrorKind::Timeout,
            FfiErrorKind::Unavailable => ErrorKind::Unavailable,
            FfiErrorKind::InvalidConfig => ErrorKind::InvalidConfig,
            FfiErrorKind::Other => ErrorKind::Other,
        };
        OriginError::new(kind, err.message.into_string())
    }
}

impl From<Metadata> for FfiMetadata {
    fn from(meta: Metadata) -> Self {
        let (modified_secs, modified_nanos) = match meta.modified.duration_since(UNIX_EPOCH) {
            Ok(after) => (after.as_secs() as i64, after.subsec_nanos()),
            Err(before) => {
                let d = before.duration();
                // Round towards minus infinity so that nanos stays in [0, 1e9).
                if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        FfiMetadata {
            kind: match meta.kind {
                EntryKind::File => FfiEntryKind::File,
                EntryKind::Directory => FfiEntryKind::Directory,
                EntryKind::Other => FfiEntryKind::Other,
            },
            size: meta.size,
            modified_secs,
            modified_nanos,
            version: meta.version.map(RString::from).into(),
        }
    }
}

impl From<FfiMetadata> for Metadata {
    fn from(meta: FfiMetadata) -> Self {
        let modified = if meta.modified_secs >= 0 {
            UNIX_EPOCH + Duration::new(meta.modified_secs as u64, meta.modified_nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(meta.modified_secs.unsigned_abs())
                + Duration::from_nanos(meta.modified_nanos as u64)
        };
        Metadata {
            kind: match meta.kind {
                FfiEntryKind::File => EntryKind::File,
                FfiEntryKind::Directory => EntryKind::Directory,
                FfiEntryKind::Other => EntryKind::Other,
            },
            size: meta.size,
            modified,
            version: meta.version.into_option().map(RString::into_string),
        }
    }
}

impl From<ListPage> for FfiListPage {
    fn from(page: ListPage) -> Self {
        FfiListPage {
            entries: page
                .entries
                .into_iter()
                .map(|e| FfiDirEntry {
                    name: e.name.into(),
                    metadata: e.metadata.into(),
                })
                .collect(),
            next_cursor: page.next_cursor.map(RString::from).into(),
        }
    }
}

impl From<FfiListPage> for ListPage {
    fn from(page: FfiListPage) -> Self {
        ListPage {
            entries: page
                .entries
                .into_iter()
                .map(|e| DirEntry {
                    name: e.name.into_string(),
                    metadata: e.metadata.into(),
                })
                .collect(),
            next_cursor: page.next_cursor.into_option().map(RString::into_string),
        }
    }
}

impl From<Health> for FfiHealth {
    fn from(health: Health) -> Self {
        FfiHealth {
            status: match health.status {
                HealthStatus::Healthy => FfiHealthStatus::Healthy,
                HealthStatus::Degraded => FfiHealthStatus::Degraded,
                HealthStatus::Unhealthy => FfiHealthStatus::Unhealthy,
            },
            reason: health.reason.into(),
        }
    }
}

impl From<FfiHealth> for Health {
    fn from(health: FfiHealth) -> Self {
        Health {
            status: match health.status {
                FfiHealthStatus::Healthy => HealthStatus::Healthy,
                FfiHealthStatus::Degraded => HealthStatus::Degraded,
                FfiHealthStatus::Unhealthy => HealthStatus::Unhealthy,
            },
            reason: health.reason.into_string(),
        }
    }
}

impl From<ChangeEvent> for FfiChangeEvent {
    fn from(event: ChangeEvent) -> Self {
        FfiChangeEvent {
            kind: match event.kind {
                ChangeKind::Created => FfiChangeKind::Created,
                ChangeKind::Modified => FfiChangeKind::Modified,
                ChangeKind::Removed => FfiChangeKind::Removed,
            },
            path: event.path.into(),
        }
    }
}

impl From<FfiChangeEvent> for ChangeEvent {
    fn from(event: FfiChangeEvent) -> Self {
        ChangeEvent {
            kind: match event.kind {
                FfiChangeKind::Created => ChangeKind::Created,
                FfiChangeKind::Modified => ChangeKind::Modified,
                FfiChangeKind::Removed => ChangeKind::Removed,
            },
            path: event.path.into_string(),
        }
    }
}

impl From<PluginInfo> for FfiPluginInfo {
    fn from(info: PluginInfo) -> Self {
        FfiPluginInfo {
            kind: info.kind.into(),
            version: info.version.into(),
            class: match info.class {
                PluginClass::Local => FfiPluginClass::Local,
                PluginClass::Remote => FfiPluginClass::Remote,
            },
            default_unhealthy_threshold: info.default_unhealthy_threshold,
        }
    }
}

impl From<FfiPluginInfo> for PluginInfo {
    fn from(info: FfiPluginInfo) -> Self {
        PluginInfo {
            kind: info.kind.into_string(),
            version: info.version.into_string(),
            class: match info.class {
                FfiPluginClass::Local => PluginClass::Local,
                FfiPluginClass::Remote => PluginClass::Remote,
            },
            default_unhealthy_threshold: info.default_unhealthy_threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_and_after_the_epoch_round_trip() {
        for t in [
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
            UNIX_EPOCH - Duration::from_secs(7),
            UNIX_EPOCH,
        ] {
            let back: Metadata = FfiMetadata::from(Metadata::file(1, t)).into();
            assert_eq!(back.modified, t);
        }
    }

    #[test]
    fn root_module_loader_name_matches_abi_stable() {
        assert_eq!(
            crate::export::ROOT_MODULE_LOADER_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
