//! The mounted file system.
//!
//! - [`fuse`] answers the kernel: metadata from the tree, reads through the cache.
//! - [`errno`] maps origin errors to errnos, in one place.
//! - [`mount`] is `musicfs mount`: the daemon plus a FUSE session until stopped.
//! - [`mountpoint`] checks a mountpoint before mounting.

pub mod errno;
pub mod fuse;
pub mod mount;
pub mod mountpoint;
