//! MusicFS origin plugin for SMB 2/3 shares (`type = "smb"`): a home NAS, a
//! Windows share, Samba. A userspace client (smb2): no kernel mount, no root.
//!
//! Settings: `host`, `port` (445), `share`, `path` (a folder inside the
//! share), `user`, `password`, `domain`, `require_encryption` (false),
//! `poll_interval_secs` (60), `request_timeout_secs` (30). The quick form:
//! `--origin smb://user@host[:port]/share[/folder]`.

mod errors;
mod listing;
mod session;
mod smb_origin;
mod smb_settings;

use origin_api::{async_trait, Origin, OriginResult, Plugin, PluginClass, PluginInfo, Settings};

use crate::smb_origin::SmbOrigin;
use crate::smb_settings::SmbSettings;

struct SmbPlugin;

#[async_trait]
impl Plugin for SmbPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("smb", env!("CARGO_PKG_VERSION"), PluginClass::Remote)
    }

    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        Ok(Box::new(SmbOrigin::open(SmbSettings::parse(&settings)?)))
    }
}

origin_api::export_plugin!(|| SmbPlugin);
