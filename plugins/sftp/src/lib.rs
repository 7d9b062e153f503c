//! MusicFS origin plugin for SSH servers with SFTP (`type = "sftp"`): a
//! seedbox, a home server, a NAS with SSH.
//!
//! Settings: `host`, `port` (22), `user`, `path` (the library folder on the
//! server; default the login folder), `private_key`, `private_key_passphrase`,
//! `password`, `use_agent`, `known_hosts` (default `~/.ssh/known_hosts`),
//! `host_key_fingerprint` (a `SHA256:…` pin), `connections` (pool size, 4),
//! `poll_interval_secs` (watching, 60), `request_timeout_secs` (30). The quick
//! form `--origin sftp://user@host:port/path` gives the same.
//!
//! Pure Rust (russh and russh-sftp on tokio): the plugin builds anywhere,
//! with no libssh or OpenSSL to find. Host keys are always verified (see
//! `host_key`); connections are pooled and replaced in the background (see
//! `pool`); reads are pipelined (see `reading`).

mod connection;
mod errors;
mod folder;
mod host_key;
mod pool;
mod reading;
mod sftp_origin;
mod sftp_settings;

use origin_api::{async_trait, Origin, OriginResult, Plugin, PluginClass, PluginInfo, Settings};

use crate::sftp_origin::SftpOrigin;
use crate::sftp_settings::SftpSettings;

struct SftpPlugin;

#[async_trait]
impl Plugin for SftpPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("sftp", env!("CARGO_PKG_VERSION"), PluginClass::Remote)
    }

    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        Ok(Box::new(SftpOrigin::open(SftpSettings::parse(&settings)?)))
    }
}

origin_api::export_plugin!(|| SftpPlugin);
