//! # origin-api: write a MusicFS origin plugin
//!
//! A MusicFS plugin is a `cdylib` that serves one kind of storage (local disk, S3,
//! SFTP, …). You implement two ordinary async traits, [`Plugin`] and [`Origin`], and
//! export them with [`export_plugin!`]. Your crate depends on `origin-api` and on your
//! backend's own crates; nothing else.
//!
//! Behind the traits, this crate carries every call across a stable ABI
//! (abi_stable, with `async_ffi` futures):
//!
//! - Each plugin runs its work on its own tokio runtime (cdylibs do not share tokio's
//!   statics with the host). Dropping a host-side future aborts the plugin's task, so
//!   the host's per-call deadlines really cancel your work.
//! - A panic in your code becomes an error for that one call, never a dead host.
//! - Your `tracing` events appear in the host's log, tagged with your plugin's kind.
//! - Every plugin carries a version stamp, checked before anything else is trusted:
//!   a plugin built for another `origin-api` minor (0.x) or major version is rejected
//!   by name with the version it needs.
//!
//! The `testkit` feature holds the conformance suite every origin should pass; see
//! `origin-api/README.md` for a complete minimal plugin and how to test it.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod error;
mod export;
#[doc(hidden)]
pub mod ffi;
mod health;
mod log_forward;
mod metadata;
mod origin;
pub mod paging;
pub mod path;
pub mod pipeline;
mod plugin;
mod plugin_runtime;
#[cfg(feature = "poller")]
#[cfg_attr(docsrs, doc(cfg(feature = "poller")))]
pub mod poller;
pub mod read_stream;
pub mod reconnect;
mod settings;
pub mod stamp;
mod stream_export;
mod watch;

#[cfg(feature = "host")]
#[cfg_attr(docsrs, doc(cfg(feature = "host")))]
pub mod host;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use async_trait::async_trait;
pub use error::{ErrorKind, OriginError, OriginResult};
pub use health::{Health, HealthStatus};
pub use metadata::{DirEntry, EntryKind, ListPage, Metadata};
pub use origin::Origin;
pub use plugin::{IntoPlugin, Plugin, PluginClass, PluginInfo};
pub use read_stream::{Piece, ReadStream};
pub use settings::{split_host_port, Settings};
pub use stamp::API_VERSION;
/// The TOML crate `Settings` is built from, for building settings in tests.
pub use toml;
pub use watch::{ChangeEvent, ChangeKind, EventSink, PollStats, WatchHandle};

/// What [`export_plugin!`] expands to needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{init_plugin, plugin_module};
    pub use crate::ffi::{FfiLogSinkBox, FfiPluginBox, FfiResult, PluginModuleRef};
    pub use crate::stamp::PluginStamp;
    pub use abi_stable;
    pub use abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader,
        RootModuleResult,
    };
}
