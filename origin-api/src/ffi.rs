//! The types that actually cross the boundary, all `#[repr(C)]` and checked by
//! abi_stable's layout check when a plugin loads, plus conversions to and from the
//! author-facing types. Nothing here is meant for plugin authors; the host side and
//! the plugin side of this crate are the only users.
//!
//! # How it grows (the 1.x rule)
//!
//! A plugin built against origin-api 1.x loads into every host built against
//! 1.y, older or newer. What makes that hold:
//!
//! - Trait objects and the root module are abi_stable prefix types: everything up
//!   to `#[sabi(last_prefix_field)]` is 1.0 and never changes; a later minor adds
//!   methods only after it, each with a default (written in the trait, so the host
//!   runs it) that falls back on the 1.0 methods when the plugin lacks it.
//! - Enums that cross are open (`u8` newtypes): a value a later minor adds reads
//!   as the nearest kind an earlier one knows.
//! - abi_stable's own layout check accepts only libraries at least as new as the
//!   loader (the host may not have more fields than the plugin). The loader runs
//!   the same check both ways: the plugin's types must extend the host's, or the
//!   host's extend the plugin's; anything else (a changed type, a removed or
//!   reordered method) is refused. abi_stable's prefix accessors read the field
//!   count of the plugin's own vtable at run time, so a method past its end is
//!   never called; its default runs instead.
//! - Type layouts carry the crate's version, and abi_stable treats 0.x minors as
//!   incompatible: hence 1.0 and semver from here on. A 2.0 would be a new ABI.

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

/// An open set: values a later version adds arrive as numbers this one does not
/// know, and are read as the closest kind it has (never as undefined behaviour).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiErrorKind(pub u8);

#[allow(non_upper_case_globals)]
impl FfiErrorKind {
    pub const NOT_FOUND: FfiErrorKind = FfiErrorKind(0);
    pub const PERMISSION_DENIED: FfiErrorKind = FfiErrorKind(1);
    pub const TIMEOUT: FfiErrorKind = FfiErrorKind(2);
    pub const UNAVAILABLE: FfiErrorKind = FfiErrorKind(3);
    pub const INVALID_CONFIG: FfiErrorKind = FfiErrorKind(4);
    pub const OTHER: FfiErrorKind = FfiErrorKind(5);
    /// Since 1.1.
    pub const CHANGED: FfiErrorKind = FfiErrorKind(6);
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiError {
    pub kind: FfiErrorKind,
    pub message: RString,
}

/// An open set: values a later version adds arrive as numbers this one does not
/// know, and are read as the closest kind it has (never as undefined behaviour).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiEntryKind(pub u8);

#[allow(non_upper_case_globals)]
impl FfiEntryKind {
    pub const FILE: FfiEntryKind = FfiEntryKind(0);
    pub const DIRECTORY: FfiEntryKind = FfiEntryKind(1);
    pub const OTHER: FfiEntryKind = FfiEntryKind(2);
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

/// An open set: values a later version adds arrive as numbers this one does not
/// know, and are read as the closest kind it has (never as undefined behaviour).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiHealthStatus(pub u8);

#[allow(non_upper_case_globals)]
impl FfiHealthStatus {
    pub const HEALTHY: FfiHealthStatus = FfiHealthStatus(0);
    pub const DEGRADED: FfiHealthStatus = FfiHealthStatus(1);
    pub const UNHEALTHY: FfiHealthStatus = FfiHealthStatus(2);
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiHealth {
    pub status: FfiHealthStatus,
    pub reason: RString,
}

/// An open set: values a later version adds arrive as numbers this one does not
/// know, and are read as the closest kind it has (never as undefined behaviour).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiChangeKind(pub u8);

#[allow(non_upper_case_globals)]
impl FfiChangeKind {
    pub const CREATED: FfiChangeKind = FfiChangeKind(0);
    pub const MODIFIED: FfiChangeKind = FfiChangeKind(1);
    pub const REMOVED: FfiChangeKind = FfiChangeKind(2);
}

#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiChangeEvent {
    pub kind: FfiChangeKind,
    pub path: RString,
}

/// An open set: values a later version adds arrive as numbers this one does not
/// know, and are read as the closest kind it has (never as undefined behaviour).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfiPluginClass(pub u8);

#[allow(non_upper_case_globals)]
impl FfiPluginClass {
    pub const LOCAL: FfiPluginClass = FfiPluginClass(0);
    pub const REMOTE: FfiPluginClass = FfiPluginClass(1);
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

/// Since 1.2: the pieces of one streaming read. Dropping it cancels the read.
#[sabi_trait]
pub trait FfiReadStream: Send + Sync {
    /// Everything that has arrived since the last call (waiting for at least one
    /// byte), up to the stream's piece limit; `RNone` at the end.
    #[sabi(last_prefix_field)]
    fn next(&self) -> FfiFuture<FfiResult<ROption<RVec<u8>>>>;
}

pub type FfiReadStreamBox = FfiReadStream_TO<'static, RBox<()>>;

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
    /// The last method of 1.0: methods a later 1.x adds come after it, each with
    /// a default that falls back on these, so a plugin built earlier still loads.
    #[sabi(last_prefix_field)]
    fn watch(&self, sink: FfiEventSinkBox) -> FfiFuture<FfiResult<FfiWatchHandleBox>>;

    /// Since 1.1: `read` of the version the host expects. A plugin built against
    /// 1.0 has no such method; this default then reads without checking.
    fn read_version(
        &self,
        path: RString,
        offset: u64,
        len: u32,
        expected: ROption<RString>,
    ) -> FfiFuture<FfiResult<RVec<u8>>> {
        let _ = expected;
        self.read(path, offset, len)
    }

    /// Since 1.2: a streaming read of `len` bytes from `offset` of the version
    /// `expected`; the plugin polls its stream ahead of the host by at most
    /// `credit` bytes. A plugin built earlier has no such method; this default
    /// answers `RNone`, and the host then streams through `read_version`.
    fn read_stream(
        &self,
        path: RString,
        offset: u64,
        len: u64,
        expected: ROption<RString>,
        credit: u32,
    ) -> ROption<FfiReadStreamBox> {
        let _ = (path, offset, len, expected, credit);
        ROption::RNone
    }

    /// Since 1.6: what the origin's watch has polled (`Origin::watch_stats`).
    /// A plugin built earlier has no such method; this default answers `RNone`.
    fn watch_stats(&self) -> ROption<FfiPollStats> {
        ROption::RNone
    }
}

/// Since 1.6: [`crate::PollStats`] across the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiPollStats {
    pub polls: u64,
    pub failed: u64,
    pub requests: u64,
    pub bytes: u64,
    pub last_requests: u64,
    pub last_bytes: u64,
    pub last_files: u64,
    pub last_millis: u64,
}

impl From<crate::PollStats> for FfiPollStats {
    fn from(s: crate::PollStats) -> Self {
        FfiPollStats {
            polls: s.polls,
            failed: s.failed,
            requests: s.requests,
            bytes: s.bytes,
            last_requests: s.last_requests,
            last_bytes: s.last_bytes,
            last_files: s.last_files,
            last_millis: s.last_millis,
        }
    }
}

impl From<FfiPollStats> for crate::PollStats {
    fn from(s: FfiPollStats) -> Self {
        crate::PollStats {
            polls: s.polls,
            failed: s.failed,
            requests: s.requests,
            bytes: s.bytes,
            last_requests: s.last_requests,
            last_bytes: s.last_bytes,
            last_files: s.last_files,
            last_millis: s.last_millis,
        }
    }
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
    #[sabi(last_prefix_field)]
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
            ErrorKind::NotFound => FfiErrorKind::NOT_FOUND,
            ErrorKind::PermissionDenied => FfiErrorKind::PERMISSION_DENIED,
            ErrorKind::Timeout => FfiErrorKind::TIMEOUT,
            ErrorKind::Unavailable => FfiErrorKind::UNAVAILABLE,
            ErrorKind::InvalidConfig => FfiErrorKind::INVALID_CONFIG,
            ErrorKind::Other => FfiErrorKind::OTHER,
            ErrorKind::Changed => FfiErrorKind::CHANGED,
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
            FfiErrorKind::NOT_FOUND => ErrorKind::NotFound,
            FfiErrorKind::PERMISSION_DENIED => ErrorKind::PermissionDenied,
            FfiErrorKind::TIMEOUT => ErrorKind::Timeout,
            FfiErrorKind::UNAVAILABLE => ErrorKind::Unavailable,
            FfiErrorKind::INVALID_CONFIG => ErrorKind::InvalidConfig,
            FfiErrorKind::CHANGED => ErrorKind::Changed,
            // OTHER, and any kind a later version adds.
            _ => ErrorKind::Other,
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
                EntryKind::File => FfiEntryKind::FILE,
                EntryKind::Directory => FfiEntryKind::DIRECTORY,
                EntryKind::Other => FfiEntryKind::OTHER,
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
                FfiEntryKind::FILE => EntryKind::File,
                FfiEntryKind::DIRECTORY => EntryKind::Directory,
                _ => EntryKind::Other,
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
                HealthStatus::Healthy => FfiHealthStatus::HEALTHY,
                HealthStatus::Degraded => FfiHealthStatus::DEGRADED,
                HealthStatus::Unhealthy => FfiHealthStatus::UNHEALTHY,
            },
            reason: health.reason.into(),
        }
    }
}

impl From<FfiHealth> for Health {
    fn from(health: FfiHealth) -> Self {
        Health {
            status: match health.status {
                FfiHealthStatus::HEALTHY => HealthStatus::Healthy,
                FfiHealthStatus::DEGRADED => HealthStatus::Degraded,
                FfiHealthStatus::UNHEALTHY => HealthStatus::Unhealthy,
                // A status a later version adds: not fully healthy, not down.
                _ => HealthStatus::Degraded,
            },
            reason: health.reason.into_string(),
        }
    }
}

impl From<ChangeEvent> for FfiChangeEvent {
    fn from(event: ChangeEvent) -> Self {
        FfiChangeEvent {
            kind: match event.kind {
                ChangeKind::Created => FfiChangeKind::CREATED,
                ChangeKind::Modified => FfiChangeKind::MODIFIED,
                ChangeKind::Removed => FfiChangeKind::REMOVED,
            },
            path: event.path.into(),
        }
    }
}

impl From<FfiChangeEvent> for ChangeEvent {
    fn from(event: FfiChangeEvent) -> Self {
        ChangeEvent {
            kind: match event.kind {
                FfiChangeKind::CREATED => ChangeKind::Created,
                FfiChangeKind::MODIFIED => ChangeKind::Modified,
                FfiChangeKind::REMOVED => ChangeKind::Removed,
                // A kind a later version adds: the host looks at the path.
                _ => ChangeKind::Modified,
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
                PluginClass::Local => FfiPluginClass::LOCAL,
                PluginClass::Remote => FfiPluginClass::REMOTE,
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
                FfiPluginClass::LOCAL => PluginClass::Local,
                _ => PluginClass::Remote,
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
