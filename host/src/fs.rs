//! The mounted file system.
//!
//! - [`fuse`] answers the kernel: metadata from the tree, reads handed to
//!   [`reader`], which knows nothing of FUSE.
//! - [`errno`] maps origin errors to errnos, in one place.
//! - [`mount`] is `musicfs mount`: the daemon plus a FUSE session until stopped.
//! - [`mountpoint`] checks a mountpoint before mounting.

pub mod errno;
pub mod fuse;
pub mod mount;
pub mod mountpoint;
pub mod reader;
