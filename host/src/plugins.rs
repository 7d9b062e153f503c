//! The plugins folder.
//!
//! - [`folder`] inspects each file and loads a private copy of each plugin.
//! - [`process`] runs each plugin in a process of its own and keeps it running.
//! - [`running`] is a plugin either way: apart (the default) or loaded inside.
//! - [`manager`] keeps the loaded plugins in step with the folder (hot plug) and
//!   opens and closes their origins.

pub mod folder;
pub mod manager;
pub mod process;
pub mod running;
