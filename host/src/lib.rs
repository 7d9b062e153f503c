//! MusicFS host: loads origin plugins, registers their origins, builds the library
//! and mounts it. The binary in `main.rs` is a thin command line over this crate, and
//! the end-to-end tests drive the same pieces directly.
//!
//! The read path, from the kernel down: [`fs`] (FUSE) → [`read`] (open files,
//! read-ahead, failover between replicas, deadlines) → [`cache`] (chunks and
//! manifests; `cache::fill` streams what is missing) → [`origins`] (routing,
//! per-call deadlines, health) → the plugin's origin, loaded by [`plugins`]. What the tree shows comes from [`library`]; the
//! change path, from an origin's watch to the tree, is [`changes`]; [`control`]
//! answers `musicfs status` and `musicfs events`; [`hooks`] tell music
//! servers what changed; [`pins`] keep chosen albums offline; [`telemetry`]
//! holds the event bus and metric names every part may import; [`values`] the
//! value types (a file version) they share. [`doctor`] checks, without
//! mounting, what a mount needs.

pub mod cache;
pub mod changes;
pub mod config;
pub mod control;
pub mod daemon;
pub mod doctor;
pub mod fs;
pub mod hooks;
pub mod library;
pub mod mount;
pub mod origins;
pub mod paths;
pub mod pins;
pub mod plugins;
pub mod read;
pub mod store;
pub mod telemetry;
pub mod tier;
pub mod values;
