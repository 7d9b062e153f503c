//! `musicfs mount`: making the mount and keeping it served.
//!
//! - [`serve`] is the daemon: a FUSE session (`fs`) on the library, until
//!   stopped; [`run`] is where `musicfs mount` starts.
//! - [`keeper`] holds the mount and runs the daemon as a child, started again
//!   when it dies or is upgraded; [`device`] mounts and hands the FUSE device
//!   from one daemon to the next.
//! - [`helper`] is the form `mount -t fuse.musicfs` runs (fstab).
//! - [`mountpoint`] checks a mountpoint before mounting.

pub mod device;
pub mod helper;
pub mod keeper;
pub mod mountpoint;
pub mod serve;

pub use serve::{run, MountSettings, ServeEnd};
