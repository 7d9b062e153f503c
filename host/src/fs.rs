//! The mounted file system.
//!
//! - [`fuse`] answers the kernel: metadata from the tree, reads handed to
//!   [`reader`], which knows nothing of FUSE.
//! - [`errno`] maps origin errors to errnos, in one place.
//! - [`mount`] is `musicfs mount`: the daemon plus a FUSE session until stopped.
//! - [`keeper`] holds the mount and runs the daemon as a child, started again
//!   when it dies or is upgraded; [`device`] mounts and hands the FUSE device
//!   from one daemon to the next.
//! - [`mount_helper`] is the form `mount -t fuse.musicfs` runs (fstab).
//! - [`mountpoint`] checks a mountpoint before mounting.
//! - [`passthrough`] lets the kernel read a fully cached file by itself.
//! - [`read_ahead`] raises the kernel's read-ahead for the mount.

pub mod device;
pub mod errno;
pub mod fuse;
pub mod keeper;
pub mod mount;
pub mod mount_helper;
pub mod mountpoint;
pub mod passthrough;
pub mod read_ahead;
pub mod reader;
