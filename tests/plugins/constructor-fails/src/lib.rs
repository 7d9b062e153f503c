//! A plugin whose constructor returns an error. The host must report it and go on.

use origin_api::{async_trait, Origin, OriginResult, Plugin, PluginInfo, Settings};

struct Never;

#[async_trait]
impl Plugin for Never {
    fn info(&self) -> PluginInfo {
        unreachable!()
    }

    async fn open(&self, _: Settings) -> OriginResult<Box<dyn Origin>> {
        unreachable!()
    }
}

fn construct() -> Result<Never, String> {
    Err("constructor-fails: no backend library found".into())
}

origin_api::export_plugin!(construct);
