//! The mounted file system: what answers the kernel (how it gets mounted and
//! kept served is `mount`).
//!
//! - [`fuse`] answers the kernel: metadata from the tree, reads handed to
//!   `crate::read`, which knows nothing of FUSE.
//! - [`errno`] maps origin errors to errnos, in one place.
//! - [`invalidate`] tells the kernel what to forget when the tree changes.
//! - [`passthrough`] lets the kernel read a fully cached file by itself.
//! - [`read_ahead`] raises the kernel's read-ahead for the mount.

pub mod errno;
pub mod fuse;
pub mod invalidate;
pub mod passthrough;
pub mod read_ahead;
