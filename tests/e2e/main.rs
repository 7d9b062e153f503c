//! End-to-end tests against the built plugin libraries. Run `cargo build --workspace`
//! first (the README's test command does).

mod abi_growth;
mod author_guide;
mod bad_input;
mod bad_plugins;
mod behaviour;
mod cache_limits;
mod call_boundary;
mod conformance;
mod events;
mod far_away;
mod faults;
mod federation;
mod hooks;
mod hot_plug;
mod like_a_disk;
mod link;
mod local_origin;
mod metrics;
mod mount_library;
mod nfs;
mod nfs_fixture;
mod passthrough;
mod pins;
mod plugin_folder;
mod plugin_process;
mod quiet;
mod s3;
mod sandbox;
mod sftp;
mod smb;
mod ssh_fixture;
mod tier;
mod versions;
mod watch_cleanup;
mod watching;
