//! MusicFS origin plugin for S3 buckets (`type = "s3"`): AWS, Garage, MinIO, Ceph
//! RGW, Cloudflare R2, any S3-compatible store.
//!
//! Settings: `bucket`, `prefix`, `region`, `endpoint` (non-AWS stores),
//! `virtual_hosted_style` (default false: path-style), `access_key_id`,
//! `secret_access_key`, `session_token` (without keys: the environment and the
//! usual AWS credential chain), `allow_http` (loopback tests), `poll_interval_secs`
//! (watching, default 60), `request_timeout_secs` (default 30). The quick form
//! `--origin s3://bucket/prefix` gives `url`, the rest comes from the environment.

mod errors;
mod poller;
mod s3_origin;
mod s3_settings;

use origin_api::{async_trait, Origin, OriginResult, Plugin, PluginClass, PluginInfo, Settings};

use crate::s3_origin::S3Origin;
use crate::s3_settings::S3Settings;

struct S3Plugin;

#[async_trait]
impl Plugin for S3Plugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("s3", env!("CARGO_PKG_VERSION"), PluginClass::Remote)
    }

    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        Ok(Box::new(S3Origin::open(S3Settings::parse(&settings)?)?))
    }
}

origin_api::export_plugin!(|| S3Plugin);
