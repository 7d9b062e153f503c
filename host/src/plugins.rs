//! The plugins folder.
//!
//! - [`folder`] inspects each file and loads a private copy of each plugin.
//! - [`manager`] keeps the loaded plugins in step with the folder (hot plug) and
//!   opens and closes their origins.

pub mod folder;
pub mod manager;
