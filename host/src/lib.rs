//! MusicFS host: loads origin plugins, registers their origins, and (later) mounts
//! the library. The binary in `main.rs` is a thin command line over this crate, and
//! the end-to-end tests drive the same pieces directly.

pub mod cache;
mod call_gate;
pub mod change_feed;
pub mod config;
pub mod control;
pub mod daemon;
pub mod errno;
pub mod events;
pub mod failover;
pub mod fuse_fs;
pub mod health_monitor;
pub mod library;
pub mod library_view;
pub mod mount;
pub mod mountpoint;
pub mod origin_flags;
pub mod origin_health;
pub mod paths;
pub mod plugin_folder;
pub mod plugin_manager;
pub mod registry;
pub mod router;
pub mod sample_library;
pub mod status;
pub mod store;
