//! MusicFS origin plugin for a folder on local disk (`type = "local"`).
//!
//! Settings: `path`, the folder to serve. A folder that does not exist yet (an
//! unplugged drive) still opens; the origin is unhealthy until it appears.
//!
//! Symlinks: a link is followed only when its target, fully resolved, lies inside
//! the root; a link that leads outside the root (or dangles, or loops) is left out
//! of listings and refused with "permission denied" when asked for by name. With the
//! adapter's path checks (no `..`, no absolute paths), nothing outside the root can be
//! read through this origin.

mod local_origin;
mod paging;
mod watcher;

use origin_api::{async_trait, Origin, OriginResult, Plugin, PluginClass, PluginInfo, Settings};

use crate::local_origin::LocalOrigin;

/// The plugin: opens one [`LocalOrigin`] per configured folder.
struct LocalPlugin;

#[async_trait]
impl Plugin for LocalPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("local", env!("CARGO_PKG_VERSION"), PluginClass::Local)
    }

    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        let path = settings.require_str("path")?;
        Ok(Box::new(LocalOrigin::new(path)?))
    }
}

origin_api::export_plugin!(|| LocalPlugin);
