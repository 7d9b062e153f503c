//! A complete origin plugin: one folder holding `hello.txt`.
use std::time::SystemTime;

use origin_api::{
    async_trait, DirEntry, EventSink, Health, ListPage, Metadata, Origin, OriginError,
    OriginResult, Plugin, PluginClass, PluginInfo, Settings, WatchHandle,
};

struct HelloPlugin;

#[async_trait]
impl Plugin for HelloPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("hello", "0.1.0", PluginClass::Local)
    }
    async fn open(&self, settings: Settings) -> OriginResult<Box<dyn Origin>> {
        let greeting = settings.get_str("greeting")?.unwrap_or("hello, world\n");
        Ok(Box::new(HelloOrigin(greeting.as_bytes().to_vec())))
    }
}

struct HelloOrigin(Vec<u8>);

#[async_trait]
impl Origin for HelloOrigin {
    async fn stat(&self, path: &str) -> OriginResult<Metadata> {
        match path {
            "" => Ok(Metadata::directory(SystemTime::UNIX_EPOCH)),
            "hello.txt" => Ok(Metadata::file(self.0.len() as u64, SystemTime::UNIX_EPOCH)),
            _ => Err(OriginError::not_found(path)),
        }
    }
    async fn list(&self, dir: &str, _cursor: Option<&str>, _limit: u32) -> OriginResult<ListPage> {
        if !dir.is_empty() {
            return Err(OriginError::not_found(dir));
        }
        let (name, metadata) = ("hello.txt".into(), self.stat("hello.txt").await?);
        Ok(ListPage::complete(vec![DirEntry { name, metadata }]))
    }
    async fn read(&self, path: &str, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        if path != "hello.txt" {
            return Err(OriginError::not_found(path));
        }
        let start = (offset as usize).min(self.0.len());
        let end = start.saturating_add(len as usize).min(self.0.len());
        Ok(self.0[start..end].to_vec())
    }
    async fn health(&self) -> Health {
        Health::healthy()
    }
    async fn watch(&self, _sink: EventSink) -> OriginResult<WatchHandle> {
        Ok(WatchHandle::on_stop(|| {})) // nothing ever changes
    }
}

origin_api::export_plugin!(|| HelloPlugin);
