//! MusicFS origin plugin for NFS exports (`type = "nfs"`), read by a userspace
//! client: no kernel mount, no root.
//!
//! Work in progress on this branch: the settings. The origin (nfs-rs, cached
//! file handles looked up again on STALE, pipelined READs) comes next.

#![allow(dead_code)]

mod nfs_settings;
