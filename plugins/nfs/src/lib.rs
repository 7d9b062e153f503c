//! MusicFS origin plugin for NFS exports (`type = "nfs"`), read by a userspace
//! client (nfs-rs): no kernel mount, no root, NFSv3 or v4.
//!
//! Settings: `host`, `export` (v3: its path on the server; v4: the pseudo
//! path), `version` (3 or 4, default 3), `port`, `mount_port`, `path` (a folder
//! inside the export), `uid`, `gid`, `privileged_port` (false),
//! `poll_interval_secs` (60), `request_timeout_secs` (30). The quick form:
//! `--origin nfs://host[:port]/export`.

mod errors;
mod links;
mod nfs_origin;
mod nfs_settings;
mod pages;
mod session;

use origin_api::{async_trait, Origin, OriginResult, Plugin, PluginClass, PluginInfo, Settings};

use crate::nfs_origin::NfsOrigin;
use crate::nfs_settings::NfsSettings;

struct NfsPlugin;

#[async_trait]
impl Plugin for NfsPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("nfs", env!("CARGO_PKG_VERSION"), PluginClass::Remote)
    }

    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        Ok(Box::new(NfsOrigin::open(NfsSettings::parse(&settings)?)))
    }
}

origin_api::export_plugin!(|| NfsPlugin);
