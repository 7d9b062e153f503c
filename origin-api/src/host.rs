//! Host side of the boundary (feature `host`): loading a plugin library, checking it,
//! and calling its origins as ordinary `dyn Origin`s.
//!
//! The host never sees abi_stable: it gets a [`LoadedPlugin`] from [`load_plugin`] and
//! `Arc<dyn Origin>`s from [`LoadedPlugin::open`], the same trait a plugin implements.
//! The conformance suite therefore runs unchanged on an origin linked in directly and
//! on one loaded from a `.so`.

mod elf_probe;
mod loader;
mod log_sink;
mod plugin_origin;

pub use elf_probe::check_plugin_file;
pub use loader::{load_plugin, LoadError, LoadedPlugin};
